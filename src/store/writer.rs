//! The store's writer: one thread, fed over a channel by the SMTP stage (a domain's verdicts
//! as soon as its probe ends) and by the list writer (each chunk's other verdicts). It commits
//! whatever is queued in one transaction, so the commits are batched under load and prompt
//! when results trickle in (the SMTP level): what is committed survives a kill.

use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, unbounded};
use rusqlite::{TransactionBehavior, params};

use super::{Store, StoreError, level_index};
use crate::Level;
use crate::smtp::probe::CatchAll;
use crate::verdict::Reason;

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

pub enum Write {
    Verdicts(Vec<Record>),
    /// A domain's catch-all verdicts, by server.
    CatchAll {
        domain: String,
        servers: Vec<(std::net::IpAddr, CatchAll)>,
    },
}

/// Messages merged into one transaction at most (bounds the time a commit holds the lock).
const MAX_MESSAGES_PER_COMMIT: usize = 64;

/// Reasons that will never change for the address: what `--suppress-invalid` suppresses.
fn permanent(reason: Reason) -> bool {
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
    /// `run_started`: verdicts written before it are the "previous" ones for changes.csv.
    pub fn spawn(
        store: Store,
        run_started: i64,
        suppress_invalid: bool,
    ) -> Result<StoreWriter, StoreError> {
        let (tx, rx) = unbounded();
        let thread = std::thread::Builder::new()
            .name("prebounce-write-store".into())
            .spawn(move || write_loop(store, rx, run_started, suppress_invalid))
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
    run_started: i64,
    suppress_invalid: bool,
) -> Result<u64, StoreError> {
    let mut written = 0;
    // On an error, keep draining so senders never block, and report the first error.
    let mut failed = None;
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_MESSAGES_PER_COMMIT {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        if failed.is_some() {
            continue;
        }
        match commit(&mut store, &batch, run_started, suppress_invalid) {
            Ok(n) => written += n,
            Err(e) => failed = Some(e),
        }
    }
    match failed {
        Some(e) => Err(e),
        None => Ok(written),
    }
}

fn commit(
    store: &mut Store,
    batch: &[Write],
    run_started: i64,
    suppress_invalid: bool,
) -> Result<u64, StoreError> {
    let path = store.path.clone();
    let err = |e| StoreError::of(&path, e);
    let now = super::now();
    let tx = store
        .conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    let mut written = 0;
    {
        // The verdict it replaces becomes the previous one, unless that one was written by
        // this same run (a resumed run, an address met in two windows): then the one before
        // it stays the previous one.
        let mut upsert = tx
            .prepare_cached(
                "INSERT INTO addresses (key, status, reason, detail, level, verified_at, mx, reply_code, reply_text)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT(key) DO UPDATE SET
                   prev_status = CASE WHEN verified_at < ?10 THEN status ELSE prev_status END,
                   prev_reason = CASE WHEN verified_at < ?10 THEN reason ELSE prev_reason END,
                   prev_verified_at = CASE WHEN verified_at < ?10 THEN verified_at ELSE prev_verified_at END,
                   status = excluded.status, reason = excluded.reason, detail = excluded.detail,
                   level = excluded.level, verified_at = excluded.verified_at, mx = excluded.mx,
                   reply_code = excluded.reply_code, reply_text = excluded.reply_text",
            )
            .map_err(err)?;
        let mut suppress = tx
            .prepare_cached(
                "INSERT INTO suppressions (entry, reason, added_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT(entry) DO NOTHING",
            )
            .map_err(err)?;
        let mut domain = tx
            .prepare_cached(
                "INSERT INTO domains (domain, server, catch_all, checked_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(domain, server) DO UPDATE SET catch_all = excluded.catch_all, checked_at = excluded.checked_at",
            )
            .map_err(err)?;
        for msg in batch {
            match msg {
                Write::Verdicts(records) => {
                    for r in records {
                        let (code, text) = match &r.reply {
                            Some((c, t)) => (Some(*c), Some(t.as_str())),
                            None => (None, None),
                        };
                        upsert
                            .execute(params![
                                r.key,
                                r.reason.status().as_str(),
                                r.reason.as_str(),
                                r.detail,
                                level_index(r.level),
                                r.verified_at,
                                r.mx,
                                code,
                                text,
                                run_started
                            ])
                            .map_err(err)?;
                        if suppress_invalid && permanent(r.reason) {
                            suppress
                                .execute(params![
                                    r.key,
                                    format!("--suppress-invalid: {}", r.reason),
                                    now
                                ])
                                .map_err(err)?;
                        }
                        written += 1;
                    }
                }
                Write::CatchAll { domain: d, servers } => {
                    for (ip, catch_all) in servers {
                        let c = match catch_all {
                            CatchAll::Yes => "yes",
                            CatchAll::No => "no",
                            CatchAll::Undetermined => continue,
                        };
                        domain
                            .execute(params![d, ip.to_string(), c, now])
                            .map_err(err)?;
                    }
                }
            }
        }
    }
    tx.commit().map_err(err)?;
    Ok(written)
}
