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

fn labels(root: &Path) -> Vec<Label> {
    let text = std::fs::read_to_string(root.join("labels.tsv")).expect("labels.tsv");
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

/// Agreement of a labelled set with its labels, in percent.
struct Score {
    found: f64,
    status: f64,
    hard: f64,
    kind: f64,
    block_as_hard: usize,
}

/// Decode every message of `root/eml` and compare with `root/labels.tsv`; prints the figures,
/// sisimai's reasons against our kinds, the misses and every disagreement.
fn score(root: &Path) -> Score {
    let labels = labels(root);
    let mut by_file: BTreeMap<String, Vec<Record>> = BTreeMap::new();
    let mut files = 0;
    let mut not_bounces = Vec::new();
    for entry in std::fs::read_dir(root.join("eml")).expect("eml/") {
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
    Score {
        found: pct(found, n),
        status: pct(status_equal, with_status),
        hard: pct(hard_agree, n),
        kind: pct(kind_agree, kind_labelled),
        block_as_hard,
    }
}

#[test]
fn the_corpus_agrees_with_its_labels() {
    let Score {
        found,
        status,
        hard,
        kind,
        block_as_hard,
    } = score(&data());
    assert!(
        found >= FOUND_FLOOR,
        "recipients found fell below {FOUND_FLOOR} %"
    );
    assert!(
        status >= STATUS_FLOOR,
        "status agreement fell below {STATUS_FLOOR} %"
    );
    assert!(
        hard >= HARD_FLOOR,
        "hard agreement fell below {HARD_FLOOR} %"
    );
    assert!(
        kind >= KIND_FLOOR,
        "kind agreement fell below {KIND_FLOOR} %"
    );
    assert!(
        block_as_hard <= BLOCK_AS_HARD_CEILING,
        "{block_as_hard} sender blocks came out hard"
    );
}

/// The held-out set (tests/data/bounces-heldout/SOURCES.md): sisimai's labelled messages that
/// are not in tests/data/bounces, never used to write the decoder's rules. Its figures are
/// reported apart; the floors only catch a regression.
#[test]
fn the_held_out_set_is_scored_apart() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/bounces-heldout");
    println!("held-out set:");
    let s = score(&root);
    assert!(
        s.found >= HELD_OUT_FOUND_FLOOR,
        "held-out recipients found: {}",
        s.found
    );
    assert!(
        s.status >= HELD_OUT_STATUS_FLOOR,
        "held-out status: {}",
        s.status
    );
    assert!(s.kind >= HELD_OUT_KIND_FLOOR, "held-out kinds: {}", s.kind);
    assert!(
        s.block_as_hard <= HELD_OUT_BLOCK_AS_HARD_CEILING,
        "{} held-out sender blocks came out hard",
        s.block_as_hard
    );
}

// What the decoder reaches today (found 98.3 %, status 98.6 %, hard 87.5 %, kind 95.2 %, 3
// blocks called hard): a regression fails. The issue's targets are 95 % for the status codes
// and for the kinds. Hard agreement is bounded by sisimai calling `550 User unknown` after DATA
// "filtered" (not hard) where we say hard. The three "blocks" we call hard are sisimai's reading
// of texts that say otherwise: NTT docomo's `550 Unknown user` (rhost-nttdocomo-02, -03,
// labelled "rejected") and a Sendmail V5 `550 Host unknown` (lhost-v5sendmail-05, "blocked").
const FOUND_FLOOR: f64 = 98.0;
const STATUS_FLOOR: f64 = 98.0;
const HARD_FLOOR: f64 = 87.0;
const KIND_FLOOR: f64 = 95.0;
const BLOCK_AS_HARD_CEILING: usize = 3;
// The held-out set's figures when it was added (found 99.0 %, status 94.2 %, kind 86.6 %,
// hard/not-hard 82.8 %, 1 block called hard), less a point (kind: 87.1 % before the reply
// decoder read `501 5.1.3` as a protocol error, issue #16).
const HELD_OUT_FOUND_FLOOR: f64 = 98.0;
const HELD_OUT_STATUS_FLOOR: f64 = 93.0;
const HELD_OUT_KIND_FLOOR: f64 = 86.0;
const HELD_OUT_BLOCK_AS_HARD_CEILING: usize = 1;

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

/// A delivery status notification as a Postfix-like MTA writes it. `id` None: no Message-ID
/// (the import keys it on a hash of its bytes).
fn dsn(
    id: Option<&str>,
    recipient: &str,
    date: &str,
    action: &str,
    status: &str,
    diag: &str,
) -> String {
    let id = id.map_or(String::new(), |id| {
        format!("Message-ID: <{id}@mx.example.net>\n")
    });
    format!(
        "From: MAILER-DAEMON@mx.example.net\n\
         To: sender@example.com\n\
         Subject: Delivery Status Notification\n\
         Date: {date}\n\
         {id}\
         MIME-Version: 1.0\n\
         Content-Type: multipart/report; report-type=delivery-status; boundary=\"B\"\n\
         \n\
         --B\n\
         Content-Type: text/plain\n\
         \n\
         The mail system reports on your message.\n\
         \n\
         --B\n\
         Content-Type: message/delivery-status\n\
         \n\
         Reporting-MTA: dns; mx.example.net\n\
         \n\
         Final-Recipient: rfc822; {recipient}\n\
         Action: {action}\n\
         Status: {status}\n\
         Diagnostic-Code: smtp; {diag}\n\
         Last-Attempt-Date: {date}\n\
         \n\
         --B--\n"
    )
}

fn mailbox_full(id: &str, recipient: &str, date: &str) -> String {
    dsn(
        Some(id),
        recipient,
        date,
        "failed",
        "5.2.2",
        "552 5.2.2 <user>: mailbox full, over quota",
    )
}

fn delivered(id: &str, recipient: &str, date: &str) -> String {
    dsn(
        Some(id),
        recipient,
        date,
        "delivered",
        "2.0.0",
        "250 2.0.0 Ok: queued",
    )
}

/// `prebounce bounces import PATHS --store STORE --json`: the summary object.
fn import(store: &Path, paths: &[&Path]) -> serde_json::Value {
    let mut args: Vec<&std::ffi::OsStr> = vec!["bounces".as_ref(), "import".as_ref()];
    args.extend(paths.iter().map(|p| p.as_os_str()));
    args.extend(["--store".as_ref(), store.as_os_str(), "--json".as_ref()]);
    let out = prebounce(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("UTF-8");
    let mut lines = text.lines();
    let summary: serde_json::Value =
        serde_json::from_str(lines.next().expect("a summary line")).expect("JSON");
    assert!(lines.next().is_none(), "the summary alone: {text}");
    summary["summary"].clone()
}

/// The suppression list as `suppress export` prints it (entry,reason,added_at).
fn suppressed(store: &Path) -> String {
    let out = prebounce(&[
        "suppress".as_ref(),
        "export".as_ref(),
        "--store".as_ref(),
        store.as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// A temporary folder and the path of a store in it (not yet created).
fn with_store() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let store = dir.path().join("store.sqlite3");
    (dir, store)
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("a file");
    path
}

#[test]
fn a_hard_bounce_suppresses_with_its_evidence() {
    let (dir, store) = with_store();
    // The corpus: the first message of mbox-1 is a 5.1.1 for kijitora@libsisimai.org; a
    // hand-written 5.1.2 (the domain is gone) without a Message-ID.
    let gone = write(
        dir.path(),
        "gone.eml",
        &dsn(
            None,
            "ann@gone.example",
            "2 Mar 2026 10:00:00 +0000",
            "failed",
            "5.1.2",
            "550 5.1.2 Host or domain name not found",
        ),
    );
    let summary = import(&store, &[&data().join("mbox/mbox-1"), &gone]);
    assert_eq!(summary["dry_run"], false);
    assert!(
        summary["suppressions_added"]["hard"]
            .as_u64()
            .expect("a count")
            >= 2
    );
    let list = suppressed(&store);
    let line = list
        .lines()
        .find(|l| l.starts_with("kijitora@libsisimai.org,"))
        .unwrap_or_else(|| panic!("suppressed: {list}"));
    assert!(
        line.contains("hard bounce mailbox-not-found 5.1.1 550"),
        "{line}"
    );
    assert!(line.contains("mbox-1#1"), "{line}");
    let line = list
        .lines()
        .find(|l| l.starts_with("ann@gone.example,"))
        .unwrap_or_else(|| panic!("suppressed: {list}"));
    assert!(line.contains("on 2026-03-02"), "{line}");
    // `suppress list` shows it too.
    let out = prebounce(&[
        "suppress".as_ref(),
        "list".as_ref(),
        "--store".as_ref(),
        store.as_os_str(),
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("ann@gone.example  hard bounce"));
}

#[test]
fn a_block_never_suppresses() {
    let (dir, store) = with_store();
    let blocked = write(
        dir.path(),
        "blocked.eml",
        &dsn(
            Some("b1"),
            "bob@example.org",
            "2 Mar 2026 10:00:00 +0000",
            "failed",
            "5.7.1",
            "554 5.7.1 Service unavailable; client host [192.0.2.1] blocked using zen.spamhaus.org",
        ),
    );
    // And a corpus block: Amazon SES's 5.7.1.
    let summary = import(
        &store,
        &[&blocked, &data().join("eml/lhost-amazonses-15.eml")],
    );
    assert_eq!(summary["by_kind"]["block"], 2, "{summary}");
    assert_eq!(summary["suppressions_added"]["total"], 0, "{summary}");
    assert_eq!(summary["blocks_by_domain"]["example.org"], 1, "{summary}");
    assert_eq!(suppressed(&store), "entry,reason,added_at\n");
}

#[test]
fn three_mailbox_soft_bounces_within_the_window_suppress() {
    let (dir, store) = with_store();
    let first = write(
        dir.path(),
        "1.eml",
        &mailbox_full("s1", "carol@example.net", "1 Mar 2026 08:00:00 +0000"),
    );
    let second = write(
        dir.path(),
        "2.eml",
        &mailbox_full("s2", "carol@example.net", "12 Mar 2026 08:00:00 +0000"),
    );
    // Two: counted, not suppressed.
    let summary = import(&store, &[&first, &second]);
    assert_eq!(summary["suppressions_added"]["total"], 0, "{summary}");
    assert_eq!(summary["soft_below_limit"], 1, "{summary}");
    // A third in a later import, 29 days after the first: the count is the store's history.
    let third = write(
        dir.path(),
        "3.eml",
        &mailbox_full("s3", "carol@example.net", "30 Mar 2026 08:00:00 +0000"),
    );
    let summary = import(&store, &[&third]);
    assert_eq!(summary["soft_limit_crossed"], 1, "{summary}");
    let list = suppressed(&store);
    let line = list
        .lines()
        .find(|l| l.starts_with("carol@example.net,"))
        .unwrap_or_else(|| panic!("suppressed: {list}"));
    assert!(line.contains("soft bounces mailbox-full"), "{line}");
    assert!(line.contains("from 2026-03-01 to 2026-03-30"), "{line}");
}

#[test]
fn spread_soft_bounces_and_a_delivery_between_do_not_suppress() {
    let (dir, store) = with_store();
    let mut files = Vec::new();
    // Three over 90 days.
    for (i, date) in ["1 Jan 2026", "15 Feb 2026", "1 Apr 2026"]
        .iter()
        .enumerate()
    {
        files.push(write(
            dir.path(),
            &format!("spread-{i}.eml"),
            &mailbox_full(
                &format!("sp{i}"),
                "dave@example.net",
                &format!("{date} 09:00:00 +0000"),
            ),
        ));
    }
    // Three within ten days, a delivery after the first.
    for (i, date) in ["1 Mar 2026", "5 Mar 2026", "10 Mar 2026"]
        .iter()
        .enumerate()
    {
        files.push(write(
            dir.path(),
            &format!("reset-{i}.eml"),
            &mailbox_full(
                &format!("rs{i}"),
                "erin@example.net",
                &format!("{date} 09:00:00 +0000"),
            ),
        ));
    }
    files.push(write(
        dir.path(),
        "delivered.eml",
        &delivered("dl", "erin@example.net", "3 Mar 2026 09:00:00 +0000"),
    ));
    // Greylisting and throttling never count, however many.
    for i in 0..4 {
        files.push(write(
            dir.path(),
            &format!("grey-{i}.eml"),
            &dsn(
                Some(&format!("gr{i}")),
                "fay@example.net",
                &format!("{} Mar 2026 09:00:00 +0000", i + 1),
                "failed",
                "4.7.1",
                "450 4.7.1 Greylisted, see http://postgrey.schweikert.ch/help/example.net.html",
            ),
        ));
    }
    let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let summary = import(&store, &paths);
    assert_eq!(summary["by_kind"]["delivered"], 1, "{summary}");
    assert_eq!(summary["suppressions_added"]["total"], 0, "{summary}");
    assert_eq!(suppressed(&store), "entry,reason,added_at\n");
}

/// Every row of the store's bounces table, as text.
fn bounce_rows(store: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(store).expect("the store");
    let mut stmt = conn
        .prepare("SELECT * FROM bounces ORDER BY source_key, recipient")
        .expect("a bounces table");
    let columns = stmt.column_count();
    stmt.query_map([], |r| {
        (0..columns)
            .map(|i| {
                r.get::<_, rusqlite::types::Value>(i)
                    .map(|v| format!("{v:?}"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|v| v.join("|"))
    })
    .expect("rows")
    .collect::<Result<_, _>>()
    .expect("rows")
}

#[test]
fn a_second_import_of_the_same_files_changes_nothing() {
    let (dir, store) = with_store();
    let inputs = dir.path().join("in");
    std::fs::create_dir(&inputs).expect("a folder");
    for f in [
        "mbox/mbox-1",
        "eml/arf-01.eml",
        "esp-docs/sendgrid-events.json",
        "esp-json/json-amazonses-01.json",
    ] {
        let name = Path::new(f).file_name().expect("a name");
        std::fs::copy(data().join(f), inputs.join(name)).expect("a copy");
    }
    for i in 0..3 {
        write(
            &inputs,
            &format!("full-{i}.eml"),
            &mailbox_full(
                &format!("f{i}"),
                "gil@example.net",
                &format!("{} Mar 2026 09:00:00 +0000", i + 1),
            ),
        );
    }
    write(
        &inputs,
        "no-id.eml",
        &dsn(
            None,
            "hal@example.net",
            "2 Mar 2026 10:00:00 +0000",
            "failed",
            "5.1.1",
            "550 5.1.1 User unknown",
        ),
    );
    write(
        &inputs,
        "undated.eml",
        &dsn(
            Some("u1"),
            "ivy@example.net",
            "",
            "failed",
            "5.1.1",
            "550 5.1.1 User unknown",
        ),
    );
    let first = import(&store, &[&inputs]);
    assert!(
        first["new_records"].as_u64().expect("a count") > 5,
        "{first}"
    );
    assert!(
        first["suppressions_added"]["total"]
            .as_u64()
            .expect("a count")
            >= 4,
        "{first}"
    );
    assert_eq!(first["suppressions_added"]["soft"], 1, "{first}");
    assert!(first["undated"].as_u64().expect("a count") >= 1, "{first}");
    let (rows, list) = (bounce_rows(&store), suppressed(&store));
    let second = import(&store, &[&inputs]);
    assert_eq!(second["new_records"], 0, "{second}");
    assert_eq!(second["records"], first["records"], "{second}");
    assert_eq!(second["suppressions_added"]["total"], 0, "{second}");
    assert_eq!(bounce_rows(&store), rows);
    assert_eq!(suppressed(&store), list);
}

#[test]
fn dry_run_writes_nothing_and_a_foreign_database_is_refused() {
    let (dir, store) = with_store();
    let out = prebounce(&[
        "bounces".as_ref(),
        "import".as_ref(),
        data().join("mbox/mbox-1").as_os_str(),
        "--dry-run".as_ref(),
        "--store".as_ref(),
        store.as_os_str(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!store.exists(), "a dry run created the store");
    // Another program's database: exit 2, left as it is.
    let foreign = dir.path().join("other.sqlite3");
    rusqlite::Connection::open(&foreign)
        .expect("a database")
        .execute_batch("CREATE TABLE notes (body TEXT);")
        .expect("a table");
    let before = std::fs::read(&foreign).expect("the file");
    let out = prebounce(&[
        "bounces".as_ref(),
        "import".as_ref(),
        data().join("mbox/mbox-1").as_os_str(),
        "--store".as_ref(),
        foreign.as_os_str(),
    ]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a prebounce store"));
    assert_eq!(std::fs::read(&foreign).expect("the file"), before);
    // Files that are no bounces do not stop an import: exit 0, counted.
    let junk = write(dir.path(), "junk.eml", "not a message at all");
    let summary = import(&store, &[&junk, &data().join("mbox/mbox-1")]);
    assert_eq!(
        summary["unparseable"]["count"].as_u64().expect("a count")
            + summary["not_a_bounce"]["count"].as_u64().expect("a count"),
        1,
        "{summary}"
    );
}

/// mail-parser 0.11 panics on this message (a message/rfc822 part whose header block ends at
/// a soft line break); found by `arbitrary_mime_never_panics`. It is unparseable, not a crash,
/// and `bounces import` goes on with the other files and says nothing of the parser's panic.
#[test]
fn a_message_the_mime_parser_panics_on_is_unparseable() {
    let text = [
        "Content-Type: multipart/report; report-type=delivery-status; boundary=\"X\"",
        "",
        "--X",
        "Content-Type: message/rfc822",
        "=E2=80=94=\r",
        "Content-Type: message/rfc822",
        "",
        "",
        "--X--",
    ]
    .join("\r\n");
    assert!(matches!(
        bounce::decode(text.as_bytes()).as_slice(),
        [Decoded::Unparseable]
    ));
    let dir = tempfile::tempdir().expect("a temporary folder");
    std::fs::write(dir.path().join("bad.eml"), &text).unwrap();
    let good = std::fs::read_dir(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/bounces/eml"),
    )
    .unwrap()
    .filter_map(Result::ok)
    .map(|e| e.path())
    .find(|p| p.to_string_lossy().contains("lhost-postfix-06"))
    .expect("a Postfix bounce in the corpus");
    std::fs::copy(&good, dir.path().join("good.eml")).unwrap();
    let out = prebounce(&[
        "bounces".as_ref(),
        "import".as_ref(),
        dir.path().as_os_str(),
        "--dry-run".as_ref(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains("unparseable 1"), "{err}");
}
