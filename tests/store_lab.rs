//! The store against the interop lab (lab/up; lab/SMTP.md): revalidation (changes.csv),
//! --suppress-invalid, and the kill tests: a `--level smtp` run stopped by SIGKILL or Ctrl-C
//! and started again with the same command gives the lists of an uninterrupted run, and no
//! address whose verdict was committed before the stop is probed again (counted in Postfix's
//! own log, which has one `RCPT from … to=<address>` line per RCPT).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::Once;
use std::time::{Duration, Instant};

use common::*;

const DNS: &str = "127.77.0.1";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn lab_dir() -> PathBuf {
    std::env::var("PREBOUNCE_LAB_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root().join("target/lab"))
}

/// The tests read the servers' logs and postgrey's state: one at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

fn lab_up() {
    static UP: Once = Once::new();
    UP.call_once(|| {
        let out = std::process::Command::new(root().join("lab/up"))
            .output()
            .expect("run lab/up");
        assert!(
            out.status.success(),
            "lab/up failed (it needs root the first time):\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    });
}

fn verify_args(list: &Path, store: &Path, out: &Path, level: &str, sender: &str) -> Vec<String> {
    [
        "verify",
        list.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--level",
        level,
        "--from",
        sender,
        "--greylist-wait",
        "6s",
        "--dns-server",
        DNS,
        "--allow-reserved-domains",
        "--allow-private-mx",
        "--progress",
        "never",
        "-q",
    ]
    .map(str::to_owned)
    .to_vec()
}

/// address → (status, reason) over the four lists.
fn verdicts(out: &Path) -> BTreeMap<String, (String, String)> {
    let mut found = BTreeMap::new();
    for list in LISTS {
        let emails = column(out, list, "email");
        let reasons = column(out, list, "prebounce_reason");
        let statuses = column(out, list, "prebounce_status");
        for ((e, r), s) in emails.into_iter().zip(reasons).zip(statuses) {
            assert!(found.insert(e, (s, r)).is_none(), "an address in two lists");
        }
    }
    found
}

/// Recipients of the RCPT commands `sender` sent, one entry per RCPT, from Postfix's log.
fn rcpts_of(log: &str, sender: &str) -> Vec<String> {
    let from = format!("from=<{sender}>");
    log.lines()
        .filter(|l| l.contains("info: RCPT from") && l.contains(&from))
        .filter_map(|l| {
            let to = l.split(" to=<").nth(1)?;
            Some(to.split('>').next()?.to_owned())
        })
        .collect()
}

fn stored_keys(store: &Path) -> BTreeSet<String> {
    let conn = rusqlite::Connection::open(store).unwrap();
    let mut stmt = conn.prepare("SELECT key FROM addresses").unwrap();
    stmt.query_map([], |r| r.get::<_, String>(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn stored_count(store: &Path) -> usize {
    if !store.exists() {
        return 0;
    }
    let Ok(conn) = rusqlite::Connection::open(store) else {
        return 0;
    };
    conn.query_row("SELECT count(*) FROM addresses", [], |r| r.get::<_, i64>(0))
        .map_or(0, |n| n as usize)
}

#[test]
fn revalidation_lists_changes_and_suppress_invalid_adds_permanent_failures() {
    let _serial = serial();
    lab_up();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.sqlite3");
    let list = write_list(
        dir.path(),
        "list.csv",
        &[
            "alice@ok.smtp.test".into(),
            "x@nosuch.smtp.test".into(),
            "y@nullmx.smtp.test".into(),
            "z@x.servfail.test".into(),
        ],
    );
    let out = dir.path().join("out");
    let run_at = |dns: &str, extra: &[&str], now: Option<i64>| {
        let mut cmd = prebounce();
        let mut args = verify_args(&list, &store, &out, "dns", "probe@sender.test");
        args.retain(|a| a != DNS);
        let i = args.iter().position(|a| a == "--dns-server").unwrap();
        args.insert(i + 1, dns.to_owned());
        cmd.args(&args).arg("--force").args(extra);
        if let Some(now) = now {
            cmd.args(["--clock", &now.to_string()]);
        }
        let o = cmd.output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        summary(&out)
    };
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    // First with a dead DNS server: everything unknown (kept an hour).
    let first = run_at("127.0.0.1:9", &["--dns-timeout", "100ms"], None);
    assert_eq!(first["status"]["unknown"], 4);
    // Two hours later, against the lab: the verdicts change.
    let second = run_at(DNS, &["--suppress-invalid"], Some(t0 + 7200));
    assert_eq!(second["store"]["cached_rows"], 0);
    assert_eq!(second["changes"]["count"], 3, "{}", second["changes"]);
    assert_eq!(second["changes"]["by_transition"]["unknown→valid"], 1);
    assert_eq!(second["changes"]["by_transition"]["unknown→invalid"], 2);
    let rows = read_records(&out.join("changes.csv"), b',');
    assert_eq!(
        rows[0],
        [
            "address",
            "previous_status",
            "previous_reason",
            "previous_verified_at",
            "status",
            "reason"
        ]
        .map(|s| s.as_bytes().to_vec())
    );
    let mut changed: Vec<(String, String, String, String)> = rows[1..]
        .iter()
        .map(|r| (text(&r[0]), text(&r[2]), text(&r[4]), text(&r[5])))
        .collect();
    changed.sort();
    assert_eq!(
        changed,
        [
            (
                "alice@ok.smtp.test",
                "dns-timeout",
                "valid",
                "domain-accepts-mail"
            ),
            (
                "x@nosuch.smtp.test",
                "dns-timeout",
                "invalid",
                "no-such-domain"
            ),
            ("y@nullmx.smtp.test", "dns-timeout", "invalid", "null-mx"),
        ]
        .map(|(a, b, c, d)| (a.into(), b.into(), c.into(), d.into()))
    );

    // --suppress-invalid listed the two permanent failures; the next run says `suppressed`.
    let o = run(
        &["suppress", "--store", store.to_str().unwrap(), "export"],
        b"",
    );
    let exported = text(&o.stdout);
    assert!(exported.contains("x@nosuch.smtp.test,--suppress-invalid: no-such-domain"));
    assert!(exported.contains("y@nullmx.smtp.test,--suppress-invalid: null-mx"));
    assert!(!exported.contains("alice"));
    let third = run_at(DNS, &[], Some(t0 + 7300));
    assert_eq!(third["reasons"]["suppressed"], 2);
    // alice and the servfail domain's unknown (100 s old: within the hour) from the cache.
    assert_eq!(third["store"]["cached_rows"], 2);
    assert_eq!(third["dns"]["queries"], 0);
}

/// Start the list's smtp run, wait until at least `committed` verdicts are in the store, stop
/// it (`signal`: None = SIGKILL, Some("-INT") = Ctrl-C) and return its exit status and stderr.
fn interrupt_after(
    args: &[String],
    store: &Path,
    committed: usize,
    signal: Option<&str>,
) -> (Option<i32>, String) {
    let mut child: Child = prebounce()
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while stored_count(store) < committed {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before {committed} verdicts were committed"
        );
        assert!(start.elapsed() < Duration::from_secs(120), "no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        child.try_wait().unwrap().is_none(),
        "the run must still be going when it is stopped"
    );
    match signal {
        None => child.kill().unwrap(),
        Some(sig) => {
            let ok = std::process::Command::new("kill")
                .args([sig, &child.id().to_string()])
                .status()
                .unwrap()
                .success();
            assert!(ok);
        }
    }
    let o = child.wait_with_output().unwrap();
    (o.status.code(), stderr(&o))
}

/// ok.smtp.test (fast, 180 addresses), the tarpit (1 s per RCPT) and greylisting (6 s wait):
/// the fast domain is committed long before the slow ones end.
fn kill_list() -> Vec<String> {
    let mut emails: Vec<String> = (1..=150)
        .map(|i| format!("user{i:04}@ok.smtp.test"))
        .collect();
    emails.extend((201..=230).map(|i| format!("user{i:04}@ok.smtp.test")));
    for local in ["alice", "bob", "nobody", "user0001", "user0002", "user0003"] {
        emails.push(format!("{local}@tarpit.smtp.test"));
    }
    for local in ["alice", "bob", "nobody"] {
        emails.push(format!("{local}@grey.smtp.test"));
    }
    emails
}

fn stop_and_resume(signal: Option<&str>) {
    let _serial = serial();
    lab_up();
    let maillog = lab_dir().join("postfix/maillog");
    let dir = tempfile::tempdir().unwrap();
    let emails = kill_list();
    let list = write_list(dir.path(), "list.csv", &emails);
    let store = dir.path().join("store.sqlite3");
    let out = dir.path().join("out");
    let sender = fresh_sender("store");
    let args = verify_args(&list, &store, &out, "smtp", &sender);

    let (code, err) = interrupt_after(&args, &store, 180, signal);
    if signal.is_some() {
        assert_eq!(code, Some(130), "{err}");
        assert!(
            err.contains("run the same command again to resume"),
            "{err}"
        );
    }
    assert!(
        !out.join("summary.json").exists(),
        "no lists from a stopped run"
    );
    let committed = stored_keys(&store);
    assert!(committed.len() >= 180 && committed.len() < emails.len());
    // Postfix logs after the fact: let the stopped run's lines arrive before the cut.
    std::thread::sleep(Duration::from_secs(2));
    let cut = offset(&maillog);

    // The same command again.
    let o = prebounce().args(&args).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let resumed = summary(&out);
    assert_eq!(resumed["store"]["resumed"], true);
    assert_eq!(resumed["store"]["cached_rows"], committed.len() as u64);
    assert_eq!(resumed["rows"], emails.len() as u64);

    // No RCPT after the cut for an address committed before it (nor a canary at a domain
    // whose verdicts were all committed: its catch-all verdict is stored too).
    let mut log = read_since(&maillog, cut);
    let probed = resumed["smtp"]["rcpt_commands"].as_u64().unwrap() as usize;
    for _ in 0..100 {
        if rcpts_of(&log, &sender).len() >= probed {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        log = read_since(&maillog, cut);
    }
    let again = rcpts_of(&log, &sender);
    assert!(!again.is_empty(), "the resumed run probed the rest");
    let twice: Vec<&String> = again.iter().filter(|a| committed.contains(*a)).collect();
    assert!(
        twice.is_empty(),
        "probed again after being committed: {twice:?}"
    );
    assert!(
        again.iter().all(|a| !a.ends_with("@ok.smtp.test")),
        "ok.smtp.test was finished: {again:?}"
    );

    // The lists equal an uninterrupted run's (new store, new sender).
    let ref_store = dir.path().join("ref.sqlite3");
    let ref_out = dir.path().join("ref");
    let o = prebounce()
        .args(verify_args(
            &list,
            &ref_store,
            &ref_out,
            "smtp",
            &fresh_sender("store"),
        ))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(verdicts(&out), verdicts(&ref_out));
    // Order within each list is the input's.
    for l in LISTS {
        assert_eq!(column(&out, l, "email"), column(&ref_out, l, "email"));
    }
}

#[test]
fn a_killed_smtp_run_resumes_without_probing_twice() {
    stop_and_resume(None);
}

#[test]
fn ctrl_c_stops_politely_and_the_same_command_resumes() {
    stop_and_resume(Some("-INT"));
}

/// Issue #14, item 4: one big domain (1,000 addresses, 50 sessions) is committed session by
/// session, not when its probe ends: a SIGKILL part-way keeps what the finished sessions
/// decided, and the same command probes only the rest.
#[test]
fn a_killed_run_at_one_big_domain_keeps_each_finished_sessions_verdicts() {
    let _serial = serial();
    lab_up();
    let maillog = lab_dir().join("postfix/maillog");
    let dir = tempfile::tempdir().unwrap();
    let emails: Vec<String> = (1..=1000)
        .map(|i| format!("user{i:04}@ok.smtp.test"))
        .collect();
    let list = write_list(dir.path(), "list.csv", &emails);
    let store = dir.path().join("store.sqlite3");
    let out = dir.path().join("out");
    let sender = fresh_sender("big");
    let args = verify_args(&list, &store, &out, "smtp", &sender);

    interrupt_after(&args, &store, 100, None);
    let committed = stored_keys(&store);
    assert!(
        committed.len() >= 100 && committed.len() < emails.len(),
        "{} committed",
        committed.len()
    );
    std::thread::sleep(Duration::from_secs(2));
    let cut = offset(&maillog);

    let o = prebounce().args(&args).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let resumed = summary(&out);
    assert_eq!(resumed["store"]["resumed"], true);
    assert_eq!(resumed["store"]["cached_rows"], committed.len() as u64);

    // After the cut: a RCPT for each address not committed, none for those committed (the
    // domain's catch-all canary, not stored before the domain ends, is asked again).
    let mut log = read_since(&maillog, cut);
    let probed = resumed["smtp"]["rcpt_commands"].as_u64().unwrap() as usize;
    for _ in 0..100 {
        if rcpts_of(&log, &sender).len() >= probed {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
        log = read_since(&maillog, cut);
    }
    let again = rcpts_of(&log, &sender);
    let twice: Vec<&String> = again.iter().filter(|a| committed.contains(*a)).collect();
    assert!(twice.is_empty(), "probed again: {} addresses", twice.len());
    let listed: BTreeSet<&String> = again.iter().filter(|a| emails.contains(*a)).collect();
    assert_eq!(listed.len(), emails.len() - committed.len());
}
