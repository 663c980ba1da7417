//! Unix mbox: messages separated by `From ` lines (RFC 4155), with mboxrd's quoting undone
//! (`>From ` → `From `, `>>From ` → `>From `).
//!
//! A `From ` line separates only at the start of the data or after a blank line: mboxo and
//! mboxcl writers do not quote `From ` in bodies, and a body line starting with it almost
//! never follows a blank line and an envelope-looking sender. Line ends may be LF, CRLF or CR.

use std::borrow::Cow;

/// Whether the data opens with an mbox `From ` separator line.
pub fn is_mbox(bytes: &[u8]) -> bool {
    bytes.starts_with(b"From ") && looks_like_separator(first_line(bytes))
}

fn first_line(b: &[u8]) -> &[u8] {
    let end = b
        .iter()
        .position(|&c| c == b'\n' || c == b'\r')
        .unwrap_or(b.len());
    &b[..end]
}

/// `From sender date…`: a sender word and something after it.
fn looks_like_separator(line: &[u8]) -> bool {
    line.strip_prefix(b"From ")
        .is_some_and(|rest| rest.iter().any(|c| !c.is_ascii_whitespace()))
}

/// The lines of `b` as (start, end without the line end, end with it).
fn lines(b: &[u8]) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
    let mut at = 0;
    std::iter::from_fn(move || {
        if at >= b.len() {
            return None;
        }
        let start = at;
        let mut end = start;
        while end < b.len() && b[end] != b'\n' && b[end] != b'\r' {
            end += 1;
        }
        let mut next = end;
        if next < b.len() && b[next] == b'\r' {
            next += 1;
        }
        if next < b.len() && b[next] == b'\n' && (next == end || b[end] == b'\r') {
            next += 1;
        }
        if next == end {
            next += 1;
        }
        at = next.min(b.len());
        Some((start, end, at))
    })
}

/// The messages of an mbox, separator lines removed and mboxrd quoting undone; message `N`
/// (1-based, as `file#N` names it) is at index `N - 1`. Data that does not open with a
/// separator is one message.
pub fn split_mbox(bytes: &[u8]) -> Vec<Cow<'_, [u8]>> {
    if !is_mbox(bytes) {
        return vec![Cow::Borrowed(bytes)];
    }
    let mut starts: Vec<(usize, usize)> = Vec::new(); // (separator start, body start)
    let mut previous_blank = true;
    for (start, end, next) in lines(bytes) {
        let line = &bytes[start..end];
        if previous_blank && looks_like_separator(line) {
            starts.push((start, next));
        }
        previous_blank = line.is_empty();
    }
    let mut out = Vec::with_capacity(starts.len());
    for (i, &(_, body)) in starts.iter().enumerate() {
        let end = starts.get(i + 1).map_or(bytes.len(), |&(s, _)| s);
        let message = &bytes[body.min(end)..end];
        if message.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        out.push(unquote(message));
    }
    out
}

/// An mbox read line by line, for files too large to hold whole: fed each line with its line
/// end (LF or CRLF), it hands back each message once the next separator (or the end) shows it
/// is complete, split and unquoted exactly as [`split_mbox`] does. A message is kept up to
/// [`super::MAX_MESSAGE_BYTES`] (the decoder reads no more of one), so memory stays bounded by
/// one message whatever the file's size.
#[derive(Debug, Default)]
pub struct MboxReader {
    current: Option<Vec<u8>>,
    previous_blank: bool,
    started: bool,
    /// The last piece fed ended a line (a reader may cut a very long line into pieces).
    at_line_start: bool,
}

impl MboxReader {
    pub fn new() -> Self {
        MboxReader {
            current: None,
            previous_blank: true,
            started: false,
            at_line_start: true,
        }
    }

    /// One line, with its line end (or a piece of a long line: the pieces after the first are
    /// never separators); a completed message, if this line starts the next one.
    pub fn line(&mut self, line: &[u8]) -> Option<Vec<u8>> {
        let bare = line
            .strip_suffix(b"\n")
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .unwrap_or(line);
        let whole_line = self.at_line_start;
        self.at_line_start = line.ends_with(b"\n");
        let separator = whole_line && self.previous_blank && looks_like_separator(bare);
        self.previous_blank = whole_line && bare.is_empty();
        if separator {
            self.started = true;
            return self.current.replace(Vec::new()).and_then(finished);
        }
        if !self.started {
            // Data before any separator: not an mbox; the caller checked is_mbox first.
            self.started = true;
            self.current = Some(Vec::new());
        }
        if let Some(m) = self.current.as_mut()
            && m.len() < super::MAX_MESSAGE_BYTES
        {
            m.extend_from_slice(line);
        }
        None
    }

    /// The last message, at the end of the data.
    pub fn finish(&mut self) -> Option<Vec<u8>> {
        self.current.take().and_then(finished)
    }
}

fn finished(m: Vec<u8>) -> Option<Vec<u8>> {
    if m.iter().all(u8::is_ascii_whitespace) {
        return None;
    }
    Some(match unquote(&m) {
        Cow::Borrowed(_) => m,
        Cow::Owned(u) => u,
    })
}

/// Undo mboxrd quoting: one `>` off every `>…>From ` line.
fn unquote(m: &[u8]) -> Cow<'_, [u8]> {
    let quoted = |line: &[u8]| {
        let gt = line.iter().take_while(|&&c| c == b'>').count();
        gt > 0 && line[gt..].starts_with(b"From ")
    };
    if !lines(m).any(|(s, e, _)| quoted(&m[s..e])) {
        return Cow::Borrowed(m);
    }
    let mut out = Vec::with_capacity(m.len());
    for (s, e, n) in lines(m) {
        if quoted(&m[s..e]) {
            out.extend_from_slice(&m[s + 1..n]);
        } else {
            out.extend_from_slice(&m[s..n]);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_and_unquotes() {
        let mbox = b"From a@x Mon Jan  1 00:00:00 2024\r\nSubject: one\r\n\r\n>From here\r\n>>From there\r\n\r\nFrom b@y Mon Jan  1 00:00:01 2024\r\nSubject: two\r\n\r\nbody\r\n";
        let m = split_mbox(mbox);
        assert_eq!(m.len(), 2);
        assert_eq!(
            &*m[0],
            &b"Subject: one\r\n\r\nFrom here\r\n>From there\r\n\r\n"[..]
        );
        assert_eq!(&*m[1], &b"Subject: two\r\n\r\nbody\r\n"[..]);
        assert!(is_mbox(mbox));
        assert_eq!(split_mbox(b"Subject: x\n\nFrom the start\n").len(), 1);
    }

    fn streamed(data: &[u8]) -> Vec<Vec<u8>> {
        let mut r = MboxReader::new();
        let mut out = Vec::new();
        for line in data.split_inclusive(|&b| b == b'\n') {
            out.extend(r.line(line));
        }
        out.extend(r.finish());
        out
    }

    #[test]
    fn the_line_reader_splits_as_the_whole_file_splitter_does() {
        let cases: [&[u8]; 4] = [
            b"From a@x Mon Jan  1 00:00:00 2024\r\nSubject: one\r\n\r\n>From here\r\n>>From there\r\n\r\nFrom b@y Mon Jan  1 00:00:01 2024\r\nSubject: two\r\n\r\nbody\r\n",
            b"From a@x Mon\nSubject: 1\n\nbody\nFrom not a separator (no blank line before)\n\nFrom b@y Tue\nSubject: 2\n",
            b"From a@x Mon\n\n\nFrom b@y Tue\n\nFrom c@z Wed\nSubject: 3\n\nlast line without end",
            b"From a@x Mon\n",
        ];
        for data in cases {
            let whole: Vec<Vec<u8>> = split_mbox(data)
                .into_iter()
                .map(|m| m.into_owned())
                .collect();
            assert_eq!(streamed(data), whole, "{}", String::from_utf8_lossy(data));
        }
    }

    #[test]
    fn a_huge_message_is_cut_and_the_next_one_still_read() {
        let mut data = b"From a@x Mon\nSubject: big\n\n".to_vec();
        let line = [b'x'; 1023];
        for _ in 0..(super::super::MAX_MESSAGE_BYTES / 1024 + 10) {
            data.extend_from_slice(&line);
            data.push(b'\n');
        }
        data.extend_from_slice(b"\nFrom b@y Tue\nSubject: small\n\nok\n");
        let m = streamed(&data);
        assert_eq!(m.len(), 2);
        assert!(m[0].len() <= super::super::MAX_MESSAGE_BYTES + 1024);
        assert_eq!(m[1], b"Subject: small\n\nok\n");
    }
}
