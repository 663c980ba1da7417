//! SMTP stage (tokio, --level smtp): rows gathered into windows, each window's distinct
//! addresses probed (every domain at once, paced by the prober's per-host and global limits),
//! each round of sessions' verdicts committed to the store as it ends, the chunks passed on in
//! input order.
//!
//! When the prober finds that this machine cannot reach port 25 (the first mail servers all
//! failed to connect; `smtp::egress`), the stage says so once, attaches no SMTP evidence and
//! probes nothing more: every row keeps its DNS verdict, and the verdicts of the failed
//! connections, held back until the judgement, never reach the store.

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::ProgressBar;
use tokio::sync::mpsc;
use tokio::task::{Id, JoinSet};

use crate::clock::Clock;
use crate::dns::DomainEvidence;
use crate::interrupt::{Interrupt, requested};
use crate::output::summary::thousands;
use crate::smtp::egress::{BlockedBy, Judgement};
use crate::smtp::probe::{
    CatchAll, DomainProbe, MxTarget, ProbeConfig, Prober, SmtpEvidence, SmtpOutcome, targets_of,
};
use crate::store::{Record, Write};
use crate::syntax::Address;
use crate::verdict::{self, Evidence, Policy};
use crate::{Error, Level, VerifyConfig};

use super::{Checked, Failed, StageResult, StageStats};

/// Rows the SMTP stage gathers before probing, so a domain's addresses from anywhere in the
/// window share sessions (and one catch-all canary) instead of one session per chunk. An SMTP
/// run is paced by the servers, not by memory: holding this many rows (~100 MB) is cheap.
const SMTP_WINDOW_ROWS: usize = 500_000;

/// The prober of a --level smtp run, set up before any output exists: a HELO name or sender
/// that could never be sent fails cleanly.
pub(super) fn prober(config: &VerifyConfig) -> Result<Option<Arc<Prober>>, Error> {
    match (&config.smtp, config.level) {
        (Some(probe), Level::Smtp) => Ok(Some(Arc::new(Prober::new(ProbeConfig {
            allow_private: config.policy.allow_private_mx,
            ..probe.clone()
        })?))),
        _ => Ok(None),
    }
}

/// How long sessions in flight may take to end cleanly (their verdicts committed, QUIT sent)
/// after a stop is requested, before they are abandoned.
const SESSION_GRACE: Duration = Duration::from_millis(1000);

/// Where the SMTP stage commits each domain's verdicts, and what stops it.
#[derive(Clone)]
pub(super) struct SmtpCommit {
    pub(super) store: Option<crossbeam_channel::Sender<Write>>,
    pub(super) interrupt: Option<Arc<Interrupt>>,
    /// The run's clock, for the verdicts' timestamps.
    pub(super) clock: Clock,
}

impl SmtpCommit {
    fn interrupted(&self) -> bool {
        self.interrupt.as_ref().is_some_and(|i| i.is_requested())
    }
}

/// The SMTP stage's writes on their way to the store writer. Until the run has shown that it
/// can reach port 25 they are held: should it turn out that it cannot, the rows finish at
/// level dns, and these verdicts (connection failures) must not be stored as smtp-level ones.
/// Held only while no connection has succeeded, so only failures wait here.
struct CommitGate {
    store: Option<crossbeam_channel::Sender<Write>>,
    prober: Arc<Prober>,
    held: Mutex<Vec<Write>>,
}

impl CommitGate {
    fn new(store: Option<crossbeam_channel::Sender<Write>>, prober: Arc<Prober>) -> Self {
        CommitGate {
            store,
            prober,
            held: Mutex::new(Vec::new()),
        }
    }

    fn stores(&self) -> bool {
        self.store.is_some()
    }

    /// Sends `write` (and what was held) as the judgement allows; None: only what was held.
    fn send(&self, write: Option<Write>) {
        let Some(store) = &self.store else {
            return;
        };
        // Locked while sending, so the held writes go first.
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        match self.prober.egress() {
            Judgement::Undecided => held.extend(write),
            Judgement::Works => {
                // A closed channel: the writer failed; finishing it reports why.
                for w in held.drain(..).chain(write) {
                    let _ = store.send(w);
                }
            }
            Judgement::Blocked(_) => held.clear(),
        }
    }

    fn send_records(&self, records: Vec<Record>) {
        if !records.is_empty() {
            self.send(Some(Write::Verdicts {
                addresses: records,
                dns: Vec::new(),
                domains: Vec::new(),
            }));
        }
    }

    /// A window is probed: the judgement is settled (a few dead servers are not a blocked
    /// port), and what was held is sent or dropped.
    fn settle(&self) {
        self.prober.settle_egress();
        self.send(None);
    }
}

/// The SMTP stage's loop: gathers chunks into a window, probes it, attaches the evidence and
/// passes the chunks on in input order. Ends when the input ends, a later stage stops, the
/// run is stopped (Ctrl-C) or a stage failed (a window is not probed for a run that fails).
pub(super) async fn smtp_stage(
    prober: Arc<Prober>,
    policy: Policy,
    bar: ProgressBar,
    commit: SmtpCommit,
    mut input: mpsc::Receiver<Checked>,
    output: mpsc::Sender<Checked>,
    failed: &Failed,
) -> StageResult {
    let mut window: Vec<Checked> = Vec::new();
    let mut stats = StageStats::default();
    let mut rows = 0;
    let gate = Arc::new(CommitGate::new(commit.store.clone(), Arc::clone(&prober)));
    loop {
        let next = tokio::select! {
            next = input.recv() => next,
            // Stopped: the rows gathered are not probed (nothing of theirs is decided).
            () = requested(commit.interrupt.as_deref()) => return Ok(stats),
        };
        let end = next.is_none();
        if let Some(checked) = next {
            rows += checked.rows.len();
            window.push(checked);
        }
        if !end && rows < SMTP_WINDOW_ROWS {
            continue;
        }
        if failed.raised() {
            return Ok(stats);
        }
        // Port 25 found blocked: this window and the next keep their DNS verdicts.
        if prober.egress_blocked().is_none() {
            probe_window(&prober, policy, &bar, &commit, &gate, &mut window).await;
            // Connections left parked at the window's servers QUIT now, not when idle.
            prober.close_idle().await;
            // Stopped (Ctrl-C): the window's rows are not all decided. What was decided is in
            // the store; the lists are not written.
            if prober.is_stopped() {
                return Ok(stats);
            }
            gate.settle();
            if let Some(block) = prober.egress_blocked()
                && block.by == BlockedBy::FirstServers
            {
                // Once: no later window probes. A closed stderr must not fail the run.
                bar.suspend(|| {
                    let _ = writeln!(std::io::stderr(), "prebounce: {}", block.message());
                });
            }
        }
        for checked in window.drain(..) {
            stats.rows += checked.rows.len() as u64;
            if output.send(checked).await.is_err() {
                return Ok(stats);
            }
        }
        rows = 0;
        if end {
            return Ok(stats);
        }
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

/// What each probe task probes, kept outside it: a task that fails still owes its rows an
/// answer. Its domain, dedup-key index and mailbox count.
type Probing = HashMap<Id, (String, HashMap<String, usize>, usize)>;

async fn probe_window(
    prober: &Arc<Prober>,
    policy: Policy,
    bar: &ProgressBar,
    commit: &SmtpCommit,
    gate: &Arc<CommitGate>,
    window: &mut [Checked],
) {
    if commit.interrupted() {
        prober.stop();
    }
    let mut tasks = JoinSet::new();
    let mut probing = Probing::new();
    for (domain, mut work) in work_of(window, policy) {
        let (prober, gate, clock) = (Arc::clone(prober), Arc::clone(gate), commit.clock);
        let mailboxes = std::mem::take(&mut work.mailboxes);
        let (name, index, count) = (
            domain.clone(),
            std::mem::take(&mut work.index),
            mailboxes.len(),
        );
        let task = tasks.spawn(async move {
            // Each round of sessions' verdicts committed as it ends, not when the domain's
            // probe (or the window) does: a killed run keeps all but the sessions in flight,
            // even at a domain of thousands of addresses.
            let mut committed = vec![false; count];
            let commit_round = |decided: Vec<(usize, SmtpEvidence)>| {
                if gate.stores() {
                    let records = records_of(
                        clock.now(),
                        &work,
                        decided.iter().map(|(i, e)| (*i, e)),
                        policy,
                    );
                    for (i, _) in &decided {
                        committed[*i] = true;
                    }
                    gate.send_records(records);
                }
            };
            let probe = prober
                .probe_domain_reporting(&domain, &work.targets, mailboxes, commit_round)
                .await;
            if gate.stores() {
                commit_probe(
                    &gate,
                    clock.now(),
                    &domain,
                    &work,
                    &probe,
                    &committed,
                    policy,
                );
            }
            probe.results.into_iter().map(Arc::new).collect::<Vec<_>>()
        });
        probing.insert(task.id(), (name, index, count));
    }
    let results = gather_results(tasks, probing, prober, bar, commit).await;
    // Blocked: what the failed connections found says nothing about the mailboxes.
    if prober.egress_blocked().is_none() {
        attach(window, &results);
    }
}

/// The window's domains that take mail, each with its distinct addresses; the others keep
/// their DNS verdict.
fn work_of(window: &[Checked], policy: Policy) -> Vec<(String, DomainWork)> {
    // None: the domain takes no mail (the DNS verdict stands); decided once per domain.
    let mut work: HashMap<String, Option<DomainWork>> = HashMap::new();
    for row in window.iter().flat_map(|checked| &checked.rows) {
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
        if let Entry::Vacant(e) = w.index.entry(address.dedup_key()) {
            e.insert(next);
            w.mailboxes.push(format!("{}@{domain}", address.local));
            w.addresses.push(address.clone());
        }
    }
    work.into_iter()
        .filter_map(|(domain, w)| Some((domain, w?)))
        .collect()
}

/// Sends a probed domain's decided verdicts not `committed` already (as their session ended),
/// and its servers' catch-all findings, to the store writer.
fn commit_probe(
    gate: &CommitGate,
    now: i64,
    domain: &str,
    work: &DomainWork,
    probe: &DomainProbe,
    committed: &[bool],
    policy: Policy,
) {
    let rest = probe
        .results
        .iter()
        .enumerate()
        .filter(|(i, _)| probe.decided[*i] && !committed[*i]);
    gate.send_records(records_of(now, work, rest, policy));
    gate.send(Some(Write::CatchAll {
        domain: domain.to_owned(),
        servers: probe.catch_all_by_server.clone(),
    }));
}

/// The verdicts of a domain's mailboxes (by index in `work`) from their SMTP evidence.
fn records_of<'a>(
    now: i64,
    work: &DomainWork,
    evidence: impl Iterator<Item = (usize, &'a SmtpEvidence)>,
    policy: Policy,
) -> Vec<Record> {
    evidence
        .map(|(i, smtp)| {
            let address = &work.addresses[i];
            let v = verdict::decide(
                &Evidence::Domain {
                    address: address.clone(),
                    dns: Arc::clone(&work.dns),
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
                    SmtpOutcome::Replied(r) => Some((r.code, r.text.clone())),
                    _ => None,
                },
            }
        })
        .collect()
}

/// Waits for the window's probes, showing progress and passing a Ctrl-C on to the prober.
async fn gather_results(
    mut tasks: JoinSet<Vec<Arc<SmtpEvidence>>>,
    mut probing: Probing,
    prober: &Prober,
    bar: &ProgressBar,
    commit: &SmtpCommit,
) -> HashMap<String, ProbedDomain> {
    let mut results = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut grace_ends = None;
    loop {
        let grace = async {
            match grace_ends {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            // A stop request: no new session starts; the sessions in flight get a moment to
            // end cleanly (their verdicts committed), then they are abandoned, so a tarpit
            // or a silent server cannot hold the run.
            () = requested(commit.interrupt.as_deref()), if grace_ends.is_none() => {
                prober.stop();
                grace_ends = Some(tokio::time::Instant::now() + SESSION_GRACE);
            }
            // Port 25 found blocked: the connection attempts end at once; sessions that got
            // through meanwhile get the same moment as on a stop, then are abandoned.
            () = prober.egress_blocked_signal(), if grace_ends.is_none() => {
                grace_ends = Some(tokio::time::Instant::now() + SESSION_GRACE);
            }
            () = grace => {
                tasks.abort_all();
                return results;
            }
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
                None => return results,
            },
            _ = tick.tick() => {
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
}

/// Gives every row of a probed domain its mailbox's evidence.
fn attach(window: &mut [Checked], results: &HashMap<String, ProbedDomain>) {
    for row in window.iter_mut().flat_map(|checked| &mut checked.rows) {
        if let Evidence::Domain { address, smtp, .. } = &mut row.evidence
            && smtp.is_none()
            && let Some((index, evidence)) = results.get(address.domain_ascii())
            && let Some(&i) = index.get(&address.dedup_key())
        {
            *smtp = Some(Arc::clone(&evidence[i]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::egress::{EgressBlock, Failures};

    fn gate(fast_fail: bool) -> (CommitGate, crossbeam_channel::Receiver<Write>) {
        let config = ProbeConfig {
            fast_fail: fast_fail.then(Default::default),
            ..ProbeConfig::new("probe.test", "check@probe.test")
        };
        let prober = Arc::new(Prober::new(config).expect("a valid probe configuration"));
        let (tx, rx) = crossbeam_channel::unbounded();
        (CommitGate::new(Some(tx), prober), rx)
    }

    fn catch_all(domain: &str) -> Write {
        Write::CatchAll {
            domain: domain.into(),
            servers: Vec::new(),
        }
    }

    fn domains(rx: &crossbeam_channel::Receiver<Write>) -> Vec<String> {
        rx.try_iter()
            .map(|w| match w {
                Write::CatchAll { domain, .. } => domain,
                Write::Verdicts { .. } => "verdicts".into(),
            })
            .collect()
    }

    #[test]
    fn writes_wait_for_the_judgement_and_go_in_order_once_it_settles() {
        let (gate, rx) = gate(true);
        gate.send(Some(catch_all("a.test")));
        gate.send(Some(catch_all("b.test")));
        assert!(domains(&rx).is_empty(), "held while undecided");
        gate.settle();
        assert_eq!(domains(&rx), ["a.test", "b.test"]);
        gate.send(Some(catch_all("c.test")));
        assert_eq!(domains(&rx), ["c.test"], "sent at once once settled");
    }

    #[test]
    fn writes_held_when_port_25_is_found_blocked_are_dropped() {
        let (gate, rx) = gate(true);
        gate.send(Some(catch_all("a.test")));
        gate.prober.block_egress(EgressBlock {
            by: BlockedBy::FirstServers,
            failures: Failures {
                servers: 8,
                refused: 8,
                timed_out: 0,
            },
        });
        gate.send(Some(catch_all("b.test")));
        gate.settle();
        assert!(domains(&rx).is_empty());
    }

    #[test]
    fn without_the_judge_writes_go_at_once() {
        let (gate, rx) = gate(false);
        gate.send(Some(catch_all("a.test")));
        assert_eq!(domains(&rx), ["a.test"]);
    }
}
