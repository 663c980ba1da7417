//! The resolver: hickory-resolver on tokio, with a run-wide single-flight cache so each domain
//! gets exactly one MX lookup and each MX host one address lookup, however many rows share them.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::proto::op::ResponseCode;
use hickory_resolver::proto::rr::{RData, RecordType};
use tokio::sync::{OnceCell, Semaphore};

use super::{Addresses, DomainEvidence, Failure, MxHost, RecordKind, RecordLookup};

/// How to reach the DNS.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// Servers to ask instead of the system configuration (/etc/resolv.conf).
    pub servers: Vec<SocketAddr>,
    /// Per query attempt.
    pub timeout: Duration,
    /// Retries after a query's first try before giving up with `dns-timeout` (hickory's
    /// `attempts`: 1 means two tries).
    pub attempts: usize,
    /// Lookups in flight at once.
    pub concurrency: usize,
    /// Count loopback/private addresses as usable (`--allow-private-mx`; the pipeline sets it
    /// from the policy): then an A record of any kind makes the AAAA query unnecessary.
    pub private_addresses_usable: bool,
    /// Share one lookup per domain and per MX host across the run (always, except to measure
    /// what that saves: the benchmark's one-lookup-per-row baseline).
    pub share_lookups: bool,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            servers: Vec::new(),
            timeout: Duration::from_secs(5),
            attempts: 1,
            concurrency: 512,
            private_addresses_usable: false,
            share_lookups: true,
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DnsSetupError {
    #[error(
        "cannot read the system DNS configuration ({0}); name a server with --dns-server IP:PORT"
    )]
    SystemConfig(String),
    #[error("cannot set up the DNS resolver: {0}")]
    Build(String),
}

/// Counters for summary.json.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct DnsStats {
    pub unique_domains: u64,
    /// Domains whose lookup has finished (for progress; equals unique_domains at the end).
    #[serde(skip)]
    pub resolved_domains: u64,
    /// Queries prebounce asked for (MX, A, AAAA). The resolver's own retries and CNAME chases
    /// are not counted, so a server may see a few more.
    pub queries: u64,
    /// Queries that failed other than with a definite answer (SERVFAIL, REFUSED, timeout …).
    pub errors: u64,
}

/// One name's lookup: in flight, shared by every caller that asks meanwhile, then its answer
/// alone. Keeping only the answer matters at a few hundred thousand domains: the single-flight
/// cell (with its semaphore) is over a hundred bytes a name.
#[derive(Clone)]
enum Slot<T> {
    Resolving(Arc<OnceCell<T>>),
    Known(T),
}

/// By name (boxed: 8 bytes less a name than a String, at hundreds of thousands of names).
type Slots<T> = Mutex<HashMap<Box<str>, Slot<T>>>;

pub struct DnsResolver {
    resolver: TokioResolver,
    domains: Slots<Arc<DomainEvidence>>,
    hosts: Slots<Addresses>,
    limit: Semaphore,
    share_lookups: bool,
    private_usable: bool,
    queries: AtomicU64,
    errors: AtomicU64,
    resolved: AtomicU64,
    /// Randomness for ordering MX hosts of equal preference.
    shuffle: RandomState,
}

impl DnsResolver {
    /// Must be called inside a tokio runtime.
    pub fn new(config: &DnsConfig) -> Result<Self, DnsSetupError> {
        let provider = TokioRuntimeProvider::default();
        let mut builder = if config.servers.is_empty() {
            TokioResolver::builder(provider)
                .map_err(|e| DnsSetupError::SystemConfig(e.to_string()))?
        } else {
            let servers = config
                .servers
                .iter()
                .map(|addr| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = addr.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = addr.port();
                    NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
                })
                .collect();
            TokioResolver::builder_with_config(ResolverConfig::from_name_servers(servers), provider)
        };
        let opts = builder.options_mut();
        opts.timeout = config.timeout;
        opts.attempts = config.attempts;
        // Never /etc/hosts: an MX host's address must come from the DNS.
        opts.use_hosts_file = ResolveHosts::Never;
        // One server at a time, so the server sees one query per lookup, not one per server.
        opts.num_concurrent_reqs = 1;
        opts.max_active_requests = config.concurrency.max(32) * 4;
        opts.ndots = 0;
        // Answers are kept per domain and per host by this type for the whole run; hickory's
        // own cache would only duplicate them (and cost an insert per query).
        opts.cache_size = 0;
        let resolver = builder
            .build()
            .map_err(|e| DnsSetupError::Build(e.to_string()))?;
        Ok(DnsResolver {
            resolver,
            domains: Mutex::default(),
            hosts: Mutex::default(),
            limit: Semaphore::new(config.concurrency.max(1)),
            share_lookups: config.share_lookups,
            private_usable: config.private_addresses_usable,
            queries: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            resolved: AtomicU64::new(0),
            shuffle: RandomState::new(),
        })
    }

    pub fn shares_lookups(&self) -> bool {
        self.share_lookups
    }

    pub fn stats(&self) -> DnsStats {
        DnsStats {
            unique_domains: self.domains.lock().map_or(0, |d| d.len() as u64),
            resolved_domains: self.resolved.load(Ordering::Relaxed),
            queries: self.queries.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }

    /// What the DNS says about `domain` (lower-case ASCII). Concurrent calls for one domain
    /// share a single lookup; later calls get the cached answer, negative ones included.
    pub async fn domain(&self, domain: &str) -> Arc<DomainEvidence> {
        if !self.share_lookups {
            // Still counted as a unique domain.
            let _ = slot(&self.domains, domain);
            return Arc::new(self.lookup_domain(domain).await);
        }
        let cell = match slot(&self.domains, domain) {
            Slot::Known(evidence) => return evidence,
            Slot::Resolving(cell) => cell,
        };
        let evidence = cell
            .get_or_init(|| async { Arc::new(self.lookup_domain(domain).await) })
            .await
            .clone();
        settle(&self.domains, domain, &evidence);
        evidence
    }

    async fn lookup_domain(&self, domain: &str) -> DomainEvidence {
        let evidence = self.ask_domain(domain).await;
        self.resolved.fetch_add(1, Ordering::Relaxed);
        evidence
    }

    async fn ask_domain(&self, domain: &str) -> DomainEvidence {
        let answer = match self.query(domain, RecordType::MX).await {
            Ok(records) => records,
            Err(e) if e.is_nx_domain() => return DomainEvidence::NoSuchDomain,
            Err(e) if e.is_no_records_found() => {
                // Through the host cache: the domain may also be another domain's MX host.
                return DomainEvidence::NoMx(self.host(domain).await);
            }
            Err(e) => return DomainEvidence::Failed(failure(&e)),
        };
        let mut mx: Vec<(u16, String)> = answer
            .iter()
            .filter_map(|r| match r {
                RData::MX(m) => Some((
                    m.preference,
                    m.exchange
                        .to_ascii()
                        .trim_end_matches('.')
                        .to_ascii_lowercase(),
                )),
                _ => None,
            })
            .collect();
        if mx.is_empty() {
            return DomainEvidence::NoMx(self.host(domain).await);
        }
        // RFC 7505: "MX 0 ." means no mail at all. An RRset of nothing but "." says the same;
        // a "." among real hosts is ignored.
        if mx.iter().all(|(_, name)| name.is_empty()) {
            return DomainEvidence::NullMx;
        }
        mx.retain(|(_, name)| !name.is_empty());
        // Preference order; equal preferences in random order (RFC 5321 §5.1).
        mx.sort_by_key(|(pref, name)| (*pref, self.shuffle.hash_one(name)));
        let lookups = mx.iter().map(|(_, name)| self.host(name));
        let addresses = futures::future::join_all(lookups).await;
        DomainEvidence::Mx(
            mx.into_iter()
                .zip(addresses)
                .map(|((preference, name), addresses)| MxHost {
                    preference,
                    name,
                    addresses,
                })
                .collect(),
        )
    }

    /// Addresses of an MX host, looked up once per run.
    async fn host(&self, name: &str) -> Addresses {
        if !self.share_lookups {
            return self.addresses(name).await;
        }
        let cell = match slot(&self.hosts, name) {
            Slot::Known(addresses) => return addresses,
            Slot::Resolving(cell) => cell,
        };
        let addresses = cell.get_or_init(|| self.addresses(name)).await.clone();
        settle(&self.hosts, name, &addresses);
        addresses
    }

    /// A of `name`, and AAAA only when A gave no usable (routable, or any with
    /// `--allow-private-mx`) address: mail goes over IPv4 when it can, an IPv6-only or
    /// dual-stack host with a private A is still judged by its AAAA, and the common case costs
    /// one query instead of two.
    ///
    /// A failed query leaves the answer undecided unless the other one already found a routable
    /// address: the failed one might have given one.
    async fn addresses(&self, name: &str) -> Addresses {
        let mut failed = None;
        let mut found: Vec<IpAddr> = Vec::new();
        for rtype in [RecordType::A, RecordType::AAAA] {
            match self.query(name, rtype).await {
                Ok(records) => found.extend(records.iter().filter_map(|r| match r {
                    RData::A(a) => Some(IpAddr::V4(a.0)),
                    RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                    _ => None,
                })),
                // NXDOMAIN: the name does not exist, so it has no AAAA either.
                Err(e) if e.is_nx_domain() => break,
                Err(e) if e.is_no_records_found() => {}
                Err(e) => failed = Some(failure(&e)),
            }
            if found
                .iter()
                .any(|ip| self.private_usable || super::is_routable(*ip))
            {
                return Addresses::Found(found);
            }
        }
        match failed {
            Some(f) => Addresses::Failed(f),
            None if found.is_empty() => Addresses::None,
            None => Addresses::Found(found),
        }
    }

    /// One query of `name` for the preflight checks, its records as text (see
    /// [`RecordLookup`]). Counted like the stage's own queries.
    pub async fn records(&self, name: &str, kind: RecordKind) -> RecordLookup {
        let rtype = match kind {
            RecordKind::A => RecordType::A,
            RecordKind::Aaaa => RecordType::AAAA,
            RecordKind::Mx => RecordType::MX,
            RecordKind::Txt => RecordType::TXT,
            RecordKind::Ptr => RecordType::PTR,
        };
        match self.query(name.trim_end_matches('.'), rtype).await {
            Ok(records) => RecordLookup::Found(records.iter().filter_map(record_text).collect()),
            Err(e) if e.is_nx_domain() => RecordLookup::NxDomain,
            Err(e) if e.is_no_records_found() => RecordLookup::NoData,
            Err(e) => RecordLookup::Failed(failure(&e)),
        }
    }

    /// One query, within the concurrency limit. The name is made absolute so no search domain
    /// of the system configuration is ever appended.
    async fn query(&self, name: &str, rtype: RecordType) -> Result<Vec<RData>, NetError> {
        let _permit = self.limit.acquire().await;
        self.queries.fetch_add(1, Ordering::Relaxed);
        let fqdn = format!("{name}.");
        let result = self
            .resolver
            .lookup(fqdn.as_str(), rtype)
            .await
            .map(|lookup| lookup.answers().iter().map(|r| r.data.clone()).collect());
        if let Err(e) = &result
            && !e.is_no_records_found()
        {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        result
    }
}

/// `key`'s slot, a new lookup's if it has none.
fn slot<T: Clone>(map: &Slots<T>, key: &str) -> Slot<T> {
    let mut map = map.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(slot) = map.get(key) {
        return slot.clone();
    }
    let slot = Slot::Resolving(Arc::new(OnceCell::new()));
    map.insert(key.into(), slot.clone());
    slot
}

/// The lookup of `key` is done: later callers get `answer` without the in-flight cell.
fn settle<T: Clone>(map: &Slots<T>, key: &str, answer: &T) {
    let mut map = map.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(slot @ Slot::Resolving(_)) = map.get_mut(key) {
        *slot = Slot::Known(answer.clone());
    }
}

/// A record as text; a CNAME the resolver followed on the way gives none.
fn record_text(data: &RData) -> Option<String> {
    let name = |n: &hickory_resolver::proto::rr::Name| {
        n.to_ascii().trim_end_matches('.').to_ascii_lowercase()
    };
    match data {
        RData::A(a) => Some(a.0.to_string()),
        RData::AAAA(a) => Some(a.0.to_string()),
        RData::MX(mx) => Some(format!("{} {}", mx.preference, name(&mx.exchange))),
        RData::PTR(ptr) => Some(name(&ptr.0)),
        // RFC 7208 §3.3: the strings of one TXT record are joined without anything between.
        RData::TXT(txt) => Some(
            txt.txt_data
                .iter()
                .map(|s| String::from_utf8_lossy(s))
                .collect(),
        ),
        _ => None,
    }
}

fn failure(e: &NetError) -> Failure {
    match e {
        NetError::Timeout => Failure::Timeout,
        NetError::Dns(DnsError::ResponseCode(ResponseCode::ServFail)) => Failure::ServFail,
        NetError::Dns(DnsError::ResponseCode(ResponseCode::Refused)) => Failure::Refused,
        other => {
            let text = other.to_string();
            if text.contains("timed out") {
                Failure::Timeout
            } else {
                Failure::Other(text)
            }
        }
    }
}
