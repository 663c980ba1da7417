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
            SmtpOutcome::Unreachable(why) => write!(f, "no mail server would talk: {why}"),
            SmtpOutcome::Timeout(why) => f.write_str(why),
            SmtpOutcome::ProtocolError(why) => f.write_str(why),
            SmtpOutcome::Smtputf8Unsupported => f.write_str(
                "the local part is not ASCII and the server does not advertise SMTPUTF8",
            ),
            SmtpOutcome::Unsendable(why) => f.write_str(why),
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
        s.push_str(&text.join(" / "));
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
