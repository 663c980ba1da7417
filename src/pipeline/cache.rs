//! The store's side of a run: opening it (the run to start or resume, the suppression list,
//! the domains read whole), the answers the check threads give from it, and the store stage,
//! which reads the verdicts the check threads could not answer from. Whether a stored verdict
//! answers a row is decided by `store::policy`; this file only reads.

use std::collections::HashMap;
use std::sync::Arc;

use crossbeam_channel::Sender;
use tokio::sync::mpsc;

use crate::bounce::Kind;
use crate::model::time::date_of;
use crate::smtp::probe::Prober;
use crate::store::{
    CachePolicy, DecidedUnder, DomainState, RunStamp, RunStart, Store, StoreAccess, StoreError,
    StoreOptions, StoreWriter, SuppressionSet, Write, answer_row,
};
use crate::syntax::{self, Address};
use crate::verdict::Evidence;
use crate::{Level, VerifyConfig};

use super::{Checked, Failed, StageResult, StageStats};

/// What the store knows of each domain, by ASCII name.
type DomainStates = HashMap<String, DomainState, ahash::RandomState>;

/// What the check threads answer rows from, the same for the whole run: the suppression list
/// and, at level dns over a store read whole, the domains' verdicts. A second run over a list
/// is mostly such rows: answered here, their lookup and the update of their verdict's shared
/// reference count are spread over the check threads instead of queueing in the store stage's
/// one thread.
pub(super) struct EarlyAnswers {
    suppressions: SuppressionSet,
    /// Addresses with soft bounces about their mailbox in the last [`SOFT_WINDOW`], by key.
    soft_bounced: HashMap<String, SoftBounced>,
    /// Level dns: every domain of the store (read whole when the run started).
    domains: Option<Arc<DomainStates>>,
    /// A distributed job's run: rows answered from its own verdicts are not counted as
    /// answered from the store (its workers decided them for it).
    pub(super) job_run: Option<i64>,
}

/// The window of the soft counts a run flags: the one `bounces import` applies by default.
const SOFT_WINDOW: i64 = 30 * 86_400;

/// An address's soft bounces about its mailbox (full, temporarily disabled) since its last
/// delivery, within [`SOFT_WINDOW`]: the `soft-bounced` flag, and its detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SoftBounced {
    count: u32,
    last: i64,
}

impl std::fmt::Display for SoftBounced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} soft bounce{} about the mailbox in the last 30 days, the last on {}",
            self.count,
            if self.count == 1 { "" } else { "s" },
            date_of(self.last)
        )
    }
}

/// The soft counts of the store's records of the last [`SOFT_WINDOW`], oldest first: a
/// delivery resets an address's count.
fn soft_bounced(store: &Store, now: i64) -> Result<HashMap<String, SoftBounced>, StoreError> {
    let mut counts: HashMap<String, SoftBounced> = HashMap::new();
    store.each_bounce(now.saturating_sub(SOFT_WINDOW), |b| {
        if b.kind == Kind::Delivered {
            counts.remove(&b.recipient);
        } else if b.counts_soft {
            let c = counts
                .entry(b.recipient)
                .or_insert(SoftBounced { count: 0, last: 0 });
            c.count += 1;
            c.last = c.last.max(b.event_at);
        }
        Ok(())
    })?;
    Ok(counts)
}

impl EarlyAnswers {
    /// The soft count of a row's address; none for a suppressed row (its verdict says more).
    pub(super) fn soft_bounced(&self, evidence: &Evidence) -> Option<Box<SoftBounced>> {
        if self.soft_bounced.is_empty() || matches!(evidence, Evidence::Suppressed { .. }) {
            return None;
        }
        let address = evidence.address()?;
        self.soft_bounced
            .get(&address.dedup_key())
            .map(|s| Box::new(*s))
    }

    /// A row's evidence, answered if it can be here: suppressed first (whatever the store
    /// says), then by its domain's verdict when that one alone answers.
    pub(super) fn answer(&self, evidence: Evidence) -> Evidence {
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
pub(super) struct RunStore {
    main: Store,
    pub(super) run: RunStart,
    /// What the check threads answer from, if anything.
    pub(super) early: Option<EarlyAnswers>,
    /// Moved into the store stage's thread (none when the store has nothing to look up).
    pub(super) lookup: Option<StoreLookup>,
    writer: Option<StoreWriter>,
    /// A unit of a distributed job: the job's run stays open when the unit's lists are written.
    job_unit: bool,
}

impl RunStore {
    /// Opens the store (before any output exists, so a damaged or locked one fails cleanly),
    /// starts or resumes the run, and reads what the run answers from. `now`: the run's clock.
    pub(super) fn open(
        config: &VerifyConfig,
        opts: &StoreOptions,
        prober: Option<&Prober>,
        now: i64,
    ) -> Result<RunStore, StoreError> {
        let access = StoreAccess {
            busy_timeout: opts.busy_timeout,
            clock: config.clock,
        };
        let main = Store::open(&opts.path, access)?;
        let max_age = i64::try_from(opts.max_age.as_secs()).unwrap_or(i64::MAX);
        let under = decided_under(config);
        // The same command, started again after an interruption, resumes its run; the same
        // list under other options is another run (its verdicts would not be this one's).
        let fingerprint = match &opts.job_run {
            Some(job) => job.fingerprint.clone(),
            None => format!(
                "verify|{}|{}|{}|fresh={}|private-mx={}|reserved-domains={}|sender={}",
                config.level.as_str(),
                config.input.describe(),
                config.out_dir.display(),
                opts.fresh,
                config.policy.allow_private_mx,
                config.syntax.allow_reserved_domains,
                under.sender.as_deref().unwrap_or("")
            ),
        };
        // A job's stored verdicts are judged as of its submission (see `JobRun::as_of`).
        let judged_at = opts.job_run.as_ref().map_or(now, |j| j.as_of.min(now));
        let mut run = main.begin_run(&fingerprint, judged_at.saturating_sub(max_age))?;
        // A job's units and its collect are one run by design, not a resumed interruption.
        if opts.job_run.is_some() {
            run.resumed = false;
        }
        if let Some(prober) = prober {
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
                Store::open(&opts.path, access)?,
                CachePolicy {
                    level,
                    now: judged_at,
                    max_age,
                    // --fresh: only what this run (or the interrupted run it resumes) decided.
                    fresh: opts.fresh.then_some(run.id),
                    job_run: opts.job_run.as_ref().map(|_| run.id),
                    under: under.clone(),
                },
            )),
        };
        let preloaded = match &cache {
            Some((store, policy)) => preload(store, policy, config.preload_domains, &run)?,
            None => None,
        };
        let lookup = cache.map(|(store, policy)| StoreLookup {
            store,
            policy,
            memo: StoredDomainMemo::new(preloaded.clone(), run.id),
        });
        let early = EarlyAnswers {
            suppressions: main.suppression_set()?,
            soft_bounced: soft_bounced(&main, now)?,
            domains: preloaded,
            job_run: opts.job_run.as_ref().map(|_| run.id),
        };
        let writer = StoreWriter::spawn(
            Store::open(&opts.path, access)?,
            RunStamp { run: run.id, under },
            opts.suppress_invalid,
        )?;
        Ok(RunStore {
            main,
            run,
            // Nothing to answer early from: the check threads need not look.
            early: (!early.suppressions.is_empty()
                || !early.soft_bounced.is_empty()
                || early.domains.is_some())
            .then_some(early),
            lookup,
            writer: Some(writer),
            job_unit: opts.job_run.as_ref().is_some_and(|j| !j.finish),
        })
    }

    /// Where the stages send new verdicts.
    pub(super) fn sender(&self) -> Option<Sender<Write>> {
        self.writer.as_ref().map(StoreWriter::sender)
    }

    /// Commits what is queued and stops the writer (once all senders are dropped); the number
    /// of verdicts this run wrote.
    pub(super) fn finish_writer(&mut self) -> Result<u64, StoreError> {
        self.writer.take().map_or(Ok(0), StoreWriter::finish)
    }

    /// Marks the run finished: only a run whose lists are written is; the same command
    /// otherwise resumes it.
    pub(super) fn finish_run(&self) -> Result<(), StoreError> {
        if self.job_unit {
            return Ok(());
        }
        self.main.finish_run(self.run.id)
    }
}

/// The options this run decides its verdicts under: what it stores with them, and what a stored
/// verdict must have been decided under to serve it.
fn decided_under(config: &VerifyConfig) -> DecidedUnder {
    DecidedUnder {
        allow_private_mx: config.policy.allow_private_mx,
        sender: match (&config.smtp, config.level) {
            (Some(probe), Level::Smtp) => {
                Some(DecidedUnder::sender_of(&probe.mail_from, &probe.helo))
            }
            _ => None,
        },
    }
}

/// Level dns over a store of at most `limit` domains: its domains read in one scan.
fn preload(
    store: &Store,
    policy: &CachePolicy,
    limit: usize,
    run: &RunStart,
) -> Result<Option<Arc<DomainStates>>, StoreError> {
    if policy.level != Level::Dns {
        return Ok(None);
    }
    let all = store.all_domains(limit)?.map(|all| {
        all.into_iter()
            .map(|(name, stored)| (name, DomainState::of(stored, policy, run.id)))
            .collect::<DomainStates>()
    });
    Ok(all.map(Arc::new))
}

/// What the store stage answers rows from (levels dns and smtp: a syntax check is cheaper
/// than a lookup), the rows the check threads could not answer.
pub(super) struct StoreLookup {
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
    /// This run's id: the verdicts it wrote are its own (it resumes an interrupted run).
    run: i64,
    /// Rows answered from the cache here.
    hits: u64,
}

impl StoredDomainMemo {
    fn new(preloaded: Option<Arc<DomainStates>>, run: i64) -> Self {
        StoredDomainMemo {
            preloaded,
            domains: HashMap::default(),
            by_analysis: HashMap::default(),
            run,
            hits: 0,
        }
    }
}

/// Bounds [`StoredDomainMemo::by_analysis`] and [`StoredDomainMemo::domains`], so the memo's
/// memory does not grow with the list's domains (each entry also keeps a domain analysis
/// alive): past it they start over, and a domain seen again is read from the store again.
/// Lists are mostly grouped or skewed by domain, so the entries in use stay.
const MAX_DOMAINS_REMEMBERED: usize = 1 << 16;

/// Store stage: looks up chunks until the input ends or a later stage stops; the rows passed
/// and those answered here. A store that fails stops the run with its error.
pub(super) fn store_stage(
    mut lookup: StoreLookup,
    mut input: mpsc::Receiver<Checked>,
    output: mpsc::Sender<Checked>,
    failed: &Failed,
) -> StageResult {
    let mut rows = 0;
    while let Some(mut checked) = input.blocking_recv() {
        if let Err(e) = look_up_chunk(&mut checked, &mut lookup) {
            return Err(failed.raise(e.into()));
        }
        rows += checked.rows.len() as u64;
        if output.blocking_send(checked).is_err() {
            break;
        }
    }
    Ok(StageStats {
        rows,
        cached: lookup.memo.hits,
    })
}

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

fn look_up_rows(
    checked: &mut Checked,
    memo: &mut StoredDomainMemo,
    store: &Store,
    policy: &CachePolicy,
) -> Result<(), StoreError> {
    let mut hits = 0;
    let run = memo.run;
    for row in &mut checked.rows {
        // Suppressed rows, and rows their domain's verdict answers alone, are answered already.
        let Evidence::Syntax(Ok(address)) = &row.evidence else {
            continue;
        };
        let domain = match policy.level {
            Level::Dns => domain_state(memo, store, policy, address)?,
            _ => DomainState::NOTHING,
        };
        let own = match domain.needs_own_verdict() {
            true => store.lookup(&address.dedup_key())?,
            false => None,
        };
        let answer = answer_row(policy, domain, own, run);
        row.previous = answer.previous;
        let Some(prior) = answer.verdict else {
            continue;
        };
        if policy.job_run.is_none() || prior.run != policy.job_run {
            hits += 1;
        }
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
            let state = DomainState::of(stored, policy, memo.run);
            if memo.domains.len() >= MAX_DOMAINS_REMEMBERED {
                memo.domains.clear();
            }
            memo.domains.insert(name.to_owned(), state.clone());
            state
        }
    };
    if memo.by_analysis.len() >= MAX_DOMAINS_REMEMBERED {
        memo.by_analysis.clear();
    }
    let entry = memo
        .by_analysis
        .entry(analysis)
        .insert_entry((Arc::clone(&address.domain), state));
    Ok(&entry.into_mut().1)
}

/// Of `addresses` (as the list wrote them, all well-formed), those a run of `config` would
/// answer without any network work, judged at `now`: on the suppression list, or with a stored
/// verdict that serves the run (the same rules as the store stage's). A distributed job
/// queues only the rest; its collect judges the store as of the same moment (`JobRun::as_of`)
/// and so answers these as submit did. Nothing when the run has no store, or an SQLite store
/// not there yet (submit must not create one on its own machine).
pub(crate) fn answered_without_network(
    config: &VerifyConfig,
    addresses: &[String],
    now: i64,
) -> Result<std::collections::HashSet<String>, StoreError> {
    let mut answered = std::collections::HashSet::new();
    let Some(opts) = &config.store else {
        return Ok(answered);
    };
    let postgres = opts
        .path
        .to_str()
        .is_some_and(crate::store::postgres::is_postgres_url);
    if !postgres && !opts.path.is_file() {
        return Ok(answered);
    }
    let access = StoreAccess {
        busy_timeout: opts.busy_timeout,
        clock: config.clock,
    };
    let store = Store::open(&opts.path, access)?;
    let suppressions = store.suppression_set()?;
    let max_age = i64::try_from(opts.max_age.as_secs()).unwrap_or(i64::MAX);
    // No run yet: -1 is no run's id, so no verdict is this run's own, and --fresh serves none.
    let run = -1;
    let policy = CachePolicy {
        level: config.level,
        now,
        max_age,
        fresh: opts.fresh.then_some(run),
        job_run: None,
        under: decided_under(config),
    };
    let looks_up = config.level != Level::Syntax && store.has_verdicts()?;
    let mut domains: HashMap<String, DomainState> = HashMap::new();
    store.reading(|store| {
        for text in addresses {
            let Ok(address) = syntax::check(text, config.syntax) else {
                continue;
            };
            if suppressions.of(&address).is_some() {
                answered.insert(text.clone());
                continue;
            }
            if !looks_up {
                continue;
            }
            let domain = match policy.level {
                Level::Dns => {
                    let name = address.domain_ascii();
                    if !domains.contains_key(name) {
                        let state = DomainState::of(store.lookup_domain(name)?, &policy, run);
                        domains.insert(name.to_owned(), state);
                    }
                    &domains[name]
                }
                _ => DomainState::NOTHING,
            };
            let own = match domain.needs_own_verdict() {
                true => store.lookup(&address.dedup_key())?,
                false => None,
            };
            if answer_row(&policy, domain, own, run).verdict.is_some() {
                answered.insert(text.clone());
            }
        }
        Ok(())
    })?;
    Ok(answered)
}
