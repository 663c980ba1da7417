//! Port 25 unreachable, for real: iptables rules (CI runs as root; lab/up installs iptables)
//! filter or refuse the connections to a dozen mail servers, and `verify --level smtp` over
//! their domains must stop probing and finish at level dns: every row with its DNS verdict,
//! one message on stderr, the reason in summary.json and report.html, and no smtp-level
//! verdict in the store. Found during the run (`--no-preflight`: the first servers all fail to
//! connect) and by the preflight (every one of the list's top domains' servers fails). And a
//! list where a few servers are dead is probed as usual; `--strict` stops on a HELO name that
//! does not resolve.
//!
//! The rules are scoped to addresses only these tests use (127.77.15.0/24 filtered,
//! 127.77.16.0/24 refused; their domains are under portblock.test in lab/dns/smtp-zones.conf),
//! so the other lab suites' traffic never meets them, and each is removed when its test ends,
//! panicking or not.

mod common;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use common::*;

const DNS: &str = "127.77.0.1";

fn iptables(args: &[&str]) -> Output {
    // -w: tests running at once wait for the xtables lock instead of failing.
    Command::new("iptables")
        .arg("-w")
        .args(args)
        .output()
        .expect("run iptables (lab/up installs it; the lab tests run as root)")
}

/// One OUTPUT rule for port 25 of `net`, in place while it lives.
struct PortRule {
    spec: Vec<String>,
}

impl PortRule {
    fn add(net: &str, target: &[&str]) -> Self {
        let mut spec: Vec<String> = ["-d", net, "-p", "tcp", "--dport", "25", "-j"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        spec.extend(target.iter().map(|s| s.to_string()));
        let rule = PortRule { spec };
        // A rule a killed earlier run left behind: removed first, so exactly one is in place.
        while rule.run("-D").status.success() {}
        let added = rule.run("-I");
        assert!(
            added.status.success(),
            "cannot add the iptables rule {:?} (the lab tests run as root): {}",
            rule.spec,
            String::from_utf8_lossy(&added.stderr)
        );
        rule
    }

    fn run(&self, action: &str) -> Output {
        let mut args = vec![action, "OUTPUT"];
        args.extend(self.spec.iter().map(String::as_str));
        iptables(&args)
    }
}

impl Drop for PortRule {
    fn drop(&mut self) {
        let removed = self.run("-D");
        if !removed.status.success() && !std::thread::panicking() {
            panic!(
                "cannot remove the iptables rule {:?}: {}",
                self.spec,
                String::from_utf8_lossy(&removed.stderr)
            );
        }
    }
}

/// Listeners on port 25 of `net`.1 … `net`.12 (the kernel completes the handshakes): without
/// the rule, a connection there gets through, so the rule alone makes it fail.
fn listeners(net: [u8; 3]) -> Vec<TcpListener> {
    (1..=12)
        .map(|i| {
            let ip = Ipv4Addr::new(net[0], net[1], net[2], i);
            TcpListener::bind((ip, 25)).unwrap_or_else(|e| panic!("listen on {ip}:25: {e}"))
        })
        .collect()
}

fn connects(ip: [u8; 4]) -> bool {
    let addr = SocketAddr::from((ip, 25));
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
}

/// Two mailboxes at each of the twelve `kind` domains, and two domains that take no mail.
fn blocked_list(dir: &Path, kind: &str) -> std::path::PathBuf {
    let mut emails = Vec::new();
    for i in 1..=12 {
        emails.push(format!("alice@{kind}{i:02}.portblock.test"));
        emails.push(format!("bob@{kind}{i:02}.portblock.test"));
    }
    emails.push("carol@nosuch.portblock.test".into());
    emails.push("dave@nomail.smtp.test".into());
    write_list(dir, "list.csv", &emails)
}

/// email → (list, reason) of a run's outputs.
fn verdicts(out: &Path) -> BTreeMap<String, (String, String)> {
    let mut found = BTreeMap::new();
    for list in LISTS {
        let emails = column(out, list, "email");
        let reasons = column(out, list, "prebounce_reason");
        for (email, reason) in emails.into_iter().zip(reasons) {
            found.insert(email, (list.to_owned(), reason));
        }
    }
    found
}

fn verify(list: &Path, out: &Path, level: &str, extra: &[&str]) -> Output {
    let o = run_verify(list, out, level, extra);
    assert!(o.status.success(), "{}", stderr(&o));
    o
}

/// `verify` as above, whatever its exit code.
fn run_verify(list: &Path, out: &Path, level: &str, extra: &[&str]) -> Output {
    let sender = fresh_sender("egress");
    let mut args = vec![
        "verify",
        list.to_str().expect("utf-8 path"),
        "--out",
        out.to_str().expect("utf-8 path"),
        "--force",
        "--level",
        level,
        "--from",
        &sender,
        "--dns-server",
        DNS,
        "--dns-timeout",
        "2s",
        "--allow-reserved-domains",
        "--allow-private-mx",
        "--progress",
        "never",
    ];
    args.extend_from_slice(extra);
    run(&args, b"")
}

/// Stored verdicts (address key, level) of the list's mailboxes at domains that take mail.
fn stored_at_blocked_domains(store: &Path, kind: &str) -> Vec<(String, i64)> {
    let conn = rusqlite::Connection::open(store).expect("open the store");
    let mut stmt = conn
        .prepare("SELECT key, level FROM addresses WHERE key LIKE ?1 ORDER BY key")
        .expect("query the store");
    stmt.query_map([format!("%@{kind}%.portblock.test")], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .expect("read the store")
    .map(|r| r.expect("a stored row"))
    .collect()
}

/// The runs over `kind`'s domains with port 25 behind `target`, without and with the
/// preflight: the DNS verdicts, the message, the summary field and report section, nothing
/// smtp-level in the store. Returns each run's summary (without the preflight first).
fn finishes_at_level_dns(kind: &str, target: &[&str]) -> [serde_json::Value; 2] {
    lab_up();
    let net = match kind {
        "filtered" => [127, 77, 15],
        _ => [127, 77, 16],
    };
    let _listening = listeners(net);
    assert!(
        connects([net[0], net[1], net[2], 1]),
        "without the rule the mail server address is reachable"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let list = blocked_list(dir.path(), kind);
    let dns_out = dir.path().join("dns");
    verify(&list, &dns_out, "dns", &["--no-store"]);

    let rule = PortRule::add(&format!("{}.{}.{}.0/24", net[0], net[1], net[2]), target);
    let during = one_blocked_run(dir.path(), &list, &dns_out, kind, &["--no-preflight"]);
    let before = one_blocked_run(dir.path(), &list, &dns_out, kind, &[]);
    drop(rule);
    assert_eq!(
        during["mailboxes_not_checked"]["cause"], "connections-failed",
        "{during}"
    );
    assert!(during.get("preflight").is_none(), "{during}");
    assert_eq!(
        before["mailboxes_not_checked"]["cause"], "preflight-port25",
        "{before}"
    );
    let port25 = before["preflight"]["prober"]["checks"]
        .as_array()
        .expect("the preflight's checks")
        .iter()
        .find(|c| c["id"] == "port25")
        .expect("a port25 check")
        .clone();
    assert_eq!(port25["status"], "fail", "{port25}");
    // The list's own top domains were the targets.
    for t in port25["targets"].as_array().expect("targets") {
        let target = t["target"].as_str().expect("a target");
        assert!(target.ends_with(".portblock.test"), "{port25}");
    }
    // The report shows the preflight's checks when the run did one.
    let readiness = r#"<section id="readiness">"#;
    assert!(report_html(&dir.path().join("before")).contains(readiness));
    assert!(!report_html(&dir.path().join("during")).contains(readiness));
    [during, before]
}

/// One --level smtp run (with `extra`) under the rule: what every such run must show; its
/// summary.
fn one_blocked_run(
    dir: &Path,
    list: &Path,
    dns_out: &Path,
    kind: &str,
    extra: &[&str],
) -> serde_json::Value {
    let name = if extra.is_empty() { "before" } else { "during" };
    let store = dir.join(format!("{name}.sqlite3"));
    let out = dir.join(name);
    let mut args = vec![
        "--connect-timeout",
        "3s",
        "--store",
        store.to_str().expect("utf-8 path"),
    ];
    args.extend_from_slice(extra);
    let o = verify(list, &out, "smtp", &args);

    // Every row as the DNS level left it: none is an smtp-timeout or smtp-unreachable.
    let at_dns = verdicts(dns_out);
    assert_eq!(verdicts(&out), at_dns);
    assert!(
        at_dns.values().any(|(_, r)| r == "domain-accepts-mail")
            && at_dns.values().any(|(_, r)| r == "no-such-domain"),
        "the list has domains that take mail and one that does not exist: {at_dns:?}"
    );

    let err = stderr(&o);
    assert_eq!(
        err.matches("this machine cannot reach port 25").count(),
        1,
        "one message: {err}"
    );

    let summary = summary(&out);
    assert_eq!(summary["level"], "smtp");
    let not_checked = summary["mailboxes_not_checked"].clone();
    assert_eq!(not_checked["level_reached"], "dns", "{summary}");
    let message = not_checked["message"].as_str().expect("a message");
    assert!(err.contains(message), "stderr says what summary.json says");

    let html = report_html(&out);
    assert!(html.contains(r#"<section id="mailboxes-not-checked""#));
    assert!(html.contains(&format!(
        r#"data-cause="{}""#,
        not_checked["cause"].as_str().expect("a cause")
    )));

    // Rows finished at level dns are not smtp-level verdicts in the store.
    let stored = stored_at_blocked_domains(&store, kind);
    assert!(
        stored.iter().all(|(_, level)| *level < 2),
        "smtp-level verdicts stored for unprobed mailboxes: {stored:?}"
    );
    summary
}

/// `mailboxes_not_checked`'s counts: at least `least` servers failed, all by `how`.
fn failed_by(summary: &serde_json::Value, how: &str, least: u64) {
    let n = &summary["mailboxes_not_checked"];
    let failed = n["servers_failed"].as_u64().expect("a count");
    assert!(failed >= least, "{n}");
    assert_eq!(n[how], failed, "{n}");
}

#[test]
fn port_25_filtered_by_a_drop_rule_finishes_at_level_dns() {
    let [during, before] = finishes_at_level_dns("filtered", &["DROP"]);
    failed_by(&during, "timed_out", 8);
    failed_by(&before, "timed_out", 1);
}

#[test]
fn port_25_refused_by_a_reset_rule_finishes_at_level_dns() {
    let [during, before] =
        finishes_at_level_dns("refused", &["REJECT", "--reject-with", "tcp-reset"]);
    failed_by(&during, "refused", 8);
    failed_by(&before, "refused", 1);
}

#[test]
fn strict_stops_before_probing_on_a_helo_name_that_does_not_resolve() {
    lab_up();
    let dir = tempfile::tempdir().expect("tempdir");
    let list = write_list(
        dir.path(),
        "list.csv",
        &["alice@dead01.portblock.test".into()],
    );
    let out = dir.path().join("out");
    let mut args = vec![
        "--helo",
        "nowhere.portblock.test",
        "--no-store",
        // The dead server is not asked again.
        "--retries",
        "0",
    ];
    let warned = verify(&list, &out, "smtp", &args);
    assert!(
        stderr(&warned)
            .contains("warning: preflight helo: nowhere.portblock.test does not resolve"),
        "{}",
        stderr(&warned)
    );
    let checks = summary(&out)["preflight"]["prober"]["checks"].clone();
    let helo = checks
        .as_array()
        .expect("the preflight's checks")
        .iter()
        .find(|c| c["id"] == "helo")
        .expect("a helo check");
    assert_eq!(helo["status"], "fail", "{helo}");
    args.push("--strict");
    let stopped = run_verify(&list, &out, "smtp", &args);
    assert_eq!(stopped.status.code(), Some(1), "{}", stderr(&stopped));
    assert!(
        stderr(&stopped).contains("--strict: stopped before probing"),
        "{}",
        stderr(&stopped)
    );
}

#[test]
fn a_blocklisted_public_address_warns_and_strict_stops() {
    lab_up();
    let dir = tempfile::tempdir().expect("tempdir");
    let list = write_list(dir.path(), "list.csv", &["alice@ok.smtp.test".into()]);
    let out = dir.path().join("out");
    // 198.51.100.2 is listed on the lab's blocklist zone (lab/dns/preflight-zones.conf).
    let mut args = vec![
        "--no-store",
        "--dnsbl",
        "bl.pf-prober.test",
        "--public-ip",
        "198.51.100.2",
        "--probe-target",
        "127.77.3.1:25",
        "--probe-target",
        "127.77.3.11:25",
    ];
    let warned = verify(&list, &out, "smtp", &args);
    let checks = summary(&out)["preflight"]["prober"]["checks"].clone();
    let checks = checks.as_array().expect("the preflight's checks");
    let ids: Vec<&str> = checks.iter().filter_map(|c| c["id"].as_str()).collect();
    assert!(ids.contains(&"dnsbl:bl.pf-prober.test"), "{ids:?}");
    assert!(!ids.iter().any(|id| id.contains("spamhaus")), "{ids:?}");
    let listing = checks
        .iter()
        .find(|c| c["id"] == "dnsbl:bl.pf-prober.test")
        .expect("the blocklist check");
    assert_eq!(listing["listed"], true, "{listing}");
    let port25 = checks.iter().find(|c| c["id"] == "port25").expect("port25");
    assert_eq!(port25["status"], "pass", "{port25}");
    assert!(
        stderr(&warned).contains("warning: preflight"),
        "{}",
        stderr(&warned)
    );
    args.push("--strict");
    let stopped = run_verify(&list, &out, "smtp", &args);
    assert_eq!(stopped.status.code(), Some(1), "{}", stderr(&stopped));
}

#[test]
fn a_few_dead_servers_among_working_ones_are_probed_as_usual() {
    lab_up();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut emails: Vec<String> = (1..=7)
        .map(|i| format!("alice@dead{i:02}.portblock.test"))
        .collect();
    emails.push("alice@ok.smtp.test".into());
    emails.push("nobody@ok.smtp.test".into());
    let list = write_list(dir.path(), "list.csv", &emails);
    let out = dir.path().join("out");
    // Short waits: the dead servers are retried after them.
    let o = verify(
        &list,
        &out,
        "smtp",
        &["--no-store", "--greylist-wait", "2s", "--no-preflight"],
    );
    assert!(
        !stderr(&o).contains("cannot reach port 25"),
        "{}",
        stderr(&o)
    );
    let summary = summary(&out);
    assert!(summary.get("mailboxes_not_checked").is_none(), "{summary}");
    let found = verdicts(&out);
    for i in 1..=7 {
        let dead = format!("alice@dead{i:02}.portblock.test");
        assert_eq!(
            found[&dead],
            ("unknown.csv".to_owned(), "smtp-unreachable".to_owned()),
            "{dead}"
        );
    }
    assert_eq!(
        found["alice@ok.smtp.test"],
        ("valid.csv".to_owned(), "mailbox-accepted".to_owned())
    );
    assert_eq!(
        found["nobody@ok.smtp.test"],
        ("invalid.csv".to_owned(), "mailbox-not-found".to_owned())
    );
}
