//! Ctrl-C and SIGTERM (issue #14 item 5): the first signal stops the run whatever it is
//! waiting for (an input that never ends, a resolver that never answers, a server that
//! answers one RCPT a second) and exits 130, saying how to resume.
//!
//! No timing assertions: each test waits for the signal's effect with a generous bound
//! (well below what the wait it interrupts would take), so a run that ignores the signal
//! fails instead of hanging the suite.

mod common;

use std::io::Write as _;
use std::net::UdpSocket;
use std::path::Path;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Far longer than a stop takes, far shorter than the waits the tests interrupt.
const STOP_BOUND: Duration = Duration::from_secs(30);

fn signal(child: &Child, name: &str) {
    let sent = std::process::Command::new("kill")
        .args([name, &child.id().to_string()])
        .status()
        .unwrap()
        .success();
    assert!(sent, "kill {name}");
}

/// The child's output once it exits; killed and failed when it outlives `STOP_BOUND`.
fn wait_stopped(mut child: Child) -> Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > STOP_BOUND {
            child.kill().unwrap();
            let o = child.wait_with_output().unwrap();
            panic!(
                "still running {} s after the signal; stderr: {}",
                STOP_BOUND.as_secs(),
                stderr(&o)
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn assert_interrupted(o: &Output, store: &Path) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(
        err.contains(&format!("saved in the store {}", store.display()))
            && err.contains("run the same command again to resume"),
        "{err}"
    );
}

#[test]
fn a_signal_stops_a_run_whose_standard_input_never_ends() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.sqlite3");
    let out = dir.path().join("out");
    let mut child = prebounce()
        .args(["verify", "-", "--level", "syntax", "--progress", "never"])
        .arg("--store")
        .arg(&store)
        .arg("--out")
        .arg(&out)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // More than the shape detection samples, so the run is past it and reading; the pipe
    // stays open (as a producer that stalls, or `cat` of a terminal, leaves it).
    let mut stdin = child.stdin.take().unwrap();
    let mut rows = b"email,name\n".to_vec();
    for i in 0..5000 {
        writeln!(rows, "user{i}@example.com,Someone {i}").unwrap();
    }
    stdin.write_all(&rows).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    signal(&child, "-TERM");
    let o = wait_stopped(child);
    drop(stdin);
    assert_interrupted(&o, &store);
    assert!(
        !out.join("summary.json").exists(),
        "no lists from a stopped run"
    );
}

#[test]
fn a_signal_stops_lookups_at_a_resolver_that_never_answers() {
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    silent
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let resolver = silent.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("list.csv");
    let mut rows = String::from("email\n");
    for i in 0..50 {
        rows.push_str(&format!("someone@domain{i}.prebounce-signal.net\n"));
    }
    std::fs::write(&list, rows).unwrap();
    let store = dir.path().join("store.sqlite3");
    let child = prebounce()
        .arg("verify")
        .arg(&list)
        .args(["--level", "dns", "--progress", "never"])
        .args(["--dns-server", &resolver, "--dns-timeout", "120s"])
        .arg("--store")
        .arg(&store)
        .arg("--out")
        .arg(dir.path().join("out"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The lookups are in flight once the first query arrives.
    let mut query = [0u8; 512];
    silent
        .recv_from(&mut query)
        .expect("a query reached the resolver");
    signal(&child, "-INT");
    let o = wait_stopped(child);
    assert_interrupted(&o, &store);
}

#[cfg(feature = "lab")]
mod lab {
    use super::*;

    /// A mail server that accepts the connection and never says a word would hold the
    /// run for the banner timeout (and its retries); the signal ends the session after a
    /// short grace. alldead.smtp.test's second MX, 127.77.3.98, is where nothing listens
    /// in the lab; the test listens there itself (port 25: root, as the lab suites run).
    #[test]
    fn a_signal_abandons_a_session_at_a_silent_server() {
        let _turn = lab_turn();
        lab_up();
        let silent = std::net::TcpListener::bind("127.77.3.98:25").expect("bind 127.77.3.98:25");
        let (connected_tx, connected) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for conn in silent.incoming().flatten() {
                held.push(conn);
                let _ = connected_tx.send(());
            }
        });
        let dir = tempfile::tempdir().unwrap();
        let emails: Vec<String> = ["alice", "bob", "nobody"]
            .iter()
            .map(|l| format!("{l}@alldead.smtp.test"))
            .collect();
        let list = write_list(dir.path(), "list.csv", &emails);
        let store = dir.path().join("store.sqlite3");
        let child = prebounce()
            .arg("verify")
            .arg(&list)
            .args(["--level", "smtp", "--progress", "never"])
            .args(["--from", &fresh_sender("signal")])
            .args(["--dns-server", "127.77.0.1"])
            .args(["--allow-reserved-domains", "--allow-private-mx"])
            .arg("--store")
            .arg(&store)
            .arg("--out")
            .arg(dir.path().join("out"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        connected
            .recv_timeout(Duration::from_secs(60))
            .expect("the probe reached the silent server");
        signal(&child, "-INT");
        let o = wait_stopped(child);
        assert_interrupted(&o, &store);
    }
}
