//! Command line: argument parsing and exit codes only. Exit 0: the run completed; 2: usage or
//! input error; 1: anything else.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};

use prebounce::dns::DnsConfig;
use prebounce::input::{InputOptions, InputSource};
use prebounce::smtp::probe::ProbeConfig;
use prebounce::smtp::session::{Config as SessionConfig, Session, TlsPolicy};
use prebounce::verdict::Policy;
use prebounce::{Level, Priors, ProgressMode, VerifyConfig};

#[derive(Parser)]
#[command(
    name = "prebounce",
    version,
    about = "Tells you, before a send, which addresses of a list will bounce"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Verify a CSV list and write valid / invalid / catch-all / unknown lists plus summary.json.
    Verify(Box<VerifyArgs>),
    /// Decode an SMTP reply (e.g. "550 5.1.1 user unknown") and print, as JSON, what it says about
    /// the address: code, enhanced code, permanence, reason, verdict and recommended action.
    Explain {
        /// The reply text; a multi-line reply may use real line breaks or "\n".
        reply: String,
    },
    /// The suppression list: addresses and domains that must never be mailed. `verify` puts
    /// them in invalid.csv with reason `suppressed`, without checking them.
    Suppress {
        #[command(subcommand)]
        action: SuppressAction,
        /// The store [default: the user's cache folder, prebounce/store.sqlite3].
        #[arg(long, value_name = "PATH", global = true)]
        store: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum SuppressAction {
    /// Add an address, or a whole domain (@example.com or example.com).
    Add {
        #[arg(value_name = "ADDRESS|@DOMAIN|DOMAIN", required = true)]
        entries: Vec<String>,
        #[arg(long, value_name = "TEXT", default_value = "added by hand")]
        reason: String,
    },
    /// Remove entries.
    Remove {
        #[arg(value_name = "ADDRESS|@DOMAIN|DOMAIN", required = true)]
        entries: Vec<String>,
    },
    /// Add the entries of a CSV file: its `email` column (or its first column) and an optional
    /// `reason` column. A header row is recognised by those names.
    Import {
        #[arg(value_name = "CSV")]
        file: PathBuf,
        /// Reason for rows without one.
        #[arg(long, value_name = "TEXT", default_value = "imported")]
        reason: String,
    },
    /// Print the list as CSV (entry,reason,added_at) on standard output.
    Export,
    /// Print the list for a person.
    List,
}

#[derive(Clone, Copy, ValueEnum)]
enum LevelArg {
    Syntax,
    Dns,
    Smtp,
}

#[derive(Clone, Copy, ValueEnum)]
enum StartTlsArg {
    Never,
    Opportunistic,
    Require,
}

#[derive(Clone, Copy, ValueEnum)]
enum ProgressArg {
    Auto,
    Always,
    Never,
}

#[derive(clap::Args)]
struct VerifyArgs {
    /// A CSV file, or - for standard input.
    input: String,
    /// Output folder [default: <input-stem>.prebounce/ beside the input; ./prebounce-out/ for stdin].
    #[arg(short, long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Replace the files of an existing output folder.
    #[arg(long)]
    force: bool,
    /// The email column: a header name or a 1-based number [default: detected].
    #[arg(short, long, value_name = "NAME|N")]
    column: Option<String>,
    /// Field delimiter: , ; | tab (or \t) or any single ASCII character [default: detected].
    #[arg(long, value_name = "C", value_parser = parse_delimiter)]
    delimiter: Option<u8>,
    /// The first row is data, not a header.
    #[arg(long)]
    no_header: bool,
    /// How far to verify.
    #[arg(long, value_enum, default_value = "dns", overrides_with = "level")]
    level: LevelArg,
    /// Accept .test .example .invalid .localhost … (RFC 2606/6761) as ordinary domains.
    #[arg(long)]
    allow_reserved_domains: bool,
    /// Worker threads for the syntax checks [default: all cores].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
    /// Progress bars on stderr (auto: only on a terminal).
    #[arg(long, value_enum, default_value = "auto")]
    progress: ProgressArg,
    /// DNS server to ask instead of the system configuration, as IP or IP:PORT (repeatable).
    #[arg(long = "dns-server", value_name = "IP:PORT", value_parser = parse_dns_server)]
    dns_server: Vec<SocketAddr>,
    /// How long to wait for one DNS answer (each query is tried twice), e.g. 5s or 800ms.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_timeout)]
    dns_timeout: Duration,
    /// DNS lookups in flight at once.
    #[arg(long, value_name = "N", default_value_t = 512, value_parser = clap::value_parser!(u32).range(1..=65536))]
    dns_concurrency: u32,
    /// Benchmark baseline only: one DNS lookup per row, no sharing or caching.
    #[arg(long, hide = true)]
    dns_lookup_per_row: bool,
    /// Tests only: at level dns, read a store of at most N domains whole at the start (0:
    /// look every domain up one by one).
    #[arg(long, hide = true, value_name = "N", default_value_t = prebounce::DEFAULT_PRELOAD_DOMAINS)]
    preload_domains: usize,
    /// Treat MX hosts on loopback or private addresses as ordinary (labs, intranets).
    #[arg(long)]
    allow_private_mx: bool,
    /// MAIL FROM of the SMTP probes: an address you control (required by --level smtp).
    #[arg(
        long,
        value_name = "ADDRESS",
        help_heading = "SMTP probe (--level smtp)"
    )]
    from: Option<String>,
    /// EHLO name of the probes [default: the domain of --from].
    #[arg(long, value_name = "NAME", help_heading = "SMTP probe (--level smtp)")]
    helo: Option<String>,
    /// Longest wait for one SMTP reply; the greeting may take twice as long (at most 60s more).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = parse_smtp_timeout, help_heading = "SMTP probe (--level smtp)")]
    smtp_timeout: Duration,
    /// Sessions at once per mail server (lowered automatically when a server refuses more).
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64), help_heading = "SMTP probe (--level smtp)")]
    per_host: u16,
    /// Sessions at once in all.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=4096), help_heading = "SMTP probe (--level smtp)")]
    connections: u16,
    /// Recipients probed in one session (kept below the servers' error limits).
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=100), help_heading = "SMTP probe (--level smtp)")]
    rcpt_per_session: u16,
    /// Wait before probing a greylisted or deferred (4xx) address again.
    #[arg(long, value_name = "DURATION", default_value = "5m", value_parser = parse_wait, help_heading = "SMTP probe (--level smtp)")]
    greylist_wait: Duration,
    /// Times a deferred or interrupted address is probed again.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u32).range(0..=10), help_heading = "SMTP probe (--level smtp)")]
    retries: u32,
    /// STARTTLS: never, when offered (certificates are not checked: MTAs use self-signed
    /// ones), or required.
    #[arg(
        long,
        value_enum,
        default_value = "opportunistic",
        help_heading = "SMTP probe (--level smtp)"
    )]
    starttls: StartTlsArg,
    /// Tests only: the SMTP port of the mail servers.
    #[arg(long, hide = true, default_value_t = 25)]
    smtp_port: u16,
    /// Benchmark baseline only: never pipeline RCPT commands.
    #[arg(long, hide = true)]
    no_pipelining: bool,
    /// Break every figure down by the values of this column (a header name or a 1-based
    /// number), in summary.json, report.html and a table on stderr.
    #[arg(long, value_name = "NAME|N")]
    group_by: Option<String>,
    /// The store: cached verdicts, resume, suppression list [default: the user's cache folder,
    /// prebounce/store.sqlite3].
    #[arg(long, value_name = "PATH", help_heading = "Store")]
    store: Option<PathBuf>,
    /// Run without a store: no cache, no resume, no suppression list.
    #[arg(long, conflicts_with_all = ["store", "fresh", "suppress_invalid"], help_heading = "Store")]
    no_store: bool,
    /// Reuse stored verdicts younger than this (dns-level ones: a week at most; unknown ones:
    /// an hour at most), e.g. 30d, 12h.
    #[arg(long, value_name = "DURATION", default_value = "30d", value_parser = parse_age, help_heading = "Store")]
    max_age: Duration,
    /// Verify again everything (what is decided is still stored).
    #[arg(long, help_heading = "Store")]
    fresh: bool,
    /// Put addresses found invalid for a permanent reason (mailbox-not-found, mailbox-disabled,
    /// no-such-domain, null-mx) on the suppression list.
    #[arg(long, help_heading = "Store")]
    suppress_invalid: bool,
    /// Bounce-probability priors (TOML or JSON) overriding the built-in table.
    #[arg(long, value_name = "FILE")]
    priors: Option<PathBuf>,
    /// No summary on stderr.
    #[arg(short, long)]
    quiet: bool,
    /// Also print summary.json to stdout.
    #[arg(long)]
    json: bool,
}

fn parse_timeout(s: &str) -> Result<Duration, String> {
    match humantime::parse_duration(s) {
        Ok(d) if d >= Duration::from_millis(10) => Ok(d),
        Ok(_) => Err("a timeout must be at least 10ms".into()),
        Err(e) => Err(format!("{e}; write it like 5s or 800ms")),
    }
}

/// --greylist-wait: at most a day (a longer wait is a mistake, and would overflow the clock).
fn parse_wait(s: &str) -> Result<Duration, String> {
    match parse_timeout(s)? {
        d if d <= Duration::from_secs(24 * 3600) => Ok(d),
        _ => Err("the wait must be at most 24h".into()),
    }
}

/// --smtp-timeout: at most ten minutes per reply.
fn parse_smtp_timeout(s: &str) -> Result<Duration, String> {
    match parse_timeout(s)? {
        d if d <= Duration::from_secs(600) => Ok(d),
        _ => Err("the timeout must be at most 10m".into()),
    }
}

fn parse_age(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e}; write it like 30d, 12h or 90m"))
}

fn parse_dns_server(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    s.parse::<std::net::IpAddr>()
        .map(|ip| SocketAddr::new(ip, 53))
        .map_err(|_| {
            "expected an IP address with an optional port, such as 127.0.0.1:53 or [::1]:53".into()
        })
}

fn parse_delimiter(s: &str) -> Result<u8, String> {
    match s {
        "tab" | "\\t" | "\t" | "TAB" => Ok(b'\t'),
        _ if s.len() == 1 && s.is_ascii() && s != "\"" && s != "\n" && s != "\r" => {
            Ok(s.as_bytes()[0])
        }
        _ => Err("expected one ASCII character such as , ; | or tab".into()),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Verify(args) => verify(*args),
        Command::Explain { reply } => explain(&reply),
        Command::Suppress { action, store } => suppress(action, store),
    }
}

fn store_path(given: Option<PathBuf>) -> anyhow::Result<PathBuf> {
    given
        .or_else(prebounce::store::default_path)
        .ok_or_else(|| {
            anyhow::anyhow!(
                "no cache folder is known for this user: pass --store <PATH> or --no-store"
            )
        })
}

/// Ctrl-C and SIGTERM set the flag (the run stops politely and says how to resume); a second
/// one while it stops ends the process at once.
fn interrupt_flag() -> anyhow::Result<std::sync::Arc<std::sync::atomic::AtomicBool>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let flag = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    for sig in [SIGINT, SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(sig, 130, std::sync::Arc::clone(&flag))
            .context("cannot install the signal handler")?;
        signal_hook::flag::register(sig, std::sync::Arc::clone(&flag))
            .context("cannot install the signal handler")?;
    }
    Ok(flag)
}

fn suppress(action: SuppressAction, store: Option<PathBuf>) -> ExitCode {
    match suppress_inner(action, store) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let code = match e.downcast_ref::<prebounce::store::StoreError>() {
                Some(
                    prebounce::store::StoreError::Other { .. }
                    | prebounce::store::StoreError::Folder { .. },
                ) => 1,
                _ => 2,
            };
            fail(code, &e)
        }
    }
}

fn suppress_inner(action: SuppressAction, store: Option<PathBuf>) -> anyhow::Result<()> {
    use prebounce::store::{Store, date_of, suppression_entry};
    let mut store = Store::open(&store_path(store)?)?;
    let mut out = std::io::stdout().lock();
    match action {
        SuppressAction::Add { entries, reason } => {
            let entries = entries
                .iter()
                .map(|e| Ok((suppression_entry(e)?, reason.clone())))
                .collect::<Result<Vec<_>, prebounce::store::StoreError>>()?;
            let added = store.suppress(&entries)?;
            eprintln!(
                "prebounce: {added} added, {} already listed (reason updated)",
                entries.len() - added
            );
        }
        SuppressAction::Remove { entries } => {
            for e in entries {
                let entry = suppression_entry(&e)?;
                if !store.unsuppress(&entry)? {
                    anyhow::bail!("{entry} is not on the suppression list");
                }
            }
        }
        SuppressAction::Import { file, reason } => {
            let entries = read_suppression_csv(&file, &reason)?;
            let added = store.suppress(&entries)?;
            eprintln!(
                "prebounce: {} entries read, {added} added, {} already listed (reason updated)",
                entries.len(),
                entries.len() - added
            );
        }
        SuppressAction::Export => {
            let mut w = csv::Writer::from_writer(&mut out);
            w.write_record(["entry", "reason", "added_at"])?;
            for s in store.suppressions()? {
                w.write_record([s.entry.as_str(), &s.reason, &date_of(s.added_at)])?;
            }
            w.flush().context("cannot write to standard output")?;
        }
        SuppressAction::List => {
            let list = store.suppressions()?;
            for s in &list {
                writeln!(out, "{}  {}  {}", date_of(s.added_at), s.entry, s.reason)
                    .context("cannot write to standard output")?;
            }
            eprintln!(
                "prebounce: {} entries in {}",
                list.len(),
                store.path().display()
            );
        }
    }
    Ok(())
}

/// Entries of a suppression CSV: the `email` (or `entry`, `address`, `domain`) column, else
/// the first; the `reason` column when there is one. Every entry must be usable.
fn read_suppression_csv(
    path: &std::path::Path,
    default_reason: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_path(path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut rows = r.records();
    let Some(first) = rows.next() else {
        return Ok(Vec::new());
    };
    let first = first.with_context(|| format!("cannot read {}", path.display()))?;
    let names: Vec<String> = first.iter().map(|c| c.trim().to_lowercase()).collect();
    let col = names
        .iter()
        .position(|n| ["email", "e-mail", "entry", "address", "domain"].contains(&n.as_str()));
    let reason_col = names.iter().position(|n| n == "reason");
    let header = col.is_some() || reason_col.is_some();
    let col = col.unwrap_or(0);
    let mut out = Vec::new();
    let mut add = |rec: &csv::StringRecord, line: u64| -> anyhow::Result<()> {
        let Some(cell) = rec.get(col).filter(|c| !c.trim().is_empty()) else {
            return Ok(());
        };
        let entry = prebounce::store::suppression_entry(cell)
            .with_context(|| format!("{} line {line}", path.display()))?;
        let reason = reason_col
            .and_then(|i| rec.get(i))
            .filter(|r| !r.trim().is_empty())
            .unwrap_or(default_reason);
        out.push((entry, reason.to_owned()));
        Ok(())
    };
    if !header {
        add(&first, 1)?;
    }
    for (i, rec) in rows.enumerate() {
        let rec = rec.with_context(|| format!("cannot read {}", path.display()))?;
        add(&rec, i as u64 + 2)?;
    }
    Ok(out)
}

fn verify(args: VerifyArgs) -> ExitCode {
    let priors = match &args.priors {
        Some(path) => match Priors::from_file(path) {
            Ok(p) => p,
            Err(e) => return fail(2, &anyhow::Error::new(e)),
        },
        None => Priors::default(),
    };
    let input = if args.input == "-" {
        InputSource::Stdin
    } else {
        InputSource::File(PathBuf::from(&args.input))
    };
    let out_dir = args
        .out
        .clone()
        .unwrap_or_else(|| prebounce::output::default_out_dir(&input));
    let smtp = match smtp_config(&args) {
        Ok(s) => s,
        Err(e) => return fail(2, &e),
    };
    let store = if args.no_store {
        None
    } else {
        match store_path(args.store.clone()) {
            Ok(path) => Some(prebounce::store::StoreOptions {
                path,
                max_age: args.max_age,
                fresh: args.fresh,
                suppress_invalid: args.suppress_invalid,
            }),
            Err(e) => return fail(2, &e),
        }
    };
    let interrupt = match interrupt_flag() {
        Ok(f) => f,
        Err(e) => return fail(1, &e),
    };
    let config = VerifyConfig {
        input,
        input_options: InputOptions {
            column: args.column.clone(),
            delimiter: args.delimiter,
            no_header: args.no_header,
        },
        out_dir,
        force: args.force,
        level: match args.level {
            LevelArg::Syntax => Level::Syntax,
            LevelArg::Dns => Level::Dns,
            LevelArg::Smtp => Level::Smtp,
        },
        syntax: prebounce::syntax::SyntaxOptions {
            allow_reserved_domains: args.allow_reserved_domains,
        },
        threads: args.threads.map(usize::from),
        progress: match args.progress {
            ProgressArg::Auto => ProgressMode::Auto,
            ProgressArg::Always => ProgressMode::Always,
            ProgressArg::Never => ProgressMode::Never,
        },
        priors,
        dns: DnsConfig {
            servers: args.dns_server.clone(),
            timeout: args.dns_timeout,
            concurrency: args.dns_concurrency as usize,
            share_lookups: !args.dns_lookup_per_row,
            ..DnsConfig::default()
        },
        policy: Policy {
            allow_private_mx: args.allow_private_mx,
        },
        smtp,
        group_by: args.group_by.clone(),
        store,
        interrupt: Some(interrupt),
        preload_domains: args.preload_domains,
    };
    let summary = match prebounce::verify(&config) {
        Ok(s) => s,
        Err(e) => {
            let code = e.exit_code();
            return fail(code, &anyhow::Error::new(e));
        }
    };
    if !args.quiet {
        // A closed or full stderr must not turn a finished run into a failure.
        let mut text = summary.human();
        if let Some(table) = prebounce::output::table::group_table(&summary) {
            text.push_str(&table);
        }
        let _ = write!(std::io::stderr(), "{text}");
    }
    if args.json {
        let printed = serde_json::to_string_pretty(&summary)
            .context("cannot encode the summary")
            .and_then(|json| {
                let mut out = std::io::stdout().lock();
                writeln!(out, "{json}").context("cannot write to standard output")
            });
        if let Err(e) = printed {
            return fail(1, &e);
        }
    }
    ExitCode::SUCCESS
}

/// The probe's settings from the command line; None without --from (level smtp then refuses).
fn smtp_config(args: &VerifyArgs) -> anyhow::Result<Option<ProbeConfig>> {
    let Some(from) = &args.from else {
        return Ok(None);
    };
    let opts = prebounce::syntax::SyntaxOptions {
        allow_reserved_domains: args.allow_reserved_domains,
    };
    let sender = prebounce::syntax::check(from, opts)
        .map_err(|e| anyhow::anyhow!("--from {from:?} is not a usable address: {e}"))?;
    let mail_from = format!("{}@{}", sender.local, sender.domain_ascii());
    let helo = args
        .helo
        .clone()
        .unwrap_or_else(|| sender.domain_ascii().to_owned());
    // The session refuses a HELO name or sender that could never be sent: say so before any
    // input is read.
    Session::new(
        SessionConfig::new(helo.clone(), mail_from.clone()),
        Vec::new(),
    )
    .map_err(|e| anyhow::anyhow!("cannot probe: {e}"))?;
    Ok(Some(ProbeConfig {
        tls: match args.starttls {
            StartTlsArg::Never => TlsPolicy::Never,
            StartTlsArg::Opportunistic => TlsPolicy::Opportunistic,
            StartTlsArg::Require => TlsPolicy::Require,
        },
        command_timeout: args.smtp_timeout,
        banner_timeout: (args.smtp_timeout * 2).min(args.smtp_timeout + Duration::from_secs(60)),
        per_host: usize::from(args.per_host),
        connections: usize::from(args.connections),
        rcpt_per_session: usize::from(args.rcpt_per_session),
        greylist_wait: args.greylist_wait,
        retries: args.retries,
        port: args.smtp_port,
        pipelining: !args.no_pipelining,
        ..ProbeConfig::new(helo, mail_from)
    }))
}

fn explain(reply: &str) -> ExitCode {
    // Shells make it hard to type a line break: accept a literal "\n" as one.
    let text = reply.replace("\\n", "\n");
    match prebounce::smtp::reply::explain(&text) {
        Ok(explained) => match serde_json::to_string_pretty(&explained) {
            Ok(json) => {
                let _ = writeln!(std::io::stdout(), "{json}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(1, &anyhow::Error::new(e)),
        },
        Err(e) => fail(2, &anyhow::anyhow!("cannot decode the reply: {e}")),
    }
}

fn fail(code: u8, err: &anyhow::Error) -> ExitCode {
    // Our errors carry their cause in their own message: print it once.
    let _ = writeln!(std::io::stderr(), "prebounce: error: {err}");
    ExitCode::from(code)
}
