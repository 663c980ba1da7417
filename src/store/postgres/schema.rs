//! The PostgreSQL store's tables, in the schema `prebounce` (beside the queue's when one
//! database is both). The same tables and meanings as the SQLite store's (see
//! `store::sqlite::schema` for what each column holds), with PostgreSQL's types; the version
//! numbers are shared with SQLite's so that one "newer prebounce" message fits both, and a
//! PostgreSQL store starts at the version this backend was written for.

use postgres::Transaction;

/// The schema this build writes. A later migration appends to [`MIGRATIONS`] and bumps this
/// (with SQLite's).
pub const VERSION: u32 = 6;

/// The first version a PostgreSQL store had.
const FIRST: u32 = 6;

/// Serialises schema changes of concurrent first opens (a team's workers starting at once);
/// the queue takes the same lock for its tables (one-key advisory locks: the politeness
/// budget's two-key locks never meet them).
pub const SCHEMA_LOCK: i64 = 7_072_657_062_001;

/// `MIGRATIONS[i]` takes a store from version `FIRST + i` to `FIRST + i + 1`; the first
/// creates it. Append; never edit a shipped one.
const MIGRATIONS: [&str; (VERSION - FIRST + 1) as usize] = [
    // Keys are compared byte by byte ("C"), as SQLite does: listings sort the same, and the
    // indexes skip the locale's rules.
    r#"
CREATE TABLE prebounce.addresses (
    key              TEXT COLLATE "C" PRIMARY KEY,
    status           TEXT NOT NULL,
    reason           TEXT NOT NULL,
    detail           TEXT NOT NULL,
    level            SMALLINT NOT NULL,
    verified_at      BIGINT NOT NULL,
    mx               TEXT,
    reply_code       INTEGER,
    reply_text       TEXT,
    prev_status      TEXT,
    prev_reason      TEXT,
    prev_verified_at BIGINT,
    options          TEXT NOT NULL DEFAULT '',
    sender           TEXT,
    run              BIGINT
);
CREATE TABLE prebounce.domains (
    domain     TEXT COLLATE "C" NOT NULL,
    server     TEXT COLLATE "C" NOT NULL,
    catch_all  TEXT,
    checked_at BIGINT NOT NULL,
    PRIMARY KEY (domain, server)
);
CREATE TABLE prebounce.suppressions (
    entry    TEXT COLLATE "C" PRIMARY KEY,
    reason   TEXT NOT NULL,
    added_at BIGINT NOT NULL
);
CREATE TABLE prebounce.runs (
    id          BIGSERIAL PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    started_at  BIGINT NOT NULL,
    finished_at BIGINT
);
CREATE INDEX runs_unfinished ON prebounce.runs (fingerprint) WHERE finished_at IS NULL;
CREATE TABLE prebounce.domain_verdicts (
    domain      TEXT COLLATE "C" PRIMARY KEY,
    reason      TEXT NOT NULL,
    detail      TEXT NOT NULL,
    mx          TEXT,
    verified_at BIGINT NOT NULL,
    options     TEXT NOT NULL DEFAULT '',
    run         BIGINT
);
CREATE TABLE prebounce.smtp_domains (
    domain      TEXT COLLATE "C" PRIMARY KEY,
    verified_at BIGINT NOT NULL
);
CREATE TABLE prebounce.bounces (
    source_key  TEXT COLLATE "C" NOT NULL,
    recipient   TEXT COLLATE "C" NOT NULL,
    event_at    BIGINT NOT NULL,
    dated       BOOLEAN NOT NULL,
    kind        TEXT NOT NULL,
    reason      TEXT,
    counts_soft BOOLEAN NOT NULL,
    status      TEXT,
    reply_code  INTEGER,
    diagnostic  TEXT,
    source      TEXT NOT NULL,
    message_id  TEXT,
    imported_at BIGINT NOT NULL,
    remote_mta  TEXT,
    action      TEXT NOT NULL DEFAULT 'failed',
    PRIMARY KEY (source_key, recipient)
);
CREATE INDEX bounces_by_recipient ON prebounce.bounces (recipient, event_at);
CREATE INDEX bounces_by_date ON prebounce.bounces (event_at);
"#,
];

/// What migrating found.
pub enum Migrated {
    Current,
    /// The store was written by a newer prebounce (its version).
    Newer(u32),
    /// The schema `prebounce` holds tables of the store's names but no version: not ours.
    Foreign,
}

/// Create or migrate the store's tables, under [`SCHEMA_LOCK`], in the caller's transaction.
/// A store already at this version is only read: a role that may read it and not change it
/// (a team's dashboards, `suppress list`) can open it.
pub fn migrate(tx: &mut Transaction<'_>) -> Result<Migrated, postgres::Error> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&SCHEMA_LOCK])?;
    let versioned: bool = tx
        .query_one(
            "SELECT to_regclass('prebounce.store_version') IS NOT NULL",
            &[],
        )?
        .get(0);
    let found = if versioned {
        let v: Option<i32> = tx
            .query_one("SELECT max(version) FROM prebounce.store_version", &[])?
            .get(0);
        v.map_or(FIRST - 1, |v| v as u32)
    } else {
        let foreign: bool = tx
            .query_one(
                "SELECT to_regclass('prebounce.addresses') IS NOT NULL
                    OR to_regclass('prebounce.suppressions') IS NOT NULL",
                &[],
            )?
            .get(0);
        if foreign {
            return Ok(Migrated::Foreign);
        }
        FIRST - 1
    };
    if found > VERSION {
        return Ok(Migrated::Newer(found));
    }
    if found == VERSION {
        return Ok(Migrated::Current);
    }
    tx.batch_execute(
        "CREATE SCHEMA IF NOT EXISTS prebounce;
         CREATE TABLE IF NOT EXISTS prebounce.store_version (version INTEGER NOT NULL)",
    )?;
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        if FIRST + i as u32 > found {
            tx.batch_execute(sql)?;
        }
    }
    tx.execute("DELETE FROM prebounce.store_version", &[])?;
    tx.execute(
        "INSERT INTO prebounce.store_version (version) VALUES ($1)",
        &[&(VERSION as i32)],
    )?;
    Ok(Migrated::Current)
}
