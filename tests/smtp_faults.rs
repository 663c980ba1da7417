//! The SMTP probe driver against faults no real server produces on demand: a scripted
//! in-process server (loopback only) answers per connection and per RCPT and records every
//! byte the client sends, so each test checks both the outcomes and the wire.
//!
//! No timing assertions: timeouts are short and bounded, and a test that finishes proves they
//! hold.

#[path = "common/scripted_smtp.rs"]
mod scripted_smtp;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Duration;

use prebounce::smtp::egress::{BlockedBy, Judgement};
use prebounce::smtp::probe::{
    CatchAll, DomainProbe, MxTarget, ProbeConfig, Prober, SmtpEvidence, SmtpOutcome,
};
use prebounce::smtp::session::TlsPolicy;
use prebounce::verdict::{Reason, decide_mailbox};
use scripted_smtp::{Answer, Behavior, ConnLog, Ehlo, Greeting, Rcpt, Server, mailboxes, verdict};

const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// Nothing listens there (servers bind 127.0.0.1 only): connections are refused.
const DEAD: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

fn config(port: u16) -> ProbeConfig {
    ProbeConfig {
        port,
        allow_private: true,
        command_timeout: Duration::from_millis(1500),
        banner_timeout: Duration::from_millis(1500),
        greylist_wait: Duration::from_millis(300),
        host_pause: Duration::from_millis(10),
        ..ProbeConfig::new("probe.test", "check@probe.test")
    }
}

fn mx(ip: IpAddr) -> Vec<MxTarget> {
    vec![MxTarget {
        name: "mx.d.test".into(),
        ips: vec![ip],
    }]
}

fn strings(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

async fn probe(prober: &Prober, targets: &[MxTarget], rcpts: &[&str]) -> DomainProbe {
    // A bound on the whole probe: a hang is a failure, not a stuck test run.
    let got = tokio::time::timeout(
        Duration::from_secs(25),
        prober.probe_domain("d.test", targets, strings(rcpts)),
    )
    .await
    .expect("probe_domain finished");
    // As the SMTP stage does after a window: connections left parked say QUIT now.
    prober.close_idle().await;
    got
}

fn code(e: &SmtpEvidence) -> u16 {
    match &e.outcome {
        SmtpOutcome::Replied(r) => r.code,
        other => panic!("expected a reply, got {other:?}"),
    }
}

fn is_canary(address: &str) -> bool {
    let Some(local) = address.strip_suffix("@d.test") else {
        return false;
    };
    local.len() >= 16 && local.bytes().all(|b| b.is_ascii_lowercase())
}

/// The command lines of a connection, checked: each ends in CRLF, holds no other CR, LF or
/// NUL, and is one of the commands a probe may send (never DATA).
fn commands(log: &ConnLog) -> Vec<String> {
    let text = String::from_utf8(log.received.clone()).expect("UTF-8 on the wire");
    if !text.is_empty() {
        assert!(text.ends_with("\r\n"), "unterminated command in {text:?}");
    }
    let lines: Vec<String> = text.split_terminator("\r\n").map(str::to_string).collect();
    for line in &lines {
        assert!(
            !line.contains(['\r', '\n', '\0']),
            "control character inside a command: {line:?}"
        );
        let upper = line.to_ascii_uppercase();
        assert!(!upper.starts_with("DATA"), "DATA on the wire: {text:?}");
        let allowed = [
            "EHLO ",
            "HELO ",
            "STARTTLS",
            "MAIL FROM:<",
            "RCPT TO:<",
            "RSET",
            "QUIT",
        ];
        assert!(
            allowed.iter().any(|v| upper.starts_with(v)),
            "unexpected command {line:?}"
        );
    }
    lines
}

/// The addresses of the RCPT commands of a connection, in order.
fn rcpts(log: &ConnLog) -> Vec<String> {
    commands(log)
        .iter()
        .filter_map(|l| l.strip_prefix("RCPT TO:<"))
        .map(|a| a.strip_suffix('>').expect("RCPT ends with >").to_string())
        .collect()
}

fn all_rcpts(logs: &[ConnLog]) -> Vec<String> {
    logs.iter().flat_map(rcpts).collect()
}

fn count(logs: &[ConnLog], address: &str) -> usize {
    all_rcpts(logs).iter().filter(|a| *a == address).count()
}

/// A whole, orderly session: EHLO first, MAIL before RCPTs, QUIT last.
fn assert_orderly(log: &ConnLog) {
    let lines = commands(log);
    assert!(lines[0].starts_with("EHLO probe.test"), "{lines:?}");
    assert_eq!(lines.last().map(String::as_str), Some("QUIT"), "{lines:?}");
    let mail = lines
        .iter()
        .position(|l| l.starts_with("MAIL FROM:<check@probe.test>"));
    if let Some(first_rcpt) = lines.iter().position(|l| l.starts_with("RCPT")) {
        assert!(mail.is_some_and(|m| m < first_rcpt), "{lines:?}");
    }
}

// ------------------------------------------------------------------------------------------
// 1, 2: the plain cases
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn happy_path_with_pipelining() {
    let server = Server::start(|_| Behavior::new(mailboxes(&["a@d.test", "c@d.test"]))).await;
    let prober = Prober::new(config(server.port())).unwrap();
    let got = probe(
        &prober,
        &mx(LOCALHOST),
        &["a@d.test", "b@d.test", "c@d.test"],
    )
    .await;

    let codes: Vec<u16> = got.results.iter().map(code).collect();
    assert_eq!(codes, [250, 550, 250]);
    assert_eq!(got.catch_all, CatchAll::No);
    for r in &got.results {
        assert_eq!(r.catch_all, CatchAll::No);
        assert_eq!(r.attempts, 1);
        assert_eq!(r.server.as_deref(), Some("mx.d.test [127.0.0.1]"));
    }

    let logs = server.logs().await;
    assert_eq!(logs.len(), 1, "one session");
    let log = &logs[0];
    assert_orderly(log);
    let sent = rcpts(log);
    assert_eq!(sent.len(), 4);
    assert!(is_canary(&sent[0]), "the canary leads: {sent:?}");
    assert_eq!(sent[1..], strings(&["a@d.test", "b@d.test", "c@d.test"]));
    assert!(
        log.max_rcpt_burst >= 2,
        "RCPTs pipelined: at most {} waited at once",
        log.max_rcpt_burst
    );
    assert_eq!(
        commands(log),
        [
            "EHLO probe.test".to_string(),
            "MAIL FROM:<check@probe.test>".into(),
            format!("RCPT TO:<{}>", sent[0]),
            "RCPT TO:<a@d.test>".into(),
            "RCPT TO:<b@d.test>".into(),
            "RCPT TO:<c@d.test>".into(),
            // Ends the transaction on a kept connection (see smtp::session on why not RSET).
            "EHLO probe.test".into(),
            "QUIT".into(),
        ]
    );

    let stats = prober.stats();
    assert_eq!(stats.sessions, logs.len() as u64);
    assert_eq!(stats.rcpt_commands, all_rcpts(&logs).len() as u64);
    assert_eq!(
        (stats.domains, stats.deferred, stats.catch_all_domains),
        (1, 0, 0)
    );
}

#[tokio::test]
async fn catch_all_server() {
    let server =
        Server::start(|_| Behavior::new(Arc::new(|_: &Rcpt| Answer::Say("250 2.1.5 Ok".into()))))
            .await;
    let prober = Prober::new(config(server.port())).unwrap();
    let got = probe(&prober, &mx(LOCALHOST), &["a@d.test", "zz@d.test"]).await;
    assert_eq!(got.catch_all, CatchAll::Yes);
    for r in &got.results {
        assert_eq!(code(r), 250);
        assert_eq!(r.catch_all, CatchAll::Yes);
    }
    let logs = server.logs().await;
    assert_eq!(logs.len(), 1);
    assert_orderly(&logs[0]);
    assert_eq!(prober.stats().catch_all_domains, 1);
}

#[tokio::test]
async fn catch_all_verdict_is_kept_for_the_run() {
    let server =
        Server::start(|_| Behavior::new(Arc::new(|_: &Rcpt| Answer::Say("250 2.1.5 Ok".into()))))
            .await;
    let prober = Prober::new(config(server.port())).unwrap();
    let first = probe(&prober, &mx(LOCALHOST), &["a@d.test"]).await;
    // The same domain again, as in a later window of a long list: no second canary.
    let again = probe(&prober, &mx(LOCALHOST), &["b@d.test"]).await;
    assert_eq!(first.catch_all, CatchAll::Yes);
    assert_eq!(again.catch_all, CatchAll::Yes);
    assert_eq!(again.results[0].catch_all, CatchAll::Yes);
    let logs = server.logs().await;
    assert_eq!(logs.len(), 2);
    let canaries = all_rcpts(&logs).iter().filter(|a| is_canary(a)).count();
    assert_eq!(canaries, 1, "one canary per domain per run");
    assert_eq!(rcpts(&logs[1]), ["b@d.test"]);
    assert_eq!(prober.stats().catch_all_domains, 1);
}

// ------------------------------------------------------------------------------------------
// 3: greylisting
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn greylisting_then_accepted() {
    let known = strings(&["a@d.test"]);
    let server = Server::start(move |_| {
        let known = known.clone();
        Behavior::new(Arc::new(move |r: &Rcpt| {
            Answer::Say(if r.seen == 0 {
                "450 4.2.0 <x>: Recipient address rejected: Greylisted, try again later".into()
            } else {
                verdict(&known, &r.address)
            })
        }))
    })
    .await;
    let prober = Prober::new(config(server.port())).unwrap();
    let got = probe(&prober, &mx(LOCALHOST), &["a@d.test", "b@d.test"]).await;
    assert_eq!(code(&got.results[0]), 250);
    assert_eq!(code(&got.results[1]), 550);
    assert_eq!(got.catch_all, CatchAll::No, "the canary was retried too");
    for r in &got.results {
        assert_eq!(r.attempts, 2);
    }

    let logs = server.logs().await;
    // The wait is shorter than a parked connection's idle limit: the second transaction
    // runs on the first connection.
    assert_eq!(logs.len(), 1, "one connection");
    assert_orderly(&logs[0]);
    let mails = commands(&logs[0])
        .iter()
        .filter(|c| c.starts_with("MAIL FROM"))
        .count();
    assert_eq!(
        mails, 2,
        "one transaction, then one after the greylist wait"
    );
    assert_eq!(rcpts(&logs[0]).len(), 6);
    for a in ["a@d.test", "b@d.test"] {
        assert_eq!(count(&logs, a), 2, "{a}");
    }
    let stats = prober.stats();
    // The canary is deferred too, but it is no recipient of the list.
    assert_eq!(stats.deferred, 2, "two mailboxes");
    assert_eq!(stats.sessions, 1);
    assert_eq!(stats.sessions_on_kept_connections, 1);
    assert_eq!(stats.rcpt_commands, all_rcpts(&logs).len() as u64);
}

#[tokio::test]
async fn greylisting_forever_exhausts_the_retries() {
    let server = Server::start(|_| {
        Behavior::new(Arc::new(|_: &Rcpt| {
            Answer::Say("450 4.2.0 Greylisted, see https://postgrey.example".into())
        }))
    })
    .await;
    let cfg = ProbeConfig {
        retries: 2,
        ..config(server.port())
    };
    let prober = Prober::new(cfg).unwrap();
    let got = probe(&prober, &mx(LOCALHOST), &["a@d.test", "b@d.test"]).await;
    for r in &got.results {
        assert_eq!(code(r), 450, "still deferred after the retries");
        assert_eq!(r.attempts, 3);
    }
    assert_eq!(got.catch_all, CatchAll::Undetermined);

    let logs = server.logs().await;
    for a in ["a@d.test", "b@d.test"] {
        assert_eq!(count(&logs, a), 1 + 2, "1 + retries RCPTs for {a}");
    }
    for log in &logs {
        assert_orderly(log);
    }
    let stats = prober.stats();
    assert_eq!(
        stats.deferred,
        2 * 2,
        "two recipients deferred twice each (the canary is not counted)"
    );
    assert_eq!(stats.rcpt_commands, all_rcpts(&logs).len() as u64);
    assert_eq!(stats.sessions, logs.len() as u64);
}

// ------------------------------------------------------------------------------------------
// 4: a multi-line greeting with a pause
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn multi_line_greeting_client_waits_for_the_last_line() {
    let server = Server::start(|_| Behavior {
        greeting: Greeting::MultiLine {
            pause: Duration::from_millis(400),
        },
        ..Behavior::new(mailboxes(&["a@d.test"]))
    })
    .await;
    let prober = Prober::new(config(server.port())).unwrap();
    let got = probe(&prober, &mx(LOCALHOST), &["a@d.test"]).await;
    assert_eq!(code(&got.results[0]), 250);
    let logs = server.logs().await;
    assert_eq!(logs.len(), 1);
    assert!(
        !logs[0].early_bytes,
        "the client spoke before the final 220"
    );
    assert_orderly(&logs[0]);
}

// ------------------------------------------------------------------------------------------
// 5: servers that do not talk
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn server_that_never_greets_times_out() {
    let server = Server::start(|_| Behavior {
        greeting: Greeting::Silent,
        ..Behavior::new(mailboxes(&[]))
    })
    .await;
    let cfg = ProbeConfig {
        banner_timeout: Duration::from_millis(300),
        retries: 1,
        ..config(server.port())
    };
    let prober = Prober::new(cfg).unwrap();
    let got = probe(&prober, &mx(LOCALHOST), &["a@d.test", "b@d.test"]).await;
    for r in &got.results {
        assert!(
            matches!(r.outcome, SmtpOutcome::Timeout(_)),
            "{:?}",
            r.outcome
        );
    }
    let logs = server.logs().await;
    assert_eq!(logs.len(), 2, "one attempt and one retry");
    for log in &logs {
        assert!(log.received.is_empty(), "nothing sent before a greeting");
    }
    assert_eq!(prober.stats().rcpt_commands, 0);
}

#[tokio::test]
async fn server_that_closes_at_once() {
    let server = Server::start(|_| Behavior {
        greeting: Greeting::Close,
        ..Behavior::new(mailboxes(&[]))
    })
    .await;
    let cfg = ProbeConfig {
        retries: 1,
        ..config(server.port())
    };
    let prober = Prober::new(cfg).unwrap();
    let got = probe(&prober, &mx(LOCALHOST), &["a@d.test"]).await;
    let outcome = &got.results[0].outcome;
    assert!(
        matches!(outcome, SmtpOutcome::Unreachable(_)),
        "{outcome:?}"
    );
    assert_eq!(got.catch_all, CatchAll::Undetermined);
    let logs = server.logs().await;
    assert_eq!(logs.len(), 2);
    assert!(logs.iter().all(|l| l.received.is_empty()));
}

#[tokio::test]
async fn connection_refused_is_unreachable() {
    // A live server on 127.0.0.1 holds the port; nothing listens on 127.0.0.2 at that port.
    let server = Server::start(|_| Behavior::new(mailboxes(&[]))).await;
    let cfg = ProbeConfig {
        retries: 1,
        ..config(server.port())
    };
    let prober = Prober::new(cfg).unwrap();
    let got = probe(&prober, &mx(DEAD), &["a@d.test"]).await;
    let outcome = &got.results[0].outcome;
    assert!(
        matches!(outcome, SmtpOutcome::Unreachable(_)),
        "{outcome:?}"
    );
    let stats = prober.stats();
    assert_eq!(stats.sessions, 0);
    assert!(stats.connect_failures >= 1);
    assert_eq!(server.connections(), 0);
}

// ------------------------------------------------------------------------------------------
// 6, 7: slow and endless replies
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn replies_trickled_byte_by_byte() {
    let server = Server::start(|_| Behavior {
        trickle: Some(Duration::from_millis(1)),
        greeting: Greeting::MultiLine {
            pause: Duration::from_millis(50),
        },
        ..Behavior::new(mailboxes(&["a@d.test"]))
    })
    .await;
    let cfg = ProbeConfig {
        command_timeout: Duration::from_secs(3),
        banner_timeout: Duration::from_secs(3),
        ..config(server.port())
    };
    let prober = Prober::new(cfg).unwrap();
    let got = probe(&prober, &mx(LOCALHOST), &["a@d.test", "b@d.test"]).await;
    assert_eq!(code(&got.results[0]), 250);
    assert_eq!(code(&got.results[1]), 550);
    assert_eq!(got.catch_all, CatchAll::No);
    let logs = server.logs().await;
    assert_eq!(logs.len(), 1);
    assert_orderly(&logs[0]);
    assert!(!logs[0].early_bytes);
}

#[tokio::test]
async fn endless_replies_end_in_a_protocol_error() {
    for flood in [Ehlo::FloodLines, Ehlo::EndlessLine] {
        let f = flood.clone();
        let server = Server::start(move |_| Behavior {
            ehlo: f.clone(),
            ..Behavior::new(Arc::new(|_: &Rcpt| Answer::Say("250 2.1.5 Ok".into())))
        })
        .await;
        let cfg = ProbeConfig {
            retries: 1,
            ..config(server.port())
        };
        let prober = Prober::new(cfg).unwrap();
        let got = probe(&prober, &mx(LOCALHOST), &["a@d.test"]).await;
        let outcome = &got.results[0].outcome;
        assert!(
            matches!(outcome, SmtpOutcome::ProtocolError(_)),
            "{flood:?}: {outcome:?}"
        );
        assert_eq!(got.catch_all, CatchAll::Undetermined);
        let logs = server.logs().await;
        assert_eq!(logs.len(), 2, "{flood:?}: one attempt and one retry");
        for log in &logs {
            assert_eq!(commands(log), ["EHLO probe.test"], "{flood:?}");
        }
    }
}

/// A server that answers a command before it was sent (a stray extra reply) would shift every
/// later reply onto the wrong command: the RCPT answers would belong to other mailboxes.
#[tokio::test]
async fn stray_replies_are_not_taken_as_answers() {
    let server = Server::start(|_| Behavior {
        // The EHLO reply, then a stray "250" that would pass for the reply to MAIL FROM.
        ehlo: Ehlo::Raw("250-mx.d.test\r\n250 PIPELINING\r\n250 2.0.0 Ok\r\n"),
        ..Behavior::new(mailboxes(&[]))
    })
    .await;
    let cfg = ProbeConfig {
        retries: 1,
        ..config(server.port())
    };
    let prober = Prober::new(cfg).unwrap();
    let got = probe(&prober, &mx(LOCALHOST), &["a@d.test", "b@d.test"]).await;
    for r in &got.results {
        assert!(
            matches!(r.outcome, SmtpOutcome::ProtocolError(_)),
            "{:?}",
            r.outcome
        );
    }
    let logs = server.logs().await;
    assert!(
        all_rcpts(&logs).is_empty(),
        "no RCPT on a desynchronised session"
    );
}

// ------------------------------------------------------------------------------------------
// 8, 9: sessions cut short
// ------------------------------------------------------------------------------------------

/// Server capabilities with or without PIPELINING.
fn caps(pipelining: bool) -> Ehlo {
    Ehlo::Caps(if pipelining {
        vec!["PIPELINING", "SIZE 10240000"]
    } else {
        vec!["SIZE 10240000"]
    })
}

/// A server that knows a@ and c@d.test and answers the third RCPT of its first connection
/// (after the canary and a@) with `fault`; every other RCPT by `verdict`.
async fn third_rcpt_fails(pipelining: bool, fault: Answer) -> Server {
    let known = strings(&["a@d.test", "c@d.test"]);
    Server::start(move |_| {
        let (known, fault) = (known.clone(), fault.clone());
        Behavior {
            ehlo: caps(pipelining),
            ..Behavior::new(Arc::new(move |r: &Rcpt| {
                if r.conn == 0 && r.nth_in_conn == 2 {
                    fault.clone()
                } else {
                    Answer::Say(verdict(&known, &r.address))
                }
            }))
        }
    })
    .await
}

/// What a session cut short keeps: without pipelining every answer was complete before the
/// next RCPT and stands; pipelined, the answers of the group in flight are asked again (had a
/// reply of the group been lost, each later one would be its predecessor's).
#[tokio::test]
async fn drop_mid_reply_keeps_the_complete_answers_and_retries_the_rest() {
    for pipelining in [false, true] {
        // First connection: the canary and a@ are answered, b@'s reply is cut short.
        let server =
            third_rcpt_fails(pipelining, Answer::CutAndClose("550 5.1.1 <b@d.te".into())).await;
        let prober = Prober::new(config(server.port())).unwrap();
        let got = probe(
            &prober,
            &mx(LOCALHOST),
            &["a@d.test", "b@d.test", "c@d.test"],
        )
        .await;
        let codes: Vec<u16> = got.results.iter().map(code).collect();
        assert_eq!(codes, [250, 550, 250], "pipelining {pipelining}");
        assert_eq!(got.catch_all, CatchAll::No);

        let logs = server.logs().await;
        assert_eq!(logs.len(), 2);
        let first = rcpts(&logs[0]);
        assert!(is_canary(&first[0]));
        let again = rcpts(&logs[1]);
        if pipelining {
            assert!(is_canary(&again[0]), "{again:?}");
            assert_eq!(again[1..], strings(&["a@d.test", "b@d.test", "c@d.test"]));
        } else {
            assert_eq!(
                again,
                strings(&["b@d.test", "c@d.test"]),
                "only the unanswered ones again"
            );
        }
        assert_orderly(&logs[1]);
        let stats = prober.stats();
        assert_eq!(stats.sessions, 2);
        assert_eq!(stats.rcpt_commands, all_rcpts(&logs).len() as u64);
    }
}

#[tokio::test]
async fn greeting_421_then_normal() {
    let server = Server::start(|conn| Behavior {
        greeting: if conn == 0 {
            Greeting::Refuse("421 4.3.2 Service not available, try later")
        } else {
            Greeting::Ok
        },
        ..Behavior::new(mailboxes(&["a@d.test"]))
    })
    .await;
    let prober = Prober::new(config(server.port())).unwrap();
    let got = probe(&prober, &mx(LOCALHOST), &["a@d.test", "b@d.test"]).await;
    assert_eq!(code(&got.results[0]), 250);
    assert_eq!(code(&got.results[1]), 550);
    assert_eq!(got.catch_all, CatchAll::No);
    let logs = server.logs().await;
    assert_eq!(logs.len(), 2);
    assert!(
        logs[0].received.is_empty(),
        "nothing said to a 421 greeting"
    );
    assert_orderly(&logs[1]);
}

#[tokio::test]
async fn server_closing_421_mid_rcpt() {
    for pipelining in [false, true] {
        let server = third_rcpt_fails(
            pipelining,
            Answer::SayAndClose("421 4.7.0 mx.d.test Error: too many errors".into()),
        )
        .await;
        let prober = Prober::new(config(server.port())).unwrap();
        let got = probe(
            &prober,
            &mx(LOCALHOST),
            &["a@d.test", "b@d.test", "c@d.test", "d@d.test"],
        )
        .await;
        let codes: Vec<u16> = got.results.iter().map(code).collect();
        assert_eq!(codes, [250, 550, 250, 550], "pipelining {pipelining}");
        assert_eq!(got.catch_all, CatchAll::No);
        let logs = server.logs().await;
        assert_eq!(logs.len(), 2);
        assert!(
            !commands(&logs[0]).contains(&"QUIT".to_string()),
            "no QUIT after 421"
        );
        let again = rcpts(&logs[1]);
        if pipelining {
            // The 421 cut the pipelined group short: its answers are asked again.
            assert!(is_canary(&again[0]), "{again:?}");
            assert_eq!(
                again[1..],
                strings(&["a@d.test", "b@d.test", "c@d.test", "d@d.test"])
            );
        } else {
            assert_eq!(
                again,
                strings(&["b@d.test", "c@d.test", "d@d.test"]),
                "the answered ones are kept"
            );
        }
        assert_orderly(&logs[1]);
    }
}

// ------------------------------------------------------------------------------------------
// 10, 11: server limits
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn rejection_cap_splits_sessions() {
    for pipelining in [true, false] {
        let server = Server::start(move |_| Behavior {
            ehlo: Ehlo::Caps(if pipelining {
                vec!["PIPELINING"]
            } else {
                vec!["SIZE 1000"]
            }),
            ..Behavior::new(mailboxes(&[]))
        })
        .await;
        let cfg = ProbeConfig {
            rcpt_per_session: 50,
            ..config(server.port())
        };
        let prober = Prober::new(cfg).unwrap();
        let unknown: Vec<String> = (0..40).map(|i| format!("nobody{i}@d.test")).collect();
        let refs: Vec<&str> = unknown.iter().map(String::as_str).collect();
        let got = probe(&prober, &mx(LOCALHOST), &refs).await;
        for r in &got.results {
            assert_eq!(code(r), 550, "pipelining {pipelining}");
            assert_eq!(r.attempts, 1);
        }
        assert_eq!(got.catch_all, CatchAll::No);

        let logs = server.logs().await;
        for (i, log) in logs.iter().enumerate() {
            let n = rcpts(log).len();
            assert!(
                n <= 9,
                "pipelining {pipelining}: connection {i} got {n} rejected RCPTs"
            );
            assert_orderly(log);
        }
        assert_eq!(
            all_rcpts(&logs).len(),
            41,
            "each mailbox and the canary once"
        );
        assert_eq!(logs.len(), 5, "41 rejections, 9 per session");
        let stats = prober.stats();
        assert_eq!(stats.sessions, logs.len() as u64);
        assert_eq!(stats.rcpt_commands, 41);
    }
}

#[tokio::test]
async fn too_many_recipients_shrinks_sessions() {
    let known = strings(&["m0@d.test", "m3@d.test", "m7@d.test", "m11@d.test"]);
    let server = Server::start(move |_| {
        let known = known.clone();
        Behavior::new(Arc::new(move |r: &Rcpt| {
            Answer::Say(if r.nth_in_txn >= 5 {
                "452 4.5.3 Error: too many recipients".into()
            } else {
                verdict(&known, &r.address)
            })
        }))
    })
    .await;
    let prober = Prober::new(config(server.port())).unwrap();
    let all: Vec<String> = (0..12).map(|i| format!("m{i}@d.test")).collect();
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    let got = probe(&prober, &mx(LOCALHOST), &refs).await;
    for (i, r) in got.results.iter().enumerate() {
        let want = if [0, 3, 7, 11].contains(&i) { 250 } else { 550 };
        assert_eq!(code(r), want, "m{i}");
    }
    assert_eq!(got.catch_all, CatchAll::No);
    let logs = server.logs().await;
    for log in &logs {
        assert_orderly(log);
    }
    // 13 recipients, 5 per transaction: 3 sessions is the least; halving the session size on
    // every 452 (rather than once per session) would take 9.
    assert!(logs.len() <= 4, "{} sessions", logs.len());
    assert_eq!(prober.stats().deferred, 0, "a 452 4.5.3 is not a deferral");
}

// ------------------------------------------------------------------------------------------
// 12, 13: what may be sent
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn smtputf8_only_when_advertised() {
    // Not advertised: never sent.
    let server = Server::start(|_| Behavior::new(mailboxes(&["josé@d.test", "a@d.test"]))).await;
    let prober = Prober::new(config(server.port())).unwrap();
    let got = probe(&prober, &mx(LOCALHOST), &["josé@d.test", "a@d.test"]).await;
    assert_eq!(got.results[0].outcome, SmtpOutcome::Smtputf8Unsupported);
    assert_eq!(code(&got.results[1]), 250);
    let logs = server.logs().await;
    assert_eq!(logs.len(), 1);
    assert!(logs[0].received.is_ascii(), "nothing non-ASCII on the wire");
    assert!(
        !commands(&logs[0]).iter().any(|l| l.contains("SMTPUTF8")),
        "SMTPUTF8 not asked for"
    );
    assert_orderly(&logs[0]);

    // Advertised: MAIL FROM asks for it and the RCPT goes out.
    let server = Server::start(|_| Behavior {
        ehlo: Ehlo::Caps(vec!["PIPELINING", "SMTPUTF8"]),
        ..Behavior::new(mailboxes(&["josé@d.test", "a@d.test"]))
    })
    .await;
    let prober = Prober::new(config(server.port())).unwrap();
    let got = probe(&prober, &mx(LOCALHOST), &["josé@d.test", "a@d.test"]).await;
    assert_eq!(code(&got.results[0]), 250);
    assert_eq!(code(&got.results[1]), 250);
    let logs = server.logs().await;
    assert_eq!(logs.len(), 1);
    let lines = commands(&logs[0]);
    assert!(
        lines.contains(&"MAIL FROM:<check@probe.test> SMTPUTF8".to_string()),
        "{lines:?}"
    );
    assert!(
        lines.contains(&"RCPT TO:<josé@d.test>".to_string()),
        "{lines:?}"
    );
    assert_orderly(&logs[0]);
}

#[tokio::test]
async fn injection_never_reaches_the_wire() {
    let evil = [
        "evil@d.test>\r\nDATA",
        "evil\r\nRSET@d.test",
        "evil\0@d.test",
        "ev<il@d.test",
        "evil@d.test> NOTIFY=NEVER",
        "evil@d.test\nRCPT TO:<x@d.test",
    ];
    let server = Server::start(|_| Behavior::new(mailboxes(&["good@d.test"]))).await;
    let prober = Prober::new(config(server.port())).unwrap();
    let mut list = evil.to_vec();
    list.push("good@d.test");
    let got = probe(&prober, &mx(LOCALHOST), &list).await;
    for (i, address) in evil.iter().enumerate() {
        assert!(
            matches!(got.results[i].outcome, SmtpOutcome::Unsendable(_)),
            "{address:?}: {:?}",
            got.results[i].outcome
        );
        assert_eq!(got.results[i].attempts, 0);
    }
    assert_eq!(code(&got.results[evil.len()]), 250);

    let logs = server.logs().await;
    assert_eq!(logs.len(), 1);
    let raw = &logs[0].received;
    for needle in [
        &b"evil"[..],
        b"DATA",
        b"\0",
        b"NOTIFY",
        b"RCPT TO:<x@",
        b"RSET",
    ] {
        assert!(
            !raw.windows(needle.len()).any(|w| w == needle),
            "{:?} on the wire",
            String::from_utf8_lossy(needle)
        );
    }
    let sent = rcpts(&logs[0]);
    assert_eq!(sent.len(), 2);
    assert!(is_canary(&sent[0]));
    assert_eq!(sent[1], "good@d.test");
    assert_eq!(
        commands(&logs[0]).len(),
        6,
        "EHLO, MAIL, 2 RCPT, EHLO, QUIT"
    );
    assert_orderly(&logs[0]);
}

// ------------------------------------------------------------------------------------------
// 14: STARTTLS
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn broken_starttls_falls_back_to_plain_text() {
    let server = Server::start(|_| Behavior {
        ehlo: Ehlo::Caps(vec!["PIPELINING", "STARTTLS"]),
        ..Behavior::new(mailboxes(&["a@d.test"]))
    })
    .await;
    let cfg = ProbeConfig {
        tls: TlsPolicy::Opportunistic,
        ..config(server.port())
    };
    let prober = Prober::new(cfg).unwrap();
    let got = probe(&prober, &mx(LOCALHOST), &["a@d.test", "b@d.test"]).await;
    assert_eq!(code(&got.results[0]), 250);
    assert_eq!(code(&got.results[1]), 550);
    assert_eq!(got.catch_all, CatchAll::No);

    let logs = server.logs().await;
    assert_eq!(logs.len(), 2);
    assert_eq!(commands(&logs[0]), ["EHLO probe.test", "STARTTLS"]);
    assert_eq!(
        logs[0].after_starttls.first(),
        Some(&0x16),
        "a TLS handshake record followed STARTTLS"
    );
    let second = commands(&logs[1]);
    assert!(!second.iter().any(|l| l == "STARTTLS"), "{second:?}");
    assert_eq!(rcpts(&logs[1]).len(), 3);
    assert_orderly(&logs[1]);
}

#[tokio::test]
async fn starttls_required_but_not_offered() {
    let server = Server::start(|_| Behavior::new(mailboxes(&["a@d.test"]))).await;
    let cfg = ProbeConfig {
        tls: TlsPolicy::Require,
        ..config(server.port())
    };
    let prober = Prober::new(cfg).unwrap();
    let got = probe(&prober, &mx(LOCALHOST), &["a@d.test"]).await;
    let outcome = &got.results[0].outcome;
    assert!(
        matches!(outcome, SmtpOutcome::Unreachable(_)),
        "{outcome:?}"
    );
    let logs = server.logs().await;
    assert_eq!(logs.len(), 1);
    assert_eq!(commands(&logs[0]), ["EHLO probe.test", "QUIT"]);
}

// ------------------------------------------------------------------------------------------
// 15: HELO fallback, sender refused
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn ehlo_rejected_falls_back_to_helo() {
    for refusal in [
        "502 5.5.2 Error: command not recognized",
        "500 5.5.1 Command unrecognized",
    ] {
        let server = Server::start(move |_| Behavior {
            ehlo: Ehlo::Reject(refusal),
            ..Behavior::new(mailboxes(&["a@d.test"]))
        })
        .await;
        let prober = Prober::new(config(server.port())).unwrap();
        let got = probe(&prober, &mx(LOCALHOST), &["a@d.test", "b@d.test"]).await;
        assert_eq!(code(&got.results[0]), 250);
        assert_eq!(code(&got.results[1]), 550);
        let logs = server.logs().await;
        assert_eq!(logs.len(), 1);
        let lines = commands(&logs[0]);
        assert_eq!(
            lines[..3],
            [
                "EHLO probe.test",
                "HELO probe.test",
                "MAIL FROM:<check@probe.test>"
            ]
        );
        assert_eq!(lines.last().map(String::as_str), Some("QUIT"));
        // No PIPELINING without EHLO: one RCPT at a time.
        assert_eq!(logs[0].max_rcpt_burst, 1);
    }
}

#[tokio::test]
async fn sender_rejected_is_session_refused() {
    let server = Server::start(|_| Behavior {
        mail: "553 5.7.1 <check@probe.test>: Sender address rejected: Access denied",
        ..Behavior::new(mailboxes(&["a@d.test"]))
    })
    .await;
    let prober = Prober::new(config(server.port())).unwrap();
    let got = probe(&prober, &mx(LOCALHOST), &["a@d.test", "b@d.test"]).await;
    for r in &got.results {
        match &r.outcome {
            SmtpOutcome::SessionRefused(reply) => assert_eq!(reply.code, 553),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(got.catch_all, CatchAll::Undetermined);
    let logs = server.logs().await;
    assert_eq!(logs.len(), 1, "a 5xx to MAIL FROM is not retried");
    // The RCPTs went pipelined with MAIL FROM; their replies (after the refusal) were not
    // taken as answers, as the outcomes above show.
    assert_eq!(
        commands(&logs[0]),
        [
            "EHLO probe.test",
            "MAIL FROM:<check@probe.test>",
            &format!("RCPT TO:<{}>", rcpts(&logs[0])[0]),
            "RCPT TO:<a@d.test>",
            "RCPT TO:<b@d.test>",
            "EHLO probe.test",
            "QUIT"
        ]
    );
    assert!(is_canary(&rcpts(&logs[0])[0]));
}

// ------------------------------------------------------------------------------------------
// 16, 17: several servers, servers given up
// ------------------------------------------------------------------------------------------

#[tokio::test]
async fn second_mx_answers_when_the_first_refuses() {
    let server = Server::start(|_| Behavior::new(mailboxes(&["a@d.test"]))).await;
    let prober = Prober::new(config(server.port())).unwrap();
    let targets = vec![
        MxTarget {
            name: "mx1.d.test".into(),
            ips: vec![DEAD],
        },
        MxTarget {
            name: "mx2.d.test".into(),
            ips: vec![LOCALHOST],
        },
    ];
    let got = probe(&prober, &targets, &["a@d.test", "b@d.test"]).await;
    assert_eq!(code(&got.results[0]), 250);
    assert_eq!(code(&got.results[1]), 550);
    for r in &got.results {
        assert_eq!(r.server.as_deref(), Some("mx2.d.test [127.0.0.1]"));
    }
    let logs = server.logs().await;
    assert_eq!(logs.len(), 1);
    assert_orderly(&logs[0]);
    let stats = prober.stats();
    assert_eq!(stats.connect_failures, 1);
    assert_eq!(stats.sessions, 1);
}

/// The primary MX checks mailboxes, then turns us away (421); the backup MX accepts every
/// recipient. What the backup accepted is worth nothing until its own canary says so.
#[tokio::test]
async fn a_backup_mx_gets_its_own_canary() {
    let primary = Server::start(|i| {
        if i == 0 {
            Behavior::new(mailboxes(&["a@d.test"]))
        } else {
            Behavior {
                greeting: Greeting::Refuse("421 4.3.2 Service not available, try later"),
                ..Behavior::new(mailboxes(&["a@d.test"]))
            }
        }
    })
    .await;
    let backup = Server::start_at(Ipv4Addr::new(127, 0, 0, 3), primary.port(), |_| {
        Behavior::new(Arc::new(|_: &Rcpt| Answer::Say("250 2.1.5 Ok".into())))
    })
    .await;
    let prober = Prober::new(ProbeConfig {
        rcpt_per_session: 3,
        // Each connection serves one session, so the second meets the 421.
        rcpt_per_connection: 3,
        ..config(primary.port())
    })
    .unwrap();
    let targets = vec![
        MxTarget {
            name: "mx1.d.test".into(),
            ips: vec![primary.ip()],
        },
        MxTarget {
            name: "mx2.d.test".into(),
            ips: vec![backup.ip()],
        },
    ];
    let rcpts = [
        "a@d.test",
        "nobody1@d.test",
        "nobody2@d.test",
        "nobody3@d.test",
        "nobody4@d.test",
    ];
    let got = probe(&prober, &targets, &rcpts).await;
    for (a, e) in rcpts.iter().zip(&got.results) {
        let (reason, detail) = decide_mailbox(e);
        match e.server.as_deref() {
            // The primary rejected its canary: its answers stand.
            Some("mx1.d.test [127.0.0.1]") => {
                assert_eq!(e.catch_all, CatchAll::No, "{a}: {detail}");
                let want = if *a == "a@d.test" {
                    Reason::MailboxAccepted
                } else {
                    Reason::MailboxNotFound
                };
                assert_eq!(reason, want, "{a}: {detail}");
            }
            // The backup accepted its canary: catch-all, never valid.
            Some("mx2.d.test [127.0.0.3]") => {
                assert_eq!(e.catch_all, CatchAll::Yes, "{a}: {detail}");
                assert_eq!(reason, Reason::AcceptAll, "{a}: {detail}");
            }
            other => panic!("{a}: answered by {other:?}"),
        }
    }
    assert!(
        got.results
            .iter()
            .any(|e| e.server.as_deref() == Some("mx2.d.test [127.0.0.3]")),
        "some recipients went to the backup"
    );
    let backup_logs = backup.logs().await;
    let backup_canaries = all_rcpts(&backup_logs)
        .iter()
        .filter(|a| is_canary(a))
        .count();
    assert_eq!(backup_canaries, 1, "the backup got its own canary");
    // (The primary's later connections end at its 421 greeting, before any command.)
    for log in backup_logs.iter().chain(primary.logs().await.iter()) {
        if !commands(log).is_empty() {
            assert_orderly(log);
        }
    }
}

/// A restarting server closes three connections from three domains at once: one event, not
/// three failures, so the host is not given up and a later domain is probed normally.
#[tokio::test]
async fn a_moment_s_glitch_at_a_shared_mx_is_one_failure() {
    let server = Server::start(|i| {
        if i < 3 {
            Behavior {
                greeting: Greeting::Close,
                ..Behavior::new(mailboxes(&["a@d4.test"]))
            }
        } else {
            Behavior::new(mailboxes(&["a@d4.test"]))
        }
    })
    .await;
    let prober = Prober::new(ProbeConfig {
        per_host: 3,
        ..config(server.port())
    })
    .unwrap();
    let targets = mx(LOCALHOST);
    let (a, b, c) = tokio::join!(
        prober.probe_domain("d1.test", &targets, strings(&["a@d1.test"])),
        prober.probe_domain("d2.test", &targets, strings(&["a@d2.test"])),
        prober.probe_domain("d3.test", &targets, strings(&["a@d3.test"])),
    );
    for p in [&a, &b, &c] {
        assert!(
            matches!(&p.results[0].outcome, SmtpOutcome::Replied(r) if r.code == 550),
            "{:?}",
            p.results[0].outcome
        );
    }
    let later = probe(&prober, &targets, &["a@d4.test"]).await;
    assert_eq!(code(&later.results[0]), 250);
    assert_eq!(prober.stats().hosts_given_up, 0);
}

#[tokio::test]
async fn failing_host_is_given_up() {
    // Hang-up at the greeting, and EHLO never answered (a timeout after the greeting).
    for mid_session in [false, true] {
        let server = Server::start(move |_| Behavior {
            greeting: if mid_session {
                Greeting::Ok
            } else {
                Greeting::Close
            },
            ehlo: Ehlo::Raw(""),
            ..Behavior::new(mailboxes(&[]))
        })
        .await;
        let cfg = ProbeConfig {
            retries: 5,
            give_up_after: 2,
            command_timeout: Duration::from_millis(300),
            ..config(server.port())
        };
        let prober = Prober::new(cfg).unwrap();
        let got = probe(&prober, &mx(LOCALHOST), &["a@d.test", "b@d.test"]).await;
        for r in &got.results {
            assert!(
                matches!(
                    r.outcome,
                    SmtpOutcome::Unreachable(_) | SmtpOutcome::Timeout(_)
                ),
                "mid-session {mid_session}: {:?}",
                r.outcome
            );
        }
        let stats = prober.stats();
        assert!(stats.hosts_given_up >= 1, "mid-session {mid_session}");
        let logs = server.logs().await;
        assert!(
            logs.len() <= 2,
            "mid-session {mid_session}: {} connections after give_up_after 2",
            logs.len()
        );
        assert!(all_rcpts(&logs).is_empty());
    }
}

#[tokio::test]
async fn server_closing_every_session_is_given_up() {
    let server = Server::start(|_| {
        Behavior::new(Arc::new(|_: &Rcpt| {
            Answer::SayAndClose("421 4.7.0 mx.d.test Error: too many errors".into())
        }))
    })
    .await;
    let cfg = ProbeConfig {
        retries: 5,
        // A 421 counts against give_up_after + 2 = 3.
        give_up_after: 1,
        ..config(server.port())
    };
    let prober = Prober::new(cfg).unwrap();
    let got = probe(&prober, &mx(LOCALHOST), &["a@d.test"]).await;
    let outcome = &got.results[0].outcome;
    assert!(
        matches!(outcome, SmtpOutcome::Unreachable(_)),
        "{outcome:?}"
    );
    let logs = server.logs().await;
    assert_eq!(logs.len(), 3, "given up after three 421s");
    for log in &logs {
        assert_eq!(rcpts(log).len(), 2, "pipelined, then closed on the first");
    }
    let stats = prober.stats();
    assert_eq!(stats.hosts_given_up, 1);
    assert_eq!(stats.sessions, 3);
    assert_eq!(stats.rcpt_commands, all_rcpts(&logs).len() as u64);
}

// ------------------------------------------------------------------------------------------
// Issue #14: replies out of step with the commands
// ------------------------------------------------------------------------------------------

/// How a server falls out of step with the commands it is sent.
#[derive(Clone, Copy, Debug)]
enum OutOfStep {
    /// A `550 5.1.1` right behind MAIL's `250`, before any RCPT was sent.
    EarlyRefusal,
    /// One extra, stale reply behind every RCPT reply (the opposite answer, so that a shifted
    /// reply would turn an existing mailbox invalid and a missing one valid).
    StaleAfterEachRcpt,
}

fn out_of_step_server(fault: OutOfStep, pipelining: bool, trickle: bool) -> Behavior {
    let known = strings(&["a@d.test"]);
    let rcpt: scripted_smtp::RcptFn = match fault {
        OutOfStep::EarlyRefusal => mailboxes(&["a@d.test"]),
        OutOfStep::StaleAfterEachRcpt => Arc::new(move |r: &Rcpt| {
            let real = verdict(&known, &r.address);
            let stale = if real.starts_with('2') {
                "550 5.1.1 Mailbox unavailable"
            } else {
                "250 2.1.5 Ok"
            };
            // `reply` ends the text with CRLF: two replies in one write.
            Answer::Say(format!("{real}\r\n{stale}"))
        }),
    };
    Behavior {
        ehlo: caps(pipelining),
        mail: match fault {
            OutOfStep::EarlyRefusal => "250 2.1.0 Ok\r\n550 5.1.1 Mailbox unavailable",
            OutOfStep::StaleAfterEachRcpt => "250 2.1.0 Ok",
        },
        // Byte by byte, a stray reply arrives after the next command was written (it is taken
        // for that command's reply); in one write it arrives with the reply before it.
        trickle: trickle.then(|| Duration::from_micros(200)),
        ..Behavior::new(rcpt)
    }
}

/// Every session with such a server is voided: no row rests on a misattributed answer, and
/// after the retries every row is unknown `protocol-error`. Each session still ends with QUIT.
#[tokio::test]
async fn out_of_step_replies_void_the_session() {
    for fault in [OutOfStep::EarlyRefusal, OutOfStep::StaleAfterEachRcpt] {
        for pipelining in [true, false] {
            for trickle in [false, true] {
                let case = format!("{fault:?}, pipelining {pipelining}, trickle {trickle}");
                let server =
                    Server::start(move |_| out_of_step_server(fault, pipelining, trickle)).await;
                let cfg = ProbeConfig {
                    command_timeout: Duration::from_secs(3),
                    banner_timeout: Duration::from_secs(3),
                    ..config(server.port())
                };
                let retries = cfg.retries as usize;
                let prober = Prober::new(cfg).unwrap();
                let got = probe(&prober, &mx(LOCALHOST), &["a@d.test", "b@d.test"]).await;
                for (a, e) in ["a@d.test", "b@d.test"].iter().zip(&got.results) {
                    let (reason, detail) = decide_mailbox(e);
                    assert_eq!(reason, Reason::ProtocolError, "{case}: {a}: {detail}");
                    assert!(
                        matches!(&e.outcome, SmtpOutcome::ProtocolError(why) if why.contains("out of step")),
                        "{case}: {a}: {:?}",
                        e.outcome
                    );
                }
                let logs = server.logs().await;
                assert_eq!(
                    logs.len(),
                    1 + retries,
                    "{case}: asked again, then given up"
                );
                for log in &logs {
                    let lines = commands(log);
                    assert!(lines[0].starts_with("EHLO"), "{case}: {lines:?}");
                    if !trickle {
                        // (Trickled, the rest of a reply may still be on its way when the
                        // client closes, and the reset can beat QUIT to the server's log.)
                        assert_eq!(
                            lines.last().map(String::as_str),
                            Some("QUIT"),
                            "{case}: {lines:?}"
                        );
                    }
                }
            }
        }
    }
}

/// The same addresses at a server that stays in step: the right verdicts, one session.
#[tokio::test]
async fn an_in_step_server_still_gets_its_verdicts() {
    for pipelining in [true, false] {
        for trickle in [false, true] {
            let server = Server::start(move |_| Behavior {
                ehlo: caps(pipelining),
                trickle: trickle.then(|| Duration::from_micros(200)),
                ..Behavior::new(mailboxes(&["a@d.test"]))
            })
            .await;
            let cfg = ProbeConfig {
                command_timeout: Duration::from_secs(3),
                banner_timeout: Duration::from_secs(3),
                ..config(server.port())
            };
            let prober = Prober::new(cfg).unwrap();
            let got = probe(&prober, &mx(LOCALHOST), &["a@d.test", "b@d.test"]).await;
            let reasons: Vec<Reason> = got.results.iter().map(|e| decide_mailbox(e).0).collect();
            assert_eq!(
                reasons,
                [Reason::MailboxAccepted, Reason::MailboxNotFound],
                "pipelining {pipelining}, trickle {trickle}"
            );
            let logs = server.logs().await;
            assert_eq!(logs.len(), 1);
            assert_orderly(&logs[0]);
        }
    }
}

// ------------------------------------------------------------------------------------------
// Port 25 unreachable: the first servers all fail to connect
// ------------------------------------------------------------------------------------------

/// Loopback addresses where nothing listens at the scripted server's port.
fn dead_servers(n: u8) -> Vec<Vec<MxTarget>> {
    (0..n)
        .map(|i| mx(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + i))))
        .collect()
}

#[tokio::test]
async fn eight_refusing_servers_first_stop_the_prober() {
    let server = Server::start(|_| Behavior::new(mailboxes(&["a"]))).await;
    let prober = Prober::new(config(server.port())).unwrap();
    let dead = dead_servers(8);
    futures::future::join_all(dead.iter().map(|t| probe(&prober, t, &["a@d.test"]))).await;
    let block = prober.egress_blocked().expect("port 25 judged unreachable");
    assert_eq!(block.by, BlockedBy::FirstServers);
    assert_eq!(
        (block.failures.servers, block.failures.refused),
        (8, 8),
        "{block:?}"
    );
    // No connection is opened after that, even to a server that would answer.
    let later = probe(&prober, &mx(LOCALHOST), &["a@d.test"]).await;
    assert_eq!(server.connections(), 0);
    assert_eq!(later.decided, [false], "left undecided, not unreachable");
}

#[tokio::test]
async fn one_server_that_answers_first_keeps_the_prober_going() {
    let server = Server::start(|_| Behavior::new(mailboxes(&["a"]))).await;
    let prober = Prober::new(config(server.port())).unwrap();
    let live = probe(&prober, &mx(LOCALHOST), &["a@d.test"]).await;
    assert_eq!(live.decided, [true]);
    let dead = dead_servers(9);
    let probes =
        futures::future::join_all(dead.iter().map(|t| probe(&prober, t, &["a@d.test"]))).await;
    assert!(prober.egress_blocked().is_none());
    assert_eq!(prober.egress(), Judgement::Works);
    for p in &probes {
        assert!(
            matches!(p.results[0].outcome, SmtpOutcome::Unreachable(_)),
            "{:?}",
            p.results[0]
        );
    }
}

#[tokio::test]
async fn without_fast_fail_refusing_servers_are_only_unreachable() {
    let server = Server::start(|_| Behavior::new(mailboxes(&["a"]))).await;
    let prober = Prober::new(ProbeConfig {
        fast_fail: None,
        ..config(server.port())
    })
    .unwrap();
    let dead = dead_servers(8);
    futures::future::join_all(dead.iter().map(|t| probe(&prober, t, &["a@d.test"]))).await;
    assert!(prober.egress_blocked().is_none());
    let later = probe(&prober, &mx(LOCALHOST), &["a@d.test"]).await;
    assert_eq!(later.decided, [true]);
    assert_eq!(server.connections(), 1);
}

/// Google counts its limits per sender across its fleet: a 421 from one of its addresses holds
/// back sessions at its other addresses until the backoff ends (here at least 1 s, the
/// smallest backoff), not only at the address that said it.
#[tokio::test]
async fn a_rate_limit_at_one_google_address_backs_off_the_whole_fleet() {
    let last_limit = Arc::new(std::sync::Mutex::new(None::<std::time::Instant>));
    let noted = Arc::clone(&last_limit);
    let limiting = Server::start(move |_| {
        let noted = Arc::clone(&noted);
        Behavior::new(Arc::new(move |_: &Rcpt| {
            *noted.lock().unwrap() = Some(std::time::Instant::now());
            Answer::Say("421 4.7.0 Try again later, closing connection.".into())
        }))
    })
    .await;
    let first_rcpt = Arc::new(std::sync::Mutex::new(None::<std::time::Instant>));
    let seen = Arc::clone(&first_rcpt);
    let other = Server::start_at(Ipv4Addr::new(127, 0, 0, 3), limiting.port(), move |_| {
        let seen = Arc::clone(&seen);
        Behavior::new(Arc::new(move |r: &Rcpt| {
            seen.lock()
                .unwrap()
                .get_or_insert(std::time::Instant::now());
            Answer::Say(verdict(&["b@d.test".to_owned()], &r.address))
        }))
    })
    .await;
    let prober = Prober::new(ProbeConfig {
        retries: 0,
        ..config(limiting.port())
    })
    .unwrap();
    let at = |name: &str, ip: IpAddr| {
        vec![MxTarget {
            name: name.into(),
            ips: vec![ip],
        }]
    };
    probe(
        &prober,
        &at("aspmx.l.google.com", limiting.ip()),
        &["a@d.test"],
    )
    .await;
    let limited = last_limit
        .lock()
        .unwrap()
        .expect("the first address was asked");
    let got = probe(
        &prober,
        &at("alt1.aspmx.l.google.com", other.ip()),
        &["b@d.test"],
    )
    .await;
    assert_eq!(code(&got.results[0]), 250);
    let asked = first_rcpt
        .lock()
        .unwrap()
        .expect("the second address was asked");
    assert!(
        asked.duration_since(limited) >= Duration::from_millis(950),
        "the other Google address was asked {:?} after the 421",
        asked.duration_since(limited)
    );
}

/// A provider's proxy that is not a SOCKS5 URL stops the run before any connection.
#[test]
fn a_provider_proxy_that_is_not_socks5_is_refused_at_setup() {
    let table = prebounce::model::provider::ProviderTable::built_in()
        .with_overrides(
            "[[provider]]\nid = \"google\"\nname = \"Google\"\nmx = [\"*.l.google.com\"]\n\
             proxy = \"http://127.0.0.1:3128\"\n",
        )
        .unwrap();
    let err = Prober::new(ProbeConfig {
        providers: Arc::new(table),
        ..config(25)
    })
    .err()
    .expect("refused");
    let message = err.to_string();
    assert!(
        message.contains("provider google") && message.contains("SOCKS5"),
        "{message}"
    );
}
