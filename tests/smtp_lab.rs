//! The end-to-end suite against the interop lab: the `prebounce` binary at `--level smtp` (and
//! `--level dns`) on tests/data/smtp_lab.csv, whose rows carry their expected status and reason,
//! against real Postfix listeners, postgrey and unbound started by lab/up (lab/SMTP.md has the
//! table). Besides every row's verdict it asserts, from the servers' own logs, that no DATA was
//! ever sent, that the null-MX domain's A record was never contacted, and that DNS queries and
//! SMTP sessions stay within the bounds the DNS and SMTP stages promise.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use common::*;

const DNS: &str = "127.77.0.1";
const CASES: &str = "tests/data/smtp_lab.csv";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

struct Case {
    statuses: Vec<String>,
    reasons: Vec<String>,
    dns_status: String,
    dns_reason: String,
}

fn cases() -> BTreeMap<String, Case> {
    let text = std::fs::read_to_string(root().join(CASES)).expect("read the lab cases");
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    reader
        .records()
        .map(|r| {
            let r = r.expect("a well-formed case row");
            let alts = |s: &str| s.split('|').map(str::to_owned).collect::<Vec<_>>();
            (
                r[0].to_owned(),
                Case {
                    statuses: alts(&r[1]),
                    reasons: alts(&r[2]),
                    dns_status: r[3].to_owned(),
                    dns_reason: r[4].to_owned(),
                },
            )
        })
        .collect()
}

/// email → (list it landed in, reason, detail), and every row's count.
fn results(out: &Path) -> (HashMap<String, (String, String, String)>, usize) {
    let mut found = HashMap::new();
    let mut rows = 0;
    for list in ["valid", "invalid", "catch-all", "unknown"] {
        let path = out.join(format!("{list}.csv"));
        let mut reader = csv::Reader::from_path(&path).expect("read an output list");
        let headers = reader.headers().expect("header").clone();
        let col = |name: &str| headers.iter().position(|h| h == name).expect(name);
        let (email, reason, detail) = (
            col("email"),
            col("prebounce_reason"),
            col("prebounce_detail"),
        );
        for r in reader.records() {
            let r = r.expect("a well-formed output row");
            rows += 1;
            let previous = found.insert(
                r[email].to_owned(),
                (list.to_owned(), r[reason].to_owned(), r[detail].to_owned()),
            );
            assert!(previous.is_none(), "{} is in two lists", &r[email]);
        }
    }
    (found, rows)
}

fn run_verify(level: &str, extra: &[&str]) -> (tempfile::TempDir, PathBuf, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("out");
    let input = root().join(CASES);
    let sender = fresh_sender("probe");
    let mut args = vec![
        "verify",
        input.to_str().expect("utf-8 path"),
        "--out",
        out.to_str().expect("utf-8 path"),
        "--level",
        level,
        "--dns-server",
        DNS,
        "--dns-timeout",
        "2s",
        "--allow-reserved-domains",
        "--allow-private-mx",
        "--from",
        &sender,
        "--progress",
        "never",
    ];
    args.extend_from_slice(extra);
    let o = run(&args, b"");
    assert!(o.status.success(), "{}", stderr(&o));
    (dir, out, sender)
}

/// (sessions, RCPT commands) as smtpd logged them: its disconnect line counts every command
/// of the session, `rcpt=accepted/sent` (or `rcpt=sent` when all were accepted).
fn server_counts(log: &str) -> (u64, u64) {
    let (mut sessions, mut rcpts) = (0, 0);
    for line in log.lines().filter(|l| l.contains("]: disconnect from")) {
        sessions += 1;
        rcpts += u64::from(smtpd_count(line, "rcpt").1);
    }
    (sessions, rcpts)
}

fn domain_of(email: &str) -> &str {
    email.rsplit_once('@').map_or("", |(_, d)| d)
}

#[test]
fn every_lab_case_at_level_smtp_and_what_the_servers_saw() {
    let _turn = lab_turn();
    lab_up();
    let cases = cases();
    let maillog = lab_dir().join("postfix/maillog");
    let dnslog = lab_dir().join("unbound.log");
    let (mail_from, dns_from) = (offset(&maillog), offset(&dnslog));

    // The SMTP stage's own sessions and DNS queries are counted: without the preflight's
    // (its port 25 connections and blocklist queries; tests/egress_lab.rs covers it).
    let (_dir, out, sender) = run_verify("smtp", &["--greylist-wait", "6s", "--no-preflight"]);

    // Every row once, in the list its case expects, with the expected reason.
    let (found, rows) = results(&out);
    assert_eq!(rows, cases.len(), "rows in = rows out");
    let mut wrong = Vec::new();
    for (email, case) in &cases {
        let (list, reason, detail) = found.get(email).unwrap_or_else(|| panic!("{email} lost"));
        if !case.statuses.contains(list) || !case.reasons.contains(reason) {
            wrong.push(format!(
                "{email}: got {list} {reason} ({detail}); expected {} {}",
                case.statuses.join("|"),
                case.reasons.join("|")
            ));
        }
    }
    assert!(wrong.is_empty(), "wrong verdicts:\n{}", wrong.join("\n"));

    let summary = summary(&out);
    let smtp = &summary["smtp"];
    let sessions = smtp["sessions"].as_u64().expect("smtp.sessions");
    let rcpts = smtp["rcpt_commands"].as_u64().expect("smtp.rcpt_commands");
    assert!(
        smtp["deferred"].as_u64().expect("smtp.deferred") > 0,
        "greylisting deferred some"
    );
    assert!(
        smtp["hosts_given_up"].as_u64().expect("hosts_given_up") >= 2,
        "the dead MX hosts"
    );

    // What the servers logged for this run. Postfix logs through postlogd, after the fact:
    // give the log up to 10 s to show as many finished sessions as prebounce opened.
    let mut log = read_since(&maillog, mail_from);
    for _ in 0..100 {
        let (server_sessions, _) = server_counts(&log);
        if server_sessions >= sessions {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        log = read_since(&maillog, mail_from);
    }
    let ours: Vec<&str> = log.lines().filter(|l| l.contains(&sender)).collect();
    assert!(!ours.is_empty(), "the maillog shows the probes");
    for line in log.lines() {
        // A DATA command shows in smtpd's disconnect summary as data=N, and a queued message
        // as a queue id line; neither may appear.
        assert!(!line.contains(" data="), "DATA was sent: {line}");
        assert!(
            !line.contains("message-id="),
            "a message was queued: {line}"
        );
        assert!(
            !line.contains("postfix/nullmx-sentinel/"),
            "the null-MX domain's A record was contacted: {line}"
        );
    }
    // The STARTTLS listener's sessions were upgraded (opportunistic TLS, self-signed cert):
    // smtpd's disconnect line counts the STARTTLS command it accepted.
    let tls_sessions: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("postfix/tls/smtpd") && l.contains("]: disconnect from"))
        .collect();
    assert!(
        !tls_sessions.is_empty(),
        "no session on the STARTTLS listener"
    );
    for l in &tls_sessions {
        assert!(l.contains(" starttls=1 "), "not upgraded: {l}");
    }
    let (server_sessions, server_rcpts) = server_counts(&log);
    assert_eq!(
        server_rcpts, rcpts,
        "RCPT commands: prebounce's count = Postfix's"
    );
    assert_eq!(
        server_sessions, sessions,
        "sessions: prebounce's count = Postfix's"
    );

    // Sessions within the SMTP stage's bound for listeners that neither defer nor limit:
    // at most ceil(addresses / 20) per domain plus one for the canary's first session and
    // one more per 9 refusals (sessions end before Postfix's error limits).
    let normal_domains = ["ok.smtp.test", "backup.smtp.test", "implicit.smtp.test"];
    let mut bound = 0;
    for d in normal_domains {
        let n = cases.keys().filter(|e| domain_of(e) == d).count();
        let rejected = cases
            .iter()
            .filter(|(e, c)| domain_of(e) == d && c.statuses == ["invalid"])
            .count();
        bound += n.div_ceil(20) + 1 + rejected / 9;
    }
    let bench_domains: std::collections::BTreeSet<&str> = cases
        .keys()
        .map(|e| domain_of(e))
        .filter(|d| d.ends_with(".smtpbench.test"))
        .collect();
    bound += bench_domains.len() * 2;
    let normal_sessions = log
        .lines()
        .filter(|l| l.contains("postfix/normal/smtpd") && l.contains("]: connect from"))
        .count();
    assert!(
        normal_sessions <= bound,
        "{normal_sessions} sessions on the normal listener; the bound is {bound}"
    );
    // The 20-error listener never got to disconnect us.
    assert!(
        !log.contains("too many errors"),
        "a session ran into Postfix's error limit"
    );

    // DNS: one MX lookup per domain and a few address lookups per MX host, not per row.
    let queries = read_since(&dnslog, dns_from)
        .lines()
        .filter(|l| l.contains(" info: ") && !l.contains(&format!("info: {DNS} ")))
        .filter(|l| l.contains(" IN"))
        .count();
    let domains = cases
        .keys()
        .map(|e| domain_of(e))
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    assert!(
        queries <= domains * 4,
        "{queries} DNS queries for {domains} domains"
    );
}

#[test]
fn the_same_list_at_level_dns() {
    let _turn = lab_turn();
    lab_up();
    let cases = cases();
    let (_dir, out, _) = run_verify("dns", &[]);
    let (found, rows) = results(&out);
    assert_eq!(rows, cases.len());
    for (email, case) in &cases {
        let (list, reason, detail) = &found[email];
        assert_eq!(
            (list, reason),
            (&case.dns_status, &case.dns_reason),
            "{email}: {detail}"
        );
    }
    assert!(summary(&out)["smtp"].is_null(), "no SMTP at level dns");
}

#[test]
fn starttls_required_only_where_offered() {
    let _turn = lab_turn();
    lab_up();
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().join("tls.csv");
    std::fs::write(&input, "email\nalice@tls.smtp.test\nalice@ok.smtp.test\n").expect("write");
    let out = dir.path().join("out");
    let sender = fresh_sender("probe");
    let o = run(
        &[
            "verify",
            input.to_str().expect("utf-8 path"),
            "--out",
            out.to_str().expect("utf-8 path"),
            "--level",
            "smtp",
            "--starttls",
            "require",
            "--dns-server",
            DNS,
            "--allow-reserved-domains",
            "--allow-private-mx",
            "--from",
            &sender,
            "--greylist-wait",
            "2s",
        ],
        b"",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let (found, rows) = results(&out);
    assert_eq!(rows, 2);
    let (list, reason, _) = &found["alice@tls.smtp.test"];
    assert_eq!(
        (list.as_str(), reason.as_str()),
        ("valid", "mailbox-accepted")
    );
    // The normal listener offers no STARTTLS: with TLS required nothing is asked there.
    let (list, reason, detail) = &found["alice@ok.smtp.test"];
    assert_eq!(
        (list.as_str(), reason.as_str()),
        ("unknown", "smtp-unreachable"),
        "{detail}"
    );
    assert!(detail.contains("STARTTLS"), "{detail}");
}

/// One connection serves every domain at its server (issue #16): four domains behind the lab's
/// delay proxy (one MX host, Postfix behind it) share connections, each domain in its own
/// transaction. Postfix's log shows no connection took more than 9 refusals and that
/// connections carried several domains; the proxy saw at most 4 open at once.
#[test]
fn one_connection_serves_several_domains_within_the_refusal_cap() {
    lab_up();
    let _turn = lab_turn();
    let dir = tempfile::tempdir().expect("a folder");
    let mut emails = Vec::new();
    for d in 1..=4 {
        emails.extend((1..=20).map(|i| format!("user{i:04}@bench0{d}.smtpbench.test")));
        emails.extend((1..=10).map(|i| format!("nobody{i:02}@bench0{d}.smtpbench.test")));
    }
    let list = write_list(dir.path(), "list.csv", &emails);
    let out = dir.path().join("out");
    let sender = fresh_sender("reuse");
    let maillog = lab_dir().join("postfix/maillog");
    let proxylog = lab_dir().join("smtp-delay-proxy.log");
    let (log_from, proxy_from) = (offset(&maillog), offset(&proxylog));
    verify_in_lab(&list, &out, Some(&sender), &[]);
    let mut valid = column(&out, "valid.csv", "email");
    let mut invalid = column(&out, "invalid.csv", "email");
    valid.sort();
    invalid.sort();
    let (mut want_valid, mut want_invalid): (Vec<String>, Vec<String>) =
        emails.iter().cloned().partition(|e| e.starts_with("user"));
    want_valid.sort();
    want_invalid.sort();
    assert_eq!((valid, invalid), (want_valid, want_invalid));
    let s = summary(&out);
    assert!(
        s["smtp"]["sessions_on_kept_connections"].as_u64() > Some(0),
        "{}",
        s["smtp"]
    );

    // Each smtpd process serves one connection at a time: follow them by pid.
    let mut log = read_since(&maillog, log_from);
    for _ in 0..50 {
        let ours = log.lines().filter(|l| l.contains(&sender)).count();
        if ours > 0
            && log.matches(" connect from ").count() == log.matches(" disconnect from ").count()
        {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        log = read_since(&maillog, log_from);
    }
    #[derive(Default, Debug)]
    struct Conn {
        domains: std::collections::BTreeSet<String>,
        mails: u32,
        refused: u32,
        ours: bool,
    }
    let mut open: HashMap<String, Conn> = HashMap::new();
    let mut done = Vec::new();
    for line in log.lines().filter(|l| l.contains("postfix/normal/smtpd[")) {
        let pid = line
            .split("smtpd[")
            .nth(1)
            .and_then(|r| r.split(']').next())
            .unwrap_or("");
        if line.contains(": connect from ") {
            open.insert(pid.to_owned(), Conn::default());
        } else if line.contains("info: RCPT from") && line.contains(&sender) {
            let to = line
                .split(" to=<")
                .nth(1)
                .and_then(|r| r.split('>').next())
                .unwrap_or("");
            let c = open.entry(pid.to_owned()).or_default();
            c.ours = true;
            c.domains.insert(domain_of(to).to_owned());
        } else if line.contains(": disconnect from ") {
            let mut c = open.remove(pid).unwrap_or_default();
            c.mails = smtpd_count(line, "mail").1;
            let (accepted, sent) = smtpd_count(line, "rcpt");
            c.refused = sent - accepted;
            if c.ours {
                done.push(c);
            }
        }
    }
    assert!(!done.is_empty(), "our connections are in the log:\n{log}");
    for c in &done {
        assert!(
            c.refused <= 9,
            "a connection took {} refusals: {c:?}",
            c.refused
        );
    }
    assert!(
        done.iter().any(|c| c.domains.len() >= 2),
        "no connection served two domains: {done:?}"
    );
    let transactions: u32 = done.iter().map(|c| c.mails).sum();
    assert!(done.len() < transactions as usize, "{done:?}");
    let most_open = read_since(&proxylog, proxy_from)
        .lines()
        .filter_map(|l| l.strip_prefix("open "))
        .filter_map(|n| n.trim().parse::<u32>().ok())
        .max()
        .unwrap_or(0);
    assert!(
        (1..=4).contains(&most_open),
        "{most_open} connections open at once"
    );
}
