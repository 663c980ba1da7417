//! A generic CSV of bounce events (an ESP's or a CRM's export): an `email` column plus any of
//! `status`/`code`, `diagnostic`/`reason`, `date`/`timestamp`, `type`/`kind`/`event`, `id`.
//!
//! As with the ESPs' JSON, the row's own words (`type`) are only a fallback: a row is classified
//! from its SMTP diagnostic and codes by the same decoder as an e-mail bounce, because exports
//! file sender blocks under "bounce" or "permanent" too. When those say nothing
//! (`unrecognized`), the type decides: a hard word makes it a missing mailbox, a block word a
//! refusal of the sender, a soft word a temporary failure that counts for nothing.

use super::classify::Action;
use super::esp::{Event, complaint, push};
use super::{Decoded, Kind, MAX_RECORDS, Record};
use crate::model::Reason;

/// Header names of the columns read (lowercase, `-`, `_` and spaces ignored).
const EMAIL: &[&str] = &[
    "email",
    "emailaddress",
    "recipient",
    "address",
    "rcpt",
    "to",
];
const STATUS: &[&str] = &["status", "enhancedcode", "statuscode", "dsnstatus"];
const CODE: &[&str] = &["code", "replycode", "smtpcode", "responsecode"];
const DIAGNOSTIC: &[&str] = &[
    "diagnostic",
    "diagnosticcode",
    "reason",
    "response",
    "smtpresponse",
    "description",
    "details",
    "message",
];
const DATE: &[&str] = &[
    "date",
    "timestamp",
    "time",
    "eventdate",
    "createdat",
    "bouncedat",
];
const TYPE: &[&str] = &[
    "type",
    "kind",
    "event",
    "eventtype",
    "bouncetype",
    "category",
];
const ID: &[&str] = &["id", "eventid", "messageid", "sgeventid"];
const MTA: &[&str] = &["mx", "mxhost", "remotemta", "host"];

fn normalized(name: &str) -> String {
    name.trim()
        .trim_start_matches('\u{feff}')
        .chars()
        .filter(|c| !matches!(c, '-' | '_' | ' '))
        .flat_map(char::to_lowercase)
        .collect()
}

/// The delimiter of a header line that names an email column, if the line is one: a message's
/// first line (`Name: value`, `From sender date`) never is, since a header name holds no colon.
pub fn csv_delimiter(first_line: &[u8]) -> Option<u8> {
    let line = std::str::from_utf8(first_line).ok()?;
    if line.contains(':') {
        return None;
    }
    [b',', b';', b'\t'].into_iter().find(|&d| {
        line.split(d as char).count() > 1
            && line
                .split(d as char)
                .any(|cell| EMAIL.contains(&normalized(cell.trim_matches('"')).as_str()))
    })
}

/// What a `type` word says, before the diagnostic is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Said {
    Hard,
    Soft,
    Delayed,
    Block,
    Complaint,
    Delivered,
    /// A failure of unstated kind (`bounce`, `failed`, `dropped`).
    Failed,
    /// Not a delivery outcome (open, click, unsubscribe …): no record.
    Other,
}

/// The kinds' own names and the ESPs' words for them.
fn said(word: &str) -> Said {
    match normalized(word).as_str() {
        "hard" | "hardbounce" | "permanent" | "permanentbounce" | "noemail" | "invalid"
        | "userunknown" => Said::Hard,
        "soft" | "softbounce" | "transient" | "temporary" | "mailboxfull" | "generalbounce" => {
            Said::Soft
        }
        "deferred" | "delayed" | "delay" | "deferral" => Said::Delayed,
        "block" | "blocked" | "rejected" | "policy" | "spamblock" => Said::Block,
        "complaint" | "complained" | "spamreport" | "spamcomplaint" | "abuse" => Said::Complaint,
        "delivered" | "delivery" | "sent" | "relayed" => Said::Delivered,
        "" | "bounce" | "bounced" | "failed" | "failure" | "dropped" => Said::Failed,
        _ => Said::Other,
    }
}

/// Decode one CSV export.
pub fn decode_csv(bytes: &[u8]) -> Decoded {
    let first_line = bytes
        .split(|&b| b == b'\n' || b == b'\r')
        .next()
        .unwrap_or_default();
    let Some(delimiter) = csv_delimiter(first_line) else {
        return Decoded::NotABounce;
    };
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .from_reader(bytes);
    let Ok(header) = reader.byte_headers().cloned() else {
        return Decoded::Unparseable;
    };
    let column = |names: &[&str]| {
        header
            .iter()
            .position(|h| names.contains(&normalized(&String::from_utf8_lossy(h)).as_str()))
    };
    let Some(email) = column(EMAIL) else {
        return Decoded::NotABounce;
    };
    let columns = Columns {
        email,
        status: column(STATUS),
        code: column(CODE),
        diagnostic: column(DIAGNOSTIC),
        date: column(DATE),
        kind: column(TYPE),
        id: column(ID),
        mta: column(MTA),
    };
    let mut out = Vec::new();
    for row in reader.byte_records() {
        if out.len() >= MAX_RECORDS {
            break;
        }
        // A broken row is skipped; the others still count.
        let Ok(row) = row else { continue };
        columns.record(&row, &mut out);
    }
    Decoded::Records(out)
}

struct Columns {
    email: usize,
    status: Option<usize>,
    code: Option<usize>,
    diagnostic: Option<usize>,
    date: Option<usize>,
    kind: Option<usize>,
    id: Option<usize>,
    mta: Option<usize>,
}

impl Columns {
    fn record(&self, row: &csv::ByteRecord, out: &mut Vec<Record>) {
        let cell = |i: Option<usize>| {
            i.and_then(|i| row.get(i))
                .map(|c| String::from_utf8_lossy(c).trim().to_owned())
                .filter(|c| !c.is_empty())
        };
        let Some(recipient) = cell(Some(self.email)) else {
            return;
        };
        let said = said(cell(self.kind).as_deref().unwrap_or(""));
        let date = cell(self.date);
        let id = cell(self.id);
        // `status` may hold an enhanced code or, in many exports, the bare reply code; `code`
        // likewise.
        let (mut status, mut code) = (None, None);
        for text in [cell(self.status), cell(self.code)].into_iter().flatten() {
            if text.contains('.') {
                status = status.or(Some(text));
            } else if let Ok(c) = text.parse::<u16>() {
                code = code.or(Some(c));
            }
        }
        let action = match said {
            Said::Other => return,
            Said::Complaint => return complaint(&recipient, date, id, Some("abuse".into()), out),
            Said::Delivered => Action::Delivered,
            Said::Delayed => Action::Delayed,
            Said::Hard | Said::Soft | Said::Block | Said::Failed => Action::Failed,
        };
        let before = out.len();
        push(
            Event {
                recipient: &recipient,
                action,
                status: status.as_deref(),
                code,
                diagnostic: cell(self.diagnostic).unwrap_or_default(),
                date,
                id,
                reporting: None,
                remote: cell(self.mta),
                esp_hard: said == Said::Hard,
            },
            out,
        );
        if let Some(r) = out.get_mut(before)
            && r.reason == Some(Reason::Unrecognized)
        {
            match said {
                Said::Block => {
                    r.kind = Kind::Block;
                    r.reason = Some(Reason::PolicyRejected);
                }
                // Unrecognized is never about the mailbox, so it is soft and counts for nothing.
                Said::Soft => r.kind = Kind::Soft,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(text: &str) -> Vec<Record> {
        match decode_csv(text.as_bytes()) {
            Decoded::Records(r) => r,
            other => panic!("not records: {other:?}"),
        }
    }

    #[test]
    fn a_header_with_an_email_column_is_a_csv_and_a_message_header_is_not() {
        assert_eq!(csv_delimiter(b"email,status,diagnostic"), Some(b','));
        assert_eq!(csv_delimiter(b"\"Email Address\";Type"), Some(b';'));
        assert_eq!(csv_delimiter(b"date\trecipient\tcode"), Some(b'\t'));
        assert_eq!(csv_delimiter(b"From: a@b.test"), None);
        assert_eq!(
            csv_delimiter(b"From MAILER-DAEMON Thu Jan  1 00:00:00 2026"),
            None
        );
        assert_eq!(csv_delimiter(b"name,company"), None);
        assert_eq!(csv_delimiter(b"email"), None);
    }

    #[test]
    fn the_diagnostic_decides_and_the_type_word_is_the_fallback() {
        let r = records(
            "email,type,status,diagnostic,date\n\
             gone@x.test,soft,,550 5.1.1 user unknown,2026-11-01T10:00:00Z\n\
             blocked@x.test,bounce,5.7.1,554 5.7.1 Service unavailable; client host blocked using zen.spamhaus.org,\n\
             full@x.test,soft,4.2.2,,\n\
             word-hard@x.test,HardBounce,,,\n\
             word-block@x.test,blocked,,,\n\
             word-soft@x.test,Transient,,,\n\
             later@x.test,deferred,,451 4.7.1 greylisted,\n\
             ok@x.test,delivered,,250 ok,\n\
             fan@x.test,open,,,\n",
        );
        let kinds: Vec<(&str, Kind, Option<Reason>)> = r
            .iter()
            .map(|r| (r.recipient.as_str(), r.kind, r.reason))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("gone@x.test", Kind::Hard, Some(Reason::MailboxNotFound)),
                ("blocked@x.test", Kind::Block, Some(Reason::ProberBlocked)),
                ("full@x.test", Kind::Soft, Some(Reason::MailboxFull)),
                (
                    "word-hard@x.test",
                    Kind::Hard,
                    Some(Reason::MailboxNotFound)
                ),
                (
                    "word-block@x.test",
                    Kind::Block,
                    Some(Reason::PolicyRejected)
                ),
                ("word-soft@x.test", Kind::Soft, Some(Reason::Unrecognized)),
                ("later@x.test", Kind::Soft, Some(Reason::Greylisted)),
                ("ok@x.test", Kind::Delivered, Some(Reason::MailboxAccepted)),
            ]
        );
        assert_eq!(r[0].date.as_deref(), Some("2026-11-01T10:00:00Z"));
        assert_eq!(r[2].status.map(|s| s.to_string()).as_deref(), Some("4.2.2"));
        assert_eq!(r[6].action, Action::Delayed);
    }

    #[test]
    fn complaints_reply_codes_ids_and_broken_rows() {
        let r = records(
            "Recipient;Event;Code;Event-ID\n\
             angry@x.test;spamreport;;e1\n\
             gone@x.test;bounce;550;e2\n\
             \"unclosed;bounce;550;e3\n\
             ;bounce;550;e4\n",
        );
        assert_eq!(r[0].kind, Kind::Complaint);
        assert_eq!(r[0].message_id.as_deref(), Some("e1"));
        assert_eq!(r[1].reply_code, Some(550));
        assert_eq!(r[1].message_id.as_deref(), Some("e2"));
        // The unclosed quote swallows the rest of the file: no recipient with an '@' comes
        // out of it, and the rows before it are kept.
        assert_eq!(r.len(), 2);
    }
}
