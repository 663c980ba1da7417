//! The PostgreSQL store (`--store postgres://…`, issue #18) against the lab's PostgreSQL
//! (lab/pg, started by lab/up): every store command gives what it gives with SQLite, several
//! machines share one store at once, and what goes wrong is said clearly (with the password
//! masked). Each test has a database of its own.

mod common;

use std::path::Path;
use std::process::Output;

use common::*;
use prebounce::model::{Level, Reason};
use prebounce::store::{DecidedUnder, Record, RunStamp, Store, StoreAccess, StoreWriter, Write};

const DNS: &str = "127.77.0.1";
/// A fixed clock: both backends stamp the same times.
const T0: i64 = 1_796_000_000;

fn run_with(args: &[String]) -> Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(&args, b"")
}

/// summary.json without what differs from run to run or names the store.
fn comparable_summary(out: &Path) -> serde_json::Value {
    let mut s = summary(out);
    let o = s.as_object_mut().unwrap();
    for key in ["output_dir", "started_at", "elapsed_seconds", "dns"] {
        o.remove(key);
    }
    if let Some(store) = o.get_mut("store").and_then(|v| v.as_object_mut()) {
        store.remove("path");
    }
    s
}

/// The same session of store commands on `store`: verify twice (the second answered from the
/// store), suppress by hand, import the bounce corpus, verify again (suppressed and
/// soft-bounced rows), re-verify past the age limit (changes.csv), list, export and remove
/// suppressions, the bounce report. Returns what each step printed and wrote, with the
/// store's name replaced.
fn session(store: &str, dir: &Path) -> Vec<(String, String)> {
    let mut seen = Vec::new();
    let shown = if store.starts_with("postgres") {
        prebounce::store::postgres::masked(store)
    } else {
        store.to_owned()
    };
    let mut record = |step: &str, o: &Output| {
        assert!(o.status.success(), "{step}: {}", stderr(o));
        let clean = |b: &[u8]| String::from_utf8_lossy(b).replace(&shown, "STORE");
        seen.push((
            step.to_owned(),
            format!("{}\n--\n{}", clean(&o.stdout), clean(&o.stderr)),
        ));
    };
    // The lab's sample list but equal.lab.test, whose two MX of equal preference come in
    // either order.
    let sample =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/lab.csv"))
            .unwrap();
    let list = dir.join("lab.csv");
    std::fs::write(
        &list,
        sample
            .lines()
            .filter(|l| !l.contains("@equal.lab.test"))
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
    )
    .unwrap();
    let verify = |out: &str, clock: i64, extra: &[&str]| {
        let mut args = strings(&[
            "verify",
            list.to_str().unwrap(),
            "--level",
            "dns",
            "--dns-server",
            DNS,
            "--allow-reserved-domains",
            "--allow-private-mx",
            "--store",
            store,
            "-o",
            dir.join(out).to_str().unwrap(),
            "--json",
            "-q",
            "--clock",
            &clock.to_string(),
        ]);
        args.extend(strings(extra));
        run_with(&args)
    };
    let outputs = |step: &str, out: &str, o: Output| {
        assert!(o.status.success(), "{step}: {}", stderr(&o));
        let folder = dir.join(out);
        let mut files = String::new();
        for name in LISTS.iter().chain(&["changes.csv"]) {
            let bytes = std::fs::read(folder.join(name)).unwrap_or_default();
            files.push_str(&format!("== {name}\n{}", String::from_utf8_lossy(&bytes)));
        }
        files.push_str(&comparable_summary(&folder).to_string());
        (step.to_owned(), files)
    };
    let first = outputs("first verify", "o1", verify("o1", T0, &[]));
    let second = outputs("second verify", "o2", verify("o2", T0 + 60, &[]));
    let suppress = |args: &[&str]| {
        let mut all = strings(&["suppress"]);
        all.extend(strings(args));
        all.extend(strings(&["--store", store, "--clock", &T0.to_string()]));
        run_with(&all)
    };
    record(
        "suppress add",
        &suppress(&["add", "ada@ok.lab.test", "--reason", "asked us to stop"]),
    );
    record(
        "suppress add domain",
        &suppress(&["add", "@nullmx.lab.test"]),
    );
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/bounces/eml");
    let import = run_with(&strings(&[
        "bounces",
        "import",
        corpus.to_str().unwrap(),
        "--store",
        store,
        "--clock",
        &T0.to_string(),
    ]));
    record("bounces import", &import);
    let third = outputs(
        "verify after suppressions",
        "o3",
        verify("o3", T0 + 120, &[]),
    );
    let fourth = outputs(
        "verify past the age limit",
        "o4",
        verify("o4", T0 + 600, &["--max-age", "1m"]),
    );
    record("suppress list", &suppress(&["list"]));
    record("suppress export", &suppress(&["export"]));
    record("suppress remove", &suppress(&["remove", "ada@ok.lab.test"]));
    record("suppress export after", &suppress(&["export"]));
    let report = run_with(&strings(&[
        "bounces",
        "report",
        "--store",
        store,
        "--since",
        "3650d",
        "--json",
        "--clock",
        &T0.to_string(),
    ]));
    record("bounces report", &report);
    seen.extend([first, second, third, fourth]);
    seen
}

#[test]
fn every_store_command_gives_with_postgres_what_it_gives_with_sqlite() {
    let _turn = lab_turn();
    let db = Db::new("parity");
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("sqlite")).unwrap();
    std::fs::create_dir_all(dir.path().join("pg")).unwrap();
    let sqlite_store = dir.path().join("sqlite/store.sqlite3");
    let with_sqlite = session(sqlite_store.to_str().unwrap(), &dir.path().join("sqlite"));
    let with_pg = session(&db.url, &dir.path().join("pg"));
    assert_eq!(with_sqlite.len(), with_pg.len());
    for ((step, a), (_, b)) in with_sqlite.iter().zip(&with_pg) {
        let a = a.replace(dir.path().join("sqlite").to_str().unwrap(), "DIR");
        let b = b.replace(dir.path().join("pg").to_str().unwrap(), "DIR");
        assert_eq!(a, b, "{step} differs");
    }
    // The session did what it says: answered from the store, suppressed, changed.
    let steps: std::collections::HashMap<_, _> = with_pg.into_iter().collect();
    assert!(steps["second verify"].contains("\"cached_rows\":14"));
    assert!(steps["verify after suppressions"].contains("suppressed"));
    assert!(steps["suppress export"].contains("ada@ok.lab.test,asked us to stop"));
    assert!(!steps["suppress export after"].contains("ada@ok.lab.test"));
    let mut c = db.client();
    let bounces: i64 = c
        .query_one("SELECT count(*) FROM prebounce.bounces", &[])
        .unwrap()
        .get(0);
    assert!(bounces > 300, "{bounces}");
}

fn access() -> StoreAccess {
    StoreAccess::default()
}

#[test]
fn the_workers_of_one_job_open_one_run_however_many_start_at_once() {
    let _turn = lab_turn();
    let db = Db::new("runs");
    // The tables exist before the race, as a job's submit leaves them; the race is the run's.
    drop(Store::open(Path::new(&db.url), access()).unwrap());
    let ids: Vec<i64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                s.spawn(|| {
                    let store = Store::open(Path::new(&db.url), access()).unwrap();
                    store.begin_run("job 1 submitted at 5 µs", 0).unwrap().id
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    // First opens racing each other create the tables once.
    let fresh = Db::new("firstopen");
    std::thread::scope(|s| {
        for _ in 0..6 {
            s.spawn(|| Store::open(Path::new(&fresh.url), access()).unwrap());
        }
    });
}

fn record(key: &str, reason: Reason, detail: &str) -> Record {
    Record {
        key: key.to_owned(),
        reason,
        detail: detail.to_owned(),
        mx: Some("mx.q.test".to_owned()),
        level: Level::Smtp,
        verified_at: T0,
        reply: Some((550, format!("5.1.1 <{key}> unknown"))),
    }
}

/// Runs committing the same addresses in different orders at once wait for each other, never
/// deadlock; an address twice in one batch keeps its last verdict; a NUL a server sent is
/// stored (PostgreSQL's text cannot hold one) as U+FFFD.
#[test]
fn concurrent_writers_of_the_same_addresses_never_deadlock() {
    let _turn = lab_turn();
    let db = Db::new("writers");
    let keys: Vec<String> = (0..3000)
        .map(|i| format!("u{i}@w{}.test", i % 37))
        .collect();
    std::thread::scope(|s| {
        for w in 0..4usize {
            let (keys, url) = (&keys, &db.url);
            s.spawn(move || {
                let store = Store::open(Path::new(url), access()).unwrap();
                let run = store.begin_run(&format!("writer {w}"), 0).unwrap().id;
                let writer = StoreWriter::spawn(
                    store,
                    RunStamp {
                        run,
                        under: DecidedUnder::default(),
                    },
                    true,
                )
                .unwrap();
                let tx = writer.sender();
                for round in 0..5usize {
                    // Each writer its own order: reversed, rotated.
                    let mut batch: Vec<Record> = keys
                        .iter()
                        .map(|k| record(k, Reason::MailboxNotFound, "gone"))
                        .collect();
                    batch.rotate_left((w * 997 + round * 131) % keys.len());
                    if w % 2 == 1 {
                        batch.reverse();
                    }
                    tx.send(Write::Verdicts {
                        addresses: batch,
                        dns: Vec::new(),
                        domains: Vec::new(),
                    })
                    .unwrap();
                }
                drop(tx);
                assert_eq!(writer.finish().unwrap(), 5 * keys.len() as u64);
            });
        }
    });
    let store = Store::open(Path::new(&db.url), access()).unwrap();
    let run = store.begin_run("last", 0).unwrap().id;
    let writer = StoreWriter::spawn(
        store,
        RunStamp {
            run,
            under: DecidedUnder::default(),
        },
        false,
    )
    .unwrap();
    writer
        .sender()
        .send(Write::Verdicts {
            addresses: vec![
                record("u1@w1.test", Reason::MailboxNotFound, "first"),
                record("u1@w1.test", Reason::MailboxAccepted, "said\0this"),
            ],
            dns: Vec::new(),
            domains: Vec::new(),
        })
        .unwrap();
    writer.finish().unwrap();
    let store = Store::open(Path::new(&db.url), access()).unwrap();
    let prior = store.lookup("u1@w1.test").unwrap().unwrap();
    assert_eq!(prior.reason, Reason::MailboxAccepted);
    assert_eq!(prior.detail, "said\u{fffd}this");
    // The earlier run's verdict is the previous one.
    assert_eq!(
        prior.previous.map(|p| p.reason),
        Some(Reason::MailboxNotFound)
    );
    let mut c = db.client();
    let (addresses, suppressed): (i64, i64) = {
        let r = c
            .query_one(
                "SELECT (SELECT count(*) FROM prebounce.addresses),
                        (SELECT count(*) FROM prebounce.suppressions)",
                &[],
            )
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(addresses, keys.len() as i64);
    // --suppress-invalid put each invalid address on the list once.
    assert_eq!(suppressed, keys.len() as i64);
}

fn verify_with_store(store: &str, dir: &Path) -> Output {
    let list = write_list(dir, "list.csv", &["a@ok.lab.test".to_owned()]);
    run_with(&strings(&[
        "verify",
        list.to_str().unwrap(),
        "--level",
        "dns",
        "--dns-server",
        DNS,
        "--allow-reserved-domains",
        "--allow-private-mx",
        "--store",
        store,
        "-o",
        dir.join("out").to_str().unwrap(),
        "--force",
        "-q",
    ]))
}

#[test]
fn a_store_that_cannot_be_used_is_said_clearly_without_its_password() {
    let _turn = lab_turn();
    let db = Db::new("refused");
    let dir = tempfile::tempdir().unwrap();
    let (head, name) = db.url.rsplit_once('/').unwrap();
    // A wrong password: exit 2, the URL shown masked.
    let (user, host) = head.split_once('@').unwrap();
    let wrong = format!(
        "{}:not-the-password@{host}/{name}",
        user.rsplit_once(':').unwrap().0
    );
    let o = verify_with_store(&wrong, dir.path());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("cannot connect to the store"), "{e}");
    assert!(e.contains(":***@"), "{e}");
    assert!(!e.contains("not-the-password"), "{e}");
    // Nothing listens there: exit 2 at once.
    let o = verify_with_store("postgres://prebounce:secret@127.77.8.1:1/none", dir.path());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(!stderr(&o).contains("secret"), "{}", stderr(&o));
    // Another program's tables of the same names: left as they are.
    let mut c = db.client();
    c.batch_execute("CREATE SCHEMA prebounce; CREATE TABLE prebounce.addresses (x int)")
        .unwrap();
    let o = verify_with_store(&db.url, dir.path());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("is not a prebounce store"),
        "{}",
        stderr(&o)
    );
    assert!(!stderr(&o).contains("lab-pg-pass"), "{}", stderr(&o));
    // A store a newer prebounce wrote.
    c.batch_execute("DROP SCHEMA prebounce CASCADE").unwrap();
    let o = verify_with_store(&db.url, dir.path());
    assert!(o.status.success(), "{}", stderr(&o));
    c.batch_execute("UPDATE prebounce.store_version SET version = 99")
        .unwrap();
    let o = verify_with_store(&db.url, dir.path());
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("newer prebounce"), "{}", stderr(&o));
}

/// A role that may read the store and not change it (a team's dashboards): `suppress list`
/// works, a write is refused in one line (exit 2), and opening the store changes nothing.
#[test]
fn a_role_that_may_only_read_lists_and_is_refused_writes() {
    let _turn = lab_turn();
    let db = Db::new("reader");
    let o = run(
        &["suppress", "add", "gone@example.test", "--store", &db.url],
        b"",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let role = format!("pb_reader_{}", std::process::id());
    let mut c = db.client();
    c.batch_execute(&format!(
        "DROP ROLE IF EXISTS {role};
         CREATE ROLE {role} LOGIN PASSWORD 'reader-pass';
         GRANT CONNECT ON DATABASE {db} TO {role};
         GRANT USAGE ON SCHEMA prebounce TO {role};
         GRANT SELECT ON ALL TABLES IN SCHEMA prebounce TO {role};",
        db = db.name
    ))
    .unwrap();
    let (_, host) = db.url.split_once('@').unwrap();
    let reader = format!("postgres://{role}:reader-pass@{host}");
    let o = run(&["suppress", "list", "--store", &reader], b"");
    let listed = String::from_utf8_lossy(&o.stdout).into_owned();
    let refused = run(
        &["suppress", "add", "other@example.test", "--store", &reader],
        b"",
    );
    // The role's grants go with the database; then the role itself.
    drop(c);
    drop(db);
    let admin = std::env::var("PREBOUNCE_PG_URL").unwrap_or_else(|_| PG_ADMIN.to_owned());
    postgres::Client::connect(&admin, postgres::NoTls)
        .unwrap()
        .batch_execute(&format!("DROP ROLE {role}"))
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(listed.contains("gone@example.test"), "{listed}");
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("read-only"),
        "{}",
        stderr(&refused)
    );
    assert!(
        !stderr(&refused).contains("reader-pass"),
        "{}",
        stderr(&refused)
    );
}
