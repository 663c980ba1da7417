//! The verification pipeline: one file per stage, each on its own thread, joined by bounded
//! channels so the run streams and memory stays flat whatever the input size:
//!
//! read (chunks of rows) → check (syntax, rayon; also the suppression list and, at level dns,
//! the domains' stored verdicts) → store (the other cached verdicts, and the previous ones for
//! changes.csv: rows answered here or earlier skip the network) → dns (tokio, from --level dns) →
//! smtp (tokio, --level smtp; commits each round of sessions' verdicts to the store as it ends) →
//! format (marks repeats in input order, decides verdicts and serialises rows, rayon) →
//! write (the lists; the other new verdicts go to the store writer, see `store::writer`).
//!
//! Each stage returns its result through its handle. A stage that fails raises the run's
//! [`Failed`] flag (so the others stop doing work for a run that fails anyway) and returns its
//! error; the others end at their closed channels. The run reports the first error in pipeline
//! order, with its cause.
//!
//! At level smtp, `preflight` checks this machine as a prober before any row is read (port 25
//! at the list's top domains, HELO name, blocklists).
//!
//! Files: `read`, `check`, `cache` (the store's side: the run's store, the check threads'
//! early answers, the store stage; the rules are `store::policy`), `dns`, `preflight`,
//! `smtp`, `format`, `write`, `tally` (the counts) and `summary`.

mod cache;
mod check;
mod dns;
mod format;
mod preflight;
mod read;
mod smtp;
mod summary;
mod tally;
mod write;

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, Scope, ScopedJoinHandle};
use std::time::Instant;

use crossbeam_channel::{Sender, bounded};
use indicatif::ProgressBar;
use tokio::sync::mpsc;

use crate::input::{Chunk, InputReader};
use crate::model::Ragged;
use crate::output::summary::Summary;
use crate::output::{ListWriters, prepare_out_dir};
use crate::smtp::probe::Prober;
use crate::store::{Previous, Write};
use crate::verdict::Evidence;
use crate::{Error, VerifyConfig};

pub(crate) use cache::answered_without_network;
pub(crate) use check::well_formed_addresses;

use cache::{RunStore, StoreLookup};
use check::CheckContext;
use format::{Dedup, FormatContext};
use write::{WriteTargets, Written};

/// Chunks in flight between two stages: enough to smooth the stages' pace (4 cost memory and
/// gained no speed).
const CHANNEL_DEPTH: usize = 2;

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
    /// The row has more or fewer cells than the header (`ragged-row`), and where its address
    /// was taken from when its cells were shifted.
    ragged: Option<Ragged>,
    /// The store's soft bounces of the address below the suppression limit (`soft-bounced`).
    soft_bounced: Option<Box<cache::SoftBounced>>,
}

impl RowCheck {
    /// The column the row's address was read from: the email column, unless the row's cells
    /// were shifted.
    fn address_column(&self, email_column: usize) -> usize {
        self.ragged
            .and_then(|r| r.shifted_column())
            .unwrap_or(email_column)
    }
}

/// Checked rows of one chunk.
struct Checked {
    chunk: Chunk,
    rows: Vec<RowCheck>,
}

/// What a stage reports when it ends well.
#[derive(Debug, Default, Clone, Copy)]
struct StageStats {
    /// Rows it passed on (the read stage: rows read).
    rows: u64,
    /// Of those, rows it answered from the store.
    cached: u64,
}

type StageResult = Result<StageStats, Error>;

/// Raised by a stage that fails: the others stop reading and probing for a run that fails
/// anyway. Per run.
#[derive(Default)]
struct Failed(AtomicBool);

impl Failed {
    /// Raises the flag; returns `e` for the stage to return.
    fn raise(&self, e: Error) -> Error {
        self.0.store(true, Ordering::Relaxed);
        e
    }

    fn raised(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

pub(crate) fn run(config: &VerifyConfig) -> Result<Summary, Error> {
    let started = Instant::now();
    let started_at = crate::model::time::rfc3339_utc(std::time::SystemTime::now());
    let (reader, mut dialect) = InputReader::open(&config.input, &config.input_options)?;
    let group_column = format::group_column(config.group_by.as_ref(), &dialect)?;
    if let (Some(column), true) = (
        group_column.filter(|&c| c != format::PROVIDER_GROUPING),
        dialect.has_header,
    ) {
        let names: Vec<String> = dialect
            .header
            .iter()
            .map(|h| String::from_utf8_lossy(h).into_owned())
            .collect();
        dialect.warnings.extend(crate::input::same_name_warning(
            "the --group-by column",
            &names,
            column,
        ));
    }
    // Now, not with the summary: a run may take hours, and the user may have meant the other
    // column. A closed stderr must not fail the run.
    for warning in &dialect.warnings {
        let _ = writeln!(std::io::stderr(), "prebounce: warning: {warning}");
    }
    // Set up before any output exists, so a bad sender, a damaged or locked store (and, before
    // the lists, a bad DNS configuration) fails cleanly.
    let prober = smtp::prober(config)?;
    let mut store = match &config.store {
        Some(opts) => Some(RunStore::open(
            config,
            opts,
            prober.as_deref(),
            config.clock.now(),
        )?),
        None => None,
    };
    prepare_out_dir(&config.out_dir, config.force)?;
    let pool = worker_pool(config.threads)?;
    let dns = dns::DnsStage::set_up(config)?;
    let preflight = preflight::preflight(config, dns.as_ref(), prober.as_deref())?;
    let mut lists = ListWriters::create(&config.out_dir, dialect.delimiter, &dialect.header)?;
    let bar = write::progress_bar(config.progress, reader.total_bytes);
    let lookup = store.as_mut().and_then(|s| s.lookup.take());
    let store_tx = store.as_ref().and_then(RunStore::sender);
    let run = store.as_ref().map(|s| s.run.id);
    let wiring = Wiring {
        config,
        pool: &pool,
        check: CheckContext {
            dialect: &dialect,
            syntax: config.syntax,
            group_column,
            early: store.as_ref().and_then(|s| s.early.as_ref()),
        },
        format: FormatContext::new(
            config,
            &dialect,
            group_column.is_some(),
            run,
            pool.current_num_threads(),
        ),
        dns: dns.as_ref(),
        prober: prober.as_ref(),
        bar: &bar,
        failed: Failed::default(),
    };
    let mut dedup = Dedup::new(group_column, config);
    let streamed = wiring.stream(reader, lookup, store_tx, &mut dedup, &mut lists);
    bar.finish_and_clear();
    // Every sender is gone with the stages: what they sent is committed now.
    let saved = store.as_mut().map_or(Ok(0), RunStore::finish_writer);
    let (totals, written) = streamed?;
    let saved = saved?;
    check_complete(config, &totals, &written, saved)?;
    let facts = summary::RunFacts {
        config,
        dialect: &dialect,
        dedup: &dedup,
        group_column,
        started,
        started_at,
        dns: dns.as_ref().map(|d| d.resolver.stats()),
        smtp: prober.as_ref().map(|p| p.stats()),
        egress_blocked: prober.as_ref().and_then(|p| p.egress_blocked()),
        preflight,
        resumed: store.as_ref().map(|s| s.run.resumed),
        cached_rows: totals.cached,
        saved,
    };
    let summary = summary::summarize(facts, written);
    publish(&summary, lists, store.as_ref())?;
    Ok(summary)
}

/// The rayon pool the check and format stages share, for this run.
fn worker_pool(threads: Option<usize>) -> Result<rayon::ThreadPool, Error> {
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads.unwrap_or(0))
        .thread_name(|i| format!("prebounce-work-{i}"))
        .build()
        .map_err(|e| Error::Internal(format!("cannot start worker threads: {e}")))
}

/// A run that ended well is complete: not stopped by Ctrl-C, and every row read written.
fn check_complete(
    config: &VerifyConfig,
    totals: &StageTotals,
    written: &Written,
    saved: u64,
) -> Result<(), Error> {
    if config.interrupt.as_ref().is_some_and(|i| i.is_requested()) {
        return Err(Error::Interrupted {
            store: config.store.as_ref().map(|o| o.shown()),
            saved,
        });
    }
    // The stages report their own errors; this guards against one that ends early without
    // one: it must not pass as a finished run with rows missing.
    if written.tally.rows != totals.rows_read {
        return Err(Error::Internal(format!(
            "{} of {} rows were written; a pipeline stage stopped early",
            written.tally.rows, totals.rows_read
        )));
    }
    Ok(())
}

/// The run's outputs, once every stage ended well: report.html and summary.json, the lists
/// (and changes.csv) made visible; then the run is finished in the store (only a run whose
/// lists are written is; the same command otherwise resumes it).
fn publish(summary: &Summary, lists: ListWriters, store: Option<&RunStore>) -> Result<(), Error> {
    let json = serde_json::to_vec_pretty(summary).map_err(|e| Error::Internal(e.to_string()))?;
    let report = crate::output::report::render(summary);
    lists.commit(report.as_bytes(), &json)?;
    if let Some(store) = store {
        store.finish_run()?;
    }
    Ok(())
}

/// What the stage threads share, set up before any of them starts.
struct Wiring<'a> {
    config: &'a VerifyConfig,
    pool: &'a rayon::ThreadPool,
    check: CheckContext<'a>,
    format: FormatContext<'a>,
    dns: Option<&'a dns::DnsStage>,
    prober: Option<&'a Arc<Prober>>,
    bar: &'a ProgressBar,
    failed: Failed,
}

/// The figures of the stages that ended well.
#[derive(Debug, Default)]
struct StageTotals {
    rows_read: u64,
    /// Rows answered from the store (by the check threads and the store stage).
    cached: u64,
}

impl Wiring<'_> {
    /// Runs the stages, each on its thread (the write stage on this one), until the input is
    /// written or a stage fails.
    fn stream(
        &self,
        reader: InputReader,
        lookup: Option<StoreLookup>,
        store_tx: Option<Sender<Write>>,
        dedup: &mut Dedup,
        lists: &mut ListWriters,
    ) -> Result<(StageTotals, Written), Error> {
        thread::scope(|scope| {
            let mut stages = Stages::new(scope, &self.failed);
            let (chunk_tx, chunk_rx) = bounded(CHANNEL_DEPTH);
            let interrupt = self.config.interrupt.clone();
            stages.spawn("read", move || {
                read::read_stage(reader, chunk_tx, interrupt, &self.failed)
            });
            let (checked_tx, mut rows) = mpsc::channel(CHANNEL_DEPTH);
            stages.spawn("check", move || {
                check::check_stage(chunk_rx, checked_tx, &self.check, self.pool)
            });
            if let Some(lookup) = lookup {
                let (looked_tx, looked_rx) = mpsc::channel(CHANNEL_DEPTH);
                stages.spawn("store", move || {
                    cache::store_stage(lookup, rows, looked_tx, &self.failed)
                });
                rows = looked_rx;
            }
            if let Some(dns) = self.dns {
                let (resolved_tx, resolved_rx) = mpsc::channel(CHANNEL_DEPTH);
                let resolver = Arc::clone(&dns.resolver);
                stages.spawn("dns", move || {
                    let interrupt = self.config.interrupt.as_deref();
                    let stage =
                        dns::dns_stage(resolver, rows, resolved_tx, interrupt, &self.failed);
                    dns.runtime.block_on(stage)
                });
                rows = resolved_rx;
                if let Some(prober) = self.prober {
                    rows = self.spawn_smtp(&mut stages, dns, prober, store_tx.clone(), rows);
                }
            }
            let (done_tx, done_rx) = bounded(CHANNEL_DEPTH);
            stages.spawn("format", move || {
                format::format_stage(rows, done_tx, &self.format, dedup, self.pool)
            });
            let targets = WriteTargets {
                store: store_tx.as_ref(),
                bar: self.bar,
                resolver: self.dns.map(|d| &*d.resolver),
            };
            let written = write::write_stage(done_rx, lists, &targets, &self.failed);
            drop(store_tx);
            stages.join(written)
        })
    }

    /// Starts the SMTP stage after `rows`; returns its output.
    fn spawn_smtp<'scope>(
        &'scope self,
        stages: &mut Stages<'scope, '_>,
        dns: &'scope dns::DnsStage,
        prober: &Arc<Prober>,
        store: Option<Sender<Write>>,
        rows: mpsc::Receiver<Checked>,
    ) -> mpsc::Receiver<Checked> {
        let (probed_tx, probed_rx) = mpsc::channel(CHANNEL_DEPTH);
        let (prober, policy, bar) = (Arc::clone(prober), self.config.policy, self.bar.clone());
        let commit = smtp::SmtpCommit {
            store,
            interrupt: self.config.interrupt.clone(),
            clock: self.config.clock,
        };
        stages.spawn("smtp", move || {
            let stage =
                smtp::smtp_stage(prober, policy, bar, commit, rows, probed_tx, &self.failed);
            dns.runtime.block_on(stage)
        });
        probed_rx
    }
}

/// The stage threads of a run, in pipeline order.
struct Stages<'scope, 'env> {
    scope: &'scope Scope<'scope, 'env>,
    failed: &'scope Failed,
    started: Vec<(
        &'static str,
        Result<ScopedJoinHandle<'scope, StageResult>, Error>,
    )>,
}

impl<'scope, 'env> Stages<'scope, 'env> {
    fn new(scope: &'scope Scope<'scope, 'env>, failed: &'scope Failed) -> Self {
        Stages {
            scope,
            failed,
            started: Vec::new(),
        }
    }

    /// Starts stage `name` on its thread. A thread that cannot start fails the run (its
    /// channels close, so the stages around it end).
    fn spawn(&mut self, name: &'static str, stage: impl FnOnce() -> StageResult + Send + 'scope) {
        let handle = thread::Builder::new()
            .name(format!("prebounce-{name}"))
            .spawn_scoped(self.scope, stage)
            .map_err(|e| {
                self.failed.raise(Error::Internal(format!(
                    "cannot start the {name} thread: {e}"
                )))
            });
        self.started.push((name, handle));
    }

    /// Waits for every stage; the first error in pipeline order (the write stage's, `written`,
    /// last), or the stages' totals and what was written.
    fn join(self, written: Result<Written, Error>) -> Result<(StageTotals, Written), Error> {
        let mut totals = StageTotals::default();
        let mut first_error = None;
        for (name, handle) in self.started {
            let result = handle.and_then(|h| {
                h.join()
                    .unwrap_or_else(|panic| Err(Error::Internal(panicked(name, panic.as_ref()))))
            });
            match result {
                Ok(stats) => {
                    if name == "read" {
                        totals.rows_read = stats.rows;
                    }
                    totals.cached += stats.cached;
                }
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok((totals, written?)),
        }
    }
}

/// The message of a stage that panicked (a bug).
fn panicked(stage: &str, panic: &(dyn std::any::Any + Send)) -> String {
    let what = panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("no message");
    format!("the {stage} stage panicked: {what}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store_error(what: &str) -> Error {
        Error::Store(crate::store::StoreError::Entry(what.into()))
    }

    type TestStage = fn() -> StageResult;

    /// Runs stages that end as given (in pipeline order) and a write stage that ends as
    /// `written`; what the run reports.
    fn join_of(
        stages: Vec<(&'static str, TestStage)>,
        written: Result<Written, Error>,
    ) -> Result<(StageTotals, Written), Error> {
        let failed = Failed::default();
        thread::scope(|scope| {
            let mut running = Stages::new(scope, &failed);
            for (name, stage) in stages {
                running.spawn(name, stage);
            }
            running.join(written)
        })
    }

    #[test]
    fn the_first_failed_stage_in_pipeline_order_is_reported() {
        let ended = || Ok(StageStats { rows: 3, cached: 1 });
        let err = join_of(
            vec![
                ("read", ended),
                ("store", || Err(store_error("the store stage's cause"))),
                ("format", || Err(store_error("a later one"))),
            ],
            Err(store_error("the write stage's")),
        )
        .err()
        .expect("the run fails");
        assert_eq!(err.to_string(), "the store stage's cause");
        // Only the write stage failed: its error.
        let err = join_of(vec![("read", ended)], Err(store_error("list")))
            .err()
            .expect("the run fails");
        assert_eq!(err.to_string(), "list");
        // All ended well: the read stage's rows and every stage's cached rows.
        let (totals, _) = join_of(
            vec![("read", ended), ("check", ended)],
            Ok(Written::default()),
        )
        .expect("no stage failed");
        assert_eq!((totals.rows_read, totals.cached), (3, 2));
    }

    #[test]
    fn a_stage_that_panics_fails_the_run_with_its_message() {
        let err = join_of(
            vec![("dns", || panic!("resolver bug"))],
            Ok(Written::default()),
        )
        .err()
        .expect("the run fails");
        assert_eq!(
            err.to_string(),
            "internal error: the dns stage panicked: resolver bug"
        );
    }
}
