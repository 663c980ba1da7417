//! DNS blocklists (RFC 5782): the name to query for an address, and what the answers mean.
//! Pure.

use core::net::{IpAddr, Ipv4Addr};
use std::fmt::Write as _;

use crate::model::dns::RecordLookup;

/// Widely used lists that answer anyone for free at low volume. Large lists refuse queries that
/// come through big public resolvers (with 127.255.255.x answers, read as "not usable").
pub const DEFAULT_ZONES: &[&str] = &["zen.spamhaus.org", "bl.spamcop.net", "psbl.surriel.com"];

/// RFC 5782 §5: every IPv4 list lists this test point; 127.0.0.1 is never listed.
pub const TEST_POINT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);

/// The name to look up for `ip` in `zone`: the IPv4 octets reversed (`4.3.2.1.zone` for
/// 1.2.3.4), an IPv6 address's 32 nibbles reversed (RFC 5782 §2.4).
pub fn query_name(ip: IpAddr, zone: &str) -> String {
    let zone = zone.trim_end_matches('.');
    let mut name = String::new();
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, c, d] = v4.octets();
            let _ = write!(name, "{d}.{c}.{b}.{a}");
        }
        IpAddr::V6(v6) => {
            for byte in v6.octets().iter().rev() {
                let _ = write!(name, "{:x}.{:x}.", byte & 0xf, byte >> 4);
            }
            name.pop();
        }
    }
    format!("{name}.{zone}")
}

/// The name whose PTR record names `ip` (RFC 1035 §3.5, RFC 3596 §2.5): the same reversal
/// under in-addr.arpa or ip6.arpa.
pub fn reverse_name(ip: IpAddr) -> String {
    let zone = if ip.is_ipv4() {
        "in-addr.arpa"
    } else {
        "ip6.arpa"
    };
    query_name(ip, zone)
}

/// What one list says of an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listing {
    /// The A answer is a listing code (127.0.0.2 and up, outside 127.255.255.0/24).
    Listed(Vec<Ipv4Addr>),
    /// NXDOMAIN: not on this list.
    NotListed,
    /// The list could not be used: refused or rate-limited (127.255.255.x, RFC 5782 §2.3
    /// forbids nothing else there but large lists use it so), an answer that is no listing
    /// code, a list that does not list its own test point, or a failed query. Never a listing.
    Unusable(String),
}

impl Listing {
    /// `listed` in the JSON: true, false, or null when the list could not say.
    pub fn listed(&self) -> Option<bool> {
        match self {
            Listing::Listed(_) => Some(true),
            Listing::NotListed => Some(false),
            Listing::Unusable(_) => None,
        }
    }
}

/// Reads the A lookup of an address (`answer`) and, when there is one, of the list's test point
/// 127.0.0.2 (`test_point`): a list that does not list its test point is dead or refuses this
/// resolver, whatever it answered for the address.
pub fn interpret(answer: &RecordLookup, test_point: Option<&RecordLookup>) -> Listing {
    if let Some(test) = test_point {
        let broken = match read_answer(test) {
            Listing::Listed(_) => None,
            Listing::NotListed => Some("NXDOMAIN".to_owned()),
            Listing::Unusable(why) => Some(why),
        };
        if let Some(why) = broken {
            return Listing::Unusable(format!(
                "the list does not list its test point {TEST_POINT} ({why}): it is not answering this resolver"
            ));
        }
    }
    read_answer(answer)
}

fn read_answer(answer: &RecordLookup) -> Listing {
    let records = match answer {
        RecordLookup::NxDomain | RecordLookup::NoData => return Listing::NotListed,
        RecordLookup::Failed(e) => return Listing::Unusable(format!("query failed: {e}")),
        RecordLookup::Found(records) => records,
    };
    let addresses: Vec<Ipv4Addr> = records.iter().filter_map(|r| r.parse().ok()).collect();
    if addresses.is_empty() {
        return Listing::NotListed;
    }
    if let Some(odd) = addresses.iter().find(|a| !is_listing_code(**a)) {
        return Listing::Unusable(format!("answer {odd} is not a listing code"));
    }
    Listing::Listed(addresses)
}

/// 127.0.0.2 – 127.255.254.255. 127.0.0.1 is what some lists answer for refused queries
/// (URIBL), 127.255.255.0/24 what Spamhaus and others answer for public resolvers and
/// over-quota queries, and anything outside 127/8 a resolver's own redirect page.
fn is_listing_code(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    a == 127 && ip != Ipv4Addr::new(127, 0, 0, 1) && !(b == 255 && c == 255)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::dns::Failure;

    fn found(addresses: &[&str]) -> RecordLookup {
        RecordLookup::Found(addresses.iter().map(|a| a.to_string()).collect())
    }

    #[test]
    fn ipv4_octets_are_reversed_under_the_zone() {
        let ip: IpAddr = "192.0.2.99".parse().unwrap();
        assert_eq!(query_name(ip, "bl.example."), "99.2.0.192.bl.example");
    }

    #[test]
    fn ipv6_nibbles_are_reversed_under_the_zone() {
        let ip: IpAddr = "2001:db8:1:2:3:4:567:89ab".parse().unwrap();
        assert_eq!(
            query_name(ip, "bl.example"),
            "b.a.9.8.7.6.5.0.4.0.0.0.3.0.0.0.2.0.0.0.1.0.0.0.8.b.d.0.1.0.0.2.bl.example"
        );
    }

    #[test]
    fn the_reverse_name_is_under_in_addr_arpa_or_ip6_arpa() {
        assert_eq!(
            reverse_name("127.77.5.1".parse().unwrap()),
            "1.5.77.127.in-addr.arpa"
        );
        assert!(reverse_name("::1".parse().unwrap()).ends_with(".0.0.0.ip6.arpa"));
        assert!(reverse_name("::1".parse().unwrap()).starts_with("1.0.0.0."));
    }

    #[test]
    fn nxdomain_is_not_listed() {
        assert_eq!(interpret(&RecordLookup::NxDomain, None), Listing::NotListed);
        assert_eq!(interpret(&RecordLookup::NoData, None).listed(), Some(false));
    }

    #[test]
    fn a_127_0_0_x_answer_is_a_listing() {
        let listing = interpret(&found(&["127.0.0.2", "127.0.0.10"]), None);
        assert_eq!(
            listing,
            Listing::Listed(vec![
                Ipv4Addr::new(127, 0, 0, 2),
                Ipv4Addr::new(127, 0, 0, 10)
            ])
        );
        assert_eq!(listing.listed(), Some(true));
    }

    #[test]
    fn refused_query_codes_are_never_a_listing() {
        for code in ["127.255.255.254", "127.255.255.252", "127.255.255.255"] {
            let listing = interpret(&found(&[code]), None);
            assert!(matches!(listing, Listing::Unusable(_)), "{code}");
            assert_eq!(listing.listed(), None);
        }
    }

    #[test]
    fn answers_outside_127_and_127_0_0_1_are_unusable() {
        for code in ["93.184.216.34", "127.0.0.1", "10.0.0.2"] {
            assert_eq!(interpret(&found(&[code]), None).listed(), None, "{code}");
        }
        // One odd code among listing codes spoils the answer.
        assert_eq!(
            interpret(&found(&["127.0.0.2", "127.255.255.254"]), None).listed(),
            None
        );
    }

    #[test]
    fn a_failed_query_is_unusable() {
        let listing = interpret(&RecordLookup::Failed(Failure::Timeout), None);
        assert_eq!(
            listing,
            Listing::Unusable("query failed: timed out".to_owned())
        );
    }

    #[test]
    fn a_list_that_does_not_list_its_test_point_is_unusable() {
        // The address looks listed, but so would anything through a resolver that redirects.
        let dead = interpret(&found(&["127.0.0.2"]), Some(&RecordLookup::NxDomain));
        assert_eq!(dead.listed(), None);
        let refusing = interpret(&RecordLookup::NxDomain, Some(&found(&["127.255.255.254"])));
        assert_eq!(refusing.listed(), None);
        let working = interpret(&RecordLookup::NxDomain, Some(&found(&["127.0.0.2"])));
        assert_eq!(working, Listing::NotListed);
        let listed = interpret(&found(&["127.0.0.4"]), Some(&found(&["127.0.0.2"])));
        assert_eq!(listed.listed(), Some(true));
    }
}
