//! The DNS stage against a real DNS server: the lab's unbound (lab/up starts it on 127.77.0.1,
//! installing it when missing), with zones in lab/dns/zones.conf covering every case.

mod common;

use std::net::UdpSocket;
use std::path::Path;

use common::*;

const DNS: &str = "127.77.0.1";

fn lab_log() -> std::path::PathBuf {
    lab_dir().join("unbound.log")
}

/// Queries unbound logged from clients (not its own upstream queries) since `offset`.
fn client_queries_since(offset: u64) -> Vec<String> {
    let bytes = std::fs::read(lab_log()).unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes[(offset as usize).min(bytes.len())..]).into_owned();
    text.lines()
        .filter(|l| l.contains(" info: ") && !l.contains(&format!("info: {DNS} ")))
        .filter(|l| l.contains(" IN"))
        .map(str::to_owned)
        .collect()
}

fn log_len() -> u64 {
    std::fs::metadata(lab_log()).map(|m| m.len()).unwrap_or(0)
}

fn dns_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--level",
        "dns",
        "--dns-server",
        DNS,
        "--allow-reserved-domains",
        "--dns-timeout",
        "2s",
    ];
    args.extend_from_slice(extra);
    args
}

/// Runs `verify` on `csv` with the DNS flags; `--level syntax` from verify_bytes is overridden
/// by the later `--level dns`.
fn verify_dns(csv: &str, extra: &[&str]) -> (tempfile::TempDir, std::path::PathBuf) {
    lab_up();
    let (dir, out, o) = verify_bytes(csv.as_bytes(), &dns_args(extra));
    assert!(o.status.success(), "{}", stderr(&o));
    (dir, out)
}

/// (address, expected status, reason, preferred MX) for every lab case.
const CASES: &[(&str, &str, &str, &str)] = &[
    (
        "a@ok.lab.test",
        "valid",
        "domain-accepts-mail",
        "mx1.ok.lab.test",
    ),
    ("b@nullmx.lab.test", "invalid", "null-mx", ""),
    (
        "c@implicit.lab.test",
        "valid",
        "domain-accepts-mail",
        "implicit.lab.test",
    ),
    ("d@nomail.lab.test", "invalid", "no-mail-server", ""),
    ("e@missing.lab.test", "invalid", "no-such-domain", ""),
    ("f@dangling.lab.test", "invalid", "mx-unresolvable", ""),
    (
        "g@cname.lab.test",
        "valid",
        "domain-accepts-mail",
        "alias.lab.test",
    ),
    (
        "h@v6only.lab.test",
        "valid",
        "domain-accepts-mail",
        "mx6.lab.test",
    ),
    (
        "i@private.lab.test",
        "valid",
        "domain-accepts-mail",
        "mxp.lab.test",
    ),
    (
        "j@public.lab.test",
        "valid",
        "domain-accepts-mail",
        "mx.public.lab.test",
    ),
    (
        "k@backup.lab.test",
        "valid",
        "domain-accepts-mail",
        "mx1.ok.lab.test",
    ),
    ("m@x.refused.lab.test", "unknown", "dns-error", ""),
    ("n@x.servfail.test", "unknown", "dns-error", ""),
];

fn results(out: &Path) -> Vec<(String, String, String, String)> {
    let mut rows = Vec::new();
    for list in LISTS {
        let emails = column(out, list, "email");
        let statuses = column(out, list, "prebounce_status");
        let reasons = column(out, list, "prebounce_reason");
        let mx = column(out, list, "prebounce_mx");
        for i in 0..emails.len() {
            rows.push((
                emails[i].clone(),
                statuses[i].clone(),
                reasons[i].clone(),
                mx[i].clone(),
            ));
        }
    }
    rows
}

#[test]
fn every_dns_case_gets_its_verdict() {
    let _turn = lab_turn();
    let mut csv = String::from("email\n");
    for (addr, ..) in CASES {
        csv.push_str(addr);
        csv.push('\n');
    }
    let before = log_len();
    let (_d, out) = verify_dns(&csv, &["--allow-private-mx"]);
    let got = results(&out);
    assert_eq!(got.len(), CASES.len());
    for (addr, status, reason, mx) in CASES {
        let row = got
            .iter()
            .find(|r| r.0 == *addr)
            .unwrap_or_else(|| panic!("{addr} missing"));
        assert_eq!(
            (row.1.as_str(), row.2.as_str(), row.3.as_str()),
            (*status, *reason, *mx),
            "{addr}"
        );
    }
    let s = summary(&out);
    assert_eq!(s["level"], "dns");
    assert_eq!(s["dns"]["unique_domains"], CASES.len());
    // The null-MX domain's A record is never asked for: no fallback to it.
    let seen = client_queries_since(before);
    assert!(
        !seen.iter().any(|l| l.contains("nullmx.lab.test. A IN")),
        "{seen:#?}"
    );
    assert!(
        seen.iter().any(|l| l.contains("nullmx.lab.test. MX IN")),
        "{seen:#?}"
    );
    // At most 3 queries per unique domain, as the server counted them.
    assert!(
        seen.len() <= 3 * CASES.len(),
        "{} queries for {} domains",
        seen.len(),
        CASES.len()
    );
}

#[test]
fn lab_addresses_are_unroutable_without_the_flag() {
    let _turn = lab_turn();
    let (_d, out) = verify_dns(
        "email\na@ok.lab.test\nc@implicit.lab.test\nj@public.lab.test\nd@dual.lab.test\nx@mixed.lab.test\n",
        &[],
    );
    let got = results(&out);
    let reason = |a: &str| got.iter().find(|r| r.0 == a).map(|r| r.2.clone()).unwrap();
    assert_eq!(reason("a@ok.lab.test"), "mx-unroutable");
    assert_eq!(reason("c@implicit.lab.test"), "mx-unroutable");
    assert_eq!(reason("j@public.lab.test"), "domain-accepts-mail");
    // A private A does not hide a public AAAA; a failed host makes the domain undecided.
    assert_eq!(reason("d@dual.lab.test"), "domain-accepts-mail");
    assert_eq!(reason("x@mixed.lab.test"), "dns-error");
}

#[test]
fn one_lookup_per_domain_however_many_rows() {
    let _turn = lab_turn();
    let mut csv = String::from("email\n");
    for i in 0..500 {
        csv.push_str(&format!(
            "user{i}@ok.lab.test\nUser{i}@NullMX.lab.test\nu{i}@missing.lab.test\n"
        ));
    }
    let before = log_len();
    let (_d, out) = verify_dns(&csv, &["--allow-private-mx"]);
    let s = summary(&out);
    assert_eq!(s["rows"], 1500);
    assert_eq!(s["status"]["valid"], 500);
    assert_eq!(s["dns"]["unique_domains"], 3);
    let seen = client_queries_since(before);
    let mx: Vec<&String> = seen.iter().filter(|l| l.contains(" MX IN")).collect();
    assert_eq!(mx.len(), 3, "{mx:#?}");
    // ok.lab.test: MX + A/AAAA of its two hosts; the others: MX only.
    assert!(seen.len() <= 7, "{seen:#?}");
}

#[test]
fn a_silent_server_is_a_timeout_not_invalid() {
    let _turn = lab_turn();
    // A socket that never answers: every query times out.
    let silent = UdpSocket::bind("127.77.0.251:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let (_d, out, o) = verify_bytes(
        b"email\na@ok.lab.test\n",
        &[
            "--level",
            "dns",
            "--dns-server",
            &addr,
            "--allow-reserved-domains",
            "--dns-timeout",
            "300ms",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        column(&out, "unknown.csv", "prebounce_reason"),
        ["dns-timeout"]
    );
    drop(silent);
}

#[test]
fn syntax_failures_never_reach_the_dns() {
    let _turn = lab_turn();
    let (_d, out) = verify_dns(
        "email\nnot-an-address\na..b@ok.lab.test\n@ok.lab.test\n",
        &[],
    );
    assert_eq!(summary(&out)["dns"]["queries"], 0);
    assert_eq!(
        column(&out, "invalid.csv", "prebounce_reason"),
        ["syntax"; 3]
    );
}

/// A scripted UDP server for faults a real server does not produce on demand: answers every
/// query with `reply(query)`, for a bounded number of queries, then stops.
fn scripted_server(reply: fn(&[u8]) -> Vec<u8>) -> (String, std::thread::JoinHandle<()>) {
    let socket = UdpSocket::bind("127.77.0.250:0").unwrap();
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let addr = socket.local_addr().unwrap().to_string();
    let handle = std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        for _ in 0..50 {
            let Ok((n, from)) = socket.recv_from(&mut buf) else {
                return;
            };
            let _ = socket.send_to(&reply(&buf[..n]), from);
        }
    });
    (addr, handle)
}

fn verify_against(server: &str) -> std::path::PathBuf {
    let (dir, out, o) = verify_bytes(
        b"email\na@ok.lab.test\nb@ok.lab.test\n",
        &[
            "--level",
            "dns",
            "--dns-server",
            server,
            "--allow-reserved-domains",
            "--dns-timeout",
            "300ms",
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!stderr(&o).contains("panicked"));
    std::mem::forget(dir); // keep the output for the caller
    out
}

#[test]
fn garbage_answers_are_unknown_never_invalid() {
    let _turn = lab_turn();
    let (addr, _server) = scripted_server(|_| b"\x00\x01garbage that is not DNS".to_vec());
    let out = verify_against(&addr);
    assert_eq!(list_rows(&out, "unknown.csv").len(), 2);
    let reasons = column(&out, "unknown.csv", "prebounce_reason");
    assert!(
        reasons
            .iter()
            .all(|r| r == "dns-timeout" || r == "dns-error"),
        "{reasons:?}"
    );
}

#[test]
fn a_truncated_answer_without_tcp_is_unknown() {
    let _turn = lab_turn();
    // The query echoed back as a response with TC set and no answers; nothing listens on TCP.
    let (addr, _server) = scripted_server(|q| {
        let mut r = q.to_vec();
        if r.len() >= 4 {
            r[2] |= 0x82; // QR + TC
            r[3] = 0x80; // RA, NOERROR
        }
        r
    });
    let out = verify_against(&addr);
    let reasons = column(&out, "unknown.csv", "prebounce_reason");
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(
        reasons
            .iter()
            .all(|r| r == "dns-timeout" || r == "dns-error"),
        "{reasons:?}"
    );
}

/// Issue #14, item 3: a verdict stored under `--allow-private-mx` is not served to a run
/// without it, nor the other way round: the lab's domains have private mail servers only, so
/// each run's answer depends on the flag, whatever the shared store holds.
#[test]
fn a_stored_verdict_serves_only_runs_under_the_same_private_mx_policy() {
    let _turn = lab_turn();
    lab_up();
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.sqlite3");
    let list = write_list(
        dir.path(),
        "list.csv",
        &["a@ok.lab.test".into(), "c@implicit.lab.test".into()],
    );
    let verify = |n: usize, flag: &[&str]| {
        let out = dir.path().join(format!("out{n}"));
        let mut args = vec![
            "verify",
            list.to_str().unwrap(),
            "--store",
            store.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend(dns_args(flag));
        let o = run(&args, b"");
        assert!(o.status.success(), "{}", stderr(&o));
        let reasons: Vec<String> = results(&out).into_iter().map(|r| r.2).collect();
        (reasons, summary(&out))
    };
    let private = ["--allow-private-mx"];
    let (reasons, _) = verify(1, &private);
    assert_eq!(reasons, ["domain-accepts-mail"; 2]);
    // Without the flag: verified again, not served the flagged run's verdicts.
    let (reasons, s) = verify(2, &[]);
    assert_eq!(reasons, ["mx-unroutable"; 2], "{s}");
    // With it again: the unflagged run's mx-unroutable (now the stored one) does not serve.
    let (reasons, s) = verify(3, &private);
    assert_eq!(reasons, ["domain-accepts-mail"; 2], "{s}");
    // The same options as the previous run: served from the store, no lookups.
    let (reasons, s) = verify(4, &private);
    assert_eq!(reasons, ["domain-accepts-mail"; 2]);
    assert_eq!(s["dns"]["queries"], 0, "{s}");
}
