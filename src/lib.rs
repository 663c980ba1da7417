//! prebounce: tells a sender, before a send, which addresses of a list will bounce.
//!
//! The pipeline (see `pipeline`): CSV rows → syntax (rayon, pure) → DNS (tokio, cached per
//! domain) → SMTP (tokio, RCPT probes, at --level smtp) → verdict (pure) → forecast (pure) → the
//! four lists and summary.json.
//!
//! # Layout
//!
//! Imports run one way, from the I/O at the top to the pure core at the bottom
//! (`tests/layout.rs` checks that they form no cycle and that the pure modules touch no I/O):
//!
//! - `pipeline`: one file per stage and the short `run` that wires them (I/O: threads, channels).
//! - `input`: CSV reading, delimiter/header/column detection, unreadable rows (I/O).
//! - `dns`: the resolver and the per-domain MX lookup with its run-wide cache (I/O).
//! - `smtp`: `reply` (decoding, pure), `session` (protocol state machine, pure), `plan`
//!   (what to probe next: batches, retries, canaries; pure), `egress` (whether this machine
//!   reaches port 25, from the first servers' connection outcomes; pure), `probe` (sockets,
//!   TLS, politeness: I/O).
//! - `store`: the SQLite store (I/O) and `store::policy`, the pure rules of what a stored
//!   verdict answers.
//! - `output`: the four lists, summary.json, report.html, the terminal table.
//! - `preflight`: before probing, can this machine probe (egress, reverse DNS, HELO,
//!   blocklists, port 25: I/O) and is the sender set up (MX, SPF, DKIM, DMARC); the record
//!   parsers and what answers mean are its pure submodules.
//! - `queue`: the distributed mode — jobs, units and the politeness budget shared by workers
//!   in PostgreSQL (I/O), with the pure cutting and grouping of units.
//! - `grouping`: the bounded tallies behind `--group-by`.
//! - `bounce`: bounce messages, mboxes and ESP event JSON → one record per recipient, classified
//!   by the reply decoder of `smtp::reply` (pure).
//! - `verdict`: evidence → status, reason, detail — the one place a reason is decided (pure).
//! - `forecast`: priors, bounce probabilities, bands, intervals (pure).
//! - `syntax`: address rules, IDNA, flags, typo suggestions (pure).
//! - `clock`: the run's wall clock, fixed by tests through configuration (pure).
//! - `model`: the shared vocabulary — statuses, the reason table, levels, evidence (pure; imports
//!   no other module).

pub mod bounce;
pub mod calibration;
pub mod clock;
pub mod dns;
pub mod forecast;
mod grouping;
pub mod input;
pub mod interrupt;
pub mod model;
pub mod output;
mod pipeline;
pub mod preflight;
pub mod queue;
pub mod smtp;
pub mod store;
pub mod syntax;
pub mod verdict;

use std::path::PathBuf;

pub use clock::Clock;
pub use forecast::Priors;
pub use model::Level;
pub use output::summary::Summary;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProgressMode {
    /// Only when stderr is a terminal.
    #[default]
    Auto,
    Always,
    Never,
}

/// [`VerifyConfig::preload_domains`] by default.
pub const DEFAULT_PRELOAD_DOMAINS: usize = 500_000;

/// Everything one `verify` run needs.
#[derive(Debug, Clone)]
pub struct VerifyConfig {
    pub input: input::InputSource,
    pub input_options: input::InputOptions,
    pub out_dir: PathBuf,
    pub force: bool,
    pub level: Level,
    pub syntax: syntax::SyntaxOptions,
    /// Worker threads for the syntax stage (None: one per core).
    pub threads: Option<usize>,
    pub progress: ProgressMode,
    pub priors: Priors,
    /// Resolver settings (used from `Level::Dns` on).
    pub dns: dns::DnsConfig,
    pub policy: verdict::Policy,
    /// The probe's settings; required at `Level::Smtp`.
    pub smtp: Option<smtp::probe::ProbeConfig>,
    /// At `Level::Smtp`, the prober checks run before any row is probed (None: --no-preflight).
    pub preflight: Option<PreflightConfig>,
    /// Break every figure down by the values of this column (a header name or a 1-based
    /// number, like `input_options.column`).
    pub group_by: Option<String>,
    /// The store (cache, resume, suppression list); None: --no-store.
    pub store: Option<store::StoreOptions>,
    /// Requested (by a SIGINT/SIGTERM handler) to stop the run within about a second: no
    /// more input is read, lookups and sessions in flight are abandoned (sessions after a
    /// short grace), what is decided is committed to the store, and the run ends with
    /// [`Error::Interrupted`].
    pub interrupt: Option<std::sync::Arc<interrupt::Interrupt>>,
    /// At level dns, a store holding at most this many domains is read whole when the run
    /// starts (one scan); a larger one is looked up domain by domain. Tests set 0 to cover the
    /// lookups one by one.
    pub preload_domains: usize,
    /// The wall clock the store's timestamps and ages are read from (tests fix it).
    pub clock: Clock,
    /// Which provider runs each domain's mail servers (the `prebounce_provider` column and
    /// summary.json's `providers`; the SMTP probe's rules are in `smtp`'s copy).
    pub providers: std::sync::Arc<model::provider::ProviderTable>,
}

impl VerifyConfig {
    /// The command line's defaults: level dns with the system resolver, detected input shape,
    /// built-in priors, no progress bar.
    pub fn new(input: input::InputSource, out_dir: PathBuf) -> Self {
        VerifyConfig {
            input,
            input_options: input::InputOptions::default(),
            out_dir,
            force: false,
            level: Level::Dns,
            syntax: syntax::SyntaxOptions::default(),
            threads: None,
            progress: ProgressMode::Never,
            priors: Priors::default(),
            dns: dns::DnsConfig::default(),
            policy: verdict::Policy::default(),
            smtp: None,
            preflight: None,
            group_by: None,
            store: None,
            interrupt: None,
            preload_domains: DEFAULT_PRELOAD_DOMAINS,
            clock: Clock::System,
            providers: std::sync::Arc::new(model::provider::ProviderTable::built_in().clone()),
        }
    }
}

/// The preflight of a --level smtp run: port 25, HELO name, blocklists.
#[derive(Debug, Clone)]
pub struct PreflightConfig {
    /// Empty `probe_targets`: the list's top domains' mail servers.
    pub options: preflight::ProberOptions,
    /// A blocklist listing or a HELO name that does not resolve stops the run (exit 1)
    /// instead of a warning.
    pub strict: bool,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error(transparent)]
    Input(#[from] input::InputError),
    #[error(transparent)]
    Output(#[from] output::OutputError),
    #[error(transparent)]
    Dns(#[from] dns::DnsSetupError),
    #[error(
        "--level smtp needs --from <ADDRESS>: the MAIL FROM of the probes, an address you control"
    )]
    SmtpNeedsSender,
    #[error("cannot probe: {0}")]
    Smtp(#[from] smtp::probe::ProbeSetupError),
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("{}", interrupted_message(store.as_deref(), *saved))]
    Interrupted {
        /// The store's path (None: --no-store).
        store: Option<String>,
        /// Verdicts of this run committed to it.
        saved: u64,
    },
    #[error("{0}")]
    Preflight(String),
    #[error("internal error: {0}")]
    Internal(String),
}

fn interrupted_message(store: Option<&str>, saved: u64) -> String {
    match store {
        Some(path) => format!(
            "interrupted; {saved} verdicts of this run are saved in the store {path}: run the same command again to resume"
        ),
        None => "interrupted; nothing was saved (--no-store): the next run starts over".into(),
    }
}

impl Error {
    /// 2 for what the user can fix by changing the command or the input, 1 for the rest.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Input(_) | Error::SmtpNeedsSender | Error::Smtp(_) | Error::Dns(_) => 2,
            Error::Output(
                output::OutputError::Exists(_)
                | output::OutputError::NotADirectory(_)
                | output::OutputError::NotOwned(_),
            ) => 2,
            Error::Store(e) => e.exit_code(),
            // 128 + SIGINT, as a shell reports a run stopped by Ctrl-C.
            Error::Interrupted { .. } => 130,
            Error::Output(_) | Error::Preflight(_) | Error::Internal(_) => 1,
        }
    }
}

/// Run a verification and write its outputs; returns the summary that was written.
pub fn verify(config: &VerifyConfig) -> Result<Summary, Error> {
    if config.level == Level::Smtp && config.smtp.is_none() {
        return Err(Error::SmtpNeedsSender);
    }
    pipeline::run(config)
}
