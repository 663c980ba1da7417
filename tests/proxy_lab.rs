//! The probes' egress against the interop lab: through Debian's Dante (a real SOCKS5 proxy with
//! RFC 1929 authentication on 127.77.7.1:1080, connecting out from 127.77.7.2) and from a chosen
//! source address, asserted from the lab Postfix's own log of where each connection came from.

#![cfg(feature = "lab")]

mod common;

use common::*;

const DNS: &str = "127.77.0.1";
const PROXY: &str = "socks5://prebounce-socks:lab-socks-pass@127.77.7.1:1080";

/// The client address of each `connect from name[addr]` line.
fn clients(log: &str) -> Vec<String> {
    log.lines()
        .filter_map(|l| l.split_once("]: connect from ").map(|(_, c)| c))
        .filter_map(|c| {
            c.rsplit_once('[')
                .map(|(_, a)| a.trim_end_matches(']').to_owned())
        })
        .collect()
}

/// `verify --level smtp` of three addresses at the normal listener with `egress` options; the
/// output folder, the statuses by address, and what the maillog gained.
fn probe(
    egress: &[&str],
) -> (
    tempfile::TempDir,
    Vec<(String, String)>,
    String,
    serde_json::Value,
) {
    lab_up();
    let dir = tempfile::tempdir().expect("a folder");
    let list = write_list(
        dir.path(),
        "list.csv",
        &[
            "alice@ok.smtp.test".to_owned(),
            "bob@ok.smtp.test".to_owned(),
            "nobody@ok.smtp.test".to_owned(),
        ],
    );
    let out = dir.path().join("out");
    let sender = fresh_sender("egress");
    let maillog = lab_dir().join("postfix/maillog");
    let from = offset(&maillog);
    let mut args = vec![
        "verify",
        list.to_str().expect("UTF-8"),
        "--out",
        out.to_str().expect("UTF-8"),
        "--no-store",
        "--level",
        "smtp",
        "--from",
        &sender,
        "--dns-server",
        DNS,
        "--allow-reserved-domains",
        "--allow-private-mx",
        "--progress",
        "never",
        "-q",
    ];
    args.extend_from_slice(egress);
    let o = run(&args, b"");
    assert!(o.status.success(), "{}", stderr(&o));
    let mut rows = Vec::new();
    for list in LISTS {
        let emails = column(&out, list, "email");
        let reasons = column(&out, list, "prebounce_reason");
        rows.extend(emails.into_iter().zip(reasons));
    }
    rows.sort();
    // smtpd writes its connect line as the connection is accepted; give the log a moment.
    let mut log = read_since(&maillog, from);
    for _ in 0..20 {
        if !clients(&log).is_empty() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        log = read_since(&maillog, from);
    }
    (dir, rows, log, summary(&out))
}

fn reasons(rows: &[(String, String)]) -> Vec<(&str, &str)> {
    rows.iter().map(|(e, r)| (e.as_str(), r.as_str())).collect()
}

#[test]
fn probes_through_the_socks5_proxy_come_from_its_address() {
    let _turn = lab_turn();
    let (_dir, rows, log, summary) = probe(&["--proxy", PROXY]);
    assert_eq!(
        reasons(&rows),
        [
            ("alice@ok.smtp.test", "mailbox-accepted"),
            ("bob@ok.smtp.test", "mailbox-accepted"),
            ("nobody@ok.smtp.test", "mailbox-not-found"),
        ]
    );
    let seen = clients(&log);
    assert!(!seen.is_empty(), "the maillog shows the probes:\n{log}");
    assert!(
        seen.iter().all(|c| c == "127.77.7.2"),
        "every connection came out of the proxy: {seen:?}"
    );
    assert_eq!(
        summary["smtp"]["egress"],
        "socks5://prebounce-socks:***@127.77.7.1:1080"
    );
    assert!(!summary.to_string().contains("lab-socks-pass"));
}

#[test]
fn a_proxy_that_refuses_the_credentials_leaves_the_mailboxes_unknown() {
    let _turn = lab_turn();
    let wrong = "socks5://prebounce-socks:not-the-password@127.77.7.1:1080";
    let (_dir, rows, log, _) = probe(&["--proxy", wrong, "--retries", "0"]);
    for (email, reason) in &rows {
        assert_eq!(reason, "smtp-unreachable", "{email}: {rows:?}");
    }
    assert!(
        !clients(&log).iter().any(|c| c == "127.77.7.2"),
        "nothing got through: {log}"
    );
}

#[test]
fn a_source_address_is_the_one_the_server_sees() {
    let _turn = lab_turn();
    let (_dir, rows, log, summary) = probe(&["--source-ip", "127.77.7.3"]);
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0].1, "mailbox-accepted", "{rows:?}");
    let seen = clients(&log);
    assert!(!seen.is_empty(), "the maillog shows the probes:\n{log}");
    assert!(seen.iter().all(|c| c == "127.77.7.3"), "{seen:?}");
    assert_eq!(summary["smtp"]["egress"], "source 127.77.7.3");
}

/// A provider routed to a proxy of its own (`proxy` in `--providers`): its server's probes come
/// from the proxy's address, every other domain's directly, in the same run.
#[test]
fn a_provider_with_its_own_proxy_is_probed_through_it() {
    let _turn = lab_turn();
    lab_up();
    let dir = tempfile::tempdir().expect("a folder");
    let table = dir.path().join("providers.toml");
    std::fs::write(
        &table,
        format!(
            "[[provider]]\nid = \"outlook\"\nname = \"Outlook.com\"\n\
             mx = [\"*.olc.protection.outlook.com\"]\nconnections = 2\npause_ms = 100\n\
             rcpt_per_transaction = 1\nproxy = \"{PROXY}\"\n"
        ),
    )
    .expect("the table is written");
    let list = write_list(
        dir.path(),
        "list.csv",
        &[
            "alice@outlook.smtp.test".to_owned(),
            "nobody@outlook.smtp.test".to_owned(),
            "alice@ok.smtp.test".to_owned(),
        ],
    );
    let out = dir.path().join("out");
    let sender = fresh_sender("routed");
    let maillog = lab_dir().join("postfix/maillog");
    let from = offset(&maillog);
    verify_in_lab(
        &list,
        &out,
        Some(&sender),
        &["--providers", table.to_str().expect("UTF-8")],
    );
    let mut valid = column(&out, "valid.csv", "email");
    valid.sort();
    assert_eq!(valid, ["alice@ok.smtp.test", "alice@outlook.smtp.test"]);
    assert_eq!(
        column(&out, "invalid.csv", "email"),
        ["nobody@outlook.smtp.test"]
    );
    // Postfix's RCPT lines name the client: `RCPT from unknown[ADDR]: … to=<RECIPIENT>`.
    let log = read_since(&maillog, from);
    let mut by_domain: Vec<(String, String)> = log
        .lines()
        .filter(|l| l.contains("info: RCPT from") && l.contains(&sender))
        .filter_map(|l| {
            let client = l
                .split("RCPT from ")
                .nth(1)?
                .split_once('[')?
                .1
                .split(']')
                .next()?;
            let to = l.split(" to=<").nth(1)?.split('>').next()?;
            Some((to.rsplit('@').next()?.to_owned(), client.to_owned()))
        })
        .collect();
    by_domain.sort();
    by_domain.dedup();
    assert_eq!(
        by_domain,
        [
            ("ok.smtp.test".to_owned(), "127.0.0.1".to_owned()),
            ("outlook.smtp.test".to_owned(), "127.77.7.2".to_owned()),
        ],
        "{log}"
    );
}
