//! The distributed mode against the lab (issue #18): a PostgreSQL queue (lab/pg, started by
//! lab/up), workers probing the lab's Postfix from their own loopback source addresses
//! (127.77.9.N, which no lab server uses), `status` and `collect`. Each test has a database of
//! its own. What is checked comes from the servers' own records: Postfix's log for who
//! connected, how many at once, and how many RCPTs were sent.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const DNS: &str = "127.77.0.1";

/// What `path` gained since `from`, read from there (the lab's log is large).
fn tail(path: &Path, from: usize) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let mut text = Vec::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.seek(SeekFrom::Start(from as u64));
        let _ = f.read_to_end(&mut text);
    }
    String::from_utf8_lossy(&text).into_owned()
}

fn maillog() -> PathBuf {
    lab_dir().join("postfix/maillog")
}

/// `users` mailboxes that exist and `unknown` that do not at each of q`from`..q`to`.queue.test
/// (served by Postfix's normal listener, 127.77.3.1).
fn queue_list(from: u32, to: u32, users: u32, unknown: u32) -> Vec<String> {
    let mut out = Vec::new();
    for d in from..=to {
        for i in 1..=users {
            out.push(format!("user{i:04}@q{d:02}.queue.test"));
        }
        for i in 1..=unknown {
            out.push(format!("nobody{i}@q{d:02}.queue.test"));
        }
    }
    out
}

/// A job's options at level smtp; `store` None: the queue's database is the job's store.
fn job_options(sender: &str, store: Option<&Path>) -> Vec<String> {
    let mut options = [
        "--level",
        "smtp",
        "--from",
        sender,
        "--dns-server",
        DNS,
        "--allow-reserved-domains",
        "--allow-private-mx",
    ]
    .map(String::from)
    .to_vec();
    if let Some(store) = store {
        options.extend(["--store".to_owned(), store.display().to_string()]);
    }
    options
}

fn submit(db: &Db, list: &Path, unit_size: u32, options: &[String]) -> String {
    let mut args = vec![
        "submit".to_owned(),
        list.display().to_string(),
        "--queue".to_owned(),
        db.url.clone(),
        "--unit-size".to_owned(),
        unit_size.to_string(),
    ];
    args.extend(options.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let o = run(&args, b"");
    assert!(o.status.success(), "{}", stderr(&o));
    let id = String::from_utf8(o.stdout).unwrap();
    // The job's id alone on stdout.
    assert!(id.trim().parse::<i64>().is_ok(), "{id:?}");
    id.trim().to_owned()
}

fn worker(db: &Db, n: u32, extra: &[&str]) -> Child {
    prebounce()
        .args([
            "worker",
            "--queue",
            &db.url,
            "--source-ip",
            &format!("127.77.9.{n}"),
            "--name",
            &format!("w{n}"),
            "-q",
        ])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn a worker")
}

fn finish(mut child: Child) {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                use std::io::Read;
                let _ = e.read_to_string(&mut err);
            }
            assert!(status.success(), "worker failed: {status}\n{err}");
            return;
        }
        assert!(Instant::now() < deadline, "a worker did not finish");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn status(db: &Db, job: &str) -> serde_json::Value {
    let o = run(&["status", job, "--queue", &db.url, "--json"], b"");
    assert!(o.status.success(), "{}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

fn collect(db: &Db, job: &str, out: &Path) {
    let o = run(
        &[
            "collect",
            job,
            "--queue",
            &db.url,
            "-o",
            out.to_str().unwrap(),
            "-q",
        ],
        b"",
    );
    assert!(o.status.success(), "{}", stderr(&o));
}

/// The most connections from `clients` open at once at the normal listener, in the order
/// Postfix logged its connects and disconnects.
fn most_open_at_once(log: &str, clients: &str) -> (u32, Vec<String>) {
    let (mut open, mut most) = (0i32, 0i32);
    let mut seen = std::collections::BTreeSet::new();
    for line in log.lines().filter(|l| l.contains("postfix/normal/smtpd[")) {
        let Some(client) = line
            .split("connect from unknown[")
            .nth(1)
            .and_then(|r| r.split(']').next())
        else {
            continue;
        };
        if !client.starts_with(clients) {
            continue;
        }
        if line.contains(": connect from") {
            seen.insert(client.to_owned());
            open += 1;
            most = most.max(open);
        } else if line.contains(": disconnect from") {
            open -= 1;
        }
    }
    (most as u32, seen.into_iter().collect())
}

/// The RCPT lines of a log, for a failure's message.
fn rcpt_lines(log: &str) -> String {
    log.lines()
        .filter(|l| l.contains("info: RCPT from") && l.contains(".queue.test>"))
        .map(|l| l.split("RCPT from ").nth(1).unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

fn same_lists(a: &Path, b: &Path) {
    for list in LISTS {
        assert_eq!(
            std::fs::read(a.join(list)).unwrap(),
            std::fs::read(b.join(list)).unwrap(),
            "{list} differs between {} and {}",
            a.display(),
            b.display()
        );
    }
}

#[test]
fn three_workers_two_jobs_one_budget_per_server() {
    let _turn = lab_turn();
    let db = Db::new("budget");
    let dir = tempfile::tempdir().unwrap();
    let sender = fresh_sender("queue");
    let options = job_options(&sender, Some(&dir.path().join("store.sqlite3")));
    // Two jobs at once, both at the one server: its budget (4 connections, the default
    // --per-host) is shared by every worker of both.
    let first = write_list(dir.path(), "first.csv", &queue_list(1, 12, 20, 5));
    let second = write_list(dir.path(), "second.csv", &queue_list(13, 24, 20, 5));
    let from = offset(&maillog());
    let jobs = [
        submit(&db, &first, 100, &options),
        submit(&db, &second, 100, &options),
    ];
    // A unit at a time each, so that each worker gets some of the six units.
    let workers: Vec<Child> = (1..=3)
        .map(|n| worker(&db, n, &["--exit-when-idle", "--units", "1"]))
        .collect();
    workers.into_iter().for_each(finish);
    let log = tail(&maillog(), from);
    let (most, clients) = most_open_at_once(&log, "127.77.9.");
    assert!(
        most <= 4,
        "{most} connections at once to one server (limit 4)"
    );
    // Each worker probed from its own address.
    assert_eq!(clients, ["127.77.9.1", "127.77.9.2", "127.77.9.3"]);
    for (job, list) in jobs.iter().zip([&first, &second]) {
        let s = status(&db, job);
        assert_eq!(s["state"], "done", "{s}");
        assert_eq!(s["servers"], 1);
        assert_eq!(s["addresses_done"], 300);
        assert!(s["units"]["smtp"]["done"].as_i64().unwrap() >= 3, "{s}");
        let out = dir.path().join(format!("job-{job}"));
        collect(&db, job, &out);
        // What one machine's verify of the list writes.
        let single = dir.path().join(format!("single-{job}"));
        verify_in_lab(list, &single, Some(&sender), &[]);
        same_lists(&out, &single);
        assert_eq!(list_rows(&out, "valid.csv").len(), 240);
        assert_eq!(list_rows(&out, "invalid.csv").len(), 60);
    }
}

#[test]
fn a_killed_worker_costs_at_most_its_sessions_in_flight() {
    let _turn = lab_turn();
    let db = Db::new("kill");
    let dir = tempfile::tempdir().unwrap();
    let sender = fresh_sender("queuekill");
    // The job's store is the queue's database (no --store): the killed worker's committed
    // sessions are there for the one that takes its unit over.
    let mut options = job_options(&sender, None);
    // Slow RCPTs are not needed: a session is 20 recipients, and the kill comes once the
    // first sessions of the worker's unit are in Postfix's log.
    options.extend(["--rcpt-per-session".to_owned(), "20".to_owned()]);
    let emails = queue_list(25, 32, 20, 5);
    let list = write_list(dir.path(), "list.csv", &emails);
    let from = offset(&maillog());
    let job = submit(&db, &list, 200, &options);
    let mut doomed = worker(&db, 4, &["--lease", "3s"]);
    // Killed in the middle of its work: some sessions done (and committed), others in flight.
    let deadline = Instant::now() + Duration::from_secs(60);
    while tail(&maillog(), from)
        .matches("[127.77.9.4]: rcpt;")
        .count()
        < 60
    {
        assert!(Instant::now() < deadline, "the worker never probed");
        std::thread::sleep(Duration::from_millis(5));
    }
    doomed.kill().unwrap();
    doomed.wait().unwrap();
    let rescuer = worker(&db, 5, &["--exit-when-idle", "--lease", "3s"]);
    finish(rescuer);
    let s = status(&db, &job);
    assert_eq!(s["state"], "done", "{s}");
    let out = dir.path().join("out");
    collect(&db, &job, &out);
    // No row lost or doubled.
    let mut rows: Vec<String> = LISTS
        .iter()
        .flat_map(|l| column(&out, l, "email"))
        .collect();
    rows.sort();
    let mut expected = emails.clone();
    expected.sort();
    assert_eq!(rows, expected);
    assert_eq!(list_rows(&out, "valid.csv").len(), 160);
    assert_eq!(list_rows(&out, "invalid.csv").len(), 40);
    // RCPTs sent, from Postfix's log: the addresses, a canary a domain, and at most the killed
    // worker's sessions in flight (4 connections × 20 recipients) again.
    let log = tail(&maillog(), from);
    let rcpts = log
        .lines()
        .filter(|l| l.contains("info: RCPT from") && l.contains(".queue.test>"))
        .count();
    let canaries = 8;
    assert!(
        rcpts <= emails.len() + canaries + 4 * 20,
        "{rcpts} RCPTs for {} addresses: {}",
        emails.len(),
        rcpt_lines(&log)
    );
    // The rescuer did not ask again what the killed worker had committed.
    let killed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("[127.77.9.4]: rcpt;"))
        .collect();
    let rescued = log
        .lines()
        .filter(|l| l.contains("[127.77.9.5]: rcpt;") && l.contains(".queue.test>"))
        .count();
    assert!(
        rescued + killed.len() <= emails.len() + 2 * canaries + 4 * 20,
        "the killed worker sent {}, the rescuer {rescued}",
        killed.len()
    );
}

#[test]
fn workers_carry_on_after_postgres_restarts() {
    let _turn = lab_turn();
    let db = Db::new("restart");
    let dir = tempfile::tempdir().unwrap();
    let sender = fresh_sender("queuerestart");
    // The queue is the job's store too: both connections of each worker are cut.
    let options = job_options(&sender, None);
    let emails = queue_list(33, 40, 20, 5);
    let list = write_list(dir.path(), "list.csv", &emails);
    let job = submit(&db, &list, 25, &options);
    let workers: Vec<Child> = (6..=7)
        .map(|n| worker(&db, n, &["--exit-when-idle", "--lease", "5s"]))
        .collect();
    // Restart once some units are done and others not.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = status(&db, &job);
        if s["units"]["smtp"]["done"].as_i64().unwrap_or(0) >= 1 {
            break;
        }
        assert!(Instant::now() < deadline, "no unit got done: {s}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let pg = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("lab/pg"))
        .arg("restart")
        .output()
        .unwrap();
    assert!(
        pg.status.success(),
        "{}",
        String::from_utf8_lossy(&pg.stderr)
    );
    workers.into_iter().for_each(finish);
    let s = status(&db, &job);
    assert_eq!(s["state"], "done", "{s}");
    let out = dir.path().join("out");
    collect(&db, &job, &out);
    let mut rows: Vec<String> = LISTS
        .iter()
        .flat_map(|l| column(&out, l, "email"))
        .collect();
    rows.sort();
    let mut expected = emails;
    expected.sort();
    assert_eq!(rows, expected);
    assert_eq!(list_rows(&out, "valid.csv").len(), 160);
    // The verdicts are in the queue's database, under one run for the job, and the job does
    // not keep the URL (with its password) of the store it is.
    let mut c = db.client();
    let stored: i64 = c
        .query_one("SELECT count(*) FROM prebounce.addresses", &[])
        .unwrap()
        .get(0);
    assert_eq!(stored, expected.len() as i64);
    let runs: i64 = c
        .query_one("SELECT count(DISTINCT run) FROM prebounce.addresses", &[])
        .unwrap()
        .get(0);
    assert_eq!(runs, 1);
    let store: String = c
        .query_one("SELECT store FROM prebounce.jobs", &[])
        .unwrap()
        .get(0);
    assert_eq!(store, "");
}

#[test]
fn a_unit_that_keeps_failing_is_given_up_and_reported() {
    let _turn = lab_turn();
    let db = Db::new("poison");
    let dir = tempfile::tempdir().unwrap();
    let list = write_list(dir.path(), "list.csv", &queue_list(1, 4, 3, 1));
    let store = dir.path().join("store.sqlite3");
    let job = submit(
        &db,
        &list,
        4,
        &[
            "--dns-server",
            DNS,
            "--allow-reserved-domains",
            "--allow-private-mx",
            "--store",
            store.to_str().unwrap(),
        ]
        .map(String::from),
    );
    // Poison: one unit of a kind no worker can do (as a newer prebounce might queue).
    let poisoned: i64 = db
        .client()
        .query_one(
            "UPDATE prebounce.units SET kind = 'from-the-future'
             WHERE id = (SELECT min(id) FROM prebounce.units WHERE job = $1) RETURNING id",
            &[&job.parse::<i64>().unwrap()],
        )
        .unwrap()
        .get(0);
    finish(worker(&db, 8, &["--exit-when-idle"]));
    let s = status(&db, &job);
    assert_eq!(s["state"], "failed", "{s}");
    // Tried 3 times, then reported; the other units were done.
    assert_eq!(s["failed_units"].as_array().unwrap().len(), 1, "{s}");
    let failed = &s["failed_units"][0];
    assert_eq!(failed["unit"], poisoned);
    assert_eq!(failed["attempts"], 3, "{s}");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("from-the-future"),
        "{failed}"
    );
    assert_eq!(s["units"]["dns"]["done"], 3, "{s}");
    // collect says so instead of writing lists.
    let out = dir.path().join("out");
    let o = run(
        &[
            "collect",
            &job,
            "--queue",
            &db.url,
            "-o",
            out.to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("from-the-future"), "{}", stderr(&o));
    assert!(!out.join("valid.csv").exists());
}

#[test]
fn a_stopped_worker_hands_its_units_back_and_exits_0() {
    let _turn = lab_turn();
    let db = Db::new("sigterm");
    let dir = tempfile::tempdir().unwrap();
    let sender = fresh_sender("queueterm");
    let emails = queue_list(1, 8, 20, 5);
    let list = write_list(dir.path(), "list.csv", &emails);
    // Four units of one server: the worker's four slots take them side by side, within the
    // server's one budget.
    let job = submit(
        &db,
        &list,
        50,
        &job_options(&sender, Some(&dir.path().join("store.sqlite3"))),
    );
    let from = offset(&maillog());
    let mut w = worker(&db, 10, &[]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !tail(&maillog(), from).contains("[127.77.9.10]: rcpt;") {
        assert!(Instant::now() < deadline, "the worker never probed");
        std::thread::sleep(Duration::from_millis(5));
    }
    let term = Command::new("kill")
        .args(["-TERM", &w.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let status_of_worker = w.wait().unwrap();
    assert!(status_of_worker.success(), "{status_of_worker}");
    // Its units in flight are queued again, no attempt counted (a unit it finished before the
    // signal keeps its one), and another worker finishes the job.
    let s = status(&db, &job);
    assert_eq!(s["state"], "running", "{s}");
    let smtp = &s["units"]["smtp"];
    assert!(smtp["queued"].as_i64().unwrap() >= 1, "{s}");
    assert_eq!(smtp["running"].as_i64().unwrap_or(0), 0, "{s}");
    let attempts: i64 = db
        .client()
        .query_one(
            "SELECT coalesce(sum(attempts), 0)::int8 FROM prebounce.units
             WHERE kind = 'smtp' AND state = 'queued'",
            &[],
        )
        .unwrap()
        .get(0);
    let units: Vec<(String, i32)> = db
        .client()
        .query(
            "SELECT state, attempts FROM prebounce.units WHERE kind = 'smtp' ORDER BY id",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(attempts, 0, "units (state, attempts): {units:?}");
    finish(worker(&db, 11, &["--exit-when-idle"]));
    assert_eq!(status(&db, &job)["state"], "done");
    let (most, _) = most_open_at_once(&tail(&maillog(), from), "127.77.9.");
    assert!(
        most <= 4,
        "{most} connections at once to one server (limit 4)"
    );
}

#[test]
fn collect_waits_for_nothing_and_submit_refuses_local_options() {
    let db = Db::new("usage");
    let dir = tempfile::tempdir().unwrap();
    let list = write_list(dir.path(), "list.csv", &queue_list(1, 1, 2, 0));
    let store = dir.path().join("store.sqlite3");
    // A provider table this machine has and the workers' machines do not: the job carries it.
    let providers = dir.path().join("providers.toml");
    std::fs::write(
        &providers,
        "[[provider]]\nid = \"queuelab\"\nname = \"Queue lab\"\nmx = [\"mx.queue.test\"]\n\
         domains = []\nconnections = 2\npause_ms = 100\nrcpt_per_transaction = 20\n\
         accepts_all = false\nshared_backoff = false\n",
    )
    .unwrap();
    let options = [
        "--dns-server",
        DNS,
        "--allow-reserved-domains",
        "--allow-private-mx",
        "--store",
        store.to_str().unwrap(),
        "--providers",
        providers.to_str().unwrap(),
    ]
    .map(String::from);
    let job = submit(&db, &list, 100, &options);
    std::fs::remove_file(&providers).unwrap();
    // No worker yet: the job is not finished.
    let out = dir.path().join("out");
    let o = run(
        &[
            "collect",
            &job,
            "--queue",
            &db.url,
            "-o",
            out.to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--wait"), "{}", stderr(&o));
    let s = status(&db, &job);
    assert_eq!(s["state"], "running");
    assert_eq!(s["units"]["dns"]["queued"], 1);
    // The lists are collect's to write.
    let o = run(
        &[
            "submit",
            list.to_str().unwrap(),
            "--queue",
            &db.url,
            "-o",
            out.to_str().unwrap(),
        ],
        b"",
    );
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("collect"), "{}", stderr(&o));
    // A wrong password: exit 2, and the password is never printed.
    let bad = db.url.replace("lab-pg-pass", "wrong-pass-xyz");
    let o = run(&["status", &job, "--queue", &bad], b"");
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(!stderr(&o).contains("wrong-pass-xyz"), "{}", stderr(&o));
    // A worker finishes it (level dns), and collect --wait then writes the lists.
    finish(worker(&db, 9, &["--exit-when-idle"]));
    let o = run(
        &[
            "collect",
            &job,
            "--queue",
            &db.url,
            "-o",
            out.to_str().unwrap(),
            "--wait",
            "-q",
        ],
        b"",
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(list_rows(&out, "valid.csv").len(), 2);
    assert_eq!(
        column(&out, "valid.csv", "prebounce_provider"),
        ["queuelab", "queuelab"]
    );
    // The job's network work, summed over its units.
    assert!(
        status(&db, &job)["network"]["dns_queries"]
            .as_i64()
            .unwrap()
            > 0
    );
}

/// A server one worker gave up on (it failed every session) is skipped by the others for a
/// while, instead of each failing there in turn; other servers are not affected, and with
/// `--per-source` another source address still tries it.
#[test]
fn a_server_one_worker_gave_up_is_skipped_by_the_others() {
    use prebounce::queue::budget::PgBudget;
    use prebounce::smtp::budget::{BudgetRefusal, SharedBudget};
    use prebounce::smtp::outbound::Egress;
    use std::net::IpAddr;

    let db = Db::new("giveup");
    drop(prebounce::queue::db::Queue::connect(&db.url).unwrap());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (dead, alive): (IpAddr, IpAddr) = (
        "127.77.3.99".parse().unwrap(),
        "127.77.3.1".parse().unwrap(),
    );
    let (one, other) = (
        Egress::Source("127.77.9.1".parse().unwrap()),
        Egress::Source("127.77.9.2".parse().unwrap()),
    );
    // Asks `budget` for a place at `server` from `egress` until `done` says yes (the give-up
    // is recorded in the background).
    let ask_until = |budget: &PgBudget,
                     egress: &Egress,
                     server: IpAddr,
                     done: &dyn Fn(&Result<_, BudgetRefusal>) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = runtime.block_on(budget.open(egress, server, 4, Duration::ZERO));
            if done(&got) {
                return got;
            }
            assert!(Instant::now() < deadline, "{got:?}");
            drop(got);
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    let first = PgBudget::connect(&db.url, false).unwrap();
    let second = PgBudget::connect(&db.url, false).unwrap();
    assert!(ask_until(&second, &other, dead, &|g| g.is_ok()).is_ok());
    first.give_up(
        &one,
        dead,
        "connection refused 3 times",
        Duration::from_secs(60),
    );
    let refused = ask_until(&second, &other, dead, &|g| g.is_err());
    assert_eq!(
        refused.err(),
        Some(BudgetRefusal::GivenUp("connection refused 3 times".into()))
    );
    assert!(ask_until(&second, &other, alive, &|g| g.is_ok()).is_ok());
    // Counted per source: the source that gave up skips it, another still asks.
    let per_one = PgBudget::connect(&db.url, true).unwrap();
    let per_other = PgBudget::connect(&db.url, true).unwrap();
    per_one.give_up(&one, alive, "timeouts", Duration::from_secs(60));
    assert!(ask_until(&per_one, &one, alive, &|g| g.is_err()).is_err());
    assert!(ask_until(&per_other, &other, alive, &|g| g.is_ok()).is_ok());
}

/// Submit queues only what the store does not answer; the collect, however late it comes,
/// answers those addresses as submit judged them (as of the job's submission) and the rest
/// from the units' verdicts, so it never verifies anything itself (from its own machine,
/// outside the shared budget), even past `--max-age` of what was stored.
#[test]
fn the_collect_answers_what_submit_and_the_units_answered_however_late_it_comes() {
    let _turn = lab_turn();
    let db = Db::new("asof");
    let dir = tempfile::tempdir().unwrap();
    let emails: Vec<String> = ["ok", "nullmx", "missing", "implicit", "backup", "cname"]
        .iter()
        .map(|d| format!("someone@{d}.lab.test"))
        .collect();
    let list = write_list(dir.path(), "list.csv", &emails);
    let options = strings(&[
        "--level",
        "dns",
        "--dns-server",
        DNS,
        "--allow-reserved-domains",
        "--allow-private-mx",
    ]);
    let verify = |list: &Path, out: &str, store: &[&str]| {
        let mut args = strings(&["verify", list.to_str().unwrap(), "-q", "--force", "-o"]);
        args.push(dir.path().join(out).display().to_string());
        args.extend(strings(store));
        args.extend(options.iter().cloned());
        let o = run(&args.iter().map(String::as_str).collect::<Vec<_>>(), b"");
        assert!(o.status.success(), "{}", stderr(&o));
    };
    // Half the list's verdicts stored a moment before the job, in the queue's database (the
    // job's store).
    let half = write_list(dir.path(), "half.csv", &emails[..3]);
    verify(&half, "half", &["--store", &db.url]);
    let stored_at = Instant::now();
    let mut job_options = options.clone();
    job_options.extend(strings(&["--max-age", "4s"]));
    let job = submit(&db, &list, 100, &job_options);
    let s = status(&db, &job);
    assert_eq!(s["addresses"], 3, "only the rest is queued: {s}");
    finish(worker(&db, 12, &["--exit-when-idle"]));
    let s = status(&db, &job);
    assert_eq!(s["state"], "done", "{s}");
    // Past --max-age of the stored verdicts: the collect still answers from them.
    std::thread::sleep(Duration::from_secs(5).saturating_sub(stored_at.elapsed()));
    let out = dir.path().join("out");
    collect(&db, &job, &out);
    let collected = summary(&out);
    assert_eq!(collected["dns"]["queries"], 0, "{collected}");
    assert_eq!(collected["store"]["cached_rows"], 3, "{collected}");
    verify(&list, "single", &["--no-store"]);
    for list in LISTS {
        assert_eq!(
            column(&out, list, "email"),
            column(&dir.path().join("single"), list, "email"),
            "{list}"
        );
    }
}
