//! The SQLite backend of the store (rusqlite, bundled), and not a key-value store: one file,
//! transactions, WAL so readers never block the writer, and a busy timeout so two runs on one
//! store take turns instead of corrupting it.

mod schema;
mod writer;

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params};

use super::codes::{domain_prior, level_of, status_of};
use super::{
    Backend, DecidedUnder, Previous, Prior, RunStamp, RunStart, StoreAccess, StoreError,
    StoredBounce, StoredDomain, Suppression, Write,
};
use crate::bounce::{Action, Kind};
use crate::clock::Clock;
use crate::model::Reason;
use crate::model::smtp::CatchAll;

pub use schema::VERSION as SCHEMA_VERSION;
pub use schema::version_1_sql;

/// A rusqlite error as the store's: a damaged file, a lock held too long, or anything else.
fn store_error(path: &Path, waited: Duration, e: rusqlite::Error) -> StoreError {
    let path = path.to_owned();
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => StoreError::Corrupt {
            path,
            detail: e.to_string(),
        },
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            StoreError::Locked { path, waited }
        }
        // A write refused by the file system: the file, or its folder (where the WAL and its
        // index are created), is not writable by this user.
        Some(ErrorCode::ReadOnly) => StoreError::ReadOnly { path },
        Some(ErrorCode::CannotOpen) if !writable(&path) => StoreError::ReadOnly { path },
        _ => StoreError::Other {
            path,
            source: Box::new(e),
        },
    }
}

/// One connection to an SQLite store. Each stage that needs the store opens its own (SQLite
/// connections are not shared across threads).
pub struct SqliteStore {
    conn: Connection,
    path: PathBuf,
    /// How long to wait for another run's write lock.
    busy_timeout: Duration,
    /// The time stamps this connection writes (runs, suppressions, catch-all checks).
    clock: Clock,
}

impl SqliteStore {
    /// Open (creating it and its folder if needed) and migrate to the current schema.
    pub fn open(path: &Path, access: StoreAccess) -> Result<SqliteStore, StoreError> {
        // Two runs opening one store at once: SQLite answers the switch to WAL (and the first
        // reader's recovery) with SQLITE_BUSY at once, without its busy handler, so the
        // waiting the busy timeout promises is done here.
        let deadline = std::time::Instant::now() + access.busy_timeout;
        loop {
            match SqliteStore::open_once(path, access) {
                Err(StoreError::Locked { .. }) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                other => return other,
            }
        }
    }

    fn open_once(path: &Path, access: StoreAccess) -> Result<SqliteStore, StoreError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::Folder {
                path: path.to_owned(),
                source,
            })?;
        }
        let err = |e| store_error(path, access.busy_timeout, e);
        refuse_non_files(path)?;
        // NOFOLLOW as well: a link planted between that look and the open is refused too.
        let flags = OpenFlags::default() | OpenFlags::SQLITE_OPEN_NOFOLLOW;
        let mut conn = Connection::open_with_flags(path, flags).map_err(err)?;
        conn.busy_timeout(access.busy_timeout).map_err(err)?;
        // Before anything is written (the switch to WAL below rewrites the file's header):
        // another program's database is left as it is.
        recognise(&conn, path).map_err(err)??;
        // SQLite opens a file it may not write read-only without a word: say so before the
        // first write fails with a less helpful message.
        if conn.is_readonly(rusqlite::MAIN_DB).map_err(err)? {
            return Err(StoreError::ReadOnly {
                path: path.to_owned(),
            });
        }
        // WAL: readers (the lookup stage, a second run) never wait for the writer. NORMAL
        // syncs at checkpoints only: a committed verdict survives the process being killed,
        // which is what resume needs; a power cut may lose the last ones (verified again).
        let _: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        // A million-row list touches pages all over the address table. A page cache of 8 MB a
        // connection: 64 MB and a memory map cost about 80 MB more peak memory for no speed
        // measured (benches/memory_figures.sh; the pages stay in the kernel's cache anyway).
        conn.pragma_update(None, "cache_size", -8_192)
            .map_err(err)?;
        let _: i64 = conn
            .query_row("PRAGMA mmap_size = 0", [], |r| r.get(0))
            .map_err(err)?;
        let found = match schema::migrate(&mut conn).map_err(err)? {
            schema::Migrated::Current => SCHEMA_VERSION,
            schema::Migrated::Newer(found) => found,
        };
        SqliteStore::unless_newer(conn, path, access, found)
    }

    /// Open a store this user may not write, for reading only: as it is (not migrated; every
    /// schema since version 1 has the suppression list), with no WAL switch.
    pub fn open_read_only(path: &Path, access: StoreAccess) -> Result<SqliteStore, StoreError> {
        let err = |e| store_error(path, access.busy_timeout, e);
        refuse_non_files(path)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NOFOLLOW;
        let opened = Connection::open_with_flags(path, flags)
            .and_then(|conn| recognise(&conn, path).map(|r| (conn, r)));
        let (conn, recognised) = match opened {
            // A WAL store in a folder this user may not write, closed cleanly (no WAL index
            // left): SQLite cannot share its index, so it reads the file as immutable. A writer
            // of another user could change it meanwhile; a listing may then miss its last entries
            // — a read-only user cannot take the lock that would prevent that anyway.
            Err(e)
                if matches!(
                    e.sqlite_error_code(),
                    Some(ErrorCode::CannotOpen | ErrorCode::ReadOnly)
                ) =>
            {
                let uri = immutable_uri(path);
                let conn = Connection::open_with_flags(&uri, flags).map_err(err)?;
                let recognised = recognise(&conn, path).map_err(err)?;
                (conn, recognised)
            }
            other => other.map_err(err)?,
        };
        let found = recognised?;
        conn.busy_timeout(access.busy_timeout).map_err(err)?;
        SqliteStore::unless_newer(conn, path, access, found)
    }

    /// The opened store, unless its schema (`found`) is newer than this build's: both opens
    /// end here.
    fn unless_newer(
        conn: Connection,
        path: &Path,
        access: StoreAccess,
        found: u32,
    ) -> Result<SqliteStore, StoreError> {
        if found > SCHEMA_VERSION {
            return Err(StoreError::Newer {
                path: path.to_owned(),
                found,
            });
        }
        Ok(SqliteStore {
            conn,
            path: path.to_owned(),
            busy_timeout: access.busy_timeout,
            clock: access.clock,
        })
    }

    /// `write` in one immediate transaction (the write lock taken at once, so a busy store
    /// waits here rather than failing mid-way), committed if it succeeds.
    fn write_all(
        &mut self,
        write: impl FnOnce(&rusqlite::Transaction) -> rusqlite::Result<usize>,
    ) -> Result<usize, StoreError> {
        let err = |e| store_error(&self.path, self.busy_timeout, e);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(err)?;
        let n = write(&tx).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(n)
    }

    fn err(&self, e: rusqlite::Error) -> StoreError {
        store_error(&self.path, self.busy_timeout, e)
    }
}

/// A link or a folder given as the store, refused before SQLite opens it (its message for a
/// folder is "unable to open database file").
fn refuse_non_files(path: &Path) -> Result<(), StoreError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(StoreError::Link {
            path: path.to_owned(),
        }),
        Ok(m) if m.is_dir() => Err(StoreError::IsFolder {
            path: path.to_owned(),
        }),
        _ => Ok(()),
    }
}

/// Whether this process may write the store's file (if it exists) and its folder (where SQLite
/// creates the WAL and its index). Asked of the kernel (access(2) with the effective ids):
/// permission bits say nothing of root, capabilities or a read-only mount.
fn writable(path: &Path) -> bool {
    use rustix::fs::{Access, AtFlags, CWD, accessat};
    let may_write = |p: &Path| accessat(CWD, p, Access::WRITE_OK, AtFlags::EACCESS).is_ok();
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    (!path.exists() || may_write(path)) && may_write(folder)
}

/// `file:` URI of `path`, read as immutable.
fn immutable_uri(path: &Path) -> String {
    let mut uri = String::from("file:");
    for b in path.as_os_str().as_encoded_bytes() {
        match b {
            b'%' | b'?' | b'#' => uri.push_str(&format!("%{b:02X}")),
            _ => uri.push(*b as char),
        }
    }
    uri.push_str("?immutable=1");
    uri
}

/// Whether the opened file is a prebounce store (or empty: a new one): not another program's
/// database, and its schema version (0: empty). Outer error: the file cannot be read (damaged,
/// locked); inner: it is not ours. A store of this or an older schema has its version and the
/// tables every schema has; one with a higher version is left to the "newer prebounce" message.
fn recognise(conn: &Connection, path: &Path) -> rusqlite::Result<Result<u32, StoreError>> {
    let version: u32 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    let (objects, ours): (i64, i64) = conn.query_row(
        "SELECT count(*), count(*) FILTER (WHERE type = 'table' AND name IN ('addresses', 'suppressions'))
         FROM sqlite_schema",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let is_ours = match version {
        0 => objects == 0,
        v if v <= SCHEMA_VERSION => ours == 2,
        _ => true,
    };
    Ok(if is_ours {
        Ok(version)
    } else {
        Err(StoreError::NotAStore {
            path: path.to_owned(),
        })
    })
}

impl Backend for SqliteStore {
    fn path(&self) -> &Path {
        &self.path
    }

    /// The stored verdict of an address key.
    fn lookup(&self, key: &str) -> Result<Option<Prior>, StoreError> {
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
                   a.level, a.verified_at, a.prev_status, a.prev_reason, a.prev_verified_at,
                   a.options, a.sender, a.run
                 FROM addresses a LEFT JOIN domain_verdicts d ON d.domain = ?2
                   AND d.options = a.options
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
                    r.get::<_, String>(8)?,
                    r.get::<_, Option<String>>(9)?,
                    r.get::<_, Option<i64>>(10)?,
                ))
            })
            .optional()
            .map_err(|e| self.err(e))?;
        let Some((reason, detail, mx, level, verified_at, ps, pr, pv, options, sender, run)) = row
        else {
            return Ok(None);
        };
        // A reason, level or option this build does not know (a newer prebounce wrote it): a
        // miss.
        let (Some(reason), Some(level), Some(under)) = (
            Reason::from_code(&reason),
            level_of(level),
            DecidedUnder::from_codes(&options, sender),
        ) else {
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
        Ok(Some(
            Prior::new(reason, detail, mx, level, verified_at, previous).decided(under, run),
        ))
    }

    /// What the store knows of a domain (ASCII) at level dns: its verdict, which answers each of
    /// its addresses, and when one of its addresses was last verified at level smtp.
    fn lookup_domain(&self, domain: &str) -> Result<StoredDomain, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT d.reason, d.detail, d.mx, d.verified_at, s.verified_at, d.options, d.run
                 FROM (SELECT ?1 AS domain) q
                 LEFT JOIN domain_verdicts d ON d.domain = q.domain
                 LEFT JOIN smtp_domains s ON s.domain = q.domain",
            )
            .map_err(|e| self.err(e))?;
        let (reason, detail, mx, verified_at, smtp_at, options, run) = stmt
            .query_row([domain], |r| {
                Ok((
                    r.get::<_, Option<String>>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, Option<i64>>(6)?,
                ))
            })
            .map_err(|e| self.err(e))?;
        let verdict = match (reason, verified_at) {
            (Some(reason), Some(at)) => domain_prior(
                &reason,
                detail.unwrap_or_default(),
                mx,
                at,
                &options.unwrap_or_default(),
                run,
            ),
            _ => None,
        };
        Ok(StoredDomain { verdict, smtp_at })
    }

    /// Everything the store knows of domains at level dns, by domain, if it holds at most
    /// `limit` domains: one scan is far cheaper than a lookup each, but not for a store much
    /// larger than the list.
    fn all_domains(
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
            .prepare(
                "SELECT domain, reason, detail, mx, verified_at, options, run FROM domain_verdicts",
            )
            .map_err(err)?;
        let mut rows = stmt.query([]).map_err(err)?;
        while let Some(r) = rows.next().map_err(err)? {
            let reason: String = r.get(1).map_err(err)?;
            let options: String = r.get(5).map_err(err)?;
            let prior = domain_prior(
                &reason,
                r.get(2).map_err(err)?,
                r.get(3).map_err(err)?,
                r.get(4).map_err(err)?,
                &options,
                r.get(6).map_err(err)?,
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
    fn reading<T>(&self, f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.conn
            .execute_batch("BEGIN DEFERRED")
            .map_err(|e| self.err(e))?;
        let out = f();
        // Nothing was written: ending the transaction cannot lose anything.
        let _ = self.conn.execute_batch("COMMIT");
        out
    }

    /// Whether any verdict is stored (a first run over an empty store skips the lookups).
    fn has_verdicts(&self) -> Result<bool, StoreError> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM addresses) OR EXISTS (SELECT 1 FROM domain_verdicts)",
                [],
                |r| r.get(0),
            )
            .map_err(|e| self.err(e))
    }

    /// Catch-all verdicts (domain, server, verdict) checked since `since`.
    fn catch_all_since(
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
    fn begin_run(&self, fingerprint: &str, since: i64) -> Result<RunStart, StoreError> {
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
        let started_at = self.clock.now();
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

    fn finish_run(&self, id: i64) -> Result<(), StoreError> {
        self.conn
            .execute(
                "UPDATE runs SET finished_at = ?2 WHERE id = ?1",
                params![id, self.clock.now()],
            )
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Add (or update the reason of) suppression entries; returns how many were new.
    fn suppress(&mut self, entries: &[(String, String)]) -> Result<usize, StoreError> {
        let at = self.clock.now();
        self.write_all(|tx| {
            let mut stmt = tx.prepare(
                "INSERT INTO suppressions (entry, reason, added_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT(entry) DO UPDATE SET reason = excluded.reason",
            )?;
            let mut added = 0;
            for (entry, reason) in entries {
                let existed: bool = tx
                    .query_row(
                        "SELECT 1 FROM suppressions WHERE entry = ?1",
                        [entry],
                        |_| Ok(()),
                    )
                    .optional()?
                    .is_some();
                stmt.execute(params![entry, reason, at])?;
                added += usize::from(!existed);
            }
            Ok(added)
        })
    }

    fn suppress_new(&mut self, entries: &[(String, String)]) -> Result<usize, StoreError> {
        let at = self.clock.now();
        self.write_all(|tx| {
            let mut stmt = tx.prepare(
                "INSERT INTO suppressions (entry, reason, added_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT(entry) DO NOTHING",
            )?;
            let mut added = 0;
            for (entry, reason) in entries {
                added += stmt.execute(params![entry, reason, at])?;
            }
            Ok(added)
        })
    }

    fn add_bounces(&mut self, rows: &[StoredBounce]) -> Result<usize, StoreError> {
        let at = self.clock.now();
        self.write_all(|tx| {
            let mut stmt = tx.prepare(
                "INSERT INTO bounces (source_key, recipient, event_at, dated, kind, reason,
                     counts_soft, status, reply_code, diagnostic, source, message_id,
                     imported_at, remote_mta, action)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
                 ON CONFLICT(source_key, recipient) DO NOTHING",
            )?;
            let mut added = 0;
            for b in rows {
                added += stmt.execute(params![
                    b.source_key,
                    b.recipient,
                    b.event_at,
                    b.dated,
                    b.kind.as_str(),
                    b.reason,
                    b.counts_soft,
                    b.status,
                    b.reply_code,
                    b.diagnostic,
                    b.source,
                    b.message_id,
                    at,
                    b.remote_mta,
                    b.action.as_str()
                ])?;
            }
            Ok(added)
        })
    }

    fn bounces_of(&self, recipient: &str) -> Result<Vec<StoredBounce>, StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {BOUNCE_COLUMNS} FROM bounces WHERE recipient = ?1
                 ORDER BY event_at, source_key"
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([recipient], bounce_row)
            .map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in rows {
            out.extend(row.map_err(|e| self.err(e))?);
        }
        Ok(out)
    }

    fn each_bounce(
        &self,
        since: i64,
        each: &mut dyn FnMut(StoredBounce) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {BOUNCE_COLUMNS} FROM bounces WHERE event_at >= ?1
                 ORDER BY event_at, source_key, recipient"
            ))
            .map_err(|e| self.err(e))?;
        let rows = stmt
            .query_map([since], bounce_row)
            .map_err(|e| self.err(e))?;
        for row in rows {
            if let Some(b) = row.map_err(|e| self.err(e))? {
                each(b)?;
            }
        }
        Ok(())
    }

    /// Remove an entry; whether it was there.
    fn unsuppress(&self, entry: &str) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute("DELETE FROM suppressions WHERE entry = ?1", [entry])
            .map_err(|e| self.err(e))?;
        Ok(n > 0)
    }

    /// The whole suppression list, by entry.
    fn suppressions(&self) -> Result<Vec<Suppression>, StoreError> {
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

    fn commit(
        &mut self,
        batch: &[Write],
        stamp: &RunStamp,
        suppress_invalid: bool,
    ) -> Result<u64, StoreError> {
        writer::commit(self, batch, stamp, suppress_invalid)
    }
}

/// The columns [`bounce_row`] reads, in its order.
const BOUNCE_COLUMNS: &str = "source_key, recipient, event_at, dated, kind, reason, counts_soft,
    status, reply_code, diagnostic, source, message_id, remote_mta, action";

/// A stored bounce; None for a kind this build does not know (a newer prebounce wrote it): the
/// rules here cannot read it.
fn bounce_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Option<StoredBounce>> {
    let kind: String = r.get(4)?;
    let Some(kind) = Kind::ALL.into_iter().find(|k| k.as_str() == kind) else {
        return Ok(None);
    };
    Ok(Some(StoredBounce {
        source_key: r.get(0)?,
        recipient: r.get(1)?,
        event_at: r.get(2)?,
        dated: r.get(3)?,
        kind,
        reason: r.get(5)?,
        counts_soft: r.get(6)?,
        status: r.get(7)?,
        reply_code: r.get(8)?,
        diagnostic: r.get(9)?,
        source: r.get(10)?,
        message_id: r.get(11)?,
        remote_mta: r.get(12)?,
        // An action this build does not know reads as a failure, as rows from before schema 6.
        action: Action::parse(&r.get::<_, String>(13)?).unwrap_or(Action::Failed),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let store = SqliteStore::open(&path, StoreAccess::default()).unwrap();
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

    fn bounce(key: &str, recipient: &str, at: i64, kind: Kind) -> StoredBounce {
        StoredBounce {
            source_key: key.into(),
            recipient: recipient.into(),
            event_at: at,
            dated: true,
            kind,
            reason: None,
            counts_soft: kind == Kind::Soft,
            status: None,
            reply_code: None,
            diagnostic: None,
            source: "f.eml".into(),
            message_id: None,
            remote_mta: None,
            action: Action::Failed,
        }
    }

    #[test]
    fn bounces_are_stored_once_and_listed_entries_kept() {
        let dir = tempfile::tempdir().unwrap();
        let mut store =
            SqliteStore::open(&dir.path().join("s.sqlite3"), StoreAccess::default()).unwrap();
        let rows = [
            bounce("mid:2", "a@b.test", 20, Kind::Soft),
            bounce("mid:1", "a@b.test", 10, Kind::Delivered),
            bounce("mid:1", "c@b.test", 10, Kind::Hard),
        ];
        assert_eq!(store.add_bounces(&rows).unwrap(), 3);
        assert_eq!(store.add_bounces(&rows).unwrap(), 0);
        let history = store.bounces_of("a@b.test").unwrap();
        assert_eq!(history, [rows[1].clone(), rows[0].clone()]);
        let mut since_15 = Vec::new();
        store
            .each_bounce(15, &mut |b| {
                since_15.push(b);
                Ok(())
            })
            .unwrap();
        assert_eq!(since_15, [rows[0].clone()]);
        // An entry listed by hand keeps its reason.
        store
            .suppress(&[("a@b.test".into(), "by hand".into())])
            .unwrap();
        let added = store
            .suppress_new(&[
                ("a@b.test".into(), "soft bounces".into()),
                ("c@b.test".into(), "hard bounce".into()),
            ])
            .unwrap();
        assert_eq!(added, 1);
        let reasons: Vec<String> = store
            .suppressions()
            .unwrap()
            .into_iter()
            .map(|s| s.reason)
            .collect();
        assert_eq!(reasons, ["by hand", "hard bounce"]);
    }
}
