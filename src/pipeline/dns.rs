//! DNS stage (tokio, from --level dns): each chunk's distinct domains resolved (the resolver
//! shares lookups across chunks and the whole run), up to [`DNS_CHUNKS_IN_FLIGHT`] chunks at
//! once, passed on in input order.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use futures::StreamExt as _;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::dns::{DnsResolver, DomainEvidence};
use crate::interrupt::{Interrupt, requested};
use crate::verdict::{Evidence, Unreadable};
use crate::{Error, Level, VerifyConfig};

use super::{Checked, Failed, StageResult, StageStats};

/// Chunks whose domains are being resolved at once: enough look-ahead (32,768 rows) to keep the
/// resolver busy across chunk boundaries and past a slow domain, few enough to bound memory.
/// 16 was slower on the 200k-domain benchmark, not faster.
const DNS_CHUNKS_IN_FLIGHT: usize = 8;

/// Lookups one chunk has started at once: with [`DNS_CHUNKS_IN_FLIGHT`] chunks, above the
/// resolver's default limit of queries in flight (512), so the limit stays the resolver's.
/// (256 held twice as many lookups waiting for that limit: 5 MB more, no faster.)
const LOOKUPS_PER_CHUNK: usize = 128;

/// The runtime and resolver the DNS and SMTP stages run on.
pub(super) struct DnsStage {
    pub(super) runtime: tokio::runtime::Runtime,
    pub(super) resolver: Arc<DnsResolver>,
}

impl DnsStage {
    /// From --level dns on; set up before any output exists so a bad configuration fails
    /// cleanly.
    pub(super) fn set_up(config: &VerifyConfig) -> Result<Option<DnsStage>, Error> {
        if config.level < Level::Dns {
            return Ok(None);
        }
        // Two workers: hickory spends tens of microseconds of CPU per query, so a busy lookup
        // stream wants both cores.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("prebounce-dns")
            .enable_all()
            .build()
            .map_err(|e| Error::Internal(format!("cannot start the DNS runtime: {e}")))?;
        // The resolver skips AAAA once A gave a usable address, which depends on the policy.
        let dns_config = crate::dns::DnsConfig {
            private_addresses_usable: config.policy.allow_private_mx,
            ..config.dns.clone()
        };
        let resolver = runtime.block_on(async { DnsResolver::new(&dns_config) })?;
        Ok(Some(DnsStage {
            runtime,
            resolver: Arc::new(resolver),
        }))
    }
}

/// The DNS stage's loop: up to [`DNS_CHUNKS_IN_FLIGHT`] chunks resolve concurrently and leave
/// in input order. Ends when the input ends or a later stage stops.
pub(super) async fn dns_stage(
    resolver: Arc<DnsResolver>,
    mut input: mpsc::Receiver<Checked>,
    output: mpsc::Sender<Checked>,
    interrupt: Option<&Interrupt>,
    failed: &Failed,
) -> StageResult {
    let mut pending: VecDeque<JoinHandle<Checked>> = VecDeque::new();
    let mut rows = 0;
    let mut input_open = true;
    while input_open || !pending.is_empty() {
        let room = pending.len() < DNS_CHUNKS_IN_FLIGHT;
        let mut arrived = None;
        let mut finished = None;
        tokio::select! {
            msg = input.recv(), if input_open && room => arrived = Some(msg),
            done = async { pending.front_mut().expect("guarded").await }, if !pending.is_empty() => {
                finished = Some(done)
            }
            // A stop request: the lookups in flight are abandoned (a silent resolver would
            // hold the run for their whole timeout); their rows are not written.
            () = requested(interrupt) => {
                pending.iter().for_each(JoinHandle::abort);
                break;
            }
        }
        match arrived {
            Some(Some(checked)) => {
                pending.push_back(tokio::spawn(resolve_chunk(checked, Arc::clone(&resolver))))
            }
            Some(None) => input_open = false,
            None => {}
        }
        if let Some(done) = finished {
            pending.pop_front();
            let checked = done.map_err(|e| {
                failed.raise(Error::Internal(format!("a DNS lookup task failed: {e}")))
            })?;
            rows += checked.rows.len() as u64;
            if output.send(checked).await.is_err() {
                break;
            }
        }
    }
    Ok(StageStats { rows, cached: 0 })
}

/// One chunk: look up each distinct domain and attach the answer to every row at that domain.
async fn resolve_chunk(mut checked: Checked, resolver: Arc<DnsResolver>) -> Checked {
    let mut domains: Vec<&str> = checked
        .rows
        .iter()
        .filter_map(|row| match &row.evidence {
            Evidence::Syntax(Ok(a)) => Some(a.domain_ascii()),
            _ => None,
        })
        .collect();
    if resolver.shares_lookups() {
        domains.sort_unstable();
        domains.dedup();
    }
    // A lookup's future is over a kilobyte, so a chunk's thousands of domains are not all
    // started at once (that cost 185 MB at 16 chunks in flight); the resolver's own limit
    // bounds the queries on the wire.
    // (Owned names: a future borrowing the chunk's rows would not be 'static for spawn.)
    let by_domain: HashMap<String, Arc<DomainEvidence>> =
        futures::stream::iter(domains.into_iter().map(str::to_owned))
            .map(|domain| {
                let resolver = Arc::clone(&resolver);
                async move {
                    let answer = resolver.domain(&domain).await;
                    (domain, answer)
                }
            })
            .buffer_unordered(LOOKUPS_PER_CHUNK)
            .collect()
            .await; // per-row mode: any answer for a domain is as good as another
    for row in &mut checked.rows {
        if let Evidence::Syntax(Ok(_)) = &row.evidence {
            let Evidence::Syntax(Ok(address)) = std::mem::replace(
                &mut row.evidence,
                Evidence::Unreadable(Unreadable::MissingEmailCell),
            ) else {
                unreachable!("matched above");
            };
            let dns = Arc::clone(&by_domain[address.domain_ascii()]);
            row.evidence = Evidence::Domain {
                address,
                dns,
                smtp: None,
            };
        }
    }
    checked
}
