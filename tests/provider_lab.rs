//! Provider rules against the interop lab: domains whose MX is named like Yahoo's and Outlook's
//! servers (lab/dns/smtp-zones.conf), both pointing at the lab's normal Postfix listener. The
//! provider table says Yahoo/AOL accept every recipient at RCPT (never probed) and Outlook's
//! consumer servers take one recipient a transaction; Postfix's log says what reached it.

#![cfg(feature = "lab")]

mod common;

use common::*;

#[test]
fn yahoo_is_not_probed_and_outlook_gets_one_recipient_a_session() {
    lab_up();
    let _turn = lab_turn();
    let dir = tempfile::tempdir().expect("a folder");
    let emails: Vec<String> = ["alice", "bob", "nobody"]
        .iter()
        .flat_map(|l| {
            [
                format!("{l}@yahoo.smtp.test"),
                format!("{l}@outlook.smtp.test"),
            ]
        })
        .collect();
    let list = write_list(dir.path(), "list.csv", &emails);
    let out = dir.path().join("out");
    let sender = fresh_sender("providers");
    let maillog = lab_dir().join("postfix/maillog");
    let from = offset(&maillog);
    verify_in_lab(&list, &out, Some(&sender), &[]);
    let mut rows: Vec<(String, String)> = Vec::new();
    for list in LISTS {
        rows.extend(column(&out, list, "email").into_iter().zip(column(
            &out,
            list,
            "prebounce_reason",
        )));
    }
    rows.sort();
    let got: Vec<(&str, &str)> = rows.iter().map(|(e, r)| (e.as_str(), r.as_str())).collect();
    assert_eq!(
        got,
        [
            ("alice@outlook.smtp.test", "mailbox-accepted"),
            ("alice@yahoo.smtp.test", "provider-accepts-all"),
            ("bob@outlook.smtp.test", "mailbox-accepted"),
            ("bob@yahoo.smtp.test", "provider-accepts-all"),
            ("nobody@outlook.smtp.test", "mailbox-not-found"),
            ("nobody@yahoo.smtp.test", "provider-accepts-all"),
        ]
    );
    // Every row names its provider, and summary.json counts them.
    for list in LISTS {
        for (email, provider) in
            column(&out, list, "email")
                .into_iter()
                .zip(column(&out, list, "prebounce_provider"))
        {
            let want = if email.ends_with("@yahoo.smtp.test") {
                "yahoo"
            } else {
                "outlook"
            };
            assert_eq!(provider, want, "{email}");
        }
    }
    let s = summary(&out);
    assert_eq!(
        s["providers"],
        serde_json::json!({"outlook": 3, "yahoo": 3})
    );
    let detail = column(&out, "catch-all.csv", "prebounce_detail");
    assert!(
        detail
            .iter()
            .all(|d| d.contains("Yahoo/AOL accepts every address")),
        "{detail:?}"
    );
    // smtpd's disconnect line counts each connection's commands: `mail=2 rcpt=1/2` (accepted
    // / sent). A connection may serve several transactions; each must carry one RCPT.
    let mut log = read_since(&maillog, from);
    for _ in 0..30 {
        if log.contains(" disconnect from ")
            && log.matches(" rcpt=").count() == log.matches(" disconnect from ").count()
        {
            let (_, total) = mail_and_rcpt_totals(&log);
            if total >= 4 {
                break;
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        log = read_since(&maillog, from);
    }
    assert!(
        !log.contains("@yahoo.smtp.test"),
        "Yahoo was probed:\n{log}"
    );
    let per_connection: Vec<(u32, u32)> = log
        .lines()
        .filter(|l| l.contains(" disconnect from "))
        .map(|l| (smtpd_count(l, "mail").1, smtpd_count(l, "rcpt").1))
        .collect();
    assert!(
        !per_connection.is_empty(),
        "the sessions are in the log:\n{log}"
    );
    for (mail, rcpt) in &per_connection {
        assert_eq!(
            mail, rcpt,
            "a transaction carried more than one RCPT: {per_connection:?}"
        );
    }
    // Three addresses plus the catch-all canary: four transactions, one recipient each.
    assert_eq!(mail_and_rcpt_totals(&log), (4, 4), "{per_connection:?}");
}

fn mail_and_rcpt_totals(log: &str) -> (u32, u32) {
    log.lines()
        .filter(|l| l.contains(" disconnect from "))
        .fold((0, 0), |(m, r), l| {
            (m + smtpd_count(l, "mail").1, r + smtpd_count(l, "rcpt").1)
        })
}

/// `--group-by prebounce_provider` groups by the computed provider (at level dns: the MX name
/// is enough), rows without one in "(empty)".
#[test]
fn rows_group_by_their_provider() {
    lab_up();
    let dir = tempfile::tempdir().expect("a folder");
    let emails: Vec<String> = [
        "alice@yahoo.smtp.test",
        "bob@yahoo.smtp.test",
        "alice@outlook.smtp.test",
        "alice@ok.smtp.test",
        "alice@yahoo.smtp.test",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let list = write_list(dir.path(), "list.csv", &emails);
    let out = dir.path().join("out");
    verify_in_lab(&list, &out, None, &["--group-by", "prebounce_provider"]);
    let s = summary(&out);
    assert_eq!(s["group_by"]["column"], "prebounce_provider");
    let mut groups: Vec<(String, u64)> = s["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .map(|g| {
            (
                g["value"].as_str().unwrap_or("").to_owned(),
                g["rows"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    groups.sort();
    assert_eq!(
        groups,
        [
            ("(empty)".to_owned(), 1),
            ("outlook".to_owned(), 1),
            ("yahoo".to_owned(), 3)
        ]
    );
}

/// A Microsoft 365 tenant with directory-based edge blocking (the lab's m365 listener, reached
/// through a `*.mail.protection.outlook.com` MX name): its `550 5.4.1 … Access denied` means
/// the recipient does not exist there, not that the prober is blocked, and its canary's
/// refusal makes its acceptances worth something.
#[test]
fn microsoft_365_edge_blocking_means_no_such_recipient() {
    lab_up();
    let _turn = lab_turn();
    let dir = tempfile::tempdir().expect("a folder");
    let emails: Vec<String> = ["alice@m365.smtp.test", "nobody@m365.smtp.test"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let list = write_list(dir.path(), "list.csv", &emails);
    let out = dir.path().join("out");
    let sender = fresh_sender("m365");
    verify_in_lab(&list, &out, Some(&sender), &[]);
    assert_eq!(column(&out, "valid.csv", "email"), ["alice@m365.smtp.test"]);
    assert_eq!(
        column(&out, "valid.csv", "prebounce_reason"),
        ["mailbox-accepted"]
    );
    assert_eq!(
        column(&out, "invalid.csv", "email"),
        ["nobody@m365.smtp.test"]
    );
    assert_eq!(
        column(&out, "invalid.csv", "prebounce_reason"),
        ["mailbox-not-found"]
    );
    let detail = column(&out, "invalid.csv", "prebounce_detail");
    assert!(detail[0].contains("550 5.4.1"), "{detail:?}");
    for list in ["valid.csv", "invalid.csv"] {
        assert_eq!(column(&out, list, "prebounce_provider"), ["microsoft365"]);
    }
}
