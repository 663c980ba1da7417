//! Read stage: the input in chunks of rows, in order.
//!
//! The reading itself happens on a thread of its own that the run does not wait for: a read
//! from a pipe, a terminal or a FIFO cannot be cancelled, and a stop request must not wait
//! for the writer at the other end (or for `/dev/zero` to end). The stage passes its chunks
//! on and stops at a request, a failure elsewhere, or the end of the input.

use std::sync::Arc;
use std::time::Duration;

use crossbeam_channel::{RecvTimeoutError, Sender, bounded};

use crate::Error;
use crate::input::{Chunk, InputReader};
use crate::interrupt::Interrupt;

use super::{Failed, StageResult, StageStats};

/// Rows per chunk: large enough to amortise channel and rayon overhead, small enough that the
/// few dozen chunks in flight (about 1 MB each with their checks: 136 bytes a row checked, 64
/// a row read, plus the bytes) stay well under the memory target. 8,192 cost 45 MB more at
/// 1M rows / 200k domains and was no faster (benches/memory_figures.sh).
const CHUNK_ROWS: usize = 4096;

/// How often the stage looks at the stop request while the input is silent.
const POLL: Duration = Duration::from_millis(50);

/// Reads until the input ends, a stop request, or a failure anywhere in the run; the rows
/// read.
pub(super) fn read_stage(
    reader: InputReader,
    output: Sender<Chunk>,
    interrupt: Option<Arc<Interrupt>>,
    failed: &Failed,
) -> StageResult {
    let chunks = spawn_reader(reader)?;
    let stopping = || interrupt.as_ref().is_some_and(|i| i.is_requested()) || failed.raised();
    let mut rows = 0;
    while !stopping() {
        let chunk = match chunks.recv_timeout(POLL) {
            Ok(Ok(Some(chunk))) => chunk,
            Ok(Ok(None)) => break,
            Ok(Err(e)) => return Err(failed.raise(e.into())),
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => {
                return Err(failed.raise(Error::Internal("the input reader stopped".into())));
            }
        };
        if stopping() {
            break;
        }
        rows += chunk.len() as u64;
        // A closed channel means a later stage failed; it reports why.
        if output.send(chunk).is_err() {
            break;
        }
    }
    Ok(StageStats { rows, cached: 0 })
}

type ReadResult = Result<Option<Chunk>, crate::input::InputError>;

/// The reading thread: one chunk ahead of the stage. It ends at the input's end, its first
/// error, or when the stage no longer listens; a read that never returns keeps it (and only
/// it) until the process exits.
fn spawn_reader(mut reader: InputReader) -> Result<crossbeam_channel::Receiver<ReadResult>, Error> {
    let (tx, rx) = bounded::<ReadResult>(1);
    std::thread::Builder::new()
        .name("prebounce-read".into())
        .spawn(move || {
            loop {
                let next = reader.next_chunk(CHUNK_ROWS).map(|chunk| {
                    chunk.map(|mut chunk| {
                        chunk.input_end = reader.bytes_consumed();
                        chunk
                    })
                });
                let last = !matches!(next, Ok(Some(_)));
                if tx.send(next).is_err() || last {
                    return;
                }
            }
        })
        .map_err(|e| Error::Internal(format!("cannot start the input thread: {e}")))?;
    Ok(rx)
}
