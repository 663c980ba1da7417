//! The preflight of a --level smtp run (before any row is read): the prober checks of
//! `preflight::prober` (port 25, HELO name, blocklists) against the list's own top domains'
//! mail servers. Port 25 filtered or refused at every target (two at least) blocks the prober (the run
//! finishes at level dns, as when the first mail servers all fail during the run); a
//! blocklist listing or a HELO name that does not resolve is a warning, or with `--strict`
//! the end of the run.

use std::collections::HashMap;
use std::io::Write as _;

use crate::input::{InputReader, InputSource};
use crate::preflight::{CheckStatus, ProbeTarget, ProberReport};
use crate::smtp::egress::{BlockedBy, ConnectOutcome, EgressBlock, Failures};
use crate::smtp::probe::Prober;
use crate::{Error, Level, VerifyConfig};

use super::dns::DnsStage;

/// The rows read for the list's top domains: the start of the list stands for it.
const SAMPLE_ROWS: usize = 2000;

/// How many of the list's top domains the port 25 check connects to.
const TOP_DOMAINS: usize = 3;

/// Targets that must have been tried, and all failed, before the preflight calls port 25
/// blocked: one failing target is as likely a dead mail server (a list of one domain whose
/// primary MX is down, with a working backup) as a blocked port. Runs with fewer are left to
/// the SMTP stage's own judge.
const MIN_TARGETS_TO_BLOCK: usize = 2;

/// Runs the preflight when the run probes and did not turn it off; its report for
/// summary.json. Blocks `prober` when port 25 is unreachable from here.
pub(super) fn preflight(
    config: &VerifyConfig,
    dns: Option<&DnsStage>,
    prober: Option<&Prober>,
) -> Result<Option<ProberReport>, Error> {
    let (Some(settings), Some(dns), Some(prober), Level::Smtp) =
        (&config.preflight, dns, prober, config.level)
    else {
        return Ok(None);
    };
    let mut options = settings.options.clone();
    if options.probe_targets.is_empty() {
        // The list's own mail servers; a list that cannot be read twice (stdin, a pipe) or
        // has no address in its first rows keeps the check's default targets.
        let top = top_domains(config);
        if !top.is_empty() {
            options.probe_targets = top.into_iter().map(ProbeTarget::Host).collect();
        }
    }
    let report = dns
        .runtime
        .block_on(crate::preflight::prober::check(&options, &dns.resolver));
    if let Some(failures) = port25_failures(&report) {
        let block = EgressBlock {
            by: BlockedBy::Preflight,
            failures,
        };
        let _ = writeln!(std::io::stderr(), "prebounce: {}", block.message());
        prober.block_egress(block);
    } else {
        // Too few targets to conclude: what they showed counts with the run's first servers
        // (one that answered rules a block out).
        for (ip, outcome) in connection_outcomes(&report) {
            prober.note_connection(ip, outcome);
        }
    }
    let problems = stopping_problems(&report);
    for problem in &problems {
        let _ = writeln!(std::io::stderr(), "prebounce: warning: {problem}");
    }
    if settings.strict && !problems.is_empty() {
        return Err(Error::Preflight(format!(
            "--strict: stopped before probing ({}); fix it, or run without --strict",
            problems.join("; ")
        )));
    }
    Ok(Some(report))
}

/// The targets that failed when port 25 is blocked at every one tried (at least
/// [`MIN_TARGETS_TO_BLOCK`]).
fn port25_failures(report: &ProberReport) -> Option<Failures> {
    use crate::preflight::Port25Result;
    report.port25_blocked()?;
    let count = |r| report.port25.iter().filter(|p| p.result == Some(r)).count();
    let (timed_out, refused) = (count(Port25Result::Filtered), count(Port25Result::Refused));
    if timed_out + refused < MIN_TARGETS_TO_BLOCK {
        return None;
    }
    Some(Failures {
        servers: timed_out + refused,
        refused,
        timed_out,
    })
}

/// The port 25 check's connections as the SMTP stage's judge counts them: a TCP connection
/// made (a greeting or not) is `Connected`.
fn connection_outcomes(report: &ProberReport) -> Vec<(std::net::IpAddr, ConnectOutcome)> {
    use crate::preflight::Port25Result;
    report
        .port25
        .iter()
        .filter_map(|p| {
            let ip = p.address?.ip();
            let outcome = match (p.local, p.result?) {
                (Some(_), _) | (None, Port25Result::Open) => ConnectOutcome::Connected,
                (None, Port25Result::Refused) => ConnectOutcome::Refused,
                (None, Port25Result::Filtered) => ConnectOutcome::TimedOut,
            };
            Some((ip, outcome))
        })
        .collect()
}

/// What the probes would suffer from: a blocklist listing of this machine's address (its
/// probes get prober-blocked answers) and a HELO name that does not resolve (many servers
/// refuse it). One line each, with what to do.
fn stopping_problems(report: &ProberReport) -> Vec<String> {
    report
        .checks
        .iter()
        .filter(|c| {
            let listed = c.id.starts_with("dnsbl:")
                && c.field("listed") == Some(&serde_json::Value::Bool(true));
            let helo_fails = c.id == "helo" && c.status == CheckStatus::Fail;
            listed || helo_fails
        })
        .map(|c| match &c.advice {
            Some(advice) => format!("preflight {}: {}: {advice}", c.id, c.detail),
            None => format!("preflight {}: {}", c.id, c.detail),
        })
        .collect()
}

/// The most frequent domains among the first rows of a list file (regular files only: a pipe
/// read here would lose its rows), most frequent first, ties in order of appearance.
fn top_domains(config: &VerifyConfig) -> Vec<String> {
    let InputSource::File(path) = &config.input else {
        return Vec::new();
    };
    if !std::fs::metadata(path).is_ok_and(|m| m.is_file()) {
        return Vec::new();
    }
    let Ok((mut reader, dialect)) = InputReader::open(&config.input, &config.input_options) else {
        return Vec::new();
    };
    let Ok(Some(chunk)) = reader.next_chunk(SAMPLE_ROWS) else {
        return Vec::new();
    };
    let cells = (0..chunk.len()).filter_map(|r| chunk.field_text(r, dialect.email_column));
    let domains = cells.filter_map(|cell| {
        let text = cell.ok()?;
        let address = crate::syntax::check(text, config.syntax).ok()?;
        Some(address.domain_ascii().to_owned())
    });
    rank(domains, TOP_DOMAINS)
}

/// The `n` most frequent of `domains`, ties in order of first appearance.
fn rank(domains: impl Iterator<Item = String>, n: usize) -> Vec<String> {
    let mut counts: HashMap<String, (usize, usize)> = HashMap::new();
    for (i, domain) in domains.enumerate() {
        counts.entry(domain).or_insert((0, i)).0 += 1;
    }
    let mut ranked: Vec<(String, (usize, usize))> = counts.into_iter().collect();
    ranked.sort_by(|a, b| b.1.0.cmp(&a.1.0).then(a.1.1.cmp(&b.1.1)));
    ranked.into_iter().take(n).map(|(d, _)| d).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preflight::Check;
    use crate::preflight::prober::{Port25Probe, Port25Result};

    #[test]
    fn the_most_frequent_domains_first_ties_in_order_of_appearance() {
        let list = [
            "b.org", "a.org", "c.org", "a.org", "c.org", "d.org", "a.org",
        ];
        let top = rank(list.iter().map(|d| d.to_string()), 3);
        assert_eq!(top, ["a.org", "c.org", "b.org"]);
        assert!(rank(std::iter::empty(), 3).is_empty());
    }

    fn probe(result: Option<Port25Result>) -> Port25Probe {
        Port25Probe {
            target: "mx.example.org".into(),
            address: None,
            result,
            detail: String::new(),
            local: None,
        }
    }

    fn report(checks: Vec<Check>, port25: Vec<Port25Probe>) -> ProberReport {
        ProberReport {
            egress_ip: None,
            checks,
            port25,
        }
    }

    #[test]
    fn port_25_blocked_at_every_target_counts_how() {
        let blocked = report(
            Vec::new(),
            vec![
                probe(Some(Port25Result::Filtered)),
                probe(Some(Port25Result::Refused)),
                probe(None),
            ],
        );
        assert_eq!(
            port25_failures(&blocked),
            Some(Failures {
                servers: 2,
                refused: 1,
                timed_out: 1
            })
        );
        let one_open = report(
            Vec::new(),
            vec![
                probe(Some(Port25Result::Filtered)),
                probe(Some(Port25Result::Open)),
            ],
        );
        assert_eq!(port25_failures(&one_open), None);
        // No target could be tried: nothing is known.
        assert_eq!(
            port25_failures(&report(Vec::new(), vec![probe(None)])),
            None
        );
        // One target tried: as likely one dead server as a blocked port.
        let one = report(
            Vec::new(),
            vec![probe(Some(Port25Result::Refused)), probe(None)],
        );
        assert_eq!(port25_failures(&one), None);
    }

    #[test]
    fn a_connection_made_counts_as_connected_whatever_came_after() {
        let at = |last: u8, result, local: bool| Port25Probe {
            target: "mx.example.org".into(),
            address: Some(std::net::SocketAddr::from(([192, 0, 2, last], 25))),
            result: Some(result),
            detail: String::new(),
            local: local.then(|| std::net::IpAddr::from([10, 0, 0, 1])),
        };
        let probes = vec![
            at(1, Port25Result::Open, true),
            // Connected, then closed without a greeting.
            at(2, Port25Result::Refused, true),
            at(3, Port25Result::Refused, false),
            at(4, Port25Result::Filtered, false),
            probe(None),
        ];
        let outcomes: Vec<ConnectOutcome> = connection_outcomes(&report(Vec::new(), probes))
            .into_iter()
            .map(|(_, o)| o)
            .collect();
        assert_eq!(
            outcomes,
            [
                ConnectOutcome::Connected,
                ConnectOutcome::Connected,
                ConnectOutcome::Refused,
                ConnectOutcome::TimedOut
            ]
        );
    }

    #[test]
    fn a_listing_and_an_unresolvable_helo_are_the_problems_that_stop_a_strict_run() {
        let checks = vec![
            Check::fail("dnsbl:bl.example", "127.0.0.1 is listed (127.0.0.2)")
                .with("listed", true)
                .advise("request delisting"),
            Check::warn("dnsbl:rate.example", "the list could not be used")
                .with("listed", serde_json::Value::Null),
            Check::pass("dnsbl:ok.example", "not listed").with("listed", false),
            Check::fail("helo", "probe.example does not resolve"),
            Check::fail("ptr", "no PTR record"),
        ];
        let problems = stopping_problems(&report(checks, Vec::new()));
        assert_eq!(
            problems,
            [
                "preflight dnsbl:bl.example: 127.0.0.1 is listed (127.0.0.2): request delisting",
                "preflight helo: probe.example does not resolve",
            ]
        );
        let fine = report(vec![Check::pass("helo", "resolves")], Vec::new());
        assert!(stopping_problems(&fine).is_empty());
    }
}
