//! The bounce loop end to end, with the real binary: a generic CSV export imported, the
//! report read back by provider and by the sent list's source, the forecast calibrated and its
//! priors used by `verify`, and soft bounces flagged on a later run.

mod common;

use std::path::{Path, PathBuf};

use common::{column, run, stderr, summary};

/// 2026-11-30 00:00 UTC: the clock of the commands that read ages.
const NOW: i64 = 1_796_000_000;

fn ok(args: &[&str]) -> std::process::Output {
    let out = run(args, b"");
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    out
}

fn json(out: &std::process::Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).expect("one JSON object on stdout")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("a file");
    path
}

fn s(p: &Path) -> &str {
    p.to_str().expect("a UTF-8 path")
}

/// Events of one send: 14 delivered (at x.test and gmail.com), a hard bounce at Gmail, six
/// blocks of the sender by Microsoft's servers, and a full mailbox.
fn one_send(dir: &Path) -> PathBuf {
    let mut text = String::from("email,type,status,diagnostic,date,mx,id\n");
    for i in 0..14 {
        let domain = if i % 2 == 0 { "x.test" } else { "gmail.com" };
        text.push_str(&format!(
            "ok{i}@{domain},delivered,,250 2.0.0 OK,2026-11-20T10:00:00Z,,d{i}\n"
        ));
    }
    text.push_str(
        "gone@gmail.com,bounce,5.1.1,550 5.1.1 The email account that you tried to reach does not exist,2026-11-20T10:01:00Z,gmail-smtp-in.l.google.com,h1\n",
    );
    for i in 0..6 {
        text.push_str(&format!(
            "user{i}@corp.test,bounce,5.7.1,\"550 5.7.1 Service unavailable, Client host [192.0.2.1] blocked using Spamhaus\",2026-11-21T10:00:00Z,corp-test.mail.protection.outlook.com,b{i}\n"
        ));
    }
    text.push_str("full@x.test,soft,4.2.2,452 4.2.2 Mailbox full,2026-11-22T10:00:00Z,,s1\n");
    write(dir, "events.csv", &text)
}

#[test]
fn a_csv_export_suppresses_the_hard_bounce_only_and_a_second_import_changes_nothing() {
    let dir = tempfile::tempdir().expect("a folder");
    let store = dir.path().join("store.sqlite3");
    let events = one_send(dir.path());
    let first = json(&ok(&[
        "bounces",
        "import",
        s(&events),
        "--store",
        s(&store),
        "--json",
    ]));
    let summary = &first["summary"];
    assert_eq!(summary["records"], 22, "{summary}");
    assert_eq!(summary["by_kind"]["block"], 6, "{summary}");
    let list =
        String::from_utf8(ok(&["suppress", "export", "--store", s(&store)]).stdout).expect("UTF-8");
    let entries: Vec<&str> = list
        .lines()
        .skip(1)
        .map(|l| l.split(',').next().expect("an entry"))
        .collect();
    // Blocks of the sender never suppress; one full mailbox is under the limit.
    assert_eq!(entries, ["gone@gmail.com"], "{list}");
    assert!(
        list.contains("5.1.1") && list.contains("2026-11-20"),
        "{list}"
    );
    let again = json(&ok(&[
        "bounces",
        "import",
        s(&events),
        "--store",
        s(&store),
        "--json",
    ]));
    assert_eq!(again["summary"]["new_records"], 0, "{again}");
    assert_eq!(
        again["summary"]["suppressions_added"]["total"], 0,
        "{again}"
    );
}

#[test]
fn the_report_finds_the_provider_that_blocks_and_rates_from_the_deliveries() {
    let dir = tempfile::tempdir().expect("a folder");
    let store = dir.path().join("store.sqlite3");
    let events = one_send(dir.path());
    ok(&["bounces", "import", s(&events), "--store", s(&store)]);
    let out_dir = dir.path().join("report");
    std::fs::create_dir(&out_dir).expect("a folder");
    // A link planted at the page's name is replaced, not written through.
    let victim = write(dir.path(), "victim.txt", "keep me");
    #[cfg(unix)]
    std::os::unix::fs::symlink(&victim, out_dir.join("bounce-report.html")).expect("a link");
    let clock = NOW.to_string();
    let out = ok(&[
        "bounces",
        "report",
        "--store",
        s(&store),
        "--clock",
        &clock,
        "--json",
        "-o",
        s(&out_dir),
    ]);
    let r = json(&out);
    assert_eq!(r["sent"], 22, "{r}");
    assert_eq!(r["sent_from"], "events");
    let totals = &r["totals"];
    assert_eq!(
        (
            &totals["hard"],
            &totals["soft"],
            &totals["block"],
            &totals["delivered"]
        ),
        (
            &serde_json::json!(1),
            &serde_json::json!(1),
            &serde_json::json!(6),
            &serde_json::json!(14)
        )
    );
    assert_eq!(r["by_reason"]["hard"]["mailbox-not-found"], 1);
    assert_eq!(r["groups"][0]["group"], "Microsoft 365", "{r}");
    assert_eq!(r["groups"][0]["bounce_rate"], 1.0);
    let findings = r["findings"].to_string();
    assert!(
        findings.contains("only Microsoft 365 rejects you (6 of 6 blocks)"),
        "{findings}"
    );
    assert!(stderr(&out).contains("Microsoft"), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&victim).expect("victim"), "keep me");
    let page = std::fs::read_to_string(out_dir.join("bounce-report.html")).expect("the page");
    assert!(page.contains("only Microsoft 365 rejects you"));
    let on_disk: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out_dir.join("bounce-report.json")).expect("the JSON"),
    )
    .expect("JSON");
    assert_eq!(on_disk, r);
    // Records older than --since are left out.
    let later = (NOW + 40 * 86_400).to_string();
    let r = json(&ok(&[
        "bounces",
        "report",
        "--store",
        s(&store),
        "--clock",
        &later,
        "--json",
    ]));
    assert_eq!(r["records"], 0, "{r}");
    assert_eq!(r["sent"], serde_json::Value::Null);
}

#[test]
fn grouping_by_source_reads_the_sent_list() {
    let dir = tempfile::tempdir().expect("a folder");
    let store = dir.path().join("store.sqlite3");
    let events = one_send(dir.path());
    ok(&["bounces", "import", s(&events), "--store", s(&store)]);
    let clock = NOW.to_string();
    let without = run(
        &[
            "bounces",
            "report",
            "--store",
            s(&store),
            "--clock",
            &clock,
            "--group-by",
            "source",
        ],
        b"",
    );
    assert_eq!(without.status.code(), Some(2), "{}", stderr(&without));
    assert!(stderr(&without).contains("--sent"), "{}", stderr(&without));
    // 40 rows: the Gmail and corp.test addresses came from vendor-a, the rest from vendor-b.
    let mut sent = String::from("Email,source\n");
    sent.push_str("gone@gmail.com,vendor-a\n");
    for i in 0..6 {
        sent.push_str(&format!("USER{i}@corp.test,vendor-a\n"));
    }
    for i in 0..33 {
        sent.push_str(&format!("other{i}@x.test,vendor-b\n"));
    }
    let sent = write(dir.path(), "sent.csv", &sent);
    let r = json(&ok(&[
        "bounces",
        "report",
        "--store",
        s(&store),
        "--clock",
        &clock,
        "--group-by",
        "source",
        "--sent",
        s(&sent),
        "--json",
    ]));
    assert_eq!(r["sent"], 40, "{r}");
    assert_eq!(r["sent_from"], "sent-list");
    let a = &r["groups"][0];
    assert_eq!(a["group"], "vendor-a", "{r}");
    assert_eq!(
        (&a["sent"], &a["hard"], &a["block"], &a["hard_rate"]),
        (
            &serde_json::json!(7),
            &serde_json::json!(1),
            &serde_json::json!(6),
            &serde_json::json!(1.0 / 7.0)
        )
    );
    assert_eq!(r["groups"][1]["group"], "vendor-b", "{r}");
    assert_eq!(r["groups"][1]["sent"], 33, "{r}");
}

#[test]
fn calibration_fits_priors_that_verify_reads() {
    let dir = tempfile::tempdir().expect("a folder");
    let store = dir.path().join("store.sqlite3");
    // A list verified at level syntax: 200 well-formed addresses (predicted 8 % each).
    let mut list = String::from("email,name\n");
    for i in 0..200 {
        list.push_str(&format!("person{i}@example.org,P{i}\n"));
    }
    let list = write(dir.path(), "list.csv", &list);
    let out1 = dir.path().join("out1");
    ok(&[
        "verify",
        s(&list),
        "--level",
        "syntax",
        "--allow-reserved-domains",
        "--store",
        s(&store),
        "--out",
        s(&out1),
        "-q",
        "--progress",
        "never",
    ]);
    // The send: 40 of them hard-bounced (20 %), 160 were delivered.
    let mut events = String::from("email,type,status,diagnostic,date\n");
    for i in 0..200 {
        if i < 40 {
            events.push_str(&format!(
                "person{i}@example.org,bounce,5.1.1,550 5.1.1 user unknown,2026-11-20T10:00:00Z\n"
            ));
        } else {
            events.push_str(&format!(
                "person{i}@example.org,delivered,,250 ok,2026-11-20T10:00:00Z\n"
            ));
        }
    }
    let events = write(dir.path(), "events.csv", &events);
    ok(&["bounces", "import", s(&events), "--store", s(&store)]);
    let priors = dir.path().join("priors.toml");
    let valid = out1.join("valid.csv");
    let c = json(&ok(&[
        "bounces",
        "calibrate",
        "--sent",
        s(&valid),
        "--store",
        s(&store),
        "--write-priors",
        s(&priors),
        "--json",
    ]));
    let row = &c["rows"][0];
    assert_eq!(
        (
            &row["status"],
            &row["reason"],
            &row["sent"],
            &row["hard_bounced"]
        ),
        (
            &serde_json::json!("valid"),
            &serde_json::json!("syntax-ok"),
            &serde_json::json!(200),
            &serde_json::json!(40)
        )
    );
    assert!(
        (row["predicted"].as_f64().unwrap() - 0.08).abs() < 1e-9,
        "{row}"
    );
    assert_eq!(row["observed"], 0.2);
    assert_eq!(row["outside"], true);
    let (low, high) = (row["low"].as_f64().unwrap(), row["high"].as_f64().unwrap());
    assert!(low < 0.2 && 0.2 < high && low > 0.08, "{row}");
    let brier = c["brier"].as_f64().expect("a score");
    let want = (40.0 * 0.92f64.powi(2) + 160.0 * 0.08f64.powi(2)) / 200.0;
    assert!((brier - want).abs() < 1e-9, "{brier} {want}");
    // (40 + 100 × 0.08) / (200 + 100) = 0.16
    let fitted = c["priors"]["syntax-ok"].as_f64().expect("fitted");
    assert!((fitted - 0.16).abs() < 1e-9, "{fitted}");
    let text = std::fs::read_to_string(&priors).expect("the priors file");
    assert!(text.contains("[evidence.reasons.syntax-ok]"), "{text}");
    // The next run, on a fresh list, predicts with the fitted priors. The store's
    // suppressions would answer the bounced addresses: a list of others.
    let mut next = String::from("email\n");
    for i in 0..50 {
        next.push_str(&format!("new{i}@example.org\n"));
    }
    let next = write(dir.path(), "next.csv", &next);
    let out2 = dir.path().join("out2");
    ok(&[
        "verify",
        s(&next),
        "--level",
        "syntax",
        "--allow-reserved-domains",
        "--store",
        s(&store),
        "--out",
        s(&out2),
        "--priors",
        s(&priors),
        "-q",
        "--progress",
        "never",
    ]);
    let p = column(&out2, "valid.csv", "prebounce_bounce_p");
    assert_eq!(p.len(), 50);
    assert!(p.iter().all(|p| p == "0.1600"), "{p:?}");
    assert_eq!(summary(&out2)["priors"], s(&priors));
    // Without prebounce's columns there is nothing to calibrate: exit 2 saying so.
    let bad = run(
        &[
            "bounces",
            "calibrate",
            "--sent",
            s(&list),
            "--store",
            s(&store),
        ],
        b"",
    );
    assert_eq!(bad.status.code(), Some(2), "{}", stderr(&bad));
    assert!(
        stderr(&bad).contains("prebounce_status"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn a_later_run_flags_soft_bounces_below_the_limit_and_suppresses_at_it() {
    let dir = tempfile::tempdir().expect("a folder");
    let store = dir.path().join("store.sqlite3");
    let mut events = String::from("email,type,status,diagnostic,date,id\n");
    let full = "452 4.2.2 Mailbox full";
    for (n, day) in [(1, 20), (2, 24)] {
        events.push_str(&format!(
            "twice@x.test,soft,4.2.2,{full},2026-11-{day}T10:00:00Z,t{n}\n"
        ));
    }
    for (n, day) in [(1, 10), (2, 15), (3, 25)] {
        events.push_str(&format!(
            "thrice@x.test,soft,4.2.2,{full},2026-11-{day}T10:00:00Z,r{n}\n"
        ));
    }
    events.push_str(&format!(
        "healed@x.test,soft,4.2.2,{full},2026-11-20T10:00:00Z,h1\n\
         healed@x.test,delivered,,250 ok,2026-11-21T10:00:00Z,h2\n\
         greylisted@x.test,deferred,4.7.1,451 4.7.1 greylisted,2026-11-21T10:00:00Z,g1\n"
    ));
    let events = write(dir.path(), "events.csv", &events);
    ok(&["bounces", "import", s(&events), "--store", s(&store)]);
    let list = write(
        dir.path(),
        "list.csv",
        "email\ntwice@x.test\nthrice@x.test\nhealed@x.test\ngreylisted@x.test\n",
    );
    let out = dir.path().join("out");
    let clock = NOW.to_string();
    ok(&[
        "verify",
        s(&list),
        "--level",
        "syntax",
        "--allow-reserved-domains",
        "--store",
        s(&store),
        "--out",
        s(&out),
        "--clock",
        &clock,
        "-q",
        "--progress",
        "never",
    ]);
    let emails = column(&out, "valid.csv", "email");
    let flags = column(&out, "valid.csv", "prebounce_flags");
    let details = column(&out, "valid.csv", "prebounce_detail");
    assert_eq!(
        emails,
        ["twice@x.test", "healed@x.test", "greylisted@x.test"]
    );
    assert_eq!(flags[0], "soft-bounced");
    assert!(
        details[0].contains(
            "2 soft bounces about the mailbox in the last 30 days, the last on 2026-11-24"
        ),
        "{details:?}"
    );
    // A delivery after the soft bounce resets it; a greylisting delay never counts.
    assert_eq!(&flags[1..], ["", ""]);
    assert_eq!(column(&out, "invalid.csv", "email"), ["thrice@x.test"]);
    assert_eq!(
        column(&out, "invalid.csv", "prebounce_reason"),
        ["suppressed"]
    );
    assert!(column(&out, "invalid.csv", "prebounce_detail")[0].contains("soft bounces"));
    assert_eq!(
        summary(&out)["flags"]["soft-bounced"],
        1,
        "{}",
        summary(&out)
    );
    // A month later the soft bounces have aged out of the window.
    let later = (NOW + 40 * 86_400).to_string();
    ok(&[
        "verify",
        s(&list),
        "--level",
        "syntax",
        "--allow-reserved-domains",
        "--store",
        s(&store),
        "--out",
        s(&out),
        "--clock",
        &later,
        "--force",
        "-q",
        "--progress",
        "never",
    ]);
    let flags = column(&out, "valid.csv", "prebounce_flags");
    assert!(flags.iter().all(String::is_empty), "{flags:?}");
}
