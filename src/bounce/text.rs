//! Free-text bounces: the failed recipients and their diagnostics in the human-readable text
//! of MTAs that write no delivery-status part (qmail, older Sendmail, Exim, Exchange, Gmail,
//! Yahoo, Courier, OpenSMTPD, Lotus Notes …).
//!
//! One format-neutral reading rather than a parser per MTA: the report's text is cut where the
//! returned original begins, every address in what is left that is not the sender's or a
//! mail system's own is a failed recipient (in order of first mention), and the text from one
//! such address to the next is its diagnostic. The reply decoder then reads the SMTP code and
//! phrases out of that text. Every MTA format seen puts the diagnostic after the address it
//! concerns (`<a@b>:\n550 …`, `a@b\n    SMTP error …: 550 …`, `Delivery to the following
//! recipient failed permanently:\n  a@b\n Technical details …`).

/// Lines (lower-cased, trimmed) at which the returned original message, not the report, begins.
const ORIGINAL_MARKERS: &[&str] = &[
    "below this line is a copy of the message",
    "original message follows",
    "original message headers",
    "original message header",
    "this is a copy of the message",
    "message header follows",
    "returned mail header follows",
    "returned message follows",
    "headers of the original message",
    "the header of the original message",
    "original message:",
    "----- original message -----",
    "--- original message ---",
    "text of returned message",
    "unsent message below",
    "the headers of your message",
    "message headers follow",
    "your message reads",
    "a copy of the original message",
    "original-message-header",
];

/// Header lines that open a quoted original when they appear at the start of a line.
const ORIGINAL_HEADERS: &[&str] = &[
    "return-path:",
    "received:",
    "dkim-signature:",
    "x-original-to:",
];

/// Local parts of mail systems' own addresses, never a failed recipient.
const SYSTEM_LOCALS: &[&str] = &[
    "mailer-daemon",
    "postmaster",
    "mail-daemon",
    "maildaemon",
    "noreply",
    "no-reply",
    "bounce",
    "bounces",
    "abuse",
];

/// A recipient found in the text, with the text that concerns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub recipient: String,
    pub diagnostic: String,
}

/// The report part of a bounce's text: up to the first line that starts the returned original.
pub fn report_region(body: &str) -> &str {
    let mut at = 0;
    for line in body.split_inclusive('\n') {
        let l = line.trim().to_ascii_lowercase();
        let l = l.trim_matches(|c: char| c == '-' || c == '=' || c == '*' || c == '_' || c == ' ');
        if ORIGINAL_MARKERS.iter().any(|m| {
            let m = m.trim_matches(|c: char| c == '-' || c == ' ');
            l.starts_with(m) || (l.len() < 80 && l.contains(m))
        }) || (at > 0 && ORIGINAL_HEADERS.iter().any(|h| l.starts_with(h)))
        {
            return &body[..at];
        }
        at += line.len();
    }
    body
}

/// Every address-looking token of `s`, with its byte offset.
pub fn addresses(s: &str) -> Vec<(usize, String)> {
    let b = s.as_bytes();
    let local = |c: u8| c.is_ascii_alphanumeric() || b"._+-=!#$%&'*/?^`{|}~".contains(&c);
    let domain = |c: u8| c.is_ascii_alphanumeric() || c == b'.' || c == b'-';
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(p) = memchr::memchr(b'@', &b[i..]) {
        let at = i + p;
        let mut start = at;
        while start > 0 && local(b[start - 1]) {
            start -= 1;
        }
        let mut end = at + 1;
        while end < b.len() && domain(b[end]) {
            end += 1;
        }
        i = end.max(at + 1);
        let l = &s[start..at];
        let l = l.trim_start_matches(['.', '\'', '=', '-']);
        let d = s[at + 1..end].trim_end_matches(['.', '-']);
        if l.is_empty() || !d.contains('.') || d.starts_with('.') || l.len() > 64 || d.len() > 255 {
            continue;
        }
        if d.rsplit('.')
            .next()
            .is_none_or(|tld| tld.len() < 2 || tld.bytes().all(|c| c.is_ascii_digit()))
        {
            continue;
        }
        out.push((at - l.len(), format!("{l}@{d}")));
        if out.len() >= super::MAX_RECORDS * 4 {
            break;
        }
    }
    out
}

fn is_system(address: &str) -> bool {
    let local = address.split('@').next().unwrap_or("").to_ascii_lowercase();
    SYSTEM_LOCALS.contains(&local.as_str())
}

/// An address in a Message-ID-like context (`Message-ID: <…@…>`, `id <…@…>`) is no recipient.
fn in_id_context(s: &str, at: usize) -> bool {
    let line_start = s[..at].rfind('\n').map_or(0, |p| p + 1);
    let before = s[line_start..at].to_ascii_lowercase();
    // Also the original's own header lines quoted in the report (Exchange's "Your message
    // To: … Subject: …" block), which name the sender or the whole To list, not the failure.
    [
        "message-id",
        "message id",
        "msgid",
        "in-reply-to",
        "references",
        "envelope-id",
        "queue id",
        "x-",
        "to:",
        "cc:",
        "from:",
        "sender:",
        "reply-to:",
        "return-path:",
    ]
    .iter()
    .any(|w| before.trim_start().starts_with(w) || before.contains(&format!("{w}:")))
}

/// The failed recipients of a free-text report, in order of first mention, each with the text
/// up to the next one. `exclude` holds the addresses that are the sender's (compared without
/// case).
pub fn failures(region: &str, exclude: &[String]) -> Vec<Failure> {
    let mut found: Vec<(usize, String)> = Vec::new();
    for (at, address) in addresses(region) {
        if is_system(&address)
            || exclude.iter().any(|e| e.eq_ignore_ascii_case(&address))
            || found.iter().any(|(_, f)| f.eq_ignore_ascii_case(&address))
            || in_id_context(region, at)
        {
            continue;
        }
        found.push((at, address));
        if found.len() >= super::MAX_RECORDS {
            break;
        }
    }
    let mut out = Vec::with_capacity(found.len());
    for (i, (at, address)) in found.iter().enumerate() {
        let end = found.get(i + 1).map_or(region.len(), |(next, _)| *next);
        let mut diagnostic = clean(&region[at + address.len()..end]);
        if diagnostic.len() < 3 {
            // Nothing after it (`Unknown user: a@b` ends the report): its own line says why.
            diagnostic = clean(&line_around(region, *at).replace(address.as_str(), " "));
        }
        out.push(Failure {
            recipient: address.clone(),
            diagnostic: super::truncate(diagnostic, super::MAX_DIAGNOSTIC),
        });
    }
    out
}

/// The text that concerns `recipient` in a report's text (for a DSN whose recipient has no
/// Diagnostic-Code): from its first mention to the next address or a blank-line paragraph end.
pub fn diagnostic_for(region: &str, recipient: &str, exclude: &[String]) -> Option<String> {
    let lower = region.to_ascii_lowercase();
    let at = lower.find(&recipient.to_ascii_lowercase())?;
    let rest = &region[at + recipient.len()..];
    // The sender's address inside the diagnostic (`after MAIL FROM:<sender>: 550 …`) does not
    // end it; another recipient does.
    let next = addresses(rest)
        .into_iter()
        .find(|(_, a)| {
            !a.eq_ignore_ascii_case(recipient)
                && !is_system(a)
                && !exclude.iter().any(|e| e.eq_ignore_ascii_case(a))
        })
        .map_or(rest.len(), |(p, _)| p);
    let text = clean(&rest[..next]);
    (!text.is_empty()).then(|| super::truncate(text, super::MAX_DIAGNOSTIC))
}

fn line_around(s: &str, at: usize) -> &str {
    let start = s[..at].rfind('\n').map_or(0, |p| p + 1);
    let end = s[at..].find('\n').map_or(s.len(), |p| at + p);
    &s[start..end]
}

/// Squash whitespace and drop the punctuation an address leaves behind (`>:`, `...`).
fn clean(text: &str) -> String {
    let t = super::squash(text);
    t.trim_start_matches(|c: char| {
        matches!(c, '>' | ':' | '.' | ',' | ')' | ']' | '"' | '\'' | ' ')
    })
    .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qmail_style_text() {
        let body = "Hi. This is the qmail-send program at mx.example.jp.\n\
            I'm afraid I wasn't able to deliver your message to the following addresses.\n\n\
            <kijitora@example.ne.jp>:\nremote host 192.0.2.32 said: 550 Unknown user kijitora@example.ne.jp\n\n\
            <neko@example.org>:\nmailbox is full\n\n\
            --- Below this line is a copy of the message.\n\nFrom: sender@example.jp\nTo: x@y.example\n";
        let region = report_region(body);
        assert!(!region.contains("sender@example.jp"));
        let f = failures(region, &[]);
        assert_eq!(f.len(), 2);
        assert_eq!(f[0].recipient, "kijitora@example.ne.jp");
        assert!(f[0].diagnostic.contains("550 Unknown user"), "{f:?}");
        assert_eq!(f[1].diagnostic, "mailbox is full");
    }
}
