//! Wires the stages: a reader thread cuts the input into chunks, the syntax stage checks each
//! chunk's rows in parallel on rayon, and this thread deduplicates, counts and writes in input
//! order. Bounded channels between them keep memory flat whatever the input size.

use std::fmt::Write as _;
use std::hash::{BuildHasherDefault, Hasher};
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;

use crate::forecast::Forecast;
use crate::input::{Chunk, Dialect, InputError, InputReader};
use crate::output::summary::{InputShape, StatusCounts, Summary};
use crate::output::{ListWriters, prepare_out_dir};
use crate::syntax::{self, Flags, SyntaxOptions};
use crate::verdict::{self, Evidence, Status, Unreadable};
use crate::{Error, ProgressMode, VerifyConfig};

/// Rows per chunk: large enough to amortise channel and rayon overhead, small enough that the
/// chunks in flight stay a few MB.
const CHUNK_ROWS: usize = 4096;
/// Chunks in flight between two stages.
const CHANNEL_DEPTH: usize = 4;

/// One row, decided: everything the writer needs besides the original fields.
struct RowResult {
    status: Status,
    reason: verdict::Reason,
    detail: String,
    normalized: String,
    suggestion: Option<String>,
    flags: Flags,
    bounce_p: f64,
    /// Identity for duplicate detection (None when the row has no well-formed address).
    dedup_hash: Option<u64>,
}

/// Hash of the dedup key with fixed seeds: 64 bits keep the duplicate set at ~16 bytes an
/// address; a false "duplicate" needs a collision (≈ n²/2⁶⁵, 3·10⁻⁸ at a million addresses).
fn dedup_hash(key: &str) -> u64 {
    ahash::RandomState::with_seeds(0x5eed, 0xb0b, 0xdead, 0xbeef).hash_one(key)
}

/// The set stores hashes already: don't hash them again.
#[derive(Default)]
struct PassThroughHasher(u64);
impl Hasher for PassThroughHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}
type SeenSet = std::collections::HashSet<u64, BuildHasherDefault<PassThroughHasher>>;

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

fn decide_row(evidence: Evidence, config: &VerifyConfig) -> RowResult {
    let v = verdict::decide(&evidence);
    let (normalized, suggestion, flags, dedup) = match evidence {
        Evidence::Syntax(Ok(addr)) => {
            let key = dedup_hash(&addr.dedup_key());
            (addr.normalized(), addr.suggestion, addr.flags, Some(key))
        }
        _ => (String::new(), None, Flags::default(), None),
    };
    RowResult {
        bounce_p: config.priors.bounce_p(v.status, v.reason, flags),
        status: v.status,
        reason: v.reason,
        detail: v.detail,
        normalized,
        suggestion,
        flags,
        dedup_hash: dedup,
    }
}

fn analyse_chunk(chunk: &Chunk, dialect: &Dialect, config: &VerifyConfig) -> Vec<RowResult> {
    (0..chunk.len())
        .into_par_iter()
        .with_min_len(256)
        .map(|r| decide_row(gather_evidence(chunk, r, dialect, config.syntax), config))
        .collect()
}

/// Running totals over the written rows.
#[derive(Default)]
struct Tally {
    rows: u64,
    unique: u64,
    duplicates: u64,
    suggestions: u64,
    status: StatusCounts,
    flags: [u64; Flags::ALL.len()],
    forecast: Forecast,
}

/// Writes rows in input order and keeps the tallies.
struct RowWriter<'a> {
    lists: ListWriters,
    dialect: &'a Dialect,
    seen: SeenSet,
    tally: Tally,
    reason_counts: [u64; verdict::Reason::ALL.len()],
    // Reused formatting buffers: no allocation per row.
    detail: String,
    flags_text: String,
    p_text: String,
}

impl RowWriter<'_> {
    fn write_chunk(&mut self, chunk: &Chunk, results: Vec<RowResult>) -> Result<(), Error> {
        for (r, mut res) in results.into_iter().enumerate() {
            if let Some(h) = res.dedup_hash {
                if self.seen.insert(h) {
                    self.tally.unique += 1;
                } else {
                    res.flags.insert(Flags::DUPLICATE);
                    self.tally.duplicates += 1;
                }
            }
            self.count(&res);
            self.write_row(chunk, r, &res)?;
        }
        Ok(())
    }

    fn count(&mut self, res: &RowResult) {
        let t = &mut self.tally;
        t.rows += 1;
        t.status.add(res.status);
        let ri = verdict::Reason::ALL
            .iter()
            .position(|r| *r == res.reason)
            .unwrap_or(0);
        self.reason_counts[ri] += 1;
        for (i, (flag, _)) in Flags::ALL.iter().enumerate() {
            if res.flags.contains(*flag) {
                t.flags[i] += 1;
            }
        }
        if res.suggestion.is_some() {
            t.suggestions += 1;
        }
        t.forecast.add(res.status, res.reason, res.flags, res.bounce_p);
    }

    fn write_row(&mut self, chunk: &Chunk, r: usize, res: &RowResult) -> Result<(), Error> {
        let width = self.dialect.width;
        let fields = chunk.fields(r);
        let found = fields.len();
        self.detail.clear();
        self.detail.push_str(&res.detail);
        if found > width {
            // Keep the extra cells' bytes in the detail rather than shifting the columns.
            let extra: Vec<String> = chunk
                .fields(r)
                .skip(width)
                .map(|f| String::from_utf8_lossy(f).into_owned())
                .collect();
            let _ = write!(self.detail, "; cells beyond column {width}: {}", extra.join(" | "));
        }
        self.flags_text.clear();
        let _ = write!(self.flags_text, "{}", res.flags);
        self.p_text.clear();
        let _ = write!(self.p_text, "{:.4}", res.bounce_p);
        let padding = width.saturating_sub(found);
        let original = chunk.fields(r).take(width);
        let appended: [&[u8]; 7] = [
            res.status.as_str().as_bytes(),
            res.reason.as_str().as_bytes(),
            self.detail.as_bytes(),
            res.normalized.as_bytes(),
            res.suggestion.as_deref().unwrap_or("").as_bytes(),
            self.flags_text.as_bytes(),
            self.p_text.as_bytes(),
        ];
        let row = original
            .chain(std::iter::repeat_n(&b""[..], padding))
            .chain(appended);
        self.lists.write(res.status, row)?;
        Ok(())
    }
}

/// Progress on stderr: bytes of the input when its size is known, rows otherwise.
fn progress_bar(mode: ProgressMode, total_bytes: Option<u64>) -> ProgressBar {
    let visible = match mode {
        ProgressMode::Always => true,
        ProgressMode::Never => false,
        ProgressMode::Auto => std::io::stderr().is_terminal(),
    };
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = match total_bytes {
        Some(total) => ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr()).with_style(
            ProgressStyle::with_template("{spinner} {bar:30} {bytes}/{total_bytes} · {msg} · ETA {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        ),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
            ProgressStyle::with_template("{spinner} {bytes} read · {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    };
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

pub(crate) fn run(config: &VerifyConfig) -> Result<Summary, Error> {
    let started = Instant::now();
    let (mut reader, dialect) = InputReader::open(&config.input, &config.input_options)?;
    prepare_out_dir(&config.out_dir, config.force)?;
    let lists = ListWriters::create(&config.out_dir, dialect.delimiter, &dialect.header)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(config.threads.unwrap_or(0))
        .thread_name(|i| format!("prebounce-syntax-{i}"))
        .build()
        .map_err(|e| Error::Internal(format!("cannot start worker threads: {e}")))?;
    let bar = progress_bar(config.progress, reader.total_bytes);
    let bytes_read = Arc::new(AtomicU64::new(0));

    let mut writer = RowWriter {
        lists,
        dialect: &dialect,
        seen: SeenSet::default(),
        tally: Tally::default(),
        reason_counts: Default::default(),
        detail: String::new(),
        flags_text: String::new(),
        p_text: String::new(),
    };

    thread::scope(|scope| -> Result<(), Error> {
        let (chunk_tx, chunk_rx) = bounded::<Result<Chunk, InputError>>(CHANNEL_DEPTH);
        let (done_tx, done_rx) = bounded::<Result<(Chunk, Vec<RowResult>), InputError>>(CHANNEL_DEPTH);
        let bytes = Arc::clone(&bytes_read);
        thread::Builder::new()
            .name("prebounce-read".into())
            .spawn_scoped(scope, move || {
                loop {
                    let next = reader.next_chunk(CHUNK_ROWS);
                    bytes.store(reader.bytes_consumed(), Ordering::Relaxed);
                    let stop = !matches!(next, Ok(Some(_)));
                    let msg = match next {
                        Ok(Some(c)) => Ok(c),
                        Ok(None) => break,
                        Err(e) => Err(e),
                    };
                    // A closed channel means the writer failed; it reports why.
                    if chunk_tx.send(msg).is_err() || stop {
                        break;
                    }
                }
            })
            .map_err(|e| Error::Internal(format!("cannot start the reader thread: {e}")))?;
        let dialect_ref = &dialect;
        let pool_ref = &pool;
        thread::Builder::new()
            .name("prebounce-stage".into())
            .spawn_scoped(scope, move || {
                for msg in chunk_rx {
                    let out = msg.map(|chunk| {
                        let results = pool_ref.install(|| analyse_chunk(&chunk, dialect_ref, config));
                        (chunk, results)
                    });
                    if done_tx.send(out).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| Error::Internal(format!("cannot start the syntax thread: {e}")))?;
        for msg in done_rx {
            let (chunk, results) = msg?;
            writer.write_chunk(&chunk, results)?;
            bar.set_position(bytes_read.load(Ordering::Relaxed));
            bar.set_message(format!("{} rows", crate::output::summary::thousands(writer.tally.rows)));
        }
        Ok(())
    })?;
    bar.finish_and_clear();

    let RowWriter {
        lists,
        tally,
        reason_counts,
        ..
    } = writer;
    let mut reasons = std::collections::BTreeMap::new();
    for (r, n) in verdict::Reason::ALL.iter().zip(reason_counts) {
        if n > 0 {
            reasons.insert(r.as_str().to_owned(), n);
        }
    }
    let flags = Flags::ALL
        .iter()
        .zip(tally.flags)
        .map(|((_, name), n)| ((*name).to_owned(), n))
        .collect();
    let email_column = dialect
        .header
        .get(dialect.email_column)
        .map(|h| String::from_utf8_lossy(h).into_owned())
        .unwrap_or_default();
    let summary = Summary {
        prebounce_version: env!("CARGO_PKG_VERSION"),
        level: config.level.as_str().to_owned(),
        rows: tally.rows,
        unique_addresses: tally.unique,
        duplicates: tally.duplicates,
        status: tally.status,
        reasons,
        flags,
        suggestions: tally.suggestions,
        predicted_bounce_rate: tally.forecast.result(),
        priors: config.priors.source.clone(),
        input: InputShape {
            path: config.input.describe(),
            delimiter: match dialect.delimiter {
                b'\t' => "\\t".to_owned(),
                d => (d as char).to_string(),
            },
            has_header: dialect.has_header,
            email_column,
            columns: dialect.width,
        },
        output_dir: config.out_dir.display().to_string(),
        elapsed_seconds: started.elapsed().as_secs_f64(),
    };
    let json = serde_json::to_vec_pretty(&summary).map_err(|e| Error::Internal(e.to_string()))?;
    lists.commit(&json)?;
    Ok(summary)
}
