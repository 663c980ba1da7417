//! `prebounce worker --queue postgres://…`: takes units of the queue's running jobs, one at a
//! time, until stopped (SIGTERM or Ctrl-C: the unit in hand is given back, what it decided
//! kept, exit 0) or, with --exit-when-idle, until no work is left.
//!
//! A unit is claimed under a lease that a thread of its own renews; a worker that loses the
//! lease (it was too slow to renew: a partition) stops the unit, and one that dies loses it,
//! and another worker takes the unit over, answering from the store what was decided.

use std::io::Write as _;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;

use prebounce::interrupt::Interrupt;
use prebounce::queue::UnitKind;
use prebounce::queue::budget::PgBudget;
use prebounce::queue::db::{Ended, Job, Queue, QueueError, Unit};
use prebounce::queue::work::{first_servers, write_unit_list};
use prebounce::smtp::probe::Egress;

use super::Failure;
use super::job::{QueueArgs, job_config};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    queue: QueueArgs,
    /// Bind this worker's probe connections to this local address.
    #[arg(long, value_name = "IP", conflicts_with = "proxy")]
    source_ip: Option<IpAddr>,
    /// Send this worker's probe connections through a SOCKS5 proxy:
    /// socks5://[user:pass@]host:port.
    #[arg(long, value_name = "URL", value_parser = Egress::parse_proxy)]
    proxy: Option<Egress>,
    /// Probe connections this worker opens at once in all [default: the job's --connections].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=4096))]
    connections: Option<u16>,
    /// Units this worker takes at once (each one mail server's addresses, or a batch of
    /// domains). Every server stays within its limits whatever the number: the budget is
    /// shared.
    #[arg(long, value_name = "N", default_value = "8", value_parser = parse_units)]
    units: std::num::NonZeroU16,
    /// Count the per-server limits per source address (each worker's address gets the job's
    /// --per-host at each server), not across all workers: only where you know the servers
    /// judge each source on its own.
    #[arg(long)]
    per_source: bool,
    /// This worker's name in the queue [default: host name and process id].
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// Exit when no running job has work left, instead of waiting for more.
    #[arg(long)]
    exit_when_idle: bool,
    /// How long a claimed unit stays this worker's without a renewal (renewed every third of
    /// it), e.g. 30s.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = super::verify::parse_timeout)]
    lease: Duration,
    /// Say nothing on stderr but errors.
    #[arg(short, long)]
    quiet: bool,
}

fn parse_units(s: &str) -> Result<std::num::NonZeroU16, String> {
    match s.parse::<u16>() {
        Ok(n @ 1..=64) => Ok(std::num::NonZeroU16::new(n).expect("at least 1")),
        _ => Err("a number of units from 1 to 64".into()),
    }
}

/// The pause after a unit handed back for a reason not its own, doubled each time in a row.
const FIRST_SETBACK: Duration = Duration::from_secs(1);
const MAX_SETBACK: Duration = Duration::from_secs(30);

/// How a unit ended, for the loop.
enum Outcome {
    Done,
    /// Stopped by a signal: the worker exits.
    Stopped,
    /// This worker cannot do the work (port 25 blocked from here): it stops taking units.
    CannotProbe(String),
}

pub fn run(args: Args) -> Result<(), Failure> {
    let name = args.name.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "worker".into());
        format!("{host}-{}", std::process::id())
    });
    let stop = stop_on_signals().map_err(Failure::other)?;
    let say = |text: String| {
        if !args.quiet {
            let _ = writeln!(std::io::stderr(), "prebounce worker {name}: {text}");
        }
    };
    let units_done = AtomicU64::new(0);
    let budget = std::sync::Mutex::new(None);
    // A unit is one mail server's addresses (or a batch of domains), and a server is probed
    // by a few connections at most: one unit at a time would leave the worker waiting on one
    // server's round trips. Its slots take units side by side, each with its own connections
    // to the queue; the shared budget keeps every server within its limits whatever the slots.
    let ended: Vec<Result<(), Failure>> = std::thread::scope(|scope| {
        let slots: Vec<_> = (1..=args.units.get())
            .map(|slot| {
                let slot_name = if args.units.get() == 1 {
                    name.clone()
                } else {
                    format!("{name}/{slot}")
                };
                let (args, stop, say, units_done, budget) =
                    (&args, &stop, &say, &units_done, &budget);
                scope.spawn(move || {
                    let ended = take_units(args, &slot_name, stop, say, units_done, budget);
                    // One slot's end for a reason other than a stop (port 25 blocked, the
                    // queue refused) ends the others: they hand their units back.
                    if ended.is_err() {
                        stop.request();
                    }
                    ended
                })
            })
            .collect();
        slots
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(Failure::other(anyhow::anyhow!("a unit slot panicked")))
                })
            })
            .collect()
    });
    let units_done = units_done.load(Ordering::SeqCst);
    if let Some(failure) = ended.into_iter().find_map(Result::err) {
        return Err(failure);
    }
    if stop.is_requested() {
        say(format!("stopped; {units_done} units done"));
    } else {
        say(format!("no work left; {units_done} units done"));
    }
    Ok(())
}

/// One slot's loop: claim a unit, do it, record it, until stopped (or idle with
/// --exit-when-idle).
fn take_units(
    args: &Args,
    name: &str,
    stop: &Arc<Interrupt>,
    say: &(impl Fn(String) + Sync),
    units_done: &AtomicU64,
    budget: &std::sync::Mutex<Option<PgBudget>>,
) -> Result<(), Failure> {
    let mut queue = args.queue.connect()?;
    let mut jobs: std::collections::HashMap<i64, Job> = std::collections::HashMap::new();
    let lease = args.lease.max(Duration::from_secs(3));
    let mut setback = FIRST_SETBACK;
    while !stop.is_requested() {
        let claimed = match queue.claim(name, lease) {
            Ok(c) => c,
            Err(e) if e.is_connection() => {
                queue = reconnect(&args.queue.queue, stop, say, e)?;
                continue;
            }
            Err(e) => return Err(super::job::queue_failure(e)),
        };
        let Some(unit) = claimed else {
            let idle = match queue.has_open_work() {
                Ok(open) => !open,
                Err(e) if e.is_connection() => false,
                Err(e) => return Err(super::job::queue_failure(e)),
            };
            if args.exit_when_idle && idle {
                return Ok(());
            }
            pause(stop, Duration::from_millis(500));
            continue;
        };
        let job = match jobs.get(&unit.job) {
            Some(j) => j.clone(),
            None => {
                let j = queue.job(unit.job).map_err(super::job::queue_failure)?;
                jobs.insert(unit.job, j.clone());
                j
            }
        };
        say(format!(
            "job {} unit {} ({} {}, {} addresses, attempt {})",
            unit.job,
            unit.id,
            unit.kind_name,
            unit.label,
            unit.addresses.len(),
            unit.attempts
        ));
        let keeper = LeaseKeeper::start(&args.queue.queue, &unit, name, lease, stop);
        let result = do_unit(args, &job, &unit, &keeper.interrupt, budget);
        let lost = keeper.finish();
        let outcome = match result {
            _ if lost => {
                say(format!("unit {}: lease lost to another worker", unit.id));
                Ok(Outcome::Done)
            }
            Ok(UnitResult::Finished(servers, stats)) => {
                setback = FIRST_SETBACK;
                match queue.complete(&unit, name, &servers, stats.as_ref()) {
                    Ok(Ended::Recorded) => {
                        units_done.fetch_add(1, Ordering::SeqCst);
                        Ok(Outcome::Done)
                    }
                    Ok(Ended::LeaseLost) => {
                        say(format!("unit {}: lease lost to another worker", unit.id));
                        Ok(Outcome::Done)
                    }
                    Err(e) => Err(e),
                }
            }
            Ok(UnitResult::Interrupted) => {
                queue.hand_back(unit.id, name).map(|()| Outcome::Stopped)
            }
            Ok(UnitResult::CannotProbe(why)) => queue
                .hand_back(unit.id, name)
                .map(|()| Outcome::CannotProbe(why)),
            Err(UnitError::NotTheUnits(why)) => {
                say(format!(
                    "unit {}: {why}; handed back, trying again in {}s",
                    unit.id,
                    setback.as_secs()
                ));
                let handed = queue.hand_back(unit.id, name).map(|()| Outcome::Done);
                // What failed (the store, a full database) is this machine's or the
                // database's: taking the unit again at once would only fail again, faster.
                pause(stop, setback);
                setback = (setback * 2).min(MAX_SETBACK);
                handed
            }
            Err(UnitError::Failed(why)) => {
                say(format!("unit {} failed: {why}", unit.id));
                queue.fail(&unit, name, &why, false).map(|()| Outcome::Done)
            }
        };
        match outcome {
            Ok(Outcome::Done) => {}
            Ok(Outcome::Stopped) => break,
            Ok(Outcome::CannotProbe(why)) => {
                return Err(Failure::other(anyhow::anyhow!(
                    "this worker cannot probe ({why}); its unit was handed back"
                )));
            }
            Err(e) if e.is_connection() => {
                // The lease runs out and another worker takes the unit over.
                queue = reconnect(&args.queue.queue, stop, say, e)?;
            }
            Err(e) => return Err(super::job::queue_failure(e)),
        }
    }
    Ok(())
}

enum UnitResult {
    /// Done; for an `mx` unit, each domain's server; the run's network work.
    Finished(Vec<(String, String)>, Option<serde_json::Value>),
    Interrupted,
    CannotProbe(String),
}

enum UnitError {
    /// Not the unit's fault (the store or the queue could not be reached): handed back
    /// without counting the attempt.
    NotTheUnits(String),
    /// The attempt counts.
    Failed(String),
}

fn do_unit(
    args: &Args,
    job: &Job,
    unit: &Unit,
    interrupt: &Arc<Interrupt>,
    budget: &std::sync::Mutex<Option<PgBudget>>,
) -> Result<UnitResult, UnitError> {
    let dir = tempfile::Builder::new()
        .prefix("prebounce-unit-")
        .tempdir()
        .map_err(|e| UnitError::NotTheUnits(format!("cannot make a temporary folder: {e}")))?;
    let list = write_unit_list(dir.path(), &unit.addresses)
        .map_err(|e| UnitError::NotTheUnits(format!("cannot write the unit's list: {e}")))?;
    let (_, mut config) = job_config(job, &args.queue.queue, list, dir.path().join("out"), false)
        .map_err(|f| UnitError::Failed(format!("{f:?}")))?;
    config.force = true;
    config.group_by = None;
    config.progress = prebounce::ProgressMode::Never;
    config.interrupt = Some(Arc::clone(interrupt));
    let Some(kind) = unit.kind else {
        return Err(UnitError::Failed(format!(
            "a unit of kind {:?}, which this prebounce does not know (a newer one queued it?)",
            unit.kind_name
        )));
    };
    if kind == UnitKind::Mx {
        return first_servers(&config, &unit.domains)
            .map(|servers| UnitResult::Finished(servers, None))
            .map_err(|e| UnitError::Failed(e.to_string()));
    }
    if let Some(smtp) = config.smtp.as_mut() {
        if let Some(proxy) = &args.proxy {
            smtp.egress = proxy.clone();
        } else if let Some(ip) = args.source_ip {
            smtp.egress = Egress::Source(ip);
        }
        if let Some(n) = args.connections {
            smtp.connections = usize::from(n);
        }
        // One budget connection for all the worker's slots: it knows the places each holds
        // (an advisory lock is re-entrant within a session), so they count as separate
        // connections.
        let shared = {
            let mut budget = budget.lock().unwrap_or_else(|e| e.into_inner());
            if budget.is_none() {
                *budget = Some(
                    PgBudget::connect(&args.queue.queue, args.per_source)
                        .map_err(UnitError::NotTheUnits)?,
                );
            }
            budget.clone()
        };
        smtp.shared_budget =
            shared.map(|b| Arc::new(b) as Arc<dyn prebounce::smtp::budget::SharedBudget>);
    }
    match prebounce::verify(&config) {
        Ok(summary) => match &summary.mailboxes_not_checked {
            Some(n) => Ok(UnitResult::CannotProbe(format!(
                "port 25 looks blocked from here: {n:?}"
            ))),
            None => Ok(UnitResult::Finished(
                Vec::new(),
                Some(serde_json::json!({ "dns": summary.dns, "smtp": summary.smtp })),
            )),
        },
        Err(prebounce::Error::Interrupted { .. }) => Ok(UnitResult::Interrupted),
        Err(e @ prebounce::Error::Store(_)) => Err(UnitError::NotTheUnits(e.to_string())),
        Err(e) => Err(UnitError::Failed(e.to_string())),
    }
}

/// Renews a unit's lease on a connection of its own; stops the unit when the worker is asked
/// to stop or the lease is lost.
struct LeaseKeeper {
    interrupt: Arc<Interrupt>,
    done: Arc<AtomicBool>,
    lost: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LeaseKeeper {
    fn start(url: &str, unit: &Unit, worker: &str, lease: Duration, stop: &Arc<Interrupt>) -> Self {
        let interrupt = Arc::new(Interrupt::default());
        let done = Arc::new(AtomicBool::new(false));
        let lost = Arc::new(AtomicBool::new(false));
        let (url, id, worker) = (url.to_owned(), unit.id, worker.to_owned());
        let (i, d, l, s) = (
            Arc::clone(&interrupt),
            Arc::clone(&done),
            Arc::clone(&lost),
            Arc::clone(stop),
        );
        let thread = std::thread::Builder::new()
            .name("prebounce-lease".into())
            .spawn(move || {
                let mut queue: Option<Queue> = None;
                let mut renewed = Instant::now();
                while !d.load(Ordering::SeqCst) {
                    if s.is_requested() {
                        i.request();
                    }
                    if renewed.elapsed() >= lease / 3 {
                        if queue.is_none() {
                            queue = Queue::connect(&url).ok();
                        }
                        match queue.as_mut().map(|q| q.renew(id, &worker, lease)) {
                            Some(Ok(true)) => renewed = Instant::now(),
                            Some(Ok(false)) => {
                                l.store(true, Ordering::SeqCst);
                                i.request();
                                return;
                            }
                            // The database is away: try again soon on a new connection.
                            Some(Err(_)) => queue = None,
                            None => {}
                        }
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
            })
            .ok();
        LeaseKeeper {
            interrupt,
            done,
            lost,
            thread,
        }
    }

    /// Stops renewing; whether the lease was lost meanwhile.
    fn finish(mut self) -> bool {
        self.done.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.lost.load(Ordering::SeqCst)
    }
}

/// Connects again, waiting out an outage of the database (a restart) until stopped.
fn reconnect(
    url: &str,
    stop: &Arc<Interrupt>,
    say: &impl Fn(String),
    first: QueueError,
) -> Result<Queue, Failure> {
    say(format!("lost the queue ({first}); reconnecting"));
    let mut wait = Duration::from_millis(200);
    loop {
        if stop.is_requested() {
            return Err(Failure::other(anyhow::anyhow!(
                "stopped while the queue was unreachable"
            )));
        }
        match Queue::connect(url) {
            Ok(q) => {
                say("reconnected".into());
                return Ok(q);
            }
            Err(_) => {
                pause(stop, wait);
                wait = (wait * 2).min(Duration::from_secs(5));
            }
        }
    }
}

fn pause(stop: &Interrupt, d: Duration) {
    let until = Instant::now() + d;
    while Instant::now() < until && !stop.is_requested() {
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// SIGTERM or Ctrl-C: finish by handing the unit back (exit 0); a second one: exit 130 at once.
fn stop_on_signals() -> anyhow::Result<Arc<Interrupt>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let stop = Arc::new(Interrupt::default());
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .context("cannot install the signal handler")?;
    let requested = Arc::clone(&stop);
    std::thread::Builder::new()
        .name("prebounce-signals".into())
        .spawn(move || {
            for _ in signals.forever() {
                if requested.is_requested() {
                    let _ = writeln!(std::io::stderr(), "prebounce worker: stopped at once");
                    std::process::exit(130);
                }
                let _ = writeln!(
                    std::io::stderr(),
                    "prebounce worker: stopping (the unit in hand is handed back)"
                );
                requested.request();
            }
        })
        .context("cannot start the signal thread")?;
    Ok(stop)
}
