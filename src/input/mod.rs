//! Input stage: bytes → records → fields, with the list's shape detected and every malformed
//! row kept (as a row with a problem) rather than dropped.

pub mod detect;
pub mod splitter;

use std::fs::File;
use std::io::{self, Read};
use std::path::PathBuf;

pub use crate::model::RowProblem;
use splitter::{MAX_HEADER_BYTES, MAX_RECORD_BYTES, Record, RecordKind, RecordSplitter};

/// Where the list comes from.
#[derive(Debug, Clone)]
pub enum InputSource {
    File(PathBuf),
    Stdin,
}

impl InputSource {
    pub fn describe(&self) -> String {
        match self {
            InputSource::File(p) => p.display().to_string(),
            InputSource::Stdin => "standard input".into(),
        }
    }
}

/// What the user told us about the list's shape; `None` means detect.
#[derive(Debug, Clone, Default)]
pub struct InputOptions {
    /// Header name, or a 1-based column number.
    pub column: Option<String>,
    pub delimiter: Option<u8>,
    pub no_header: bool,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    #[error("cannot open {path}: {source}")]
    Open { path: String, source: io::Error },
    #[error("cannot read the input: {0}")]
    Read(#[from] io::Error),
    #[error(
        "the input looks like UTF-16 text (Excel's \"Unicode Text\"); save it as \"CSV UTF-8\" and try again"
    )]
    Utf16,
    #[error("no email column found (columns: {columns}); name it with --column NAME or --column N")]
    NoEmailColumn { columns: String },
    #[error("column {wanted:?} not found (columns: {columns}); check --column")]
    ColumnNotFound { wanted: String, columns: String },
    #[error("column {number} does not exist: the list has {width} columns; check --column")]
    ColumnOutOfRange { number: usize, width: usize },
    #[error("--group-by {wanted:?}: {problem}; check --group-by")]
    GroupByColumn { wanted: String, problem: String },
    #[error(
        "the header row is longer than {} MiB (at least {bytes} bytes), more than prebounce reads; remove the columns you do not need, or pass --no-header if the first row is data",
        MAX_HEADER_BYTES >> 20
    )]
    HeaderTooLong { bytes: u64 },
}

/// The detected (or given) shape of the list.
#[derive(Debug, Clone)]
pub struct Dialect {
    pub delimiter: u8,
    pub has_header: bool,
    /// Header cells as they were (or column_1…column_N for a headerless list).
    pub header: Vec<Vec<u8>>,
    pub email_column: usize,
    /// The header's cells (the first row's for a headerless list). A row with another count
    /// is ragged: kept as it came, its address still checked.
    pub width: usize,
    /// What the user should know about how the list was read (a column name given to several
    /// columns): printed on stderr and kept in summary.json.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Copy)]
pub struct RowSlot {
    /// Index into `Chunk::bounds` of this row's first field.
    first_field: usize,
    /// For a row without quotes: its bytes in `Chunk::data`, which are exactly its fields joined
    /// by the delimiter, so the output can copy them instead of re-encoding each cell.
    raw: Option<(usize, usize)>,
    field_count: usize,
    /// Physical line where the row starts (1-based), for messages.
    pub line: u64,
    pub problem: Option<RowProblem>,
}

/// A batch of rows. Field bytes live in one buffer, so a million rows cost a few allocations per
/// chunk rather than several per row.
#[derive(Debug, Default)]
pub struct Chunk {
    /// The rows' bytes while the chunk is filled; once it is handed out, empty when they are
    /// valid UTF-8 (they are in `text` then).
    data: Vec<u8>,
    /// The rows' bytes when the whole chunk is valid UTF-8: its cells' text is then sliced
    /// out, not validated cell by cell (one validation of the chunk is much cheaper).
    text: String,
    /// (start, end) of each field in the chunk's bytes.
    bounds: Vec<(usize, usize)>,
    pub rows: Vec<RowSlot>,
    /// Input bytes consumed up to the end of this chunk: progress measured at the writer.
    pub input_end: u64,
}

impl Chunk {
    pub fn len(&self) -> usize {
        self.rows.len()
    }
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The rows' bytes.
    fn bytes(&self) -> &[u8] {
        if self.data.is_empty() {
            self.text.as_bytes()
        } else {
            &self.data
        }
    }

    /// Moves valid UTF-8 into `text`, once the chunk is filled.
    fn seal(&mut self) {
        if self.text.is_empty() {
            match String::from_utf8(std::mem::take(&mut self.data)) {
                Ok(text) => self.text = text,
                Err(e) => self.data = e.into_bytes(),
            }
        }
    }

    fn field_bytes(&self, k: usize) -> &[u8] {
        let (start, end) = self.bounds[k];
        &self.bytes()[start..end]
    }

    /// The text of cell `i` of row `r` (None when the row is shorter), or why it is not UTF-8.
    pub fn field_text(&self, r: usize, i: usize) -> Option<Result<&str, std::str::Utf8Error>> {
        self.field_range(r, i).map(|(start, end)| {
            // `get` is None in a chunk that is not all UTF-8, and for a range that splits a
            // character (two cells of a quoted row may join into one): validate the cell.
            match self.text.get(start..end) {
                Some(text) => Ok(text),
                None => std::str::from_utf8(&self.bytes()[start..end]),
            }
        })
    }

    fn last_field_count(&self) -> usize {
        self.rows.last().map_or(0, |r| r.field_count)
    }

    /// Undo the last `push`.
    fn pop_last(&mut self) {
        if let Some(row) = self.rows.pop() {
            let data_start = self
                .bounds
                .get(row.first_field)
                .map_or(self.data.len(), |b| b.0);
            self.bounds.truncate(row.first_field);
            self.data.truncate(data_start);
        }
    }

    /// Row `r` exactly as it stood in the input (without its line end) when it had no quotes:
    /// then it is its fields joined by the delimiter.
    pub fn raw(&self, r: usize) -> Option<&[u8]> {
        self.rows[r].raw.map(|(s, e)| &self.bytes()[s..e])
    }

    /// A quote-free record: its fields are the bytes between delimiters, no decoding needed.
    /// A line whose quote is never closed, kept whole as the row's one cell, its quote
    /// included: nothing of it is lost or altered (the output encodes the cell, quoting the
    /// stray quote, instead of copying the line).
    fn push_unterminated(&mut self, bytes: &[u8], line: u64) {
        let body = without_line_end(bytes);
        let base = self.data.len();
        self.data.extend_from_slice(body);
        self.rows.push(RowSlot {
            first_field: self.bounds.len(),
            raw: None,
            field_count: 1,
            line,
            problem: Some(RowProblem::UnterminatedQuote),
        });
        self.bounds.push((base, base + body.len()));
    }

    fn push_plain(&mut self, bytes: &[u8], delimiter: u8, line: u64) {
        let body = without_line_end(bytes);
        let base = self.data.len();
        self.data.extend_from_slice(body);
        let first_field = self.bounds.len();
        let mut start = base;
        for pos in memchr::memchr_iter(delimiter, body) {
            self.bounds.push((start, base + pos));
            start = base + pos + 1;
        }
        self.bounds.push((start, base + body.len()));
        self.rows.push(RowSlot {
            first_field,
            raw: Some((base, base + body.len())),
            field_count: self.bounds.len() - first_field,
            line,
            problem: None,
        });
    }

    /// Quote-free, LF-terminated lines ([`RecordSplitter::buffered_plain_lines`]) as rows, at
    /// most `max_rows`, in one pass: blank lines are skipped, and it stops before a line of
    /// `max_record` bytes or more (the full rules cut that one). Returns the rows pushed and the
    /// bytes and lines they took.
    fn push_plain_lines(
        &mut self,
        lines: &[u8],
        delimiter: u8,
        first_line: u64,
        max_rows: usize,
        max_record: usize,
    ) -> (usize, usize, u64) {
        let base = self.data.len();
        self.data.extend_from_slice(lines);
        let (mut rows, mut line, mut used) = (0, first_line, 0);
        let (mut row_start, mut field_start, mut first_field) = (0, 0, self.bounds.len());
        for at in memchr::memchr2_iter(delimiter, b'\n', lines) {
            if lines[at] == delimiter {
                self.bounds.push((base + field_start, base + at));
                field_start = at + 1;
                continue;
            }
            let len = at - row_start;
            if len >= max_record {
                break;
            }
            line += 1;
            if len > 0 {
                self.bounds.push((base + field_start, base + at));
                self.rows.push(RowSlot {
                    first_field,
                    raw: Some((base + row_start, base + at)),
                    field_count: self.bounds.len() - first_field,
                    line: line - 1,
                    problem: None,
                });
                rows += 1;
                first_field = self.bounds.len();
            }
            (row_start, field_start, used) = (at + 1, at + 1, at + 1);
            if rows == max_rows {
                break;
            }
        }
        self.bounds.truncate(first_field);
        self.data.truncate(base + used);
        (rows, used, line - first_line)
    }

    /// The fields of row `r`, exactly as parsed.
    pub fn fields(&self, r: usize) -> impl ExactSizeIterator<Item = &[u8]> + '_ {
        let slot = self.rows[r];
        (slot.first_field..slot.first_field + slot.field_count).map(|k| self.field_bytes(k))
    }

    pub fn field(&self, r: usize, i: usize) -> Option<&[u8]> {
        self.field_range(r, i)
            .map(|(start, end)| &self.bytes()[start..end])
    }

    /// Where cell `i` of row `r` is in the chunk's bytes (None when the row is shorter).
    fn field_range(&self, r: usize, i: usize) -> Option<(usize, usize)> {
        let slot = self.rows[r];
        (i < slot.field_count).then(|| self.bounds[slot.first_field + i])
    }

    fn lossy_fields(&self, r: usize) -> Vec<String> {
        self.fields(r)
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect()
    }

    /// Parse one record's bytes with csv-core (the csv crate's own parser) into this chunk.
    fn push(
        &mut self,
        core: &mut csv_core::Reader,
        scratch: &mut Vec<usize>,
        bytes: &[u8],
        line: u64,
        problem: Option<RowProblem>,
    ) {
        let base = self.data.len();
        // Unquoting only ever shrinks a field, and there are at most len+1 fields.
        self.data.resize(base + bytes.len() + 1, 0);
        if scratch.len() < bytes.len() + 2 {
            scratch.resize(bytes.len() + 2, 0);
        }
        let (mut input, mut out_at, mut nfields) = (bytes, 0usize, 0usize);
        loop {
            let (res, nin, nout, nend) = core.read_record(
                input,
                &mut self.data[base + out_at..],
                &mut scratch[nfields..],
            );
            // csv-core's ends count from the record's start across calls, like its output.
            input = &input[nin..];
            out_at += nout;
            nfields += nend;
            match res {
                csv_core::ReadRecordResult::InputEmpty => {
                    if input.is_empty() {
                        // Unterminated last record: an empty read tells csv-core it is EOF.
                        let (_, _, nout2, nend2) = core.read_record(
                            &[],
                            &mut self.data[base + out_at..],
                            &mut scratch[nfields..],
                        );
                        out_at += nout2;
                        nfields += nend2;
                        core.reset();
                        break;
                    }
                }
                csv_core::ReadRecordResult::Record | csv_core::ReadRecordResult::End => break,
                csv_core::ReadRecordResult::OutputFull
                | csv_core::ReadRecordResult::OutputEndsFull => {
                    // Cannot happen given the sizes above; grow and go on rather than trust that.
                    self.data.resize(self.data.len() + bytes.len() + 16, 0);
                    scratch.resize(scratch.len() + 16, 0);
                }
            }
        }
        if problem.is_some() {
            core.reset();
        }
        self.data.truncate(base + out_at);
        let first_field = self.bounds.len();
        let mut start = base;
        for &e in &scratch[..nfields] {
            self.bounds.push((start, base + e));
            start = base + e;
        }
        self.rows.push(RowSlot {
            first_field,
            raw: None,
            field_count: nfields,
            line,
            problem,
        });
    }
}

/// UTF-16 text: a byte-order mark (FF FE / FE FF), or ASCII text with a NUL in every other
/// byte (nearly all of one parity, almost none of the other), which binary junk rarely is.
fn looks_like_utf16(head: &[u8]) -> bool {
    if head.starts_with(b"\xFF\xFE") || head.starts_with(b"\xFE\xFF") {
        return true;
    }
    let pairs = head.len() / 2;
    if pairs < 8 {
        return false;
    }
    let nul_at = |parity: usize| {
        head.iter()
            .skip(parity)
            .step_by(2)
            .take(pairs)
            .filter(|&&b| b == 0)
            .count()
    };
    let (even, odd) = (nul_at(0), nul_at(1));
    let mostly = |n: usize| n * 10 >= pairs * 9;
    let rarely = |n: usize| n * 10 <= pairs;
    (mostly(odd) && rarely(even)) || (mostly(even) && rarely(odd))
}

/// Whether a record has a line break before its terminator.
fn has_inner_break(bytes: &[u8]) -> bool {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    body.iter().any(|&b| b == b'\n' || b == b'\r')
}

/// The parser state a chunk is filled with: csv-core's reader and the shape rows must have.
struct FieldParser<'a> {
    core: &'a mut csv_core::Reader,
    scratch: &'a mut Vec<usize>,
    delimiter: u8,
    /// The header's cells (0 while the first row is being read): a multi-line record of another
    /// width is two stray quotes pairing up.
    width: usize,
}

impl FieldParser<'_> {
    /// Push one record into `chunk`; returns the rows pushed (more than one when a misshapen
    /// multi-line record is re-split).
    fn push_record(&mut self, chunk: &mut Chunk, rec: &Record<'_>, line: u64) -> usize {
        if rec.plain {
            chunk.push_plain(rec.bytes, self.delimiter, line);
            return 1;
        }
        let problem = match rec.kind {
            RecordKind::Complete => None,
            RecordKind::UnterminatedQuote => {
                chunk.push_unterminated(rec.bytes, line);
                return 1;
            }
            RecordKind::TooLong { bytes } => Some(RowProblem::TooLong { bytes }),
        };
        chunk.push(self.core, self.scratch, rec.bytes, line, problem);
        if problem.is_none()
            && self.width > 0
            && chunk.last_field_count() != self.width
            && has_inner_break(rec.bytes)
        {
            // A quote that spans lines yet leaves the row misshapen is a stray quote paired
            // with another one lines later: keep the rows between them as rows.
            chunk.pop_last();
            return self.resplit(chunk, rec.bytes, line);
        }
        1
    }

    /// Push a misshapen multi-line record as its first line (unterminated quote) followed by
    /// the records its remaining lines make on their own.
    fn resplit(&mut self, chunk: &mut Chunk, bytes: &[u8], line: u64) -> usize {
        let Some(brk) = bytes.iter().position(|&b| b == b'\n' || b == b'\r') else {
            chunk.push(self.core, self.scratch, bytes, line, None);
            return 1;
        };
        let next = if bytes[brk] == b'\r' && bytes.get(brk + 1) == Some(&b'\n') {
            brk + 2
        } else {
            brk + 1
        };
        chunk.push_unterminated(&bytes[..brk], line);
        let mut pushed = 1;
        let mut rest = RecordSplitter::new(&bytes[next..], self.delimiter);
        // Reading from memory cannot fail.
        while let Ok(Some(rec)) = rest.next_record() {
            let at = line + rec.line;
            pushed += self.push_record(chunk, &rec, at);
        }
        pushed
    }
}

pub struct InputReader {
    splitter: RecordSplitter<Box<dyn Read + Send>>,
    delimiter: u8,
    core: csv_core::Reader,
    scratch: Vec<usize>,
    width: usize,
    /// Rows read during detection, handed out first.
    pending: Option<Chunk>,
    /// Bytes and fields of the last full chunk: the next one is allocated to fit, not to a
    /// guess sized for wide rows (a few dozen chunks are in flight at once).
    last_full: Option<(usize, usize)>,
    /// Size of the input when known, for progress.
    pub total_bytes: Option<u64>,
    /// Plain lines are taken a buffer at a time (off only in tests, as the reference).
    block_reads: bool,
}

/// Rows sampled to detect the email column.
const SAMPLE_ROWS: usize = 200;
/// Bytes sampled to detect the delimiter.
const SAMPLE_BYTES: usize = 64 * 1024;

impl InputReader {
    pub fn open(
        source: &InputSource,
        opts: &InputOptions,
    ) -> Result<(InputReader, Dialect), InputError> {
        let (reader, total_bytes): (Box<dyn Read + Send>, Option<u64>) = match source {
            InputSource::Stdin => (Box::new(io::stdin()), None),
            InputSource::File(path) => {
                let open_err = |source| InputError::Open {
                    path: path.display().to_string(),
                    source,
                };
                let file = File::open(path).map_err(open_err)?;
                let meta = file.metadata().map_err(open_err)?;
                if meta.is_dir() {
                    return Err(open_err(io::Error::other("it is a directory")));
                }
                (Box::new(file), Some(meta.len()))
            }
        };
        Self::from_reader(reader, total_bytes, opts, true, MAX_RECORD_BYTES)
    }

    /// `block_reads` and `max_record` are other than `true` and [`MAX_RECORD_BYTES`] only in
    /// tests.
    fn from_reader(
        reader: Box<dyn Read + Send>,
        total_bytes: Option<u64>,
        opts: &InputOptions,
        block_reads: bool,
        max_record: usize,
    ) -> Result<(InputReader, Dialect), InputError> {
        let mut splitter = RecordSplitter::new(reader, b',');
        let head = splitter.peek(SAMPLE_BYTES)?;
        if looks_like_utf16(head) {
            return Err(InputError::Utf16);
        }
        splitter.skip_bom()?;
        let delimiter = match opts.delimiter {
            Some(d) => d,
            None => detect::sniff_delimiter(splitter.peek(SAMPLE_BYTES)?),
        };
        splitter.set_delimiter(delimiter);
        let mut input = InputReader {
            splitter,
            delimiter,
            core: csv_core::ReaderBuilder::new().delimiter(delimiter).build(),
            scratch: Vec::new(),
            width: 0,
            pending: None,
            last_full: None,
            total_bytes,
            block_reads,
        };

        let mut first = Chunk::default();
        // A header is read whole (up to its own, larger limit): cut, it would misread the width
        // of every row after it. With --no-header the first row is data and has a data row's limit.
        if !opts.no_header {
            input.splitter.set_limit(MAX_HEADER_BYTES);
        }
        input.read_into(&mut first, 1)?;
        input.splitter.set_limit(max_record);
        if let (false, Some(RowProblem::TooLong { bytes })) =
            (opts.no_header, first.rows.first().and_then(|r| r.problem))
        {
            return Err(InputError::HeaderTooLong { bytes });
        }
        if first.is_empty() {
            let dialect = Dialect {
                delimiter,
                has_header: false,
                header: Vec::new(),
                email_column: 0,
                width: 0,
                warnings: Vec::new(),
            };
            return Ok((input, dialect));
        }
        let first_cells = first.lossy_fields(0);
        let column_is_name = opts
            .column
            .as_deref()
            .is_some_and(|c| c.parse::<usize>().is_err());
        let has_header =
            !opts.no_header && (column_is_name || detect::looks_like_header(&first_cells));
        input.width = first_cells.len();
        let (header, mut sample) = if has_header {
            let header: Vec<Vec<u8>> = first.fields(0).map(<[u8]>::to_vec).collect();
            (header, Chunk::default())
        } else {
            let header = (1..=input.width)
                .map(|i| format!("column_{i}").into_bytes())
                .collect();
            (header, first)
        };
        let already = sample.len();
        input.read_into(&mut sample, SAMPLE_ROWS.saturating_sub(already))?;

        let names: Vec<String> = header
            .iter()
            .map(|h| String::from_utf8_lossy(h).into_owned())
            .collect();
        let email_column = choose_column(opts, has_header, &names, &sample)?;
        let warnings = has_header
            .then(|| same_name_warning("the email column", &names, email_column))
            .flatten()
            .into_iter()
            .collect();
        input.pending = Some(sample);
        let dialect = Dialect {
            delimiter,
            has_header,
            header,
            email_column,
            width: input.width,
            warnings,
        };
        Ok((input, dialect))
    }

    /// Append up to `max_rows` records to `chunk`.
    fn read_into(&mut self, chunk: &mut Chunk, max_rows: usize) -> Result<(), InputError> {
        let mut n = 0;
        while n < max_rows {
            if self.block_reads {
                n += self.read_buffered_plain_lines(chunk, max_rows - n);
                if n == max_rows {
                    break;
                }
            }
            let Some(rec) = self.splitter.next_record()? else {
                break;
            };
            let mut parser = FieldParser {
                core: &mut self.core,
                scratch: &mut self.scratch,
                delimiter: self.delimiter,
                width: self.width,
            };
            n += parser.push_record(chunk, &rec, rec.line);
        }
        Ok(())
    }

    /// The rows the splitter's buffer holds as plain lines, at most `max_rows`.
    fn read_buffered_plain_lines(&mut self, chunk: &mut Chunk, max_rows: usize) -> usize {
        let (lines, first_line) = self.splitter.buffered_plain_lines();
        let max_record = self.splitter.max_record();
        let (rows, bytes, line_count) =
            chunk.push_plain_lines(lines, self.delimiter, first_line, max_rows, max_record);
        self.splitter.consume_plain_lines(bytes, line_count);
        rows
    }

    /// The next batch of at most `max_rows` rows (None at end of input).
    pub fn next_chunk(&mut self, max_rows: usize) -> Result<Option<Chunk>, InputError> {
        if let Some(mut p) = self.pending.take()
            && !p.is_empty()
        {
            p.seal();
            return Ok(Some(p));
        }
        let (data, fields) = self
            .last_full
            .map_or((max_rows * 64, max_rows * 6), |(d, f)| {
                (d + d / 8, f + f / 8)
            });
        let mut chunk = Chunk {
            data: Vec::with_capacity(data),
            text: String::new(),
            bounds: Vec::with_capacity(fields),
            rows: Vec::with_capacity(max_rows),
            input_end: 0,
        };
        self.read_into(&mut chunk, max_rows)?;
        if chunk.len() == max_rows {
            self.last_full = Some((chunk.data.len(), chunk.bounds.len()));
        }
        chunk.seal();
        Ok((!chunk.is_empty()).then_some(chunk))
    }

    pub fn bytes_consumed(&self) -> u64 {
        self.splitter.bytes_consumed()
    }
}

/// A column named by the user (`--column`, `--group-by`): a header name (exact, then ignoring
/// ASCII case) or a 1-based number.
pub fn find_column(wanted: &str, has_header: bool, names: &[String]) -> Result<usize, InputError> {
    let width = names.len();
    if has_header {
        let w = wanted.trim();
        if let Some(i) = names.iter().position(|n| n.trim() == w) {
            return Ok(i);
        }
        if let Some(i) = names.iter().position(|n| n.trim().eq_ignore_ascii_case(w)) {
            return Ok(i);
        }
    }
    match wanted.trim().parse::<usize>() {
        Ok(n) if n >= 1 && n <= width => Ok(n - 1),
        Ok(n) => Err(InputError::ColumnOutOfRange { number: n, width }),
        Err(_) => Err(InputError::ColumnNotFound {
            wanted: wanted.to_owned(),
            columns: names.join(", "),
        }),
    }
}

/// When other columns share the name of the column used as `role` (as `--column` and
/// `--group-by` find it, ignoring case and surrounding space), a warning naming the one used and
/// the others: the first match wins, silently, which may not be the column the user meant.
pub fn same_name_warning(role: &str, names: &[String], used: usize) -> Option<String> {
    let name = names.get(used)?.trim();
    let same: Vec<usize> = (0..names.len())
        .filter(|&i| names[i].trim().eq_ignore_ascii_case(name))
        .collect();
    if same.len() < 2 {
        return None;
    }
    let others: Vec<String> = same
        .iter()
        .filter(|&&i| i != used)
        .map(|i| format!("column {}", i + 1))
        .collect();
    Some(format!(
        "{role} is column {} ({name:?}); {} {} the same name and {} not used",
        used + 1,
        others.join(", "),
        if others.len() == 1 { "has" } else { "have" },
        if others.len() == 1 { "is" } else { "are" },
    ))
}

fn choose_column(
    opts: &InputOptions,
    has_header: bool,
    names: &[String],
    sample: &Chunk,
) -> Result<usize, InputError> {
    let width = names.len();
    let columns = || names.join(", ");
    if let Some(wanted) = &opts.column {
        return find_column(wanted, has_header, names);
    }
    if width == 1 {
        return Ok(0);
    }
    // Detection looks at rows of the header's width only: a ragged row's cells may be shifted.
    let rows: Vec<Vec<String>> = (0..sample.len())
        .filter(|&r| sample.rows[r].problem.is_none() && sample.rows[r].field_count == width)
        .map(|r| sample.lossy_fields(r))
        .collect();
    if has_header {
        let candidates = detect::email_header_candidates(names);
        // Among several named candidates, the one that holds addresses.
        let best = candidates.iter().copied().max_by(|&a, &b| {
            detect::at_share(&rows, a)
                .total_cmp(&detect::at_share(&rows, b))
                .then(b.cmp(&a))
        });
        if let Some(i) = best {
            return Ok(i);
        }
    }
    if rows.is_empty() && has_header {
        return Ok(0); // a header-only list has nothing to verify; any column will do
    }
    detect::email_column_by_content(&rows, width)
        .ok_or_else(|| InputError::NoEmailColumn { columns: columns() })
}

/// Built-in priors overridden by a TOML or JSON priors file (`--priors`).
pub fn read_priors(
    path: &std::path::Path,
) -> Result<crate::forecast::Priors, crate::forecast::PriorsError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| crate::forecast::PriorsError::Read {
            path: path.display().to_string(),
            source,
        })?;
    crate::forecast::Priors::from_text(path, &text)
}

/// A line's bytes without its `\n` or `\r\n`.
fn without_line_end(bytes: &[u8]) -> &[u8] {
    let body = bytes.strip_suffix(b"\n").unwrap_or(bytes);
    body.strip_suffix(b"\r").unwrap_or(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// The dialect and every row's cells and problem.
    type ReadBack = (Dialect, Vec<(Vec<String>, Option<RowProblem>)>);

    fn open_bytes(bytes: &[u8], opts: InputOptions) -> Result<ReadBack, InputError> {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        let (mut reader, dialect) = InputReader::open(&InputSource::File(f.path().into()), &opts)?;
        let mut rows = Vec::new();
        while let Some(chunk) = reader.next_chunk(3)? {
            for r in 0..chunk.len() {
                rows.push((chunk.lossy_fields(r), chunk.rows[r].problem));
            }
        }
        Ok((dialect, rows))
    }

    /// Every row as the chunk holds it: cells, raw bytes, line and problem.
    type RowDump = (Vec<Vec<u8>>, Option<Vec<u8>>, u64, Option<RowProblem>);

    /// Reads `bytes` handed out `step` bytes at a time, in chunks of `chunk_rows`.
    fn read_all(
        bytes: &[u8],
        step: usize,
        chunk_rows: usize,
        limit: usize,
        block: bool,
    ) -> Vec<RowDump> {
        struct Trickle(Vec<u8>, usize, usize);
        impl Read for Trickle {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                let n = (self.0.len() - self.1).min(self.2).min(out.len());
                out[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
                self.1 += n;
                Ok(n)
            }
        }
        let source = Box::new(Trickle([b"email,name\n", bytes].concat(), 0, step));
        let opts = InputOptions {
            delimiter: Some(b','),
            column: Some("email".into()),
            ..InputOptions::default()
        };
        let (mut reader, _) = InputReader::from_reader(source, None, &opts, block, limit).unwrap();
        let mut rows = Vec::new();
        while let Some(chunk) = reader.next_chunk(chunk_rows).unwrap() {
            for r in 0..chunk.len() {
                let cells = chunk.fields(r).map(<[u8]>::to_vec).collect();
                let raw = chunk.raw(r).map(<[u8]>::to_vec);
                rows.push((cells, raw, chunk.rows[r].line, chunk.rows[r].problem));
            }
        }
        rows
    }

    proptest::proptest! {
        /// Plain lines taken a buffer at a time give the rows a record at a time gives, at any
        /// read size, chunk size and record limit, among quotes, CRs and blank lines.
        #[test]
        fn buffered_plain_lines_read_as_records_do(
            bytes in proptest::collection::vec(
                proptest::sample::select(b"ab,,\n\n\n\"\r@".to_vec()), 0..400),
            step in 1usize..500,
            chunk_rows in 1usize..9,
            limit in 16usize..40,
        ) {
            proptest::prop_assert_eq!(
                read_all(&bytes, step, chunk_rows, limit, true),
                read_all(&bytes, step, chunk_rows, limit, false)
            );
        }
    }

    #[test]
    fn cell_text_is_validated_per_cell_when_the_chunk_is_not_all_utf8_or_a_cell_splits_a_char() {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        // Two quoted cells whose bytes join into "é" in the chunk: each alone is not UTF-8.
        f.write_all(b"name,email\n\"\xc3\",\"\xa9@x.com\"\nb,b@x.com\n")
            .unwrap();
        let opts = InputOptions::default();
        let (mut reader, _) =
            InputReader::open(&InputSource::File(f.path().into()), &opts).unwrap();
        let chunk = reader.next_chunk(10).unwrap().unwrap();
        assert_eq!(
            chunk.field_text(0, 0).unwrap().unwrap_err().valid_up_to(),
            0
        );
        assert_eq!(
            chunk.field_text(0, 1).unwrap().unwrap_err().valid_up_to(),
            0
        );
        assert_eq!(chunk.field_text(1, 1).unwrap().unwrap(), "b@x.com");
        assert!(chunk.field_text(1, 2).is_none());
        // A chunk with a bad byte anywhere: the good cells still read as text.
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(b"name,email\n\xff,a@x.com\n").unwrap();
        let (mut reader, _) =
            InputReader::open(&InputSource::File(f.path().into()), &opts).unwrap();
        let chunk = reader.next_chunk(10).unwrap().unwrap();
        assert!(chunk.field_text(0, 0).unwrap().is_err());
        assert_eq!(chunk.field_text(0, 1).unwrap().unwrap(), "a@x.com");
    }

    #[test]
    fn header_bom_crlf_and_quoted_newlines() {
        let (d, rows) = open_bytes(
            b"\xEF\xBB\xBFname,Email\r\n\"Smith,\r\n Ann\",ann@x.com\r\nBob,bob@y.org\r\n",
            InputOptions::default(),
        )
        .unwrap();
        assert!(d.has_header);
        assert_eq!(d.header, vec![b"name".to_vec(), b"Email".to_vec()]);
        assert_eq!(d.email_column, 1);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].0, vec!["Smith,\r\n Ann", "ann@x.com"]);
        assert_eq!(rows[1].0, vec!["Bob", "bob@y.org"]);
    }

    #[test]
    fn data_rows_that_mention_email_are_data() {
        let (d, rows) =
            open_bytes(b"jane@email.com\nbob@gmail.com\n", InputOptions::default()).unwrap();
        assert!(!d.has_header);
        assert_eq!(rows.len(), 2);
        let (d, rows) = open_bytes(
            b"Ann,Email Masters Ltd,ann@emailmasters.com\nBob,Acme,bob@acme.com\n",
            InputOptions::default(),
        )
        .unwrap();
        assert_eq!((d.has_header, d.email_column, rows.len()), (false, 2, 2));
    }

    #[test]
    fn google_contacts_export_picks_the_value_column() {
        let (d, _) = open_bytes(
            b"Name,E-mail 1 - Type,E-mail 1 - Value\nAnn,* Home,ann@x.com\nBob,Work,bob@y.org\n",
            InputOptions::default(),
        )
        .unwrap();
        assert_eq!(d.email_column, 2);
    }

    #[test]
    fn headerless_one_column_list() {
        let (d, rows) = open_bytes(b"ann@x.com\nbob@y.org\n", InputOptions::default()).unwrap();
        assert!(!d.has_header);
        assert_eq!(d.header, vec![b"column_1".to_vec()]);
        assert_eq!(rows.len(), 2);
    }

    #[test]
    fn semicolons_and_content_detection() {
        let (d, rows) = open_bytes(
            b"id;who;contact\n1;Ann;ann@x.com\n2;Bob;bob@y.org\n",
            InputOptions::default(),
        )
        .unwrap();
        assert_eq!(d.delimiter, b';');
        assert_eq!(d.email_column, 2);
        assert_eq!(rows.len(), 2);
    }

    #[test]
    fn broken_rows_are_kept_with_their_problem() {
        let (_, rows) = open_bytes(
            b"email,name\na@x.com,A\nb@x.com\n\"c@x.com,C\nd@x.com,D\n",
            InputOptions::default(),
        )
        .unwrap();
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[0].1, None);
        // A short row is no problem of the input: its cells are kept as they came (#14 item 8).
        assert_eq!(rows[1], (vec!["b@x.com".into()], None));
        assert_eq!(rows[2].1, Some(RowProblem::UnterminatedQuote));
        // Issue #14 item 12: the line as it was, its stray quote included.
        assert_eq!(rows[2].0, vec!["\"c@x.com,C"]);
        assert_eq!(rows[3], (vec!["d@x.com".into(), "D".into()], None));
    }

    /// Issue #14 item 8: wide and short rows keep every cell, with no problem attached.
    #[test]
    fn ragged_rows_keep_their_cells() {
        let (d, rows) = open_bytes(
            b"email,source,name\na@gmail.com,crm,x,extra1,extra2\nb@gmail.com\n",
            InputOptions::default(),
        )
        .unwrap();
        assert_eq!(d.width, 3);
        assert_eq!(
            rows[0],
            (
                vec![
                    "a@gmail.com".into(),
                    "crm".into(),
                    "x".into(),
                    "extra1".into(),
                    "extra2".into()
                ],
                None
            )
        );
        assert_eq!(rows[1], (vec!["b@gmail.com".into()], None));
    }

    /// Issue #14 item 11: a header over the data rows' 1 MiB limit is read whole.
    #[test]
    fn a_wide_header_is_read_whole() {
        let mut input = b"email".to_vec();
        for i in 1..150_001 {
            input.extend_from_slice(format!(",c{i}").as_bytes());
        }
        assert!(input.len() > MAX_RECORD_BYTES);
        input.extend_from_slice(b"\nann@x.com\n");
        let (d, rows) = open_bytes(&input, InputOptions::default()).unwrap();
        assert!(d.has_header);
        assert_eq!(d.width, 150_001);
        assert_eq!(d.header[150_000], b"c150000");
        assert_eq!(rows, vec![(vec!["ann@x.com".to_owned()], None)]);
    }

    /// Issue #14 item 13: the column used among several of one name is named, and the others.
    #[test]
    fn duplicate_column_names_are_warned_about() {
        let opts = InputOptions {
            column: Some("email".into()),
            ..Default::default()
        };
        let (d, _) = open_bytes(b"email,name,Email\nold@,Ann,ann@x.com\n", opts).unwrap();
        assert_eq!(d.email_column, 0);
        assert_eq!(
            d.warnings,
            [
                "the email column is column 1 (\"email\"); column 3 has the same name and is not used"
            ]
        );
        let names: Vec<String> = ["a", " A ", "b", "a"].map(String::from).to_vec();
        let w = same_name_warning("--group-by", &names, 1).unwrap();
        assert!(
            w.contains("column 2") && w.contains("column 1, column 4 have"),
            "{w}"
        );
        assert_eq!(same_name_warning("x", &names, 2), None);
        let (d, _) = open_bytes(b"email,name\nann@x.com,Ann\n", InputOptions::default()).unwrap();
        assert!(d.warnings.is_empty());
    }

    #[test]
    fn utf16_is_refused_with_a_fix() {
        let text: Vec<u8> = "email\r\nann@x.com\r\n"
            .encode_utf16()
            .flat_map(u16::to_le_bytes)
            .collect();
        let mut with_bom = b"\xFF\xFE".to_vec();
        with_bom.extend_from_slice(&text);
        assert!(matches!(
            open_bytes(&with_bom, InputOptions::default()),
            Err(InputError::Utf16)
        ));
        assert!(matches!(
            open_bytes(&text, InputOptions::default()),
            Err(InputError::Utf16)
        ));
    }

    #[test]
    fn two_stray_quotes_do_not_swallow_the_rows_between_them() {
        let (_, rows) = open_bytes(
            b"name,email\nAnn,ann@x.com\nBob,\"Bobby,bob@x.com\nSue,sue@x.com\nTom,tom@x.com\nAl,Al\",al@x.com\nZed,zed@x.com\n",
            InputOptions::default(),
        )
        .unwrap();
        let emails: Vec<String> = rows
            .iter()
            .map(|(cells, _)| cells.last().cloned().unwrap_or_default())
            .collect();
        assert_eq!(rows.len(), 6, "{rows:?}");
        assert_eq!(rows[1].1, Some(RowProblem::UnterminatedQuote));
        assert_eq!(&emails[2..4], ["sue@x.com", "tom@x.com"]);
        assert_eq!(rows[2].1, None);
        assert_eq!(rows[5].0, vec!["Zed", "zed@x.com"]);
    }

    #[test]
    fn empty_and_header_only() {
        let (d, rows) = open_bytes(b"", InputOptions::default()).unwrap();
        assert_eq!((d.width, rows.len()), (0, 0));
        let (d, rows) = open_bytes(b"id,name\n", InputOptions::default()).unwrap();
        assert_eq!((d.width, rows.len()), (2, 0));
    }

    #[test]
    fn column_option() {
        let opts = |c: &str| InputOptions {
            column: Some(c.into()),
            ..Default::default()
        };
        let data = b"a,b\nx@y.com,z@w.com\n";
        assert_eq!(open_bytes(data, opts("b")).unwrap().0.email_column, 1);
        assert_eq!(open_bytes(data, opts("2")).unwrap().0.email_column, 1);
        assert!(matches!(
            open_bytes(data, opts("3")),
            Err(InputError::ColumnOutOfRange { .. })
        ));
        assert!(matches!(
            open_bytes(data, opts("mail")),
            Err(InputError::ColumnNotFound { .. })
        ));
        assert!(matches!(
            open_bytes(b"a,b\n1,2\n", InputOptions::default()),
            Err(InputError::NoEmailColumn { .. })
        ));
    }
}
