//! The SMTP stage's I/O: runs [`Session`]s over tokio TCP (rustls for STARTTLS) against a
//! domain's mail servers, politely, and reports what each server said about each mailbox.
//!
//! Politeness is per mail server address ([`Host`]): at most `per_host` connections open at
//! once (lowered when a server answers a new connection with 421), a short pause between opens,
//! exponential backoff after 421 or rate-limit replies, and a host that keeps failing is given
//! up on for the run. What to send is not decided here: per domain, a [`DomainPlan`] (pure,
//! `plan.rs`) says which sessions to open (batches, the catch-all canary, retries of deferred
//! recipients, waits); [`Prober::probe_domain`] performs them and reports each one back.
//!
//! A connection outlives its session, as in a sending MTA's connection cache: when a session's
//! recipients are done, the connection is parked at its server address (RSET, not QUIT), and
//! the next session for any domain served there runs on it (its own MAIL FROM transaction), so
//! one EHLO and STARTTLS serve many domains. The refusal cap counts over the whole connection.
//! A parked connection is watched: the server closing it or speaking out of turn, or
//! `idle_limit` passing, ends it.
//!
//! Nothing here decides validity: [`SmtpEvidence`] records what the server said and
//! `verdict::decide` turns it into a status.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot, watch};
use tokio::time::{Instant, timeout, timeout_at};

use super::budget::{BudgetRefusal, SharedBudget, SharedPermit};
use super::egress::{BlockedBy, ConnectOutcome, EgressBlock, EgressJudge, JudgeConfig, Judgement};
pub use super::outbound::Egress;
use super::plan::{DomainPlan, PlanConfig, ServerAddress, SessionRan, Step, Unreached};
pub use super::plan::{DomainProbe, MxTarget, targets_of};
use super::reply::{Reply, classify};
use super::session::{
    Action, Config as SessionConfig, RcptOutcome, Session, SessionEnd, TlsPolicy,
};
use crate::model::Reason;
use crate::model::provider::{Provider, ProviderTable};
pub use crate::model::smtp::{CatchAll, SmtpEvidence, SmtpOutcome, one_line};

/// Everything the probe needs from the command line.
#[derive(Debug, Clone)]
pub struct ProbeConfig {
    pub helo: String,
    pub mail_from: String,
    pub tls: TlsPolicy,
    /// Longest wait for a TCP connection to a mail server (short: a filtered port 25 answers
    /// nothing, and each domain would wait this long).
    pub connect_timeout: Duration,
    /// Longest wait for one reply, a write, or the TLS handshake.
    pub command_timeout: Duration,
    /// Longest wait for the greeting (servers delay it on purpose).
    pub banner_timeout: Duration,
    /// Connections open at once per mail server address.
    pub per_host: usize,
    /// Connections open at once in all.
    pub connections: usize,
    /// Recipients per session (one domain's share of a connection).
    pub rcpt_per_session: usize,
    /// Recipients per connection, over all its sessions; then it is closed.
    pub rcpt_per_connection: usize,
    /// How long a connection may wait, parked, for its next session before it is closed.
    pub idle_limit: Duration,
    /// Wait before probing a deferred (greylisted, 4xx) recipient again.
    pub greylist_wait: Duration,
    /// Times a deferred or interrupted recipient is probed again.
    pub retries: u32,
    /// 25 in real use; tests point it elsewhere.
    pub port: u16,
    /// Use PIPELINING when offered (off only to measure what it saves).
    pub pipelining: bool,
    /// Pause between two sessions to the same server address.
    pub host_pause: Duration,
    /// Consecutive failures (refused or dropped connections, timeouts, 421) after which a
    /// server address is given up on for the run.
    pub give_up_after: u32,
    /// Allow loopback and private server addresses (labs, intranets).
    pub allow_private: bool,
    /// When the first mail servers of the run all fail to connect (see [`super::egress`]),
    /// open no more connections: the machine cannot reach port 25. None: never judge.
    pub fast_fail: Option<JudgeConfig>,
    /// Where the connections come from.
    pub egress: Egress,
    /// What the big providers' servers need and what their answers mean.
    pub providers: Arc<ProviderTable>,
    /// Per-server limits shared with other processes (the distributed mode's workers), on
    /// top of this prober's own.
    pub shared_budget: Option<Arc<dyn SharedBudget>>,
}

impl ProbeConfig {
    pub fn new(helo: impl Into<String>, mail_from: impl Into<String>) -> Self {
        ProbeConfig {
            helo: helo.into(),
            mail_from: mail_from.into(),
            tls: TlsPolicy::Opportunistic,
            connect_timeout: Duration::from_secs(10),
            command_timeout: Duration::from_secs(30),
            banner_timeout: Duration::from_secs(60),
            per_host: 4,
            connections: 64,
            rcpt_per_session: 20,
            rcpt_per_connection: 100,
            // As Postfix's connection cache (smtp_connection_cache_time_limit).
            idle_limit: Duration::from_secs(2),
            greylist_wait: Duration::from_secs(300),
            retries: 2,
            port: 25,
            pipelining: true,
            host_pause: Duration::from_millis(100),
            give_up_after: 3,
            allow_private: false,
            fast_fail: Some(JudgeConfig::default()),
            egress: Egress::Direct,
            providers: Arc::new(ProviderTable::built_in().clone()),
            shared_budget: None,
        }
    }

    /// First backoff after a 421 or rate-limit reply; it doubles up to `greylist_wait`.
    fn backoff_base(&self) -> Duration {
        (self.greylist_wait / 8).max(Duration::from_secs(1))
    }

    fn plan_config(&self) -> PlanConfig {
        PlanConfig {
            rcpt_per_session: self.rcpt_per_session,
            per_host: self.per_host,
            retries: self.retries,
            greylist_wait: self.greylist_wait,
            backoff_base: self.backoff_base(),
        }
    }

    fn session_config(&self, tls: TlsPolicy) -> SessionConfig {
        SessionConfig {
            tls,
            // One transaction per session (the plan sizes sessions); the connection's limit
            // is the driver's to keep, between sessions.
            batch_size: usize::MAX,
            rcpt_per_session: usize::MAX,
            pipelining: self.pipelining,
            keep_open: true,
            ..SessionConfig::new(self.helo.clone(), self.mail_from.clone())
        }
    }
}

/// A HELO name or sender that can never be sent.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ProbeSetupError(String);

/// Run totals for summary.json.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SmtpStats {
    /// Domains probed.
    pub domains: u64,
    /// TCP connections that reached a server.
    pub sessions: u64,
    /// Sessions run on a connection kept from an earlier one (of any domain at that server).
    pub sessions_on_kept_connections: u64,
    /// STARTTLS handshakes that resumed an earlier TLS session with that server.
    pub tls_resumed: u64,
    /// The most connections open at once to one server address.
    pub most_connections_per_server: u64,
    pub rcpt_commands: u64,
    /// Recipients set aside to be probed again (greylisting, 4xx, rate limits).
    pub deferred: u64,
    pub hosts_given_up: u64,
    pub connect_failures: u64,
    pub catch_all_domains: u64,
    /// Where the connections came from: `direct`, `source <ip>`, `socks5://[user:***@]host:port`.
    pub egress: String,
    /// Recipients decided so far (for progress).
    #[serde(skip)]
    pub decided: u64,
    /// Recipients to decide in all (for progress).
    #[serde(skip)]
    pub to_decide: u64,
}

#[derive(Default)]
struct Counters {
    domains: AtomicU64,
    sessions: AtomicU64,
    sessions_on_kept_connections: AtomicU64,
    tls_resumed: AtomicU64,
    rcpt_commands: AtomicU64,
    deferred: AtomicU64,
    hosts_given_up: AtomicU64,
    connect_failures: AtomicU64,
    catch_all_domains: AtomicU64,
    decided: AtomicU64,
    to_decide: AtomicU64,
}

fn bump(c: &AtomicU64, n: u64) {
    c.fetch_add(n, Ordering::Relaxed);
}

// ------------------------------------------------------------------------------------------
// Per-server politeness
// ------------------------------------------------------------------------------------------

struct HostState {
    limit: usize,
    active: usize,
    /// No new session before this (the pause between sessions, or a backoff).
    not_before: Instant,
    backoff_level: u32,
    failures: u32,
    given_up: Option<String>,
    /// STARTTLS failed here once: later sessions stay in plain text (opportunistic only).
    tls_broken: bool,
    /// The server refused the prober itself (5xx greeting, HELO or MAIL FROM): asking again
    /// changes nothing, so later sessions are not opened.
    refuses: Option<Reply>,
    /// When the last failure was counted.
    last_failure: Option<Instant>,
    /// Connections between sessions, most recently parked last.
    parked: Vec<Parked>,
    /// The most connections open at once.
    most_open: usize,
}

/// A failure counts only when its session began this long after the last counted one.
const FAILURE_SPACING: Duration = Duration::from_millis(500);

/// How long a server one process gave up on is given up by every process sharing the budget:
/// long enough that the other workers of a job do not each try it in turn, short enough that
/// a server back from an outage is asked again by a later job.
const SHARED_GIVE_UP: Duration = Duration::from_secs(30 * 60);

struct Host {
    state: Mutex<HostState>,
    changed: Notify,
    /// Where connections to it come from (the run's egress, or its provider's proxy).
    egress: Egress,
    ip: IpAddr,
    /// Pause between two opens here (the run's, or its provider's when longer).
    pause: Duration,
    /// The provider whose whole fleet backs off when this address rate-limits us.
    fleet: Option<String>,
}

/// An open connection's place at one server; given back (with the pause) when it closes.
struct HostSlot {
    host: Arc<Host>,
    /// Its place in the budget shared with other processes, if there is one.
    shared: Option<SharedPermit>,
}

impl Drop for HostSlot {
    fn drop(&mut self) {
        if let Ok(mut s) = self.host.state.lock() {
            s.active = s.active.saturating_sub(1);
            s.not_before = s.not_before.max(Instant::now() + self.host.pause);
        }
        self.host.changed.notify_waiters();
    }
}

impl Host {
    fn new(
        limit: usize,
        pause: Duration,
        fleet: Option<String>,
        egress: Egress,
        ip: IpAddr,
    ) -> Self {
        Host {
            egress,
            ip,
            pause,
            fleet,
            state: Mutex::new(HostState {
                limit: limit.max(1),
                active: 0,
                not_before: Instant::now(),
                backoff_level: 0,
                failures: 0,
                given_up: None,
                tls_broken: false,
                refuses: None,
                last_failure: None,
                parked: Vec::new(),
                most_open: 0,
            }),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HostState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for a parked connection or room for a new one; Err(why) when the host was given
    /// up on. The pause between opens does not delay a parked connection.
    async fn slot(self: &Arc<Self>) -> Result<Got, String> {
        let pause = self.pause;
        loop {
            let wait = {
                let mut s = self.lock();
                if let Some(why) = &s.given_up {
                    return Err(why.clone());
                }
                if let Some(parked) = s.parked.pop() {
                    return Ok(Got::Parked(parked));
                }
                let now = Instant::now();
                if s.active < s.limit && now >= s.not_before {
                    s.active += 1;
                    s.most_open = s.most_open.max(s.active);
                    s.not_before = now + pause;
                    return Ok(Got::Fresh(HostSlot {
                        host: Arc::clone(self),
                        shared: None,
                    }));
                }
                if s.active >= s.limit {
                    // Full: a finished session wakes us (the bound below covers a missed one).
                    Duration::from_millis(250)
                } else {
                    s.not_before.saturating_duration_since(now)
                }
            };
            // A short poll bound covers a wake-up that raced the check above.
            let wait = wait.clamp(Duration::from_millis(5), Duration::from_millis(250));
            let _ = timeout(wait, self.changed.notified()).await;
        }
    }

    /// A parked connection's watcher ended it.
    fn unpark(&self, id: u64) {
        self.lock().parked.retain(|p| p.id != id);
    }

    fn succeeded(&self) {
        let mut s = self.lock();
        s.failures = 0;
        s.backoff_level = 0;
    }

    /// Another process sharing the budget gave the host up: so does this one.
    fn given_up_elsewhere(&self, why: &str) {
        let mut s = self.lock();
        if s.given_up.is_none() {
            s.given_up = Some(why.to_owned());
            drop(s);
            self.changed.notify_waiters();
        }
    }

    /// Counts a failure; true when the host is given up on because of it.
    /// `started`: when the failed session began.
    fn failed(&self, why: &str, give_up_after: u32, started: Instant) -> bool {
        let mut s = self.lock();
        // Sessions under way when a failure was counted, or begun just after it (several
        // domains on one shared MX), saw the same event: a moment's glitch must not give up a
        // host for the whole run. Only a session begun a while after it counts again.
        if s.last_failure
            .is_some_and(|t| started < t + FAILURE_SPACING)
        {
            return false;
        }
        s.last_failure = Some(Instant::now());
        s.failures += 1;
        if s.given_up.is_none() && s.failures >= give_up_after {
            s.given_up = Some(format!("given up after {} failures: {why}", s.failures));
            drop(s);
            self.changed.notify_waiters();
            return true;
        }
        false
    }

    /// 421 or a rate-limit reply: back off exponentially; on a refused extra connection, also
    /// allow fewer sessions at once. Returns when the next session may start.
    fn throttled(&self, base: Duration, cap: Duration, fewer_sessions: bool) -> Instant {
        let mut s = self.lock();
        let delay = base
            .saturating_mul(1u32 << s.backoff_level.min(16))
            .min(cap.max(base));
        s.backoff_level += 1;
        s.not_before = s.not_before.max(Instant::now() + delay);
        if fewer_sessions && s.limit > 1 {
            s.limit -= 1;
        }
        s.not_before
    }
}

// ------------------------------------------------------------------------------------------
// Connections
// ------------------------------------------------------------------------------------------

/// A connection before or after STARTTLS.
enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
    /// Between the two, or after a failed upgrade.
    Gone,
}

impl Conn {
    async fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        match self {
            Conn::Plain(s) => s.read(buf).await,
            Conn::Tls(s) => s.read(buf).await,
            Conn::Gone => Ok(0),
        }
    }
    async fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            Conn::Plain(s) => write_flush(s, buf).await,
            Conn::Tls(s) => write_flush(s.as_mut(), buf).await,
            Conn::Gone => Err(std::io::ErrorKind::NotConnected.into()),
        }
    }
    async fn shutdown(&mut self) {
        let _ = match self {
            Conn::Plain(s) => s.shutdown().await,
            Conn::Tls(s) => s.shutdown().await,
            Conn::Gone => Ok(()),
        };
    }
}

async fn write_flush<S: AsyncWrite + Unpin>(s: &mut S, buf: &[u8]) -> std::io::Result<()> {
    s.write_all(buf).await?;
    s.flush().await
}

/// How a driven session stopped, besides the session's own end.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Stop {
    /// The session finished by itself (see `Session::end`).
    Finished,
    Timeout(&'static str),
    /// The server closed the connection or it broke.
    Dropped(String),
    TlsFailed(String),
}

/// What a host offers a session: a parked connection, or room to open one.
enum Got {
    Parked(Parked),
    Fresh(HostSlot),
}

/// A parked connection, as the host's list holds it: its watcher task has the connection and
/// hands it over through `take`.
struct Parked {
    id: u64,
    take: oneshot::Sender<oneshot::Sender<Kept>>,
}

/// An open connection between sessions, with its host slot and global permit (both held for
/// as long as it is open).
struct Kept {
    conn: Conn,
    session: Session,
    slot: HostSlot,
    _permit: OwnedSemaphorePermit,
    opened: Instant,
}

/// What one session did, read off the session (which may go on serving others).
struct SessionReport {
    outcomes: Vec<RcptOutcome>,
    end: Option<SessionEnd>,
    rcpts_sent: usize,
}

impl SessionReport {
    /// Whether any RCPT was answered with a rate limit (4xx).
    fn rate_limited(&self) -> bool {
        self.outcomes.iter().any(|o| {
            matches!(o, RcptOutcome::Probed(reply)
                if reply.code / 100 == 4 && classify(reply).reason == Reason::RateLimited)
        })
    }
}

/// Tasks that outlive a session (watchers of parked connections, polite closes), counted so
/// that the end of the run can wait for their QUITs.
#[derive(Default)]
struct Background {
    running: AtomicU64,
    done: Notify,
}

impl Background {
    fn spawn(self: &Arc<Self>, task: impl std::future::Future<Output = ()> + Send + 'static) {
        self.running.fetch_add(1, Ordering::SeqCst);
        let me = Arc::clone(self);
        tokio::spawn(async move {
            task.await;
            me.running.fetch_sub(1, Ordering::SeqCst);
            me.done.notify_waiters();
        });
    }

    async fn idle(&self, bound: Duration) {
        let until = Instant::now() + bound;
        while self.running.load(Ordering::SeqCst) > 0 && Instant::now() < until {
            let _ = timeout(Duration::from_millis(50), self.done.notified()).await;
        }
    }
}

/// One attempt to run a session somewhere among the domain's servers.
enum Contact {
    Ran {
        report: SessionReport,
        stop: Stop,
        server: String,
        ip: IpAddr,
        started: Instant,
        host: Arc<Host>,
    },
    /// No server would talk.
    NoServer(Unreached),
    /// The run is stopping: no session was started.
    Stopped,
}

// ------------------------------------------------------------------------------------------
// The prober
// ------------------------------------------------------------------------------------------

/// One per run: the host table and the global session limit are shared by all domains.
pub struct Prober {
    config: ProbeConfig,
    /// Politeness is counted per egress and server address: the address a server sees.
    hosts: Mutex<HashMap<(Egress, IpAddr), Arc<Host>>>,
    /// Providers routed through a proxy of their own, by id.
    provider_egress: HashMap<String, Egress>,
    /// Decided catch-all verdicts, by domain and by the server that answered the canary: a
    /// backup MX often accepts everything while the primary checks mailboxes.
    catch_all: Mutex<HashMap<String, HashMap<IpAddr, CatchAll>>>,
    sessions: Arc<Semaphore>,
    /// Providers whose fleet is backed off (see `Provider::shared_backoff`): until when.
    fleets: Mutex<HashMap<String, Instant>>,
    /// Set when the run ends or stops: parked connections QUIT.
    closing: watch::Sender<bool>,
    background: Arc<Background>,
    next_parked: AtomicU64,
    /// Set by [`Prober::stop`]: no new session starts, in-flight ones end normally.
    stopped: std::sync::atomic::AtomicBool,
    /// Whether this machine reaches port 25, from the first servers' connection outcomes.
    egress: Mutex<EgressJudge<IpAddr>>,
    /// Set once when the judge finds port 25 blocked: no new connection is opened, and the
    /// attempts in flight are abandoned (`halt`).
    blocked: OnceLock<EgressBlock>,
    halt: watch::Sender<bool>,
    counters: Counters,
    tls: tokio_rustls::TlsConnector,
}

impl Prober {
    pub fn new(config: ProbeConfig) -> Result<Self, ProbeSetupError> {
        // The session checks HELO and sender once more; failing here gives a clear message
        // before any connection.
        Session::new(config.session_config(TlsPolicy::Never), Vec::new())
            .map_err(|e| ProbeSetupError(e.to_string()))?;
        if config.rcpt_per_session == 0 || config.per_host == 0 || config.connections == 0 {
            return Err(ProbeSetupError(
                "--rcpt-per-session, --per-host and --connections must be at least 1".into(),
            ));
        }
        let provider_egress = config
            .providers
            .providers()
            .iter()
            .filter_map(|p| Some((p, p.proxy.as_deref()?)))
            .map(|(p, url)| {
                Egress::parse_proxy(url)
                    .map(|e| (p.id.clone(), e))
                    .map_err(|e| ProbeSetupError(format!("provider {}: proxy {e}", p.id)))
            })
            .collect::<Result<HashMap<_, _>, _>>()?;
        let tls =
            tls::client_config().map_err(|e| ProbeSetupError(format!("cannot set up TLS: {e}")))?;
        let tls = tokio_rustls::TlsConnector::from(Arc::new(tls));
        let egress = EgressJudge::new(config.fast_fail.unwrap_or_default());
        Ok(Prober {
            sessions: Arc::new(Semaphore::new(config.connections)),
            fleets: Mutex::new(HashMap::new()),
            closing: watch::Sender::new(false),
            background: Arc::new(Background::default()),
            next_parked: AtomicU64::new(0),
            config,
            hosts: Mutex::new(HashMap::new()),
            provider_egress,
            catch_all: Mutex::new(HashMap::new()),
            stopped: std::sync::atomic::AtomicBool::new(false),
            egress: Mutex::new(egress),
            blocked: OnceLock::new(),
            halt: watch::Sender::new(false),
            counters: Counters::default(),
            tls,
        })
    }

    pub fn config(&self) -> &ProbeConfig {
        &self.config
    }

    pub fn stats(&self) -> SmtpStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        SmtpStats {
            domains: get(&c.domains),
            sessions: get(&c.sessions),
            sessions_on_kept_connections: get(&c.sessions_on_kept_connections),
            tls_resumed: get(&c.tls_resumed),
            most_connections_per_server: self
                .hosts
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .values()
                .map(|h| h.lock().most_open as u64)
                .max()
                .unwrap_or(0),
            rcpt_commands: get(&c.rcpt_commands),
            deferred: get(&c.deferred),
            hosts_given_up: get(&c.hosts_given_up),
            connect_failures: get(&c.connect_failures),
            catch_all_domains: get(&c.catch_all_domains),
            egress: self.config.egress.to_string(),
            decided: get(&c.decided),
            to_decide: get(&c.to_decide),
        }
    }

    /// Stop politely (Ctrl-C): sessions in flight finish their recipients and QUIT; no new
    /// session starts, and the mailboxes not yet probed are left undecided.
    pub fn stop(&self) {
        self.stopped.store(true, Ordering::SeqCst);
        self.sessions.close();
        self.closing.send_replace(true);
    }

    /// Closes the parked connections (QUIT) and waits, briefly, for them to close: the end of
    /// a window, or of the run.
    pub async fn close_idle(&self) {
        self.closing.send_replace(true);
        self.background.idle(Duration::from_secs(3)).await;
        self.closing.send_replace(false);
    }

    pub fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }

    /// Stopped, or port 25 found blocked: no session starts.
    fn halted(&self) -> bool {
        self.is_stopped() || self.blocked.get().is_some()
    }

    /// Port 25 found blocked (by the judge or a preflight): from then on no connection is
    /// opened.
    pub fn egress_blocked(&self) -> Option<EgressBlock> {
        self.blocked.get().copied()
    }

    /// The judgement so far on whether this machine reaches port 25 (`Works` when the run
    /// does not judge it; `Blocked` also when a preflight found it).
    pub fn egress(&self) -> Judgement {
        if let Some(block) = self.blocked.get() {
            return Judgement::Blocked(block.failures);
        }
        if self.config.fast_fail.is_none() {
            return Judgement::Works;
        }
        self.egress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .judgement()
    }

    /// A stretch of probing is over without enough failed connections to judge port 25
    /// blocked: a few dead servers, not a blocked port (see [`EgressJudge::settle`]).
    pub fn settle_egress(&self) -> Judgement {
        self.egress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .settle();
        self.egress()
    }

    /// Resolves when port 25 is found blocked (at once if it was).
    pub async fn egress_blocked_signal(&self) {
        let mut halt = self.halt.subscribe();
        let _ = halt.wait_for(|halted| *halted).await;
    }

    /// Judges port 25 blocked from outside the run (a preflight found every target filtered
    /// or refused): as if the judge had found it.
    pub fn block_egress(&self, block: EgressBlock) {
        if self.blocked.set(block).is_ok() {
            self.sessions.close();
            self.closing.send_replace(true);
            self.halt.send_replace(true);
        }
    }

    /// A connection to a mail server made before the run (the preflight's port 25 check), for
    /// the judge: its servers are the list's own.
    pub fn note_connection(&self, ip: IpAddr, outcome: ConnectOutcome) {
        self.judge_connect(ip, outcome);
    }

    /// One connection attempt's outcome for the judge; trips the block when it says so.
    fn judge_connect(&self, ip: IpAddr, outcome: ConnectOutcome) {
        if self.config.fast_fail.is_none() {
            return;
        }
        let judged = self
            .egress
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .record(ip, outcome);
        if let Judgement::Blocked(failures) = judged {
            self.block_egress(EgressBlock {
                by: BlockedBy::FirstServers,
                failures,
            });
        }
    }

    /// A catch-all verdict learnt earlier (the store) for a domain at one server: no canary
    /// is sent there this run.
    pub fn remember_catch_all(&self, domain: &str, server: IpAddr, catch_all: CatchAll) {
        if catch_all != CatchAll::Undetermined {
            self.catch_all
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .entry(domain.to_owned())
                .or_default()
                .insert(server, catch_all);
        }
    }

    /// The run's catch-all verdicts for a domain, by server, where a canary decided them.
    fn catch_all_of(&self, domain: &str) -> HashMap<IpAddr, CatchAll> {
        // Looked up by domain: a run meets tens of thousands of them.
        self.catch_all
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(domain)
            .cloned()
            .unwrap_or_default()
    }

    /// The politeness state of a server address; a provider's limits (first met with it) only
    /// ever lower the run's.
    fn host(&self, ip: IpAddr, provider: Option<&Provider>) -> Arc<Host> {
        let egress = provider
            .and_then(|p| self.provider_egress.get(&p.id))
            .unwrap_or(&self.config.egress)
            .clone();
        let mut hosts = self.hosts.lock().unwrap_or_else(|e| e.into_inner());
        Arc::clone(hosts.entry((egress.clone(), ip)).or_insert_with(|| {
            let c = &self.config;
            Arc::new(match provider {
                None => Host::new(c.per_host, c.host_pause, None, egress, ip),
                Some(p) => Host::new(
                    c.per_host.min(p.connections),
                    c.host_pause.max(Duration::from_millis(p.pause_ms)),
                    p.shared_backoff.then(|| p.id.clone()),
                    egress,
                    ip,
                ),
            })
        }))
    }

    /// Counts a host given up on, and tells the processes sharing the budget.
    fn gave_up(&self, host: &Host) {
        bump(&self.counters.hosts_given_up, 1);
        if let Some(budget) = &self.config.shared_budget {
            let why = host.lock().given_up.clone().unwrap_or_default();
            budget.give_up(&host.egress, host.ip, &why, SHARED_GIVE_UP);
        }
    }

    /// Backs a server address off after a 421 or a rate-limit reply (its provider's whole
    /// fleet too, when the provider counts limits fleet-wide). Returns when it may be asked
    /// again.
    fn throttle(&self, host: &Host, fewer_sessions: bool) -> Instant {
        let (base, cap) = (self.config.backoff_base(), self.config.greylist_wait);
        let until = host.throttled(base, cap, fewer_sessions);
        if let Some(budget) = &self.config.shared_budget {
            budget.back_off(
                &host.egress,
                host.ip,
                until.saturating_duration_since(Instant::now()),
            );
        }
        if let Some(fleet) = &host.fleet {
            let mut fleets = self.fleets.lock().unwrap_or_else(|e| e.into_inner());
            let at = fleets.entry(fleet.clone()).or_insert(until);
            *at = (*at).max(until);
        }
        until
    }

    /// Waits while the provider's fleet is backed off; false when the run stops meanwhile.
    async fn fleet_ready(&self, host: &Host) -> bool {
        let Some(fleet) = &host.fleet else {
            return true;
        };
        loop {
            if self.halted() {
                return false;
            }
            let until = self
                .fleets
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(fleet)
                .copied();
            match until {
                Some(at) if at > Instant::now() => {
                    // In slices, so a stop is noticed during a long backoff.
                    tokio::time::sleep_until(at.min(Instant::now() + Duration::from_millis(200)))
                        .await;
                }
                _ => return true,
            }
        }
    }

    /// Probes `mailboxes` (full addresses at `domain`) on the domain's servers. One result per
    /// mailbox, in order. The [`DomainPlan`] decides what to send; this loop performs it.
    pub async fn probe_domain(
        &self,
        domain: &str,
        targets: &[MxTarget],
        mailboxes: Vec<String>,
    ) -> DomainProbe {
        self.probe_domain_reporting(domain, targets, mailboxes, |_| {})
            .await
    }

    /// As [`Prober::probe_domain`], and after each round of sessions hands `decided` the
    /// mailboxes it decided (index, evidence), so they can be stored at once: a domain of
    /// thousands of addresses takes many sessions, and a crash should cost only those running.
    pub async fn probe_domain_reporting(
        &self,
        domain: &str,
        targets: &[MxTarget],
        mailboxes: Vec<String>,
        mut decided: impl FnMut(Vec<(usize, SmtpEvidence)>) + Send,
    ) -> DomainProbe {
        bump(&self.counters.domains, 1);
        bump(&self.counters.to_decide, mailboxes.len() as u64);
        // The provider is told by the preferred mail server's name.
        let provider = targets
            .first()
            .and_then(|t| self.config.providers.of_host(&t.name));
        if let Some(p) = provider.filter(|p| p.accepts_all) {
            // Its "accepted" would prove nothing, and asking costs the prober's reputation
            // there: no session, not even a canary.
            let n = mailboxes.len();
            bump(&self.counters.decided, n as u64);
            let server = targets.first().map(|t| t.name.clone());
            return DomainProbe {
                catch_all: CatchAll::Yes,
                results: (0..n)
                    .map(|_| SmtpEvidence {
                        outcome: SmtpOutcome::ProviderAcceptsAll(p.name.clone()),
                        server: server.clone(),
                        attempts: 0,
                        catch_all: CatchAll::Yes,
                    })
                    .collect(),
                decided: vec![true; n],
                catch_all_by_server: Vec::new(),
            };
        }
        let mut plan_config = self.config.plan_config();
        if let Some(p) = provider {
            // A provider's own limits only ever lower the run's.
            plan_config.rcpt_per_session = plan_config.rcpt_per_session.min(p.rcpt_per_transaction);
            plan_config.per_host = plan_config.per_host.min(p.connections);
        }
        // A domain met again (in a later window of a long list) keeps its catch-all verdicts:
        // one canary per domain and server per run.
        let mut plan = DomainPlan::new(
            domain,
            targets,
            mailboxes,
            self.catch_all_of(domain),
            plan_config,
            Box::new(canary_local_part),
        );
        while !self.halted() {
            let requests = match plan.next_step(Instant::now().into_std()) {
                Step::Done => break,
                Step::WaitUntil(at) => {
                    // In slices, so a stop is noticed during a long greylisting wait.
                    let slice = Instant::now() + Duration::from_millis(200);
                    tokio::time::sleep_until(Instant::from_std(at).min(slice)).await;
                    continue;
                }
                Step::Open(requests) => requests,
            };
            let contacts = futures::future::join_all(
                requests
                    .iter()
                    .map(|r| self.contact(&r.servers, r.recipients.clone(), provider)),
            )
            .await;
            for (request, contact) in requests.iter().zip(contacts) {
                self.report(&mut plan, request.id, contact);
            }
            let newly = plan.take_decided();
            if !newly.is_empty() {
                decided(newly);
            }
        }

        let finished = plan.finish(self.halted());
        let probe = finished.probe;
        if finished.newly_catch_all {
            bump(&self.counters.catch_all_domains, 1);
        }
        self.catch_all
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(domain.to_owned())
            .or_default()
            .extend(probe.catch_all_by_server.iter().copied());
        let decided = probe.decided.iter().filter(|d| **d).count();
        bump(&self.counters.decided, decided as u64);
        probe
    }

    /// Hands what one session attempt found to the plan, after the host's politeness
    /// bookkeeping.
    fn report(&self, plan: &mut DomainPlan, id: usize, contact: Contact) {
        let now = Instant::now().into_std();
        match contact {
            // A session refused because the run is stopping says nothing: those recipients
            // stay undecided.
            Contact::Stopped => {}
            Contact::NoServer(unreached) => plan.report_no_server(id, &unreached, now),
            Contact::Ran {
                report,
                stop,
                server,
                ip,
                started,
                host,
            } => {
                let ran = self.host_after_session(report, &stop, server, ip, started, &host);
                let deferred =
                    plan.report_ran(id, ran, now, || self.throttle(&host, false).into_std());
                bump(&self.counters.deferred, deferred);
            }
        }
    }

    /// What a finished session means for its server (backoff after 421, failures, refusals,
    /// success), and the session's report for the plan.
    fn host_after_session(
        &self,
        session: SessionReport,
        stop: &Stop,
        server: String,
        ip: IpAddr,
        started: Instant,
        host: &Host,
    ) -> SessionRan {
        bump(&self.counters.rcpt_commands, session.rcpts_sent as u64);
        let end = session.end.clone();
        let mut backoff_until = None;
        if let Some(SessionEnd::ServerClosing(r)) = &end {
            backoff_until = Some(self.throttle(host, false).into_std());
            if host.failed(
                &format!("server closing: {r}"),
                self.config.give_up_after + 2,
                started,
            ) {
                self.gave_up(host);
            }
        } else if matches!(stop, Stop::Finished)
            && !matches!(end, Some(SessionEnd::ProtocolError(_)))
            && !session.rate_limited()
        {
            // (A rate-limited session is no success: the backoff must keep doubling.)
            host.succeeded();
        }
        if let Some(SessionEnd::HeloRejected(r) | SessionEnd::SenderRejected(r)) = &end
            && r.code / 100 == 5
        {
            host.lock().refuses = Some(r.clone());
        }
        if let Some(SessionEnd::ProtocolError(why)) = &end
            && host.failed(why, self.config.give_up_after, started)
        {
            // A server that breaks the dialogue every time is not asked forever.
            self.gave_up(host);
        }
        let interrupted = match stop {
            Stop::Finished => None,
            Stop::Timeout(what) => Some(SmtpOutcome::Timeout(format!(
                "{server}: no answer to {what} within {}s",
                self.config.command_timeout.as_secs()
            ))),
            Stop::Dropped(why) => Some(SmtpOutcome::ProtocolError(format!(
                "{server}: connection lost mid-session: {why}"
            ))),
            Stop::TlsFailed(why) => Some(SmtpOutcome::ProtocolError(format!(
                "{server}: STARTTLS handshake failed: {why}"
            ))),
        };
        if let Some(why) = &interrupted
            && host.failed(&format!("{why:?}"), self.config.give_up_after, started)
        {
            self.gave_up(host);
        }
        SessionRan {
            server,
            ip,
            outcomes: session.outcomes,
            end,
            interrupted,
            backoff_until,
        }
    }

    /// Runs one session for `rcpts` on the first of `servers` that talks: on a parked
    /// connection to it when there is one, else on a new connection.
    async fn contact(
        &self,
        servers: &[ServerAddress],
        rcpts: Vec<String>,
        provider: Option<&Provider>,
    ) -> Contact {
        let mut unreached = Unreached::new();
        'servers: for target in servers {
            let ip = target.ip;
            let host = self.host(ip, provider);
            let server = format!("{} [{ip}]", target.name);
            loop {
                if let Some(r) = host.lock().refuses.clone() {
                    unreached.refused(format!("{server} refused the prober: {r}"), r);
                    continue 'servers;
                }
                if !self.fleet_ready(&host).await {
                    return Contact::Stopped;
                }
                let got = match host.slot().await {
                    Ok(got) => got,
                    Err(given_up) => {
                        unreached.skipped(format!("{server}: {given_up}"));
                        continue 'servers;
                    }
                };
                if self.halted() {
                    return Contact::Stopped;
                }
                let kept = match got {
                    Got::Parked(parked) => match self.take_parked(parked).await {
                        Some(kept) => kept,
                        // Its watcher ended it meanwhile: the next one, or a new connection.
                        None => continue,
                    },
                    Got::Fresh(mut slot) => {
                        let Ok(permit) = Arc::clone(&self.sessions).acquire_owned().await else {
                            return Contact::Stopped;
                        };
                        if let Some(budget) = &self.config.shared_budget {
                            match self.shared_place(budget.as_ref(), &host, ip).await {
                                Some(Ok(shared)) => slot.shared = Some(shared),
                                Some(Err(BudgetRefusal::GivenUp(why))) => {
                                    let why = format!("given up by another worker: {why}");
                                    host.given_up_elsewhere(&why);
                                    unreached.skipped(format!("{server}: {why}"));
                                    continue 'servers;
                                }
                                Some(Err(refusal)) => {
                                    unreached.failed(format!("{server}: {refusal}"), false);
                                    continue 'servers;
                                }
                                None => return Contact::Stopped,
                            }
                        }
                        match self
                            .open(target, &server, slot, permit, &rcpts, &mut unreached)
                            .await
                        {
                            Opened::Ran(contact) => return contact,
                            Opened::PassedOver => continue 'servers,
                            Opened::Stop => return Contact::NoServer(unreached),
                        }
                    }
                };
                match self.run_on_kept(kept, target, &server, &host, &rcpts).await {
                    Some(contact) => return contact,
                    // The connection had gone stale: not the server's fault, nothing counted.
                    None => continue,
                }
            }
        }
        Contact::NoServer(unreached)
    }

    /// Waits for a place in the budget shared with other processes; None when the run stops
    /// meanwhile (checked between polls: the wait may be long when other workers hold the
    /// server's places).
    async fn shared_place(
        &self,
        budget: &dyn SharedBudget,
        host: &Host,
        ip: IpAddr,
    ) -> Option<Result<SharedPermit, BudgetRefusal>> {
        let limit = host.lock().limit;
        let wait = budget.open(&host.egress, ip, limit, host.pause);
        tokio::pin!(wait);
        loop {
            if self.halted() {
                return None;
            }
            match timeout(Duration::from_millis(200), &mut wait).await {
                Ok(got) => return Some(got),
                Err(_) => continue,
            }
        }
    }

    /// Takes a parked connection from its watcher; None when the watcher has ended it.
    async fn take_parked(&self, parked: Parked) -> Option<Kept> {
        let (give, taken) = oneshot::channel();
        parked.take.send(give).ok()?;
        taken.await.ok()
    }

    /// A new connection for one session: connect, greeting, EHLO, STARTTLS, the session.
    async fn open(
        &self,
        target: &ServerAddress,
        server: &str,
        slot: HostSlot,
        permit: OwnedSemaphorePermit,
        rcpts: &[String],
        unreached: &mut Unreached,
    ) -> Opened {
        let host = Arc::clone(&slot.host);
        let tls = if host.lock().tls_broken && self.config.tls == TlsPolicy::Opportunistic {
            TlsPolicy::Never
        } else {
            self.config.tls
        };
        let session = match Session::new(self.config.session_config(tls), rcpts.to_vec()) {
            Ok(s) => s,
            Err(e) => {
                unreached.skipped(e.to_string());
                return Opened::Stop;
            }
        };
        let started = Instant::now();
        let Some(stream) = self
            .connect(target.ip, server, &host, started, unreached)
            .await
        else {
            return Opened::PassedOver;
        };
        bump(&self.counters.sessions, 1);
        let conn = Conn::Plain(stream);
        let (conn, session, stop) = self
            .drive(
                conn,
                session,
                &target.name,
                &host,
                self.config.banner_timeout,
            )
            .await;
        if self.passed_over(&session, &stop, server, &host, started, unreached) {
            return Opened::PassedOver;
        }
        let report = self.after_session(
            Kept {
                conn,
                session,
                slot,
                _permit: permit,
                opened: started,
            },
            0,
        );
        Opened::Ran(Contact::Ran {
            report,
            stop,
            server: server.to_owned(),
            ip: target.ip,
            started,
            host,
        })
    }

    /// One session on a parked connection; None when the connection turned out stale (closed
    /// by the server before it answered anything of this session).
    async fn run_on_kept(
        &self,
        mut kept: Kept,
        target: &ServerAddress,
        server: &str,
        host: &Arc<Host>,
        rcpts: &[String],
    ) -> Option<Contact> {
        let (replies, rcpts_before) = (kept.session.replies_received(), kept.session.rcpts_sent());
        if kept.session.start_job(rcpts.to_vec()).is_err() {
            return None;
        }
        let started = Instant::now();
        let (conn, session, stop) = self
            .drive(
                kept.conn,
                kept.session,
                &target.name,
                host,
                self.config.command_timeout,
            )
            .await;
        if matches!(stop, Stop::Dropped(_)) && session.replies_received() == replies {
            return None;
        }
        bump(&self.counters.sessions_on_kept_connections, 1);
        kept.conn = conn;
        kept.session = session;
        let report = self.after_session(kept, rcpts_before);
        Some(Contact::Ran {
            report,
            stop,
            server: server.to_owned(),
            ip: target.ip,
            started,
            host: Arc::clone(host),
        })
    }

    /// The session's report; its connection parked for the next session when it may serve
    /// one, closed politely (in the background) when it may not.
    fn after_session(&self, kept: Kept, rcpts_before: usize) -> SessionReport {
        let session = &kept.session;
        let report = SessionReport {
            outcomes: session.results().into_iter().map(|r| r.outcome).collect(),
            end: session.end().cloned(),
            rcpts_sent: session.rcpts_sent() - rcpts_before,
        };
        if !session.is_idle() {
            return report;
        }
        let host = Arc::clone(&kept.slot.host);
        let reusable = !self.halted()
            && session.refusals_left() > 0
            && session.rcpts_sent() < self.config.rcpt_per_connection
            && kept.opened.elapsed() < MAX_CONNECTION_AGE
            && {
                let s = host.lock();
                // A 421 lowered the limit: shed connections above it.
                s.given_up.is_none() && s.active <= s.limit
            };
        if reusable {
            self.park(host, kept);
        } else {
            self.background.spawn(quit_politely(kept));
        }
        report
    }

    /// Hands a connection between sessions to a watcher task, listed at its host.
    fn park(&self, host: Arc<Host>, kept: Kept) {
        let id = self.next_parked.fetch_add(1, Ordering::Relaxed);
        let (take, mut taken) = oneshot::channel::<oneshot::Sender<Kept>>();
        host.lock().parked.push(Parked { id, take });
        host.changed.notify_waiters();
        let mut closing = self.closing.subscribe();
        let idle_limit = self.config.idle_limit;
        self.background.spawn(async move {
            let mut kept = kept;
            let mut byte = [0u8; 512];
            enum Wake {
                Taken(Option<oneshot::Sender<Kept>>),
                Spoke,
                Expired,
            }
            let wake = tokio::select! {
                biased;
                give = &mut taken => Wake::Taken(give.ok()),
                // Anything at all while idle (an idle-timeout 421, a close): it is done.
                _ = kept.conn.read(&mut byte) => Wake::Spoke,
                _ = tokio::time::sleep(idle_limit) => Wake::Expired,
                _ = closing.wait_for(|c| *c) => Wake::Expired,
            };
            match wake {
                Wake::Taken(Some(give)) => {
                    if let Err(kept) = give.send(kept) {
                        quit_politely(kept).await;
                    }
                }
                Wake::Taken(None) => quit_politely(kept).await,
                Wake::Spoke => host.unpark(id),
                Wake::Expired => {
                    host.unpark(id);
                    quit_politely(kept).await;
                }
            }
        });
    }

    /// A TCP connection to `ip`, or None after counting the failure against the host.
    async fn connect(
        &self,
        ip: IpAddr,
        server: &str,
        host: &Host,
        started: Instant,
        unreached: &mut Unreached,
    ) -> Option<TcpStream> {
        let addr = SocketAddr::new(ip, self.config.port);
        let attempt = timeout(self.config.connect_timeout, host.egress.connect(addr));
        let mut halt = self.halt.subscribe();
        let attempted = tokio::select! {
            attempted = attempt => attempted,
            // Port 25 was found blocked meanwhile: this attempt would only time out too.
            _ = halt.wait_for(|halted| *halted) => {
                unreached.skipped(format!("{server}: not tried, port 25 is unreachable from here"));
                return None;
            }
        };
        // A provider's own proxy says nothing about this machine's port 25.
        let judge = |outcome| {
            if host.egress == self.config.egress {
                self.judge_connect(ip, outcome);
            }
        };
        let (why, timed_out) = match attempted {
            Ok(Ok(stream)) => {
                judge(ConnectOutcome::Connected);
                let _ = stream.set_nodelay(true);
                return Some(stream);
            }
            Ok(Err(e)) => {
                judge(connect_error_outcome(&e));
                (format!("{server}: {e}"), false)
            }
            Err(_) => {
                judge(ConnectOutcome::TimedOut);
                let wait = self.config.connect_timeout.as_secs_f64();
                (
                    format!("{server}: connection timed out after {wait}s"),
                    true,
                )
            }
        };
        bump(&self.counters.connect_failures, 1);
        if host.failed(&why, self.config.give_up_after, started) {
            self.gave_up(host);
        }
        unreached.failed(why, timed_out);
        None
    }

    /// Whether a server that refused the session (greeting not 220) or never greeted sends
    /// us to the next one; its host is throttled or marked accordingly.
    fn passed_over(
        &self,
        session: &Session,
        stop: &Stop,
        server: &str,
        host: &Host,
        started: Instant,
        unreached: &mut Unreached,
    ) -> bool {
        let no_greeting = session.replies_received() == 0;
        let (why, give_up_after) = match (session.end(), stop) {
            (Some(SessionEnd::HostRefused(r)), _) => {
                let why = format!("{server} refused the session: {r}");
                if r.code / 100 == 4 {
                    // 421 on connect: busy, or too many connections from us.
                    let busy = host.lock().active > 1;
                    self.throttle(host, busy);
                    unreached.failed(why.clone(), false);
                } else {
                    host.lock().refuses = Some(r.clone());
                    unreached.refused(why.clone(), r.clone());
                }
                (why, self.config.give_up_after + 2)
            }
            (None, Stop::Timeout(_) | Stop::Dropped(_)) if no_greeting => {
                let timed_out = matches!(stop, Stop::Timeout(_));
                let why = if timed_out {
                    let wait = self.config.banner_timeout.as_secs();
                    format!("{server}: no greeting within {wait}s")
                } else {
                    format!("{server}: closed the connection before greeting")
                };
                unreached.failed(why.clone(), timed_out);
                (why, self.config.give_up_after)
            }
            _ => return false,
        };
        if host.failed(&why, give_up_after, started) {
            self.gave_up(host);
        }
        true
    }

    /// The I/O loop of one session. Every read and write has a deadline; a reply has
    /// `command_timeout` to complete (the greeting `banner_timeout`), so a server that
    /// trickles bytes or never finishes a reply costs bounded time; the session bounds memory.
    async fn drive(
        &self,
        mut conn: Conn,
        mut session: Session,
        server_name: &str,
        host: &Host,
        first_reply_within: Duration,
    ) -> (Conn, Session, Stop) {
        let cfg = &self.config;
        let mut buf = vec![0u8; 16 * 1024];
        let mut replies = session.replies_received();
        let mut deadline = Instant::now() + first_reply_within;
        let stop = loop {
            match session.next_action() {
                Action::Write(bytes) => {
                    match timeout(cfg.command_timeout, conn.write_all(&bytes)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => break Stop::Dropped(e.to_string()),
                        Err(_) => break Stop::Timeout("a command (write)"),
                    }
                    if session.end().is_none() {
                        deadline = Instant::now() + cfg.command_timeout;
                    } else {
                        // QUIT was written: its 221 is a courtesy, not worth waiting long for.
                        deadline = Instant::now() + cfg.command_timeout.min(Duration::from_secs(2));
                    }
                }
                Action::ReadMore => {
                    let n = match timeout_at(deadline, conn.read(&mut buf)).await {
                        Ok(Ok(0)) => break Stop::Dropped("closed by the server".into()),
                        Ok(Ok(n)) => n,
                        Ok(Err(e)) => break Stop::Dropped(e.to_string()),
                        Err(_) => {
                            break Stop::Timeout(if session.replies_received() == 0 {
                                "the greeting"
                            } else {
                                "a command"
                            });
                        }
                    };
                    // On an error the session has recorded its end and voided what it must;
                    // it may still say QUIT (politeness) before it says Finished.
                    let _ = session.feed(&buf[..n]);
                    if session.replies_received() != replies {
                        replies = session.replies_received();
                        deadline = Instant::now() + cfg.command_timeout;
                    }
                }
                Action::StartTls => {
                    let Conn::Plain(tcp) = std::mem::replace(&mut conn, Conn::Gone) else {
                        break Stop::TlsFailed("STARTTLS twice".into());
                    };
                    let name = tls::server_name(server_name, tcp.peer_addr().ok());
                    match timeout(cfg.command_timeout, self.tls.connect(name, tcp)).await {
                        Ok(Ok(tls)) => {
                            if tls.get_ref().1.handshake_kind()
                                == Some(rustls::HandshakeKind::Resumed)
                            {
                                bump(&self.counters.tls_resumed, 1);
                            }
                            conn = Conn::Tls(Box::new(tls));
                        }
                        Ok(Err(e)) => {
                            host.lock().tls_broken = true;
                            break Stop::TlsFailed(e.to_string());
                        }
                        Err(_) => {
                            host.lock().tls_broken = true;
                            break Stop::TlsFailed("handshake timed out".into());
                        }
                    }
                    if session.tls_established().is_err() {
                        break Stop::TlsFailed("session out of step".into());
                    }
                    deadline = Instant::now() + cfg.command_timeout;
                }
                Action::Finished => {
                    let _ = timeout(Duration::from_secs(1), conn.shutdown()).await;
                    conn = Conn::Gone;
                    break Stop::Finished;
                }
                // The connection stays open for the next session.
                Action::Idle => break Stop::Finished,
            }
        };
        if !matches!(stop, Stop::Finished) {
            session.connection_lost();
        }
        // A session that had finished its work before the server hung up is still finished.
        let stop = match (&stop, session.end()) {
            (Stop::Dropped(_) | Stop::Timeout(_), Some(_)) => Stop::Finished,
            _ => stop,
        };
        (conn, session, stop)
    }
}

/// A connection is not given new sessions after this long (Postfix's
/// smtp_connection_reuse_time_limit).
const MAX_CONNECTION_AGE: Duration = Duration::from_secs(300);

/// How opening a new connection for a session went.
enum Opened {
    Ran(Contact),
    /// The server would not talk: try the next one.
    PassedOver,
    /// The session could not even be set up.
    Stop,
}

/// QUIT on a connection that is done, waiting briefly for the 221 (which confirms that the
/// last session's replies were in step); then the connection closes, freeing its slot.
async fn quit_politely(mut kept: Kept) {
    kept.session.close();
    let mut buf = [0u8; 1024];
    let until = Instant::now() + Duration::from_secs(2);
    loop {
        match kept.session.next_action() {
            Action::Write(bytes) => {
                if timeout_at(until, kept.conn.write_all(&bytes))
                    .await
                    .is_err()
                {
                    break;
                }
            }
            Action::ReadMore => match timeout_at(until, kept.conn.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => {
                    let _ = kept.session.feed(&buf[..n]);
                }
                _ => break,
            },
            Action::StartTls | Action::Idle | Action::Finished => break,
        }
    }
    let _ = timeout(Duration::from_secs(1), kept.conn.shutdown()).await;
}

/// What a failed connection says about port 25: a refusal (a reset, or a local firewall's
/// veto) counts against it; no route to the network (IPv6 on an IPv4-only machine) or an
/// unusable address says nothing about it.
fn connect_error_outcome(e: &std::io::Error) -> ConnectOutcome {
    use std::io::ErrorKind;
    match e.kind() {
        ErrorKind::NetworkUnreachable | ErrorKind::AddrNotAvailable | ErrorKind::Unsupported => {
            ConnectOutcome::Unreachable
        }
        ErrorKind::TimedOut => ConnectOutcome::TimedOut,
        _ => ConnectOutcome::Refused,
    }
}

/// A local part no one has: letters only (some servers treat digits specially), long.
fn canary_local_part() -> String {
    let mut s = String::with_capacity(24);
    for _ in 0..24 {
        s.push(fastrand::lowercase());
    }
    s
}

mod tls {
    //! Opportunistic STARTTLS: MTAs use self-signed certificates, so the chain is not checked
    //! (as MTAs do among themselves without DANE/MTA-STS); the handshake's signatures are.
    use std::net::SocketAddr;
    use std::sync::Arc;

    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, SignatureScheme};

    #[derive(Debug)]
    struct AnyCertificate(WebPkiSupportedAlgorithms);

    impl ServerCertVerifier for AnyCertificate {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
        }
        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
        }
        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.supported_schemes()
        }
    }

    pub(super) fn client_config() -> Result<rustls::ClientConfig, rustls::Error> {
        let provider: Arc<CryptoProvider> = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = AnyCertificate(provider.signature_verification_algorithms);
        Ok(rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth())
    }

    /// SNI with the MX name when it is a valid DNS name, else the address.
    pub(super) fn server_name(name: &str, peer: Option<SocketAddr>) -> ServerName<'static> {
        if let Ok(n) = ServerName::try_from(name.to_owned()) {
            return n;
        }
        match peer {
            Some(p) => ServerName::IpAddress(p.ip().into()),
            None => ServerName::IpAddress(std::net::IpAddr::from([127, 0, 0, 1]).into()),
        }
    }
}
