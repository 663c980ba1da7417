//! How probe connections leave this machine: directly, from a chosen local address
//! (`--source-ip`, for machines with several public addresses), or through a SOCKS5 proxy
//! (`--proxy socks5://[user:pass@]host:port`, RFC 1928 with RFC 1929 username/password; the
//! protocol is tokio-socks'). A mail server judges the address the connection comes from, so the
//! politeness budget is per egress and server: one prober has one egress, and its per-server
//! limits are that pair's.

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use tokio::net::{TcpSocket, TcpStream};

/// Where probe connections come from.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub enum Egress {
    /// The system's choice of local address.
    #[default]
    Direct,
    /// Bound to this local address.
    Source(IpAddr),
    /// Through a SOCKS5 proxy at `proxy` (`host:port`), with username and password if given.
    Socks5 {
        proxy: String,
        auth: Option<(String, String)>,
    },
}

/// The password never shows in messages or summary.json.
impl fmt::Debug for Egress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for Egress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Egress::Direct => f.write_str("direct"),
            Egress::Source(ip) => write!(f, "source {ip}"),
            Egress::Socks5 { proxy, auth: None } => write!(f, "socks5://{proxy}"),
            Egress::Socks5 {
                proxy,
                auth: Some((user, _)),
            } => write!(f, "socks5://{user}:***@{proxy}"),
        }
    }
}

impl Egress {
    /// `socks5://[user:pass@]host[:port]` (the port defaults to 1080; user and password may be
    /// percent-encoded). `socks5h://` is accepted as the same: the probes give the proxy an
    /// address, never a name to resolve.
    pub fn parse_proxy(text: &str) -> Result<Egress, String> {
        let rest = text
            .strip_prefix("socks5://")
            .or_else(|| text.strip_prefix("socks5h://"))
            .ok_or_else(|| {
                format!(
                    "{text:?}: only SOCKS5 proxies are supported: socks5://[user:pass@]host:port"
                )
            })?;
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        let (auth, host_port) = match rest.rsplit_once('@') {
            Some((auth, hp)) => {
                let (user, pass) = auth
                    .split_once(':')
                    .ok_or_else(|| format!("{text:?}: write the credentials as user:password@"))?;
                let (user, pass) = (percent_decode(user)?, percent_decode(pass)?);
                // RFC 1929: each is 1 to 255 bytes.
                if !(1..=255).contains(&user.len()) || !(1..=255).contains(&pass.len()) {
                    return Err(format!(
                        "{text:?}: the user name and the password must each be 1 to 255 bytes"
                    ));
                }
                (Some((user, pass)), hp)
            }
            None => (None, rest),
        };
        if host_port.is_empty() || host_port.contains(['/', '?', '#', ' ']) {
            return Err(format!("{text:?}: expected socks5://[user:pass@]host:port"));
        }
        let has_port = match host_port.strip_prefix('[') {
            Some(v6) => v6.contains("]:"),
            None => host_port.matches(':').count() == 1,
        };
        if !has_port && host_port.matches(':').count() > 1 && !host_port.starts_with('[') {
            return Err(format!(
                "{text:?}: write an IPv6 proxy address as [addr]:port"
            ));
        }
        let proxy = if has_port {
            let port = host_port.rsplit_once(':').map_or("", |(_, p)| p);
            if port.parse::<u16>().map_or(true, |p| p == 0) {
                return Err(format!("{text:?}: {port:?} is not a port"));
            }
            host_port.to_owned()
        } else {
            format!("{host_port}:1080")
        };
        Ok(Egress::Socks5 { proxy, auth })
    }

    /// A TCP connection to `target` through this egress.
    pub async fn connect(&self, target: SocketAddr) -> std::io::Result<TcpStream> {
        match self {
            Egress::Direct => TcpStream::connect(target).await,
            Egress::Source(ip) => {
                let socket = match (ip, target) {
                    (IpAddr::V4(_), SocketAddr::V4(_)) => TcpSocket::new_v4()?,
                    (IpAddr::V6(_), SocketAddr::V6(_)) => TcpSocket::new_v6()?,
                    _ => {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::Unsupported,
                            format!("source address {ip} cannot reach {}", target.ip()),
                        ));
                    }
                };
                socket.bind(SocketAddr::new(*ip, 0))?;
                socket.connect(target).await
            }
            Egress::Socks5 { proxy, auth } => {
                let stream = match auth {
                    None => tokio_socks::tcp::Socks5Stream::connect(proxy.as_str(), target).await,
                    Some((user, pass)) => {
                        tokio_socks::tcp::Socks5Stream::connect_with_password(
                            proxy.as_str(),
                            target,
                            user,
                            pass,
                        )
                        .await
                    }
                };
                stream.map(|s| s.into_inner()).map_err(|e| {
                    let kind = match &e {
                        tokio_socks::Error::Io(io) => io.kind(),
                        _ => std::io::ErrorKind::ConnectionRefused,
                    };
                    std::io::Error::new(kind, format!("through the proxy {proxy}: {e}"))
                })
            }
        }
    }
}

fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("{s:?}: a % must start a two-digit hex escape"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("{s:?} is not UTF-8 once decoded"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn socks(proxy: &str, auth: Option<(&str, &str)>) -> Egress {
        Egress::Socks5 {
            proxy: proxy.into(),
            auth: auth.map(|(u, p)| (u.into(), p.into())),
        }
    }

    #[test]
    fn proxy_urls() {
        let p = Egress::parse_proxy;
        assert_eq!(
            p("socks5://127.0.0.1:1080"),
            Ok(socks("127.0.0.1:1080", None))
        );
        assert_eq!(
            p("socks5h://proxy.example:9050/"),
            Ok(socks("proxy.example:9050", None))
        );
        assert_eq!(
            p("socks5://proxy.example"),
            Ok(socks("proxy.example:1080", None))
        );
        assert_eq!(p("socks5://[::1]:1080"), Ok(socks("[::1]:1080", None)));
        assert_eq!(p("socks5://[::1]"), Ok(socks("[::1]:1080", None)));
        assert_eq!(
            p("socks5://ann:p%40ss%3Aword@10.0.0.1:1080"),
            Ok(socks("10.0.0.1:1080", Some(("ann", "p@ss:word"))))
        );
        for bad in [
            "http://proxy:3128",
            "socks4://proxy:1080",
            "socks5://",
            "socks5://proxy:0",
            "socks5://proxy:port",
            "socks5://ann@proxy:1080",
            "socks5://:pw@proxy:1080",
            "socks5://ann:%zz@proxy:1080",
            "socks5://proxy:1080/path",
            "socks5://::1:1080",
        ] {
            assert!(p(bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn the_password_never_shows() {
        let e = socks("10.0.0.1:1080", Some(("ann", "secret")));
        assert_eq!(e.to_string(), "socks5://ann:***@10.0.0.1:1080");
        assert!(!format!("{e:?}").contains("secret"));
    }

    #[tokio::test]
    async fn a_source_address_of_the_other_family_is_refused_without_a_connection() {
        let e = Egress::Source("127.0.0.1".parse().unwrap());
        let err = e
            .connect("[::1]:25".parse().unwrap())
            .await
            .expect_err("a v4 source cannot reach a v6 server");
        assert!(err.to_string().contains("cannot reach ::1"), "{err}");
    }
}
