//! The bounce decoder (`prebounce::bounce`) on a real corpus: 379 bounce messages from 60+
//! MTAs and providers with per-recipient labels (sisimai's set-of-emails, BSD-2-Clause; see
//! tests/data/bounces/SOURCES.md), two mbox files and ESP event JSON; plus property tests
//! that no input panics.
//!
//! The corpus test prints its figures and every disagreement, so whoever improves the decoder
//! sees what is left; its floors are what the decoder reaches today, so a regression fails.
//!
//! The labels are sisimai's reasons, finer than our kinds. The mapping (also in the issue):
//! - hard: userunknown, hostunknown, hasmoved, suspend (a disabled mailbox), and notaccept
//!   where sisimai itself calls it a hard bounce (a null MX; otherwise soft);
//! - soft: mailboxfull, exceedlimit, systemfull, expired, networkerror, systemerror,
//!   mailererror, toomanyconn, speeding, onhold, undefined;
//! - block (the receiver refused the sender or the message, not the address): blocked,
//!   securityerror, spamdetected, policyviolation, rejected, requireptr, authfailure,
//!   badreputation, virusdetected, contenterror, notcompliantrfc, norelaying, failedstarttls,
//!   syntaxerror, mesgtoobig;
//! - not compared: filtered, which sisimai gives both to content filters (a block) and to
//!   `550 User unknown` answered after DATA (hard); its rows are still counted as found and
//!   in the hard/not-hard figure, where sisimai says not hard.
//! - complaint: feedback; auto-reply: vacation; delivered: delivered.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use prebounce::bounce::{self, Decoded, Kind, Record};
use proptest::prelude::*;

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/bounces")
}

fn expected_kind(reason: &str, hard: bool) -> Option<Kind> {
    Some(match reason {
        "userunknown" | "hostunknown" | "hasmoved" | "suspend" => Kind::Hard,
        "notaccept" if hard => Kind::Hard,
        "notaccept" | "mailboxfull" | "exceedlimit" | "systemfull" | "expired" | "networkerror"
        | "systemerror" | "mailererror" | "toomanyconn" | "speeding" | "onhold" | "undefined" => {
            Kind::Soft
        }
        "blocked" | "securityerror" | "spamdetected" | "policyviolation" | "rejected"
        | "requireptr" | "authfailure" | "badreputation" | "virusdetected" | "contenterror"
        | "notcompliantrfc" | "norelaying" | "failedstarttls" | "syntaxerror" | "mesgtoobig" => {
            Kind::Block
        }
        "feedback" => Kind::Complaint,
        "vacation" => Kind::AutoReply,
        "delivered" => Kind::Delivered,
        _ => return None,
    })
}

struct Label {
    file: String,
    index: usize,
    status: String,
    reason: String,
    hard: bool,
}

fn labels() -> Vec<Label> {
    let text = std::fs::read_to_string(data().join("labels.tsv")).expect("labels.tsv");
    text.lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            Label {
                file: f[0].to_owned(),
                index: f[1].parse().expect("an index"),
                status: f[2].to_owned(),
                reason: f[4].to_owned(),
                hard: f[5] == "true",
            }
        })
        .collect()
}

fn records_of(path: &Path) -> (Vec<Record>, usize, usize) {
    let bytes = std::fs::read(path).expect("a corpus file");
    let (mut records, mut not_bounce, mut unparseable) = (Vec::new(), 0, 0);
    for d in bounce::decode(&bytes) {
        match d {
            Decoded::Records(r) => records.extend(r),
            Decoded::NotABounce => not_bounce += 1,
            Decoded::Unparseable => unparseable += 1,
        }
    }
    (records, not_bounce, unparseable)
}

fn pct(n: usize, of: usize) -> f64 {
    if of == 0 {
        100.0
    } else {
        100.0 * n as f64 / of as f64
    }
}

#[test]
fn the_corpus_agrees_with_its_labels() {
    let labels = labels();
    let mut by_file: BTreeMap<String, Vec<Record>> = BTreeMap::new();
    let mut files = 0;
    let mut not_bounces = Vec::new();
    for entry in std::fs::read_dir(data().join("eml")).expect("eml/") {
        let path = entry.expect("an entry").path();
        let (records, not_bounce, unparseable) = records_of(&path);
        let name = path
            .file_name()
            .expect("a name")
            .to_string_lossy()
            .into_owned();
        if not_bounce + unparseable > 0 {
            not_bounces.push(name.clone());
        }
        by_file.insert(name, records);
        files += 1;
    }
    let (mut found, mut with_status, mut status_equal) = (0, 0, 0);
    let (mut hard_agree, mut kind_labelled, mut kind_agree, mut block_as_hard) = (0, 0, 0, 0);
    let mut misses = Vec::new();
    let mut disagreements = Vec::new();
    let mut confusion: BTreeMap<(String, &str), usize> = BTreeMap::new();
    for l in &labels {
        let Some(r) = by_file.get(&l.file).and_then(|r| r.get(l.index - 1)) else {
            misses.push(format!("{}#{} ({})", l.file, l.index, l.reason));
            continue;
        };
        found += 1;
        // sisimai writes X.0.9xx for a status it made up from its reason: not a code any
        // report holds, so not compared.
        let made_up = l
            .status
            .split('.')
            .nth(2)
            .is_some_and(|d| d.len() == 3 && d.starts_with('9'));
        if !l.status.is_empty() && !made_up {
            with_status += 1;
            let ours = r.status.map(|s| s.to_string()).unwrap_or_default();
            if ours == l.status {
                status_equal += 1;
            } else {
                disagreements.push(format!(
                    "status {}#{}: label {} ours {:?} ({:?})",
                    l.file,
                    l.index,
                    l.status,
                    ours,
                    r.diagnostic
                        .as_deref()
                        .unwrap_or("")
                        .chars()
                        .take(120)
                        .collect::<String>()
                ));
            }
        }
        if (r.kind == Kind::Hard) == l.hard {
            hard_agree += 1;
        }
        *confusion
            .entry((l.reason.clone(), r.kind.as_str()))
            .or_default() += 1;
        if let Some(want) = expected_kind(&l.reason, l.hard) {
            kind_labelled += 1;
            if want == r.kind {
                kind_agree += 1;
            } else {
                if want == Kind::Block && r.kind == Kind::Hard {
                    block_as_hard += 1;
                }
                disagreements.push(format!(
                    "kind {}#{}: {} → want {}, ours {} ({}) {:?}",
                    l.file,
                    l.index,
                    l.reason,
                    want.as_str(),
                    r.kind.as_str(),
                    r.reason.map_or("-", |r| r.as_str()),
                    r.diagnostic
                        .as_deref()
                        .unwrap_or("")
                        .chars()
                        .take(160)
                        .collect::<String>()
                ));
            }
        }
    }
    let n = labels.len();
    println!(
        "files {files}; not a bounce or unparseable: {} {:?}",
        not_bounces.len(),
        not_bounces
    );
    println!(
        "labelled recipients {n}; found {found} ({:.1} %)",
        pct(found, n)
    );
    println!(
        "status equal {status_equal} of {with_status} labelled with one ({:.1} %)",
        pct(status_equal, with_status)
    );
    println!(
        "hard/not-hard agreement {hard_agree} of {n} ({:.1} %)",
        pct(hard_agree, n)
    );
    println!(
        "kind agreement {kind_agree} of {kind_labelled} ({:.1} %); sender blocks classed hard: {block_as_hard}",
        pct(kind_agree, kind_labelled)
    );
    println!("sisimai reason × our kind:");
    for ((reason, kind), count) in &confusion {
        println!("  {reason:>16} {kind:<10} {count}");
    }
    println!("missed ({}):", misses.len());
    for m in &misses {
        println!("  {m}");
    }
    println!("disagreements ({}):", disagreements.len());
    for d in &disagreements {
        println!("  {d}");
    }
    assert!(
        pct(found, n) >= FOUND_FLOOR,
        "recipients found fell below {FOUND_FLOOR} %"
    );
    assert!(
        pct(status_equal, with_status) >= STATUS_FLOOR,
        "status agreement fell below {STATUS_FLOOR} %"
    );
    assert!(
        pct(hard_agree, n) >= HARD_FLOOR,
        "hard agreement fell below {HARD_FLOOR} %"
    );
    assert!(
        pct(kind_agree, kind_labelled) >= KIND_FLOOR,
        "kind agreement fell below {KIND_FLOOR} %"
    );
    assert!(
        block_as_hard <= BLOCK_AS_HARD_CEILING,
        "{block_as_hard} sender blocks came out hard"
    );
}

// What the decoder reaches today (98.3 %, 98.3 %, 85.7 %, 82.8 %, 3): a regression fails.
// Hard agreement is bounded by sisimai calling `550 User unknown` after DATA "filtered" or
// "rejected" (not hard) and a disabled mailbox "suspend" (not hard), where we say hard.
const FOUND_FLOOR: f64 = 98.0;
const STATUS_FLOOR: f64 = 98.0;
const HARD_FLOOR: f64 = 85.0;
const KIND_FLOOR: f64 = 82.0;
const BLOCK_AS_HARD_CEILING: usize = 3;

#[test]
fn mbox_messages_are_split_and_decoded() {
    for (file, messages) in [("mbox-0", 37), ("mbox-1", 1)] {
        let bytes = std::fs::read(data().join("mbox").join(file)).expect("an mbox");
        assert_eq!(bounce::detect(&bytes), bounce::Container::Mbox);
        let decoded = bounce::decode(&bytes);
        assert_eq!(decoded.len(), messages, "{file}");
        let records: usize = decoded
            .iter()
            .map(|d| match d {
                Decoded::Records(r) => r.len(),
                _ => 0,
            })
            .sum();
        let bounces = decoded
            .iter()
            .filter(|d| matches!(d, Decoded::Records(r) if !r.is_empty()))
            .count();
        println!("{file}: {messages} messages, {bounces} with records, {records} records");
        assert!(
            bounces * 10 >= messages * 9,
            "{file}: only {bounces} of {messages} decoded"
        );
    }
}

fn json_records(path: &Path) -> Vec<Record> {
    let bytes = std::fs::read(path).expect("a JSON file");
    assert_eq!(bounce::detect(&bytes), bounce::Container::Json);
    match bounce::decode_json(&bytes) {
        Decoded::Records(r) => r,
        other => panic!("{}: {other:?}", path.display()),
    }
}

#[test]
fn every_esp_sample_gives_records() {
    let mut files = 0;
    for entry in std::fs::read_dir(data().join("esp-json")).expect("esp-json/") {
        let path = entry.expect("an entry").path();
        let records = json_records(&path);
        assert!(!records.is_empty(), "{}", path.display());
        for r in &records {
            assert!(r.recipient.contains('@'), "{r:?}");
            println!(
                "{}: {} {} {:?} {}",
                path.file_name().expect("a name").to_string_lossy(),
                r.recipient,
                r.kind.as_str(),
                r.status.map(|s| s.to_string()),
                r.reason.map_or("-", |r| r.as_str())
            );
        }
        files += 1;
    }
    assert_eq!(files, 23);
    let ses = json_records(&data().join("esp-json/json-amazonses-02.json"));
    assert_eq!(
        (ses[0].recipient.as_str(), ses[0].kind),
        ("bounce@simulator.amazonses.com", Kind::Hard),
        "the SNS envelope's Message string is decoded"
    );
}

#[test]
fn mailgun_postmark_and_sendgrid_events_from_their_documentation() {
    let docs = data().join("esp-docs");
    let kinds = |file: &str| -> Vec<(String, Kind)> {
        json_records(&docs.join(file))
            .into_iter()
            .map(|r| (r.recipient, r.kind))
            .collect()
    };
    let own = |v: &[(&str, Kind)]| -> Vec<(String, Kind)> {
        v.iter().map(|(a, k)| ((*a).to_owned(), *k)).collect()
    };
    assert_eq!(
        kinds("mailgun-failed.json"),
        own(&[("alice@example.com", Kind::Hard)])
    );
    assert_eq!(
        kinds("mailgun-events.json"),
        own(&[
            ("bob@example.org", Kind::Delivered),
            ("carol@example.net", Kind::Soft),
            ("dave@example.com", Kind::Complaint)
        ])
    );
    assert_eq!(
        kinds("postmark-bounce.json"),
        own(&[("john@example.com", Kind::Hard)])
    );
    assert_eq!(
        kinds("postmark-spam-complaint.json"),
        own(&[("john@example.com", Kind::Complaint)])
    );
    // A blocklisted sender is a block, never a hard bounce, whatever the ESP calls it.
    assert_eq!(
        kinds("sendgrid-events.json"),
        own(&[
            ("a@example.com", Kind::Hard),
            ("b@example.com", Kind::Block),
            ("c@example.com", Kind::Soft),
            ("d@example.com", Kind::Complaint),
            ("e@example.com", Kind::Delivered)
        ])
    );
    let mailgun = json_records(&docs.join("mailgun-failed.json"));
    assert_eq!(mailgun[0].reply_code, Some(550));
    assert_eq!(mailgun[0].remote_mta.as_deref(), Some("mx.example.com"));
}

#[test]
fn line_ends_and_transfer_encodings_do_not_change_the_records() {
    let bytes = std::fs::read(data().join("eml/rfc3464-03.eml")).expect("a DSN");
    let Decoded::Records(lf) = bounce::decode_message(&bytes) else {
        panic!("rfc3464-01 decodes")
    };
    assert!(!lf.is_empty());
    let text = String::from_utf8_lossy(&bytes).replace("\r\n", "\n");
    for ending in ["\r\n", "\r"] {
        let other = text.replace('\n', ending);
        assert_eq!(
            bounce::decode_message(other.as_bytes()),
            Decoded::Records(lf.clone()),
            "{ending:?}"
        );
    }
    // The same report with its delivery-status part base64-encoded and its text part
    // quoted-printable.
    let dsn = "Reporting-MTA: dns; mx.example.org\nArrival-Date: Mon, 1 Jan 2024 00:00:00 +0000\n\n\
               Final-Recipient: rfc822; gone@example.net\nAction: failed\nStatus: 5.1.1\n\
               Diagnostic-Code: smtp; 550 5.1.1 <gone@example.net>: Recipient address rejected: User unknown\n";
    let b64 = base64(dsn.as_bytes());
    let message = format!(
        "From: MAILER-DAEMON@example.org\nTo: sender@example.com\nSubject: Undelivered Mail\n\
         MIME-Version: 1.0\nContent-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\n\n\
         --B\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable\n\n\
         Your message could not be delivered =E2=80=94 sorry.\n\
         --B\nContent-Type: message/delivery-status\nContent-Transfer-Encoding: base64\n\n{b64}\n--B--\n"
    );
    let Decoded::Records(r) = bounce::decode_message(message.as_bytes()) else {
        panic!("the encoded DSN decodes")
    };
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].recipient, "gone@example.net");
    assert_eq!(r[0].status.map(|s| s.to_string()).as_deref(), Some("5.1.1"));
    assert_eq!((r[0].reply_code, r[0].kind), (Some(550), Kind::Hard));
    assert_eq!(r[0].reporting_mta.as_deref(), Some("mx.example.org"));
}

fn base64(data: &[u8]) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for (i, chunk) in data.chunks(3).enumerate() {
        if i > 0 && i % 19 == 0 {
            out.push('\n');
        }
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(T[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn deep_nesting_and_huge_parts_are_bounded() {
    // 5,000 nested multiparts, then a 20 MB part: read, cut and walked without recursion.
    let mut m = String::from("From: MAILER-DAEMON@x.example\nSubject: Undelivered\n");
    for i in 0..5_000 {
        m.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"b{i}\"\n\n--b{i}\n"
        ));
    }
    m.push_str("Content-Type: text/plain\n\n<gone@example.net>: 550 5.1.1 user unknown\n");
    m.push_str(&"x".repeat(20 << 20));
    let decoded = bounce::decode_message(m.as_bytes());
    assert!(!matches!(decoded, Decoded::Unparseable));
    let quoted = format!("From: a@b.example\n\n{}", "=\n".repeat(1 << 20));
    let _ = bounce::decode_message(quoted.as_bytes());
}

/// Header-ish lines, boundaries, DSN fields and encodings in random order: the MIME shapes
/// that reach the parser's edge cases.
fn mime_line() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(
            "Content-Type: multipart/report; report-type=delivery-status; boundary=\"X\""
                .to_owned()
        ),
        Just("Content-Type: message/delivery-status".to_owned()),
        Just("Content-Type: message/global-delivery-status".to_owned()),
        Just("Content-Type: message/feedback-report".to_owned()),
        Just("Content-Type: message/rfc822".to_owned()),
        Just("Content-Type: text/rfc822-headers".to_owned()),
        Just("Content-Transfer-Encoding: base64".to_owned()),
        Just("Content-Transfer-Encoding: quoted-printable".to_owned()),
        Just("--X".to_owned()),
        Just("--X--".to_owned()),
        Just(String::new()),
        Just("Final-Recipient: rfc822; a@b.example".to_owned()),
        Just("Original-Recipient: rfc822;".to_owned()),
        Just("Action: failed".to_owned()),
        Just("Status: 5.1.1".to_owned()),
        Just("Diagnostic-Code: smtp; 550 5.7.1 blocked".to_owned()),
        Just("Feedback-Type: abuse".to_owned()),
        Just("X-Failed-Recipients: a@b.example".to_owned()),
        Just("Subject: =?UTF-8?B?w6k=?= =?bogus?Q?=ZZ?=".to_owned()),
        Just("From: MAILER-DAEMON <>".to_owned()),
        Just("Auto-Submitted: auto-replied".to_owned()),
        Just("=E2=80=94=\r".to_owned()),
        Just("{\"notificationType\":\"Bounce\"".to_owned()),
        "[ -~]{0,40}",
        "[A-Za-z0-9+/=@<>:;.\\-]{0,60}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = bounce::decode(&bytes);
        let _ = bounce::decode_message(&bytes);
        let _ = bounce::decode_json(&bytes);
        let _ = bounce::split_mbox(&bytes);
    }

    #[test]
    fn arbitrary_mime_never_panics(
        lines in proptest::collection::vec(mime_line(), 0..80),
        ending in prop_oneof![Just("\n"), Just("\r\n"), Just("\r")],
        mbox in any::<bool>(),
    ) {
        let mut text = lines.join(ending);
        if mbox {
            text = format!("From x@y Mon Jan  1 00:00:00 2024{ending}{text}{ending}{ending}From z Tue{ending}>From a{ending}{text}");
        }
        for decoded in bounce::decode(text.as_bytes()) {
            if let Decoded::Records(records) = decoded {
                prop_assert!(records.len() <= bounce::MAX_RECORDS);
                for r in records {
                    prop_assert!(r.diagnostic.as_ref().is_none_or(|d| d.len() <= bounce::MAX_DIAGNOSTIC));
                }
            }
        }
    }
}

fn prebounce(args: &[&std::ffi::OsStr]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_prebounce"))
        .args(args)
        .output()
        .expect("prebounce runs")
}

#[test]
fn import_dry_run_prints_records_then_a_summary() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let inner = dir.path().join("bounces");
    std::fs::create_dir(&inner).expect("a folder");
    std::fs::copy(data().join("mbox/mbox-1"), inner.join("mbox-1")).expect("a copy");
    std::fs::copy(data().join("eml/arf-01.eml"), inner.join("arf-01.eml")).expect("a copy");
    std::fs::write(inner.join("notes.txt"), "Subject: lunch\n\nat noon?\n").expect("a file");
    // A link out of the folder is not followed.
    #[cfg(unix)]
    std::os::unix::fs::symlink(data().join("eml"), inner.join("elsewhere")).expect("a link");
    let out = prebounce(&[
        "bounces".as_ref(),
        "import".as_ref(),
        inner.as_os_str(),
        "--dry-run".as_ref(),
        "--json".as_ref(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out.stdout)
        .expect("UTF-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let (summary, records) = lines.split_last().expect("a summary line");
    let summary = &summary["summary"];
    assert_eq!(records.len(), 2, "{records:?}");
    assert_eq!(records[0]["kind"], "complaint");
    let mbox = &records[1];
    assert!(mbox["file"].as_str().expect("a file").ends_with("mbox-1#1"));
    assert_eq!(mbox["recipient"], "kijitora@libsisimai.org");
    assert_eq!(
        (
            &mbox["status"],
            &mbox["reply_code"],
            &mbox["kind"],
            &mbox["reason"]
        ),
        (
            &serde_json::json!("5.1.1"),
            &serde_json::json!(550),
            &serde_json::json!("hard"),
            &serde_json::json!("mailbox-not-found")
        )
    );
    assert_eq!(summary["records"], 2);
    assert_eq!(summary["not_a_bounce"]["count"], 1);
    #[cfg(unix)]
    assert_eq!(summary["skipped_links"]["count"], 1);
}

#[test]
fn import_without_dry_run_refuses_and_writes_nothing() {
    let out = prebounce(&[
        "bounces".as_ref(),
        "import".as_ref(),
        data().join("mbox/mbox-1").as_os_str(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not available yet"));
}
