//! Which addresses mail from the internet can reach. Pure.

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Whether a mail server at `ip` could be reached from the public internet. Loopback, private,
/// link-local, shared (CGNAT), documentation, benchmarking, multicast, reserved and unspecified
/// ranges cannot.
pub fn is_routable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_routable_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_routable_v4(v4),
            None => is_routable_v6(v6),
        },
    }
}

fn is_routable_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_unspecified()
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space, RFC 6598
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments, RFC 6890
        || (a == 198 && (b == 18 || b == 19)) // benchmarking, RFC 2544
        || a >= 240) // reserved, RFC 1112
}

/// An allow-list: only global unicast (2000::/3, RFC 4291) can be a public mail server, which
/// rules out loopback, unique-local, link-local, site-local, multicast, NAT64 (both the
/// well-known and the local-use prefix, which map to internal IPv4), IPv4-compatible and the
/// discard prefix at once. Inside it, a few special ranges are refused too.
fn is_routable_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let global_unicast = (s[0] & 0xe000) == 0x2000;
    global_unicast
        // IETF protocol assignments, 2001::/23 (RFC 2928): Teredo tunnels (2001::/32, RFC
        // 4380) whose far end is some NATed host, benchmarking, ORCHID; none is a mail server.
        && !(s[0] == 0x2001 && s[1] < 0x0200)
        && !(s[0] == 0x2001 && s[1] == 0x0db8) // documentation, RFC 3849
        && !(s[0] == 0x3fff && s[1] < 0x1000) // documentation, 3fff::/20, RFC 9637
        // 6to4 (RFC 3056) carries an IPv4 address: judge that one.
        && (s[0] != 0x2002
            || is_routable_v4(Ipv4Addr::new(
                (s[1] >> 8) as u8,
                s[1] as u8,
                (s[2] >> 8) as u8,
                s[2] as u8,
            )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        for ip in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:2800:220:1:248:1893:25c8:1946",
            "::ffff:8.8.8.8",
            "2a00:1450:4001:81c::201b",
            "2002:808:808::1",
            "2001:4860:4860::8888",
            "2001:200::1",
        ] {
            assert!(is_routable(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "127.77.1.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.1.1",
            "0.0.0.0",
            "100.64.0.1",
            "192.0.2.1",
            "198.51.100.1",
            "203.0.113.9",
            "198.18.0.1",
            "224.0.0.1",
            "240.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "2001:db8::1",
            "::ffff:127.0.0.1",
            "ff02::1",
            "64:ff9b::a00:1",
            "64:ff9b:1::a00:1",
            "fec0::1",
            "::10.0.0.1",
            "100::1",
            "2001:2::1",
            "2002:a00:1::1",
            // Teredo (issue #14): a NATed host behind a tunnel, never a mail server.
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
            "2001:10::1",
            "2001:20::1",
            "3fff::1",
        ] {
            assert!(!is_routable(ip.parse().unwrap()), "{ip}");
        }
    }
}
