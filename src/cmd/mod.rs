//! One file per command (as xsv does): each holds its arguments, their parsers and its `run`.
//! A command returns `Err(Failure)` carrying the exit code; `main` prints it. Exit 0: the
//! command completed; 2: the user can fix it (usage, input, a damaged or locked store); 1: the
//! rest. The codes of the library's errors come from `prebounce::Error::exit_code` and
//! `StoreError::exit_code`, so each is decided in one place.

pub mod bounces;
pub mod collect;
pub mod explain;
mod job;
pub mod preflight;
pub mod status;
pub mod submit;
pub mod suppress;
pub mod verify;
pub mod worker;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use prebounce::Clock;
use prebounce::store::{StoreAccess, StoreError};

/// A command's failure: what to say and the exit code.
#[derive(Debug)]
pub struct Failure {
    code: u8,
    error: anyhow::Error,
}

impl Failure {
    /// Something the user can fix in the command or its input: exit 2.
    pub fn usage(error: impl Into<anyhow::Error>) -> Self {
        Failure {
            code: 2,
            error: error.into(),
        }
    }

    /// A failure of the machine (a write, a signal handler): exit 1.
    pub fn other(error: impl Into<anyhow::Error>) -> Self {
        Failure {
            code: 1,
            error: error.into(),
        }
    }

    /// An error that may hold a store error (through context): the store's code, else 2.
    pub fn of_store_command(error: anyhow::Error) -> Self {
        let code = error
            .downcast_ref::<StoreError>()
            .map_or(2, StoreError::exit_code);
        Failure { code, error }
    }

    /// Prints `prebounce: error: …` on stderr and gives the exit code.
    pub fn report(self) -> ExitCode {
        // Our errors carry their cause in their own message: print it once.
        let _ = writeln!(std::io::stderr(), "prebounce: error: {}", self.error);
        ExitCode::from(self.code)
    }
}

impl From<prebounce::Error> for Failure {
    fn from(e: prebounce::Error) -> Self {
        Failure {
            code: e.exit_code(),
            error: e.into(),
        }
    }
}

/// The store's options shared by the commands that open it.
#[derive(clap::Args, Clone)]
pub struct StoreArgs {
    /// The store: cached verdicts, resume, suppression list. An SQLite file, or a PostgreSQL
    /// database shared by a team's machines (postgres://user:password@host:port/database)
    /// [default: the user's cache folder, prebounce/store.sqlite3].
    #[arg(long, value_name = "PATH|URL", global = true, help_heading = "Store")]
    pub store: Option<PathBuf>,
    /// How long to wait for another prebounce run holding the store's write lock, e.g. 30s or
    /// 2m; then the command stops with exit code 2.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_store_wait, global = true, help_heading = "Store")]
    pub store_wait: Duration,
    /// Tests only: the store's clock, in unix seconds (ages and timestamps are read from it).
    #[arg(long, value_name = "UNIX_SECONDS", hide = true, global = true)]
    pub clock: Option<i64>,
}

impl StoreArgs {
    /// The store's path: --store, else the user's cache folder.
    pub fn path(&self) -> anyhow::Result<PathBuf> {
        self.store
            .clone()
            .or_else(prebounce::store::default_path)
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "no cache folder is known for this user: pass --store <PATH> or --no-store"
                )
            })
    }

    pub fn clock(&self) -> Clock {
        self.clock.map_or(Clock::System, Clock::Fixed)
    }

    pub fn access(&self) -> StoreAccess {
        StoreAccess {
            busy_timeout: self.store_wait,
            clock: self.clock(),
        }
    }
}

/// The probes' sender (`--from`, checked like a list's address) and HELO name (`--helo`, else
/// the sender's domain), for `verify --level smtp` and `preflight`.
pub fn sender_and_helo(
    from: &str,
    helo: Option<&str>,
    allow_reserved_domains: bool,
) -> anyhow::Result<(prebounce::syntax::Address, String)> {
    let opts = prebounce::syntax::SyntaxOptions {
        allow_reserved_domains,
    };
    let sender = prebounce::syntax::check(from, opts)
        .map_err(|e| anyhow::anyhow!("--from {from:?} is not a usable address: {e}"))?;
    let helo = helo.map_or_else(|| sender.domain_ascii().to_owned(), str::to_owned);
    Ok((sender, helo))
}

/// `--probe-target`: a mail domain, host or IP[:PORT].
pub fn parse_probe_target(s: &str) -> Result<prebounce::preflight::ProbeTarget, String> {
    s.parse()
}

/// A duration such as 30d, 12h or 90m.
pub fn parse_age(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e}; write it like 30d, 12h or 90m"))
}

/// --store-wait: at most a day (SQLite counts the wait in milliseconds in an int, and a longer
/// wait is a mistake).
fn parse_store_wait(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d <= Duration::from_secs(24 * 3600) => Ok(d),
        Ok(_) => Err("the wait must be at most 24h".into()),
        Err(e) => Err(format!("{e}; write it like 30s or 2m")),
    }
}
