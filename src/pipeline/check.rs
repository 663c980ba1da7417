//! Check stage: every row's syntax evidence (rayon), and the answers the check threads can
//! give by themselves: suppressed rows and, at level dns over a store read whole, rows their
//! domain's stored verdict answers alone.

use rayon::prelude::*;
use tokio::sync::mpsc;

use crate::grouping::group_key;
use crate::input::{Chunk, Dialect};
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

fn gather_evidence(chunk: &Chunk, r: usize, dialect: &Dialect, opts: SyntaxOptions) -> Evidence {
    if let Some(problem) = chunk.rows[r].problem {
        return Evidence::Unreadable(Unreadable::Row(problem));
    }
    let Some(cell) = chunk.field(r, dialect.email_column) else {
        return Evidence::Unreadable(Unreadable::MissingEmailCell);
    };
    match std::str::from_utf8(cell) {
        Ok(text) => Evidence::Syntax(syntax::check(text, opts)),
        Err(e) => Evidence::Unreadable(Unreadable::NotUtf8 {
            valid_up_to: e.valid_up_to(),
        }),
    }
}

/// One chunk, in parallel; returns the rows answered from the store too.
fn check_chunk(chunk: Chunk, cx: &CheckContext) -> (Checked, u64) {
    let dialect = cx.dialect;
    let rows: Vec<RowCheck> = (0..chunk.len())
        .into_par_iter()
        .with_min_len(256)
        .map(|r| {
            let mut evidence = gather_evidence(&chunk, r, dialect, cx.syntax);
            let sendable = !matches!(
                evidence,
                Evidence::Unreadable(_) | Evidence::Syntax(Err(syntax::SyntaxError::Empty))
            );
            let dedup_hash = match &evidence {
                Evidence::Syntax(Err(_)) if sendable => chunk
                    .field(r, dialect.email_column)
                    .and_then(|c| std::str::from_utf8(c).ok())
                    .map(|text| malformed_identity_hash(syntax::normalize_input(text))),
                _ => evidence.address().map(Address::identity_hash),
            };
            if let Some(early) = cx.early {
                evidence = early.answer(evidence);
            }
            RowCheck {
                evidence,
                sendable,
                dedup_hash,
                duplicate: false,
                group_key: cx.group_column.map_or(0, |c| group_key(&chunk, r, c)),
                group: 0,
                cross_group: false,
                previous: None,
            }
        })
        .collect();
    let hits = match cx.early {
        Some(_) => rows
            .iter()
            .filter(|row| matches!(row.evidence, Evidence::Stored { .. }))
            .count() as u64,
        None => 0,
    };
    (Checked { chunk, rows }, hits)
}
