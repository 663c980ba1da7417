//! The store's schema and its migrations. `PRAGMA user_version` holds the schema version; each
//! migration moves it up by one, inside one write transaction, so two runs opening an old store
//! at once migrate it once.

use rusqlite::{Connection, TransactionBehavior};

/// The schema this build writes.
pub const VERSION: u32 = 2;

/// `MIGRATIONS[v]` takes a store from version `v` to `v + 1`. Append; never edit a shipped one.
const MIGRATIONS: [&str; VERSION as usize] = [
    // 1: verdicts per address, facts per domain, the suppression list.
    "CREATE TABLE addresses (
        key         TEXT PRIMARY KEY,  -- lower-case local part '@' ASCII (punycode) domain
        status      TEXT NOT NULL,     -- valid | invalid | catch-all | unknown
        reason      TEXT NOT NULL,     -- a reason code (verdict::Reason)
        detail      TEXT NOT NULL,
        level       INTEGER NOT NULL,  -- 0 syntax, 1 dns, 2 smtp: how far it was verified
        verified_at INTEGER NOT NULL,  -- unix seconds
        mx          TEXT,
        reply_code  INTEGER,           -- the RCPT reply, at level smtp
        reply_text  TEXT
    ) WITHOUT ROWID;
    CREATE TABLE domains (
        domain     TEXT NOT NULL,      -- ASCII (punycode)
        server     TEXT NOT NULL,      -- the mail server's IP address: a backup MX often
                                       -- accepts everything while the primary checks
        catch_all  TEXT,               -- yes | no
        checked_at INTEGER NOT NULL,
        PRIMARY KEY (domain, server)
    ) WITHOUT ROWID;
    CREATE TABLE suppressions (
        entry    TEXT PRIMARY KEY,     -- an address key, or '@' and an ASCII domain
        reason   TEXT NOT NULL,
        added_at INTEGER NOT NULL
    ) WITHOUT ROWID;",
    // 2: the verdict each address had before the current one (changes.csv, also for a resumed
    // run), and the runs (a run started again with the same command resumes the unfinished one).
    "ALTER TABLE addresses ADD COLUMN prev_status TEXT;
    ALTER TABLE addresses ADD COLUMN prev_reason TEXT;
    ALTER TABLE addresses ADD COLUMN prev_verified_at INTEGER;
    CREATE TABLE runs (
        id          INTEGER PRIMARY KEY,
        fingerprint TEXT NOT NULL,
        started_at  INTEGER NOT NULL,
        finished_at INTEGER
    );
    CREATE INDEX runs_unfinished ON runs (fingerprint) WHERE finished_at IS NULL;",
];

/// What migrating found.
pub enum Migrated {
    Current,
    /// The store was written by a newer prebounce (its version).
    Newer(u32),
}

pub fn migrate(conn: &mut Connection) -> rusqlite::Result<Migrated> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: u32 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if found > VERSION {
        return Ok(Migrated::Newer(found));
    }
    for (v, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", v as u32 + 1)?;
    }
    tx.commit()?;
    Ok(Migrated::Current)
}

/// The version-1 schema, for the migration test.
#[doc(hidden)]
pub fn version_1_sql() -> &'static str {
    MIGRATIONS[0]
}
