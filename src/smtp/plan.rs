//! The SMTP stage's decisions, without I/O: which recipients of a mail-server group (today:
//! one domain's mailboxes) go into which session, what each session's answers mean for them,
//! and when the group is done.
//!
//! The caller (`probe.rs`) owns sockets, clocks and host politeness. It asks
//! [`DomainPlan::next_step`] what to do, performs it, and reports each session back with
//! [`DomainPlan::report_ran`] or [`DomainPlan::report_no_server`]. Time is passed in, and the
//! canary's random local part comes from the caller, so every rule here is testable with plain
//! values (and the same planner can later run inside other workers).
//!
//! The rules: the first session goes alone, led by a catch-all canary; then up to `per_host`
//! sessions at once of `rcpt_per_session` recipients, halved when a server says "too many
//! recipients". Deferred recipients (greylisting, 4xx, rate limits, interrupted sessions) come
//! back later, at most `retries` times. An acceptance by a server whose catch-all verdict is
//! unknown is asked again behind a new canary, once.

use core::net::IpAddr;
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use super::reply::{EnhancedCode, Reply, classify};
use super::session::{NotProbedWhy, RcptOutcome, SessionEnd};
use crate::model::smtp::{CatchAll, SmtpEvidence, SmtpOutcome};
use crate::model::{Reason, Status};

/// What the planner needs from the probe's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlanConfig {
    /// Recipients per session at first (a "too many recipients" reply halves it).
    pub rcpt_per_session: usize,
    /// Sessions at once for the group after the first one.
    pub per_host: usize,
    /// Times a deferred or interrupted recipient is probed again.
    pub retries: u32,
    /// Wait before probing a greylisted (4xx) recipient again.
    pub greylist_wait: Duration,
    /// Wait before trying again after an interrupted session or no server at all.
    pub backoff_base: Duration,
}

/// What the caller should do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Run these sessions at once, each on the first of the group's servers that talks, and
    /// report every one back (one that never started because the run stops needs no report).
    Open(Vec<SessionRequest>),
    /// Nothing to send before this instant (deferred recipients); ask again then.
    WaitUntil(Instant),
    /// Every recipient has its answer: call [`DomainPlan::finish`].
    Done,
}

/// One session to open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRequest {
    /// Pass it back to `report_*`.
    pub id: usize,
    /// In RCPT order.
    pub recipients: Vec<String>,
    /// The first recipient is the catch-all canary, not a mailbox of the list.
    pub leads_with_canary: bool,
}

/// What a session that reached a server reports back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRan {
    /// "name [ip]", for the evidence.
    pub server: String,
    pub ip: IpAddr,
    /// One per recipient of the request, in order.
    pub outcomes: Vec<RcptOutcome>,
    pub end: Option<SessionEnd>,
    /// Set when the session was cut short (timeout, dropped connection, failed TLS): the
    /// answer for recipients left unprobed once the retries are spent.
    pub interrupted: Option<SmtpOutcome>,
    /// When the server may be asked again, if the caller already backed off from it (421).
    pub backoff_until: Option<Instant>,
}

/// What probing one domain found, in the order of the mailboxes given.
#[derive(Debug, Clone)]
pub struct DomainProbe {
    pub catch_all: CatchAll,
    pub results: Vec<SmtpEvidence>,
    /// Per mailbox: whether its result is an answer. False only for mailboxes left unprobed
    /// because the run was stopped; their result is a placeholder.
    pub decided: Vec<bool>,
    /// The catch-all verdict of each server a canary (or an earlier one) decided.
    pub catch_all_by_server: Vec<(IpAddr, CatchAll)>,
}

/// The end of a plan: the answers, and whether this plan found the domain catch-all (for the
/// run's count of catch-all domains).
#[derive(Debug, Clone)]
pub struct Finished {
    pub probe: DomainProbe,
    pub newly_catch_all: bool,
}

/// Per-recipient bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pending {
    address: String,
    /// RCPTs sent.
    attempts: u32,
    /// Deferrals and interrupted sessions so far (bounded by `retries`).
    setbacks: u32,
    server: Option<String>,
    /// The server address that answered last.
    ip: Option<IpAddr>,
    done: Option<SmtpOutcome>,
    /// The catch-all canary, not a recipient of the list.
    canary: bool,
    /// Accepted by a server without a catch-all verdict, and queued again behind a canary.
    rechecked: bool,
}

impl Pending {
    fn new(address: String) -> Self {
        Pending {
            address,
            attempts: 0,
            setbacks: 0,
            server: None,
            ip: None,
            done: None,
            canary: false,
            rechecked: false,
        }
    }
}

/// What becomes of one recipient after a session.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Next {
    /// This is its answer.
    Final(SmtpOutcome),
    /// Into the next session, without counting against the retries (the session, not the
    /// mailbox, was the problem).
    NextSession,
    /// Again at `at` (or in the next session when None), up to `retries` times; after that
    /// `last` is the answer. `deferral`: counted in the run's deferred recipients.
    Again {
        at: Option<Instant>,
        last: SmtpOutcome,
        deferral: bool,
    },
}

/// Source of canary local parts (random in real use; the planner must not own randomness).
pub type CanaryNames = Box<dyn FnMut() -> String + Send>;

/// The plan for one domain's mailboxes.
pub struct DomainPlan {
    domain: String,
    config: PlanConfig,
    /// The mailboxes first (`real` of them), then any canaries.
    pending: Vec<Pending>,
    real: usize,
    queue: VecDeque<usize>,
    waiting: Vec<(Instant, usize)>,
    per_session: usize,
    first_round: bool,
    /// Catch-all verdicts by server address, known before or learnt by a canary.
    verdicts: HashMap<IpAddr, CatchAll>,
    known_catch_all: bool,
    /// The batches of the last `Open`, by request id.
    in_flight: Vec<Vec<usize>>,
    canary_names: CanaryNames,
}

impl DomainPlan {
    /// `known`: the catch-all verdicts already decided for this domain, by server (an earlier
    /// window or the store); with none, the first session leads with a canary.
    pub fn new(
        domain: &str,
        mailboxes: Vec<String>,
        known: HashMap<IpAddr, CatchAll>,
        config: PlanConfig,
        canary_names: CanaryNames,
    ) -> Self {
        let real = mailboxes.len();
        let mut plan = DomainPlan {
            domain: domain.to_owned(),
            config,
            pending: mailboxes.into_iter().map(Pending::new).collect(),
            real,
            queue: (0..real).collect(),
            waiting: Vec::new(),
            per_session: config.rcpt_per_session.max(1),
            first_round: true,
            known_catch_all: known.values().any(|v| *v == CatchAll::Yes),
            verdicts: known,
            in_flight: Vec::new(),
            canary_names,
        };
        if plan.verdicts.is_empty() {
            // The canary leads the first session: its answer says what an "accepted" is worth.
            plan.push_canary_first();
        }
        plan
    }

    fn push_canary_first(&mut self) {
        let address = format!("{}@{}", (self.canary_names)(), self.domain);
        self.pending.push(Pending {
            canary: true,
            ..Pending::new(address)
        });
        self.queue.push_front(self.pending.len() - 1);
    }

    /// What to do at `now`. Every call forgets the requests of the previous `Open`.
    pub fn next_step(&mut self, now: Instant) -> Step {
        self.in_flight.clear();
        let queue = &mut self.queue;
        self.waiting.retain(|&(at, i)| {
            if at <= now {
                queue.push_back(i);
                false
            } else {
                true
            }
        });
        if self.queue.is_empty() {
            return match self.waiting.iter().map(|(at, _)| *at).min() {
                Some(at) => Step::WaitUntil(at),
                None => Step::Done,
            };
        }
        // The first session alone, so a "too many recipients" or a catch-all answer shapes
        // the rest; then up to `per_host` sessions at once.
        let sessions = if self.first_round {
            1
        } else {
            let needed = self.queue.len().div_ceil(self.per_session);
            needed.min(self.config.per_host.max(1))
        };
        self.first_round = false;
        for _ in 0..sessions {
            let n = self.per_session.min(self.queue.len());
            if n > 0 {
                let batch = self.queue.drain(..n).collect();
                self.in_flight.push(batch);
            }
        }
        let requests = self
            .in_flight
            .iter()
            .enumerate()
            .map(|(id, batch)| SessionRequest {
                id,
                recipients: batch
                    .iter()
                    .map(|&i| self.pending[i].address.clone())
                    .collect(),
                leads_with_canary: batch.first().is_some_and(|&i| self.pending[i].canary),
            })
            .collect();
        Step::Open(requests)
    }

    /// No server of the group would talk to request `id`. `refusal`: the last greeting that
    /// refused the prober, if any; `timed_out`: the last failure was a timeout.
    pub fn report_no_server(
        &mut self,
        id: usize,
        why: &str,
        refusal: Option<Reply>,
        timed_out: bool,
        now: Instant,
    ) {
        let batch = self.take_batch(id);
        // Every server refused us with a 5xx greeting: asking again is impolite and changes
        // nothing.
        if let Some(r) = refusal.as_ref().filter(|r| r.code / 100 == 5) {
            for &i in &batch {
                self.pending[i].done = Some(SmtpOutcome::SessionRefused(r.clone()));
            }
            return;
        }
        // Refused or timed-out connections: try again after a pause, not at once (a
        // restarting server gets a moment; a dead one is given up on meanwhile).
        let again = now + self.config.backoff_base;
        let last = no_server_outcome(why, refusal, timed_out);
        for &i in &batch {
            self.setback(i, Some(again), last.clone());
        }
    }

    /// Files what session `id` found. `host_backoff` backs off from the server (the caller's
    /// politeness) and says until when; it is called at most once, for a rate-limit reply,
    /// unless `ran.backoff_until` is already set. Returns the recipients deferred (canaries
    /// not counted).
    pub fn report_ran(
        &mut self,
        id: usize,
        ran: SessionRan,
        now: Instant,
        mut host_backoff: impl FnMut() -> Instant,
    ) -> u64 {
        let batch = self.take_batch(id);
        let greylist_until = now + self.config.greylist_wait;
        let retry_at = now + self.config.backoff_base;
        let closing_reply = match &ran.end {
            Some(SessionEnd::ServerClosing(r)) => r.clone(),
            _ => Reply {
                code: 421,
                enhanced: None,
                text: "server closing".into(),
            },
        };
        let mut backoff_until = ran.backoff_until;
        let mut shrunk = false;
        let mut deferred = 0;
        for (&i, outcome) in batch.iter().zip(ran.outcomes) {
            let p = &mut self.pending[i];
            p.server = Some(ran.server.clone());
            p.ip = Some(ran.ip);
            let next = match outcome {
                RcptOutcome::Probed(reply) => {
                    p.attempts += 1;
                    if reply.code / 100 == 4
                        && too_many_recipients(&reply)
                        && (shrunk || self.per_session > 1)
                    {
                        // The batch was too big for this server: smaller sessions, no
                        // penalty. Halved once per session, not once per 452 reply (a server
                        // answering 452 to the last 8 RCPTs must not bring the size to 1).
                        if !shrunk {
                            self.per_session = (self.per_session / 2).max(1);
                            shrunk = true;
                        }
                        Next::NextSession
                    } else {
                        let mut rate_limit_until =
                            || *backoff_until.get_or_insert_with(&mut host_backoff);
                        after_reply(reply, greylist_until, &mut rate_limit_until)
                    }
                }
                RcptOutcome::NotProbed(NotProbedWhy::SessionLimit | NotProbedWhy::RejectionCap) => {
                    Next::NextSession
                }
                RcptOutcome::NotProbed(NotProbedWhy::ServerClosing) => Next::Again {
                    at: backoff_until,
                    last: SmtpOutcome::Replied(closing_reply.clone()),
                    deferral: false,
                },
                RcptOutcome::NotProbed(NotProbedWhy::SessionEnded) => after_session_ended(
                    ran.interrupted.as_ref(),
                    ran.end.as_ref(),
                    &ran.server,
                    retry_at,
                    greylist_until,
                ),
                RcptOutcome::Smtputf8Unsupported => Next::Final(SmtpOutcome::Smtputf8Unsupported),
                RcptOutcome::Unsendable(e) => Next::Final(SmtpOutcome::Unsendable(e.to_string())),
            };
            if self.apply(i, next) {
                deferred += 1;
            }
        }
        self.file_canary(ran.ip, &batch);
        deferred
    }

    fn take_batch(&mut self, id: usize) -> Vec<usize> {
        self.in_flight
            .get_mut(id)
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// True when the recipient was deferred (and counts as such).
    fn apply(&mut self, i: usize, next: Next) -> bool {
        match next {
            Next::Final(outcome) => self.pending[i].done = Some(outcome),
            Next::NextSession => self.queue.push_back(i),
            Next::Again { at, last, deferral } => {
                return self.setback(i, at, last) && deferral && !self.pending[i].canary;
            }
        }
        false
    }

    /// Again later (at `at`, or in the next session), up to `retries` times; after that
    /// `last` is the answer. True when it goes round again.
    fn setback(&mut self, i: usize, at: Option<Instant>, last: SmtpOutcome) -> bool {
        let p = &mut self.pending[i];
        p.setbacks += 1;
        if p.setbacks > self.config.retries {
            p.done = Some(last);
            return false;
        }
        match at {
            Some(at) => self.waiting.push((at, i)),
            None => self.queue.push_back(i),
        }
        true
    }

    /// After a session at `ip`: file the canary's answer when it was in the batch; when the
    /// server accepted recipients but has no catch-all verdict for the domain yet (the session
    /// failed over to another MX), ask those recipients again behind a new canary, once.
    fn file_canary(&mut self, ip: IpAddr, batch: &[usize]) {
        for &i in batch {
            let p = &self.pending[i];
            if !p.canary || p.ip != Some(ip) {
                continue;
            }
            if let Some(verdict) = p.done.as_ref().and_then(canary_verdict) {
                self.verdicts.insert(ip, verdict);
            }
        }
        if self.verdicts.contains_key(&ip) || batch.iter().any(|&i| self.pending[i].canary) {
            return;
        }
        let unchecked: Vec<usize> = batch
            .iter()
            .copied()
            .filter(|&i| {
                let p = &self.pending[i];
                !p.rechecked && p.ip == Some(ip) && is_acceptance(p.done.as_ref())
            })
            .collect();
        if unchecked.is_empty() {
            return;
        }
        for &i in unchecked.iter().rev() {
            let p = &mut self.pending[i];
            p.done = None;
            p.rechecked = true;
            self.queue.push_front(i);
        }
        self.push_canary_first();
    }

    /// The answers. `stopped`: the run was stopped, so unfinished recipients are undecided.
    pub fn finish(mut self, stopped: bool) -> Finished {
        let catch_all = domain_catch_all(&self.verdicts);
        let newly_catch_all = catch_all == CatchAll::Yes && !self.known_catch_all;
        self.pending.truncate(self.real);
        let verdicts = &self.verdicts;
        let decided: Vec<bool> = self
            .pending
            .iter()
            .map(|p| match &p.done {
                None => false,
                // Stopped: an acceptance whose server's canary has not answered yet is not
                // decided either (an uninterrupted run would know whether it proves anything).
                Some(SmtpOutcome::Replied(r)) if stopped && r.code / 100 == 2 => {
                    p.ip.is_some_and(|ip| verdicts.contains_key(&ip))
                }
                Some(_) => true,
            })
            .collect();
        let results = self
            .pending
            .into_iter()
            .map(|p| SmtpEvidence {
                // Each answer is worth what its own server's canary says.
                catch_all: p
                    .ip
                    .and_then(|ip| verdicts.get(&ip).copied())
                    .unwrap_or(CatchAll::Undetermined),
                outcome: p
                    .done
                    .unwrap_or_else(|| SmtpOutcome::ProtocolError("no answer was recorded".into())),
                server: p.server,
                attempts: p.attempts,
            })
            .collect();
        Finished {
            probe: DomainProbe {
                catch_all,
                catch_all_by_server: verdicts.iter().map(|(ip, v)| (*ip, *v)).collect(),
                decided,
                results,
            },
            newly_catch_all,
        }
    }
}

/// A RCPT reply other than "too many recipients": final unless 4xx; a full mailbox stays
/// full for longer than a run; a rate limit waits for the host's backoff; any other 4xx
/// (greylisting) waits `greylist_until`.
fn after_reply(
    reply: Reply,
    greylist_until: Instant,
    rate_limit_until: &mut dyn FnMut() -> Instant,
) -> Next {
    if reply.code / 100 != 4 {
        return Next::Final(SmtpOutcome::Replied(reply));
    }
    let at = match classify(&reply).reason {
        Reason::MailboxFull => return Next::Final(SmtpOutcome::Replied(reply)),
        Reason::RateLimited => rate_limit_until(),
        _ => greylist_until,
    };
    Next::Again {
        at: Some(at),
        last: SmtpOutcome::Replied(reply),
        deferral: true,
    }
}

/// A recipient the session never reached because it ended first.
fn after_session_ended(
    interrupted: Option<&SmtpOutcome>,
    end: Option<&SessionEnd>,
    server: &str,
    retry_at: Instant,
    greylist_until: Instant,
) -> Next {
    let again = |at, last| Next::Again {
        at,
        last,
        deferral: false,
    };
    match (interrupted, end) {
        // An interrupted session (timeout, dropped connection): again after a pause, like a
        // refused connection, not in a burst.
        (Some(last), _) => again(Some(retry_at), last.clone()),
        (None, Some(SessionEnd::HeloRejected(r) | SessionEnd::SenderRejected(r))) => {
            let refused = SmtpOutcome::SessionRefused(r.clone());
            if r.code / 100 == 4 {
                again(Some(greylist_until), refused)
            } else {
                Next::Final(refused)
            }
        }
        (None, Some(SessionEnd::HostRefused(r))) => {
            Next::Final(SmtpOutcome::SessionRefused(r.clone()))
        }
        (None, Some(SessionEnd::TlsRequiredNotOffered)) => Next::Final(SmtpOutcome::Unreachable(
            format!("{server} does not offer STARTTLS (--starttls require)"),
        )),
        (None, Some(SessionEnd::TlsRefused(r))) => Next::Final(SmtpOutcome::Unreachable(format!(
            "{server} refused STARTTLS (--starttls require): {r}"
        ))),
        (None, Some(SessionEnd::UnsafeCommand(e))) => {
            Next::Final(SmtpOutcome::Unsendable(e.to_string()))
        }
        (None, Some(SessionEnd::ProtocolError(why))) => {
            again(None, SmtpOutcome::ProtocolError(format!("{server}: {why}")))
        }
        (None, _) => again(
            None,
            SmtpOutcome::ProtocolError(format!(
                "{server}: the session ended before this recipient"
            )),
        ),
    }
}

/// The answer when no server would talk and the retries are spent.
fn no_server_outcome(why: &str, refusal: Option<Reply>, timed_out: bool) -> SmtpOutcome {
    match (refusal, timed_out) {
        (Some(r), _) => SmtpOutcome::SessionRefused(r),
        (None, true) => SmtpOutcome::Timeout(why.to_owned()),
        (None, false) => SmtpOutcome::Unreachable(why.to_owned()),
    }
}

/// 452 4.5.3 / "too many recipients": the batch, not the mailbox, was refused (RFC 5321
/// §4.5.3.1.10 asks clients to go on with fewer recipients).
pub fn too_many_recipients(reply: &Reply) -> bool {
    reply.code == 452
        && (reply.enhanced == Some(EnhancedCode::new(4, 5, 3))
            || reply
                .text
                .to_ascii_lowercase()
                .contains("too many recipients"))
}

/// What a canary's answer says about its server: accepting a mailbox no one has means it
/// accepts everything; refusing it means its acceptances are worth something.
fn canary_verdict(outcome: &SmtpOutcome) -> Option<CatchAll> {
    match outcome {
        SmtpOutcome::Replied(r) => match classify(r).status {
            Status::Valid => Some(CatchAll::Yes),
            Status::Invalid => Some(CatchAll::No),
            _ => None,
        },
        _ => None,
    }
}

fn is_acceptance(outcome: Option<&SmtpOutcome>) -> bool {
    matches!(outcome, Some(SmtpOutcome::Replied(r)) if r.code / 100 == 2)
}

/// The domain's verdict from its servers': one catch-all server makes acceptances worthless.
fn domain_catch_all(verdicts: &HashMap<IpAddr, CatchAll>) -> CatchAll {
    if verdicts.values().any(|v| *v == CatchAll::Yes) {
        CatchAll::Yes
    } else if verdicts.values().any(|v| *v == CatchAll::No) {
        CatchAll::No
    } else {
        CatchAll::Undetermined
    }
}
