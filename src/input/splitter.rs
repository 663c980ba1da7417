//! Cuts a CSV byte stream into records without trusting it.
//!
//! The csv crate, given an unterminated quote, reads to the end of the file and returns one giant
//! field: a single stray `"` would swallow every row after it. So we find record boundaries
//! ourselves with the same quoting rules (RFC 4180 as the csv crate reads it) and bound every
//! record: a quoted field that runs past [`MAX_RECORD_BYTES`] is cut back to its first line, which
//! is reported broken, and reading resumes on the next line. Memory stays bounded by that limit.

use std::io::{self, Read};
use std::ops::Range;

/// A record's kind and its bytes' range in the buffer.
type Cut = (RecordKind, Range<usize>);

/// What the quote-free fast path found.
enum PlainScan {
    /// A record (or the end of input).
    Done(Option<Cut>),
    /// The record has a quote or is too long: scan it with the full rules.
    NeedsFullScan,
}

pub use crate::model::row::{KEPT_PREFIX_BYTES, MAX_HEADER_BYTES, MAX_RECORD_BYTES};

const READ_SIZE: usize = 256 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// Complete record, terminator included (absent only at the very end of the input).
    Complete,
    /// A quote opened on this line is never closed (within the limit): only this line is kept.
    UnterminatedQuote,
    /// The record is longer than the limit; only its first bytes are kept.
    TooLong { bytes: u64 },
}

/// One record as cut from the input.
#[derive(Debug)]
pub struct Record<'a> {
    pub kind: RecordKind,
    /// Physical line (1-based) where the record starts.
    pub line: u64,
    /// No quote character at all: the bytes are the fields joined by the delimiter.
    pub plain: bool,
    /// The record's bytes, terminator included when there was one.
    pub bytes: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    FieldStart,
    Unquoted,
    Quoted,
    QuoteInQuoted,
}

pub struct RecordSplitter<R> {
    reader: R,
    buf: Vec<u8>,
    /// Start of the record being scanned.
    start: usize,
    /// Where scanning resumes (bytes before it, from `start`, are already scanned).
    scan_at: usize,
    filled: usize,
    eof: bool,
    state: Scan,
    /// First line break inside a quoted field of the current record: where a runaway quote is cut.
    first_break: Option<usize>,
    delimiter: u8,
    /// A record ended on '\r': a '\n' right after it belongs to that record.
    skip_lf: bool,
    /// The current record has a quote somewhere: scan it byte by byte.
    saw_quote: bool,
    /// Whether the record returned last had no quote at all (its bytes are its fields).
    last_plain: bool,
    /// Physical line number (1-based) where the current record starts.
    line: u64,
    record_line: u64,
    /// Bytes handed out or skipped, for progress.
    consumed: u64,
    max_record: usize,
}

impl<R: Read> RecordSplitter<R> {
    pub fn new(reader: R, delimiter: u8) -> Self {
        Self::with_limit(reader, delimiter, MAX_RECORD_BYTES)
    }

    pub fn with_limit(reader: R, delimiter: u8, max_record: usize) -> Self {
        RecordSplitter {
            reader,
            buf: Vec::new(),
            start: 0,
            scan_at: 0,
            filled: 0,
            eof: false,
            state: Scan::FieldStart,
            first_break: None,
            delimiter,
            skip_lf: false,
            saw_quote: false,
            last_plain: false,
            line: 1,
            record_line: 1,
            consumed: 0,
            max_record: max_record.max(16),
        }
    }

    pub fn set_delimiter(&mut self, delimiter: u8) {
        self.delimiter = delimiter;
    }

    /// The limit for the records from the next one on: the header is read under a larger one.
    pub fn set_limit(&mut self, max_record: usize) {
        self.max_record = max_record.max(16);
    }

    /// Input bytes read past so far, for progress.
    pub fn bytes_consumed(&self) -> u64 {
        self.consumed
    }

    /// Fill the buffer with at least `n` bytes (or to EOF) without consuming: for sniffing.
    pub fn peek(&mut self, n: usize) -> io::Result<&[u8]> {
        while self.filled - self.start < n && !self.eof {
            self.fill()?;
        }
        let end = self.filled.min(self.start + n);
        Ok(&self.buf[self.start..end])
    }

    /// Drop a leading UTF-8 byte-order mark.
    pub fn skip_bom(&mut self) -> io::Result<()> {
        if self.peek(3)?.starts_with(b"\xEF\xBB\xBF") {
            self.start += 3;
            self.scan_at = self.start;
            self.consumed += 3;
        }
        Ok(())
    }

    /// Read more input; returns by how much earlier indices moved down (compaction).
    fn fill(&mut self) -> io::Result<usize> {
        let mut shift = 0;
        if self.start > 0 && (self.start == self.filled || self.start >= self.buf.len() / 2) {
            // Compact: keep only the current record.
            self.buf.copy_within(self.start..self.filled, 0);
            shift = self.start;
            self.filled -= shift;
            self.scan_at -= shift;
            self.first_break = self.first_break.map(|b| b - shift);
            self.start = 0;
        }
        if self.buf.len() < self.filled + READ_SIZE {
            self.buf.resize(self.filled + READ_SIZE, 0);
        }
        let n = loop {
            match self.reader.read(&mut self.buf[self.filled..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        };
        if n == 0 {
            self.eof = true;
        }
        self.filled += n;
        Ok(shift)
    }

    /// Cut the current record at `end` (exclusive) and move on to `next`.
    fn take(&mut self, end: usize, next: usize, kind: RecordKind) -> Cut {
        let range = self.start..end;
        self.last_plain = !self.saw_quote && kind == RecordKind::Complete;
        self.saw_quote = false;
        self.record_line = self.line;
        self.line += count_breaks(&self.buf[self.start..next]);
        self.consumed += (next - self.start) as u64;
        self.start = next;
        self.scan_at = next;
        self.state = Scan::FieldStart;
        self.first_break = None;
        (kind, range)
    }

    /// The next non-blank record, or None at end of input.
    pub fn next_record(&mut self) -> io::Result<Option<Record<'_>>> {
        loop {
            let Some((kind, range)) = self.next_raw()? else {
                return Ok(None);
            };
            let bytes = &self.buf[range.clone()];
            if kind == RecordKind::Complete && bytes.iter().all(|&b| b == b'\r' || b == b'\n') {
                continue; // blank line: not a row, as in the csv crate
            }
            return Ok(Some(Record {
                kind,
                line: self.record_line,
                plain: self.last_plain,
                bytes: &self.buf[range],
            }));
        }
    }

    /// The complete lines at the reader's position that are already buffered and need no
    /// quoting rules: LF-terminated, no quote and no CR anywhere (the caller still skips blank
    /// lines and stops before one too long). With the line number of the first. Most of a
    /// typical list is read this way, a buffer at a time, instead of a record at a time.
    pub fn buffered_plain_lines(&self) -> (&[u8], u64) {
        if self.skip_lf || self.saw_quote || self.scan_at != self.start {
            return (&[], self.line);
        }
        let mut region = &self.buf[self.start..self.filled];
        if let Some(special) = memchr::memchr2(b'"', b'\r', region) {
            region = &region[..special];
        }
        let end = memchr::memrchr(b'\n', region).map_or(0, |nl| nl + 1);
        (&region[..end], self.line)
    }

    /// Moves past `bytes` bytes of [`Self::buffered_plain_lines`], `lines` lines.
    pub fn consume_plain_lines(&mut self, bytes: usize, lines: u64) {
        debug_assert!(self.start + bytes <= self.filled);
        self.start += bytes;
        self.scan_at = self.start;
        self.consumed += bytes as u64;
        self.line += lines;
    }

    /// The limit on a record's bytes.
    pub fn max_record(&self) -> usize {
        self.max_record
    }

    /// Most rows hold no quote: find their end with one vectorised search. Returns None when the
    /// record has a quote (or is too long) and must be scanned byte by byte.
    fn next_plain(&mut self) -> io::Result<PlainScan> {
        loop {
            match memchr::memchr3(b'\n', b'\r', b'"', &self.buf[self.scan_at..self.filled]) {
                Some(pos) => {
                    let i = self.scan_at + pos;
                    if self.buf[i] == b'"' || i - self.start >= self.max_record {
                        return Ok(PlainScan::NeedsFullScan);
                    }
                    self.skip_lf = self.buf[i] == b'\r';
                    return Ok(PlainScan::Done(Some(self.take(
                        i + 1,
                        i + 1,
                        RecordKind::Complete,
                    ))));
                }
                None if self.filled - self.start > self.max_record => {
                    return Ok(PlainScan::NeedsFullScan);
                }
                None if self.eof => {
                    if self.start >= self.filled {
                        return Ok(PlainScan::Done(None));
                    }
                    let end = self.filled;
                    return Ok(PlainScan::Done(Some(self.take(
                        end,
                        end,
                        RecordKind::Complete,
                    ))));
                }
                None => {
                    self.scan_at = self.filled;
                    self.fill()?;
                }
            }
        }
    }

    fn next_raw(&mut self) -> io::Result<Option<Cut>> {
        loop {
            if self.skip_lf {
                // The '\n' of a "\r\n" split across two reads is not in the buffer yet: read it
                // before deciding, or it would count as a blank line and every line number
                // after it would be one too high.
                while self.start == self.filled && !self.eof {
                    self.fill()?;
                }
                if self.start < self.filled && self.buf[self.start] == b'\n' {
                    self.start += 1;
                    self.scan_at = self.start;
                    self.consumed += 1;
                }
                self.skip_lf = false;
            }
            if !self.saw_quote {
                if let PlainScan::Done(done) = self.next_plain()? {
                    return Ok(done);
                }
                // Start over on this record with the full quoting rules.
                self.saw_quote = true;
                self.scan_at = self.start;
                self.state = Scan::FieldStart;
                self.first_break = None;
            }
            let delim = self.delimiter;
            let mut i = self.scan_at;
            while i < self.filled {
                let b = self.buf[i];
                let is_break = b == b'\n' || b == b'\r';
                self.state = match self.state {
                    Scan::FieldStart | Scan::Unquoted | Scan::QuoteInQuoted if is_break => {
                        self.skip_lf = b == b'\r';
                        return Ok(Some(self.take(i + 1, i + 1, RecordKind::Complete)));
                    }
                    Scan::FieldStart if b == b'"' => Scan::Quoted,
                    Scan::QuoteInQuoted if b == b'"' => Scan::Quoted,
                    Scan::Quoted if b == b'"' => Scan::QuoteInQuoted,
                    Scan::Quoted => {
                        if is_break && self.first_break.is_none() {
                            self.first_break = Some(i);
                        }
                        Scan::Quoted
                    }
                    _ if b == delim => Scan::FieldStart,
                    _ => Scan::Unquoted,
                };
                i += 1;
                if i - self.start > self.max_record {
                    return Ok(Some(self.cut_oversized(i)?));
                }
            }
            self.scan_at = i;
            if self.eof {
                if self.start >= self.filled {
                    return Ok(None);
                }
                if self.state == Scan::Quoted {
                    return Ok(Some(self.cut_runaway_quote()));
                }
                let end = self.filled;
                return Ok(Some(self.take(end, end, RecordKind::Complete)));
            }
            self.fill()?;
        }
    }

    fn cut_runaway_quote(&mut self) -> Cut {
        match self.first_break {
            // Keep the opening line; everything after it is read again as fresh records.
            Some(brk) => {
                // Only up to `filled`: the buffer beyond it holds stale bytes of earlier reads.
                let next = if self.buf[brk] == b'\r'
                    && self.buf[..self.filled].get(brk + 1) == Some(&b'\n')
                {
                    brk + 2
                } else {
                    brk + 1
                };
                self.take(brk, next, RecordKind::UnterminatedQuote)
            }
            None => {
                let end = self.filled;
                self.take(end, end, RecordKind::UnterminatedQuote)
            }
        }
    }

    /// The record passed the limit at `at`.
    fn cut_oversized(&mut self, at: usize) -> io::Result<Cut> {
        if self.state == Scan::Quoted && self.first_break.is_some() {
            return Ok(self.cut_runaway_quote());
        }
        // One enormous line: keep a prefix, skip to the end of the line without buffering it.
        let mut kept_end = self.start + KEPT_PREFIX_BYTES.min(at - self.start);
        let mut total = (at - self.start) as u64;
        let mut i = at;
        loop {
            if let Some(pos) = memchr::memchr2(b'\n', b'\r', &self.buf[i..self.filled]) {
                let brk = i + pos;
                total += pos as u64;
                self.skip_lf = self.buf[brk] == b'\r';
                return Ok(self.take(kept_end, brk + 1, RecordKind::TooLong { bytes: total }));
            }
            total += (self.filled - i) as u64;
            if self.eof {
                let end = self.filled;
                return Ok(self.take(kept_end, end, RecordKind::TooLong { bytes: total }));
            }
            // Drop the scanned middle of the line, keep the prefix, read on.
            self.consumed += (self.filled - kept_end) as u64;
            self.filled = kept_end;
            self.scan_at = kept_end;
            let shift = self.fill()?;
            kept_end -= shift;
            i = kept_end;
        }
    }
}

fn count_breaks(bytes: &[u8]) -> u64 {
    // "\r\n" counts once, a lone '\r' (old Mac files) counts too.
    let mut n = 0;
    let mut prev = 0u8;
    for &b in bytes {
        if b == b'\n' && prev != b'\r' || b == b'\r' {
            n += 1;
        }
        prev = b;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn split(input: &[u8], limit: usize) -> Vec<(RecordKind, String)> {
        // A reader that hands out 3 bytes at a time exercises every buffer boundary.
        struct Trickle<'a>(&'a [u8]);
        impl Read for Trickle<'_> {
            fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
                let n = self.0.len().min(3).min(out.len());
                out[..n].copy_from_slice(&self.0[..n]);
                self.0 = &self.0[n..];
                Ok(n)
            }
        }
        let mut s = RecordSplitter::with_limit(Trickle(input), b',', limit);
        let mut out = Vec::new();
        while let Some(rec) = s.next_record().unwrap() {
            if rec.kind == RecordKind::Complete {
                assert_eq!(rec.plain, !rec.bytes.contains(&b'"'), "{rec:?}");
            }
            out.push((rec.kind, String::from_utf8_lossy(rec.bytes).into_owned()));
        }
        out
    }

    fn ok(s: &str) -> (RecordKind, String) {
        (RecordKind::Complete, s.to_owned())
    }

    #[test]
    fn plain_lines_and_line_ends() {
        assert_eq!(split(b"a,b\nc,d\n", 100), vec![ok("a,b\n"), ok("c,d\n")]);
        assert_eq!(split(b"a,b\r\nc,d", 100), vec![ok("a,b\r"), ok("c,d")]);
        assert_eq!(split(b"a\rb\r", 100), vec![ok("a\r"), ok("b\r")]);
        assert_eq!(split(b"\n\na\n\r\n", 100), vec![ok("a\n")]);
        assert_eq!(split(b"", 100), vec![]);
    }

    #[test]
    fn quoted_newlines_stay_in_the_record() {
        assert_eq!(
            split(b"a,\"x\ny\",b\nc\n", 100),
            vec![ok("a,\"x\ny\",b\n"), ok("c\n")]
        );
        assert_eq!(
            split(b"\"a\"\"b\",c\nd\n", 100),
            vec![ok("\"a\"\"b\",c\n"), ok("d\n")]
        );
        // A quote in the middle of a field is literal, as the csv crate reads it.
        assert_eq!(
            split(b"ab\"c,d\ne\n", 100),
            vec![ok("ab\"c,d\n"), ok("e\n")]
        );
    }

    #[test]
    fn runaway_quote_loses_only_its_line() {
        let got = split(b"a,b\n\"broken,x\nc,d\ne,f\n", 100);
        assert_eq!(
            got,
            vec![
                ok("a,b\n"),
                (RecordKind::UnterminatedQuote, "\"broken,x".into()),
                ok("c,d\n"),
                ok("e,f\n"),
            ]
        );
        // Same when the limit, not EOF, stops it.
        let mut input = b"\"open,x\n".to_vec();
        for i in 0..50 {
            input.extend_from_slice(format!("r{i},v\n").as_bytes());
        }
        let got = split(&input, 64);
        assert_eq!(got[0], (RecordKind::UnterminatedQuote, "\"open,x".into()));
        assert_eq!(got.len(), 51);
        assert_eq!(got[50], ok("r49,v\n"));
    }

    #[test]
    fn huge_line_is_cut_and_reading_resumes() {
        let mut input = b"a,b\n".to_vec();
        input.extend(std::iter::repeat_n(b'x', 10_000));
        input.extend_from_slice(b"\nc,d\n");
        let got = split(&input, 100);
        assert_eq!(got.len(), 3);
        assert_eq!(got[0], ok("a,b\n"));
        match &got[1] {
            (RecordKind::TooLong { bytes }, kept) => {
                assert_eq!(*bytes, 10_000);
                assert!(kept.len() <= KEPT_PREFIX_BYTES && kept.starts_with("xxx"));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(got[2], ok("c,d\n"));
    }

    #[test]
    fn line_numbers_track_physical_lines() {
        let mut s = RecordSplitter::new(&b"h\n\"a\nb\"\nc\r\nd\n"[..], b',');
        let mut lines = Vec::new();
        while let Some(rec) = s.next_record().unwrap() {
            lines.push(rec.line);
        }
        assert_eq!(lines, vec![1, 2, 4, 5]);
        // A "\r\n" split across two reads is one line end, not a line end and a blank line.
        let input = b"a\r\nb\r\nc\r\n";
        let mut s = RecordSplitter::new(
            Chunked {
                data: input,
                step: 2,
            },
            b',',
        );
        let mut lines = Vec::new();
        while let Some(rec) = s.next_record().unwrap() {
            lines.push(rec.line);
        }
        assert_eq!(lines, vec![1, 2, 3]);
    }

    /// Hands out `step` bytes a read: every buffer boundary gets exercised somewhere.
    struct Chunked<'a> {
        data: &'a [u8],
        step: usize,
    }
    impl Read for Chunked<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.data.len().min(self.step).min(out.len());
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    /// Each record with the byte offset where it starts, checked against the input: every byte
    /// of the input is in exactly one record, in order, except the bytes the splitter drops by
    /// design (line ends between records and blank lines, the line end after a runaway quote's
    /// line, the rest of a too-long line past its kept prefix).
    fn account_for_every_byte(
        input: &[u8],
        limit: usize,
        step: usize,
    ) -> Result<Vec<(RecordKind, Vec<u8>)>, TestCaseError> {
        let is_break = |b: u8| b == b'\n' || b == b'\r';
        let mut s = RecordSplitter::with_limit(Chunked { data: input, step }, b',', limit);
        let mut at = 0;
        let mut out = Vec::new();
        while let Some(rec) = s.next_record().unwrap() {
            while at < input.len() && is_break(input[at]) {
                at += 1;
            }
            prop_assert!(
                input[at..].starts_with(rec.bytes),
                "record {:?} is not the input at byte {}",
                rec,
                at
            );
            prop_assert_eq!(rec.line, 1 + count_breaks(&input[..at]));
            at += rec.bytes.len();
            match rec.kind {
                RecordKind::Complete => {}
                RecordKind::UnterminatedQuote => {
                    prop_assert!(rec.bytes.first() == Some(&b'"') || rec.bytes.contains(&b'"'));
                }
                RecordKind::TooLong { bytes } => {
                    // The dropped rest of the line holds no line end, and the count is right.
                    let rest = input[at..].iter().take_while(|&&b| !is_break(b)).count();
                    prop_assert_eq!(bytes, (rec.bytes.len() + rest) as u64);
                    prop_assert!(rec.bytes.len() <= KEPT_PREFIX_BYTES);
                    at += rest;
                }
            }
            if rec.kind == RecordKind::Complete && rec.plain {
                prop_assert!(!rec.bytes.contains(&b'"'));
            }
            out.push((rec.kind, rec.bytes.to_vec()));
        }
        prop_assert!(
            input[at..].iter().all(|&b| is_break(b)),
            "bytes after the last record: {:?}",
            &input[at..]
        );
        Ok(out)
    }

    fn csv_bytes() -> impl Strategy<Value = Vec<u8>> {
        proptest::collection::vec(
            prop_oneof![
                4 => Just(b','),
                4 => Just(b'"'),
                3 => Just(b'\n'),
                2 => Just(b'\r'),
                8 => any::<u8>(),
            ],
            0..400,
        )
    }

    proptest::proptest! {
        // Bounded so the whole property runs in about a second (CI runs it on every push).
        #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

        /// Arbitrary bytes, any limit, any read size: no panic, and every byte accounted for.
        #[test]
        fn arbitrary_bytes_are_split_without_loss(
            input in csv_bytes(),
            limit in prop_oneof![Just(16usize), Just(40), Just(MAX_RECORD_BYTES)],
            step in 1usize..64,
        ) {
            let cut = account_for_every_byte(&input, limit, step)?;
            // With no limit in reach, nothing but line ends is dropped: the input is its
            // records, line ends aside, unless a quote ran away.
            if limit == MAX_RECORD_BYTES && cut.iter().all(|(k, _)| *k == RecordKind::Complete) {
                let joined: Vec<u8> = cut.iter().flat_map(|(_, b)| b.clone()).collect();
                let strip = |b: &[u8]| -> Vec<u8> {
                    b.iter().copied().filter(|&c| c != b'\n' && c != b'\r').collect()
                };
                prop_assert_eq!(strip(&joined), strip(&input));
            }
        }

        /// Well-formed CSV (cells of any bytes, quoted as the csv crate writes them): one record
        /// per row, each parsing back to the row's cells.
        #[test]
        fn well_formed_rows_round_trip_cell_for_cell(
            rows in proptest::collection::vec(
                proptest::collection::vec(
                    proptest::collection::vec(
                        prop_oneof![Just(b','), Just(b'"'), Just(b'\n'), Just(b'\r'), any::<u8>()],
                        0..8,
                    ),
                    1..5,
                ),
                0..12,
            ),
            crlf in any::<bool>(),
            step in 1usize..64,
        ) {
            let terminator = if crlf { csv::Terminator::CRLF } else { csv::Terminator::Any(b'\n') };
            let mut w = csv::WriterBuilder::new()
                .flexible(true)
                .terminator(terminator)
                .from_writer(Vec::new());
            for row in &rows {
                w.write_record(row).unwrap();
            }
            let input = w.into_inner().unwrap();
            let cut = account_for_every_byte(&input, MAX_RECORD_BYTES, step)?;
            prop_assert_eq!(cut.len(), rows.len());
            for ((kind, bytes), row) in cut.iter().zip(&rows) {
                prop_assert_eq!(*kind, RecordKind::Complete);
                let parsed: Vec<Vec<u8>> = csv::ReaderBuilder::new()
                    .has_headers(false)
                    .from_reader(&bytes[..])
                    .byte_records()
                    .next()
                    .expect("one record")
                    .unwrap()
                    .iter()
                    .map(<[u8]>::to_vec)
                    .collect();
                prop_assert_eq!(&parsed, row);
            }
        }
    }
}
