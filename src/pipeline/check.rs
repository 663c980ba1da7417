//! Check stage: every row's syntax evidence (rayon), and the answers the check threads can
//! give by themselves: suppressed rows and, at level dns over a store read whole, rows their
//! domain's stored verdict answers alone.

use rayon::prelude::*;
use tokio::sync::mpsc;

use crate::grouping::group_key;
use crate::input::{Chunk, Dialect};
use crate::model::Ragged;
use crate::syntax::{self, Address, SyntaxOptions};
use crate::verdict::{Evidence, Unreadable};

use super::cache::EarlyAnswers;
use super::{Checked, RowCheck, StageResult, StageStats};

/// What the check stage needs besides the chunks, the same for the whole run.
pub(super) struct CheckContext<'a> {
    pub(super) dialect: &'a Dialect,
    pub(super) syntax: SyntaxOptions,
    /// With --group-by: the group column.
    pub(super) group_column: Option<usize>,
    /// What the check threads answer rows from, if anything.
    pub(super) early: Option<&'a EarlyAnswers>,
}

/// Checks chunks until the input ends or a later stage stops; the rows checked and those
/// answered here from the store.
pub(super) fn check_stage(
    input: crossbeam_channel::Receiver<Chunk>,
    output: mpsc::Sender<Checked>,
    cx: &CheckContext,
    pool: &rayon::ThreadPool,
) -> StageResult {
    let mut stats = StageStats::default();
    for chunk in input {
        let (checked, hits) = pool.install(|| check_chunk(chunk, cx));
        stats.rows += checked.rows.len() as u64;
        stats.cached += hits;
        if output.blocking_send(checked).is_err() {
            break;
        }
    }
    Ok(stats)
}

/// Identity of a malformed address: its text, case-folded and marked so it never equals a
/// well-formed address's key, so repeats of one bad cell are flagged (and forecast) once.
fn malformed_identity_hash(text: &str) -> u64 {
    syntax::identity_hash_of(&format!("\u{0}{}", text.to_lowercase()))
}

/// The row's evidence, and how its shape differs from the header's.
fn gather_evidence(
    chunk: &Chunk,
    r: usize,
    dialect: &Dialect,
    opts: SyntaxOptions,
) -> (Evidence, Option<Ragged>) {
    if let Some(problem) = chunk.rows[r].problem {
        return (Evidence::Unreadable(Unreadable::Row(problem)), None);
    }
    let found = chunk.fields(r).len();
    // A record's cells are bounded by its bytes (MAX_RECORD_BYTES, a header's by
    // MAX_HEADER_BYTES): they fit.
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    let mut ragged = (found != dialect.width).then_some(Ragged {
        found: count(found),
        expected: count(dialect.width),
        shifted_to: None,
    });
    let check = |cell: Result<&str, std::str::Utf8Error>| match cell {
        Ok(text) => Evidence::Syntax(syntax::check(text, opts)),
        Err(e) => Evidence::Unreadable(Unreadable::NotUtf8 {
            valid_up_to: e.valid_up_to(),
        }),
    };
    let Some(cell) = chunk.field_text(r, dialect.email_column) else {
        return (Evidence::Unreadable(Unreadable::MissingEmailCell), ragged);
    };
    let evidence = check(cell);
    if let Some(shape) = &mut ragged
        && found > dialect.width
        && !matches!(evidence, Evidence::Syntax(Ok(_)))
        && let Some((column, moved)) = shifted_address(chunk, r, dialect.email_column, &check)
    {
        // An unquoted delimiter in a cell before the address pushed it right: the one cell
        // that holds an address is the address, and the detail says so.
        shape.shifted_to = Some(count(column));
        return (moved, ragged);
    }
    (evidence, ragged)
}

/// The only cell of the row, besides the email column's, that holds a well-formed address;
/// None when there is none or more than one (then there is nothing to go on).
fn shifted_address(
    chunk: &Chunk,
    r: usize,
    email_column: usize,
    check: &impl Fn(Result<&str, std::str::Utf8Error>) -> Evidence,
) -> Option<(usize, Evidence)> {
    let mut found = None;
    for (column, cell) in chunk.fields(r).enumerate() {
        // Cheap filter first: most cells of a row hold no '@'.
        if column == email_column || memchr::memchr(b'@', cell).is_none() {
            continue;
        }
        let Some(text) = chunk.field_text(r, column) else {
            continue;
        };
        let evidence = check(text);
        if matches!(evidence, Evidence::Syntax(Ok(_))) {
            if found.is_some() {
                return None;
            }
            found = Some((column, evidence));
        }
    }
    found
}

/// Every row's well-formed address, as the check stage reads it (a shifted row's moved cell
/// included), in input order, with the number of rows: what a distributed job queues. Reads
/// the list once, one chunk at a time.
pub(crate) fn well_formed_addresses(
    config: &crate::VerifyConfig,
    mut each: impl FnMut(crate::syntax::Address),
) -> Result<u64, crate::Error> {
    let (mut reader, dialect) =
        crate::input::InputReader::open(&config.input, &config.input_options)?;
    let mut rows = 0;
    while let Some(chunk) = reader.next_chunk(4096)? {
        for r in 0..chunk.len() {
            rows += 1;
            if let (Evidence::Syntax(Ok(address)), _) =
                gather_evidence(&chunk, r, &dialect, config.syntax)
            {
                each(address);
            }
        }
    }
    Ok(rows)
}

/// One chunk, in parallel; returns the rows answered from the store too.
fn check_chunk(chunk: Chunk, cx: &CheckContext) -> (Checked, u64) {
    let dialect = cx.dialect;
    let rows: Vec<RowCheck> = (0..chunk.len())
        .into_par_iter()
        .with_min_len(256)
        .map(|r| {
            let (mut evidence, ragged) = gather_evidence(&chunk, r, dialect, cx.syntax);
            let address_column = ragged
                .and_then(|s| s.shifted_column())
                .unwrap_or(dialect.email_column);
            let sendable = !matches!(
                evidence,
                Evidence::Unreadable(_) | Evidence::Syntax(Err(syntax::SyntaxError::Empty))
            );
            let dedup_hash = match &evidence {
                Evidence::Syntax(Err(_)) if sendable => chunk
                    .field_text(r, address_column)
                    .and_then(Result::ok)
                    .map(|text| malformed_identity_hash(syntax::normalize_input(text))),
                _ => evidence.address().map(Address::identity_hash),
            };
            let mut soft_bounced = None;
            if let Some(early) = cx.early {
                evidence = early.answer(evidence);
                soft_bounced = early.soft_bounced(&evidence);
            }
            RowCheck {
                evidence,
                sendable,
                dedup_hash,
                duplicate: false,
                // Provider groups are found after the DNS stage (format::Dedup).
                group_key: cx
                    .group_column
                    .filter(|&c| c != super::format::PROVIDER_GROUPING)
                    .map_or(0, |c| group_key(&chunk, r, c)),
                group: 0,
                cross_group: false,
                previous: None,
                ragged,
                soft_bounced,
            }
        })
        .collect();
    let hits = match cx.early {
        Some(early) => rows
            .iter()
            .filter(|row| match &row.evidence {
                Evidence::Stored { prior, .. } => {
                    early.job_run.is_none() || prior.run != early.job_run
                }
                _ => false,
            })
            .count() as u64,
        None => 0,
    };
    (Checked { chunk, rows }, hits)
}
