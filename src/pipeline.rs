//! Wires the stages. A reader thread cuts the input into chunks; a stage thread checks each
//! chunk's rows in parallel on rayon, marks repeats in input order, and serialises the output rows
//! in parallel; this thread only appends the bytes to the four lists. Bounded channels between
//! the threads keep memory flat whatever the input size.

use std::fmt::Write as _;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::bounded;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;

use crate::forecast::{Forecast, PriorTable};
use crate::input::{Chunk, Dialect, InputError, InputReader};
use crate::output::summary::{InputShape, StatusCounts, Summary, thousands};
use crate::output::{FieldEncoder, ListWriters, prepare_out_dir};
use crate::syntax::{self, Address, DomainFacts, Flags, SyntaxOptions};
use crate::verdict::{self, Evidence, Reason, Status, Unreadable};
use crate::{Error, ProgressMode, VerifyConfig};

/// Rows per chunk: large enough to amortise channel and rayon overhead, small enough that the
/// chunks in flight stay a few MB.
const CHUNK_ROWS: usize = 8192;
/// Rows serialised by one rayon task.
const SERIALIZE_BATCH: usize = 1024;
/// Chunks in flight between two stages.
const CHANNEL_DEPTH: usize = 4;

/// One row, decided: everything the output needs besides the original fields.
struct RowResult {
    status: Status,
    reason: Reason,
    detail: std::borrow::Cow<'static, str>,
    normalized: String,
    /// The address's domain facts (its typo suggestion), shared with every row at the domain.
    domain: Option<Arc<DomainFacts>>,
    flags: Flags,
    bounce_p: f64,
    /// Identity for duplicate detection (None when the row has no well-formed address).
    dedup_hash: Option<u64>,
}

impl RowResult {
    fn suggestion(&self) -> Option<&str> {
        self.domain.as_ref().and_then(|d| d.suggestion.as_deref())
    }
}

const DEDUP_SEEDS: (u64, u64, u64, u64) = (0x5eed, 0xb0b, 0xdead, 0xbeef);

/// Hash of the address's identity (local part case-folded) with fixed seeds, built without
/// allocating. 64 bits keep the duplicate set at ~16 bytes an address; a false "duplicate" needs
/// a collision (≈ n²/2⁶⁵: 3·10⁻⁸ at a million addresses).
fn dedup_hash(addr: &Address) -> u64 {
    let (a, b, c, d) = DEDUP_SEEDS;
    let mut h = ahash::RandomState::with_seeds(a, b, c, d).build_hasher();
    if addr.local.is_ascii() {
        let mut buf = [0u8; 64];
        let local = addr.local.as_bytes();
        for (dst, src) in buf.iter_mut().zip(local) {
            *dst = src.to_ascii_lowercase();
        }
        h.write(&buf[..local.len().min(64)]);
    } else {
        h.write(addr.local.to_lowercase().as_bytes());
    }
    h.write_u8(b'@');
    h.write(addr.domain_ascii().as_bytes());
    h.finish()
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

fn decide_row(evidence: Evidence, priors: &PriorTable) -> RowResult {
    let v = verdict::decide(&evidence);
    let (normalized, domain, flags, dedup) = match evidence {
        Evidence::Syntax(Ok(addr)) => {
            let key = dedup_hash(&addr);
            (addr.normalized(), Some(addr.domain), addr.flags, Some(key))
        }
        _ => (String::new(), None, Flags::default(), None),
    };
    RowResult {
        bounce_p: priors.bounce_p(v.reason, flags),
        status: v.status,
        reason: v.reason,
        detail: v.detail,
        normalized,
        domain,
        flags,
        dedup_hash: dedup,
    }
}

/// Running totals; per batch in parallel, merged in order.
#[derive(Default)]
struct Tally {
    rows: u64,
    unique: u64,
    duplicates: u64,
    suggestions: u64,
    status: StatusCounts,
    reasons: [u64; Reason::ALL.len()],
    flags: [u64; Flags::ALL.len()],
    forecast: Forecast,
}

impl Tally {
    fn count(&mut self, res: &RowResult) {
        self.rows += 1;
        self.status.add(res.status);
        self.reasons[res.reason.index()] += 1;
        for (i, (flag, _)) in Flags::ALL.iter().enumerate() {
            if res.flags.contains(*flag) {
                self.flags[i] += 1;
            }
        }
        if res.dedup_hash.is_some() {
            if res.flags.contains(Flags::DUPLICATE) {
                self.duplicates += 1;
            } else {
                self.unique += 1;
            }
        }
        if res.suggestion().is_some() {
            self.suggestions += 1;
        }
        self.forecast
            .add(res.status, res.reason, res.flags, res.bounce_p);
    }

    fn merge(&mut self, o: &Tally) {
        self.rows += o.rows;
        self.unique += o.unique;
        self.duplicates += o.duplicates;
        self.suggestions += o.suggestions;
        self.status.merge(&o.status);
        for (a, b) in self.reasons.iter_mut().zip(o.reasons) {
            *a += b;
        }
        for (a, b) in self.flags.iter_mut().zip(o.flags) {
            *a += b;
        }
        self.forecast.merge(&o.forecast);
    }
}

/// Output rows of one batch, one buffer per list, plus the batch's tallies.
struct Serialized {
    lists: [Vec<u8>; 4],
    tally: Tally,
}

/// The appended cells that come from a small fixed set, encoded once per run.
struct RowFormat {
    encoder: FieldEncoder,
    /// `<delim>status<delim>reason`, by reason index.
    status_and_reason: Vec<Vec<u8>>,
    /// `<delim>flags`, by flag bits.
    flags: Vec<Vec<u8>>,
}

impl RowFormat {
    fn new(delimiter: u8) -> Self {
        let encoder = FieldEncoder::new(delimiter);
        let cells = |parts: &[&str]| {
            let mut out = Vec::new();
            for p in parts {
                out.push(delimiter);
                encoder.push(&mut out, p.as_bytes());
            }
            out
        };
        let status_and_reason = Reason::ALL
            .iter()
            .map(|r| cells(&[r.status().as_str(), r.as_str()]))
            .collect();
        let flags = (0..=Flags::MAX_BITS)
            .map(|b| cells(&[Flags::from_bits(b).as_str()]))
            .collect();
        RowFormat {
            encoder,
            status_and_reason,
            flags,
        }
    }
}

/// Format rows `first..first+results.len()` of `chunk`: original cells as parsed (padded when
/// short, extras moved into the detail) followed by the prebounce columns.
fn serialize_batch(
    chunk: &Chunk,
    first: usize,
    results: &[RowResult],
    dialect: &Dialect,
    fmt: &RowFormat,
) -> Serialized {
    let (width, delim) = (dialect.width, dialect.delimiter);
    let enc = &fmt.encoder;
    let mut lists: [Vec<u8>; 4] = Default::default();
    let mut tally = Tally::default();
    let mut detail = String::new();
    // Probabilities repeat across rows (one per reason and flag floor): format each once.
    let mut p_texts: Vec<(u64, String)> = Vec::new();
    for (i, res) in results.iter().enumerate() {
        let r = first + i;
        tally.count(res);
        let found = chunk.fields(r).len();
        detail.clear();
        detail.push_str(&res.detail);
        if found > width {
            // Keep the extra cells' bytes in the detail rather than shifting the columns.
            let extra: Vec<String> = chunk
                .fields(r)
                .skip(width)
                .map(|f| String::from_utf8_lossy(f).into_owned())
                .collect();
            let _ = write!(
                detail,
                "; cells beyond column {width}: {}",
                extra.join(" | ")
            );
        }
        let bits = res.bounce_p.to_bits();
        let k = match p_texts.iter().position(|(b, _)| *b == bits) {
            Some(k) => k,
            None => {
                p_texts.push((bits, format!("{:.4}", res.bounce_p)));
                p_texts.len() - 1
            }
        };
        let p_text = p_texts[k].1.as_str();

        let out = &mut lists[res.status.index()];
        match chunk.raw(r) {
            // A quote-free row of the right width is already its own CSV encoding.
            Some(raw) if found == width => out.extend_from_slice(raw),
            _ => {
                let padding = std::iter::repeat_n(&b""[..], width.saturating_sub(found));
                for (k, cell) in chunk.fields(r).take(width).chain(padding).enumerate() {
                    if k > 0 {
                        out.push(delim);
                    }
                    enc.push(out, cell);
                }
            }
        }
        out.extend_from_slice(&fmt.status_and_reason[res.reason.index()]);
        for cell in [
            detail.as_bytes(),
            res.normalized.as_bytes(),
            res.suggestion().unwrap_or("").as_bytes(),
        ] {
            out.push(delim);
            enc.push(out, cell);
        }
        out.extend_from_slice(&fmt.flags[res.flags.bits() as usize]);
        out.push(delim);
        enc.push(out, p_text.as_bytes());
        out.push(b'\n');
    }
    Serialized { lists, tally }
}

/// Checked rows of one chunk, waiting for duplicate marking and serialisation.
struct Checked {
    chunk: Chunk,
    results: Vec<RowResult>,
}

/// Stage 1, parallel: evidence and verdict for every row of a chunk.
fn check_chunk(
    chunk: Chunk,
    dialect: &Dialect,
    config: &VerifyConfig,
    priors: &PriorTable,
) -> Checked {
    let results = (0..chunk.len())
        .into_par_iter()
        .with_min_len(256)
        .map(|r| decide_row(gather_evidence(&chunk, r, dialect, config.syntax), priors))
        .collect();
    Checked { chunk, results }
}

/// Stage 2: mark repeats (in input order, sequentially: cheap), then serialise in parallel.
fn finish_chunk(
    checked: &mut Checked,
    dialect: &Dialect,
    fmt: &RowFormat,
    seen: &mut SeenSet,
) -> Vec<Serialized> {
    for res in &mut checked.results {
        if let Some(h) = res.dedup_hash {
            if !seen.insert(h) {
                res.flags.insert(Flags::DUPLICATE);
            }
        }
    }
    let chunk = &checked.chunk;
    checked
        .results
        .par_chunks(SERIALIZE_BATCH)
        .enumerate()
        .map(|(b, batch)| serialize_batch(chunk, b * SERIALIZE_BATCH, batch, dialect, fmt))
        .collect()
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
        Some(total) => ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
            .with_style(
                ProgressStyle::with_template(
                    "{spinner} {bar:30} {bytes}/{total_bytes} · {msg} · ETA {eta}",
                )
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
    let mut lists = ListWriters::create(&config.out_dir, dialect.delimiter, &dialect.header)?;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(config.threads.unwrap_or(0))
        .thread_name(|i| format!("prebounce-syntax-{i}"))
        .build()
        .map_err(|e| Error::Internal(format!("cannot start worker threads: {e}")))?;
    let priors = PriorTable::new(&config.priors);
    let row_format = RowFormat::new(dialect.delimiter);
    let bar = progress_bar(config.progress, reader.total_bytes);
    let bytes_read = Arc::new(AtomicU64::new(0));
    let mut tally = Tally::default();

    thread::scope(|scope| -> Result<(), Error> {
        let (chunk_tx, chunk_rx) = bounded::<Result<Chunk, InputError>>(CHANNEL_DEPTH);
        let (done_tx, done_rx) =
            bounded::<Result<(Vec<Serialized>, Checked), InputError>>(CHANNEL_DEPTH);
        let bytes = Arc::clone(&bytes_read);
        thread::Builder::new()
            .name("prebounce-read".into())
            .spawn_scoped(scope, move || {
                loop {
                    let next = reader.next_chunk(CHUNK_ROWS);
                    bytes.store(reader.bytes_consumed(), Ordering::Relaxed);
                    let msg = match next {
                        Ok(Some(c)) => Ok(c),
                        Ok(None) => break,
                        Err(e) => Err(e),
                    };
                    let stop = msg.is_err();
                    // A closed channel means a later stage failed; it reports why.
                    if chunk_tx.send(msg).is_err() || stop {
                        break;
                    }
                }
            })
            .map_err(|e| Error::Internal(format!("cannot start the reader thread: {e}")))?;
        // Two stage threads feed the same rayon pool, so one chunk's sequential steps overlap
        // the next chunk's parallel checks.
        let (checked_tx, checked_rx) = bounded::<Result<Checked, InputError>>(CHANNEL_DEPTH);
        let (dialect_ref, pool_ref, priors_ref, fmt_ref) = (&dialect, &pool, &priors, &row_format);
        thread::Builder::new()
            .name("prebounce-check".into())
            .spawn_scoped(scope, move || {
                for msg in chunk_rx {
                    let out = msg.map(|chunk| {
                        pool_ref.install(|| check_chunk(chunk, dialect_ref, config, priors_ref))
                    });
                    if checked_tx.send(out).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| Error::Internal(format!("cannot start the check thread: {e}")))?;
        thread::Builder::new()
            .name("prebounce-format".into())
            .spawn_scoped(scope, move || {
                let mut seen = SeenSet::default();
                for msg in checked_rx {
                    let out = msg.map(|mut checked| {
                        let batches = pool_ref.install(|| {
                            finish_chunk(&mut checked, dialect_ref, fmt_ref, &mut seen)
                        });
                        // Freeing a chunk's rows is not free: let the writer thread do it.
                        (batches, checked)
                    });
                    if done_tx.send(out).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| Error::Internal(format!("cannot start the format thread: {e}")))?;
        for msg in done_rx {
            let (batches, spent) = msg?;
            for batch in batches {
                for status in Status::ALL {
                    lists.write(status, &batch.lists[status.index()])?;
                }
                tally.merge(&batch.tally);
            }
            drop(spent);
            bar.set_position(bytes_read.load(Ordering::Relaxed));
            bar.set_message(format!("{} rows", thousands(tally.rows)));
        }
        Ok(())
    })?;
    bar.finish_and_clear();

    let reasons = Reason::ALL
        .iter()
        .zip(tally.reasons)
        .filter(|(_, n)| *n > 0)
        .map(|(r, n)| (r.as_str().to_owned(), n))
        .collect();
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
