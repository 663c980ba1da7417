//! The SQLite backend's commit of the writer's batches (see `store::writer`): multi-row upserts,
//! as SQLite's cost is mostly per statement and a dns-level run writes a million rows.

use rusqlite::{TransactionBehavior, params};

use super::{SqliteStore, store_error};
use crate::model::smtp::CatchAll;
use crate::model::{Level, Reason};
use crate::store::codes::level_index;
use crate::store::writer::permanent;
use crate::store::{RunStamp, StoreError, Write};

/// Address rows in one multi-row upsert.
const ROWS_PER_STATEMENT: usize = 32;

/// What an upsert's rows bind.
#[derive(Clone, Copy)]
enum Shape {
    /// Every column.
    Full,
    /// A dns-level verdict: key, status, reason and when. Its detail and MX are its domain's,
    /// held once by the domain's row (see `Store::lookup`): that halves the bytes a dns-level
    /// run writes, and fewer parameters make a cheaper statement.
    Dns,
}

impl Shape {
    fn params(self) -> usize {
        match self {
            Shape::Full => 9,
            Shape::Dns => 4,
        }
    }
}

/// The upsert of `rows` addresses. The verdict it replaces becomes the previous one, unless
/// that one was written by this same run (a resumed run, an address met in two windows): then
/// the one before it stays the previous one. The parameters after the rows' are the run's
/// stamp, the same for every row: its id, its options and (full rows) its sender, stored with
/// the smtp-level verdicts only.
fn upsert_sql(rows: usize, shape: Shape) -> String {
    let run = rows * shape.params() + 1;
    let (options, sender) = (run + 1, run + 2);
    let values: Vec<String> = (0..rows)
        .map(|i| {
            let p = |k: usize| format!("?{}", i * shape.params() + k);
            match shape {
                Shape::Full => format!(
                    "({}, {}, {}, {}, {}, {}, {}, {}, {}, ?{options}, \
                     CASE WHEN {} = {} THEN ?{sender} END, ?{run})",
                    p(1),
                    p(2),
                    p(3),
                    p(4),
                    p(5),
                    p(6),
                    p(7),
                    p(8),
                    p(9),
                    p(5),
                    level_index(Level::Smtp),
                ),
                Shape::Dns => format!(
                    "({}, {}, {}, '', {}, {}, NULL, NULL, NULL, ?{options}, NULL, ?{run})",
                    p(1),
                    p(2),
                    p(3),
                    level_index(Level::Dns),
                    p(4)
                ),
            }
        })
        .collect();
    format!(
        "INSERT INTO addresses (key, status, reason, detail, level, verified_at, mx, reply_code,
           reply_text, options, sender, run)
         VALUES {}
         ON CONFLICT(key) DO UPDATE SET
           prev_status = CASE WHEN run IS NOT ?{run} THEN status ELSE prev_status END,
           prev_reason = CASE WHEN run IS NOT ?{run} THEN reason ELSE prev_reason END,
           prev_verified_at = CASE WHEN run IS NOT ?{run} THEN verified_at ELSE prev_verified_at END,
           status = excluded.status, reason = excluded.reason, detail = excluded.detail,
           level = excluded.level, verified_at = excluded.verified_at, mx = excluded.mx,
           reply_code = excluded.reply_code, reply_text = excluded.reply_text,
           options = excluded.options, sender = excluded.sender, run = excluded.run",
        values.join(", ")
    )
}

/// One address row to write, from a [`Record`] or from [`DnsVerdicts`].
struct Row<'a> {
    key: &'a str,
    reason: Reason,
    detail: &'a str,
    mx: Option<&'a str>,
    level: Level,
    verified_at: i64,
    reply: Option<(u16, &'a str)>,
}

fn bind_upsert(
    stmt: &mut rusqlite::CachedStatement<'_>,
    shape: Shape,
    rows: &[Row],
    stamp: &RunStamp,
) -> rusqlite::Result<()> {
    for (i, r) in rows.iter().enumerate() {
        let at = i * shape.params();
        stmt.raw_bind_parameter(at + 1, r.key)?;
        stmt.raw_bind_parameter(at + 2, r.reason.status().as_str())?;
        stmt.raw_bind_parameter(at + 3, r.reason.as_str())?;
        match shape {
            Shape::Full => {
                stmt.raw_bind_parameter(at + 4, r.detail)?;
                stmt.raw_bind_parameter(at + 5, level_index(r.level))?;
                stmt.raw_bind_parameter(at + 6, r.verified_at)?;
                stmt.raw_bind_parameter(at + 7, r.mx)?;
                stmt.raw_bind_parameter(at + 8, r.reply.map(|(code, _)| code))?;
                stmt.raw_bind_parameter(at + 9, r.reply.map(|(_, text)| text))?;
            }
            Shape::Dns => stmt.raw_bind_parameter(at + 4, r.verified_at)?,
        }
    }
    let run = rows.len() * shape.params() + 1;
    stmt.raw_bind_parameter(run, stamp.run)?;
    stmt.raw_bind_parameter(run + 1, stamp.under.options_code())?;
    match shape {
        Shape::Full => stmt.raw_bind_parameter(run + 2, stamp.under.sender.as_deref()),
        Shape::Dns => Ok(()),
    }
}

/// Write `rows` of one shape: many a statement, as SQLite's cost is mostly per statement and a
/// dns-level run writes a million rows.
fn upsert_rows(
    tx: &rusqlite::Transaction,
    shape: Shape,
    rows: &[Row],
    stamp: &RunStamp,
) -> rusqlite::Result<()> {
    let mut groups = rows.chunks_exact(ROWS_PER_STATEMENT);
    if groups.len() > 0 {
        let mut many = tx.prepare_cached(&upsert_sql(ROWS_PER_STATEMENT, shape))?;
        for group in &mut groups {
            bind_upsert(&mut many, shape, group, stamp)?;
            many.raw_execute()?;
        }
    }
    if !groups.remainder().is_empty() {
        let mut one = tx.prepare_cached(&upsert_sql(1, shape))?;
        for r in groups.remainder() {
            bind_upsert(&mut one, shape, std::slice::from_ref(r), stamp)?;
            one.raw_execute()?;
        }
    }
    Ok(())
}

/// The batch's address verdicts as rows to upsert: those with their own detail and MX, and the
/// dns-level ones whose detail and MX are their domain's.
fn rows_of(batch: &[Write]) -> (Vec<Row<'_>>, Vec<Row<'_>>) {
    let (mut rows, mut dns_rows): (Vec<Row>, Vec<Row>) = Default::default();
    for msg in batch {
        let Write::Verdicts { addresses, dns, .. } = msg else {
            continue;
        };
        rows.extend(addresses.iter().map(|r| Row {
            key: &r.key,
            reason: r.reason,
            detail: &r.detail,
            mx: r.mx.as_deref(),
            level: r.level,
            verified_at: r.verified_at,
            reply: r.reply.as_ref().map(|(code, text)| (*code, text.as_str())),
        }));
        for d in dns {
            dns_rows.extend(d.iter().map(|(key, reason)| Row {
                key,
                reason,
                detail: "",
                mx: None,
                level: Level::Dns,
                verified_at: d.verified_at(),
                reply: None,
            }));
        }
    }
    (rows, dns_rows)
}

pub(super) fn commit(
    store: &mut SqliteStore,
    batch: &[Write],
    stamp: &RunStamp,
    suppress_invalid: bool,
) -> Result<u64, StoreError> {
    let (path, waited) = (store.path.clone(), store.busy_timeout);
    let err = |e| store_error(&path, waited, e);
    let now = store.clock.now();
    let tx = store
        .conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err)?;
    let mut written = 0;
    {
        let mut suppress = tx
            .prepare_cached(
                "INSERT INTO suppressions (entry, reason, added_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT(entry) DO NOTHING",
            )
            .map_err(err)?;
        let mut upsert_domain = tx
            .prepare_cached(
                "INSERT INTO domain_verdicts (domain, reason, detail, mx, verified_at, options, run)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT(domain) DO UPDATE SET reason = excluded.reason,
                   detail = excluded.detail, mx = excluded.mx, verified_at = excluded.verified_at,
                   options = excluded.options, run = excluded.run
                 WHERE excluded.verified_at >= domain_verdicts.verified_at",
            )
            .map_err(err)?;
        let mut smtp_domain = tx
            .prepare_cached(
                "INSERT INTO smtp_domains (domain, verified_at) VALUES (?1, ?2)
                 ON CONFLICT(domain) DO UPDATE SET
                   verified_at = max(verified_at, excluded.verified_at)",
            )
            .map_err(err)?;
        let mut domain = tx
            .prepare_cached(
                "INSERT INTO domains (domain, server, catch_all, checked_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT(domain, server) DO UPDATE SET catch_all = excluded.catch_all, checked_at = excluded.checked_at",
            )
            .map_err(err)?;
        let (rows, dns_rows) = rows_of(batch);
        let mut smtp_marked = std::collections::HashSet::new();
        for r in rows.iter().chain(&dns_rows) {
            if r.level == Level::Smtp {
                let d = r.key.rsplit_once('@').map_or("", |(_, d)| d);
                if smtp_marked.insert(d) {
                    smtp_domain
                        .execute(params![d, r.verified_at])
                        .map_err(err)?;
                }
            }
            if suppress_invalid && permanent(r.reason) {
                suppress
                    .execute(params![
                        r.key,
                        format!("--suppress-invalid: {}", r.reason),
                        now
                    ])
                    .map_err(err)?;
            }
        }
        upsert_rows(&tx, Shape::Full, &rows, stamp).map_err(err)?;
        upsert_rows(&tx, Shape::Dns, &dns_rows, stamp).map_err(err)?;
        written += (rows.len() + dns_rows.len()) as u64;
        for msg in batch {
            match msg {
                Write::Verdicts { domains, .. } => {
                    for d in domains {
                        upsert_domain
                            .execute(params![
                                d.key,
                                d.reason.as_str(),
                                d.detail,
                                d.mx,
                                d.verified_at,
                                stamp.under.options_code(),
                                stamp.run
                            ])
                            .map_err(err)?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{Backend, DecidedUnder, DnsVerdicts, Record};

    fn stamp(run: i64) -> RunStamp {
        RunStamp {
            run,
            under: DecidedUnder::default(),
        }
    }

    fn record(key: &str, reason: Reason, level: Level, verified_at: i64) -> Record {
        Record {
            key: key.into(),
            reason,
            detail: format!("detail of {key}"),
            mx: Some("mx.test".into()),
            level,
            verified_at,
            reply: (level == Level::Smtp).then(|| (550, "5.1.1 no such user".into())),
        }
    }

    /// Many rows a statement and the rest one by one; an address twice in one commit keeps its
    /// last verdict; a verdict of an earlier run becomes the previous one.
    #[test]
    fn multi_row_upserts_keep_every_row_and_the_previous_verdict() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sqlite3");
        let mut store = SqliteStore::open(&path, crate::store::StoreAccess::default()).unwrap();
        // An earlier run's verdict of a@x.test.
        commit(
            &mut store,
            &[Write::Verdicts {
                addresses: vec![record("a@x.test", Reason::MailboxAccepted, Level::Smtp, 10)],
                dns: Vec::new(),
                domains: Vec::new(),
            }],
            &stamp(1),
            false,
        )
        .unwrap();
        let mut dns = DnsVerdicts::new(100);
        for i in 0..70 {
            dns.push(
                |k| k.push_str(&format!("u{i}@d.test")),
                Reason::DomainAcceptsMail,
            );
        }
        dns.push(|k| k.push_str("u3@d.test"), Reason::NoSuchDomain);
        let written = commit(
            &mut store,
            &[Write::Verdicts {
                addresses: vec![
                    record("a@x.test", Reason::MailboxNotFound, Level::Smtp, 100),
                    record("b@x.test", Reason::MailboxFull, Level::Smtp, 100),
                ],
                dns: vec![dns],
                domains: vec![Record {
                    key: "d.test".into(),
                    ..record("d.test", Reason::DomainAcceptsMail, Level::Dns, 100)
                }],
            }],
            &stamp(2),
            false,
        )
        .unwrap();
        assert_eq!(written, 73);
        let count: i64 = store
            .conn
            .query_row("SELECT count(*) FROM addresses", [], |r| r.get(0))
            .unwrap();
        assert_eq!(count, 72);
        let a = store.lookup("a@x.test").unwrap().unwrap();
        assert_eq!(
            (a.reason, a.detail.as_str(), a.level),
            (Reason::MailboxNotFound, "detail of a@x.test", Level::Smtp)
        );
        let prev = a.previous.unwrap();
        assert_eq!(
            (prev.reason, prev.verified_at),
            (Reason::MailboxAccepted, 10)
        );
        // The later of the two verdicts in one commit; its domain's detail does not fit it.
        let u3 = store.lookup("u3@d.test").unwrap().unwrap();
        assert_eq!((u3.reason, u3.detail.as_str()), (Reason::NoSuchDomain, ""));
        // A dns-level row reads its detail and MX from its domain's.
        let u4 = store.lookup("u4@d.test").unwrap().unwrap();
        assert_eq!(
            (u4.detail.as_str(), u4.mx.as_deref(), u4.verified_at),
            ("detail of d.test", Some("mx.test"), 100)
        );
        let marked: i64 = store
            .conn
            .query_row(
                "SELECT verified_at FROM smtp_domains WHERE domain = 'x.test'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(marked, 100);
    }
}
