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
use crate::model::dns::{Addresses, DomainEvidence};
use crate::model::is_routable;
use crate::model::smtp::{CatchAll, SmtpEvidence, SmtpOutcome};
use crate::model::{Reason, Status};

/// A mail server of a domain, in preference order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxTarget {
    pub name: String,
    pub ips: Vec<IpAddr>,
}

/// The servers to probe for a domain, from its DNS evidence: MX hosts in preference order, or
/// the domain itself when it has no MX (implicit MX). Addresses the policy forbids are left out.
pub fn targets_of(domain: &str, dns: &DomainEvidence, allow_private: bool) -> Vec<MxTarget> {
    let usable = |a: &Addresses| -> Vec<IpAddr> {
        match a {
            Addresses::Found(ips) => {
                let mut ips: Vec<IpAddr> = ips
                    .iter()
                    .copied()
                    .filter(|ip| allow_private || is_routable(*ip))
                    .collect();
                // IPv4 first: many senders have no IPv6 route; v6-only hosts still get tried.
                ips.sort_by_key(|ip| ip.is_ipv6());
                ips
            }
            _ => Vec::new(),
        }
    };
    let targets: Vec<MxTarget> = match dns {
        DomainEvidence::Mx(hosts) => hosts
            .iter()
            .map(|h| MxTarget {
                name: h.name.clone(),
                ips: usable(&h.addresses),
            })
            .collect(),
        DomainEvidence::NoMx(a) => vec![MxTarget {
            name: domain.to_owned(),
            ips: usable(a),
        }],
        _ => Vec::new(),
    };
    targets.into_iter().filter(|t| !t.ips.is_empty()).collect()
}

/// One address of one mail server: where a session may be opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddress {
    /// The MX host name (for TLS SNI and the evidence).
    pub name: String,
    pub ip: IpAddr,
}

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
    /// Where to open it, in the order to try: MX preference, IPv4 first. The caller passes
    /// over servers its politeness rules out (given up on, refusing the prober) and those that
    /// will not talk (no connection, no greeting, a refused greeting).
    pub servers: Vec<ServerAddress>,
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
enum Fate {
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
    servers: Vec<ServerAddress>,
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
    /// Per mailbox: handed out by [`DomainPlan::take_decided`] already.
    handed_out: Vec<bool>,
}

impl DomainPlan {
    /// `known`: the catch-all verdicts already decided for this domain, by server (an earlier
    /// window or the store); with none, the first session leads with a canary.
    pub fn new(
        domain: &str,
        targets: &[MxTarget],
        mailboxes: Vec<String>,
        known: HashMap<IpAddr, CatchAll>,
        config: PlanConfig,
        canary_names: CanaryNames,
    ) -> Self {
        let real = mailboxes.len();
        let servers = targets
            .iter()
            .flat_map(|t| {
                let name = &t.name;
                t.ips.iter().map(|&ip| ServerAddress {
                    name: name.clone(),
                    ip,
                })
            })
            .collect();
        let mut plan = DomainPlan {
            domain: domain.to_owned(),
            servers,
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
            handed_out: Vec::new(),
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
                servers: self.servers.clone(),
            })
            .collect();
        Step::Open(requests)
    }

    /// No server of the group would talk to request `id`.
    pub fn report_no_server(&mut self, id: usize, unreached: &Unreached, now: Instant) {
        let batch = self.take_batch(id);
        // Every server refused us with a 5xx greeting: asking again is impolite and changes
        // nothing.
        if let Some(r) = unreached.refusal.as_ref().filter(|r| r.code / 100 == 5) {
            for &i in &batch {
                self.pending[i].done = Some(SmtpOutcome::SessionRefused(r.clone()));
            }
            return;
        }
        // Refused or timed-out connections: try again after a pause, not at once (a
        // restarting server gets a moment; a dead one is given up on meanwhile).
        let again = now + self.config.backoff_base;
        let last = unreached.last_outcome();
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
            let fate = match outcome {
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
                        Fate::NextSession
                    } else {
                        let mut rate_limit_until =
                            || *backoff_until.get_or_insert_with(&mut host_backoff);
                        after_reply(reply, greylist_until, &mut rate_limit_until)
                    }
                }
                RcptOutcome::NotProbed(NotProbedWhy::SessionLimit | NotProbedWhy::RejectionCap) => {
                    Fate::NextSession
                }
                RcptOutcome::NotProbed(NotProbedWhy::ServerClosing) => Fate::Again {
                    at: backoff_until,
                    last: SmtpOutcome::Replied(closing_reply.clone()),
                    deferral: false,
                },
                // Voided answers (replies out of step) go round again like unanswered ones:
                // the session's end says why.
                RcptOutcome::NotProbed(
                    NotProbedWhy::SessionEnded | NotProbedWhy::ProtocolError,
                ) => after_session_ended(
                    ran.interrupted.as_ref(),
                    ran.end.as_ref(),
                    &ran.server,
                    retry_at,
                    greylist_until,
                ),
                RcptOutcome::Smtputf8Unsupported => Fate::Final(SmtpOutcome::Smtputf8Unsupported),
                RcptOutcome::Unsendable(e) => Fate::Final(SmtpOutcome::Unsendable(e.to_string())),
            };
            if self.apply(i, fate) {
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
    fn apply(&mut self, i: usize, fate: Fate) -> bool {
        match fate {
            Fate::Final(outcome) => self.pending[i].done = Some(outcome),
            Fate::NextSession => self.queue.push_back(i),
            Fate::Again { at, last, deferral } => {
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

    /// Whether mailbox `i` has its answer. `stopped`: the plan will not go on (the run was
    /// stopped, or the answer is handed out before the plan ends), so an acceptance whose
    /// server's canary has not answered yet is not decided (an uninterrupted run would know
    /// whether it proves anything).
    fn is_decided(&self, i: usize, stopped: bool) -> bool {
        let p = &self.pending[i];
        match &p.done {
            None => false,
            Some(SmtpOutcome::Replied(r)) if stopped && r.code / 100 == 2 => {
                p.ip.is_some_and(|ip| self.verdicts.contains_key(&ip))
            }
            Some(_) => true,
        }
    }

    /// Mailbox `i`'s evidence as it stands (taking its outcome, if `take`).
    fn evidence(&mut self, i: usize, take: bool) -> SmtpEvidence {
        let p = &mut self.pending[i];
        let done = if take { p.done.take() } else { p.done.clone() };
        SmtpEvidence {
            // Each answer is worth what its own server's canary says.
            catch_all: p
                .ip
                .and_then(|ip| self.verdicts.get(&ip).copied())
                .unwrap_or(CatchAll::Undetermined),
            outcome: done
                .unwrap_or_else(|| SmtpOutcome::ProtocolError("no answer was recorded".into())),
            server: p.server.clone(),
            attempts: p.attempts,
        }
    }

    /// The mailboxes decided since the last call (by index), with their evidence: what a
    /// stop now would keep, so the caller can store each session's work as it ends instead
    /// of the domain's when its plan ends (a big domain takes many sessions).
    pub fn take_decided(&mut self) -> Vec<(usize, SmtpEvidence)> {
        self.handed_out.resize(self.real, false);
        let mut out = Vec::new();
        for i in 0..self.real {
            if !self.handed_out[i] && self.is_decided(i, true) {
                self.handed_out[i] = true;
                out.push((i, self.evidence(i, false)));
            }
        }
        out
    }

    /// The answers. `stopped`: the run was stopped, so unfinished recipients are undecided.
    pub fn finish(mut self, stopped: bool) -> Finished {
        let catch_all = domain_catch_all(&self.verdicts);
        let newly_catch_all = catch_all == CatchAll::Yes && !self.known_catch_all;
        self.pending.truncate(self.real);
        let decided: Vec<bool> = (0..self.real)
            .map(|i| self.is_decided(i, stopped))
            .collect();
        let results = (0..self.real).map(|i| self.evidence(i, true)).collect();
        let verdicts = &self.verdicts;
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
) -> Fate {
    if reply.code / 100 != 4 {
        return Fate::Final(SmtpOutcome::Replied(reply));
    }
    let at = match classify(&reply).reason {
        Reason::MailboxFull => return Fate::Final(SmtpOutcome::Replied(reply)),
        Reason::RateLimited => rate_limit_until(),
        _ => greylist_until,
    };
    Fate::Again {
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
) -> Fate {
    let again = |at, last| Fate::Again {
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
                Fate::Final(refused)
            }
        }
        (None, Some(SessionEnd::HostRefused(r))) => {
            Fate::Final(SmtpOutcome::SessionRefused(r.clone()))
        }
        (None, Some(SessionEnd::TlsRequiredNotOffered)) => Fate::Final(SmtpOutcome::Unreachable(
            format!("{server} does not offer STARTTLS (--starttls require)"),
        )),
        (None, Some(SessionEnd::TlsRefused(r))) => Fate::Final(SmtpOutcome::Unreachable(format!(
            "{server} refused STARTTLS (--starttls require): {r}"
        ))),
        (None, Some(SessionEnd::UnsafeCommand(e))) => {
            Fate::Final(SmtpOutcome::Unsendable(e.to_string()))
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

/// Why none of a group's servers took a session: the servers tried are remembered only
/// through the last failure, and a refusal of the prober (a policy, not an accident) outlives
/// later failures of other kinds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unreached {
    pub why: String,
    /// The last greeting, HELO or MAIL reply that refused the prober, if any.
    pub refusal: Option<Reply>,
    /// The last failure was a timeout.
    pub timed_out: bool,
}

impl Default for Unreached {
    fn default() -> Self {
        Self::new()
    }
}

impl Unreached {
    /// Before any server was tried.
    pub fn new() -> Self {
        Unreached {
            why: "no usable mail server address".into(),
            refusal: None,
            timed_out: false,
        }
    }

    /// A server refuses the prober itself.
    pub fn refused(&mut self, why: String, refusal: Reply) {
        self.why = why;
        self.refusal = Some(refusal);
        self.timed_out = false;
    }

    /// A connection failed, timed out, or was closed before or instead of a greeting.
    pub fn failed(&mut self, why: String, timed_out: bool) {
        self.why = why;
        self.timed_out = timed_out;
    }

    /// A server was not tried (given up on earlier in the run, or no session could be
    /// built): only the reason changes.
    pub fn skipped(&mut self, why: String) {
        self.why = why;
    }

    /// The answer for a recipient once its retries are spent.
    fn last_outcome(&self) -> SmtpOutcome {
        match (&self.refusal, self.timed_out) {
            (Some(r), _) => SmtpOutcome::SessionRefused(r.clone()),
            (None, true) => SmtpOutcome::Timeout(self.why.clone()),
            (None, false) => SmtpOutcome::Unreachable(self.why.clone()),
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::smtp::session::{CommandError, Field};

    const A: IpAddr = IpAddr::V4(core::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(core::net::Ipv4Addr::new(192, 0, 2, 2));
    const GREYLIST: Duration = Duration::from_secs(300);
    const BACKOFF: Duration = Duration::from_secs(37);

    fn config(rcpt_per_session: usize, per_host: usize, retries: u32) -> PlanConfig {
        PlanConfig {
            rcpt_per_session,
            per_host,
            retries,
            greylist_wait: GREYLIST,
            backoff_base: BACKOFF,
        }
    }

    /// Canaries named canary1, canary2 … so the tests can tell them apart.
    fn numbered_canaries() -> CanaryNames {
        let mut n = 0;
        Box::new(move || {
            n += 1;
            format!("canary{n}")
        })
    }

    fn mailboxes(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("m{i}@example.com")).collect()
    }

    fn plan_with(n: usize, known: &[(IpAddr, CatchAll)], config: PlanConfig) -> DomainPlan {
        DomainPlan::new(
            "example.com",
            &[],
            mailboxes(n),
            known.iter().copied().collect(),
            config,
            numbered_canaries(),
        )
    }

    /// A plan whose domain already has a catch-all verdict at A (no canary to get past).
    fn plan_known_at_a(n: usize, config: PlanConfig) -> DomainPlan {
        plan_with(n, &[(A, CatchAll::No)], config)
    }

    fn reply(text: &str) -> Reply {
        Reply::parse(text).unwrap()
    }

    fn probed(text: &str) -> RcptOutcome {
        RcptOutcome::Probed(reply(text))
    }

    fn ran(ip: IpAddr, outcomes: Vec<RcptOutcome>, end: Option<SessionEnd>) -> SessionRan {
        SessionRan {
            server: format!("mx [{ip}]"),
            ip,
            outcomes,
            end,
            interrupted: None,
            backoff_until: None,
        }
    }

    fn open(plan: &mut DomainPlan, now: Instant) -> Vec<SessionRequest> {
        match plan.next_step(now) {
            Step::Open(requests) => requests,
            other => panic!("expected sessions, got {other:?}"),
        }
    }

    /// Reports the session `id` with no host backoff expected.
    fn report(plan: &mut DomainPlan, id: usize, ran: SessionRan, now: Instant) -> u64 {
        plan.report_ran(id, ran, now, || panic!("no rate limit expected"))
    }

    fn outcomes(plan: DomainPlan) -> Vec<SmtpOutcome> {
        let probe = plan.finish(false).probe;
        probe.results.into_iter().map(|r| r.outcome).collect()
    }

    #[test]
    fn sessions_first_alone_with_a_canary_then_per_host_at_once() {
        struct Case {
            mailboxes: usize,
            catch_all_known: bool,
            per_session: usize,
            per_host: usize,
            first_round: &'static [usize],
            second_round: &'static [usize],
            canary: bool,
        }
        let case =
            |mailboxes, catch_all_known, per_session, per_host, first_round, second_round| Case {
                mailboxes,
                catch_all_known,
                per_session,
                per_host,
                first_round,
                second_round,
                canary: !catch_all_known,
            };
        let cases = [
            case(7, false, 3, 2, &[3], &[3, 2]),
            case(7, true, 3, 2, &[3], &[3, 1]),
            case(2, false, 20, 4, &[3], &[]),
            case(10, true, 2, 3, &[2], &[2, 2, 2]),
            case(1, true, 5, 2, &[1], &[]),
        ];
        let now = Instant::now();
        for c in cases {
            let (n, per_session, per_host) = (c.mailboxes, c.per_session, c.per_host);
            let known: &[(IpAddr, CatchAll)] = if c.catch_all_known {
                &[(A, CatchAll::No)]
            } else {
                &[]
            };
            let mut plan = plan_with(n, known, config(per_session, per_host, 2));
            let round = open(&mut plan, now);
            let sizes: Vec<usize> = round.iter().map(|r| r.recipients.len()).collect();
            assert_eq!(sizes, c.first_round, "case {n} {per_session} {per_host}");
            assert_eq!(round[0].leads_with_canary, c.canary);
            if c.canary {
                assert_eq!(round[0].recipients[0], "canary1@example.com");
            }
            let next = plan.next_step(now);
            let sizes: Vec<usize> = match next {
                Step::Open(r) => r.iter().map(|r| r.recipients.len()).collect(),
                // Nothing was reported back: the first round's recipients are in flight.
                Step::Done => Vec::new(),
                Step::WaitUntil(_) => panic!("no wait expected"),
            };
            assert_eq!(sizes, c.second_round, "case {n} {per_session} {per_host}");
        }
    }

    #[test]
    fn each_rcpt_reply_is_final_or_comes_back_later() {
        // (reply, the answer when final, or the wait before the recipient comes back)
        enum Then {
            Final,
            WaitFor(Duration),
        }
        let cases = [
            ("250 2.1.5 ok", Then::Final),
            ("550 5.1.1 no such user", Then::Final),
            ("452 4.2.2 mailbox full", Then::Final),
            (
                "450 4.7.1 greylisted, try again later",
                Then::WaitFor(GREYLIST),
            ),
            ("451 4.3.0 temporary failure", Then::WaitFor(GREYLIST)),
            (
                "454 Throttling failure: Maximum sending rate exceeded.",
                Then::WaitFor(Duration::from_secs(9)),
            ),
        ];
        let now = Instant::now();
        for (text, then) in cases {
            let mut plan = plan_known_at_a(1, config(5, 2, 2));
            let id = open(&mut plan, now)[0].id;
            let mut backoffs = 0;
            let deferred = plan.report_ran(id, ran(A, vec![probed(text)], None), now, || {
                backoffs += 1;
                now + Duration::from_secs(9)
            });
            match then {
                Then::Final => {
                    assert_eq!(deferred, 0, "{text}");
                    assert_eq!(plan.next_step(now), Step::Done, "{text}");
                    assert_eq!(outcomes(plan), [SmtpOutcome::Replied(reply(text))]);
                }
                Then::WaitFor(wait) => {
                    assert_eq!(deferred, 1, "{text}");
                    assert_eq!(plan.next_step(now), Step::WaitUntil(now + wait), "{text}");
                    let is_rate_limit = wait != GREYLIST;
                    assert_eq!(backoffs, usize::from(is_rate_limit), "{text}");
                }
            }
        }
    }

    #[test]
    fn one_host_backoff_per_session_however_many_rate_limits() {
        let now = Instant::now();
        let mut plan = plan_known_at_a(3, config(5, 2, 2));
        let id = open(&mut plan, now)[0].id;
        let limited = probed("454 Throttling failure: Maximum sending rate exceeded.");
        let mut backoffs = 0;
        let session = ran(A, vec![limited.clone(), probed("250 ok"), limited], None);
        let deferred = plan.report_ran(id, session, now, || {
            backoffs += 1;
            now + Duration::from_secs(9)
        });
        assert_eq!((deferred, backoffs), (2, 1));
        // A 421 backoff the caller already took serves the rate limits too.
        let mut plan = plan_known_at_a(1, config(5, 2, 2));
        let id = open(&mut plan, now)[0].id;
        let session = SessionRan {
            backoff_until: Some(now + Duration::from_secs(4)),
            ..ran(A, vec![probed("454 Throttling failure: slow down")], None)
        };
        report(&mut plan, id, session, now);
        let wait = plan.next_step(now);
        assert_eq!(wait, Step::WaitUntil(now + Duration::from_secs(4)));
    }

    #[test]
    fn a_recipient_comes_back_at_most_retries_times() {
        let greylisted = "450 4.7.1 greylisted, try again later";
        for retries in [0, 1, 2, 3] {
            let mut plan = plan_known_at_a(1, config(5, 2, retries));
            let mut now = Instant::now();
            let mut sessions = 0;
            loop {
                match plan.next_step(now) {
                    Step::Open(requests) => {
                        sessions += 1;
                        report(
                            &mut plan,
                            requests[0].id,
                            ran(A, vec![probed(greylisted)], None),
                            now,
                        );
                    }
                    Step::WaitUntil(at) => {
                        assert_eq!(at, now + GREYLIST);
                        now = at;
                    }
                    Step::Done => break,
                }
            }
            assert_eq!(sessions, retries + 1);
            let probe = plan.finish(false).probe;
            assert_eq!(probe.results[0].attempts, retries + 1);
            assert_eq!(
                probe.results[0].outcome,
                SmtpOutcome::Replied(reply(greylisted))
            );
            assert_eq!(probe.decided, [true]);
        }
    }

    #[test]
    fn too_many_recipients_halves_the_session_once_without_penalty() {
        let too_many = || probed("452 4.5.3 Too many recipients");
        let now = Instant::now();
        let mut plan = plan_known_at_a(8, config(8, 1, 0));
        let id = open(&mut plan, now)[0].id;
        let mut session = vec![probed("250 ok"), probed("250 ok")];
        session.extend((0..6).map(|_| too_many()));
        // Six 452 replies in one session: 8 → 4, not 8 → 1 (retries 0: no setback either).
        assert_eq!(report(&mut plan, id, ran(A, session, None), now), 0);
        let round = open(&mut plan, now);
        let sizes: Vec<usize> = round.iter().map(|r| r.recipients.len()).collect();
        assert_eq!(sizes, [4]);
        assert_eq!(round[0].recipients[0], "m3@example.com");
        // At one recipient per session there is nothing left to shrink: the 452 is then a
        // deferral like any other (and it reads as a rate limit).
        let mut plan = plan_known_at_a(1, config(1, 1, 1));
        let id = open(&mut plan, now)[0].id;
        let later = now + Duration::from_secs(5);
        let deferred = plan.report_ran(id, ran(A, vec![too_many()], None), now, || later);
        assert_eq!(deferred, 1);
        assert_eq!(plan.next_step(now), Step::WaitUntil(later));
    }

    #[test]
    fn recipients_the_session_had_no_room_for_go_into_the_next_one_free() {
        let now = Instant::now();
        for why in [NotProbedWhy::SessionLimit, NotProbedWhy::RejectionCap] {
            // Retries 0, and still asked again every time: the mailbox said nothing.
            let mut plan = plan_known_at_a(2, config(2, 1, 0));
            let id = open(&mut plan, now)[0].id;
            let first = vec![probed("550 5.1.1 no"), RcptOutcome::NotProbed(why)];
            assert_eq!(report(&mut plan, id, ran(A, first, None), now), 0);
            for _ in 0..5 {
                let request = open(&mut plan, now).remove(0);
                assert_eq!(request.recipients, ["m2@example.com"], "{why:?}");
                let session = ran(A, vec![RcptOutcome::NotProbed(why)], None);
                report(&mut plan, request.id, session, now);
            }
            let id = open(&mut plan, now)[0].id;
            report(&mut plan, id, ran(A, vec![probed("250 ok")], None), now);
            assert_eq!(plan.next_step(now), Step::Done);
        }
    }

    #[test]
    fn voided_answers_are_asked_again_then_end_a_protocol_error() {
        let now = Instant::now();
        let mut plan = plan_known_at_a(2, config(5, 1, 1));
        let why = "replies out of step with the commands: QUIT was answered with 550";
        let voided = || RcptOutcome::NotProbed(NotProbedWhy::ProtocolError);
        // The first session and the one retry: both voided.
        for _ in 0..2 {
            let request = open(&mut plan, now).remove(0);
            assert_eq!(request.recipients.len(), 2, "both asked again at once");
            let end = Some(SessionEnd::ProtocolError(why.into()));
            // Not a deferral: the mailboxes said nothing that counts.
            assert_eq!(
                report(
                    &mut plan,
                    request.id,
                    ran(A, vec![voided(), voided()], end),
                    now
                ),
                0
            );
        }
        assert_eq!(plan.next_step(now), Step::Done);
        let last = SmtpOutcome::ProtocolError(format!("mx [{A}]: {why}"));
        assert_eq!(outcomes(plan), [last.clone(), last]);
    }

    #[test]
    fn a_closing_server_sends_its_unprobed_recipients_to_the_backoff() {
        let now = Instant::now();
        let closing = reply("421 4.7.0 closing, too busy");
        let mut plan = plan_known_at_a(2, config(5, 1, 1));
        let id = open(&mut plan, now)[0].id;
        let session = SessionRan {
            backoff_until: Some(now + Duration::from_secs(60)),
            ..ran(
                A,
                vec![
                    probed("250 ok"),
                    RcptOutcome::NotProbed(NotProbedWhy::ServerClosing),
                ],
                Some(SessionEnd::ServerClosing(closing.clone())),
            )
        };
        // Not counted as a deferral: the mailbox said nothing.
        assert_eq!(report(&mut plan, id, session, now), 0);
        let later = now + Duration::from_secs(60);
        assert_eq!(plan.next_step(now), Step::WaitUntil(later));
        let id = open(&mut plan, later)[0].id;
        let session = ran(
            A,
            vec![RcptOutcome::NotProbed(NotProbedWhy::ServerClosing)],
            Some(SessionEnd::ServerClosing(closing.clone())),
        );
        report(&mut plan, id, session, later);
        assert_eq!(
            outcomes(plan),
            [
                SmtpOutcome::Replied(reply("250 ok")),
                SmtpOutcome::Replied(closing)
            ]
        );
    }

    #[test]
    fn recipients_a_session_ended_before() {
        let now = Instant::now();
        let retry_at = now + BACKOFF;
        let greylist_until = now + GREYLIST;
        let again = |at: Option<Instant>, last: SmtpOutcome| Fate::Again {
            at,
            last,
            deferral: false,
        };
        let timeout = SmtpOutcome::Timeout("mx: no answer".into());
        let unsafe_command = CommandError::NonAscii {
            field: Field::Recipient,
            value: "é".into(),
        };
        let cases: Vec<(Option<SmtpOutcome>, Option<SessionEnd>, Fate)> = vec![
            (
                Some(timeout.clone()),
                Some(SessionEnd::Completed),
                again(Some(retry_at), timeout),
            ),
            (
                None,
                Some(SessionEnd::SenderRejected(reply("451 4.7.1 later"))),
                again(
                    Some(greylist_until),
                    SmtpOutcome::SessionRefused(reply("451 4.7.1 later")),
                ),
            ),
            (
                None,
                Some(SessionEnd::HeloRejected(reply("550 5.7.1 go away"))),
                Fate::Final(SmtpOutcome::SessionRefused(reply("550 5.7.1 go away"))),
            ),
            (
                None,
                Some(SessionEnd::HostRefused(reply("554 no"))),
                Fate::Final(SmtpOutcome::SessionRefused(reply("554 no"))),
            ),
            (
                None,
                Some(SessionEnd::TlsRequiredNotOffered),
                Fate::Final(SmtpOutcome::Unreachable(
                    "mx does not offer STARTTLS (--starttls require)".into(),
                )),
            ),
            (
                None,
                Some(SessionEnd::TlsRefused(reply("454 4.7.0 no TLS"))),
                Fate::Final(SmtpOutcome::Unreachable(
                    "mx refused STARTTLS (--starttls require): 454 4.7.0 no TLS".into(),
                )),
            ),
            (
                None,
                Some(SessionEnd::UnsafeCommand(unsafe_command.clone())),
                Fate::Final(SmtpOutcome::Unsendable(unsafe_command.to_string())),
            ),
            (
                None,
                Some(SessionEnd::ProtocolError("garbage".into())),
                again(None, SmtpOutcome::ProtocolError("mx: garbage".into())),
            ),
            (
                None,
                Some(SessionEnd::TooManyRejections),
                again(
                    None,
                    SmtpOutcome::ProtocolError(
                        "mx: the session ended before this recipient".into(),
                    ),
                ),
            ),
        ];
        for (interrupted, end, expected) in cases {
            let next = after_session_ended(
                interrupted.as_ref(),
                end.as_ref(),
                "mx",
                retry_at,
                greylist_until,
            );
            assert_eq!(next, expected, "{interrupted:?} {end:?}");
        }
    }

    #[test]
    fn when_no_server_talks() {
        enum Event {
            Refused(&'static str, &'static str),
            Failed(&'static str, bool),
            Skipped(&'static str),
        }
        use Event::*;
        let refused = |text| SmtpOutcome::SessionRefused(reply(text));
        let timeout = |why: &str| SmtpOutcome::Timeout(why.into());
        let unreachable = |why: &str| SmtpOutcome::Unreachable(why.into());
        // (what happened at the servers in turn, the answer once the retries are spent,
        // whether the recipients are tried again at all)
        let cases = [
            (vec![], unreachable("no usable mail server address"), true),
            (
                vec![Failed("a: timed out", true)],
                timeout("a: timed out"),
                true,
            ),
            (
                vec![Failed("a: timed out", true), Failed("b: refused", false)],
                unreachable("b: refused"),
                true,
            ),
            // A host given up on earlier keeps the last failure's kind.
            (
                vec![Failed("a: timed out", true), Skipped("b: given up")],
                timeout("b: given up"),
                true,
            ),
            // A 5xx refusal of the prober is final, and outlives later failures elsewhere.
            (
                vec![Refused("a: no", "554 5.7.1 no")],
                refused("554 5.7.1 no"),
                false,
            ),
            (
                vec![
                    Refused("a: no", "554 5.7.1 no"),
                    Failed("b: timed out", true),
                ],
                refused("554 5.7.1 no"),
                false,
            ),
        ];
        let now = Instant::now();
        for (events, answer, retried) in cases {
            let mut unreached = Unreached::new();
            for event in events {
                match event {
                    Refused(why, text) => unreached.refused(why.into(), reply(text)),
                    Failed(why, timed_out) => unreached.failed(why.into(), timed_out),
                    Skipped(why) => unreached.skipped(why.into()),
                }
            }
            let mut plan = plan_known_at_a(2, config(5, 1, 1));
            let id = open(&mut plan, now)[0].id;
            plan.report_no_server(id, &unreached, now);
            if retried {
                assert_eq!(plan.next_step(now), Step::WaitUntil(now + BACKOFF));
                let id = open(&mut plan, now + BACKOFF)[0].id;
                plan.report_no_server(id, &unreached, now + BACKOFF);
            }
            assert_eq!(plan.next_step(now + BACKOFF), Step::Done, "{unreached:?}");
            assert_eq!(outcomes(plan), [answer.clone(), answer]);
        }
    }

    #[test]
    fn the_canary_decides_what_an_acceptance_is_worth() {
        // (canary reply, the verdict, the domain's catch-all)
        let cases = [
            ("250 2.1.5 ok", Some(CatchAll::Yes)),
            ("550 5.1.1 no such user", Some(CatchAll::No)),
            ("450 4.7.1 greylisted, try again later", None),
        ];
        let now = Instant::now();
        for (text, verdict) in cases {
            let mut plan = plan_with(1, &[], config(5, 2, 2));
            let request = open(&mut plan, now).remove(0);
            assert!(request.leads_with_canary);
            let session = ran(A, vec![probed(text), probed("250 ok")], None);
            report(&mut plan, request.id, session, now);
            let finished = plan.finish(false);
            let domain = verdict.unwrap_or(CatchAll::Undetermined);
            assert_eq!(finished.probe.catch_all, domain, "{text}");
            assert_eq!(finished.probe.results.len(), 1, "the canary is no result");
            assert_eq!(finished.probe.results[0].catch_all, domain, "{text}");
            let by_server: Vec<_> = verdict.map(|v| (A, v)).into_iter().collect();
            assert_eq!(finished.probe.catch_all_by_server, by_server);
            assert_eq!(finished.newly_catch_all, verdict == Some(CatchAll::Yes));
        }
        // A verdict known before is no news.
        let plan = plan_with(1, &[(A, CatchAll::Yes)], config(5, 2, 2));
        let finished = plan.finish(false);
        assert_eq!(finished.probe.catch_all, CatchAll::Yes);
        assert!(!finished.newly_catch_all);
    }

    #[test]
    fn an_acceptance_by_a_server_without_a_verdict_is_asked_again_behind_a_canary_once() {
        let now = Instant::now();
        // The catch-all verdict is known at A; the session failed over to B.
        let mut plan = plan_known_at_a(3, config(5, 1, 2));
        let id = open(&mut plan, now)[0].id;
        let outcomes = vec![probed("250 ok"), probed("550 5.1.1 no"), probed("250 ok")];
        report(&mut plan, id, ran(B, outcomes, None), now);
        let request = open(&mut plan, now).remove(0);
        assert!(request.leads_with_canary);
        assert_eq!(
            request.recipients,
            ["canary1@example.com", "m1@example.com", "m3@example.com"]
        );
        // The canary at B says nothing useful: the acceptances stand, not asked a third time.
        let session = ran(
            B,
            vec![
                probed("451 4.3.0 later"),
                probed("250 ok"),
                probed("250 ok"),
            ],
            None,
        );
        report(&mut plan, request.id, session, now);
        let step = plan.next_step(now);
        assert_eq!(
            step,
            Step::WaitUntil(now + GREYLIST),
            "only the canary waits"
        );
        // Without the canary's answer, a stopped run leaves the acceptances undecided; the
        // refusal is an answer either way.
        let probe = plan.finish(true).probe;
        assert_eq!(probe.decided, [false, true, false]);
        assert_eq!(probe.results[0].attempts, 2);
        assert_eq!(probe.results[1].attempts, 1);
    }

    #[test]
    fn a_stopped_run_leaves_unanswered_recipients_undecided() {
        let now = Instant::now();
        let mut plan = plan_known_at_a(3, config(2, 1, 2));
        let id = open(&mut plan, now)[0].id;
        report(
            &mut plan,
            id,
            ran(A, vec![probed("250 ok"), probed("550 5.1.1 no")], None),
            now,
        );
        let probe = plan.finish(true).probe;
        // m1 accepted at A, whose verdict is known: decided. m3 never probed.
        assert_eq!(probe.decided, [true, true, false]);
        assert_eq!(
            probe.results[2].outcome,
            SmtpOutcome::ProtocolError("no answer was recorded".into())
        );
        assert_eq!(probe.results[0].server.as_deref(), Some("mx [192.0.2.1]"));
    }

    /// Issue #14, item 4: what each session decided is handed out once, as it ends (what a
    /// stop then would keep), so a big domain's verdicts are stored session by session.
    #[test]
    fn each_sessions_decisions_are_handed_out_once_as_it_ends() {
        let now = Instant::now();
        let mut plan = plan_known_at_a(3, config(2, 1, 2));
        assert!(plan.take_decided().is_empty(), "nothing decided yet");
        let id = open(&mut plan, now)[0].id;
        report(
            &mut plan,
            id,
            ran(A, vec![probed("250 ok"), probed("550 5.1.1 no")], None),
            now,
        );
        let first = plan.take_decided();
        assert_eq!(
            first.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            [0, 1],
            "the session's two answers"
        );
        assert!(matches!(&first[1].1.outcome, SmtpOutcome::Replied(r) if r.code == 550));
        assert!(plan.take_decided().is_empty(), "handed out once");
        let id = open(&mut plan, now)[0].id;
        report(&mut plan, id, ran(A, vec![probed("250 ok")], None), now);
        let second = plan.take_decided();
        assert_eq!(second.iter().map(|(i, _)| *i).collect::<Vec<_>>(), [2]);
        // The end still answers every mailbox.
        assert_eq!(plan.finish(false).probe.decided, [true; 3]);
    }

    /// Drives a plan to the end against a pretend server (one `SessionRan` per request);
    /// returns the sessions opened, when, and the deferrals counted.
    fn run(
        plan: &mut DomainPlan,
        start: Instant,
        mut server: impl FnMut(&SessionRequest) -> Vec<RcptOutcome>,
    ) -> (Vec<(Instant, SessionRequest)>, u64) {
        let mut now = start;
        let mut sessions = Vec::new();
        let mut deferred = 0;
        for _ in 0..100 {
            match plan.next_step(now) {
                Step::Open(requests) => {
                    for request in requests {
                        let session = ran(A, server(&request), None);
                        deferred += plan.report_ran(request.id, session, now, || now + BACKOFF);
                        sessions.push((now, request));
                    }
                }
                Step::WaitUntil(at) => now = at,
                Step::Done => return (sessions, deferred),
            }
        }
        panic!("the plan never ends");
    }

    /// Mailboxes 1, 4 and 8 exist; the canary does not.
    fn mailbox_verdict(address: &str) -> RcptOutcome {
        if ["m1@", "m4@", "m8@"].iter().any(|m| address.starts_with(m)) {
            probed("250 2.1.5 ok")
        } else {
            probed("550 5.1.1 no such user")
        }
    }

    #[test]
    fn a_whole_plan_that_shrinks_its_sessions() {
        // 12 mailboxes and a canary, 20 per session, a server that takes 5 per transaction:
        // 13 → 8 (size 10) → 3 (size 5): three sessions, no deferral.
        let mut plan = plan_with(12, &[], config(20, 2, 2));
        let (sessions, deferred) = run(&mut plan, Instant::now(), |request| {
            let outcomes = request.recipients.iter().enumerate();
            outcomes
                .map(|(nth, address)| match nth {
                    0..5 => mailbox_verdict(address),
                    _ => probed("452 4.5.3 Error: too many recipients"),
                })
                .collect()
        });
        let sizes: Vec<usize> = sessions.iter().map(|(_, r)| r.recipients.len()).collect();
        assert_eq!(sizes, [13, 8, 3]);
        assert_eq!(deferred, 0);
        let probe = plan.finish(false).probe;
        assert_eq!(probe.catch_all, CatchAll::No);
        let codes: Vec<u16> = probe
            .results
            .iter()
            .map(|r| match &r.outcome {
                SmtpOutcome::Replied(reply) => reply.code,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(
            codes,
            [250, 550, 550, 250, 550, 550, 550, 250, 550, 550, 550, 550]
        );
    }

    #[test]
    fn a_whole_plan_through_greylisting() {
        // Every address is greylisted the first time it is asked, then answered.
        let start = Instant::now();
        let mut asked = std::collections::HashSet::new();
        let mut plan = plan_with(4, &[], config(2, 2, 2));
        let (sessions, deferred) = run(&mut plan, start, |request| {
            let outcomes = request.recipients.iter();
            outcomes
                .map(|address| match asked.insert(address.clone()) {
                    true => probed("450 4.7.1 greylisted, try again later"),
                    false => mailbox_verdict(address),
                })
                .collect()
        });
        let shape: Vec<(Duration, usize)> = sessions
            .iter()
            .map(|(at, r)| (at.duration_since(start), r.recipients.len()))
            .collect();
        // The canary and m1 first, alone; then m2..m4 in two sessions at once; everyone
        // again after the greylisting wait, in the same order.
        let zero = Duration::ZERO;
        let expected = [
            (zero, 2),
            (zero, 2),
            (zero, 1),
            (GREYLIST, 2),
            (GREYLIST, 2),
            (GREYLIST, 1),
        ];
        assert_eq!(shape, expected);
        assert_eq!(deferred, 4, "the canary is not counted");
        let finished = plan.finish(false);
        assert_eq!(finished.probe.catch_all, CatchAll::No);
        assert!(finished.probe.results.iter().all(|r| r.attempts == 2));
        assert_eq!(finished.probe.decided, [true; 4]);
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn the_servers_of_a_domain_and_the_order_to_try_them() {
        use crate::model::dns::MxHost;
        let host = |name: &str, addresses: Addresses| MxHost {
            preference: 10,
            name: name.into(),
            addresses,
        };
        let found = |ips: &[&str]| Addresses::Found(ips.iter().map(|t| ip(t)).collect());
        let target = |name: &str, ips: &[&str]| MxTarget {
            name: name.into(),
            ips: ips.iter().map(|t| ip(t)).collect(),
        };
        // (DNS evidence, private addresses allowed, the targets). Public addresses: the
        // documentation ranges count as not routable.
        let cases = [
            (
                DomainEvidence::Mx(vec![
                    host("mx1.d.test", found(&["2606:4700::1111", "1.1.1.1"])),
                    host("mx2.d.test", Addresses::None),
                    host("mx3.d.test", found(&["10.0.0.3", "9.9.9.9"])),
                ]),
                false,
                vec![
                    // IPv4 first; a host without addresses and forbidden addresses left out.
                    target("mx1.d.test", &["1.1.1.1", "2606:4700::1111"]),
                    target("mx3.d.test", &["9.9.9.9"]),
                ],
            ),
            (
                DomainEvidence::Mx(vec![host("mx.d.test", found(&["10.0.0.3"]))]),
                true,
                vec![target("mx.d.test", &["10.0.0.3"])],
            ),
            (
                DomainEvidence::Mx(vec![host("mx.d.test", found(&["10.0.0.3"]))]),
                false,
                vec![],
            ),
            // No MX: the domain itself is the implicit MX.
            (
                DomainEvidence::NoMx(found(&["8.8.8.8"])),
                false,
                vec![target("d.test", &["8.8.8.8"])],
            ),
            (DomainEvidence::NullMx, true, vec![]),
            (DomainEvidence::NoSuchDomain, true, vec![]),
        ];
        for (dns, allow_private, expected) in cases {
            assert_eq!(
                targets_of("d.test", &dns, allow_private),
                expected,
                "{dns:?}"
            );
        }
        // Every session request carries all the addresses, in that order.
        let targets = [
            target("mx1.d.test", &["1.1.1.1", "2606:4700::1111"]),
            target("mx3.d.test", &["9.9.9.9"]),
        ];
        let mut plan = DomainPlan::new(
            "d.test",
            &targets,
            mailboxes(1),
            HashMap::new(),
            config(5, 2, 2),
            numbered_canaries(),
        );
        let servers: Vec<(String, IpAddr)> = open(&mut plan, Instant::now())[0]
            .servers
            .iter()
            .map(|s| (s.name.clone(), s.ip))
            .collect();
        let expected = [
            ("mx1.d.test", "1.1.1.1"),
            ("mx1.d.test", "2606:4700::1111"),
            ("mx3.d.test", "9.9.9.9"),
        ]
        .map(|(name, address)| (name.to_owned(), ip(address)));
        assert_eq!(servers, expected);
    }
}
