//! Read stage: the input in chunks of rows, in order.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crossbeam_channel::Sender;

use crate::input::{Chunk, InputReader};

use super::{Failed, StageResult, StageStats};

/// Rows per chunk: large enough to amortise channel and rayon overhead, small enough that the
/// chunks in flight stay a few MB.
const CHUNK_ROWS: usize = 8192;

/// Reads until the input ends, Ctrl-C, or a failure anywhere in the run; the rows read.
pub(super) fn read_stage(
    mut reader: InputReader,
    output: Sender<Chunk>,
    interrupt: Option<Arc<AtomicBool>>,
    failed: &Failed,
) -> StageResult {
    let mut rows = 0;
    // Ctrl-C: read no further; what is in flight finishes.
    while !interrupt
        .as_ref()
        .is_some_and(|f| f.load(Ordering::Relaxed))
        && !failed.raised()
    {
        let mut chunk = match reader.next_chunk(CHUNK_ROWS) {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(e) => return Err(failed.raise(e.into())),
        };
        rows += chunk.len() as u64;
        chunk.input_end = reader.bytes_consumed();
        // A closed channel means a later stage failed; it reports why.
        if output.send(chunk).is_err() {
            break;
        }
    }
    Ok(StageStats { rows, cached: 0 })
}
