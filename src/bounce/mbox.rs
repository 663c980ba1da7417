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
}
