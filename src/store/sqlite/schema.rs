//! The store's schema and its migrations. `PRAGMA user_version` holds the schema version; each
//! migration moves it up by one, inside one write transaction, so two runs opening an old store
//! at once migrate it once.

use rusqlite::{Connection, TransactionBehavior};

/// The schema this build writes.
pub const VERSION: u32 = 6;

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
    // 3: dns-level verdicts per domain too. A dns-level verdict depends on the domain only, so a
    // dns-level run answers every address of a domain from one row instead of one lookup per
    // address. The per-address rows stay: they are each address's history (changes.csv) and
    // hold the smtp-level verdicts, which `smtp_domains` points to (the domains whose rows a
    // dns-level run must still look up one by one). Its rows for the smtp-level verdicts already
    // stored: an address key's domain is what follows its last '@' (rtrim strips every character
    // but '@' from the right, leaving the local part and its '@').
    "CREATE TABLE domain_verdicts (
        domain      TEXT PRIMARY KEY,  -- ASCII (punycode)
        reason      TEXT NOT NULL,
        detail      TEXT NOT NULL,
        mx          TEXT,
        verified_at INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE smtp_domains (
        domain      TEXT PRIMARY KEY,  -- ASCII (punycode)
        verified_at INTEGER NOT NULL   -- the latest smtp-level verdict of one of its addresses
    ) WITHOUT ROWID;
    INSERT INTO smtp_domains (domain, verified_at)
        SELECT substr(key, length(rtrim(key, replace(key, '@', ''))) + 1), max(verified_at)
        FROM addresses WHERE level = 2 GROUP BY 1;",
    // 4: the options each verdict was decided under (a verdict serves only a run under the
    // same ones: store::policy), and the run that wrote it ("this run's verdict" by its id, not
    // by a time stamp that a run of the same second shares). Rows from before hold the
    // defaults, no sender and no run: decided under the default options, by an earlier run.
    "ALTER TABLE addresses ADD COLUMN options TEXT NOT NULL DEFAULT '';
    ALTER TABLE addresses ADD COLUMN sender TEXT;    -- level smtp: MAIL FROM and HELO
    ALTER TABLE addresses ADD COLUMN run INTEGER;
    ALTER TABLE domain_verdicts ADD COLUMN options TEXT NOT NULL DEFAULT '';
    ALTER TABLE domain_verdicts ADD COLUMN run INTEGER;",
    // 5: the bounces imported (`prebounce bounces import`), one row per recipient of a report
    // or event. The key makes a second import of the same input change nothing: the message's
    // Message-ID (a hash of its bytes when it has none) or the ESP's event id, with the
    // recipient. Kept whole, not just counted: the soft rule slides over their dates, and a
    // suppression's evidence is one of them.
    "CREATE TABLE bounces (
        source_key  TEXT NOT NULL,     -- 'mid:<Message-ID>' | 'hash:<hex>' | 'event:<id>:<action>'
        recipient   TEXT NOT NULL,     -- the address key (as suppressions), else as written
        event_at    INTEGER NOT NULL,  -- unix seconds: the report's date, else the import's
        dated       INTEGER NOT NULL,  -- 1: event_at is the report's own date
        kind        TEXT NOT NULL,     -- hard | soft | block | complaint | auto-reply | delivered
        reason      TEXT,              -- a reason code, for SMTP answers
        counts_soft INTEGER NOT NULL,  -- 1: a soft bounce about the mailbox (the soft rule)
        status      TEXT,              -- RFC 3463 enhanced code
        reply_code  INTEGER,
        diagnostic  TEXT,
        source      TEXT NOT NULL,     -- the file, with #N for the N-th message of an mbox
        message_id  TEXT,
        imported_at INTEGER NOT NULL,
        PRIMARY KEY (source_key, recipient)
    ) WITHOUT ROWID;
    CREATE INDEX bounces_by_recipient ON bounces (recipient, event_at);",
    // 6: the remote MTA of a bounce (`bounces report` groups by the receiving provider), its
    // DSN action (a delay is not a bounce of its own: the same message ends in a delivery or a
    // failure later; rows from before read as 'failed'), and an index by date for the
    // report's and the soft counts' windows.
    "ALTER TABLE bounces ADD COLUMN remote_mta TEXT;
    ALTER TABLE bounces ADD COLUMN action TEXT NOT NULL DEFAULT 'failed';
    CREATE INDEX bounces_by_date ON bounces (event_at);",
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_3_marks_the_domains_of_stored_smtp_verdicts() {
        let mut conn = Connection::open_in_memory().unwrap();
        for (v, sql) in MIGRATIONS[..2].iter().enumerate() {
            conn.execute_batch(sql).unwrap();
            conn.pragma_update(None, "user_version", v as u32 + 1)
                .unwrap();
        }
        // A quoted local part may hold '@': the domain is what follows the last one.
        for (key, level, at) in [
            ("ann@probed.test", 2, 10),
            ("\"a@b\"@probed.test", 2, 30),
            ("\"x@y\"@quoted.test", 2, 5),
            ("bob@dns-only.test", 1, 50),
        ] {
            conn.execute(
                "INSERT INTO addresses (key, status, reason, detail, level, verified_at)
                 VALUES (?1, 'valid', 'mailbox-accepted', '', ?2, ?3)",
                rusqlite::params![key, level, at],
            )
            .unwrap();
        }
        assert!(matches!(migrate(&mut conn).unwrap(), Migrated::Current));
        let mut stmt = conn
            .prepare("SELECT domain, verified_at FROM smtp_domains ORDER BY domain")
            .unwrap();
        let marked: Vec<(String, i64)> = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            marked,
            [("probed.test".into(), 30), ("quoted.test".into(), 5)]
        );
    }
}
