//! The PostgreSQL backend of the store (`--store postgres://…`): one cache and suppression list
//! shared by every machine of a team, and the store of a distributed job (src/queue) unless it
//! names another. The sync `postgres` client: the store's trait is called from the stages' own
//! threads, never from inside an async runtime.
//!
//! The same tables as the SQLite store, in the schema `prebounce`. What differs is how a batch
//! is written: one statement a table, its rows sent as arrays (`unnest`), so a commit costs a
//! few round trips whatever its size; and concurrent runs take turns through row locks and a
//! lock per run fingerprint (two workers of one job must open one run, not two).

mod schema;
mod writer;

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use postgres::error::SqlState;
use postgres::{Client, NoTls, Statement};

use super::codes::{domain_prior, level_of, status_of};
use super::{
    Backend, DecidedUnder, Previous, Prior, RunStamp, RunStart, StoreAccess, StoreError,
    StoredBounce, StoredDomain, Suppression, Write,
};
use crate::bounce::{Action, Kind};
use crate::clock::Clock;
use crate::model::Reason;
use crate::model::smtp::CatchAll;

pub use schema::SCHEMA_LOCK;

/// Whether `s` names a PostgreSQL database rather than an SQLite file.
pub fn is_postgres_url(s: &str) -> bool {
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

/// `url` with its password masked, for messages.
pub fn masked(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &userinfo[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// A database error in one line: the server's message when it sent one, else the cause.
pub fn describe(e: &postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} ({})", db.message(), db.code().code());
    }
    match std::error::Error::source(e) {
        Some(cause) => format!("{e}: {cause}"),
        None => e.to_string(),
    }
}

/// A client error as the store's: a lock waited for too long, a store this role may not
/// write, or anything else (with the server's message).
fn store_error(path: &Path, waited: Duration, e: postgres::Error) -> StoreError {
    let path = path.to_owned();
    match e.code() {
        Some(c) if *c == SqlState::LOCK_NOT_AVAILABLE => StoreError::Locked { path, waited },
        Some(c)
            if *c == SqlState::INSUFFICIENT_PRIVILEGE
                || *c == SqlState::READ_ONLY_SQL_TRANSACTION =>
        {
            StoreError::ReadOnly { path }
        }
        _ => StoreError::Other {
            path,
            source: describe(&e).into(),
        },
    }
}

/// PostgreSQL's text holds no NUL: one in a reply or a diagnostic is stored as U+FFFD.
fn text(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains('\0') {
        s.replace('\0', "\u{fffd}").into()
    } else {
        s.into()
    }
}

/// One connection to a PostgreSQL store. Each stage that needs the store opens its own.
pub struct PgStore {
    /// The trait's lookups take `&self`; the client's calls take `&mut`. One thread uses a
    /// connection, so a `RefCell` and never a borrow held across a call out.
    client: RefCell<Client>,
    /// Prepared once a connection: a lookup a row.
    statements: RefCell<HashMap<&'static str, Statement>>,
    /// The URL with its password masked, for messages.
    path: PathBuf,
    busy_timeout: Duration,
    clock: Clock,
}

impl PgStore {
    /// Connect, create or migrate the tables.
    pub fn open(url: &str, access: StoreAccess) -> Result<PgStore, StoreError> {
        let path = PathBuf::from(masked(url));
        let err = |e| store_error(&path, access.busy_timeout, e);
        let mut config: postgres::Config = url.parse().map_err(|e: postgres::Error| {
            StoreError::Entry(format!(
                "{} is not a usable PostgreSQL URL ({}); write postgres://user:password@host:port/database",
                path.display(),
                describe(&e)
            ))
        })?;
        // An unreachable server fails the run within seconds, not after the kernel's minutes.
        config.connect_timeout(Duration::from_secs(10));
        config.application_name("prebounce");
        let mut client = config.connect(NoTls).map_err(|e| StoreError::Unreachable {
            path: path.clone(),
            detail: describe(&e),
        })?;
        // A run waits for another's row locks as long as it would for SQLite's write lock,
        // then stops with "locked" (exit 2).
        let wait_ms = access.busy_timeout.as_millis().clamp(1, i32::MAX as u128);
        client
            .batch_execute(&format!("SET lock_timeout = {wait_ms}"))
            .map_err(err)?;
        let mut tx = client.transaction().map_err(err)?;
        let migrated = schema::migrate(&mut tx).map_err(err)?;
        tx.commit().map_err(err)?;
        match migrated {
            schema::Migrated::Current => {}
            schema::Migrated::Newer(found) => return Err(StoreError::Newer { path, found }),
            schema::Migrated::Foreign => return Err(StoreError::NotAStore { path }),
        }
        Ok(PgStore {
            client: RefCell::new(client),
            statements: RefCell::new(HashMap::new()),
            path,
            busy_timeout: access.busy_timeout,
            clock: access.clock,
        })
    }

    fn err(&self, e: postgres::Error) -> StoreError {
        store_error(&self.path, self.busy_timeout, e)
    }

    /// `sql` prepared on this connection (once).
    fn statement(&self, sql: &'static str) -> Result<Statement, StoreError> {
        if let Some(s) = self.statements.borrow().get(sql) {
            return Ok(s.clone());
        }
        let s = self
            .client
            .borrow_mut()
            .prepare(sql)
            .map_err(|e| self.err(e))?;
        self.statements.borrow_mut().insert(sql, s.clone());
        Ok(s)
    }

    fn query(
        &self,
        sql: &'static str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<Vec<postgres::Row>, StoreError> {
        let stmt = self.statement(sql)?;
        self.client
            .borrow_mut()
            .query(&stmt, params)
            .map_err(|e| self.err(e))
    }

    fn execute(
        &self,
        sql: &'static str,
        params: &[&(dyn postgres::types::ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let stmt = self.statement(sql)?;
        self.client
            .borrow_mut()
            .execute(&stmt, params)
            .map_err(|e| self.err(e))
    }

    /// `write` in one transaction, committed if it succeeds.
    fn write_all<T>(
        &mut self,
        write: impl FnOnce(&mut postgres::Transaction<'_>) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        let (path, waited) = (self.path.clone(), self.busy_timeout);
        let err = |e| store_error(&path, waited, e);
        let client = self.client.get_mut();
        let mut tx = client.transaction().map_err(err)?;
        let out = write(&mut tx).map_err(err)?;
        tx.commit().map_err(err)?;
        Ok(out)
    }
}

/// A query of stored bounces, with the columns [`bounce_of`] reads, in its order.
macro_rules! select_bounces {
    ($rest:literal) => {
        concat!(
            "SELECT source_key, recipient, event_at, dated, kind, reason, counts_soft, status,
               reply_code, diagnostic, source, message_id, remote_mta, action
             FROM prebounce.bounces ",
            $rest
        )
    };
}

/// A stored bounce; None for a kind this build does not know (a newer prebounce wrote it).
fn bounce_of(r: &postgres::Row) -> Result<Option<StoredBounce>, postgres::Error> {
    let kind: String = r.try_get(4)?;
    let Some(kind) = Kind::ALL.into_iter().find(|k| k.as_str() == kind) else {
        return Ok(None);
    };
    Ok(Some(StoredBounce {
        source_key: r.try_get(0)?,
        recipient: r.try_get(1)?,
        event_at: r.try_get(2)?,
        dated: r.try_get(3)?,
        kind,
        reason: r.try_get(5)?,
        counts_soft: r.try_get(6)?,
        status: r.try_get(7)?,
        reply_code: r
            .try_get::<_, Option<i32>>(8)?
            .and_then(|c| u16::try_from(c).ok()),
        diagnostic: r.try_get(9)?,
        source: r.try_get(10)?,
        message_id: r.try_get(11)?,
        remote_mta: r.try_get(12)?,
        action: Action::parse(&r.try_get::<_, String>(13)?).unwrap_or(Action::Failed),
    }))
}

impl Backend for PgStore {
    fn path(&self) -> &Path {
        &self.path
    }

    /// One snapshot for a chunk's lookups, and one round trip less a row than autocommit
    /// statements would not save anyway: the gain is a consistent view while the writer commits.
    fn reading<T>(&self, f: impl FnOnce() -> Result<T, StoreError>) -> Result<T, StoreError> {
        self.client
            .borrow_mut()
            .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            .map_err(|e| self.err(e))?;
        let out = f();
        // Nothing was written: ending the transaction cannot lose anything.
        let _ = self.client.borrow_mut().batch_execute("COMMIT");
        out
    }

    fn lookup(&self, key: &str) -> Result<Option<Prior>, StoreError> {
        let domain = key.rsplit_once('@').map_or("", |(_, d)| d);
        // A dns-level verdict's detail and MX are its domain's (written once, with the
        // domain), as long as the domain's verdict is still that one.
        let rows = self.query(
            "SELECT a.reason,
               CASE WHEN a.level = 1 AND a.detail = '' AND d.reason = a.reason
                 AND d.verified_at <= a.verified_at THEN d.detail ELSE a.detail END,
               CASE WHEN a.level = 1 AND a.mx IS NULL AND d.reason = a.reason
                 AND d.verified_at <= a.verified_at THEN d.mx ELSE a.mx END,
               a.level, a.verified_at, a.prev_status, a.prev_reason, a.prev_verified_at,
               a.options, a.sender, a.run
             FROM prebounce.addresses a LEFT JOIN prebounce.domain_verdicts d
               ON d.domain = $2 AND d.options = a.options
             WHERE a.key = $1",
            &[&key, &domain],
        )?;
        let Some(r) = rows.first() else {
            return Ok(None);
        };
        let get = |e| self.err(e);
        let reason: String = r.try_get(0).map_err(get)?;
        let level: i16 = r.try_get(3).map_err(get)?;
        let options: String = r.try_get(8).map_err(get)?;
        // A reason, level or option this build does not know (a newer prebounce wrote it): a
        // miss.
        let (Some(reason), Some(level), Some(under)) = (
            Reason::from_code(&reason),
            level_of(i64::from(level)),
            DecidedUnder::from_codes(&options, r.try_get(9).map_err(get)?),
        ) else {
            return Ok(None);
        };
        let ps: Option<String> = r.try_get(5).map_err(get)?;
        let pr: Option<String> = r.try_get(6).map_err(get)?;
        let pv: Option<i64> = r.try_get(7).map_err(get)?;
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
            Prior::new(
                reason,
                r.try_get(1).map_err(get)?,
                r.try_get(2).map_err(get)?,
                level,
                r.try_get(4).map_err(get)?,
                previous,
            )
            .decided(under, r.try_get(10).map_err(get)?),
        ))
    }

    fn lookup_domain(&self, domain: &str) -> Result<StoredDomain, StoreError> {
        let rows = self.query(
            "SELECT d.reason, d.detail, d.mx, d.verified_at, s.verified_at, d.options, d.run
             FROM (SELECT $1::text AS domain) q
             LEFT JOIN prebounce.domain_verdicts d ON d.domain = q.domain
             LEFT JOIN prebounce.smtp_domains s ON s.domain = q.domain",
            &[&domain],
        )?;
        let get = |e| self.err(e);
        let Some(r) = rows.first() else {
            return Ok(StoredDomain::default());
        };
        let reason: Option<String> = r.try_get(0).map_err(get)?;
        let at: Option<i64> = r.try_get(3).map_err(get)?;
        let verdict = match (reason, at) {
            (Some(reason), Some(at)) => domain_prior(
                &reason,
                r.try_get(1).map_err(get)?,
                r.try_get(2).map_err(get)?,
                at,
                &r.try_get::<_, String>(5).map_err(get)?,
                r.try_get(6).map_err(get)?,
            ),
            _ => None,
        };
        Ok(StoredDomain {
            verdict,
            smtp_at: r.try_get(4).map_err(get)?,
        })
    }

    fn all_domains(
        &self,
        limit: usize,
    ) -> Result<Option<HashMap<String, StoredDomain>>, StoreError> {
        let get = |e| self.err(e);
        let count: i64 = self
            .query(
                "SELECT (SELECT count(*) FROM prebounce.domain_verdicts)
                      + (SELECT count(*) FROM prebounce.smtp_domains)",
                &[],
            )?
            .first()
            .map_or(Ok(0), |r| r.try_get(0))
            .map_err(get)?;
        if count as usize > limit {
            return Ok(None);
        }
        let mut out: HashMap<String, StoredDomain> = HashMap::with_capacity(count as usize);
        for r in self.query(
            "SELECT domain, reason, detail, mx, verified_at, options, run
             FROM prebounce.domain_verdicts",
            &[],
        )? {
            let reason: String = r.try_get(1).map_err(get)?;
            let options: String = r.try_get(5).map_err(get)?;
            let prior = domain_prior(
                &reason,
                r.try_get(2).map_err(get)?,
                r.try_get(3).map_err(get)?,
                r.try_get(4).map_err(get)?,
                &options,
                r.try_get(6).map_err(get)?,
            );
            if prior.is_some() {
                out.entry(r.try_get(0).map_err(get)?).or_default().verdict = prior;
            }
        }
        for r in self.query(
            "SELECT domain, verified_at FROM prebounce.smtp_domains",
            &[],
        )? {
            out.entry(r.try_get(0).map_err(get)?).or_default().smtp_at =
                Some(r.try_get(1).map_err(get)?);
        }
        Ok(Some(out))
    }

    fn has_verdicts(&self) -> Result<bool, StoreError> {
        self.query(
            "SELECT EXISTS (SELECT 1 FROM prebounce.addresses)
                 OR EXISTS (SELECT 1 FROM prebounce.domain_verdicts)",
            &[],
        )?
        .first()
        .map_or(Ok(false), |r| r.try_get(0))
        .map_err(|e| self.err(e))
    }

    fn catch_all_since(
        &self,
        since: i64,
    ) -> Result<Vec<(String, std::net::IpAddr, CatchAll)>, StoreError> {
        let mut out = Vec::new();
        for r in self.query(
            "SELECT domain, server, catch_all FROM prebounce.domains
             WHERE checked_at >= $1 AND catch_all IS NOT NULL",
            &[&since],
        )? {
            let get = |e| self.err(e);
            let (domain, server, c): (String, String, String) = (
                r.try_get(0).map_err(get)?,
                r.try_get(1).map_err(get)?,
                r.try_get(2).map_err(get)?,
            );
            let Ok(ip) = server.parse() else { continue };
            match c.as_str() {
                "yes" => out.push((domain, ip, CatchAll::Yes)),
                "no" => out.push((domain, ip, CatchAll::No)),
                _ => {}
            }
        }
        Ok(out)
    }

    /// Under a lock of the fingerprint: the workers of one job start its run at the same
    /// moment, and must all find the one the first of them started.
    fn begin_run(&self, fingerprint: &str, since: i64) -> Result<RunStart, StoreError> {
        let now = self.clock.now();
        let mut client = self.client.borrow_mut();
        let run = (|| {
            let mut tx = client.transaction()?;
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended($1, 1))",
                &[&fingerprint],
            )?;
            let found = tx.query_opt(
                "SELECT id, started_at FROM prebounce.runs
                 WHERE fingerprint = $1 AND finished_at IS NULL AND started_at >= $2
                 ORDER BY id DESC LIMIT 1",
                &[&fingerprint, &since],
            )?;
            let run = match found {
                Some(r) => RunStart {
                    id: r.get(0),
                    started_at: r.get(1),
                    resumed: true,
                },
                None => RunStart {
                    id: tx
                        .query_one(
                            "INSERT INTO prebounce.runs (fingerprint, started_at)
                             VALUES ($1, $2) RETURNING id",
                            &[&fingerprint, &now],
                        )?
                        .get(0),
                    started_at: now,
                    resumed: false,
                },
            };
            tx.commit()?;
            Ok(run)
        })();
        run.map_err(|e| self.err(e))
    }

    fn finish_run(&self, id: i64) -> Result<(), StoreError> {
        self.execute(
            "UPDATE prebounce.runs SET finished_at = $2 WHERE id = $1",
            &[&id, &self.clock.now()],
        )
        .map(drop)
    }

    fn suppress(&mut self, entries: &[(String, String)]) -> Result<usize, StoreError> {
        let at = self.clock.now();
        self.write_all(|tx| {
            let stmt = tx.prepare(
                "INSERT INTO prebounce.suppressions (entry, reason, added_at) VALUES ($1, $2, $3)
                 ON CONFLICT (entry) DO UPDATE SET reason = excluded.reason
                 RETURNING (xmax = 0)",
            )?;
            let mut added = 0;
            for (entry, reason) in entries {
                let inserted: bool = tx
                    .query_one(&stmt, &[&text(entry), &text(reason), &at])?
                    .get(0);
                added += usize::from(inserted);
            }
            Ok(added)
        })
    }

    fn suppress_new(&mut self, entries: &[(String, String)]) -> Result<usize, StoreError> {
        let at = self.clock.now();
        let (keys, reasons): (Vec<_>, Vec<_>) =
            entries.iter().map(|(e, r)| (text(e), text(r))).unzip();
        self.write_all(|tx| {
            writer::insert_suppressions(tx, &keys, &reasons, at).map(|n| n as usize)
        })
    }

    fn add_bounces(&mut self, rows: &[StoredBounce]) -> Result<usize, StoreError> {
        let at = self.clock.now();
        self.write_all(|tx| writer::insert_bounces(tx, rows, at).map(|n| n as usize))
    }

    fn bounces_of(&self, recipient: &str) -> Result<Vec<StoredBounce>, StoreError> {
        let rows = self.query(
            select_bounces!("WHERE recipient = $1 ORDER BY event_at, source_key"),
            &[&recipient],
        )?;
        let mut out = Vec::new();
        for r in &rows {
            out.extend(bounce_of(r).map_err(|e| self.err(e))?);
        }
        Ok(out)
    }

    /// Streamed: the rows are read as the server sends them, never all held.
    fn each_bounce(
        &self,
        since: i64,
        each: &mut dyn FnMut(StoredBounce) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        use postgres::fallible_iterator::FallibleIterator;
        let stmt = self.statement(select_bounces!(
            "WHERE event_at >= $1 ORDER BY event_at, source_key, recipient"
        ))?;
        let mut client = self.client.borrow_mut();
        let mut rows = client
            .query_raw(&stmt, [&since as &(dyn postgres::types::ToSql + Sync)])
            .map_err(|e| self.err(e))?;
        while let Some(r) = rows.next().map_err(|e| self.err(e))? {
            if let Some(b) = bounce_of(&r).map_err(|e| self.err(e))? {
                each(b)?;
            }
        }
        Ok(())
    }

    fn unsuppress(&self, entry: &str) -> Result<bool, StoreError> {
        self.execute(
            "DELETE FROM prebounce.suppressions WHERE entry = $1",
            &[&entry],
        )
        .map(|n| n > 0)
    }

    fn suppressions(&self) -> Result<Vec<Suppression>, StoreError> {
        let get = |e| self.err(e);
        self.query(
            "SELECT entry, reason, added_at FROM prebounce.suppressions ORDER BY entry",
            &[],
        )?
        .iter()
        .map(|r| {
            Ok(Suppression {
                entry: r.try_get(0).map_err(get)?,
                reason: r.try_get(1).map_err(get)?,
                added_at: r.try_get(2).map_err(get)?,
            })
        })
        .collect()
    }

    fn commit(
        &mut self,
        batch: &[Write],
        stamp: &RunStamp,
        suppress_invalid: bool,
    ) -> Result<u64, StoreError> {
        let now = self.clock.now();
        self.write_all(|tx| writer::commit(tx, batch, stamp, suppress_invalid, now))
    }
}
