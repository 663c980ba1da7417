//! The store's writer: one thread, fed over a channel by the SMTP stage (each round of
//! sessions' verdicts as it ends) and by the list writer (each chunk's other verdicts). It commits
//! whatever is queued in one transaction, so the commits are batched under load and prompt
//! when results trickle in (the SMTP level): what is committed survives a kill.

use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{RunStamp, Store, StoreError};
use crate::model::smtp::CatchAll;
use crate::model::{Level, Reason};
use crossbeam_channel::{Receiver, Sender, bounded};

/// One address's decided verdict.
#[derive(Debug, Clone)]
pub struct Record {
    /// The address's dedup key.
    pub key: String,
    pub reason: Reason,
    pub detail: String,
    pub mx: Option<String>,
    pub level: Level,
    pub verified_at: i64,
    /// The RCPT reply (code, text), at level smtp.
    pub reply: Option<(u16, String)>,
}

/// Verdicts decided at level dns, packed: one allocation a batch of addresses rather than one
/// an address (a dns-level run writes a million). Their detail and MX are their domain's, sent
/// beside them (see `Write::Verdicts`).
#[derive(Debug, Default)]
pub struct DnsVerdicts {
    /// The addresses' dedup keys, one after another.
    keys: String,
    /// Where each key ends in `keys`, and its verdict.
    rows: Vec<(usize, Reason)>,
    verified_at: i64,
}

impl DnsVerdicts {
    pub fn new(verified_at: i64) -> DnsVerdicts {
        DnsVerdicts {
            verified_at,
            ..DnsVerdicts::default()
        }
    }

    /// Add a verdict: `write_key` appends the address's dedup key to the string it is given.
    pub fn push(&mut self, write_key: impl FnOnce(&mut String), reason: Reason) {
        write_key(&mut self.keys);
        self.rows.push((self.keys.len(), reason));
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The `i`th verdict: its key and reason.
    pub fn get(&self, i: usize) -> (&str, Reason) {
        let start = if i == 0 { 0 } else { self.rows[i - 1].0 };
        let (end, reason) = self.rows[i];
        (&self.keys[start..end], reason)
    }

    pub fn verified_at(&self) -> i64 {
        self.verified_at
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (&str, Reason)> {
        (0..self.rows.len()).map(|i| self.get(i))
    }
}

pub enum Write {
    /// Addresses' verdicts, and at level dns their domains' verdicts (`key` the ASCII domain),
    /// committed together so that a resumed run finds both or neither.
    Verdicts {
        addresses: Vec<Record>,
        dns: Vec<DnsVerdicts>,
        domains: Vec<Record>,
    },
    /// A domain's catch-all verdicts, by server.
    CatchAll {
        domain: String,
        servers: Vec<(std::net::IpAddr, CatchAll)>,
    },
}

/// How long the writer gathers verdicts into one transaction.
const COMMIT_EVERY: Duration = Duration::from_millis(250);
/// Verdicts merged into one transaction at most (bounds the time a commit holds the lock).
const MAX_ROWS_PER_COMMIT: usize = 50_000;
/// Messages (a chunk's verdicts, a domain's probe) queued for the writer at most: a store
/// slower than the run holds the run back instead of letting the queue grow with the list.
const QUEUED_WRITES: usize = 16;

impl Write {
    fn rows(&self) -> usize {
        match self {
            Write::Verdicts {
                addresses,
                dns,
                domains,
            } => addresses.len() + dns.iter().map(DnsVerdicts::len).sum::<usize>() + domains.len(),
            Write::CatchAll { servers, .. } => servers.len(),
        }
    }
}

/// Reasons that will never change for the address: what `--suppress-invalid` suppresses.
pub(super) fn permanent(reason: Reason) -> bool {
    matches!(
        reason,
        Reason::MailboxNotFound | Reason::MailboxDisabled | Reason::NoSuchDomain | Reason::NullMx
    )
}

pub struct StoreWriter {
    tx: Sender<Write>,
    thread: JoinHandle<Result<u64, StoreError>>,
}

impl StoreWriter {
    /// `stamp`: the run and options every verdict is written with; those another run wrote
    /// are the "previous" ones for changes.csv.
    pub fn spawn(
        store: Store,
        stamp: RunStamp,
        suppress_invalid: bool,
    ) -> Result<StoreWriter, StoreError> {
        let (tx, rx) = bounded(QUEUED_WRITES);
        let thread = std::thread::Builder::new()
            .name("prebounce-write-store".into())
            .spawn(move || write_loop(store, rx, stamp, suppress_invalid))
            .map_err(|e| StoreError::Entry(format!("cannot start the store thread: {e}")))?;
        Ok(StoreWriter { tx, thread })
    }

    pub fn sender(&self) -> Sender<Write> {
        self.tx.clone()
    }

    /// Commit what is queued and stop; the number of verdicts written.
    pub fn finish(self) -> Result<u64, StoreError> {
        drop(self.tx);
        self.thread
            .join()
            .unwrap_or_else(|_| Err(StoreError::Entry("the store thread panicked".into())))
    }
}

fn write_loop(
    mut store: Store,
    rx: Receiver<Write>,
    stamp: RunStamp,
    suppress_invalid: bool,
) -> Result<u64, StoreError> {
    let mut written = 0;
    // On an error, keep draining so senders never block, and report the first error.
    let mut failed = None;
    while let Ok(first) = rx.recv() {
        // Gather for a moment before committing: a commit rewrites every page it touched, and
        // random keys touch a page each, so fewer, larger commits write far less. What is
        // decided reaches the store within COMMIT_EVERY all the same.
        let deadline = Instant::now() + COMMIT_EVERY;
        let mut rows = first.rows();
        let mut batch = vec![first];
        while rows < MAX_ROWS_PER_COMMIT {
            match rx.recv_deadline(deadline) {
                Ok(m) => {
                    rows += m.rows();
                    batch.push(m);
                }
                Err(_) => break,
            }
        }
        if failed.is_some() {
            continue;
        }
        match store.commit(&batch, &stamp, suppress_invalid) {
            Ok(n) => written += n,
            Err(e) => failed = Some(e),
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(written),
    }
}
