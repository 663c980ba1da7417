//! `prebounce verify LIST.csv`: the main job — check every row and write the four lists,
//! summary.json and report.html.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::ValueEnum;

use prebounce::dns::DnsConfig;
use prebounce::input::{InputOptions, InputSource};
use prebounce::interrupt::Interrupt;
use prebounce::model::provider::ProviderTable;
use prebounce::preflight::ProberOptions;
use prebounce::smtp::probe::{Egress, ProbeConfig};
use prebounce::smtp::session::{Config as SessionConfig, Session, TlsPolicy};
use prebounce::store::StoreOptions;
use prebounce::verdict::Policy;
use prebounce::{Level, PreflightConfig, Priors, ProgressMode, VerifyConfig};

use super::{Failure, StoreArgs, parse_age};

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

#[derive(clap::Args, Clone)]
pub struct Args {
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
    /// Longest wait for a TCP connection to a mail server (a filtered port 25 never answers).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_smtp_timeout, help_heading = "SMTP probe (--level smtp)")]
    connect_timeout: Duration,
    /// Longest wait for one SMTP reply; the greeting may take twice as long (at most 60s more).
    /// --smtp-timeout is its older name.
    #[arg(long = "reply-timeout", visible_alias = "smtp-timeout", value_name = "DURATION", default_value = "30s", value_parser = parse_smtp_timeout, help_heading = "SMTP probe (--level smtp)")]
    reply_timeout: Duration,
    /// Connections open at once per mail server address (lowered automatically when a server
    /// refuses more). A connection serves every domain hosted there, one session each.
    #[arg(long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=64), help_heading = "SMTP probe (--level smtp)")]
    per_host: u16,
    /// Connections open at once in all.
    #[arg(long, value_name = "N", default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=4096), help_heading = "SMTP probe (--level smtp)")]
    connections: u16,
    /// Recipients of one domain per session (one MAIL FROM transaction on a connection).
    #[arg(long, value_name = "N", default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=100), help_heading = "SMTP probe (--level smtp)")]
    rcpt_per_session: u16,
    /// Recipients probed on one connection, over all its sessions, before it is closed.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=1000), help_heading = "SMTP probe (--level smtp)")]
    rcpt_per_connection: u16,
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
    /// Do not check this machine as a prober (port 25, HELO name, blocklists) before probing.
    #[arg(long, help_heading = "SMTP probe (--level smtp)")]
    no_preflight: bool,
    /// Stop (exit 1) instead of warning when the preflight finds this machine's address on a
    /// blocklist or a HELO name that does not resolve.
    #[arg(
        long,
        conflicts_with = "no_preflight",
        help_heading = "SMTP probe (--level smtp)"
    )]
    strict: bool,
    /// Preflight: a DNS blocklist zone to look the egress address up in (repeatable)
    /// [default: those of `prebounce preflight`].
    #[arg(
        long = "dnsbl",
        value_name = "ZONE",
        conflicts_with = "no_preflight",
        help_heading = "SMTP probe (--level smtp)"
    )]
    dnsbl_zones: Vec<String>,
    /// Preflight: a mail domain, host or IP[:PORT] to try port 25 at (repeatable) [default:
    /// the list's top domains' mail servers].
    #[arg(long = "probe-target", value_name = "HOST", value_parser = super::parse_probe_target, conflicts_with = "no_preflight", help_heading = "SMTP probe (--level smtp)")]
    probe_targets: Vec<prebounce::preflight::ProbeTarget>,
    /// Preflight: the public address the mail servers see when this machine is behind NAT
    /// (its reverse DNS and blocklist listings are checked).
    #[arg(
        long,
        value_name = "IP",
        conflicts_with = "no_preflight",
        help_heading = "SMTP probe (--level smtp)"
    )]
    public_ip: Option<std::net::IpAddr>,
    /// Bind every probe connection to this local address (a machine with several public
    /// addresses; the mail servers judge the one they see).
    #[arg(
        long,
        value_name = "IP",
        conflicts_with = "proxy",
        help_heading = "SMTP probe (--level smtp)"
    )]
    source_ip: Option<std::net::IpAddr>,
    /// Send the probe connections through a SOCKS5 proxy: socks5://[user:pass@]host:port
    /// (RFC 1928, username/password RFC 1929). Politeness is counted per egress and server.
    #[arg(long, value_name = "URL", value_parser = Egress::parse_proxy, help_heading = "SMTP probe (--level smtp)")]
    proxy: Option<Egress>,
    /// A provider table (TOML, `[[provider]]` entries as in src/model/providers.toml) that
    /// overrides the built-in entries by id and adds new ones.
    #[arg(long, value_name = "FILE", help_heading = "SMTP probe (--level smtp)")]
    providers: Option<std::path::PathBuf>,
    /// Tests only: the SMTP port of the mail servers.
    #[arg(long, hide = true, default_value_t = 25)]
    smtp_port: u16,
    /// Benchmark baseline only: never pipeline RCPT commands.
    #[arg(long, hide = true)]
    no_pipelining: bool,
    /// Break every figure down by the values of this column (a header name or a 1-based
    /// number), in summary.json, report.html and a table on stderr. `prebounce_provider`
    /// groups by the provider of each domain's mail server.
    #[arg(long, value_name = "NAME|N")]
    group_by: Option<String>,
    #[command(flatten)]
    store: StoreArgs,
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

pub(super) fn parse_timeout(s: &str) -> Result<Duration, String> {
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

/// --connect-timeout and --reply-timeout: at most ten minutes.
fn parse_smtp_timeout(s: &str) -> Result<Duration, String> {
    match parse_timeout(s)? {
        d if d <= Duration::from_secs(600) => Ok(d),
        _ => Err("the timeout must be at most 10m".into()),
    }
}

pub(super) fn parse_dns_server(s: &str) -> Result<SocketAddr, String> {
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

pub fn run(args: Args) -> Result<(), Failure> {
    let mut config = config(&args)?;
    config.interrupt = Some(interrupt_on_signals().map_err(Failure::other)?);
    let summary = prebounce::verify(&config)?;
    print_summary(args.quiet, args.json, &summary)
}

/// `verify`'s arguments alone, parsed from `argv` (its first item the command's name): a
/// distributed job keeps the options it was submitted with as text, and its workers and its
/// collect read them back with the same parser.
pub fn parse(argv: impl IntoIterator<Item = String>) -> Result<Args, clap::Error> {
    #[derive(clap::Parser)]
    #[command(no_binary_name = false)]
    struct Alone {
        #[command(flatten)]
        args: Args,
    }
    <Alone as clap::Parser>::try_parse_from(argv).map(|a| a.args)
}

impl Args {
    /// Options that say where and how this machine writes, not what the verdicts are: a job
    /// refuses them at submit (its collect has its own).
    pub fn local_only_options(&self) -> Vec<&'static str> {
        let mut found = Vec::new();
        if self.out.is_some() {
            found.push("--out");
        }
        if self.force {
            found.push("--force");
        }
        if self.json {
            found.push("--json");
        }
        if self.no_store {
            found.push("--no-store");
        }
        found
    }

    /// Options naming a file this machine reads (--providers, --priors): a job carries the
    /// files' contents, as its workers' machines do not have them.
    pub fn file_options(&self) -> Vec<(&'static str, PathBuf)> {
        let mut out = Vec::new();
        if let Some(p) = &self.providers {
            out.push(("--providers", p.clone()));
        }
        if let Some(p) = &self.priors {
            out.push(("--priors", p.clone()));
        }
        out
    }

    /// The explicit --store, if any.
    pub fn store_path(&self) -> Option<&std::path::Path> {
        self.store.store.as_deref()
    }
}

/// The summary on stderr (unless --quiet) and, with --json, on stdout.
pub fn print_summary(
    quiet: bool,
    json: bool,
    summary: &prebounce::output::summary::Summary,
) -> Result<(), Failure> {
    if !quiet {
        // A closed or full stderr must not turn a finished run into a failure.
        let mut text = summary.human();
        if let Some(table) = prebounce::output::table::group_table(summary) {
            text.push_str(&table);
        }
        let _ = write!(std::io::stderr(), "{text}");
    }
    if json {
        let printed = serde_json::to_string_pretty(summary)
            .context("cannot encode the summary")
            .and_then(|json| {
                let mut out = std::io::stdout().lock();
                writeln!(out, "{json}").context("cannot write to standard output")
            });
        printed.map_err(Failure::other)?;
    }
    Ok(())
}

/// The run's settings from the command line (without a signal handler: the caller installs
/// one).
pub fn config(args: &Args) -> Result<VerifyConfig, Failure> {
    let priors = match &args.priors {
        Some(path) => prebounce::input::read_priors(path).map_err(Failure::usage)?,
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
    let providers = provider_table(args).map_err(Failure::usage)?;
    let smtp = smtp_config(args, &providers).map_err(Failure::usage)?;
    let store = if args.no_store {
        None
    } else {
        Some(StoreOptions {
            path: args.store.path().map_err(Failure::usage)?,
            max_age: args.max_age,
            fresh: args.fresh,
            suppress_invalid: args.suppress_invalid,
            busy_timeout: args.store.store_wait,
            job_run: None,
        })
    };
    Ok(VerifyConfig {
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
        preflight: preflight_config(args, smtp.as_ref()),
        smtp,
        group_by: args.group_by.clone(),
        store,
        interrupt: None,
        clock: args.store.clock(),
        preload_domains: args.preload_domains,
        providers,
    })
}

/// How long a requested stop may take before the process quits regardless.
const STOP_DEADLINE: Duration = Duration::from_secs(5);

/// Ctrl-C and SIGTERM request a stop (the run ends within about a second, keeps what it
/// decided in the store and says how to resume); a second one ends the process at once.
pub fn interrupt_on_signals() -> anyhow::Result<std::sync::Arc<Interrupt>> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let interrupt = std::sync::Arc::new(Interrupt::default());
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .context("cannot install the signal handler")?;
    let requested = std::sync::Arc::clone(&interrupt);
    std::thread::Builder::new()
        .name("prebounce-signals".into())
        .spawn(move || {
            for _ in signals.forever() {
                if requested.is_requested() {
                    let _ = writeln!(std::io::stderr(), "prebounce: stopped at once");
                    std::process::exit(130);
                }
                let _ = writeln!(
                    std::io::stderr(),
                    "prebounce: stopping (saving what is decided); press Ctrl-C again to quit at once"
                );
                requested.request();
                // A safety net, not the plan: every stage stops within about a second, but
                // a wait no stage controls (opening a FIFO nobody writes to) must not hold
                // the process. The store keeps every committed transaction.
                std::thread::spawn(|| {
                    std::thread::sleep(STOP_DEADLINE);
                    let _ = writeln!(
                        std::io::stderr(),
                        "prebounce: did not stop within {} s; quit at once (the store keeps what was committed)",
                        STOP_DEADLINE.as_secs()
                    );
                    std::process::exit(130);
                });
            }
        })
        .context("cannot start the signal thread")?;
    Ok(interrupt)
}

/// The preflight's settings: the probe's HELO name, source address, port and connection
/// timeout; --probe-target, else the list's top domains, as targets; --dnsbl and --public-ip. None with --no-preflight, without a probe, and
/// through a --proxy (the checks are about this machine's own path, not the proxy's).
fn preflight_config(args: &Args, smtp: Option<&ProbeConfig>) -> Option<PreflightConfig> {
    let smtp = smtp.filter(|_| !args.no_preflight && args.proxy.is_none())?;
    Some(PreflightConfig {
        options: ProberOptions {
            helo: Some(smtp.helo.clone()),
            source_ip: args.source_ip,
            probe_targets: args.probe_targets.clone(),
            public_ip: args.public_ip,
            // As `prebounce preflight`: the default blocklists unless --dnsbl names others.
            dnsbl_zones: if args.dnsbl_zones.is_empty() {
                ProberOptions::default().dnsbl_zones
            } else {
                args.dnsbl_zones.clone()
            },
            smtp_port: smtp.port,
            connect_timeout: smtp.connect_timeout,
            allow_private: args.allow_private_mx,
        },
        strict: args.strict,
    })
}

/// The built-in provider table, with --providers' entries over it.
fn provider_table(args: &Args) -> anyhow::Result<std::sync::Arc<ProviderTable>> {
    Ok(std::sync::Arc::new(match &args.providers {
        None => ProviderTable::built_in().clone(),
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("cannot read --providers {}: {e}", path.display()))?;
            ProviderTable::built_in()
                .with_overrides(&text)
                .map_err(|e| anyhow::anyhow!("--providers {}: {e}", path.display()))?
        }
    }))
}

/// The probe's settings from the command line; None without --from (level smtp then refuses).
fn smtp_config(
    args: &Args,
    providers: &std::sync::Arc<ProviderTable>,
) -> anyhow::Result<Option<ProbeConfig>> {
    let Some(from) = &args.from else {
        return Ok(None);
    };
    let (sender, helo) =
        super::sender_and_helo(from, args.helo.as_deref(), args.allow_reserved_domains)?;
    let mail_from = format!("{}@{}", sender.local, sender.domain_ascii());
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
        connect_timeout: args.connect_timeout,
        command_timeout: args.reply_timeout,
        banner_timeout: (args.reply_timeout * 2).min(args.reply_timeout + Duration::from_secs(60)),
        per_host: usize::from(args.per_host),
        connections: usize::from(args.connections),
        rcpt_per_session: usize::from(args.rcpt_per_session),
        rcpt_per_connection: usize::from(args.rcpt_per_connection),
        greylist_wait: args.greylist_wait,
        retries: args.retries,
        port: args.smtp_port,
        pipelining: !args.no_pipelining,
        providers: std::sync::Arc::clone(providers),
        egress: match (&args.proxy, args.source_ip) {
            (Some(proxy), _) => proxy.clone(),
            (None, Some(ip)) => Egress::Source(ip),
            (None, None) => Egress::Direct,
        },
        ..ProbeConfig::new(helo, mail_from)
    }))
}
