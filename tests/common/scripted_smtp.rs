//! A scripted in-process SMTP server for fault tests of the probe driver.
//!
//! Each accepted connection follows a [`Behavior`] chosen by connection index: how to greet
//! (normally, multi-line with a pause, never, 421, close at once), how to answer EHLO (caps,
//! rejection, an endless flood, raw bytes), MAIL FROM, and each RCPT (a closure that may answer,
//! answer and close, cut a reply in the middle, or never answer). Replies may be trickled one
//! byte at a time. Everything the client sends is recorded per connection, raw, so tests can
//! assert on the wire. Loopback only.
#![allow(dead_code)] // each test uses its own subset

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{sleep, timeout};

/// How a connection is greeted.
#[derive(Clone, Debug)]
pub enum Greeting {
    /// `220 mx.d.test ESMTP`.
    Ok,
    /// `220-…` lines, a pause (during which the client must stay silent), then `220 …`.
    MultiLine { pause: Duration },
    /// Never a byte: hold the connection until the client gives up.
    Silent,
    /// Accept, then close at once.
    Close,
    /// This reply (e.g. `421 4.3.2 busy`), then close.
    Refuse(&'static str),
}

/// How EHLO is answered.
#[derive(Clone, Debug)]
pub enum Ehlo {
    /// `250-mx.d.test` then one line per capability.
    Caps(Vec<&'static str>),
    /// A refusal (HELO is then answered 250).
    Reject(&'static str),
    /// `250-xxxx…` lines forever (until the client goes away or a large bound).
    FloodLines,
    /// One line that never ends.
    EndlessLine,
    /// These exact bytes.
    Raw(&'static str),
}

/// What to do with one RCPT.
#[derive(Clone, Debug)]
pub enum Answer {
    Say(String),
    /// Answer, then close the connection (421 …).
    SayAndClose(String),
    /// Send these bytes (a reply cut short, no CRLF), then close.
    CutAndClose(String),
    /// Close without a word.
    Close,
}

/// What the RCPT closure is told.
#[derive(Clone, Debug)]
pub struct Rcpt {
    /// The address between `<` and `>`.
    pub address: String,
    /// Connection index, from 0.
    pub conn: usize,
    /// RCPT commands before this one on this connection.
    pub nth_in_conn: usize,
    /// RCPT commands before this one in this transaction (since MAIL FROM).
    pub nth_in_txn: usize,
    /// RCPT commands for this address before this one, on any connection.
    pub seen: usize,
}

pub type RcptFn = Arc<dyn Fn(&Rcpt) -> Answer + Send + Sync>;

#[derive(Clone)]
pub struct Behavior {
    pub greeting: Greeting,
    pub ehlo: Ehlo,
    pub mail: &'static str,
    /// Send every reply one byte at a time with this pause between bytes.
    pub trickle: Option<Duration>,
    pub rcpt: RcptFn,
}

impl Behavior {
    /// Greets, advertises PIPELINING, accepts the sender, answers RCPT with `rcpt`.
    pub fn new(rcpt: RcptFn) -> Self {
        Behavior {
            greeting: Greeting::Ok,
            ehlo: Ehlo::Caps(vec!["PIPELINING", "SIZE 10240000", "8BITMIME"]),
            mail: "250 2.1.0 Ok",
            trickle: None,
            rcpt,
        }
    }
}

/// 250 for the `known` addresses, `550 5.1.1` for the rest.
pub fn mailboxes(known: &[&str]) -> RcptFn {
    let known: Vec<String> = known.iter().map(|s| s.to_string()).collect();
    Arc::new(move |r: &Rcpt| Answer::Say(verdict(&known, &r.address)))
}

/// The reply a plain mailbox server gives `address`.
pub fn verdict(known: &[String], address: &str) -> String {
    if known.iter().any(|k| k == address) {
        "250 2.1.5 Ok".to_string()
    } else {
        format!("550 5.1.1 <{address}>: Recipient address rejected: User unknown")
    }
}

/// What one connection's client did.
#[derive(Clone, Debug, Default)]
pub struct ConnLog {
    /// Every byte the client sent in plain text, in order.
    pub received: Vec<u8>,
    /// Bytes that arrived during the pause of a multi-line greeting.
    pub early_bytes: bool,
    /// The most RCPT lines that were waiting unanswered at once (pipelining).
    pub max_rcpt_burst: usize,
    /// Bytes after the 220 to STARTTLS (the TLS ClientHello).
    pub after_starttls: Vec<u8>,
    /// The connection task has ended.
    pub finished: bool,
}

type Logs = Arc<Mutex<Vec<Arc<Mutex<ConnLog>>>>>;

pub struct Server {
    pub addr: SocketAddr,
    logs: Logs,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    /// A server on 127.0.0.1, an ephemeral port; `script` picks the behavior per connection.
    pub async fn start(script: impl Fn(usize) -> Behavior + Send + Sync + 'static) -> Server {
        Self::start_at(Ipv4Addr::LOCALHOST, 0, script).await
    }

    pub async fn start_at(
        ip: Ipv4Addr,
        port: u16,
        script: impl Fn(usize) -> Behavior + Send + Sync + 'static,
    ) -> Server {
        assert!(ip.is_loopback(), "loopback only");
        let listener = TcpListener::bind((ip, port)).await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let logs: Logs = Arc::default();
        let seen: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let script = Arc::new(script);
        let task = {
            let logs = Arc::clone(&logs);
            tokio::spawn(async move {
                loop {
                    let Ok((stream, _)) = listener.accept().await else {
                        return;
                    };
                    let log = Arc::new(Mutex::new(ConnLog::default()));
                    let index = {
                        let mut logs = logs.lock().unwrap();
                        logs.push(Arc::clone(&log));
                        logs.len() - 1
                    };
                    let behavior = script(index);
                    let seen = Arc::clone(&seen);
                    tokio::spawn(async move {
                        let mut c = Conn {
                            stream,
                            index,
                            log: Arc::clone(&log),
                            buf: Vec::new(),
                            behavior,
                            seen,
                        };
                        c.run().await;
                        log.lock().unwrap().finished = true;
                    });
                }
            })
        };
        Server { addr, logs, task }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn ip(&self) -> IpAddr {
        self.addr.ip()
    }

    pub fn connections(&self) -> usize {
        self.logs.lock().unwrap().len()
    }

    /// Waits (bounded) until every connection task has seen the client go, so the logs hold
    /// everything the client sent.
    pub async fn logs(&self) -> Vec<ConnLog> {
        for _ in 0..500 {
            let all_done = self
                .logs
                .lock()
                .unwrap()
                .iter()
                .all(|l| l.lock().unwrap().finished);
            if all_done {
                break;
            }
            sleep(Duration::from_millis(10)).await;
        }
        self.logs
            .lock()
            .unwrap()
            .iter()
            .map(|l| l.lock().unwrap().clone())
            .collect()
    }
}

struct Conn {
    stream: TcpStream,
    index: usize,
    log: Arc<Mutex<ConnLog>>,
    /// Received bytes not yet handled.
    buf: Vec<u8>,
    behavior: Behavior,
    seen: Arc<Mutex<HashMap<String, usize>>>,
}

/// The end of a connection (the client left, or the script closed it).
struct Gone;

impl Conn {
    async fn run(&mut self) {
        let _ = self.serve().await;
        let _ = self.stream.shutdown().await;
    }

    async fn send(&mut self, text: &str) -> Result<(), Gone> {
        match self.behavior.trickle {
            None => self
                .stream
                .write_all(text.as_bytes())
                .await
                .map_err(|_| Gone),
            Some(pause) => {
                for b in text.as_bytes() {
                    self.stream
                        .write_all(std::slice::from_ref(b))
                        .await
                        .map_err(|_| Gone)?;
                    sleep(pause).await;
                }
                Ok(())
            }
        }
    }

    async fn reply(&mut self, line: &str) -> Result<(), Gone> {
        self.send(&format!("{line}\r\n")).await
    }

    /// Reads once from the client, recording the bytes. Err when it is gone.
    async fn fill(&mut self) -> Result<(), Gone> {
        let mut tmp = [0u8; 4096];
        match self.stream.read(&mut tmp).await {
            Ok(0) | Err(_) => Err(Gone),
            Ok(n) => {
                self.log
                    .lock()
                    .unwrap()
                    .received
                    .extend_from_slice(&tmp[..n]);
                self.buf.extend_from_slice(&tmp[..n]);
                Ok(())
            }
        }
    }

    /// The next command line, without its line end.
    async fn line(&mut self) -> Result<String, Gone> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == b'\n') {
                let raw: Vec<u8> = self.buf.drain(..=pos).collect();
                let text = String::from_utf8_lossy(&raw);
                return Ok(text.trim_end_matches(['\r', '\n']).to_string());
            }
            self.fill().await?;
        }
    }

    /// Keeps reading (and recording) until the client closes.
    async fn drain_until_eof(&mut self) {
        let _ = timeout(Duration::from_secs(10), async {
            while self.fill().await.is_ok() {}
        })
        .await;
    }

    async fn serve(&mut self) -> Result<(), Gone> {
        match self.behavior.greeting.clone() {
            Greeting::Ok => self.reply("220 mx.d.test ESMTP scripted").await?,
            Greeting::MultiLine { pause } => {
                self.reply("220-mx.d.test ESMTP scripted").await?;
                self.reply("220-no unsolicited mail").await?;
                // The client must not speak before the last line of the greeting.
                let mut tmp = [0u8; 4096];
                match timeout(pause, self.stream.read(&mut tmp)).await {
                    Err(_) => {}
                    Ok(Ok(0)) | Ok(Err(_)) => return Err(Gone),
                    Ok(Ok(n)) => {
                        let mut log = self.log.lock().unwrap();
                        log.early_bytes = true;
                        log.received.extend_from_slice(&tmp[..n]);
                        self.buf.extend_from_slice(&tmp[..n]);
                    }
                }
                self.reply("220 ready").await?;
            }
            Greeting::Silent => {
                self.drain_until_eof().await;
                return Err(Gone);
            }
            Greeting::Close => return Err(Gone),
            Greeting::Refuse(text) => {
                self.reply(text).await?;
                self.drain_until_eof().await;
                return Err(Gone);
            }
        }
        let mut nth_in_conn = 0;
        let mut nth_in_txn = 0;
        loop {
            let line = self.line().await?;
            let upper = line.to_ascii_uppercase();
            let verb = upper.split([' ', ':']).next().unwrap_or("").to_string();
            match verb.as_str() {
                "EHLO" => self.ehlo().await?,
                "HELO" => self.reply("250 mx.d.test").await?,
                "STARTTLS" => {
                    self.reply("220 2.0.0 Ready to start TLS").await?;
                    // Read the ClientHello, answer with something that is not TLS, leave.
                    let mut tmp = [0u8; 4096];
                    let leftover = std::mem::take(&mut self.buf);
                    self.log
                        .lock()
                        .unwrap()
                        .after_starttls
                        .extend_from_slice(&leftover);
                    if let Ok(Ok(n)) =
                        timeout(Duration::from_secs(5), self.stream.read(&mut tmp)).await
                    {
                        self.log
                            .lock()
                            .unwrap()
                            .after_starttls
                            .extend_from_slice(&tmp[..n]);
                    }
                    let _ = self
                        .stream
                        .write_all(b"this is not TLS at all\r\n\x00\x01\x02garbage")
                        .await;
                    return Err(Gone);
                }
                "MAIL" => {
                    nth_in_txn = 0;
                    let mail = self.behavior.mail;
                    self.reply(mail).await?;
                }
                "RCPT" => {
                    // RCPT lines already here and not yet answered, this one included.
                    let waiting = 1 + self
                        .buf
                        .split(|&b| b == b'\n')
                        .filter(|l| l.to_ascii_uppercase().starts_with(b"RCPT"))
                        .count();
                    {
                        let mut log = self.log.lock().unwrap();
                        log.max_rcpt_burst = log.max_rcpt_burst.max(waiting);
                    }
                    let address = match (line.find('<'), line.rfind('>')) {
                        (Some(a), Some(b)) if a < b => line[a + 1..b].to_string(),
                        _ => line[8.min(line.len())..].to_string(),
                    };
                    let seen = {
                        let mut seen = self.seen.lock().unwrap();
                        let n = seen.entry(address.clone()).or_insert(0);
                        *n += 1;
                        *n - 1
                    };
                    let r = Rcpt {
                        address,
                        conn: self.index,
                        nth_in_conn,
                        nth_in_txn,
                        seen,
                    };
                    nth_in_conn += 1;
                    nth_in_txn += 1;
                    match (self.behavior.rcpt)(&r) {
                        Answer::Say(text) => self.reply(&text).await?,
                        Answer::SayAndClose(text) => {
                            self.reply(&text).await?;
                            return Err(Gone);
                        }
                        Answer::CutAndClose(bytes) => {
                            self.send(&bytes).await?;
                            return Err(Gone);
                        }
                        Answer::Close => return Err(Gone),
                    }
                }
                "RSET" => {
                    nth_in_txn = 0;
                    self.reply("250 2.0.0 Ok").await?;
                }
                "NOOP" => self.reply("250 2.0.0 Ok").await?,
                "QUIT" => {
                    self.reply("221 2.0.0 Bye").await?;
                    self.drain_until_eof().await;
                    return Ok(());
                }
                "DATA" => self.reply("554 5.5.1 no DATA for you").await?,
                _ => {
                    self.reply("500 5.5.2 Error: command not recognized")
                        .await?
                }
            }
        }
    }

    async fn ehlo(&mut self) -> Result<(), Gone> {
        match self.behavior.ehlo.clone() {
            Ehlo::Caps(caps) => {
                let mut text = String::new();
                if caps.is_empty() {
                    text.push_str("250 mx.d.test\r\n");
                } else {
                    text.push_str("250-mx.d.test\r\n");
                    for (i, cap) in caps.iter().enumerate() {
                        let sep = if i + 1 == caps.len() { ' ' } else { '-' };
                        text.push_str(&format!("250{sep}{cap}\r\n"));
                    }
                }
                self.send(&text).await
            }
            Ehlo::Reject(text) => self.reply(text).await,
            Ehlo::Raw(bytes) => self.send(bytes).await,
            Ehlo::FloodLines => {
                self.send("250-mx.d.test\r\n").await?;
                let line = format!("250-{}\r\n", "x".repeat(70));
                let chunk = line.repeat(100);
                // Bounded so the task ends even if the client never gives up (the test fails).
                for _ in 0..20_000 {
                    self.send(&chunk).await?;
                }
                Err(Gone)
            }
            Ehlo::EndlessLine => {
                self.send("250-").await?;
                let chunk = "y".repeat(8192);
                for _ in 0..20_000 {
                    self.send(&chunk).await?;
                }
                Err(Gone)
            }
        }
    }
}
