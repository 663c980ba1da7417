//! The store without the lab: the suppression list, the cache (by age, --fresh, --max-age),
//! schema migration, damaged stores and two runs on one store at once. The DNS level runs
//! against a dead server on loopback (127.0.0.1:9): every domain is `unknown dns-timeout`, a
//! verdict that is stored (for an hour) like any other, and `summary.dns.queries` shows
//! whether the network was asked. The lab suite (tests/store_lab.rs) covers real verdicts,
//! changes.csv, --suppress-invalid and the kill tests.

mod common;

use std::path::Path;

use common::*;

const DEAD_DNS: &str = "127.0.0.1:9";

thread_local! {
    /// `--preload-domains` for this test's runs (None: the default).
    static PRELOAD: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// Run `test` as it is, then with every domain looked up one by one.
fn both_ways(test: fn()) {
    test();
    PRELOAD.with(|p| p.set(Some(0)));
    test();
    PRELOAD.with(|p| p.set(None));
}

/// `verify` at level dns against the dead server, with `store`; returns the output folder and
/// summary.json.
fn verify_dns(
    list: &Path,
    store: &Path,
    out: &Path,
    extra: &[&str],
    now: Option<i64>,
) -> serde_json::Value {
    let o = verify_dns_command(list, store, out, extra, now)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    summary(out)
}

/// The command [`verify_dns`] runs.
fn verify_dns_command(
    list: &Path,
    store: &Path,
    out: &Path,
    extra: &[&str],
    now: Option<i64>,
) -> std::process::Command {
    let mut cmd = prebounce();
    // Some tests run twice: with the store's domains read whole (a small store, the default)
    // and looked up one by one (a large one).
    cmd.arg("verify");
    if let Some(n) = PRELOAD.with(|p| p.get()) {
        cmd.args(["--preload-domains", &n.to_string()]);
    }
    cmd.args([
        list.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--force",
        "--dns-server",
        DEAD_DNS,
        "--dns-timeout",
        "100ms",
        "--allow-reserved-domains",
        "--progress",
        "never",
        "-q",
    ]);
    cmd.args(extra);
    if let Some(now) = now {
        cmd.args(["--clock", &now.to_string()]);
    }
    cmd
}

/// `verify` at level syntax (nothing looked up), with `store`; nothing on standard input.
fn verify_syntax(list: &Path, store: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "verify",
        list.to_str().unwrap(),
        "--store",
        store.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--level",
        "syntax",
    ];
    args.extend_from_slice(extra);
    run(&args, b"")
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn suppress(store: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["suppress", "--store", store.to_str().unwrap()];
    all.extend_from_slice(args);
    run(&all, b"")
}

#[test]
fn suppress_add_remove_import_export_list() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.sqlite3");
    let o = suppress(
        &store,
        &[
            "add",
            "Bob@Example.COM",
            "@spam.test",
            "--reason",
            "hard bounce",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let csv = dir.path().join("import.csv");
    std::fs::write(
        &csv,
        "name,email,reason\nCy,cy@ok.test,complained\nDi,di@ok.test,\n,,\n",
    )
    .unwrap();
    let o = suppress(&store, &["import", csv.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    // A headerless one-column file.
    let bare = dir.path().join("bare.csv");
    std::fs::write(&bare, "eve@ok.test\nbücher.de\n").unwrap();
    let o = suppress(
        &store,
        &["import", bare.to_str().unwrap(), "--reason", "old list"],
    );
    assert!(o.status.success(), "{}", stderr(&o));

    let o = suppress(&store, &["remove", "cy@ok.test"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = suppress(&store, &["remove", "nobody@ok.test"]);
    assert_eq!(o.status.code(), Some(2), "removing a missing entry fails");
    assert!(stderr(&o).contains("not on the suppression list"));

    let o = suppress(&store, &["export"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let mut r = csv::Reader::from_reader(o.stdout.as_slice());
    let rows: Vec<(String, String)> = r
        .records()
        .map(|r| {
            let r = r.unwrap();
            (r[0].to_owned(), r[1].to_owned())
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("@spam.test", "hard bounce"),
            ("@xn--bcher-kva.de", "old list"),
            ("bob@example.com", "hard bounce"),
            ("di@ok.test", "imported"),
            ("eve@ok.test", "old list"),
        ]
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
    );
    // The export imports back into another store unchanged.
    let exported = dir.path().join("exported.csv");
    std::fs::write(&exported, &o.stdout).unwrap();
    let other = dir.path().join("other.sqlite3");
    let o = suppress(&other, &["import", exported.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let again = suppress(&other, &["export"]);
    let first = suppress(&store, &["export"]);
    assert_eq!(text(&again.stdout), text(&first.stdout));

    let o = suppress(&store, &["list"]);
    assert!(o.status.success());
    let listed = text(&o.stdout);
    assert_eq!(listed.lines().count(), 5, "{listed}");
    assert!(listed.contains("bob@example.com  hard bounce"), "{listed}");

    let o = suppress(&store, &["add", "not an address@"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn suppressed_rows_are_invalid_without_any_lookup() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.sqlite3");
    assert!(
        suppress(
            &store,
            &["add", "a@kept.test", "@gone.test", "--reason", "bounced"]
        )
        .status
        .success()
    );
    let list = write_list(
        dir.path(),
        "list.csv",
        &[
            "A@kept.test".into(),
            "b@kept.test".into(),
            "x@gone.test".into(),
            "y@GONE.test".into(),
        ],
    );
    let out = dir.path().join("out");
    let s = verify_dns(&list, &store, &out, &[], None);
    assert_eq!(s["reasons"]["suppressed"], 3);
    assert_eq!(s["status"]["invalid"], 3);
    // Only kept.test was looked up.
    assert_eq!(s["dns"]["unique_domains"], 1);
    let reasons = column(&out, "invalid.csv", "prebounce_reason");
    assert_eq!(reasons, ["suppressed"; 3]);
    let details = column(&out, "invalid.csv", "prebounce_detail");
    assert!(details[0].contains("suppression list") && details[0].contains("bounced"));
    assert!(
        details[1].contains("the domain gone.test"),
        "{}",
        details[1]
    );

    // Also at level syntax, where nothing else is looked up.
    let out = dir.path().join("out-syntax");
    let o = verify_syntax(&list, &store, &out, &["--allow-reserved-domains"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(summary(&out)["reasons"]["suppressed"], 3);
}

#[test]
fn a_suppression_wins_over_a_cached_verdict() {
    both_ways(a_suppression_wins_over_a_cached_verdict_once);
}

fn a_suppression_wins_over_a_cached_verdict_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.sqlite3");
    seed_domain_verdicts(&store, &["kept.test", "gone.test"], 100);
    let list = write_list(
        dir.path(),
        "list.csv",
        &[
            "a@kept.test".into(),
            "b@kept.test".into(),
            "x@gone.test".into(),
        ],
    );
    let out = dir.path().join("out");
    let s = verify_dns(&list, &store, &out, &[], None);
    assert_eq!(s["store"]["cached_rows"], 3, "{}", s["store"]);
    assert_eq!(s["status"]["valid"], 3);

    // Suppressed since: the stored verdicts (the domains' and the addresses' own) no longer
    // answer those rows.
    assert!(
        suppress(&store, &["add", "b@kept.test", "@gone.test"])
            .status
            .success()
    );
    let s = verify_dns(&list, &store, &out, &[], None);
    assert_eq!(s["reasons"]["suppressed"], 2, "{}", s["reasons"]);
    assert_eq!(s["store"]["cached_rows"], 1, "{}", s["store"]);
    assert_eq!(column(&out, "valid.csv", "email"), ["a@kept.test"]);
    assert_eq!(
        column(&out, "invalid.csv", "email"),
        ["b@kept.test", "x@gone.test"]
    );
}

#[test]
fn cached_verdicts_by_age_and_fresh() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.sqlite3");
    let emails: Vec<String> = (0..20).map(|i| format!("u{i}@d{}.test", i % 5)).collect();
    let list = write_list(dir.path(), "list.csv", &emails);
    let out = dir.path().join("out");
    let t0 = now();

    let first = verify_dns(&list, &store, &out, &[], None);
    assert_eq!(first["reasons"]["dns-timeout"], 20);
    assert!(first["dns"]["queries"].as_u64().unwrap() >= 5);
    assert_eq!(first["store"]["cached_rows"], 0);
    assert_eq!(first["store"]["saved"], 20);

    // Again: every row from the store, no query.
    let second = verify_dns(&list, &store, &out, &[], None);
    assert_eq!(second["store"]["cached_rows"], 20);
    assert_eq!(second["dns"]["queries"], 0);
    assert_eq!(second["reasons"]["dns-timeout"], 20);
    let details = column(&out, "unknown.csv", "prebounce_detail");
    assert!(
        details.iter().all(|d| d.ends_with("(cached)")),
        "{details:?}"
    );

    // --max-age 1s, ten seconds later: verified again (and stored again, at t0+10).
    let third = verify_dns(&list, &store, &out, &["--max-age", "1s"], Some(t0 + 10));
    assert_eq!(third["store"]["cached_rows"], 0);
    assert!(third["dns"]["queries"].as_u64().unwrap() >= 5);

    // --fresh ignores what is stored.
    let fourth = verify_dns(&list, &store, &out, &["--fresh"], Some(t0 + 20));
    assert_eq!(fourth["store"]["cached_rows"], 0);
    assert!(fourth["dns"]["queries"].as_u64().unwrap() >= 5);
    assert_eq!(fourth["store"]["fresh"], true);

    // Within the hour an unknown is reused; after it, it is asked again.
    let fifth = verify_dns(&list, &store, &out, &[], Some(t0 + 20 + 3000));
    assert_eq!(fifth["store"]["cached_rows"], 20);
    let sixth = verify_dns(&list, &store, &out, &[], Some(t0 + 20 + 4000));
    assert_eq!(sixth["store"]["cached_rows"], 0);
    // Unknown before and unknown now: nothing changed.
    assert_eq!(sixth["changes"]["count"], 0);

    // --no-store: neither read nor written.
    let o = run(
        &[
            "verify",
            list.to_str().unwrap(),
            "--no-store",
            "--out",
            dir.path().join("nostore").to_str().unwrap(),
            "--dns-server",
            DEAD_DNS,
            "--dns-timeout",
            "100ms",
            "--allow-reserved-domains",
        ],
        b"",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let s = summary(&dir.path().join("nostore"));
    assert!(s.get("store").is_none());
    assert!(!dir.path().join("nostore/changes.csv").exists());
}

#[test]
fn a_damaged_store_or_one_from_a_newer_version_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let list = write_list(dir.path(), "list.csv", &["a@b.test".into()]);
    let bad = dir.path().join("bad.sqlite3");
    std::fs::write(&bad, vec![b'x'; 8192]).unwrap();
    let out = dir.path().join("out");
    let o = verify_syntax(&list, &bad, &out, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains(bad.to_str().unwrap()) && e.contains("damaged"),
        "{e}"
    );
    assert!(!out.exists(), "no output for a run that could not start");
    let o = suppress(&bad, &["list"]);
    assert_eq!(o.status.code(), Some(2));

    let newer = dir.path().join("newer.sqlite3");
    {
        let conn = rusqlite::Connection::open(&newer).unwrap();
        conn.pragma_update(None, "user_version", 99).unwrap();
    }
    let o = suppress(&newer, &["list"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("newer prebounce"), "{}", stderr(&o));
}

#[test]
fn a_version_1_store_is_migrated_and_its_verdicts_used() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("v1.sqlite3");
    {
        let conn = rusqlite::Connection::open(&store).unwrap();
        conn.execute_batch(prebounce::store::version_1_sql())
            .unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO addresses (key, status, reason, detail, level, verified_at, mx)
             VALUES ('ann@old.test', 'valid', 'domain-accepts-mail', 'MX 10 mx.old.test', 1, ?1, 'mx.old.test')",
            [now() - 86_400],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO suppressions (entry, reason, added_at) VALUES ('@spam.test', 'v1 entry', 0)",
            [],
        )
        .unwrap();
    }
    let list = write_list(
        dir.path(),
        "list.csv",
        &["ann@old.test".into(), "x@spam.test".into()],
    );
    let out = dir.path().join("out");
    let s = verify_dns(&list, &store, &out, &[], None);
    assert_eq!(s["reasons"]["domain-accepts-mail"], 1);
    assert_eq!(s["reasons"]["suppressed"], 1);
    assert_eq!(s["dns"]["queries"], 0);
    assert_eq!(column(&out, "valid.csv", "prebounce_mx"), ["mx.old.test"]);
    let conn = rusqlite::Connection::open(&store).unwrap();
    let v: u32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, prebounce::store::SCHEMA_VERSION);
}

#[test]
fn two_runs_at_once_share_one_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.sqlite3");
    let a: Vec<String> = (0..3000)
        .map(|i| format!("a{i}@s{}.test", i % 40))
        .collect();
    let b: Vec<String> = (0..3000)
        .map(|i| format!("b{i}@s{}.test", i % 40))
        .collect();
    let (la, lb) = (
        write_list(dir.path(), "a.csv", &a),
        write_list(dir.path(), "b.csv", &b),
    );
    let spawn = |list: &Path, out: &str| {
        prebounce()
            .args([
                "verify",
                list.to_str().unwrap(),
                "--store",
                store.to_str().unwrap(),
                "--out",
                dir.path().join(out).to_str().unwrap(),
                "--dns-server",
                DEAD_DNS,
                "--dns-timeout",
                "100ms",
                "--allow-reserved-domains",
                "-q",
            ])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (ca, cb) = (spawn(&la, "out-a"), spawn(&lb, "out-b"));
    for child in [ca, cb] {
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
    }
    let conn = rusqlite::Connection::open(&store).unwrap();
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
    let n: i64 = conn
        .query_row("SELECT count(*) FROM addresses", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 6000, "both runs' verdicts are stored");
    // A third run over both lists is answered from the store.
    let mut both = a.clone();
    both.extend(b);
    let lab = write_list(dir.path(), "both.csv", &both);
    let s = verify_dns(&lab, &store, &dir.path().join("out-both"), &[], None);
    assert_eq!(s["store"]["cached_rows"], 6000);
    assert_eq!(s["dns"]["queries"], 0);
}

#[test]
fn a_store_locked_by_another_writer_is_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.sqlite3");
    assert!(suppress(&store, &["list"]).status.success(), "create it");
    // Another writer holds the write lock for the whole command.
    let holder = rusqlite::Connection::open(&store).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    let o = prebounce()
        .args(["suppress", "--store", store.to_str().unwrap()])
        .args(["--store-wait", "300ms"])
        .args(["add", "a@b.test"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains(store.to_str().unwrap()) && e.contains("locked by another prebounce run"),
        "{e}"
    );
    holder.execute_batch("COMMIT").unwrap();
    // Once it is free, the same command works.
    assert!(suppress(&store, &["add", "a@b.test"]).status.success());
}

/// Seed `store` (schema current) with a domain verdict for each of `domains`, verified
/// `age` seconds ago.
fn seed_domain_verdicts(store: &Path, domains: &[&str], age: i64) {
    drop(prebounce::store::Store::open(store, Default::default()).unwrap()); // at the current schema
    let conn = rusqlite::Connection::open(store).unwrap();
    for d in domains {
        conn.execute(
            "INSERT INTO domain_verdicts (domain, reason, detail, mx, verified_at)
             VALUES (?1, 'domain-accepts-mail', 'MX 10 mx.' || ?1 || ' (192.0.2.1); mailbox not checked', 'mx.' || ?1, ?2)",
            rusqlite::params![d, now() - age],
        )
        .unwrap();
    }
}

#[test]
fn a_domain_verdict_answers_addresses_never_seen_and_an_smtp_verdict_still_wins() {
    both_ways(a_domain_verdict_answers_addresses_never_seen_and_an_smtp_verdict_still_wins_once);
}

fn a_domain_verdict_answers_addresses_never_seen_and_an_smtp_verdict_still_wins_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.sqlite3");
    seed_domain_verdicts(&store, &["plain.test", "probed.test"], 100);
    {
        // probed.test also has an smtp-level verdict of one address: it says more than the
        // domain's, so a dns-level run must answer that address from it.
        let conn = rusqlite::Connection::open(&store).unwrap();
        conn.execute(
            "INSERT INTO addresses (key, status, reason, detail, level, verified_at, mx, reply_code, reply_text)
             VALUES ('gone@probed.test', 'invalid', 'mailbox-not-found', '550 5.1.1 no such user', 2, ?1, 'mx.probed.test', 550, '5.1.1 no such user')",
            [now() - 100],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO smtp_domains (domain, verified_at) VALUES ('probed.test', ?1)",
            [now() - 100],
        )
        .unwrap();
    }
    let list = write_list(
        dir.path(),
        "list.csv",
        &[
            "new1@plain.test".into(),
            "New2@Plain.test".into(),
            "gone@probed.test".into(),
            "other@probed.test".into(),
            "fresh@unknown-domain.test".into(),
        ],
    );
    let out = dir.path().join("out");
    let s = verify_dns(&list, &store, &out, &[], None);
    // Only the domain the store knows nothing of was asked (and timed out).
    assert_eq!(s["store"]["cached_rows"], 4, "{}", s["store"]);
    assert_eq!(s["reasons"]["domain-accepts-mail"], 3);
    assert_eq!(s["reasons"]["mailbox-not-found"], 1);
    assert_eq!(s["reasons"]["dns-timeout"], 1);
    assert_eq!(
        column(&out, "invalid.csv", "email"),
        ["gone@probed.test"],
        "the smtp-level verdict wins over its domain's"
    );
    assert_eq!(
        column(&out, "valid.csv", "prebounce_mx"),
        ["mx.plain.test", "mx.plain.test", "mx.probed.test"]
    );
    for d in column(&out, "valid.csv", "prebounce_detail") {
        assert!(d.starts_with("MX 10 mx.") && d.ends_with("(cached)"), "{d}");
    }

    // Older than --max-age: the domain verdicts no longer answer; their addresses are asked.
    // (The first run's own verdict, seconds old, still does.)
    let s = verify_dns(&list, &store, &out, &["--max-age", "50s"], None);
    assert_eq!(s["store"]["cached_rows"], 1, "{}", s["store"]);
    assert_eq!(s["reasons"]["dns-timeout"], 5);
    // And --fresh ignores even a young one.
    seed_domain_verdicts(&dir.path().join("other.sqlite3"), &["plain.test"], 10);
    let s = verify_dns(
        &list,
        &dir.path().join("other.sqlite3"),
        &out,
        &["--fresh"],
        None,
    );
    assert_eq!(s["store"]["cached_rows"], 0, "{}", s["store"]);
}

#[test]
fn a_dns_level_run_stores_each_domain_once_and_each_address_without_repeating_the_domain() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.sqlite3");
    let emails: Vec<String> = (0..40).map(|i| format!("u{i}@d{}.test", i % 4)).collect();
    let list = write_list(dir.path(), "list.csv", &emails);
    let out = dir.path().join("out");
    let s = verify_dns(&list, &store, &out, &[], None);
    assert_eq!(s["store"]["saved"], 40);
    let conn = rusqlite::Connection::open(&store).unwrap();
    let domains: i64 = conn
        .query_row("SELECT count(*) FROM domain_verdicts", [], |r| r.get(0))
        .unwrap();
    assert_eq!(domains, 4);
    let (rows, with_detail): (i64, i64) = conn
        .query_row(
            "SELECT count(*), count(NULLIF(detail, '')) FROM addresses WHERE level = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((rows, with_detail), (40, 0));
    // The address's own verdict still reads whole: its detail is its domain's.
    let store_read = prebounce::store::Store::open(&store, Default::default()).unwrap();
    let prior = store_read.lookup("u5@d1.test").unwrap().unwrap();
    assert_eq!(prior.reason.as_str(), "dns-timeout");
    assert!(!prior.detail.is_empty(), "{prior:?}");

    // New addresses at the same domains: answered from the four domain verdicts.
    let more: Vec<String> = (0..12).map(|i| format!("v{i}@d{}.test", i % 4)).collect();
    let more = write_list(dir.path(), "more.csv", &more);
    let s = verify_dns(&more, &store, &out, &[], None);
    assert_eq!(s["store"]["cached_rows"], 12);
    assert_eq!(s["dns"]["queries"], 0);
}

/// Seed an address's dns-level verdict, as a store from before domain verdicts holds them.
fn seed_address(store: &Path, key: &str, reason: &str, status: &str, age: i64) {
    drop(prebounce::store::Store::open(store, Default::default()).unwrap());
    let conn = rusqlite::Connection::open(store).unwrap();
    conn.execute(
        "INSERT INTO addresses (key, status, reason, detail, level, verified_at, mx)
         VALUES (?1, ?2, ?3, 'MX 10 mx.d.test', 1, ?4, 'mx.d.test')",
        rusqlite::params![key, status, reason, now() - age],
    )
    .unwrap();
}

#[test]
fn a_resumed_run_answers_as_the_interrupted_one_did() {
    both_ways(a_resumed_run_answers_as_the_interrupted_one_did_once);
}

fn a_resumed_run_answers_as_the_interrupted_one_did_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.sqlite3");
    seed_address(&store, "a@d.test", "domain-accepts-mail", "valid", 100);
    let list = write_list(
        dir.path(),
        "list.csv",
        &["b@d.test".into(), "a@d.test".into()],
    );
    let out = dir.path().join("out");
    let first = verify_dns(&list, &store, &out, &[], None);
    assert_eq!(column(&out, "valid.csv", "email"), ["a@d.test"]);
    assert_eq!(first["reasons"]["dns-timeout"], 1);
    // As a kill after the last commit leaves it: the run is not marked finished.
    rusqlite::Connection::open(&store)
        .unwrap()
        .execute("UPDATE runs SET finished_at = NULL", [])
        .unwrap();
    let resumed = verify_dns(&list, &store, &out, &[], None);
    assert_eq!(resumed["store"]["resumed"], true);
    // b's domain now has this run's verdict; a keeps the verdict the run found for it.
    assert_eq!(column(&out, "valid.csv", "email"), ["a@d.test"]);
    assert_eq!(resumed["changes"]["count"], 0, "{}", resumed["changes"]);
}

#[test]
fn a_later_verdict_of_the_domain_overrides_an_older_one_of_the_address() {
    both_ways(a_later_verdict_of_the_domain_overrides_an_older_one_of_the_address_once);
}

fn a_later_verdict_of_the_domain_overrides_an_older_one_of_the_address_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.sqlite3");
    seed_address(&store, "a@d.test", "domain-accepts-mail", "valid", 100);
    {
        let conn = rusqlite::Connection::open(&store).unwrap();
        conn.execute(
            "INSERT INTO domain_verdicts (domain, reason, detail, mx, verified_at)
             VALUES ('d.test', 'dns-timeout', 'the DNS lookup timed out', NULL, ?1)",
            [now() - 50],
        )
        .unwrap();
    }
    let list = write_list(dir.path(), "list.csv", &["a@d.test".into()]);
    let out = dir.path().join("out");
    // The domain's newer verdict answers (an unknown is reused for an hour).
    let s = verify_dns(&list, &store, &out, &[], None);
    assert_eq!(s["store"]["cached_rows"], 1);
    assert_eq!(s["reasons"]["dns-timeout"], 1);
    // Past that hour the domain's verdict is too old, and the address's own, older still,
    // does not come back: the address is verified again, and compared with its own.
    let s = verify_dns(&list, &store, &out, &[], Some(now() + 4000));
    assert_eq!(s["store"]["cached_rows"], 0);
    assert_eq!(s["reasons"]["dns-timeout"], 1);
    assert_eq!(
        s["changes"]["by_transition"]["valid→unknown"], 1,
        "{}",
        s["changes"]
    );
}

#[test]
fn a_domain_verdict_is_reused_for_a_week_at_most() {
    both_ways(a_domain_verdict_is_reused_for_a_week_at_most_once);
}

fn a_domain_verdict_is_reused_for_a_week_at_most_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.sqlite3");
    seed_domain_verdicts(&store, &["six-days.test"], 6 * 86_400);
    seed_domain_verdicts(&store, &["eight-days.test"], 8 * 86_400);
    let list = write_list(
        dir.path(),
        "list.csv",
        &["a@six-days.test".into(), "a@eight-days.test".into()],
    );
    let out = dir.path().join("out");
    // The default --max-age is 30 days; a domain's MX result is reused for 7 at most.
    let s = verify_dns(&list, &store, &out, &[], None);
    assert_eq!(s["store"]["cached_rows"], 1, "{}", s["store"]);
    assert_eq!(column(&out, "valid.csv", "email"), ["a@six-days.test"]);
    assert_eq!(column(&out, "unknown.csv", "email"), ["a@eight-days.test"]);
}

/// A store stage that fails mid-run stops the run with its own error (what the store said),
/// not with a count of missing rows, and leaves no lists behind.
#[test]
fn a_store_that_fails_during_the_run_reports_why() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.sqlite3");
    let list = write_list(dir.path(), "list.csv", &["ann@old.test".into()]);
    verify_dns(&list, &store, &dir.path().join("first"), &[], None);
    // A domain verdict the store cannot read: the store stage meets it at its first lookup
    // (the domains are looked up one by one, not read before the run starts).
    let conn = rusqlite::Connection::open(&store).unwrap();
    let changed = conn
        .execute(
            "UPDATE domain_verdicts SET verified_at = 'not a time' WHERE domain = 'old.test'",
            [],
        )
        .unwrap();
    assert_eq!(changed, 1);
    drop(conn);
    let out = dir.path().join("second");
    let o = verify_dns_command(&list, &store, &out, &["--preload-domains", "0"], None)
        .output()
        .unwrap();
    let e = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{e}");
    assert!(
        e.contains(store.to_str().unwrap()) && e.contains("verified_at"),
        "the store's own error: {e}"
    );
    assert!(!e.contains("stopped early"), "{e}");
    assert!(!out.join("valid.csv").exists() && !out.join("summary.json").exists());
}

#[test]
fn an_absurd_store_wait_is_refused_before_the_store_is_opened() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.sqlite3");
    let o = suppress(&store, &["--store-wait", "100000d", "list"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("at most 24h"), "{}", stderr(&o));
    assert!(!store.exists());
}

/// Issue #14, item 2: the store's file is never written through a link.
#[cfg(unix)]
#[test]
fn a_store_that_is_a_link_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim.txt");
    std::fs::write(&victim, "precious").unwrap();
    let store = dir.path().join("store.sqlite3");
    std::os::unix::fs::symlink(&victim, &store).unwrap();
    let o = suppress(&store, &["add", "a@b.test"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("symbolic link"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
}

/// Issue #14, item 6: another program's database is never adopted as a store (nor changed);
/// an empty file is one to initialise; an old prebounce store is still migrated (see
/// `a_version_1_store_is_migrated_and_its_verdicts_used`).
#[test]
fn a_foreign_database_is_refused_and_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let foreign = dir.path().join("app.db");
    {
        let conn = rusqlite::Connection::open(&foreign).unwrap();
        conn.execute_batch("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
            .unwrap();
    }
    let before = std::fs::read(&foreign).unwrap();
    let list = write_list(dir.path(), "list.csv", &["a@b.test".into()]);
    let out = dir.path().join("out");
    let o = verify_syntax(&list, &foreign, &out, &[]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("not a prebounce store"), "{e}");
    assert_eq!(e.trim_end().lines().count(), 1, "one line: {e}");
    assert!(!out.exists(), "no output for a run that could not start");
    let o = suppress(&foreign, &["add", "x@y.test"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("not a prebounce store"));
    assert_eq!(std::fs::read(&foreign).unwrap(), before, "left as it was");
    let conn = rusqlite::Connection::open(&foreign).unwrap();
    let v: u32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, 0);

    // A zero-length file (touched beforehand) becomes a store.
    let empty = dir.path().join("empty.sqlite3");
    std::fs::write(&empty, b"").unwrap();
    let o = suppress(&empty, &["add", "x@y.test"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = suppress(&empty, &["list"]);
    assert!(text(&o.stdout).contains("x@y.test"));
}

/// Issue #14, item 6: a folder given as the store is refused in one line naming the fix.
#[test]
fn a_folder_as_the_store_is_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let o = suppress(dir.path(), &["list"]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("is a folder") && e.contains("--store"), "{e}");
    assert_eq!(e.trim_end().lines().count(), 1, "one line: {e}");
}

/// `prebounce` unable to write `store` (and its folder), even as root: the capabilities that
/// override file permissions are dropped for it (setpriv, util-linux).
#[cfg(unix)]
fn read_only_command(store: &Path) -> std::process::Command {
    use std::os::unix::fs::PermissionsExt;
    let folder = store.parent().unwrap();
    std::fs::set_permissions(store, std::fs::Permissions::from_mode(0o444)).unwrap();
    std::fs::set_permissions(folder, std::fs::Permissions::from_mode(0o555)).unwrap();
    let writable = std::fs::OpenOptions::new().append(true).open(store).is_ok();
    let mut cmd = if writable {
        let mut c = std::process::Command::new("setpriv");
        c.args([
            "--bounding-set=-dac_override,-dac_read_search,-fowner",
            env!("CARGO_BIN_EXE_prebounce"),
        ]);
        c
    } else {
        std::process::Command::new(env!("CARGO_BIN_EXE_prebounce"))
    };
    let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("xdg-cache-read-only");
    cmd.env("XDG_CACHE_HOME", cache);
    cmd
}

/// Issue #14, item 6: a read-only store is read (the suppression list, a run's cache) but a
/// command that must write says so in one line, naming the fix.
#[cfg(unix)]
#[test]
fn a_read_only_store_is_read_and_a_write_is_refused_clearly() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("ro");
    std::fs::create_dir(&folder).unwrap();
    let store = folder.join("store.sqlite3");
    let o = suppress(&store, &["add", "x@y.test"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let list = write_list(dir.path(), "list.csv", &["a@b.test".into()]);
    let out = dir.path().join("out");

    let o = read_only_command(&store)
        .args(["suppress", "--store", store.to_str().unwrap(), "list"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(text(&o.stdout).contains("x@y.test"));

    let o = read_only_command(&store)
        .args([
            "suppress",
            "--store",
            store.to_str().unwrap(),
            "add",
            "z@y.test",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("read-only"), "{e}");
    assert_eq!(e.trim_end().lines().count(), 1, "one line: {e}");

    let o = read_only_command(&store)
        .args([
            "verify",
            list.to_str().unwrap(),
            "--store",
            store.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
            "--level",
            "syntax",
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("read-only") && e.contains("--no-store"), "{e}");
    assert_eq!(e.trim_end().lines().count(), 1, "one line: {e}");
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Issue #14, item 4: `--fresh` in the same second as a previous run does not take that run's
/// verdicts for its own (this run's verdicts are told by run, not by time stamp).
#[test]
fn fresh_in_the_same_second_as_a_previous_run_verifies_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.sqlite3");
    let emails: Vec<String> = (0..6).map(|i| format!("u{i}@d{}.test", i % 3)).collect();
    let list = write_list(dir.path(), "list.csv", &emails);
    let t = now();
    let first = verify_dns(&list, &store, &dir.path().join("a"), &[], Some(t));
    assert_eq!(first["store"]["cached_rows"], 0);
    // Another output folder: another command, so not a resumption of the first run.
    let fresh = verify_dns(&list, &store, &dir.path().join("b"), &["--fresh"], Some(t));
    assert_eq!(fresh["store"]["cached_rows"], 0, "{fresh}");
    assert!(fresh["dns"]["queries"].as_u64().unwrap() >= 3, "{fresh}");
}
