//! Wires the stages, each on its own thread, joined by bounded channels so the run streams and
//! memory stays flat whatever the input size:
//!
//! read (chunks of rows) → check (syntax, rayon; also the suppression list and, at level dns,
//! the domains' stored verdicts) → store (the other cached verdicts, and the previous ones for
//! changes.csv: rows answered here or earlier skip the network) → dns (tokio, from --level dns) →
//! smtp (tokio, --level smtp; commits each domain's verdicts to the store as its probe ends) →
//! format (marks repeats in input order, decides verdicts and serialises rows, rayon) →
//! write (the lists; the other new verdicts go to the store writer, see `store::writer`).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use tokio::sync::mpsc;

use crate::dns::{DnsResolver, DomainEvidence};
use crate::forecast::{Forecast, PriorTable};
use crate::grouping::{DomainTally, GroupIndex, MAX_GROUPS, group_key, malformed_domain};
use crate::input::{Chunk, Dialect, InputError, InputReader};
use crate::output::summary::{
    Changes, GroupBy, GroupSummary, InputShape, ReasonCount, StatusCounts, StatusShares,
    StoreSummary, Summary, thousands,
};
use crate::output::{FieldEncoder, ListWriters, prepare_out_dir};
use crate::smtp::probe::{CatchAll, MxTarget, Prober, SmtpEvidence, SmtpOutcome, targets_of};
use crate::store::{
    CachePolicy, DnsVerdicts, Previous, Prior, Record, Store, StoreError, StoreWriter,
    SuppressionSet, Write,
};
use crate::syntax::{self, Address, Flags, SyntaxOptions};
use crate::verdict::{self, Evidence, Policy, Reason, Status, Unreadable};
use crate::{Error, Level, ProgressMode, VerifyConfig};

/// Rows per chunk: large enough to amortise channel and rayon overhead, small enough that the
/// chunks in flight stay a few MB.
const CHUNK_ROWS: usize = 8192;
/// Rows serialised by one rayon task.
const SERIALIZE_BATCH: usize = 1024;
/// Chunks in flight between two stages.
const CHANNEL_DEPTH: usize = 4;
/// Chunks whose domains are being resolved at once: enough look-ahead to keep the resolver busy
/// across chunk boundaries, few enough to bound memory.
const DNS_CHUNKS_IN_FLIGHT: usize = 16;
/// Rows the SMTP stage gathers before probing, so a domain's addresses from anywhere in the
/// window share sessions (and one catch-all canary) instead of one session per chunk. An SMTP
/// run is paced by the servers, not by memory: holding this many rows (~100 MB) is cheap.
const SMTP_WINDOW_ROWS: usize = 500_000;

/// Identity of a malformed address: its text, case-folded and marked so it never equals a
/// well-formed address's key, so repeats of one bad cell are flagged (and forecast) once.
fn malformed_identity_hash(text: &str) -> u64 {
    syntax::identity_hash_of(&format!("\u{0}{}", text.to_lowercase()))
}

/// The set stores hashes already: don't hash them again.
#[derive(Default)]
pub(crate) struct PassThroughHasher(u64);
impl Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}
type SeenSet = std::collections::HashSet<u64, BuildHasherDefault<PassThroughHasher>>;
/// With --group-by: each address's identity → the group it was first seen in.
type FirstGroupMap = HashMap<u64, u32, BuildHasherDefault<PassThroughHasher>>;

/// Duplicate detection, in input order. With --group-by it also assigns each row its group and
/// remembers where each address was first seen, to tell a repeat within a group from one
/// across groups.
enum Dedup {
    Plain(SeenSet),
    Grouped {
        index: GroupIndex,
        first_group: FirstGroupMap,
    },
}

fn gather_evidence(chunk: &Chunk, r: usize, dialect: &Dialect, opts: SyntaxOptions) -> Evidence {
    if let Some(problem) = chunk.rows[r].problem {
        return Evidence::Unreadable(Unreadable::Row(problem));
    }
    let Some(cell) = chunk.field(r, dialect.email_column) else {
        return Evidence::Unreadable(Unreadable::MissingEmailCell);
    };
    match std::str::from_utf8(cell) {
        Ok(text) => Evidence::Syntax(syntax::check(text, opts)),
        Err(e) => Evidence::Unreadable(Unreadable::NotUtf8 {
            valid_up_to: e.valid_up_to(),
        }),
    }
}

/// One row after the check (and DNS) stages: its evidence, awaiting a verdict.
struct RowCheck {
    evidence: Evidence,
    /// The email cell held something to send to (not empty, not an unreadable row): the rows
    /// the forecast averages over.
    sendable: bool,
    /// Identity for duplicate detection (None when the row has no well-formed address).
    dedup_hash: Option<u64>,
    duplicate: bool,
    /// With --group-by: the hash of the row's group cell (from the check stage), the row's
    /// group id, and whether its address was first seen in another group.
    group_key: u64,
    group: u32,
    cross_group: bool,
    /// The address's previous verdict, when the store has one to compare with (changes.csv).
    previous: Option<Box<Previous>>,
}

/// Checked rows of one chunk.
struct Checked {
    chunk: Chunk,
    rows: Vec<RowCheck>,
}

/// What one row adds to the tallies: everything [`Tally::count`] needs, in 24 bytes, so the
/// per-group tallies can be fed from a compact array instead of the rows themselves.
#[derive(Clone, Copy)]
struct Outcome {
    reason: Reason,
    flags: Flags,
    suggestion: bool,
    duplicate: bool,
    cross_group: bool,
    has_address: bool,
    sendable: bool,
    p: f64,
}

impl Outcome {
    fn of(row: &RowCheck, reason: Reason, priors: &PriorTable) -> Outcome {
        let address = row.evidence.address();
        let mut flags = address.map_or(Flags::default(), |a| a.flags);
        if row.duplicate {
            flags.insert(Flags::DUPLICATE);
        }
        Outcome {
            reason,
            flags,
            suggestion: address.and_then(Address::suggestion).is_some(),
            duplicate: row.duplicate,
            cross_group: row.cross_group,
            has_address: address.is_some(),
            sendable: row.sendable,
            p: priors.bounce_p(reason, flags),
        }
    }
}

/// Running totals; per batch in parallel, merged in order. With --group-by, one per group too.
#[derive(Default)]
struct Tally {
    rows: u64,
    unique: u64,
    duplicates: u64,
    /// Of `duplicates`: repeats of an address first seen in another group (--group-by).
    duplicates_across_groups: u64,
    suggestions: u64,
    status: StatusCounts,
    reasons: [u64; Reason::ALL.len()],
    flags: [u64; Flags::ALL.len()],
    forecast: Forecast,
}

impl Tally {
    fn count(&mut self, o: &Outcome) {
        let status = o.reason.status();
        self.rows += 1;
        self.status.add(status);
        self.reasons[o.reason.index()] += 1;
        for (i, (flag, _)) in Flags::ALL.iter().enumerate() {
            if o.flags.contains(*flag) {
                self.flags[i] += 1;
            }
        }
        if o.duplicate {
            self.duplicates += 1;
            if o.cross_group {
                self.duplicates_across_groups += 1;
            }
        } else if o.has_address {
            self.unique += 1;
        }
        if o.suggestion {
            self.suggestions += 1;
        }
        if o.sendable {
            self.forecast.add(status, o.reason, o.flags, o.p);
        }
    }

    fn merge(&mut self, o: &Tally) {
        self.rows += o.rows;
        self.unique += o.unique;
        self.duplicates += o.duplicates;
        self.duplicates_across_groups += o.duplicates_across_groups;
        self.suggestions += o.suggestions;
        self.status.merge(&o.status);
        for (a, b) in self.reasons.iter_mut().zip(o.reasons) {
            *a += b;
        }
        for (a, b) in self.flags.iter_mut().zip(o.flags) {
            *a += b;
        }
        self.forecast.merge(&o.forecast);
    }
}

/// Rows per status at one domain, counted within a batch.
type DomainCounts = [u64; 4];

/// Output rows of one batch, one buffer per list, plus the batch's tallies.
struct Serialized {
    lists: [Vec<u8>; 4],
    tally: Tally,
    /// The batch's rows per domain (keyed by the domain's shared analysis, so a row costs a
    /// pointer lookup), merged by name into the run's [`DomainTally`] by the writer.
    domains: Vec<(Arc<crate::syntax::DomainFacts>, DomainCounts)>,
    /// Malformed addresses' domains (the text after the last @) and their status.
    malformed_domains: Vec<(String, Status)>,
    /// With --group-by: each row's group and outcome, in order, for the per-group tallies.
    group_rows: Vec<(u32, Outcome)>,
    /// New verdicts for the store: at level smtp those of the rows the SMTP stage left (per
    /// address), at level dns packed, with the first of each domain in the batch (the list
    /// writer sends each domain's verdict to the store once a run).
    records: Vec<Record>,
    dns_records: DnsVerdicts,
    domain_firsts: Vec<DomainFirst>,
    /// Rows whose status differs from their previous verification: changes.csv rows.
    changes: Vec<u8>,
    /// `previous→new` status of each of them, for summary.json.
    transitions: Vec<(Status, Status)>,
}

/// A batch's first dns-level verdict of a domain: `dns_records.get(record)`, with the detail
/// and MX that belong to its domain.
struct DomainFirst {
    record: usize,
    detail: String,
    mx: Option<String>,
}

/// What the format stage needs besides the rows.
struct FormatContext<'a> {
    dialect: &'a Dialect,
    row_format: RowFormat,
    priors: PriorTable,
    policy: Policy,
    /// --group-by is on: batches record each row's group and outcome.
    grouping: bool,
    /// With a store at level dns or smtp: the level verdicts are stored at.
    store_level: Option<Level>,
    /// With a store: when this run (or the interrupted run it resumes) started.
    run_started: i64,
    /// This run, among the process's ([`RUNS`]).
    run_id: u64,
}

/// Domain analyses by address, each holding its analysis (see [`DOMAINS_SENT`]).
type AnalysesSent = HashMap<usize, Arc<crate::syntax::DomainFacts>, ahash::RandomState>;

/// The runs of this process, so that what a format thread remembers belongs to one run.
static RUNS: AtomicU64 = AtomicU64::new(0);

/// Bounds a format thread's [`DOMAINS_SENT`]: past it, domains are sent again (harmless, the list
/// writer keeps the first).
const MAX_DOMAINS_SENT: usize = 1 << 20;

thread_local! {
    /// The domain analyses whose dns-level verdict this format thread sent to the store during
    /// run `.0`, by address (each entry holds its analysis, so the address cannot be reused
    /// for another domain). A domain's verdict then travels about once a thread, not once a
    /// batch: a batch of 1,024 rows over many domains would send one nearly every row.
    static DOMAINS_SENT: std::cell::RefCell<(u64, AnalysesSent)> = Default::default();
}

/// Whether this thread sends `domain`'s verdict to the store for the first time in run `run_id`.
fn first_sent_by_this_thread(run_id: u64, domain: &Arc<crate::syntax::DomainFacts>) -> bool {
    DOMAINS_SENT.with_borrow_mut(|(run, sent)| {
        if *run != run_id || sent.len() >= MAX_DOMAINS_SENT {
            sent.clear();
            *run = run_id;
        }
        match sent.entry(Arc::as_ptr(domain) as usize) {
            std::collections::hash_map::Entry::Occupied(_) => false,
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(Arc::clone(domain));
                true
            }
        }
    })
}

/// Decide and format rows `first..first+rows.len()` of `chunk`: original cells as parsed (padded
/// when short, extras moved into the detail) followed by the prebounce columns.
fn serialize_batch(
    chunk: &Chunk,
    first: usize,
    rows: &[RowCheck],
    cx: &FormatContext,
) -> Serialized {
    let (width, delim) = (cx.dialect.width, cx.dialect.delimiter);
    let enc = &cx.row_format.encoder;
    let mut lists: [Vec<u8>; 4] = Default::default();
    let mut tally = Tally::default();
    let mut domains: Vec<(Arc<crate::syntax::DomainFacts>, DomainCounts)> = Vec::new();
    // Domain analyses are shared (one Arc per domain and thread), so their address finds a
    // batch's entry without hashing the name. The entry holds the Arc, so the address cannot
    // be reused for another domain while the batch runs. (Hashed with ahash: an address's low
    // bits are all alignment zeros.)
    let mut domain_slot: HashMap<usize, usize, ahash::RandomState> = HashMap::default();
    let mut malformed_domains = Vec::new();
    let mut group_rows = Vec::with_capacity(if cx.grouping { rows.len() } else { 0 });
    let mut detail = String::new();
    let mut normalized = String::new();
    // Probabilities repeat across rows (one per reason and flag floor): format each once.
    let mut p_texts: Vec<(u64, String)> = Vec::new();
    let mut records = Vec::new();
    let now = cx.store_level.map_or(0, |_| crate::store::now());
    let mut dns_records = DnsVerdicts::new(now);
    let mut domain_firsts = Vec::new();
    let mut changes = Vec::new();
    let mut transitions = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let r = first + i;
        let mut v = verdict::decide(&row.evidence, cx.policy);
        let address = row.evidence.address();
        let outcome = Outcome::of(row, v.reason, &cx.priors);
        let (flags, p) = (outcome.flags, outcome.p);
        let suggestion = address.and_then(Address::suggestion);
        tally.count(&outcome);
        if cx.grouping {
            group_rows.push((row.group, outcome));
        }
        match &row.evidence {
            Evidence::Syntax(Err(e)) if !matches!(e, syntax::SyntaxError::Empty) => {
                let malformed = chunk
                    .field(r, cx.dialect.email_column)
                    .and_then(|c| std::str::from_utf8(c).ok())
                    .and_then(malformed_domain);
                if let Some(d) = malformed {
                    malformed_domains.push((d, v.status));
                }
            }
            evidence => {
                if let Some(a) = evidence.address() {
                    let slot = *domain_slot
                        .entry(Arc::as_ptr(&a.domain) as usize)
                        .or_insert_with(|| {
                            domains.push((Arc::clone(&a.domain), [0; 4]));
                            domains.len() - 1
                        });
                    domains[slot].1[v.status.index()] += 1;
                }
            }
        }

        let found = chunk.fields(r).len();
        detail.clear();
        detail.push_str(&v.detail);
        if found > width {
            // Keep the extra cells' bytes in the detail rather than shifting the columns.
            let extra: Vec<String> = chunk
                .fields(r)
                .skip(width)
                .map(|f| String::from_utf8_lossy(f).into_owned())
                .collect();
            let _ = write!(
                detail,
                "; cells beyond column {width}: {}",
                extra.join(" | ")
            );
        }
        normalized.clear();
        if let Some(a) = address {
            normalized.push_str(&a.local);
            normalized.push('@');
            normalized.push_str(a.domain_unicode());
        }
        let bits = p.to_bits();
        let k = match p_texts.iter().position(|(b, _)| *b == bits) {
            Some(k) => k,
            None => {
                p_texts.push((bits, format!("{p:.4}")));
                p_texts.len() - 1
            }
        };

        if let (Some(prev), false) = (&row.previous, row.duplicate)
            && prev.status != v.status
        {
            transitions.push((prev.status, v.status));
            for (k, cell) in [
                normalized.as_str(),
                prev.status.as_str(),
                prev.reason.as_str(),
                &crate::output::summary::rfc3339_utc(
                    std::time::UNIX_EPOCH + Duration::from_secs(prev.verified_at.max(0) as u64),
                ),
                v.status.as_str(),
                v.reason.as_str(),
            ]
            .into_iter()
            .enumerate()
            {
                if k > 0 {
                    changes.push(b',');
                }
                cx.row_format
                    .changes_encoder
                    .push(&mut changes, cell.as_bytes());
            }
            changes.push(b'\n');
        }

        let out = &mut lists[v.status.index()];
        match chunk.raw(r) {
            // A quote-free row of the right width is already its own CSV encoding.
            Some(raw) if found == width => out.extend_from_slice(raw),
            _ => {
                let padding = std::iter::repeat_n(&b""[..], width.saturating_sub(found));
                for (k, cell) in chunk.fields(r).take(width).chain(padding).enumerate() {
                    if k > 0 {
                        out.push(delim);
                    }
                    enc.push(out, cell);
                }
            }
        }
        out.extend_from_slice(&cx.row_format.status_and_reason[v.reason.index()]);
        for cell in [
            detail.as_str(),
            normalized.as_str(),
            suggestion.unwrap_or(""),
        ] {
            out.push(delim);
            enc.push(out, cell.as_bytes());
        }
        out.extend_from_slice(&cx.row_format.flags[flags.bits() as usize]);
        for cell in [p_texts[k].1.as_str(), v.mx.as_deref().unwrap_or("")] {
            out.push(delim);
            enc.push(out, cell.as_bytes());
        }
        out.push(b'\n');
        // Last: the store's record takes the verdict's detail and MX.
        if let (Some(level), false) = (cx.store_level, row.duplicate) {
            // Verdicts probed at level smtp were committed by the SMTP stage; the rows it
            // leaves without SMTP evidence are the domains that take no mail (a final verdict).
            let verified = match &row.evidence {
                Evidence::Domain { smtp: None, .. } => {
                    level == Level::Dns || v.reason != Reason::DomainAcceptsMail
                }
                // A resumed run answers the rest of a domain from the verdict it stored before
                // the interruption: that verifies these addresses in this run too.
                Evidence::Stored { prior, .. } => {
                    level == Level::Dns
                        && prior.level == Level::Dns
                        && prior.verified_at >= cx.run_started
                }
                _ => false,
            };
            if verified {
                let fresh = matches!(row.evidence, Evidence::Domain { .. });
                match (level, address) {
                    // A dns-level verdict is its domain's, so its detail and MX are stored
                    // once, with the domain (from the batch's first row there).
                    (Level::Dns, Some(a)) => {
                        if fresh && first_sent_by_this_thread(cx.run_id, &a.domain) {
                            domain_firsts.push(DomainFirst {
                                record: dns_records.len(),
                                detail: std::mem::take(&mut v.detail).into_owned(),
                                mx: v.mx.take().map(Cow::into_owned),
                            });
                        }
                        dns_records.push(|key| a.push_dedup_key(key), v.reason);
                    }
                    _ => records.push(Record {
                        key: address.map(Address::dedup_key).unwrap_or_default(),
                        reason: v.reason,
                        detail: std::mem::take(&mut v.detail).into_owned(),
                        mx: v.mx.take().map(Cow::into_owned),
                        level,
                        verified_at: now,
                        reply: None,
                    }),
                }
            }
        }
    }
    Serialized {
        lists,
        tally,
        domains,
        malformed_domains,
        group_rows,
        records,
        dns_records,
        domain_firsts,
        changes,
        transitions,
    }
}

/// Check stage, parallel: the syntax evidence of every row of a chunk, and the answers the
/// check threads can give by themselves (suppressed rows, rows answered by their domain's
/// stored verdict). Returns the rows answered from the store too.
fn check_chunk(
    chunk: Chunk,
    dialect: &Dialect,
    opts: SyntaxOptions,
    group_column: Option<usize>,
    early: Option<&EarlyAnswers>,
) -> (Checked, u64) {
    let rows: Vec<RowCheck> = (0..chunk.len())
        .into_par_iter()
        .with_min_len(256)
        .map(|r| {
            let mut evidence = gather_evidence(&chunk, r, dialect, opts);
            let sendable = !matches!(
                evidence,
                Evidence::Unreadable(_) | Evidence::Syntax(Err(syntax::SyntaxError::Empty))
            );
            let dedup_hash = match &evidence {
                Evidence::Syntax(Err(_)) if sendable => chunk
                    .field(r, dialect.email_column)
                    .and_then(|c| std::str::from_utf8(c).ok())
                    .map(|text| malformed_identity_hash(syntax::normalize_input(text))),
                _ => evidence.address().map(Address::identity_hash),
            };
            if let Some(early) = early {
                evidence = early.answer(evidence);
            }
            RowCheck {
                evidence,
                sendable,
                dedup_hash,
                duplicate: false,
                group_key: group_column.map_or(0, |c| group_key(&chunk, r, c)),
                group: 0,
                cross_group: false,
                previous: None,
            }
        })
        .collect();
    let hits = match early {
        Some(_) => rows
            .iter()
            .filter(|row| matches!(row.evidence, Evidence::Stored { .. }))
            .count() as u64,
        None => 0,
    };
    (Checked { chunk, rows }, hits)
}

/// What the store knows of each domain, by ASCII name.
type DomainStates = HashMap<String, DomainState, ahash::RandomState>;

/// What the check threads answer rows from, the same for the whole run: the suppression list
/// and, at level dns over a store read whole, the domains' verdicts. A second run over a list
/// is mostly such rows: answered here, their lookup and the update of their verdict's shared
/// reference count are spread over the check threads instead of queueing in the store stage's
/// one thread.
struct EarlyAnswers {
    suppressions: SuppressionSet,
    /// Level dns: every domain of the store (read whole when the run started).
    domains: Option<Arc<DomainStates>>,
}

impl EarlyAnswers {
    /// A row's evidence, answered if it can be here: suppressed first (whatever the store
    /// says), then by its domain's verdict when that one alone answers.
    fn answer(&self, evidence: Evidence) -> Evidence {
        let address = match evidence {
            Evidence::Syntax(Ok(address)) => address,
            other => return other,
        };
        if let Some(entry) = self.suppressions.of(&address) {
            let entry = Arc::new(entry.clone());
            return Evidence::Suppressed { address, entry };
        }
        let domain = self
            .domains
            .as_ref()
            .and_then(|d| d.get(address.domain_ascii()));
        match domain.and_then(DomainState::lone_answer) {
            Some(prior) => Evidence::Stored {
                prior: Arc::clone(prior),
                address,
            },
            None => Evidence::Syntax(Ok(address)),
        }
    }
}

/// The store's connections and state for one run.
struct RunStore {
    main: Store,
    run: crate::store::RunStart,
    /// What the check threads answer from, if anything.
    early: Option<Arc<EarlyAnswers>>,
    /// Moved into the store stage's thread (none when the store has nothing to look up).
    lookup: Option<StoreLookup>,
    writer: Option<StoreWriter>,
}

/// What the store knows of a domain, read once a run (level dns).
#[derive(Clone, Default)]
struct DomainState {
    /// Its latest verdict, young enough to serve or not.
    verdict: Option<Arc<Prior>>,
    /// The verdict serves this run (worked out once: the rows need not read it).
    serving: bool,
    /// The verdict answers its addresses without a look at their own rows: it serves, none
    /// of its addresses has an smtp-level verdict young enough to serve (those say more than
    /// the domain's), and an earlier run wrote it (a resumed run answers as the interrupted
    /// one did, and keeps the history its addresses' own rows hold).
    answers_alone: bool,
}

impl DomainState {
    fn of(stored: crate::store::StoredDomain, policy: &CachePolicy, run_started: i64) -> Self {
        let serving = stored.verdict.as_ref().is_some_and(|p| policy.serves(p));
        let smtp = stored
            .smtp_at
            .is_some_and(|at| policy.within(at, policy.max_age));
        let earlier = stored
            .verdict
            .as_ref()
            .is_some_and(|p| p.verified_at < run_started);
        DomainState {
            verdict: stored.verdict.map(Arc::new),
            serving,
            answers_alone: serving && !smtp && earlier,
        }
    }

    /// The verdict, if it answers the domain's addresses alone: then the check threads (or,
    /// for a domain looked up one by one, the store stage) answer them without their own rows.
    fn lone_answer(&self) -> Option<&Arc<Prior>> {
        self.verdict.as_ref().filter(|_| self.answers_alone)
    }
}

/// A store holding at most this many domains is read whole when a dns-level run starts. Debug
/// builds read `PREBOUNCE_PRELOAD_DOMAINS` instead, so the tests cover the lookups one by one.
fn preload_domains() -> usize {
    if cfg!(debug_assertions)
        && let Some(n) = std::env::var("PREBOUNCE_PRELOAD_DOMAINS")
            .ok()
            .and_then(|v| v.parse().ok())
    {
        return n;
    }
    500_000
}

/// What the store stage answers rows from (levels dns and smtp: a syntax check is cheaper
/// than a lookup), the rows the check threads could not answer.
struct StoreLookup {
    store: Store,
    policy: CachePolicy,
    memo: StoredDomainMemo,
}

/// The store stage's knowledge of the domains, kept for the run.
struct StoredDomainMemo {
    /// Level dns: every domain of the store, if it was read whole at the start (shared with
    /// the check threads' [`EarlyAnswers`]).
    preloaded: Option<Arc<DomainStates>>,
    /// Level dns, the domains not read whole: what the store knows of each, read once a run.
    domains: DomainStates,
    /// The same by the address of the rows' shared domain analysis (the check threads share
    /// one per domain): a row finds its domain's verdict without hashing the name. The entry
    /// holds the analysis, so its address cannot be reused for another domain.
    by_analysis: HashMap<usize, (Arc<crate::syntax::DomainFacts>, DomainState), ahash::RandomState>,
    /// Verdicts written since then are this run's own (it resumes an interrupted run).
    run_started: i64,
    /// Rows answered from the cache here.
    hits: u64,
}

/// Bounds [`StoredDomainMemo::by_analysis`]: the check threads renew their analyses now and
/// then.
const MAX_ANALYSES_REMEMBERED: usize = 1 << 20;

/// Store stage for one chunk: the rows the check threads left with a usable stored verdict
/// get their answer here, and the other rows learn their previous verdict (for changes.csv).
fn look_up_chunk(checked: &mut Checked, lookup: &mut StoreLookup) -> Result<(), StoreError> {
    let StoreLookup {
        store,
        policy,
        memo,
    } = lookup;
    store.reading(|store| look_up_rows(checked, memo, store, policy))
}

/// The verdict a row compares with (changes.csv) when it is verified in this run, given its
/// stored one: that one, or if this (resumed) run wrote it already, the one that it replaced.
fn replaced(own: &Prior, run_started: i64) -> Option<Box<Previous>> {
    if own.verified_at >= run_started {
        own.previous.clone().map(Box::new)
    } else {
        Some(Box::new(Previous {
            status: own.reason.status(),
            reason: own.reason,
            verified_at: own.verified_at,
        }))
    }
}

fn look_up_rows(
    checked: &mut Checked,
    memo: &mut StoredDomainMemo,
    store: &Store,
    policy: &CachePolicy,
) -> Result<(), StoreError> {
    let mut hits = 0;
    let run_started = memo.run_started;
    let this_run = |p: &Prior| p.verified_at >= run_started;
    for row in &mut checked.rows {
        // Suppressed rows, and rows their domain's verdict answers alone, are answered already.
        let Evidence::Syntax(Ok(address)) = &row.evidence else {
            continue;
        };
        const NOTHING: &DomainState = &DomainState {
            verdict: None,
            serving: false,
            answers_alone: false,
        };
        let domain = match policy.level {
            Level::Dns => domain_state(memo, store, policy, address)?,
            _ => NOTHING,
        };
        let stored = domain.verdict.as_deref();
        let serving = domain.verdict.as_ref().filter(|_| domain.serving);
        // The address's own verdict is read only when it may say more than its domain's: an
        // smtp-level one, this (resumed) run's own, or the history of an address verified
        // again (changes.csv).
        let own = match domain.lone_answer() {
            Some(_) => None,
            None => store.lookup(&address.dedup_key())?,
        };
        let own_answers = own.as_ref().is_some_and(|own| {
            policy.serves(own)
                && (own.level > Level::Dns
                    || match (stored, serving) {
                        (None, _) => true, // a store from before domain verdicts
                        // Resumed: what the interrupted run found before it stored the
                        // domain's verdict.
                        (Some(d), Some(_)) if this_run(d) => !this_run(own),
                        // The domain's verdict says the same, and is shared.
                        (Some(_), Some(_)) => false,
                        // A later verdict of its domain (too old itself) overrides it.
                        (Some(d), None) => own.verified_at >= d.verified_at,
                    })
        });
        let (answer, previous) = match own {
            Some(own) if own_answers => {
                let previous = if this_run(&own) {
                    own.previous.clone().map(Box::new)
                } else {
                    None // the same verdict, reused: nothing changed
                };
                (Some(Arc::new(own)), previous)
            }
            own => {
                let replaced = own.as_ref().and_then(|own| replaced(own, run_started));
                match serving {
                    // This (resumed) run verified the domain: its addresses are verified again.
                    Some(p) if this_run(p) => (Some(Arc::clone(p)), replaced),
                    Some(p) => (Some(Arc::clone(p)), None),
                    None => (None, replaced),
                }
            }
        };
        row.previous = previous;
        let Some(prior) = answer else {
            continue;
        };
        hits += 1;
        // Moved, not cloned: the row's syntax evidence becomes its stored verdict.
        let placeholder = Evidence::Syntax(Err(syntax::SyntaxError::Empty));
        if let Evidence::Syntax(Ok(address)) = std::mem::replace(&mut row.evidence, placeholder) {
            row.evidence = Evidence::Stored { address, prior };
        }
    }
    memo.hits += hits;
    Ok(())
}

/// What the store knows of an address's domain, from the run's memo or the store. Borrowed,
/// not cloned: a clone would touch the verdict's reference count, which other threads share,
/// twice a row.
fn domain_state<'a>(
    memo: &'a mut StoredDomainMemo,
    store: &Store,
    policy: &CachePolicy,
    address: &Address,
) -> Result<&'a DomainState, StoreError> {
    let analysis = Arc::as_ptr(&address.domain) as usize;
    if memo.by_analysis.contains_key(&analysis) {
        return Ok(&memo.by_analysis[&analysis].1);
    }
    let name = address.domain_ascii();
    let state = match (&memo.preloaded, memo.domains.get(name)) {
        // Read whole at the start: a domain missing there is not in the store.
        (Some(all), _) => all.get(name).cloned().unwrap_or_default(),
        (None, Some(state)) => state.clone(),
        (None, None) => {
            let stored = store.lookup_domain(name)?;
            let state = DomainState::of(stored, policy, memo.run_started);
            memo.domains.insert(name.to_owned(), state.clone());
            state
        }
    };
    if memo.by_analysis.len() >= MAX_ANALYSES_REMEMBERED {
        memo.by_analysis.clear();
    }
    let entry = memo
        .by_analysis
        .entry(analysis)
        .insert_entry((Arc::clone(&address.domain), state));
    Ok(&entry.into_mut().1)
}

/// DNS stage for one chunk: look up each distinct domain (the resolver shares lookups across
/// chunks and the whole run) and attach the answer to every row at that domain.
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
    let answers = futures::future::join_all(domains.iter().map(|d| resolver.domain(d))).await;
    let by_domain: HashMap<String, Arc<DomainEvidence>> = domains
        .into_iter()
        .map(str::to_owned)
        .zip(answers)
        .collect(); // per-row mode: later answers for a domain replace earlier ones, as good
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

/// The DNS stage's loop: up to [`DNS_CHUNKS_IN_FLIGHT`] chunks resolve concurrently and leave in
/// input order.
async fn dns_stage(
    resolver: Arc<DnsResolver>,
    mut input: mpsc::Receiver<Result<Checked, InputError>>,
    output: mpsc::Sender<Result<Checked, InputError>>,
) {
    let mut pending: std::collections::VecDeque<tokio::task::JoinHandle<Checked>> =
        Default::default();
    let mut input_open = true;
    while input_open || !pending.is_empty() {
        let room = pending.len() < DNS_CHUNKS_IN_FLIGHT;
        let mut arrived = None;
        let mut finished = None;
        if let Some(front) = pending.front_mut() {
            tokio::select! {
                msg = input.recv(), if input_open && room => arrived = Some(msg),
                done = front => finished = Some(done),
            }
        } else {
            arrived = Some(input.recv().await);
        }
        match arrived {
            Some(Some(Ok(checked))) => {
                pending.push_back(tokio::spawn(resolve_chunk(checked, Arc::clone(&resolver))))
            }
            Some(Some(Err(e))) => {
                let _ = output.send(Err(e)).await;
                return;
            }
            Some(None) => input_open = false,
            None => {}
        }
        if let Some(done) = finished {
            pending.pop_front();
            let Ok(checked) = done else {
                return; // a lookup task panicked; the closed channel makes the run fail
            };
            if output.send(Ok(checked)).await.is_err() {
                return;
            }
        }
    }
}

/// The SMTP stage's loop: gathers chunks into a window, probes the window's distinct addresses
/// (every domain at once, paced by the prober's per-host and global limits), attaches the
/// evidence and passes the chunks on in input order.
async fn smtp_stage(
    prober: Arc<Prober>,
    policy: Policy,
    bar: ProgressBar,
    commit: SmtpCommit,
    mut input: mpsc::Receiver<Result<Checked, InputError>>,
    output: mpsc::Sender<Result<Checked, InputError>>,
) {
    let mut window: Vec<Checked> = Vec::new();
    let mut rows = 0;
    loop {
        let end = match input.recv().await {
            Some(Ok(checked)) => {
                rows += checked.rows.len();
                window.push(checked);
                false
            }
            Some(Err(e)) => {
                let _ = output.send(Err(e)).await;
                return;
            }
            None => true,
        };
        if end || rows >= SMTP_WINDOW_ROWS {
            probe_window(&prober, policy, &bar, &commit, &mut window).await;
            // Stopped (Ctrl-C): the window's rows are not all decided. What was decided is
            // in the store; the lists are not written.
            if prober.is_stopped() {
                return;
            }
            for checked in window.drain(..) {
                if output.send(Ok(checked)).await.is_err() {
                    return;
                }
            }
            rows = 0;
        }
        if end {
            return;
        }
    }
}

/// Where the SMTP stage commits each domain's verdicts, and what stops it.
#[derive(Clone)]
struct SmtpCommit {
    store: Option<crossbeam_channel::Sender<Write>>,
    interrupt: Option<Arc<std::sync::atomic::AtomicBool>>,
}

impl SmtpCommit {
    fn interrupted(&self) -> bool {
        self.interrupt
            .as_ref()
            .is_some_and(|f| f.load(Ordering::Relaxed))
    }
}

/// The distinct addresses of one domain in a window, in first-seen order.
struct DomainWork {
    targets: Vec<MxTarget>,
    dns: Arc<DomainEvidence>,
    /// One per mailbox: the address as first seen (its verdict is stored under its key).
    addresses: Vec<Address>,
    mailboxes: Vec<String>,
    /// dedup key → index in `mailboxes`.
    index: HashMap<String, usize>,
}

/// A probed domain's dedup-key index and the evidence of each of its mailboxes.
type ProbedDomain = (HashMap<String, usize>, Vec<Arc<SmtpEvidence>>);

async fn probe_window(
    prober: &Arc<Prober>,
    policy: Policy,
    bar: &ProgressBar,
    commit: &SmtpCommit,
    window: &mut [Checked],
) {
    if commit.interrupted() {
        prober.stop();
    }
    // None: the domain takes no mail (the DNS verdict stands); decided once per domain.
    let mut work: HashMap<String, Option<DomainWork>> = HashMap::new();
    for checked in window.iter() {
        for row in &checked.rows {
            let Evidence::Domain {
                address,
                dns,
                smtp: None,
            } = &row.evidence
            else {
                continue;
            };
            let domain = address.domain_ascii();
            if !work.contains_key(domain) {
                let w = verdict::domain_takes_mail(domain, dns, policy).then(|| DomainWork {
                    targets: targets_of(domain, dns, policy.allow_private_mx),
                    dns: Arc::clone(dns),
                    addresses: Vec::new(),
                    mailboxes: Vec::new(),
                    index: HashMap::new(),
                });
                work.insert(domain.to_owned(), w);
            }
            let Some(Some(w)) = work.get_mut(domain) else {
                continue;
            };
            let next = w.mailboxes.len();
            let key = address.dedup_key();
            if let std::collections::hash_map::Entry::Vacant(e) = w.index.entry(key) {
                e.insert(next);
                w.mailboxes.push(format!("{}@{domain}", address.local));
                w.addresses.push(address.clone());
            }
        }
    }
    let mut tasks = tokio::task::JoinSet::new();
    // What each task probes, kept outside it: a task that fails still owes its rows an answer.
    let mut probing: HashMap<tokio::task::Id, (String, HashMap<String, usize>, usize)> =
        HashMap::new();
    for (domain, w) in work {
        let Some(w) = w else { continue };
        let prober = Arc::clone(prober);
        let (name, count) = (domain.clone(), w.mailboxes.len());
        let store = commit.store.clone();
        let task = tasks.spawn(async move {
            let probe = prober.probe_domain(&domain, &w.targets, w.mailboxes).await;
            // Committed now, not when the window ends: a killed run keeps this domain's work.
            if let Some(store) = store {
                let now = crate::store::now();
                let records = probe
                    .results
                    .iter()
                    .zip(&w.addresses)
                    .zip(&probe.decided)
                    .filter(|(_, decided)| **decided)
                    .map(|((smtp, address), _)| {
                        let v = verdict::decide(
                            &Evidence::Domain {
                                address: address.clone(),
                                dns: Arc::clone(&w.dns),
                                smtp: Some(Arc::new(smtp.clone())),
                            },
                            policy,
                        )
                        .into_owned();
                        Record {
                            key: address.dedup_key(),
                            reason: v.reason,
                            detail: v.detail.into_owned(),
                            mx: v.mx.map(Cow::into_owned),
                            level: Level::Smtp,
                            verified_at: now,
                            reply: match &smtp.outcome {
                                crate::smtp::probe::SmtpOutcome::Replied(r) => {
                                    Some((r.code, r.text.clone()))
                                }
                                _ => None,
                            },
                        }
                    })
                    .collect();
                let _ = store.send(Write::Verdicts {
                    addresses: records,
                    dns: Vec::new(),
                    domains: Vec::new(),
                });
                let _ = store.send(Write::CatchAll {
                    domain: domain.clone(),
                    servers: probe.catch_all_by_server.clone(),
                });
            }
            probe.results.into_iter().map(Arc::new).collect::<Vec<_>>()
        });
        probing.insert(task.id(), (name, w.index, count));
    }
    let mut results: HashMap<String, ProbedDomain> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            joined = tasks.join_next_with_id() => match joined {
                Some(Ok((id, evidence))) => {
                    if let Some((domain, index, _)) = probing.remove(&id) {
                        results.insert(domain, (index, evidence));
                    }
                }
                // A probe task failed (a bug): its addresses are unknown, never left with the
                // DNS verdict's "valid".
                Some(Err(e)) => {
                    if let Some((domain, index, count)) = probing.remove(&e.id()) {
                        let failed = Arc::new(SmtpEvidence {
                            outcome: SmtpOutcome::ProtocolError(format!(
                                "internal error while probing {domain}: {e}"
                            )),
                            server: None,
                            attempts: 0,
                            catch_all: CatchAll::Undetermined,
                        });
                        results.insert(domain, (index, vec![failed; count]));
                    }
                }
                None => break,
            },
            _ = tick.tick() => {
                if commit.interrupted() && !prober.is_stopped() {
                    prober.stop();
                }
                let s = prober.stats();
                bar.set_message(format!(
                    "smtp: {}/{} addresses · {} sessions · {} RCPT · {} deferred",
                    thousands(s.decided),
                    thousands(s.to_decide),
                    thousands(s.sessions),
                    thousands(s.rcpt_commands),
                    thousands(s.deferred)
                ));
            }
        }
    }
    for checked in window.iter_mut() {
        for row in &mut checked.rows {
            if let Evidence::Domain { address, smtp, .. } = &mut row.evidence
                && smtp.is_none()
                && let Some((index, evidence)) = results.get(address.domain_ascii())
                && let Some(&i) = index.get(&address.dedup_key())
            {
                *smtp = Some(Arc::clone(&evidence[i]));
            }
        }
    }
}

/// Format stage: mark repeats and assign groups (in input order, sequentially: cheap), then
/// decide and serialise in parallel.
fn finish_chunk(checked: &mut Checked, cx: &FormatContext, dedup: &mut Dedup) -> Vec<Serialized> {
    match dedup {
        Dedup::Plain(seen) => {
            for row in &mut checked.rows {
                if let Some(h) = row.dedup_hash {
                    row.duplicate = !seen.insert(h);
                }
            }
        }
        Dedup::Grouped { index, first_group } => {
            // Known groups in parallel; the sequential pass below only adds new values.
            let known: &GroupIndex = index;
            checked
                .rows
                .par_iter_mut()
                .with_min_len(1024)
                .for_each(|row| row.group = known.known(row.group_key).unwrap_or(u32::MAX));
            for (r, row) in checked.rows.iter_mut().enumerate() {
                if row.group == u32::MAX {
                    row.group = index.id_of(row.group_key, &checked.chunk, r);
                }
                let g = row.group;
                if let Some(h) = row.dedup_hash {
                    match first_group.entry(h) {
                        std::collections::hash_map::Entry::Occupied(first) => {
                            row.duplicate = true;
                            row.cross_group = *first.get() != g;
                        }
                        std::collections::hash_map::Entry::Vacant(e) => {
                            e.insert(g);
                        }
                    }
                }
            }
        }
    }
    let chunk = &checked.chunk;
    checked
        .rows
        .par_chunks(SERIALIZE_BATCH)
        .enumerate()
        .map(|(b, batch)| serialize_batch(chunk, b * SERIALIZE_BATCH, batch, cx))
        .collect()
}

/// Writer side: fold a chunk's batches into the run's domain tally and, with --group-by, the
/// group tallies. The batches counted while the rows were hot; this only merges a few entries
/// per batch and walks the compact group outcomes.
fn merge_extras(batches: &[Serialized], domains: &mut DomainTally, groups: &mut Vec<Tally>) {
    for batch in batches {
        for (facts, counts) in &batch.domains {
            domains.add_counts(&facts.unicode, counts);
        }
        for (d, status) in &batch.malformed_domains {
            let mut counts = [0; 4];
            counts[status.index()] = 1;
            domains.add_counts(d, &counts);
        }
        for (g, outcome) in &batch.group_rows {
            let g = *g as usize;
            if g >= groups.len() {
                groups.resize_with(g + 1, Tally::default);
            }
            groups[g].count(outcome);
        }
    }
}

fn reason_map(t: &Tally) -> std::collections::BTreeMap<String, u64> {
    Reason::ALL
        .iter()
        .zip(t.reasons)
        .filter(|(_, n)| *n > 0)
        .map(|(r, n)| (r.as_str().to_owned(), n))
        .collect()
}

fn flag_map(t: &Tally) -> std::collections::BTreeMap<String, u64> {
    Flags::ALL
        .iter()
        .zip(t.flags)
        .map(|((_, name), n)| ((*name).to_owned(), n))
        .collect()
}

/// The per-group figures, worst first: highest predicted bounce rate sending to all, then the
/// larger group, then by value.
fn group_summaries(index: &GroupIndex, tallies: &[Tally]) -> Vec<GroupSummary> {
    let mut groups: Vec<GroupSummary> = tallies
        .iter()
        .enumerate()
        .filter(|(_, t)| t.rows > 0)
        .map(|(id, t)| {
            let (kind, value) = index.name(id as u32);
            let mut problems: Vec<(Reason, u64)> = Reason::ALL
                .iter()
                .zip(t.reasons)
                .filter(|(r, n)| *n > 0 && r.status() != Status::Valid)
                .map(|(r, n)| (*r, n))
                .collect();
            problems.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
            GroupSummary {
                value,
                kind,
                rows: t.rows,
                unique_addresses: t.unique,
                duplicates: t.duplicates,
                duplicates_within_group: t.duplicates - t.duplicates_across_groups,
                duplicates_across_groups: t.duplicates_across_groups,
                status_share: StatusShares::of(&t.status, t.rows),
                status: t.status.clone(),
                reasons: reason_map(t),
                top_reasons: problems
                    .into_iter()
                    .take(3)
                    .map(|(r, n)| ReasonCount {
                        reason: r.as_str().to_owned(),
                        rows: n,
                        share: n as f64 / t.rows as f64,
                    })
                    .collect(),
                flags: flag_map(t),
                suggestions: t.suggestions,
                predicted_bounce_rate: t.forecast.result(),
            }
        })
        .collect();
    groups.sort_by(|a, b| {
        b.predicted_bounce_rate
            .all
            .total_cmp(&a.predicted_bounce_rate.all)
            .then(b.rows.cmp(&a.rows))
            .then_with(|| a.value.cmp(&b.value))
    });
    groups
}

/// The appended cells that come from a small fixed set, encoded once per run.
struct RowFormat {
    encoder: FieldEncoder,
    /// changes.csv is always comma-separated.
    changes_encoder: FieldEncoder,
    /// `<delim>status<delim>reason`, by reason index.
    status_and_reason: Vec<Vec<u8>>,
    /// `<delim>flags`, by flag bits.
    flags: Vec<Vec<u8>>,
}

impl RowFormat {
    fn new(delimiter: u8) -> Self {
        let encoder = FieldEncoder::new(delimiter);
        let cells = |parts: &[&str]| {
            let mut out = Vec::new();
            for p in parts {
                out.push(delimiter);
                encoder.push(&mut out, p.as_bytes());
            }
            out
        };
        let status_and_reason = Reason::ALL
            .iter()
            .map(|r| cells(&[r.status().as_str(), r.as_str()]))
            .collect();
        let flags = (0..=Flags::MAX_BITS)
            .map(|b| cells(&[Flags::from_bits(b).as_str()]))
            .collect();
        RowFormat {
            encoder,
            changes_encoder: FieldEncoder::new(b','),
            status_and_reason,
            flags,
        }
    }
}

/// Progress on stderr: bytes of the input when its size is known, rows otherwise.
fn progress_bar(mode: ProgressMode, total_bytes: Option<u64>) -> ProgressBar {
    let visible = match mode {
        ProgressMode::Always => true,
        ProgressMode::Never => false,
        ProgressMode::Auto => std::io::stderr().is_terminal(),
    };
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = match total_bytes {
        Some(total) => ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
            .with_style(
                ProgressStyle::with_template(
                    "{spinner} {bar:30} {bytes}/{total_bytes} · {msg} · ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            ),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
            ProgressStyle::with_template("{spinner} {bytes} read · {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    };
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

pub(crate) fn run(config: &VerifyConfig) -> Result<Summary, Error> {
    let started = Instant::now();
    let started_at = crate::output::summary::rfc3339_utc(std::time::SystemTime::now());
    let (mut reader, dialect) = InputReader::open(&config.input, &config.input_options)?;
    let group_column =
        match &config.group_by {
            Some(wanted) => {
                let names: Vec<String> = dialect
                    .header
                    .iter()
                    .map(|h| String::from_utf8_lossy(h).into_owned())
                    .collect();
                let column = crate::input::find_column(wanted, dialect.has_header, &names)
                    .map_err(|e| InputError::GroupByColumn {
                        wanted: wanted.clone(),
                        problem: match e {
                            InputError::ColumnOutOfRange { number, width } => {
                                format!(
                                    "column {number} does not exist: the list has {width} columns"
                                )
                            }
                            _ => format!("no such column (columns: {})", names.join(", ")),
                        },
                    })?;
                Some(column)
            }
            None => None,
        };
    // Checked before any output exists: a HELO name or sender that could never be sent.
    let prober = match (&config.smtp, config.level) {
        (Some(probe), Level::Smtp) => {
            Some(Arc::new(Prober::new(crate::smtp::probe::ProbeConfig {
                allow_private: config.policy.allow_private_mx,
                ..probe.clone()
            })?))
        }
        _ => None,
    };
    // The store, opened before any output exists so a damaged or locked one fails cleanly.
    let now = crate::store::now();
    let mut store = match &config.store {
        Some(opts) => {
            let main = Store::open(&opts.path)?;
            let max_age = i64::try_from(opts.max_age.as_secs()).unwrap_or(i64::MAX);
            // The same command, started again after an interruption, resumes its run.
            let fingerprint = format!(
                "verify|{}|{}|{}|fresh={}",
                config.level.as_str(),
                config.input.describe(),
                config.out_dir.display(),
                opts.fresh
            );
            let run = main.begin_run(&fingerprint, now.saturating_sub(max_age))?;
            if let Some(prober) = &prober {
                let domain_age = max_age.min(crate::store::DOMAIN_MAX_AGE.as_secs() as i64);
                for (domain, server, catch_all) in
                    main.catch_all_since(now.saturating_sub(domain_age))?
                {
                    prober.remember_catch_all(&domain, server, catch_all);
                }
            }
            // Each stage its own connection: the lookups here, the writes in the writer thread.
            // An empty store (a first run) has nothing to look up.
            let cache = match config.level {
                Level::Syntax => None,
                _ if !main.has_verdicts()? => None,
                level => Some((
                    Store::open(&opts.path)?,
                    CachePolicy {
                        level,
                        now,
                        max_age,
                        // --fresh: only what this run (or the interrupted run it resumes) decided.
                        not_before: if opts.fresh { run.started_at } else { i64::MIN },
                    },
                )),
            };
            // Level dns over a store of modest size: its domains read in one scan.
            let preloaded = match &cache {
                Some((store, policy)) if policy.level == Level::Dns => {
                    store.all_domains(preload_domains())?.map(|all| {
                        all.into_iter()
                            .map(|(name, stored)| {
                                (name, DomainState::of(stored, policy, run.started_at))
                            })
                            .collect::<DomainStates>()
                    })
                }
                _ => None,
            }
            .map(Arc::new);
            let lookup = cache.map(|(store, policy)| StoreLookup {
                store,
                policy,
                memo: StoredDomainMemo {
                    preloaded: preloaded.clone(),
                    domains: HashMap::default(),
                    by_analysis: HashMap::default(),
                    run_started: run.started_at,
                    hits: 0,
                },
            });
            let early = EarlyAnswers {
                suppressions: main.suppression_set()?,
                domains: preloaded,
            };
            let writer = StoreWriter::spawn(
                Store::open(&opts.path)?,
                run.started_at,
                opts.suppress_invalid,
            )?;
            // Nothing to answer early from: the check threads need not look.
            let early = (!early.suppressions.is_empty() || early.domains.is_some())
                .then(|| Arc::new(early));
            Some(RunStore {
                main,
                run,
                early,
                lookup,
                writer: Some(writer),
            })
        }
        None => None,
    };
    let store_tx = store
        .as_ref()
        .and_then(|s| s.writer.as_ref())
        .map(StoreWriter::sender);
    let hits = AtomicU64::new(0);
    let store_failed: std::sync::Mutex<Option<StoreError>> = Default::default();
    prepare_out_dir(&config.out_dir, config.force)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(config.threads.unwrap_or(0))
        .thread_name(|i| format!("prebounce-work-{i}"))
        .build()
        .map_err(|e| Error::Internal(format!("cannot start worker threads: {e}")))?;
    // The DNS stage's runtime and resolver, set up before any output exists so a bad
    // configuration fails cleanly.
    let dns = if config.level >= Level::Dns {
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
        Some((runtime, Arc::new(resolver)))
    } else {
        None
    };
    let mut lists = ListWriters::create(&config.out_dir, dialect.delimiter, &dialect.header)?;
    let cx = FormatContext {
        dialect: &dialect,
        row_format: RowFormat::new(dialect.delimiter),
        priors: PriorTable::new(&config.priors),
        policy: config.policy,
        grouping: group_column.is_some(),
        store_level: (store.is_some() && config.level >= Level::Dns).then_some(config.level),
        run_started: store.as_ref().map_or(i64::MAX, |s| s.run.started_at),
        run_id: RUNS.fetch_add(1, Ordering::Relaxed) + 1,
    };
    let mut changes_csv: Vec<u8> =
        b"address,previous_status,previous_reason,previous_verified_at,status,reason\n".to_vec();
    let mut transitions: std::collections::BTreeMap<String, u64> = Default::default();
    let bar = progress_bar(config.progress, reader.total_bytes);
    let rows_read = AtomicU64::new(0);
    let mut tally = Tally::default();
    let mut dedup = match group_column {
        Some(column) => Dedup::Grouped {
            index: GroupIndex::new(column),
            first_group: FirstGroupMap::default(),
        },
        None => Dedup::Plain(SeenSet::default()),
    };
    let mut group_tallies: Vec<Tally> = Vec::new();
    let mut domains = DomainTally::default();

    thread::scope(|scope| -> Result<(), Error> {
        let spawn_err = |what: &str, e: std::io::Error| {
            Error::Internal(format!("cannot start the {what} thread: {e}"))
        };
        let (chunk_tx, chunk_rx) = bounded::<Result<Chunk, InputError>>(CHANNEL_DEPTH);
        let rows_read = &rows_read;
        let interrupt = config.interrupt.clone();
        thread::Builder::new()
            .name("prebounce-read".into())
            .spawn_scoped(scope, move || {
                loop {
                    // Ctrl-C: read no further; what is in flight finishes.
                    if interrupt
                        .as_ref()
                        .is_some_and(|f| f.load(Ordering::Relaxed))
                    {
                        break;
                    }
                    let next = reader.next_chunk(CHUNK_ROWS);
                    let msg = match next {
                        Ok(Some(mut c)) => {
                            rows_read.fetch_add(c.len() as u64, Ordering::Relaxed);
                            c.input_end = reader.bytes_consumed();
                            Ok(c)
                        }
                        Ok(None) => break,
                        Err(e) => Err(e),
                    };
                    let stop = msg.is_err();
                    // A closed channel means a later stage failed; it reports why.
                    if chunk_tx.send(msg).is_err() || stop {
                        break;
                    }
                }
            })
            .map_err(|e| spawn_err("reader", e))?;

        let (checked_tx, mut checked_rx) =
            mpsc::channel::<Result<Checked, InputError>>(CHANNEL_DEPTH);
        let (dialect_ref, pool_ref, cx_ref) = (&dialect, &pool, &cx);
        let syntax_opts = config.syntax;
        let early = store.as_ref().and_then(|s| s.early.clone());
        let hits_ref = &hits;
        thread::Builder::new()
            .name("prebounce-check".into())
            .spawn_scoped(scope, move || {
                for msg in chunk_rx {
                    let out = msg.map(|chunk| {
                        let (checked, hits) = pool_ref.install(|| {
                            let early = early.as_deref();
                            check_chunk(chunk, dialect_ref, syntax_opts, group_column, early)
                        });
                        hits_ref.fetch_add(hits, Ordering::Relaxed);
                        checked
                    });
                    if checked_tx.blocking_send(out).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| spawn_err("check", e))?;

        let lookup = store.as_mut().and_then(|s| s.lookup.take());
        if let Some(lookup) = lookup {
            let (looked_tx, looked_rx) = mpsc::channel(CHANNEL_DEPTH);
            let (hits, store_failed) = (&hits, &store_failed);
            thread::Builder::new()
                .name("prebounce-store".into())
                .spawn_scoped(scope, move || {
                    let mut lookup = lookup;
                    while let Some(msg) = checked_rx.blocking_recv() {
                        let msg = match msg {
                            Ok(mut checked) => match look_up_chunk(&mut checked, &mut lookup) {
                                Ok(()) => Ok(checked),
                                Err(e) => {
                                    // The run fails with this error (the rows stop here).
                                    *store_failed.lock().unwrap_or_else(|e| e.into_inner()) =
                                        Some(e);
                                    break;
                                }
                            },
                            Err(e) => Err(e),
                        };
                        if looked_tx.blocking_send(msg).is_err() {
                            break;
                        }
                    }
                    hits.fetch_add(lookup.memo.hits, Ordering::Relaxed);
                })
                .map_err(|e| spawn_err("store", e))?;
            checked_rx = looked_rx;
        }

        if let Some((runtime, resolver)) = &dns {
            let (resolved_tx, resolved_rx) = mpsc::channel(CHANNEL_DEPTH);
            let resolver = Arc::clone(resolver);
            thread::Builder::new()
                .name("prebounce-dns".into())
                .spawn_scoped(scope, move || {
                    runtime.block_on(dns_stage(resolver, checked_rx, resolved_tx))
                })
                .map_err(|e| spawn_err("DNS", e))?;
            checked_rx = resolved_rx;
            if let Some(prober) = &prober {
                let (probed_tx, probed_rx) = mpsc::channel(CHANNEL_DEPTH);
                let (prober, policy, bar) = (Arc::clone(prober), config.policy, bar.clone());
                let commit = SmtpCommit {
                    store: store_tx.clone(),
                    interrupt: config.interrupt.clone(),
                };
                thread::Builder::new()
                    .name("prebounce-smtp".into())
                    .spawn_scoped(scope, move || {
                        runtime.block_on(smtp_stage(
                            prober, policy, bar, commit, checked_rx, probed_tx,
                        ))
                    })
                    .map_err(|e| spawn_err("SMTP", e))?;
                checked_rx = probed_rx;
            }
        }

        let (done_tx, done_rx) =
            bounded::<Result<(Vec<Serialized>, Checked), InputError>>(CHANNEL_DEPTH);
        let dedup = &mut dedup;
        thread::Builder::new()
            .name("prebounce-format".into())
            .spawn_scoped(scope, move || {
                while let Some(msg) = checked_rx.blocking_recv() {
                    let out = msg.map(|mut checked| {
                        let batches =
                            pool_ref.install(|| finish_chunk(&mut checked, cx_ref, dedup));
                        // Freeing a chunk's rows is not free: let the writer thread do it.
                        (batches, checked)
                    });
                    if done_tx.send(out).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| spawn_err("format", e))?;

        // The domains whose dns-level verdict went to the store writer this run.
        let mut domains_recorded: HashSet<String, ahash::RandomState> = HashSet::default();
        for msg in done_rx {
            let (mut batches, spent) = msg?;
            let (mut records, mut dns_records, mut domain_records) =
                (Vec::new(), Vec::new(), Vec::new());
            for batch in &mut batches {
                for status in Status::ALL {
                    lists.write(status, &batch.lists[status.index()])?;
                }
                tally.merge(&batch.tally);
                for first in batch.domain_firsts.drain(..) {
                    let (key, reason) = batch.dns_records.get(first.record);
                    let domain = key.rsplit_once('@').map_or("", |(_, d)| d);
                    if !domains_recorded.contains(domain) {
                        domains_recorded.insert(domain.to_owned());
                        domain_records.push(Record {
                            key: domain.to_owned(),
                            reason,
                            detail: first.detail,
                            mx: first.mx,
                            level: Level::Dns,
                            verified_at: batch.dns_records.verified_at(),
                            reply: None,
                        });
                    }
                }
                records.append(&mut batch.records);
                if !batch.dns_records.is_empty() {
                    dns_records.push(std::mem::take(&mut batch.dns_records));
                }
                changes_csv.extend_from_slice(&batch.changes);
                for (from, to) in &batch.transitions {
                    *transitions.entry(format!("{from}→{to}")).or_default() += 1;
                }
            }
            if let (Some(tx), false) = (&store_tx, records.is_empty() && dns_records.is_empty()) {
                // A closed channel: the writer failed; finishing it reports why.
                let _ = tx.send(Write::Verdicts {
                    addresses: records,
                    dns: dns_records,
                    domains: domain_records,
                });
            }
            merge_extras(&batches, &mut domains, &mut group_tallies);
            // Progress is what has been written, so the ETA holds when DNS is the slow stage.
            bar.set_position(spent.chunk.input_end);
            let mut message = format!("{} rows", thousands(tally.rows));
            if let Some((_, resolver)) = &dns {
                let s = resolver.stats();
                let _ = write!(
                    message,
                    " · {}/{} domains resolved · {} DNS queries",
                    thousands(s.resolved_domains),
                    thousands(s.unique_domains),
                    thousands(s.queries)
                );
            }
            bar.set_message(message);
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    drop(store_tx);
    let saved = match store.as_mut().and_then(|s| s.writer.take()) {
        Some(writer) => writer.finish()?,
        None => 0,
    };
    if let Some(e) = store_failed.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e.into());
    }
    if config
        .interrupt
        .as_ref()
        .is_some_and(|f| f.load(Ordering::SeqCst))
    {
        return Err(Error::Interrupted {
            store: config.store.as_ref().map(|o| o.path.display().to_string()),
            saved,
        });
    }
    // Every row read must have been written: a stage that stopped early must not pass as a
    // finished run with rows missing.
    let read = rows_read.load(Ordering::Relaxed);
    if tally.rows != read {
        return Err(Error::Internal(format!(
            "{} of {read} rows were written; a pipeline stage stopped early",
            tally.rows
        )));
    }
    let reasons = reason_map(&tally);
    let flags = flag_map(&tally);
    let (group_by, groups) = match (&dedup, group_column) {
        (Dedup::Grouped { index, .. }, Some(column)) => (
            Some(GroupBy {
                column: dialect
                    .header
                    .get(column)
                    .map(|h| String::from_utf8_lossy(h).into_owned())
                    .unwrap_or_default(),
                column_number: column + 1,
                distinct_values: index.distinct_values() as u64,
                max_groups: MAX_GROUPS,
                capped: index.capped(),
            }),
            group_summaries(index, &group_tallies),
        ),
        _ => (None, Vec::new()),
    };
    let email_column = dialect
        .header
        .get(dialect.email_column)
        .map(|h| String::from_utf8_lossy(h).into_owned())
        .unwrap_or_default();
    let summary = Summary {
        prebounce_version: env!("CARGO_PKG_VERSION"),
        level: config.level.as_str().to_owned(),
        rows: tally.rows,
        unique_addresses: tally.unique,
        duplicates: tally.duplicates,
        status: tally.status,
        reasons,
        flags,
        suggestions: tally.suggestions,
        predicted_bounce_rate: tally.forecast.result(),
        priors: config.priors.source.clone(),
        input: InputShape {
            path: config.input.describe(),
            delimiter: match dialect.delimiter {
                b'\t' => "\\t".to_owned(),
                d => (d as char).to_string(),
            },
            has_header: dialect.has_header,
            email_column,
            columns: dialect.width,
        },
        dns: dns.as_ref().map(|(_, r)| r.stats()),
        smtp: prober.as_ref().map(|p| p.stats()),
        output_dir: config.out_dir.display().to_string(),
        started_at,
        elapsed_seconds: started.elapsed().as_secs_f64(),
        domains: domains.report(),
        group_by,
        groups,
        store: match (&store, &config.store) {
            (Some(s), Some(opts)) => Some(StoreSummary {
                path: opts.path.display().to_string(),
                cached_rows: hits.load(Ordering::Relaxed),
                saved,
                resumed: s.run.resumed,
                max_age_seconds: opts.max_age.as_secs(),
                fresh: opts.fresh,
            }),
            _ => None,
        },
        changes: store.as_ref().map(|_| Changes {
            count: transitions.values().sum(),
            by_transition: transitions,
            file: crate::output::CHANGES_FILE.to_owned(),
        }),
    };
    let json = serde_json::to_vec_pretty(&summary).map_err(|e| Error::Internal(e.to_string()))?;
    let report = crate::output::report::render(&summary);
    if store.is_some() {
        lists.add_file(crate::output::CHANGES_FILE, &changes_csv)?;
    }
    lists.commit(report.as_bytes(), &json)?;
    // Only a run whose lists are written is finished; the same command otherwise resumes it.
    if let Some(s) = &store {
        s.main.finish_run(s.run.id)?;
    }
    Ok(summary)
}
