//! This machine as a prober (for `--level smtp`): its egress address, reverse DNS, HELO name,
//! blocklist listings and port 25 egress. I/O: DNS queries through [`DnsResolver`], TCP
//! connections with tokio. What the answers mean is decided by the pure `dnsbl` module and
//! the small rules here.
//!
//! The entry point is [`check`]; `verify` runs it before its SMTP stage and asks
//! [`ProberReport::port25_blocked`] whether probing can work at all.

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};

use super::check::{Check, CheckStatus};
use super::dnsbl::{self, Listing};
use crate::dns::{Addresses, DnsResolver, DomainEvidence, RecordKind, RecordLookup, is_routable};

/// Mail domains whose MX the port 25 check tries when no `--probe-target` is given: large
/// providers that always answer on port 25.
pub const DEFAULT_PROBE_TARGETS: &[&str] = &["gmail.com", "outlook.com", "yahoo.com"];

/// The port 25 check's connection timeout, and its wait for the greeting, by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What to check, and from where.
#[derive(Debug, Clone)]
pub struct ProberOptions {
    /// The EHLO name the probes will use; None: the `helo` check is skipped.
    pub helo: Option<String>,
    /// Bind the port 25 connections to this local address; the checks run for it.
    pub source_ip: Option<IpAddr>,
    /// The address the internet sees (behind NAT): PTR, FCrDNS, HELO and blocklists are
    /// checked for it instead of the local one.
    pub public_ip: Option<IpAddr>,
    /// Blocklist zones to ask ([`dnsbl::DEFAULT_ZONES`] by default).
    pub dnsbl_zones: Vec<String>,
    /// Where to try port 25 ([`DEFAULT_PROBE_TARGETS`] by default).
    pub probe_targets: Vec<ProbeTarget>,
    /// The port of targets given by name (tests use another).
    pub smtp_port: u16,
    /// Per connection attempt, and again for the greeting.
    pub connect_timeout: Duration,
    /// Check private and loopback addresses like public ones (`--allow-private-mx`: labs,
    /// intranets); otherwise such an egress address is reported as NAT and the PTR, FCrDNS and
    /// blocklist checks are skipped unless `public_ip` is given.
    pub allow_private: bool,
}

impl Default for ProberOptions {
    fn default() -> Self {
        ProberOptions {
            helo: None,
            source_ip: None,
            public_ip: None,
            dnsbl_zones: dnsbl::DEFAULT_ZONES.iter().map(|z| z.to_string()).collect(),
            probe_targets: DEFAULT_PROBE_TARGETS
                .iter()
                .map(|d| ProbeTarget::Host(d.to_string()))
                .collect(),
            smtp_port: 25,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            allow_private: false,
        }
    }
}

/// Where the port 25 check connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeTarget {
    /// A mail domain (its most preferred MX host that has an address) or a host name (its own
    /// address when it has no MX).
    Host(String),
    /// An address, with its port (25 unless given as `IP:PORT`).
    Address(SocketAddr),
}

impl FromStr for ProbeTarget {
    type Err = String;

    /// `mx.example.org`, `example.org`, `192.0.2.1`, `192.0.2.1:2525`, `[2001:db8::1]:25`.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(ProbeTarget::Address(addr));
        }
        if let Ok(ip) = s.trim_matches(['[', ']']).parse::<IpAddr>() {
            return Ok(ProbeTarget::Address(SocketAddr::new(ip, 25)));
        }
        let name = s.trim_end_matches('.').to_ascii_lowercase();
        let well_formed = !name.is_empty()
            && name.len() <= 253
            && name.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        if well_formed {
            Ok(ProbeTarget::Host(name))
        } else {
            Err(format!(
                "{s:?} is neither a host name nor an IP address (with an optional :PORT)"
            ))
        }
    }
}

impl fmt::Display for ProbeTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeTarget::Host(name) => f.write_str(name),
            ProbeTarget::Address(addr) => write!(f, "{addr}"),
        }
    }
}

/// How one port 25 connection went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Port25Result {
    /// The server answered with a greeting (220, or another reply that still proves the path).
    Open,
    /// Actively turned away: a TCP reset, or closed before any greeting.
    Refused,
    /// No answer within the timeout, or the network or a local firewall would not let the
    /// connection out.
    Filtered,
}

/// One target of the port 25 check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Port25Probe {
    pub target: String,
    /// The address connected to; None when the target did not resolve.
    pub address: Option<SocketAddr>,
    /// None when the target could not be tried (its name did not resolve, a local bind failed).
    pub result: Option<Port25Result>,
    pub detail: String,
    /// The local address of the connection, when one was made.
    #[serde(skip)]
    pub local: Option<IpAddr>,
}

/// The prober part of a preflight: `{"egress_ip": …, "checks": […]}` in JSON, checks in this
/// order: `egress-ip`, `ptr`, `fcrdns`, `helo`, `dnsbl:<zone>`…, `port25`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProberReport {
    /// The local address of the outbound connections (or `--source-ip`); None when it could
    /// not be found out.
    pub egress_ip: Option<IpAddr>,
    pub checks: Vec<Check>,
    /// The port 25 check's targets, as in the `port25` check's `targets` field.
    #[serde(skip)]
    pub port25: Vec<Port25Probe>,
}

impl ProberReport {
    /// Whether port 25 is blocked at every target: Some(`Filtered`) when no target answered and
    /// at least one timed out or was stopped on the way, Some(`Refused`) when every target
    /// tried refused; None when one answered, or when none could be tried (no target resolved),
    /// in which case nothing is known.
    pub fn port25_blocked(&self) -> Option<Port25Result> {
        let results: Vec<Port25Result> = self.port25.iter().filter_map(|p| p.result).collect();
        if results.is_empty() || results.contains(&Port25Result::Open) {
            return None;
        }
        if results.contains(&Port25Result::Filtered) {
            Some(Port25Result::Filtered)
        } else {
            Some(Port25Result::Refused)
        }
    }

    /// The check with this id.
    pub fn check(&self, id: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.id == id)
    }

    /// Whether any check failed.
    pub fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.status == CheckStatus::Fail)
    }

    /// The checks that warned or failed (what `verify` prints before probing).
    pub fn problems(&self) -> impl Iterator<Item = &Check> {
        self.checks
            .iter()
            .filter(|c| matches!(c.status, CheckStatus::Warn | CheckStatus::Fail))
    }
}

/// Runs the prober checks. Takes at most about twice `connect_timeout` for the port 25
/// connections (connect, then the greeting; all targets at once) plus the DNS queries.
/// Must be called inside a tokio runtime.
pub async fn check(options: &ProberOptions, dns: &DnsResolver) -> ProberReport {
    let port25 = probe_port25(options, dns).await;
    let egress = egress_address(options, &port25).await;
    let mut checks = Vec::new();
    let checked = match &egress {
        Some((ip, source)) => {
            let (check, checked) = egress_check(*ip, source, options);
            checks.push(check);
            checked
        }
        None => {
            checks.push(
                Check::warn(
                    "egress-ip",
                    "could not find out this machine's outbound address (no route, no connection)",
                )
                .with("address", Value::Null)
                .advise("pass --source-ip IP (or --public-ip IP behind NAT)"),
            );
            options
                .public_ip
                .ok_or("the outbound address is unknown: pass --public-ip IP".to_owned())
        }
    };
    let (ptr, fcrdns) = reverse_dns(&checked, dns).await;
    checks.push(ptr);
    checks.push(fcrdns);
    checks.push(helo_check(options.helo.as_deref(), &checked, dns).await);
    let listings = options
        .dnsbl_zones
        .iter()
        .map(|zone| dnsbl_check(zone, &checked, dns));
    checks.extend(futures::future::join_all(listings).await);
    checks.push(port25_check(&port25, options.connect_timeout));
    ProberReport {
        egress_ip: egress.map(|(ip, _)| ip),
        checks,
        port25,
    }
}

/// The address the reverse-DNS and blocklist checks are about (and whether it may be looked
/// up), or why they are skipped.
type Checked = Result<IpAddr, String>;

/// How the egress address was found: `source-ip`, `connection` or `route`.
async fn egress_address(
    options: &ProberOptions,
    port25: &[Port25Probe],
) -> Option<(IpAddr, &'static str)> {
    if let Some(ip) = options.source_ip {
        return Some((ip, "source-ip"));
    }
    if let Some(ip) = port25.iter().find_map(|p| p.local) {
        return Some((ip, "connection"));
    }
    // No connection got through: ask the routing table which local address a connection would
    // leave from (a UDP "connect" sends nothing). Toward a target, else toward TEST-NET-1,
    // which the default route covers like any public address.
    let toward = port25
        .iter()
        .find_map(|p| p.address)
        .unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 25));
    let local = if toward.is_ipv4() {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
    } else {
        SocketAddr::new(IpAddr::V6(core::net::Ipv6Addr::UNSPECIFIED), 0)
    };
    let socket = UdpSocket::bind(local).await.ok()?;
    socket.connect(toward).await.ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some((ip, "route"))
}

/// The `egress-ip` check, and the address the later checks are about.
fn egress_check(ip: IpAddr, source: &str, options: &ProberOptions) -> (Check, Checked) {
    let private = !is_routable(ip);
    let base = |check: Check| {
        check
            .with("address", ip.to_string())
            .with("source", source)
            .with("private", private)
    };
    if let Some(public) = options.public_ip {
        let detail = if private {
            format!(
                "{ip} ({source}) is not a public address (NAT); the checks use --public-ip {public}"
            )
        } else {
            format!("{ip} ({source}); the checks use --public-ip {public}")
        };
        let check = base(Check::pass("egress-ip", detail)).with("checked_ip", public.to_string());
        return (check, Ok(public));
    }
    if !private {
        let check = base(Check::pass("egress-ip", format!("{ip} ({source}), public")))
            .with("checked_ip", ip.to_string());
        return (check, Ok(ip));
    }
    if options.allow_private {
        let check = base(Check::pass(
            "egress-ip",
            format!("{ip} ({source}), not public, checked as it is (--allow-private-mx)"),
        ))
        .with("checked_ip", ip.to_string());
        return (check, Ok(ip));
    }
    let check = base(Check::warn(
        "egress-ip",
        format!(
            "{ip} ({source}) is not a public address (private, loopback or reserved): behind \
             NAT the mail servers see another one"
        ),
    ))
    .with("checked_ip", Value::Null)
    .advise("pass --public-ip IP (the address the internet sees) to check its PTR and blocklists");
    let why = format!("{ip} is not a public address (NAT?): pass --public-ip IP");
    (check, Err(why))
}

/// The `ptr` and `fcrdns` checks.
async fn reverse_dns(checked: &Checked, dns: &DnsResolver) -> (Check, Check) {
    let ip = match checked {
        Ok(ip) => *ip,
        Err(why) => {
            return (
                Check::skip("ptr", why.clone()).with("name", Value::Null),
                Check::skip("fcrdns", why.clone()),
            );
        }
    };
    if ip.is_loopback() {
        // hickory answers "localhost" for every loopback PTR itself, never asking a server
        // (RFC 6761 §6.3): there is nothing to learn.
        let why = format!(
            "{ip} is a loopback address: its reverse DNS is answered locally, never by the DNS"
        );
        return (
            Check::skip("ptr", why.clone()).with("name", Value::Null),
            Check::skip("fcrdns", why),
        );
    }
    let names = match dns.records(&dnsbl::reverse_name(ip), RecordKind::Ptr).await {
        RecordLookup::Found(names) if !names.is_empty() => names,
        RecordLookup::Failed(e) => {
            let why = format!("the PTR lookup of {ip} failed: {e}");
            return (
                Check::warn("ptr", why.clone()).with("name", Value::Null),
                Check::skip("fcrdns", why),
            );
        }
        _ => {
            return (
                Check::fail("ptr", format!("{ip} has no PTR record (no reverse DNS)"))
                    .with("name", Value::Null)
                    .advise(
                        "ask whoever owns the address (the hosting provider) to set a PTR record \
                         naming this host; mail servers refuse probes from addresses without one",
                    ),
                Check::skip("fcrdns", format!("{ip} has no PTR record")),
            );
        }
    };
    let ptr = Check::pass("ptr", format!("{ip} → {}", names.join(", ")))
        .with("name", names[0].clone())
        .with("names", names.clone());
    // RFC 8601's iprev: at most 10 PTR names are followed.
    let lookups = names.iter().take(10).map(|name| addresses_of(name, dns));
    let resolved = futures::future::join_all(lookups).await;
    let mut seen = Vec::new();
    for (name, addresses) in names.iter().zip(&resolved) {
        match addresses {
            Ok(found) if found.contains(&ip) => {
                let check = Check::pass(
                    "fcrdns",
                    format!("{name} resolves back to {ip} (forward-confirmed reverse DNS)"),
                )
                .with("name", name.clone());
                return (ptr, check);
            }
            Ok(found) if found.is_empty() => seen.push(format!("{name} has no address")),
            Ok(found) => seen.push(format!(
                "{name} resolves to {}",
                found
                    .iter()
                    .map(IpAddr::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
            Err(e) => seen.push(format!("{name}: lookup failed ({e})")),
        }
    }
    let all_failed = resolved.iter().all(Result::is_err);
    let detail = format!("{}, not to {ip}", seen.join("; "));
    let fcrdns = if all_failed {
        Check::warn("fcrdns", detail)
    } else {
        Check::fail("fcrdns", detail).advise(
            "give the PTR name an A (or AAAA) record pointing at this address, or change the PTR \
             to a name that has one",
        )
    }
    .with("name", Value::Null);
    (ptr, fcrdns)
}

/// A and AAAA of `name`; Err only when a lookup failed and nothing was found.
async fn addresses_of(name: &str, dns: &DnsResolver) -> Result<Vec<IpAddr>, String> {
    let (a, aaaa) = futures::join!(
        dns.records(name, RecordKind::A),
        dns.records(name, RecordKind::Aaaa)
    );
    let found: Vec<IpAddr> = [&a, &aaaa]
        .iter()
        .flat_map(|l| l.records())
        .filter_map(|r| r.parse().ok())
        .collect();
    match (&a, &aaaa) {
        (RecordLookup::Failed(e), _) | (_, RecordLookup::Failed(e)) if found.is_empty() => {
            Err(e.to_string())
        }
        _ => Ok(found),
    }
}

/// The `helo` check: the name resolves, and to the checked address.
async fn helo_check(helo: Option<&str>, checked: &Checked, dns: &DnsResolver) -> Check {
    let Some(name) = helo else {
        return Check::skip("helo", "no HELO name (give --helo or --from)")
            .with("name", Value::Null);
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if !name.contains('.') {
        return Check::fail(
            "helo",
            format!("{name} is not a fully qualified domain name"),
        )
        .with("name", name)
        .advise("use a full host name (mail.example.org) that resolves to this address");
    }
    let found = match addresses_of(&name, dns).await {
        Ok(found) => found,
        Err(e) => {
            return Check::warn("helo", format!("the lookup of {name} failed: {e}"))
                .with("name", name);
        }
    };
    let listed = found.iter().map(IpAddr::to_string).collect::<Vec<_>>();
    let base = |check: Check| {
        check
            .with("name", name.clone())
            .with("addresses", listed.clone())
    };
    if found.is_empty() {
        return base(Check::fail("helo", format!("{name} does not resolve")))
            .with("matches_ip", Value::Null)
            .advise(
                "give the HELO name an A record for this address (or pass --helo with a name \
                 that has one): many servers refuse a HELO name that does not resolve",
            );
    }
    match checked {
        Ok(ip) if found.contains(ip) => base(Check::pass(
            "helo",
            format!("{name} resolves to {ip}, this machine's address"),
        ))
        .with("matches_ip", true),
        Ok(ip) => base(Check::warn(
            "helo",
            format!("{name} resolves to {}, not to {ip}", listed.join(", ")),
        ))
        .with("matches_ip", false)
        .advise("use a HELO name that resolves to this machine's address (ideally its PTR name)"),
        Err(why) => base(Check::pass(
            "helo",
            format!(
                "{name} resolves to {}; not compared with this machine's address ({why})",
                listed.join(", ")
            ),
        ))
        .with("matches_ip", Value::Null),
    }
}

/// One `dnsbl:<zone>` check.
async fn dnsbl_check(zone: &str, checked: &Checked, dns: &DnsResolver) -> Check {
    let zone = zone.trim_end_matches('.').to_ascii_lowercase();
    let id = format!("dnsbl:{zone}");
    let ip = match checked {
        Ok(ip) => *ip,
        Err(why) => return Check::skip(id, why.clone()).with("listed", Value::Null),
    };
    let query = dnsbl::query_name(ip, &zone);
    let test_query = dnsbl::query_name(IpAddr::V4(dnsbl::TEST_POINT), &zone);
    let (answer, test_point) = futures::join!(
        dns.records(&query, RecordKind::A),
        dns.records(&test_query, RecordKind::A)
    );
    let answered = match &answer {
        RecordLookup::Found(records) => json!(records),
        _ => Value::Null,
    };
    let base = |check: Check, listed: Option<bool>| {
        check
            .with("listed", listed)
            .with("answer", answered.clone())
            .with("query", query.clone())
    };
    let listing = dnsbl::interpret(&answer, Some(&test_point));
    let listed = listing.listed();
    match listing {
        Listing::NotListed => base(Check::pass(&id, format!("{ip} is not listed")), listed),
        Listing::Listed(codes) => base(
            Check::fail(
                &id,
                format!(
                    "{ip} is listed ({})",
                    codes
                        .iter()
                        .map(Ipv4Addr::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
            listed,
        )
        .advise(format!(
            "look {ip} up on {zone}'s web site and request delisting, or probe from another \
             address: listed probers get prober-blocked answers"
        )),
        Listing::Unusable(why) => base(
            Check::warn(&id, format!("the list could not be used: {why}")),
            listed,
        )
        .advise("ask through your own resolver (--dns-server), not a public one"),
    }
}

/// The `port25` check from the connections' outcomes.
fn port25_check(probes: &[Port25Probe], timeout: Duration) -> Check {
    let tried: Vec<&Port25Probe> = probes.iter().filter(|p| p.result.is_some()).collect();
    let count = |r| tried.iter().filter(|p| p.result == Some(r)).count();
    let (open, refused, filtered) = (
        count(Port25Result::Open),
        count(Port25Result::Refused),
        count(Port25Result::Filtered),
    );
    let overall = if open > 0 {
        Some(Port25Result::Open)
    } else if filtered > 0 {
        Some(Port25Result::Filtered)
    } else if refused > 0 {
        Some(Port25Result::Refused)
    } else {
        None
    };
    let summary = probes
        .iter()
        .map(|p| match p.address {
            Some(address) if address.to_string() != p.target => {
                format!("{} ({address}): {}", p.target, p.detail)
            }
            _ => format!("{}: {}", p.target, p.detail),
        })
        .collect::<Vec<_>>()
        .join("; ");
    let check = match overall {
        Some(Port25Result::Open) => Check::pass(
            "port25",
            format!("{open} of {} targets answered: {summary}", probes.len()),
        ),
        None => Check::skip("port25", format!("no target could be tried: {summary}")),
        Some(_) => Check::fail(
            "port25",
            format!(
                "no mail server answered on port 25 ({refused} refused, {filtered} filtered within {}): {summary}",
                humantime::format_duration(timeout)
            ),
        )
        .advise(
            "outbound port 25 is blocked here (most cloud VMs and home connections): ask the \
             provider to open it, or probe from a machine that can reach port 25; \
             --level dns still works",
        ),
    };
    check
        .with("result", overall.map(|r| json!(r)).unwrap_or(Value::Null))
        .with("targets", json!(probes))
}

/// Connects to every target at once.
async fn probe_port25(options: &ProberOptions, dns: &DnsResolver) -> Vec<Port25Probe> {
    let probes = options
        .probe_targets
        .iter()
        .map(|target| probe_target(target, options, dns));
    futures::future::join_all(probes).await
}

async fn probe_target(
    target: &ProbeTarget,
    options: &ProberOptions,
    dns: &DnsResolver,
) -> Port25Probe {
    let unresolved = |detail: String| Port25Probe {
        target: target.to_string(),
        address: None,
        result: None,
        detail,
        local: None,
    };
    let address = match target {
        ProbeTarget::Address(addr) => *addr,
        ProbeTarget::Host(name) => match mail_host_address(name, dns).await {
            Ok(ip) => SocketAddr::new(ip, options.smtp_port),
            Err(why) => return unresolved(why),
        },
    };
    let (result, detail, local) = connect(address, options).await;
    Port25Probe {
        target: target.to_string(),
        address: Some(address),
        result,
        detail,
        local,
    }
}

/// The first address of the most preferred MX host that has one, or the name's own address.
async fn mail_host_address(name: &str, dns: &DnsResolver) -> Result<IpAddr, String> {
    let first = |addresses: &Addresses| match addresses {
        Addresses::Found(ips) => ips.first().copied(),
        _ => None,
    };
    match &*dns.domain(name).await {
        DomainEvidence::Mx(hosts) => hosts
            .iter()
            .find_map(|h| first(&h.addresses))
            .ok_or_else(|| format!("no MX host of {name} resolves")),
        DomainEvidence::NoMx(addresses) => {
            first(addresses).ok_or_else(|| format!("{name} has neither MX nor address"))
        }
        DomainEvidence::NullMx => Err(format!("{name} accepts no mail (null MX)")),
        DomainEvidence::NoSuchDomain => Err(format!("{name} does not exist")),
        DomainEvidence::Failed(e) => Err(format!("the DNS lookup of {name} failed: {e}")),
    }
}

/// One connection: the result, its detail, and the local address used.
async fn connect(
    address: SocketAddr,
    options: &ProberOptions,
) -> (Option<Port25Result>, String, Option<IpAddr>) {
    let wait = options.connect_timeout;
    let socket = match open_socket(address, options.source_ip) {
        Ok(socket) => socket,
        Err(e) => return (None, format!("cannot open a local socket: {e}"), None),
    };
    let stream = match tokio::time::timeout(wait, socket.connect(address)).await {
        Err(_) => {
            return (
                Some(Port25Result::Filtered),
                format!("no answer within {}", humantime::format_duration(wait)),
                None,
            );
        }
        Ok(Err(e)) if is_refusal(&e) => {
            return (
                Some(Port25Result::Refused),
                "connection refused".to_owned(),
                None,
            );
        }
        Ok(Err(e)) => return (Some(Port25Result::Filtered), e.to_string(), None),
        Ok(Ok(stream)) => stream,
    };
    let local = stream.local_addr().ok().map(|a| a.ip());
    let (result, detail) = match tokio::time::timeout(wait, greeting(stream)).await {
        Ok(Ok(Some(reply))) => (Port25Result::Open, reply),
        Ok(Ok(None)) => (
            Port25Result::Refused,
            "connected, but closed without a greeting".to_owned(),
        ),
        Ok(Err(e)) => (Port25Result::Refused, format!("connected, then {e}")),
        Err(_) => (
            Port25Result::Filtered,
            format!(
                "connected, but no greeting within {}",
                humantime::format_duration(wait)
            ),
        ),
    };
    (Some(result), detail, local)
}

fn open_socket(address: SocketAddr, source: Option<IpAddr>) -> std::io::Result<TcpSocket> {
    let socket = if address.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(ip) = source {
        socket.bind(SocketAddr::new(ip, 0))?;
    }
    Ok(socket)
}

fn is_refusal(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::ConnectionReset
    )
}

/// The greeting's last line (`220 mx.example.org ESMTP`), read line by line up to 4 KiB
/// (bytes that are not UTF-8 shown as replacement characters); None when the server closed
/// first. Says QUIT after it, without waiting for the answer.
async fn greeting(stream: TcpStream) -> std::io::Result<Option<String>> {
    let mut reader = BufReader::new(stream);
    let mut read = 0;
    loop {
        let mut line = Vec::new();
        let n = (&mut reader)
            .take(1024)
            .read_until(b'\n', &mut line)
            .await?;
        if n == 0 {
            return Ok(None);
        }
        read += n;
        let line = String::from_utf8_lossy(&line).trim_end().to_owned();
        // A continuation line is `220-…`; the last one has a space (or nothing) after the code.
        let last = line.as_bytes().get(3) != Some(&b'-');
        if last || read > 4096 {
            let _ = reader.get_mut().write_all(b"QUIT\r\n").await;
            return Ok(Some(line));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn probe(result: Option<Port25Result>) -> Port25Probe {
        Port25Probe {
            target: "t".into(),
            address: None,
            result,
            detail: String::new(),
            local: None,
        }
    }

    fn report(results: &[Option<Port25Result>]) -> ProberReport {
        ProberReport {
            egress_ip: None,
            checks: Vec::new(),
            port25: results.iter().map(|r| probe(*r)).collect(),
        }
    }

    #[test]
    fn port25_is_blocked_only_when_no_target_answered() {
        use Port25Result::*;
        assert_eq!(report(&[Some(Open), Some(Filtered)]).port25_blocked(), None);
        assert_eq!(
            report(&[Some(Refused), Some(Filtered), None]).port25_blocked(),
            Some(Filtered)
        );
        assert_eq!(
            report(&[Some(Refused), Some(Refused)]).port25_blocked(),
            Some(Refused)
        );
        // Nothing tried: nothing known.
        assert_eq!(report(&[None, None]).port25_blocked(), None);
        assert_eq!(report(&[]).port25_blocked(), None);
    }

    #[test]
    fn the_port25_check_names_the_overall_result() {
        use Port25Result::*;
        let timeout = Duration::from_secs(10);
        let open = port25_check(&report(&[Some(Refused), Some(Open)]).port25, timeout);
        assert_eq!(open.status, CheckStatus::Pass);
        assert_eq!(open.field("result"), Some(&json!("open")));
        let blocked = port25_check(&report(&[Some(Refused), Some(Filtered)]).port25, timeout);
        assert_eq!(blocked.status, CheckStatus::Fail);
        assert_eq!(blocked.field("result"), Some(&json!("filtered")));
        let refused = port25_check(&report(&[Some(Refused)]).port25, timeout);
        assert_eq!(refused.field("result"), Some(&json!("refused")));
        let none = port25_check(&report(&[None]).port25, timeout);
        assert_eq!(none.status, CheckStatus::Skip);
        assert_eq!(none.field("result"), Some(&Value::Null));
        assert_eq!(
            none.field("targets"),
            Some(&json!([{"target": "t", "address": null, "result": null, "detail": ""}]))
        );
    }

    #[test]
    fn probe_targets_are_names_or_addresses() {
        assert_eq!(
            "Gmail.com.".parse::<ProbeTarget>(),
            Ok(ProbeTarget::Host("gmail.com".into()))
        );
        assert_eq!(
            "127.77.3.1".parse::<ProbeTarget>(),
            Ok(ProbeTarget::Address("127.77.3.1:25".parse().unwrap()))
        );
        assert_eq!(
            "127.0.0.1:2525".parse::<ProbeTarget>(),
            Ok(ProbeTarget::Address("127.0.0.1:2525".parse().unwrap()))
        );
        assert_eq!(
            "[::1]".parse::<ProbeTarget>(),
            Ok(ProbeTarget::Address("[::1]:25".parse().unwrap()))
        );
        assert!("not a host!".parse::<ProbeTarget>().is_err());
        assert!("".parse::<ProbeTarget>().is_err());
    }

    #[test]
    fn a_private_egress_address_is_nat_unless_private_addresses_are_allowed() {
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        let options = ProberOptions::default();
        let (check, checked) = egress_check(ip, "connection", &options);
        assert_eq!(check.status, CheckStatus::Warn);
        assert_eq!(check.field("private"), Some(&json!(true)));
        assert!(checked.is_err());

        let allowed = ProberOptions {
            allow_private: true,
            ..ProberOptions::default()
        };
        let (check, checked) = egress_check(ip, "connection", &allowed);
        assert_eq!(check.status, CheckStatus::Pass);
        assert_eq!(checked, Ok(ip));

        let public: IpAddr = "198.51.100.7".parse().unwrap();
        let behind_nat = ProberOptions {
            public_ip: Some(public),
            ..ProberOptions::default()
        };
        let (check, checked) = egress_check(ip, "connection", &behind_nat);
        assert_eq!(check.field("checked_ip"), Some(&json!("198.51.100.7")));
        assert_eq!(checked, Ok(public));
    }
}
