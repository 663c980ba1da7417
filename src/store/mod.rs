//! The store: an embedded database beside the stages, holding what earlier runs decided.
//!
//! - **Cache and resume.** Each decided verdict is committed as soon as it is known (the SMTP
//!   stage per probed domain, the writer per chunk). A later run — or the same command started
//!   again after a crash, Ctrl-C or SIGKILL — answers those addresses from here without any
//!   network traffic, as long as the verdict is young enough (see [`CachePolicy`]). At level
//!   dns a verdict is its domain's, so it is also stored per domain, and a later run answers
//!   each address from its domain's verdict (one lookup a domain, not one an address).
//! - **Revalidation.** When an address is verified again, its previous verdict is kept beside
//!   the new one, so a run can list the addresses whose status changed (changes.csv).
//! - **Suppression.** Addresses and domains that must never be mailed (`prebounce suppress`).
//!
//! SQLite (rusqlite, bundled) and not a key-value store: one file, transactions, WAL so readers
//! never block the writer, and a busy timeout so two runs on one store take turns instead of
//! corrupting it.

mod policy;
mod schema;
mod writer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OptionalExtension, params};

use crate::clock::Clock;
use crate::model::smtp::CatchAll;
pub use crate::model::stored::{Previous, Prior, StoredDomain, Suppression};
pub use crate::model::time::date_of;
use crate::model::{Level, Reason, Status};
use crate::syntax::{self, Address, SyntaxOptions};

pub use policy::{CachePolicy, DomainState, RowAnswer, answer_row, replaced};
pub use schema::VERSION as SCHEMA_VERSION;
#[doc(hidden)]
pub use schema::version_1_sql;
pub use writer::{DnsVerdicts, Record, StoreWriter, Write};

/// How long a run waits, by default, for another run holding the store's write lock.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// How a process uses the store: how long it waits for another run's write lock, and the clock
/// its timestamps and ages are read from.
#[derive(Debug, Clone, Copy)]
pub struct StoreAccess {
    pub busy_timeout: Duration,
    pub clock: Clock,
}

impl Default for StoreAccess {
    fn default() -> Self {
        StoreAccess {
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
            clock: Clock::System,
        }
    }
}
/// Unknown verdicts (timeouts, greylisting, unreachable servers…) are reused for at most this
/// long: long enough that a resumed run does not ask again at once, short enough that the next
/// real run does.
pub const UNKNOWN_MAX_AGE: Duration = Duration::from_secs(3600);
/// A domain's verdicts (its MX result at level dns, its catch-all verdict) are reused for at most
/// this long (and never beyond --max-age).
pub const DOMAIN_MAX_AGE: Duration = Duration::from_secs(7 * 86_400);

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    #[error(
        "the store {} is damaged or not a prebounce store ({detail}); move it away, or pass another --store or --no-store",
        path.display()
    )]
    Corrupt { path: PathBuf, detail: String },
    #[error(
        "the store {} is locked by another prebounce run (waited {:.1}s); try again when it ends, or pass another --store",
        path.display(), waited.as_secs_f64()
    )]
    Locked { path: PathBuf, waited: Duration },
    #[error(
        "the store {} was written by a newer prebounce (schema {found}, this one knows {known}); upgrade, or pass another --store",
        path.display(), known = SCHEMA_VERSION
    )]
    Newer { path: PathBuf, found: u32 },
    #[error("cannot use the store {}: {source}", path.display())]
    Other {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("cannot create the folder of the store {}: {source}", path.display())]
    Folder {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Entry(String),
}

impl StoreError {
    /// 2 when the user can fix it by changing the command or the store (a damaged, locked or
    /// newer store, an unusable suppression entry), 1 for a failure of the machine.
    pub fn exit_code(&self) -> u8 {
        match self {
            StoreError::Other { .. } | StoreError::Folder { .. } => 1,
            StoreError::Corrupt { .. }
            | StoreError::Locked { .. }
            | StoreError::Newer { .. }
            | StoreError::Entry(_) => 2,
        }
    }

    /// A lock error says how long it waited.
    fn waited(self, busy_timeout: Duration) -> StoreError {
        match self {
            StoreError::Locked { path, .. } => StoreError::Locked {
                path,
                waited: busy_timeout,
            },
            other => other,
        }
    }

    fn of(path: &Path, e: rusqlite::Error) -> StoreError {
        let path = path.to_owned();
        match e.sqlite_error_code() {
            Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => StoreError::Corrupt {
                path,
                detail: e.to_string(),
            },
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Locked {
                path,
                // Replaced by the wait that was configured where it is known.
                waited: Duration::ZERO,
            },
            _ => StoreError::Other { path, source: e },
        }
    }
}

/// The store settings of a `verify` run.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub path: PathBuf,
    /// Verdicts older than this are verified again.
    pub max_age: Duration,
    /// Ignore stored verdicts (those of an interrupted run of the same command excepted: they
    /// are this run's own work); new ones are still written.
    pub fresh: bool,
    /// Put addresses found invalid for a permanent reason on the suppression list.
    pub suppress_invalid: bool,
    /// How long to wait for another run's write lock.
    pub busy_timeout: Duration,
}

impl StoreOptions {
    pub fn new(path: PathBuf) -> Self {
        StoreOptions {
            path,
            max_age: Duration::from_secs(30 * 86_400),
            fresh: false,
            suppress_invalid: false,
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
        }
    }
}

/// `$XDG_CACHE_HOME/prebounce/store.sqlite3` (or the platform's cache folder).
pub fn default_path() -> Option<PathBuf> {
    dirs::cache_dir().map(|d| d.join("prebounce").join("store.sqlite3"))
}

fn level_of(n: i64) -> Option<Level> {
    match n {
        0 => Some(Level::Syntax),
        1 => Some(Level::Dns),
        2 => Some(Level::Smtp),
        _ => None,
    }
}

fn level_index(l: Level) -> i64 {
    match l {
        Level::Syntax => 0,
        Level::Dns => 1,
        Level::Smtp => 2,
    }
}

fn status_of(s: &str) -> Option<Status> {
    Status::ALL.into_iter().find(|x| x.as_str() == s)
}

/// A domain's stored dns-level verdict as a [`Prior`] (None for a reason this build does not
/// know: a newer prebounce wrote it).
fn domain_prior(reason: &str, detail: String, mx: Option<String>, at: i64) -> Option<Prior> {
    Reason::from_code(reason).map(|reason| Prior::new(reason, detail, mx, Level::Dns, at, None))
}

/// The suppression list of a run, in memory: one hash lookup per row.
#[derive(Debug, Default)]
pub struct SuppressionSet(HashMap<String, Suppression>);

impl SuppressionSet {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The entry that suppresses `a` (its address first, then its domain).
    pub fn of(&self, a: &Address) -> Option<&Suppression> {
        if self.0.is_empty() {
            return None;
        }
        self.0
            .get(&a.dedup_key())
            .or_else(|| self.0.get(&format!("@{}", a.domain_ascii())))
    }
}

/// A suppression entry as stored: `user@domain` as its dedup key, or `@domain` (also written
/// `domain`) with the domain in ASCII.
pub fn suppression_entry(text: &str) -> Result<String, StoreError> {
    let text = text.trim();
    let opts = SyntaxOptions {
        allow_reserved_domains: true,
    };
    let bad = |e: syntax::SyntaxError| {
        StoreError::Entry(format!("{text:?} is not an address or a domain: {e}"))
    };
    match text.strip_prefix('@') {
        Some(domain) => syntax::check(&format!("postmaster@{domain}"), opts)
            .map(|a| format!("@{}", a.domain_ascii()))
            .map_err(bad),
        None if !text.contains('@') => syntax::check(&format!("postmaster@{text}"), opts)
            .map(|a| format!("@{}", a.domain_ascii()))
            .map_err(bad),
        None => syntax::check(text, opts)
            .map(|a| a.dedup_key())
            .map_err(bad),
    }
}

/// Where a run stands with respect to an interrupted one.
#[derive(Debug, Clone, Copy)]
pub struct RunStart {
    pub id: i64,
    /// When the run (or the interrupted run it resumes) started.
    pub started_at: i64,
    pub resumed: bool,
}

/// One connection to the store. Each stage that needs the store opens its own (SQLite
/// connections are not shared across threads).
pub struct Store {
    conn: Connection,
    path: PathBuf,
    access: StoreAccess,
}

impl Store {
    /// Open (creating it and its folder if needed) and migrate to the current schema.
    pub fn open(path: &Path, access: StoreAccess) -> Result<Store, StoreError> {
        // Two runs opening one store at once: SQLite answers the switch to WAL (and the first
        // reader's recovery) with SQLITE_BUSY at once, without its busy handler, so the
        // waiting the busy timeout promises is done here.
        let deadline = std::time::Instant::now() + access.busy_timeout;
        loop {
            match Store::open_once(path, access) {
                Err(StoreError::Locked { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => return other.map_err(|e| e.waited(access.busy_timeout)),
            }
        }
    }

    /// Now, by the store's clock (unix seconds).
    pub fn now(&self) -> i64 {
        self.access.clock.now()
    }

    fn open_once(path: &Path, access: StoreAccess) -> Result<Store, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::Folder {
                path: path.to_owned(),
                source,
            })?;
        }
        let err = |e| StoreError::of(path, e);
        let mut conn = Connection::open(path).map_err(err)?;
        conn.busy_timeout(access.busy_timeout).map_err(err)?;
        // WAL: readers (the lookup stage, a second run) never wait for the writer. NORMAL
        // syncs at checkpoints only: a committed verdict survives the process being killed,
        // which is what resume needs; a power cut may lose the last ones (verified again).
        let _: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        // A million-row list touches pages all over the address table: a 64 MB page cache and
        // a memory map keep lookups and inserts off the read/write system calls.
        conn.pragma_update(None, "cache_size", -65_536)
            .map_err(err)?;
        let _: i64 = conn
            .query_row("PRAGMA mmap_size = 1073741824", [], |r| r.get(0))
            .map_err(err)?;
        match schema::migrate(&mut conn).map_err(err)? {
            schema::Migrated::Current => {}
            schema::Migrated::Newer(found) => {
                return Err(StoreError::Newer {
                    path: path.to_owned(),
                    found,
                });
            }
        }
        Ok(Store {
            conn,
            path: path.to_owned(),
            access,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, e: rusqlite::Error) -> StoreError {
        StoreError::of(&self.path, e).waited(self.access.busy_timeout)
    }

    /// The stored verdict of an address key.
    pub fn lookup(&self, key: &str) -> Result<Option<Prior>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                // A dns-level verdict's detail and MX are its domain's (written once, with the
                // domain), as long as the domain's verdict is still that one.
                "SELECT a.reason,
                   CASE WHEN a.level = 1 AND a.detail = '' AND d.reason = a.reason
                     AND d.verified_at <= a.verified_at THEN d.detail ELSE a.detail END,
                   CASE WHEN a.level = 1 AND a.mx IS NULL AND d.reason = a.reason
                     AND d.verified_at <= a.verified_at THEN d.mx ELSE a.mx END,
                   a.level, a.verified_at, a.prev_status, a.prev_reason, a.prev_verified_at
                 FROM addresses a LEFT JOIN domain_verdicts d ON d.domain = ?2
                 WHERE a.key = ?1",
            )
            .map_err(|e| self.err(e))?;
        let domain = key.rsplit_once('@').map_or("", |(_, d)| d);
        let row = stmt
            .query_row([key, domain], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, i64>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, Option<String>>(6)?,
                    r.get::<_, Option<i64>>(7)?,
                ))
            })
            .optional()
            .map_err(|e| self.err(e))?;
        let Some((reason, detail, mx, level, verified_at, ps, pr, pv)) = row else {
            return Ok(None);
        };
        // A reason or level this build does not know (a newer prebounce wrote it): a miss.
        let (Some(reason), Some(level)) = (Reason::from_code(&reason), level_of(level)) else {
            return Ok(None);
        };
        let previous = match (
            ps.as_deref().and_then(status_of),
            pr.as_deref().and_then(Reason::from_code),
            pv,
        ) {
            (Some(status), Some(reason), Some(verified_at)) => Some(Previous {
                status,
                reason,
                verified_at,
            }),
            _ => None,
        };
        Ok(Some(Prior::new(
            reason,
            detail,
            mx,
            level,
            verified_at,
            previous,
        )))
    }

    /// What the store knows of a domain (ASCII) at level dns: its verdict, which answers each of
    /// its addresses, and when one of its addresses was last verified at level smtp.
    pub fn lookup_domain(&self, domain: &str) -> Result<StoredDomain, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT d.reason, d.detail, d.mx, d.verified_at, s.verified_at
                 FROM (SELECT ?1 AS domain) q
                 LEFT JOIN domain_verdicts d ON d.domain = q.domain
                 LEFT JOIN smtp_domains s ON s.domain = q.domain",
            )
            .map_err(|e| self.err(e))?;
        let (reason, detail, mx, verified_at, smtp_at) = stmt
            .query_row([domain], |r| {
                Ok((
                    r.get::<_, Option<String>>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let verdict = match (reason, verified_at) {
            (Some(reason), Some(at)) => domain_prior(&reason, detail.unwrap_or_default(), mx, at),
            _ => None,
        };
        Ok(StoredDomain { verdict, smtp_at })
    }

    /// Everything the store knows of domains at level dns, by domain, if it holds at most
    /// `limit` domains: one scan is far cheaper than a lookup each, but not for a store much
    /// larger than the list.
    pub fn all_domains(
        &self,
        limit: usize,
    ) -> Result<Option<HashMap<String, StoredDomain>>, StoreError> {
        let err = |e| self.err(e);
        let count: i64 = self
            .conn
            .query_row(
                "SELECT (SELECT count(*) FROM domain_verdicts) + (SELECT count(*) FROM smtp_domains)",
                [],
                |r| r.get(0),
            )
            .map_err(err)?;
        if count as usize > limit {
            return Ok(None);
        }
        let mut out: HashMap<String, StoredDomain> = HashMap::with_capacity(count as usize);
        let mut stmt = self
            .conn
            .prepare("SELECT domain, reason, detail, mx, verified_at FROM domain_verdicts")
            .map_err(err)?;
        let mut rows = stmt.query([]).map_err(err)?;
        while let Some(r) = rows.next().map_err(err)? {
            let reason: String = r.get(1).map_err(err)?;
            let prior = domain_prior(
                &reason,
                r.get(2).map_err(err)?,
                r.get(3).map_err(err)?,
                r.get(4).map_err(err)?,
            );
            if prior.is_some() {
                out.entry(r.get(0).map_err(err)?).or_default().verdict = prior;
            }
        }
        let mut stmt = self
            .conn
            .prepare("SELECT domain, verified_at FROM smtp_domains")
            .map_err(err)?;
        let mut rows = stmt.query([]).map_err(err)?;
        while let Some(r) = rows.next().map_err(err)? {
            out.entry(r.get(0).map_err(err)?).or_default().smtp_at = Some(r.get(1).map_err(err)?);
        }
        Ok(Some(out))
    }

    /// Run `f` in one read transaction: one snapshot and one lock for a chunk's lookups
    /// instead of one per row.
    pub fn reading<T>(
        &self,
        f: impl FnOnce(&Store) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.conn
            .execute_batch("BEGIN DEFERRED")
            .map_err(|e| self.err(e))?;
        let out = f(self);
        // Nothing was written: ending the transaction cannot lose anything.
        let _ = self.conn.execute_batch("COMMIT");
        out
    }

    /// Whether any verdict is stored (a first run over an empty store skips the lookups).
    pub fn has_verdicts(&self) -> Result<bool, StoreError> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM addresses) OR EXISTS (SELECT 1 FROM domain_verdicts)",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    /// Catch-all verdicts (domain, server, verdict) checked since `since`.
    pub fn catch_all_since(
        &self,
        since: i64,
    ) -> Result<Vec<(String, std::net::IpAddr, CatchAll)>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT domain, server, catch_all FROM domains
                 WHERE checked_at >= ?1 AND catch_all IS NOT NULL",
            )
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([since], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            let (domain, server, c) = row.map_err(|e| self.err(e))?;
            let Ok(ip) = server.parse() else { continue };
            match c.as_str() {
                "yes" => out.push((domain, ip, CatchAll::Yes)),
                "no" => out.push((domain, ip, CatchAll::No)),
                _ => {}
            }
        }
        Ok(out)
    }

    /// Resume the latest unfinished run of the same command started after `since`, or start one.
    pub fn begin_run(&self, fingerprint: &str, since: i64) -> Result<RunStart, StoreError> {
        let found: Option<(i64, i64)> = self
            .conn
            .query_row(
                "SELECT id, started_at FROM runs WHERE fingerprint = ?1 AND finished_at IS NULL
                 AND started_at >= ?2 ORDER BY id DESC LIMIT 1",
                params![fingerprint, since],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(|e| self.err(e))?;
        if let Some((id, started_at)) = found {
            return Ok(RunStart {
                id,
                started_at,
                resumed: true,
            });
        }
        let started_at = self.now();
        self.conn
            .execute(
                "INSERT INTO runs (fingerprint, started_at) VALUES (?1, ?2)",
                params![fingerprint, started_at],
            )
            .map_err(|e| self.err(e))?;
        Ok(RunStart {
            id: self.conn.last_insert_rowid(),
            started_at,
            resumed: false,
        })
    }

    pub fn finish_run(&self, id: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE runs SET finished_at = ?2 WHERE id = ?1",
                params![id, self.now()],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Add (or update the reason of) suppression entries; returns how many were new.
    pub fn suppress(&mut self, entries: &[(String, String)]) -> Result<usize, StoreError> {
        let at = self.now();
        let (path, wait) = (self.path.clone(), self.access.busy_timeout);
        let err = |e| StoreError::of(&path, e).waited(wait);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        let mut added = 0;
        {
            let mut stmt = tx
                .prepare(
                    "INSERT INTO suppressions (entry, reason, added_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT(entry) DO UPDATE SET reason = excluded.reason",
                )
                .map_err(err)?;
            for (entry, reason) in entries {
                let existed: bool = tx
                    .query_row(
                        "SELECT 1 FROM suppressions WHERE entry = ?1",
                        [entry],
                        |_| Ok(()),
                    )
                    .optional()
                    .map_err(err)?
                    .is_some();
                stmt.execute(params![entry, reason, at]).map_err(err)?;
                added += usize::from(!existed);
            }
        }
        tx.commit().map_err(err)?;
        Ok(added)
    }

    /// Remove an entry; whether it was there.
    pub fn unsuppress(&self, entry: &str) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute("DELETE FROM suppressions WHERE entry = ?1", [entry])
            .map_err(|e| self.err(e))?;
        Ok(n > 0)
    }

    /// The whole suppression list, by entry.
    pub fn suppressions(&self) -> Result<Vec<Suppression>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT entry, reason, added_at FROM suppressions ORDER BY entry")
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(Suppression {
                    entry: r.get(0)?,
                    reason: r.get(1)?,
                    added_at: r.get(2)?,
                })
            })
            .map_err(|e| self.err(e))?;
        rows.collect::<Result<_, _>>().map_err(|e| self.err(e))
    }

    pub fn suppression_set(&self) -> Result<SuppressionSet, StoreError> {
        Ok(SuppressionSet(
            self.suppressions()?
                .into_iter()
                .map(|s| (s.entry.clone(), s))
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_normalized() {
        assert_eq!(
            suppression_entry(" Bob@Example.COM ").unwrap(),
            "bob@example.com"
        );
        assert_eq!(suppression_entry("@Example.com").unwrap(), "@example.com");
        assert_eq!(suppression_entry("bücher.de").unwrap(), "@xn--bcher-kva.de");
        assert!(suppression_entry("not an address@").is_err());
    }

    #[test]
    fn a_version_1_store_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.sqlite3");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(version_1_sql()).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute(
                "INSERT INTO addresses (key, status, reason, detail, level, verified_at) VALUES ('a@b.test', 'valid', 'domain-accepts-mail', '', 1, 5)",
                [],
            )
            .unwrap();
        }
        let store = Store::open(&path, Default::default()).unwrap();
        let v: u32 = store
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(v, SCHEMA_VERSION);
        let prior = store.lookup("a@b.test").unwrap().unwrap();
        assert_eq!(
            (prior.reason, prior.verified_at),
            (Reason::DomainAcceptsMail, 5)
        );
    }
}
