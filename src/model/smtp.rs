//! What the SMTP stage learned of a mailbox: the evidence `verdict::decide_mailbox` reads.

use std::fmt;

use serde::Serialize;

use super::reply::Reply;

/// What the mail servers said about one mailbox, after retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmtpOutcome {
    /// The reply to `RCPT TO` (a 4xx when it was still deferred after the retries).
    Replied(Reply),
    /// The server refused the prober before any RCPT (greeting, HELO or MAIL FROM): it says
    /// nothing about the mailbox.
    SessionRefused(Reply),
    /// No server would take a connection (or all were given up on).
    Unreachable(String),
    Timeout(String),
    ProtocolError(String),
    /// Non-ASCII local part and the server does not advertise SMTPUTF8.
    Smtputf8Unsupported,
    /// The address may not be sent (control characters …); never reached the wire.
    Unsendable(String),
    /// Not probed: the domain's mail server belongs to this provider (its display name),
    /// whose servers accept every recipient at RCPT and bounce later.
    ProviderAcceptsAll(String),
}

/// Whether the domain accepted a mailbox that cannot exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum CatchAll {
    Yes,
    No,
    /// The canary got no decisive answer.
    Undetermined,
}

/// The SMTP evidence of one mailbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpEvidence {
    pub outcome: SmtpOutcome,
    /// `name [ip]` of the server that answered last.
    pub server: Option<String>,
    /// RCPT commands sent for this mailbox.
    pub attempts: u32,
    pub catch_all: CatchAll,
}

impl fmt::Display for SmtpOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SmtpOutcome::Replied(r) => write!(f, "{}", one_line(r)),
            SmtpOutcome::SessionRefused(r) => {
                write!(f, "the server refused the prober: {}", one_line(r))
            }
            SmtpOutcome::Unreachable(why) => {
                write!(f, "no mail server would talk: {}", printable(why))
            }
            SmtpOutcome::Timeout(why)
            | SmtpOutcome::ProtocolError(why)
            | SmtpOutcome::Unsendable(why) => f.write_str(&printable(why)),
            SmtpOutcome::ProviderAcceptsAll(provider) => write!(
                f,
                "not probed: {} accepts every address at RCPT and bounces unknown ones later",
                printable(provider)
            ),
            SmtpOutcome::Smtputf8Unsupported => f.write_str(
                "the local part is not ASCII and the server does not advertise SMTPUTF8",
            ),
        }
    }
}

/// A reply on one line, for the detail column.
pub fn one_line(r: &Reply) -> String {
    let mut s = format!("{}", r.code);
    if let Some(e) = r.enhanced {
        s.push(' ');
        s.push_str(&e.to_string());
    }
    let text: Vec<&str> = r
        .text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if !text.is_empty() {
        s.push(' ');
        s.push_str(&printable(&text.join(" / ")));
    }
    const MAX: usize = 300;
    if s.len() > MAX {
        let mut cut = MAX;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// Server text as it may be shown: control characters (NUL, ESC sequences that would drive a
/// terminal, line breaks) and the bidirectional overrides that reorder what a person reads are
/// written as escapes such as `\x1b` or `\u{202e}`, so the detail column, the terminal and
/// the report show what the server sent without acting on it.
pub fn printable(text: &str) -> std::borrow::Cow<'_, str> {
    let hostile = |c: char| {
        c.is_control()
            || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(hostile) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            c if !hostile(c) => out.push(c),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_s_control_characters_never_reach_the_detail() {
        // Issue #14 item 10: NUL, 0x01 and an ESC sequence in a server's reply.
        let reply =
            Reply::parse("550 5.1.1 no\u{0}such \u{1}user \u{1b}[31mred\u{202e}txt").unwrap();
        let line = one_line(&reply);
        assert!(!line.chars().any(|c| c.is_control()), "{line:?}");
        assert_eq!(
            line,
            "550 5.1.1 no\\x00such \\x01user \\x1b[31mred\\u{202e}txt"
        );
        let outcome = SmtpOutcome::ProtocolError("greeting \u{7}bell".into());
        assert_eq!(outcome.to_string(), "greeting \\x07bell");
        assert_eq!(printable("plain text é"), "plain text é");
    }
}
