//! Bounce decoding: bytes in, one [`Record`] per recipient out (pure: no files, no sockets).
//!
//! What a send produced comes back in three shapes, each with its own entry point:
//! - one e-mail ([`decode_message`]): an RFC 3464 / RFC 6533 delivery status notification, the
//!   free-text bounce of an MTA that writes none, an ARF feedback report (RFC 5965) or an
//!   RFC 3834 auto-reply;
//! - a Unix mbox of such e-mails ([`split_mbox`], then [`decode_message`] on each);
//! - an ESP's event JSON ([`decode_json`]): Amazon SES (also wrapped in SNS), SendGrid,
//!   Mailgun, Postmark; or a generic CSV export of events ([`decode_csv`]).
//!
//! [`decode`] tells them apart by content. Every failure is classified by the same decoder
//! that `prebounce explain` and the SMTP stage use ([`crate::smtp::reply::classify`]), so a
//! bounce and a probe reply mean the same thing; [`classify`] says how a report's fields become
//! that decoder's input and how its reason becomes a [`Kind`].
//!
//! Hostile input costs bounded time and memory: a message is cut at [`MAX_MESSAGE_BYTES`]
//! before it is parsed, the MIME parser (mail-parser) walks nested parts iteratively and
//! decodes encoded nested messages only three levels deep, and the text scans here are linear
//! and capped ([`MAX_RECORDS`] recipients per message).

mod classify;
mod csv_events;
mod dsn;
mod esp;
mod mbox;
mod message;
pub use message::MIME_PARSER_SOURCE;
pub mod report;
mod soft;
mod text;

use serde::Serialize;

pub use classify::{Action, classify};
pub use csv_events::decode_csv;
pub use esp::decode_json;
pub use mbox::{MboxReader, is_mbox, split_mbox};
pub use message::decode_message;
pub use soft::{
    Crossing, Event, SoftRule, content_hash, counts_toward_soft_limit, event_time, soft_crossing,
};

use crate::model::Reason;
use crate::model::reply::EnhancedCode;

/// A message is read up to this many bytes; the rest (in practice the returned original's
/// attachments, which come after the report parts) is ignored.
pub const MAX_MESSAGE_BYTES: usize = 16 << 20;

/// At most this many records from one message or JSON document: a report listing more
/// recipients is cut there rather than letting one input allocate without bound.
pub const MAX_RECORDS: usize = 10_000;

/// Longest diagnostic text kept per record, in bytes (a quoted transcript can be long).
pub const MAX_DIAGNOSTIC: usize = 2_000;

/// What a record means for the address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// The address or its domain is gone: suppress.
    Hard,
    /// A full mailbox, a temporary failure, a delay: count, retry.
    Soft,
    /// The receiver refused the sender (policy, reputation, authentication, content): says
    /// nothing about the address, never suppresses it.
    Block,
    /// An abuse report (ARF): the recipient does not want the mail.
    Complaint,
    /// A vacation or other automatic reply: not a bounce.
    AutoReply,
    /// Delivered or relayed.
    Delivered,
}

impl Kind {
    pub const ALL: [Kind; 6] = [
        Kind::Hard,
        Kind::Soft,
        Kind::Block,
        Kind::Complaint,
        Kind::AutoReply,
        Kind::Delivered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Hard => "hard",
            Kind::Soft => "soft",
            Kind::Block => "block",
            Kind::Complaint => "complaint",
            Kind::AutoReply => "auto-reply",
            Kind::Delivered => "delivered",
        }
    }
}

/// One recipient of one report or event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub recipient: String,
    /// The event's date as the report wrote it (RFC 5322 date or ISO 8601); None if unknown.
    pub date: Option<String>,
    /// The RFC 3463 enhanced status code: the report's `Status`, else the one in its
    /// diagnostic.
    pub status: Option<EnhancedCode>,
    /// The SMTP reply code found in the diagnostic (or given by the ESP).
    pub reply_code: Option<u16>,
    pub diagnostic: Option<String>,
    pub reporting_mta: Option<String>,
    pub remote_mta: Option<String>,
    /// The report's Message-ID or the ESP's event or message id.
    pub message_id: Option<String>,
    /// The DSN `Action` (or what the ESP's event type amounts to).
    pub action: Action,
    pub kind: Kind,
    /// The project's reason for a failure, delay or delivery; None for complaints and
    /// auto-replies, which are not SMTP answers.
    pub reason: Option<Reason>,
    /// ARF `Feedback-Type` (abuse, fraud, auth-failure …).
    pub feedback_type: Option<String>,
}

/// What one input held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A report or events, with their records (possibly none: a DSN with no recipient).
    Records(Vec<Record>),
    /// A readable message or JSON document that is not a bounce, complaint or auto-reply.
    NotABounce,
    /// Not a message (no header), or JSON that does not parse.
    Unparseable,
}

/// The shape of an input, told by its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Container {
    Message,
    Mbox,
    Json,
    /// A CSV export of events: its header row names an email column.
    Csv,
}

/// Mbox if it opens with a `From ` line, JSON if its first non-blank byte opens an object or
/// array, CSV if its first line is a header row naming an email column, otherwise one message.
pub fn detect(bytes: &[u8]) -> Container {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    match bytes.get(start) {
        Some(b'{' | b'[') => Container::Json,
        _ if is_mbox(bytes) => Container::Mbox,
        _ if csv_events::csv_delimiter(first_line(bytes)).is_some() => Container::Csv,
        _ => Container::Message,
    }
}

/// Decode one input of any shape; an mbox gives one result per message, in order (its
/// message number is the index plus one).
pub fn decode(bytes: &[u8]) -> Vec<Decoded> {
    match detect(bytes) {
        Container::Json => vec![decode_json(bytes)],
        Container::Csv => vec![decode_csv(bytes)],
        Container::Mbox => split_mbox(bytes)
            .iter()
            .map(|m| decode_message(m))
            .collect(),
        Container::Message => vec![decode_message(bytes)],
    }
}

/// The first line, without its line end.
fn first_line(bytes: &[u8]) -> &[u8] {
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    let end = bytes
        .iter()
        .position(|&b| b == b'\n' || b == b'\r')
        .unwrap_or(bytes.len());
    &bytes[..end]
}

/// Cut `s` to at most `max` bytes on a char boundary.
fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Whitespace runs (line breaks included) become one space; the ends are trimmed.
fn squash(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}
