//! `prebounce preflight --from you@yourdomain`: before probing, can this machine probe, and is
//! the sender domain set up to send? Two tables (or one JSON object) of checks; exit 1 when one
//! failed.

use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use comfy_table::{ContentArrangement, Table, presets};

use prebounce::dns::{DnsConfig, DnsResolver};
use prebounce::preflight::prober::{self, ProberOptions};
use prebounce::preflight::sender::{self, SenderOptions};
use prebounce::preflight::{Check, CheckStatus, PreflightReport, ProbeTarget};

use super::Failure;
use super::verify::{parse_dns_server, parse_timeout};

#[derive(clap::Args)]
pub struct Args {
    /// The sender address of your mailings (and of `verify --level smtp`'s probes): its domain
    /// is checked, and this machine as a prober.
    #[arg(long, value_name = "ADDRESS", required_unless_present = "domain")]
    from: Option<String>,
    /// Check this sender domain instead of --from's; without --from nothing is probed.
    #[arg(long, value_name = "DOMAIN")]
    domain: Option<String>,
    /// The EHLO name the probes use [default: the domain of --from].
    #[arg(long, requires = "from", value_name = "NAME")]
    helo: Option<String>,
    /// A DKIM selector of the domain to check at <S>._domainkey.<domain> (repeatable).
    #[arg(long = "dkim-selector", value_name = "S")]
    dkim_selectors: Vec<String>,
    /// Bind the probe connections to this local address; the checks run for it.
    #[arg(long, requires = "from", value_name = "IP")]
    source_ip: Option<IpAddr>,
    /// The address the internet sees (behind NAT): reverse DNS and blocklists are checked for it.
    #[arg(long, requires = "from", value_name = "IP")]
    public_ip: Option<IpAddr>,
    /// A DNS blocklist zone to look the address up in (repeatable) [default: zen.spamhaus.org,
    /// bl.spamcop.net, psbl.surriel.com].
    #[arg(long = "dnsbl", value_name = "ZONE", requires = "from")]
    dnsbl_zones: Vec<String>,
    /// A mail domain, host or IP[:PORT] to try port 25 at (repeatable) [default: the MX of
    /// gmail.com, outlook.com, yahoo.com].
    #[arg(long = "probe-target", value_name = "HOST", value_parser = super::parse_probe_target, requires = "from")]
    probe_targets: Vec<ProbeTarget>,
    /// How long to wait for a port 25 connection, and then for the greeting.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_timeout, requires = "from")]
    connect_timeout: Duration,
    /// DNS server to ask instead of the system configuration, as IP or IP:PORT (repeatable).
    #[arg(long = "dns-server", value_name = "IP:PORT", value_parser = parse_dns_server)]
    dns_server: Vec<SocketAddr>,
    /// How long to wait for one DNS answer (each query is tried twice), e.g. 5s or 800ms.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_timeout)]
    dns_timeout: Duration,
    /// Accept .test .example .invalid .localhost … (RFC 2606/6761) as ordinary domains.
    #[arg(long)]
    allow_reserved_domains: bool,
    /// Treat loopback and private addresses as ordinary (labs, intranets): MX hosts there
    /// count, and such an egress address gets the PTR, FCrDNS and blocklist checks.
    #[arg(long)]
    allow_private_mx: bool,
    /// Print the result as one JSON object on stdout (the tables still go to stderr).
    #[arg(long)]
    json: bool,
    /// Tests only: the SMTP port of probe targets given by name.
    #[arg(long, hide = true, default_value_t = 25)]
    smtp_port: u16,
}

/// The sender domain (ASCII) from --domain or --from, checked like a list's domains.
fn sender_domain(args: &Args) -> anyhow::Result<String> {
    let opts = prebounce::syntax::SyntaxOptions {
        allow_reserved_domains: args.allow_reserved_domains,
    };
    match (&args.domain, &args.from) {
        (Some(domain), _) => {
            let address = format!("postmaster@{}", domain.trim().trim_end_matches('.'));
            let checked = prebounce::syntax::check(&address, opts)
                .map_err(|e| anyhow::anyhow!("--domain {domain:?} is not a usable domain: {e}"))?;
            Ok(checked.domain_ascii().to_owned())
        }
        (None, Some(from)) => {
            let checked = prebounce::syntax::check(from, opts)
                .map_err(|e| anyhow::anyhow!("--from {from:?} is not a usable address: {e}"))?;
            Ok(checked.domain_ascii().to_owned())
        }
        (None, None) => anyhow::bail!("give --from ADDRESS or --domain DOMAIN"),
    }
}

/// The prober's options; None without --from (then nothing is probed).
fn prober_options(args: &Args) -> anyhow::Result<Option<ProberOptions>> {
    let Some(from) = &args.from else {
        return Ok(None);
    };
    let (_, helo) =
        super::sender_and_helo(from, args.helo.as_deref(), args.allow_reserved_domains)?;
    let mut options = ProberOptions {
        helo: Some(helo),
        source_ip: args.source_ip,
        public_ip: args.public_ip,
        smtp_port: args.smtp_port,
        connect_timeout: args.connect_timeout,
        allow_private: args.allow_private_mx,
        ..ProberOptions::default()
    };
    if !args.dnsbl_zones.is_empty() {
        options.dnsbl_zones = args.dnsbl_zones.clone();
    }
    if !args.probe_targets.is_empty() {
        options.probe_targets = args.probe_targets.clone();
    }
    Ok(Some(options))
}

pub fn run(args: Args) -> Result<(), Failure> {
    let domain = sender_domain(&args).map_err(Failure::usage)?;
    let prober_options = prober_options(&args).map_err(Failure::usage)?;
    let sender_options = SenderOptions {
        domain,
        dkim_selectors: args.dkim_selectors.clone(),
        allow_private_mx: args.allow_private_mx,
    };
    let dns_config = DnsConfig {
        servers: args.dns_server.clone(),
        timeout: args.dns_timeout,
        private_addresses_usable: args.allow_private_mx,
        ..DnsConfig::default()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .map_err(Failure::other)?;
    let report = runtime.block_on(async {
        let dns = DnsResolver::new(&dns_config)?;
        // The prober part first: the bulk-sender verdict reads its reverse DNS.
        let prober = match &prober_options {
            Some(options) => Some(prober::check(options, &dns).await),
            None => None,
        };
        let sender = sender::check(&sender_options, prober.as_ref(), &dns).await;
        Ok::<_, prebounce::dns::DnsSetupError>(PreflightReport { sender, prober })
    });
    let report = report.map_err(|e| Failure::usage(prebounce::Error::from(e)))?;
    let _ = write!(std::io::stderr(), "{}", human(&report));
    if args.json {
        let printed = serde_json::to_string_pretty(&report)
            .context("cannot encode the report")
            .and_then(|json| {
                let mut out = std::io::stdout().lock();
                writeln!(out, "{json}").context("cannot write to standard output")
            });
        printed.map_err(Failure::other)?;
    }
    if report.failed() {
        let failed: Vec<&str> = report
            .checks()
            .filter(|c| c.status == CheckStatus::Fail)
            .map(|c| c.id.as_str())
            .collect();
        return Err(Failure::other(anyhow::anyhow!(
            "preflight failed: {}",
            failed.join(", ")
        )));
    }
    Ok(())
}

/// Both parts as tables, and a closing line.
fn human(report: &PreflightReport) -> String {
    let mut text = format!(
        "sender domain {}\n{}\n",
        report.sender.domain,
        table(&report.sender.checks)
    );
    match &report.prober {
        Some(prober) => {
            let egress = prober
                .egress_ip
                .map_or("unknown".to_owned(), |ip| ip.to_string());
            text.push_str(&format!(
                "this machine as a prober (egress address {egress})\n{}\n",
                table(&prober.checks)
            ));
        }
        None => text.push_str("this machine as a prober: not checked (give --from)\n"),
    }
    let all = report.checks().collect::<Vec<_>>();
    let count = |s| all.iter().filter(|c| c.status == s).count();
    text.push_str(&format!(
        "preflight: {} pass, {} warn, {} fail, {} skip{}\n",
        count(CheckStatus::Pass),
        count(CheckStatus::Warn),
        count(CheckStatus::Fail),
        count(CheckStatus::Skip),
        if report.failed() {
            " — fix the failures before sending or probing"
        } else {
            ""
        }
    ));
    text
}

fn table(checks: &[Check]) -> String {
    let mut table = Table::new();
    table
        .load_style(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_width(120)
        .set_header(["check", "status", "evidence", "what to do"]);
    for check in checks {
        let evidence = clean(&check.detail);
        table.add_row([
            check.id.clone(),
            check.status.as_str().to_owned(),
            evidence,
            check.advice.as_deref().map(clean).unwrap_or_default(),
        ]);
    }
    table.to_string()
}

/// DNS data is untrusted: control characters would move the cursor (line breaks are ours).
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() && c != '\n' { '?' } else { c })
        .collect()
}
