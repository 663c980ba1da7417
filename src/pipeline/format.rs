//! Format stage: marks repeats and assigns groups in input order, then decides each row's
//! verdict and serialises it into its list (rayon, in batches), counting the tallies and
//! gathering the new verdicts for the store on the way.

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fmt::Write as _;
use std::hash::BuildHasherDefault;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use rayon::prelude::*;
use tokio::sync::mpsc;

use crate::clock::Clock;
use crate::forecast::PriorTable;
use crate::grouping::{GroupIndex, PassThroughHasher, malformed_domain};
use crate::input::{Chunk, Dialect, InputError};
use crate::model::provider::ProviderTable;
use crate::output::FieldEncoder;
use crate::store::{DnsVerdicts, Record};
use crate::syntax::{self, Address, DomainFacts, Flags};
use crate::verdict::{self, Evidence, Policy, Reason, Status, Verdict};
use crate::{Level, VerifyConfig};

use super::tally::{DomainCounts, Outcome, Tally};
use super::{Checked, RowCheck, StageResult, StageStats};

/// About what the prebounce columns add to a row (`,valid,syntax-ok,,` the address, flags,
/// probability): what a list buffer is sized with.
const APPENDED_BYTES: usize = 80;

/// Rows serialised by one rayon task.
const SERIALIZE_BATCH: usize = 1024;

type SeenSet = std::collections::HashSet<u64, BuildHasherDefault<PassThroughHasher>>;

/// The addresses seen so far, split by hash so that no one table doubles a large share of the
/// whole at once: a single set of a million hashes grew from 9 to 19 MB in one step, both alive
/// during the copy, late in the run when memory is at its peak.
pub(super) struct ShardedSeen([SeenSet; SEEN_SHARDS]);

const SEEN_SHARDS: usize = 16;

impl ShardedSeen {
    fn new() -> Self {
        ShardedSeen(std::array::from_fn(|_| SeenSet::default()))
    }

    /// Whether `hash` is new (and now seen).
    #[cfg(test)]
    fn insert(&mut self, hash: u64) -> bool {
        self.0[shard_of(hash)].insert(hash)
    }

    /// Marks the repeats among `rows`, the shards in parallel: a repeat lands in the shard of
    /// its first occurrence, and each shard takes its rows in input order, so the first one
    /// stays the one that is not a repeat. (One table in one thread was a twentieth of a
    /// syntax-level run, on its critical path.)
    fn mark(&mut self, rows: &mut [RowCheck]) {
        let mut by_shard: [Vec<(u32, u64)>; SEEN_SHARDS] = std::array::from_fn(|_| Vec::new());
        for (r, row) in rows.iter().enumerate() {
            if let Some(h) = row.dedup_hash {
                by_shard[shard_of(h)].push((r as u32, h));
            }
        }
        let repeats: Vec<Vec<u32>> = self
            .0
            .as_mut_slice()
            .par_iter_mut()
            .zip(by_shard.as_slice().par_iter())
            .map(|(seen, hashes)| {
                hashes
                    .iter()
                    .filter(|(_, h)| !seen.insert(*h))
                    .map(|(r, _)| *r)
                    .collect()
            })
            .collect();
        for r in repeats.into_iter().flatten() {
            rows[r as usize].duplicate = true;
        }
    }
}

/// Bits the tables themselves use little: the low ones pick a bucket, the top seven tag it.
fn shard_of(hash: u64) -> usize {
    (hash >> 40) as usize % SEEN_SHARDS
}
/// With --group-by: each address's identity → the group it was first seen in.
type FirstGroupMap = HashMap<u64, u32, BuildHasherDefault<PassThroughHasher>>;

/// The "column" of `--group-by prebounce_provider` when the input has no column of that name:
/// rows are grouped by the provider of their domain's mail server, found once the DNS (and
/// SMTP) stages are done, not by an input cell.
pub(super) const PROVIDER_GROUPING: usize = usize::MAX;

/// Duplicate detection, in input order. With --group-by it also assigns each row its group and
/// remembers where each address was first seen, to tell a repeat within a group from one
/// across groups.
pub(super) enum Dedup {
    Plain(Box<ShardedSeen>),
    Grouped {
        index: GroupIndex,
        first_group: FirstGroupMap,
        /// With [`PROVIDER_GROUPING`]: what finds each row's provider.
        providers: Option<(std::sync::Arc<ProviderTable>, Policy)>,
    },
}

impl Dedup {
    pub(super) fn new(group_column: Option<usize>, config: &VerifyConfig) -> Dedup {
        match group_column {
            Some(column) => Dedup::Grouped {
                index: GroupIndex::new(column),
                first_group: FirstGroupMap::default(),
                providers: (column == PROVIDER_GROUPING)
                    .then(|| (std::sync::Arc::clone(&config.providers), config.policy)),
            },
            None => Dedup::Plain(Box::new(ShardedSeen::new())),
        }
    }

    /// Marks the chunk's repeats (and, with --group-by, assigns its rows' groups).
    fn mark(&mut self, checked: &mut Checked) {
        match self {
            Dedup::Plain(seen) => seen.mark(&mut checked.rows),
            Dedup::Grouped {
                index,
                first_group,
                providers: Some((table, policy)),
            } => {
                // A domain's provider is decided once a chunk (its rows hold the domain's Arc,
                // so the pointer names it while the chunk is here).
                let mut by_domain: HashMap<usize, u32, ahash::RandomState> = HashMap::default();
                for row in checked.rows.iter_mut() {
                    let domain = row
                        .evidence
                        .address()
                        .map(|a| Arc::as_ptr(&a.domain) as usize);
                    let known = domain.and_then(|d| by_domain.get(&d).copied());
                    row.group = known.unwrap_or_else(|| {
                        let provider = verdict::decide(&row.evidence, *policy)
                            .mx
                            .and_then(|mx| table.index_of_host(&mx));
                        let group = match provider {
                            // Keys 0 and 1 are the empty and unreadable groups.
                            Some(i) => {
                                index.id_of_value(i as u64 + 2, table.providers()[i].id.as_bytes())
                            }
                            None => index.id_of_value(crate::grouping::EMPTY_KEY, b""),
                        };
                        if let Some(d) = domain {
                            by_domain.insert(d, group);
                        }
                        group
                    });
                    // A repeat has its first sighting's domain, hence its provider.
                    if let Some(h) = row.dedup_hash {
                        match first_group.entry(h) {
                            Entry::Occupied(_) => row.duplicate = true,
                            Entry::Vacant(e) => {
                                e.insert(row.group);
                            }
                        }
                    }
                }
            }
            Dedup::Grouped {
                index, first_group, ..
            } => {
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
                            Entry::Occupied(first) => {
                                row.duplicate = true;
                                row.cross_group = *first.get() != g;
                            }
                            Entry::Vacant(e) => {
                                e.insert(g);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The column of --group-by, found in the input's header (or by number).
pub(super) fn group_column(
    wanted: Option<&String>,
    dialect: &Dialect,
) -> Result<Option<usize>, InputError> {
    let Some(wanted) = wanted else {
        return Ok(None);
    };
    let names: Vec<String> = dialect
        .header
        .iter()
        .map(|h| String::from_utf8_lossy(h).into_owned())
        .collect();
    if wanted == "prebounce_provider" && !(dialect.has_header && names.iter().any(|n| n == wanted))
    {
        return Ok(Some(PROVIDER_GROUPING));
    }
    let column = crate::input::find_column(wanted, dialect.has_header, &names).map_err(|e| {
        InputError::GroupByColumn {
            wanted: wanted.clone(),
            problem: match e {
                InputError::ColumnOutOfRange { number, width } => {
                    format!("column {number} does not exist: the list has {width} columns")
                }
                _ => format!("no such column (columns: {})", names.join(", ")),
            },
        }
    })?;
    Ok(Some(column))
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
    /// The delimiter cannot occur in a well-formed address: the normalised address is copied
    /// as it is.
    addresses_need_no_quotes: bool,
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
            addresses_need_no_quotes: !syntax::may_occur_in_address(delimiter),
        }
    }
}

/// Domain analyses by address, each holding its analysis (see [`DomainsSent`]).
type AnalysesSent = HashMap<usize, Arc<DomainFacts>, ahash::RandomState>;

/// Bounds one worker's [`AnalysesSent`] (each entry keeps a domain analysis alive, so memory
/// would otherwise grow with the list's domains): past it, domains are sent again (harmless,
/// the list writer keeps the first). 65,536 a worker kept nearly every analysis of a
/// 200,000-domain list alive (about 8 MB more at the peak).
const MAX_DOMAINS_SENT: usize = 1 << 14;

/// Per run: the domain analyses whose dns-level verdict each worker of the run's pool sent to
/// the store, by address (each entry holds its analysis, so the address cannot be reused for
/// another domain). A domain's verdict then travels about once a worker, not once a batch: a
/// batch of 1,024 rows over many domains would send one nearly every row. One set per worker,
/// locked once a batch, so the workers never wait on each other.
pub(super) struct DomainsSent {
    /// By worker index; the last one for a thread outside the pool.
    by_worker: Vec<Mutex<AnalysesSent>>,
}

impl DomainsSent {
    pub(super) fn new(workers: usize) -> Self {
        DomainsSent {
            by_worker: (0..=workers).map(|_| Mutex::default()).collect(),
        }
    }

    /// The calling worker's set.
    fn of_this_worker(&self) -> MutexGuard<'_, AnalysesSent> {
        let outside = self.by_worker.len() - 1;
        let i = rayon::current_thread_index().map_or(outside, |i| i.min(outside));
        self.by_worker[i].lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Whether `domain`'s verdict is sent for the first time from the worker that owns `sent`.
fn first_sent(sent: &mut AnalysesSent, domain: &Arc<DomainFacts>) -> bool {
    if sent.len() >= MAX_DOMAINS_SENT {
        sent.clear();
    }
    match sent.entry(Arc::as_ptr(domain) as usize) {
        Entry::Occupied(_) => false,
        Entry::Vacant(e) => {
            e.insert(Arc::clone(domain));
            true
        }
    }
}

/// What the format stage needs besides the rows.
pub(super) struct FormatContext<'a> {
    dialect: &'a Dialect,
    row_format: RowFormat,
    priors: PriorTable,
    policy: Policy,
    /// --group-by is on: batches record each row's group and outcome.
    grouping: bool,
    /// With a store at level dns or smtp: the level verdicts are stored at.
    store_level: Option<Level>,
    /// With a store: this run's id (or the interrupted run's it resumes).
    run: Option<i64>,
    /// The run is a distributed job's (`StoreOptions::job_run`).
    job_run: bool,
    /// The run's clock, for the stored verdicts' timestamps.
    clock: Clock,
    domains_sent: DomainsSent,
    providers: std::sync::Arc<ProviderTable>,
}

impl<'a> FormatContext<'a> {
    /// `run`: with a store, the run's id (or the one's it resumes). `workers`: the threads of
    /// the run's pool.
    pub(super) fn new(
        config: &VerifyConfig,
        dialect: &'a Dialect,
        grouping: bool,
        run: Option<i64>,
        workers: usize,
    ) -> Self {
        FormatContext {
            dialect,
            row_format: RowFormat::new(dialect.delimiter),
            priors: PriorTable::new(&config.priors),
            policy: config.policy,
            grouping,
            store_level: (run.is_some() && config.level >= Level::Dns).then_some(config.level),
            run,
            job_run: config.store.as_ref().is_some_and(|s| s.job_run.is_some()),
            clock: config.clock,
            domains_sent: DomainsSent::new(workers),
            providers: std::sync::Arc::clone(&config.providers),
        }
    }
}

/// Output rows of one batch, one buffer per list, plus the batch's tallies.
#[derive(Default)]
pub(super) struct Serialized {
    pub(super) lists: [Vec<u8>; 4],
    pub(super) tally: Tally,
    /// The batch's rows per domain (keyed by the domain's shared analysis, so a row costs a
    /// pointer lookup), merged by name into the run's [`crate::grouping::DomainTally`] by the
    /// writer.
    pub(super) domains: Vec<(Arc<DomainFacts>, DomainCounts)>,
    /// Malformed addresses' domains (the text after the last @) and their status.
    pub(super) malformed_domains: Vec<(String, Status)>,
    /// With --group-by: each row's group and outcome, in order, for the per-group tallies.
    pub(super) group_rows: Vec<(u32, Outcome)>,
    /// New verdicts for the store: at level smtp those of the rows the SMTP stage left (per
    /// address), at level dns packed, with the first of each domain in the batch (the list
    /// writer sends each domain's verdict to the store once a run).
    pub(super) records: Vec<Record>,
    pub(super) dns_records: DnsVerdicts,
    pub(super) domain_firsts: Vec<DomainFirst>,
    /// Rows whose status differs from their previous verification: changes.csv rows.
    pub(super) changes: Vec<u8>,
    /// `previous→new` status of each of them, for summary.json.
    pub(super) transitions: Vec<(Status, Status)>,
}

/// A batch's first dns-level verdict of a domain: `dns_records.get(record)`, with the detail
/// and MX that belong to its domain.
pub(super) struct DomainFirst {
    pub(super) record: usize,
    pub(super) detail: String,
    pub(super) mx: Option<String>,
}

/// Format stage: formats chunks until the input ends or the writer stops; the rows formatted.
pub(super) fn format_stage(
    mut input: mpsc::Receiver<Checked>,
    output: crossbeam_channel::Sender<(Vec<Serialized>, Checked)>,
    cx: &FormatContext,
    dedup: &mut Dedup,
    pool: &rayon::ThreadPool,
) -> StageResult {
    let mut rows = 0;
    while let Some(mut checked) = input.blocking_recv() {
        let batches = pool.install(|| finish_chunk(&mut checked, cx, dedup));
        rows += checked.rows.len() as u64;
        // Freeing a chunk's rows is not free: let the writer thread do it.
        if output.send((batches, checked)).is_err() {
            break;
        }
    }
    Ok(StageStats { rows, cached: 0 })
}

/// One chunk: mark repeats and assign groups (in input order, sequentially: cheap), then
/// decide and serialise in parallel.
fn finish_chunk(checked: &mut Checked, cx: &FormatContext, dedup: &mut Dedup) -> Vec<Serialized> {
    dedup.mark(checked);
    let chunk = &checked.chunk;
    checked
        .rows
        .par_chunks(SERIALIZE_BATCH)
        .enumerate()
        .map(|(b, batch)| serialize_batch(chunk, b * SERIALIZE_BATCH, batch, cx))
        .collect()
}

/// Decide and format rows `first..first+rows.len()` of `chunk`: original cells as parsed, as
/// many as the row has, followed by the prebounce columns.
fn serialize_batch(
    chunk: &Chunk,
    first: usize,
    rows: &[RowCheck],
    cx: &FormatContext,
) -> Serialized {
    let mut batch = BatchWriter::new(cx, rows.len());
    for (i, row) in rows.iter().enumerate() {
        batch.add(chunk, first + i, row);
    }
    batch.out
}

/// One batch being serialised: its output and the scratch buffers its rows reuse.
struct BatchWriter<'a, 'c> {
    cx: &'a FormatContext<'c>,
    out: Serialized,
    /// Domain analyses are shared (one Arc per domain and thread), so their address finds a
    /// batch's entry without hashing the name. The entry holds the Arc, so the address cannot
    /// be reused for another domain while the batch runs. (Hashed with ahash: an address's low
    /// bits are all alignment zeros.)
    domain_slot: HashMap<usize, usize, ahash::RandomState>,
    /// Each domain's provider (index in the table), found once per batch, keyed like
    /// `domain_slot` (the chunk's rows hold the Arcs while the batch runs).
    provider_slot: HashMap<usize, Option<usize>, ahash::RandomState>,
    detail: String,
    /// The flags and probability cells repeat across rows (a probability per reason and flag
    /// floor): each pair is formatted once, `<delim>flags<delim>p`, by flag bits and the
    /// probability's bits.
    flag_and_p_cells: Vec<((u8, u64), Vec<u8>)>,
    /// The store's clock for the batch's records (0 without a store).
    now: i64,
    /// The worker's [`DomainsSent`], locked at the batch's first dns-level verdict.
    sent: Option<MutexGuard<'a, AnalysesSent>>,
    /// Rows of the batch not written yet (the current one included).
    rows_left: usize,
    /// A list buffer has been sized for the batch.
    sized_one_list: bool,
}

impl<'a, 'c> BatchWriter<'a, 'c> {
    fn new(cx: &'a FormatContext<'c>, rows: usize) -> Self {
        let now = cx.store_level.map_or(0, |_| cx.clock.now());
        BatchWriter {
            cx,
            out: Serialized {
                group_rows: Vec::with_capacity(if cx.grouping { rows } else { 0 }),
                dns_records: DnsVerdicts::new(now),
                ..Serialized::default()
            },
            domain_slot: HashMap::default(),
            provider_slot: HashMap::default(),
            detail: String::new(),
            flag_and_p_cells: Vec::new(),
            now,
            sent: None,
            rows_left: rows,
            sized_one_list: false,
        }
    }

    /// Row `r` of `chunk`: its verdict, counted, formatted and recorded.
    fn add(&mut self, chunk: &Chunk, r: usize, row: &RowCheck) {
        let mut v = verdict::decide(&row.evidence, self.cx.policy);
        // A distributed job's rows answered by its own workers are its own verdicts, as one
        // machine's run would have written them: not "cached".
        if let (Evidence::Stored { prior, .. }, true) = (&row.evidence, self.cx.job_run)
            && prior.run.is_some()
            && prior.run == self.cx.run
        {
            v.detail = std::borrow::Cow::Borrowed(prior.detail.as_str());
        }
        let provider = self.provider(row, &v);
        let outcome = Outcome::of(row, v.reason, &self.cx.priors, provider);
        self.count(chunk, r, row, &v, &outcome);
        self.fill_detail(row, &v);
        let flag_and_p = self.flag_and_p_cells(&outcome);
        self.note_change(row, &v);
        self.write_row(chunk, r, row, &v, &outcome, flag_and_p);
        // Last: the store's record takes the verdict's detail and MX.
        self.record(row, &mut v);
    }

    /// The row's part of the batch's tallies, its group's and its domain's.
    fn count(&mut self, chunk: &Chunk, r: usize, row: &RowCheck, v: &Verdict, o: &Outcome) {
        let out = &mut self.out;
        out.tally.count(o);
        if self.cx.grouping {
            out.group_rows.push((row.group, *o));
        }
        match &row.evidence {
            Evidence::Syntax(Err(e)) if !matches!(e, syntax::SyntaxError::Empty) => {
                let malformed = chunk
                    .field_text(r, row.address_column(self.cx.dialect.email_column))
                    .and_then(Result::ok)
                    .and_then(malformed_domain);
                if let Some(d) = malformed {
                    out.malformed_domains.push((d, v.status));
                }
            }
            evidence => {
                if let Some(a) = evidence.address() {
                    let slot = *self
                        .domain_slot
                        .entry(Arc::as_ptr(&a.domain) as usize)
                        .or_insert_with(|| {
                            out.domains.push((Arc::clone(&a.domain), [0; 4]));
                            out.domains.len() - 1
                        });
                    out.domains[slot].1[v.status.index()] += 1;
                }
            }
        }
    }

    /// The provider running the row's domain's preferred mail server, if the table knows it.
    fn provider(&mut self, row: &RowCheck, v: &Verdict) -> Option<usize> {
        let domain = &row.evidence.address()?.domain;
        let mx = v.mx.as_deref()?;
        let providers = &self.cx.providers;
        *self
            .provider_slot
            .entry(Arc::as_ptr(domain) as usize)
            .or_insert_with(|| providers.index_of_host(mx))
    }

    /// The detail cell (with how a ragged row's shape differs).
    fn fill_detail(&mut self, row: &RowCheck, v: &Verdict) {
        self.detail.clear();
        self.detail.push_str(&v.detail);
        if let Some(ragged) = &row.ragged {
            if !self.detail.is_empty() {
                self.detail.push_str("; ");
            }
            let _ = write!(self.detail, "{ragged}");
        }
        if let Some(soft) = &row.soft_bounced {
            if !self.detail.is_empty() {
                self.detail.push_str("; ");
            }
            let _ = write!(self.detail, "{soft}");
        }
    }

    /// The index of the outcome's flags and probability cells in `flag_and_p_cells`.
    fn flag_and_p_cells(&mut self, outcome: &Outcome) -> usize {
        let key = (outcome.flags.bits(), outcome.p.to_bits());
        match self.flag_and_p_cells.iter().position(|(k, _)| *k == key) {
            Some(k) => k,
            None => {
                let format = &self.cx.row_format;
                let mut cells = format.flags[usize::from(key.0)].clone();
                cells.push(self.cx.dialect.delimiter);
                let p = format!("{:.4}", outcome.p);
                format.encoder.push(&mut cells, p.as_bytes());
                self.flag_and_p_cells.push((key, cells));
                self.flag_and_p_cells.len() - 1
            }
        }
    }

    /// A changes.csv row when the status differs from the address's previous verification.
    fn note_change(&mut self, row: &RowCheck, v: &Verdict) {
        let (Some(prev), false) = (&row.previous, row.duplicate) else {
            return;
        };
        if prev.status == v.status {
            return;
        }
        let normalized = row
            .evidence
            .address()
            .map(Address::normalized)
            .unwrap_or_default();
        let changes = &mut self.out.changes;
        self.out.transitions.push((prev.status, v.status));
        let verified_at =
            std::time::UNIX_EPOCH + Duration::from_secs(prev.verified_at.max(0) as u64);
        for (k, cell) in [
            normalized.as_str(),
            prev.status.as_str(),
            prev.reason.as_str(),
            &crate::model::time::rfc3339_utc(verified_at),
            v.status.as_str(),
            v.reason.as_str(),
        ]
        .into_iter()
        .enumerate()
        {
            if k > 0 {
                changes.push(b',');
            }
            self.cx
                .row_format
                .changes_encoder
                .push(changes, cell.as_bytes());
        }
        changes.push(b'\n');
    }

    /// The row in its list: the original cells, all of them and no more (a ragged row stays
    /// ragged: padding or cutting it would change the user's data), then the prebounce columns,
    /// which are therefore always a row's last cells.
    fn write_row(
        &mut self,
        chunk: &Chunk,
        r: usize,
        row: &RowCheck,
        v: &Verdict,
        outcome: &Outcome,
        flag_and_p: usize,
    ) {
        let delim = self.cx.dialect.delimiter;
        let format = &self.cx.row_format;
        let enc = &format.encoder;
        let out = &mut self.out.lists[v.status.index()];
        if out.capacity() == 0 {
            // Room for the rest of the batch at this row's size (most of a batch goes to one
            // list; the others get an eighth), so that a buffer is not regrown and copied.
            let row_bytes = chunk.raw(r).map_or(64, <[u8]>::len) + APPENDED_BYTES;
            let rows = if self.sized_one_list {
                self.rows_left.div_ceil(8)
            } else {
                self.rows_left
            };
            out.reserve(rows * row_bytes);
            self.sized_one_list = true;
        }
        self.rows_left = self.rows_left.saturating_sub(1);
        match chunk.raw(r) {
            // A quote-free row is already its own CSV encoding.
            Some(raw) => out.extend_from_slice(raw),
            None => {
                for (k, cell) in chunk.fields(r).enumerate() {
                    if k > 0 {
                        out.push(delim);
                    }
                    enc.push(out, cell);
                }
            }
        }
        // Each cell costs a call or two: most of the appended ones are empty or from a small
        // set formatted once, and the address is copied without a search for quotes where it
        // cannot need any.
        out.extend_from_slice(&format.status_and_reason[v.reason.index()]);
        out.push(delim);
        enc.push(out, self.detail.as_bytes());
        out.push(delim);
        let address = row.evidence.address();
        if let Some(a) = address {
            if format.addresses_need_no_quotes {
                out.extend_from_slice(a.local.as_bytes());
                out.push(b'@');
                out.extend_from_slice(a.domain_unicode().as_bytes());
            } else {
                enc.push(out, a.normalized().as_bytes());
            }
        }
        out.push(delim);
        if let Some(suggestion) = address.and_then(Address::suggestion) {
            enc.push(out, suggestion.as_bytes());
        }
        out.extend_from_slice(&self.flag_and_p_cells[flag_and_p].1);
        out.push(delim);
        if let Some(mx) = v.mx.as_deref() {
            enc.push(out, mx.as_bytes());
        }
        out.push(delim);
        let provider = usize::from(outcome.provider)
            .checked_sub(1)
            .and_then(|i| self.cx.providers.providers().get(i));
        if let Some(p) = provider {
            enc.push(out, p.id.as_bytes());
        }
        out.push(b'\n');
    }

    /// The row's verdict for the store, when this run verified it.
    fn record(&mut self, row: &RowCheck, v: &mut Verdict) {
        let Some(level) = self.cx.store_level else {
            return;
        };
        if row.duplicate || !self.verified_here(level, row, v) {
            return;
        }
        let address = row.evidence.address();
        match (level, address) {
            // A dns-level verdict is its domain's, so its detail and MX are stored once, with
            // the domain (from the batch's first row there).
            (Level::Dns, Some(a)) => {
                let fresh = matches!(row.evidence, Evidence::Domain { .. });
                if fresh && self.first_sent(&a.domain) {
                    self.out.domain_firsts.push(DomainFirst {
                        record: self.out.dns_records.len(),
                        detail: std::mem::take(&mut v.detail).into_owned(),
                        mx: v.mx.take().map(Cow::into_owned),
                    });
                }
                self.out
                    .dns_records
                    .push(|key| a.push_dedup_key(key), v.reason);
            }
            _ => self.out.records.push(Record {
                key: address.map(Address::dedup_key).unwrap_or_default(),
                reason: v.reason,
                detail: std::mem::take(&mut v.detail).into_owned(),
                mx: v.mx.take().map(Cow::into_owned),
                level,
                verified_at: self.now,
                reply: None,
            }),
        }
    }

    /// Whether this run verified the row (so its verdict is stored) at store level `level`.
    fn verified_here(&self, level: Level, row: &RowCheck, v: &Verdict) -> bool {
        match &row.evidence {
            // Verdicts probed at level smtp were committed by the SMTP stage; the rows it
            // leaves without SMTP evidence are the domains that take no mail (a final verdict).
            Evidence::Domain { smtp: None, .. } => {
                level == Level::Dns || v.reason != Reason::DomainAcceptsMail
            }
            // A resumed run answers the rest of a domain from the verdict it stored before
            // the interruption: that verifies these addresses in this run too.
            Evidence::Stored { prior, .. } => {
                level == Level::Dns
                    && prior.level == Level::Dns
                    && prior.run.is_some()
                    && prior.run == self.cx.run
            }
            _ => false,
        }
    }

    /// Whether this worker sends `domain`'s verdict to the store for the first time this run.
    fn first_sent(&mut self, domain: &Arc<DomainFacts>) -> bool {
        let cx = self.cx;
        let sent = self
            .sent
            .get_or_insert_with(|| cx.domains_sent.of_this_worker());
        first_sent(sent, domain)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_is_new_once_whichever_shard_it_lands_in() {
        let mut seen = ShardedSeen::new();
        // Hashes that differ only in the bits that pick the shard, and one that differs in none.
        let hashes: Vec<u64> = (0..SEEN_SHARDS as u64).map(|s| (s << 40) | 7).collect();
        for &h in &hashes {
            assert!(seen.insert(h), "{h:#x} is new");
        }
        for &h in &hashes {
            assert!(!seen.insert(h), "{h:#x} was seen");
        }
        assert!(seen.0.iter().all(|shard| shard.len() == 1));
    }

    fn row_with(dedup_hash: Option<u64>) -> RowCheck {
        RowCheck {
            evidence: Evidence::Unreadable(crate::verdict::Unreadable::MissingEmailCell),
            sendable: true,
            dedup_hash,
            duplicate: false,
            group_key: 0,
            group: 0,
            cross_group: false,
            previous: None,
            ragged: None,
            soft_bounced: None,
        }
    }

    #[test]
    fn the_first_of_each_address_in_input_order_is_not_a_repeat_across_chunks_and_shards() {
        let mut seen = ShardedSeen::new();
        let (a, b, c) = (1 << 40, 2 << 40, (1 << 40) | 5);
        let duplicates = |rows: &[RowCheck]| rows.iter().map(|r| r.duplicate).collect::<Vec<_>>();
        let mut first: Vec<RowCheck> = [Some(a), Some(b), Some(a), None, Some(c), Some(b)]
            .into_iter()
            .map(row_with)
            .collect();
        seen.mark(&mut first);
        assert_eq!(duplicates(&first), [false, false, true, false, false, true]);
        // A later chunk: all three were seen.
        let mut second: Vec<RowCheck> = [Some(c), Some(a), Some(3 << 40)]
            .into_iter()
            .map(row_with)
            .collect();
        seen.mark(&mut second);
        assert_eq!(duplicates(&second), [true, true, false]);
    }
}
