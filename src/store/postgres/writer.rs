//! The PostgreSQL backend's writes: each table's rows of a batch in one statement, sent as
//! arrays (`unnest`), so a commit of 50,000 verdicts is a handful of round trips.
//!
//! Rows are sorted by key before they are written: two runs committing overlapping rows then
//! lock them in the same order and wait for each other instead of deadlocking. PostgreSQL
//! refuses an upsert that touches one row twice, so each key is written once, with the verdict
//! the SQLite backend would have left (the last one of the batch).

use std::borrow::Cow;
use std::collections::BTreeMap;

use postgres::Transaction;

use super::text;
use crate::model::smtp::CatchAll;
use crate::model::{Level, Reason};
use crate::store::codes::level_index;
use crate::store::writer::permanent;
use crate::store::{RunStamp, StoredBounce, Write};

/// One address row to write.
struct Row<'a> {
    reason: Reason,
    detail: Cow<'a, str>,
    mx: Option<Cow<'a, str>>,
    level: Level,
    verified_at: i64,
    reply: Option<(u16, Cow<'a, str>)>,
}

const UPSERT_ADDRESSES: &str = "
INSERT INTO prebounce.addresses AS a (key, status, reason, detail, level, verified_at, mx,
    reply_code, reply_text, options, sender, run)
SELECT u.key, u.status, u.reason, u.detail, u.level, u.verified_at, u.mx, u.reply_code,
    u.reply_text, $10::text, CASE WHEN u.level = 2 THEN $11::text END, $12::int8
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int2[], $6::int8[],
    $7::text[], $8::int4[], $9::text[])
    AS u(key, status, reason, detail, level, verified_at, mx, reply_code, reply_text)
ON CONFLICT (key) DO UPDATE SET
    prev_status = CASE WHEN a.run IS DISTINCT FROM excluded.run THEN a.status
        ELSE a.prev_status END,
    prev_reason = CASE WHEN a.run IS DISTINCT FROM excluded.run THEN a.reason
        ELSE a.prev_reason END,
    prev_verified_at = CASE WHEN a.run IS DISTINCT FROM excluded.run THEN a.verified_at
        ELSE a.prev_verified_at END,
    status = excluded.status, reason = excluded.reason, detail = excluded.detail,
    level = excluded.level, verified_at = excluded.verified_at, mx = excluded.mx,
    reply_code = excluded.reply_code, reply_text = excluded.reply_text,
    options = excluded.options, sender = excluded.sender, run = excluded.run";

/// Commit a batch of the store writer's messages (see `Backend::commit`) in `tx`.
pub(super) fn commit(
    tx: &mut Transaction<'_>,
    batch: &[Write],
    stamp: &RunStamp,
    suppress_invalid: bool,
    now: i64,
) -> Result<u64, postgres::Error> {
    let mut rows: Vec<(&str, Row)> = Vec::new();
    for msg in batch {
        let Write::Verdicts { addresses, dns, .. } = msg else {
            continue;
        };
        rows.extend(addresses.iter().map(|r| {
            let row = Row {
                reason: r.reason,
                detail: text(&r.detail),
                mx: r.mx.as_deref().map(text),
                level: r.level,
                verified_at: r.verified_at,
                reply: r.reply.as_ref().map(|(code, t)| (*code, text(t))),
            };
            (r.key.as_str(), row)
        }));
        for d in dns {
            rows.extend(d.iter().map(|(key, reason)| {
                let row = Row {
                    reason,
                    detail: Cow::Borrowed(""),
                    mx: None,
                    level: Level::Dns,
                    verified_at: d.verified_at(),
                    reply: None,
                };
                (key, row)
            }));
        }
    }
    let written = rows.len() as u64;
    let mut smtp_domains: BTreeMap<&str, i64> = BTreeMap::new();
    let mut suppress: BTreeMap<&str, String> = BTreeMap::new();
    let mut addresses: BTreeMap<&str, Row> = BTreeMap::new();
    for (key, row) in rows {
        if row.level == Level::Smtp {
            let d = key.rsplit_once('@').map_or("", |(_, d)| d);
            let at = smtp_domains.entry(d).or_insert(row.verified_at);
            *at = (*at).max(row.verified_at);
        }
        if suppress_invalid && permanent(row.reason) {
            suppress
                .entry(key)
                .or_insert_with(|| format!("--suppress-invalid: {}", row.reason));
        }
        addresses.insert(key, row);
    }
    upsert_addresses(tx, &addresses, stamp)?;
    if !smtp_domains.is_empty() {
        let (domains, at): (Vec<&str>, Vec<i64>) = smtp_domains.into_iter().unzip();
        tx.execute(
            "INSERT INTO prebounce.smtp_domains (domain, verified_at)
             SELECT * FROM unnest($1::text[], $2::int8[])
             ON CONFLICT (domain) DO UPDATE SET
               verified_at = greatest(smtp_domains.verified_at, excluded.verified_at)",
            &[&domains, &at],
        )?;
    }
    if !suppress.is_empty() {
        let (keys, reasons): (Vec<Cow<str>>, Vec<Cow<str>>) = suppress
            .into_iter()
            .map(|(k, r)| (Cow::Borrowed(k), Cow::Owned(r)))
            .unzip();
        insert_suppressions(tx, &keys, &reasons, now)?;
    }
    upsert_domain_verdicts(tx, batch, stamp)?;
    upsert_catch_all(tx, batch, now)?;
    Ok(written)
}

fn upsert_addresses(
    tx: &mut Transaction<'_>,
    rows: &BTreeMap<&str, Row>,
    stamp: &RunStamp,
) -> Result<(), postgres::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let keys: Vec<&str> = rows.keys().copied().collect();
    let statuses: Vec<&str> = rows.values().map(|r| r.reason.status().as_str()).collect();
    let reasons: Vec<&str> = rows.values().map(|r| r.reason.as_str()).collect();
    let details: Vec<&str> = rows.values().map(|r| r.detail.as_ref()).collect();
    let levels: Vec<i16> = rows.values().map(|r| level_index(r.level) as i16).collect();
    let at: Vec<i64> = rows.values().map(|r| r.verified_at).collect();
    let mx: Vec<Option<&str>> = rows.values().map(|r| r.mx.as_deref()).collect();
    let codes: Vec<Option<i32>> = rows
        .values()
        .map(|r| r.reply.as_ref().map(|(c, _)| i32::from(*c)))
        .collect();
    let texts: Vec<Option<&str>> = rows
        .values()
        .map(|r| r.reply.as_ref().map(|(_, t)| t.as_ref()))
        .collect();
    let options = stamp.under.options_code();
    let sender = stamp.under.sender.as_deref().map(text);
    tx.execute(
        UPSERT_ADDRESSES,
        &[
            &keys,
            &statuses,
            &reasons,
            &details,
            &levels,
            &at,
            &mx,
            &codes,
            &texts,
            &options,
            &sender.as_deref(),
            &stamp.run,
        ],
    )?;
    Ok(())
}

/// Each domain's dns-level verdict; of two for one domain in a batch, the later (the last of
/// equal times), and never one older than the stored verdict.
fn upsert_domain_verdicts(
    tx: &mut Transaction<'_>,
    batch: &[Write],
    stamp: &RunStamp,
) -> Result<(), postgres::Error> {
    let mut latest: BTreeMap<&str, &crate::store::Record> = BTreeMap::new();
    for msg in batch {
        if let Write::Verdicts { domains, .. } = msg {
            for d in domains {
                let kept = latest.entry(&d.key).or_insert(d);
                if d.verified_at >= kept.verified_at {
                    *kept = d;
                }
            }
        }
    }
    if latest.is_empty() {
        return Ok(());
    }
    let keys: Vec<&str> = latest.keys().copied().collect();
    let reasons: Vec<&str> = latest.values().map(|d| d.reason.as_str()).collect();
    let details: Vec<Cow<str>> = latest.values().map(|d| text(&d.detail)).collect();
    let details: Vec<&str> = details.iter().map(AsRef::as_ref).collect();
    let mx: Vec<Option<Cow<str>>> = latest.values().map(|d| d.mx.as_deref().map(text)).collect();
    let mx: Vec<Option<&str>> = mx.iter().map(|m| m.as_deref()).collect();
    let at: Vec<i64> = latest.values().map(|d| d.verified_at).collect();
    tx.execute(
        "INSERT INTO prebounce.domain_verdicts AS d
           (domain, reason, detail, mx, verified_at, options, run)
         SELECT u.domain, u.reason, u.detail, u.mx, u.verified_at, $6::text, $7::int8
         FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::int8[])
           AS u(domain, reason, detail, mx, verified_at)
         ON CONFLICT (domain) DO UPDATE SET reason = excluded.reason,
           detail = excluded.detail, mx = excluded.mx, verified_at = excluded.verified_at,
           options = excluded.options, run = excluded.run
         WHERE excluded.verified_at >= d.verified_at",
        &[
            &keys,
            &reasons,
            &details,
            &mx,
            &at,
            &stamp.under.options_code(),
            &stamp.run,
        ],
    )?;
    Ok(())
}

/// Catch-all verdicts by (domain, server); the last of a batch for each.
fn upsert_catch_all(
    tx: &mut Transaction<'_>,
    batch: &[Write],
    now: i64,
) -> Result<(), postgres::Error> {
    let mut verdicts: BTreeMap<(&str, String), &str> = BTreeMap::new();
    for msg in batch {
        if let Write::CatchAll { domain, servers } = msg {
            for (ip, catch_all) in servers {
                let c = match catch_all {
                    CatchAll::Yes => "yes",
                    CatchAll::No => "no",
                    CatchAll::Undetermined => continue,
                };
                verdicts.insert((domain.as_str(), ip.to_string()), c);
            }
        }
    }
    if verdicts.is_empty() {
        return Ok(());
    }
    let domains: Vec<&str> = verdicts.keys().map(|(d, _)| *d).collect();
    let servers: Vec<&str> = verdicts.keys().map(|(_, s)| s.as_str()).collect();
    let values: Vec<&str> = verdicts.values().copied().collect();
    tx.execute(
        "INSERT INTO prebounce.domains (domain, server, catch_all, checked_at)
         SELECT u.domain, u.server, u.catch_all, $4::int8
         FROM unnest($1::text[], $2::text[], $3::text[]) AS u(domain, server, catch_all)
         ON CONFLICT (domain, server) DO UPDATE SET catch_all = excluded.catch_all,
           checked_at = excluded.checked_at",
        &[&domains, &servers, &values, &now],
    )?;
    Ok(())
}

/// Add the suppression entries not listed yet (a listed one keeps its reason); how many were
/// added.
pub(super) fn insert_suppressions(
    tx: &mut Transaction<'_>,
    entries: &[Cow<str>],
    reasons: &[Cow<str>],
    at: i64,
) -> Result<u64, postgres::Error> {
    if entries.is_empty() {
        return Ok(0);
    }
    let entries: Vec<&str> = entries.iter().map(AsRef::as_ref).collect();
    let reasons: Vec<&str> = reasons.iter().map(AsRef::as_ref).collect();
    tx.execute(
        "INSERT INTO prebounce.suppressions (entry, reason, added_at)
         SELECT u.entry, u.reason, $3::int8
         FROM unnest($1::text[], $2::text[]) AS u(entry, reason)
         ORDER BY u.entry
         ON CONFLICT (entry) DO NOTHING",
        &[&entries, &reasons, &at],
    )
}

/// Store bounce records not stored yet; how many were new.
pub(super) fn insert_bounces(
    tx: &mut Transaction<'_>,
    rows: &[StoredBounce],
    at: i64,
) -> Result<u64, postgres::Error> {
    if rows.is_empty() {
        return Ok(0);
    }
    let opt = |s: &Option<String>| s.as_deref().map(|s| text(s).into_owned());
    let source_key: Vec<String> = rows.iter().map(|b| text(&b.source_key).into()).collect();
    let recipient: Vec<String> = rows.iter().map(|b| text(&b.recipient).into()).collect();
    let event_at: Vec<i64> = rows.iter().map(|b| b.event_at).collect();
    let dated: Vec<bool> = rows.iter().map(|b| b.dated).collect();
    let kind: Vec<&str> = rows.iter().map(|b| b.kind.as_str()).collect();
    let reason: Vec<Option<String>> = rows.iter().map(|b| opt(&b.reason)).collect();
    let counts_soft: Vec<bool> = rows.iter().map(|b| b.counts_soft).collect();
    let status: Vec<Option<String>> = rows.iter().map(|b| opt(&b.status)).collect();
    let reply_code: Vec<Option<i32>> = rows.iter().map(|b| b.reply_code.map(i32::from)).collect();
    let diagnostic: Vec<Option<String>> = rows.iter().map(|b| opt(&b.diagnostic)).collect();
    let source: Vec<String> = rows.iter().map(|b| text(&b.source).into()).collect();
    let message_id: Vec<Option<String>> = rows.iter().map(|b| opt(&b.message_id)).collect();
    let remote_mta: Vec<Option<String>> = rows.iter().map(|b| opt(&b.remote_mta)).collect();
    let action: Vec<&str> = rows.iter().map(|b| b.action.as_str()).collect();
    tx.execute(
        "INSERT INTO prebounce.bounces (source_key, recipient, event_at, dated, kind, reason,
             counts_soft, status, reply_code, diagnostic, source, message_id, imported_at,
             remote_mta, action)
         SELECT u.source_key, u.recipient, u.event_at, u.dated, u.kind, u.reason,
             u.counts_soft, u.status, u.reply_code, u.diagnostic, u.source, u.message_id,
             $15::int8, u.remote_mta, u.action
         FROM unnest($1::text[], $2::text[], $3::int8[], $4::bool[], $5::text[], $6::text[],
             $7::bool[], $8::text[], $9::int4[], $10::text[], $11::text[], $12::text[],
             $13::text[], $14::text[])
           AS u(source_key, recipient, event_at, dated, kind, reason, counts_soft, status,
             reply_code, diagnostic, source, message_id, remote_mta, action)
         ORDER BY u.source_key, u.recipient
         ON CONFLICT (source_key, recipient) DO NOTHING",
        &[
            &source_key,
            &recipient,
            &event_at,
            &dated,
            &kind,
            &reason,
            &counts_soft,
            &status,
            &reply_code,
            &diagnostic,
            &source,
            &message_id,
            &remote_mta,
            &action,
            &at,
        ],
    )
}
