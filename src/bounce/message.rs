//! One e-mail → its records: a delivery-status part if there is one, else an ARF feedback
//! report, else the free text of an MTA's bounce, else an auto-reply; otherwise not a bounce.
//!
//! MIME is parsed with `mail-parser` (Stalwart Labs, Apache-2.0 OR MIT, 0.11: the last line
//! that builds with this crate's Rust 1.89). It was chosen over hand-written MIME and over
//! `mailparse` because it never panics by design (fuzzed upstream), walks nested multiparts
//! with an explicit stack instead of recursion, parses encoded nested messages only three
//! levels deep, recovers from missing boundaries and bad encodings instead of failing, decodes
//! quoted-printable, base64, RFC 2047 words and legacy charsets, and hands back parts it does
//! not know (`message/delivery-status`, `message/feedback-report`) decoded but unparsed, which
//! is what the report readers here want. What a report means is decided here, not there.

use mail_parser::{Message, MessageParser, MimeHeaders, PartType};

use super::classify::{Action, classify};
use super::{Decoded, Kind, MAX_DIAGNOSTIC, MAX_MESSAGE_BYTES, MAX_RECORDS, Record, dsn, text};
use crate::model::reply::EnhancedCode;

/// What the MIME walk found in a message.
#[derive(Default)]
struct Parts {
    delivery_status: Vec<String>,
    feedback_report: Option<String>,
    /// The readable text of the report (text/plain and text/html parts, not the original's).
    body: String,
    /// Addresses of the returned original's headers: its sender(s) and its recipients.
    original_senders: Vec<String>,
    original_recipients: Vec<String>,
}

/// Decode one message. Never panics; reads at most [`MAX_MESSAGE_BYTES`].
pub fn decode_message(bytes: &[u8]) -> Decoded {
    // mail-parser 0.11 panics on some malformed multiparts (a message/rfc822 part whose
    // headers end at a soft line break: "Invalid part ID, could not find multipart", found by
    // tests/bounces.rs `arbitrary_mime_never_panics`). Such a message is unparseable, and the
    // other messages of the import go on. The binary keeps the crate's panic message off
    // stderr (`MIME_PARSER_SOURCE`).
    std::panic::catch_unwind(|| decode_unguarded(bytes)).unwrap_or(Decoded::Unparseable)
}

/// The path fragment of the MIME parser's sources, for a panic hook that silences the panics
/// [`decode_message`] catches.
pub const MIME_PARSER_SOURCE: &str = "mail-parser-";

fn decode_unguarded(bytes: &[u8]) -> Decoded {
    let bytes = &bytes[..bytes.len().min(MAX_MESSAGE_BYTES)];
    let normalized = lone_cr_to_lf(bytes);
    let bytes: &[u8] = normalized.as_deref().unwrap_or(bytes);
    let Some(message) = MessageParser::default().parse(bytes) else {
        return Decoded::Unparseable;
    };
    if message.headers().is_empty() {
        return Decoded::Unparseable;
    }
    let mut parts = walk(&message);
    if parts.original_recipients.is_empty() {
        // The original pasted into the text after a marker: read its header fields.
        let region_len = text::report_region(&parts.body).len();
        let quoted = parts.body[region_len..].to_owned();
        for (name, value) in dsn::fields(&quoted).into_iter().take(200) {
            add_original_field(&name, &value, &mut parts);
        }
    }
    let message_id = message.message_id().map(str::to_owned);
    let date = message.header_raw("Date").map(|d| d.trim().to_owned());
    let sender_side = sender_addresses(&message, &parts);

    // A DSN part; failing that, DSN fields pasted into the text (forwarded or mangled reports).
    let mut statuses = parts.delivery_status.clone();
    if statuses.is_empty()
        && let Some(at) = find_field_line(&parts.body, "final-recipient:")
    {
        statuses.push(parts.body[at..].to_owned());
    }
    for status in &statuses {
        let records = from_dsn(status, &parts, &message_id, &date);
        if !records.is_empty() {
            return Decoded::Records(records);
        }
    }
    // An ESP notification mailed as JSON (SES through SNS e-mail subscriptions).
    if parts.body.trim_start().starts_with('{')
        && let Decoded::Records(mut records) = json_in_text(parts.body.trim())
    {
        for r in &mut records {
            r.message_id = r.message_id.take().or_else(|| message_id.clone());
        }
        return Decoded::Records(records);
    }
    if let Some(report) = &parts.feedback_report {
        return Decoded::Records(from_arf(report, &parts, &message_id, &date));
    }
    // An auto-reply often quotes the message or says "unable to deliver" in its prose; unless
    // a mail system sent it, its Auto-Submitted header decides.
    let auto_reply = is_auto_reply(&message);
    let from_a_person = auto_reply && !sent_by_mail_system(&message);
    if !from_a_person && looks_like_bounce(&message, &parts) {
        return from_text(&message, &parts, &sender_side, &message_id, &date);
    }
    if auto_reply && let Some(r) = auto_reply_record(&message, &message_id, &date) {
        return Decoded::Records(vec![r]);
    }
    Decoded::NotABounce
}

/// A free-text bounce (an MTA's prose): the failed addresses its report region names, else
/// those Exim lists in X-Failed-Recipients, else the returned original's recipient.
fn from_text(
    message: &Message<'_>,
    parts: &Parts,
    sender_side: &[String],
    message_id: &Option<String>,
    date: &Option<String>,
) -> Decoded {
    let region = text::report_region(&parts.body);
    let mut found = text::failures(region, sender_side);
    if found.is_empty() {
        // Anonymised or forwarded reports sometimes fail the very address the bounce went
        // to: when nothing else is named, the sender's side is not excluded.
        found = text::failures(region, &parts.original_senders);
    }
    // Exim names its failed recipients in a header: trust it over the text's order.
    if let Some(listed) = message.header_raw("X-Failed-Recipients") {
        let listed: Vec<String> = text::addresses(listed)
            .into_iter()
            .map(|(_, a)| a)
            .collect();
        if !listed.is_empty() {
            // Where the text spells an address differently, pair the two lists by order.
            let same_count = listed.len() == found.len();
            found = listed
                .iter()
                .enumerate()
                .map(|(i, a)| text::Failure {
                    recipient: a.clone(),
                    diagnostic: text::diagnostic_for(region, a, sender_side)
                        .or_else(|| same_count.then(|| found[i].diagnostic.clone()))
                        // One failure the text never names (Google Groups writes the group's
                        // name, not its address): the whole report is what it says of it.
                        .or_else(|| {
                            (listed.len() == 1)
                                .then(|| super::truncate(super::squash(region), MAX_DIAGNOSTIC))
                        })
                        .unwrap_or_default(),
                })
                .collect();
        }
    }
    if found.is_empty() {
        // The text names nobody: the returned original's recipient is the one that failed.
        found = parts
            .original_recipients
            .iter()
            .filter(|a| !sender_side.iter().any(|s| s.eq_ignore_ascii_case(a)))
            .take(1)
            .map(|a| text::Failure {
                recipient: a.clone(),
                diagnostic: super::truncate(super::squash(region), MAX_DIAGNOSTIC),
            })
            .collect();
    }
    if !found.is_empty() {
        let delayed = is_delay_notice(message, region);
        return Decoded::Records(
            found
                .into_iter()
                .take(MAX_RECORDS)
                .map(|f| {
                    let action = if delayed {
                        Action::Delayed
                    } else {
                        Action::Failed
                    };
                    record(f.recipient, action, None, f.diagnostic, message_id, date)
                })
                .collect(),
        );
    }
    Decoded::NotABounce
}

/// An auto-reply: a delivery to its sender, with its subject as the diagnostic.
fn auto_reply_record(
    message: &Message<'_>,
    message_id: &Option<String>,
    date: &Option<String>,
) -> Option<Record> {
    let recipient = message
        .from()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .map(str::to_owned)?;
    let mut r = record(
        recipient,
        Action::Delivered,
        None,
        String::new(),
        message_id,
        date,
    );
    r.kind = Kind::AutoReply;
    r.reason = None;
    r.diagnostic = message
        .subject()
        .map(|s| super::truncate(s.to_owned(), MAX_DIAGNOSTIC));
    Some(r)
}

/// Old Mac files end lines with a lone CR, which the MIME parser does not take for a line end:
/// such data is copied with LF in their place (None: no lone CR, nothing to copy).
fn lone_cr_to_lf(bytes: &[u8]) -> Option<Vec<u8>> {
    let lone = |i: usize| bytes[i] == b'\r' && bytes.get(i + 1) != Some(&b'\n');
    let first = memchr::memchr_iter(b'\r', bytes).find(|&i| lone(i))?;
    let mut out = bytes.to_vec();
    for i in memchr::memchr_iter(b'\r', &bytes[first..]).map(|i| i + first) {
        if lone(i) {
            out[i] = b'\n';
        }
    }
    Some(out)
}

/// The JSON of a notification mailed as text; mailers fold its long line (a line break and a
/// space inside a string), which is undone when the text does not parse as it is.
fn json_in_text(body: &str) -> Decoded {
    match super::esp::decode_json_prefix(body.as_bytes()) {
        Decoded::Unparseable => {
            let unfolded = body
                .replace("\r\n ", " ")
                .replace("\n ", " ")
                .replace("\r ", " ");
            super::esp::decode_json_prefix(unfolded.as_bytes())
        }
        decoded => decoded,
    }
}

/// Collect the report parts, the text and the original's addresses from the top message's
/// parts (a returned original's own parts are not walked: its text is not the report).
fn walk(message: &Message<'_>) -> Parts {
    let mut parts = Parts::default();
    for part in &message.parts {
        let (ctype, subtype) = part
            .content_type()
            .map(|c| {
                (
                    c.ctype().to_ascii_lowercase(),
                    c.subtype().unwrap_or("").to_ascii_lowercase(),
                )
            })
            .unwrap_or_else(|| ("text".into(), "plain".into()));
        match (&part.body, ctype.as_str(), subtype.as_str()) {
            (PartType::Message(original), _, _) => {
                collect_original(
                    original.headers().iter().map(|h| (h.name(), h.value())),
                    &mut parts,
                );
                // An ARF report's original, or a DSN's: its To is a fallback recipient.
                if parts.original_recipients.is_empty()
                    && let Some(to) = original.to()
                {
                    parts
                        .original_recipients
                        .extend(to.iter().filter_map(|a| a.address()).map(str::to_owned));
                }
            }
            (_, "message" | "text", "delivery-status" | "global-delivery-status") => {
                parts.delivery_status.push(lossy(part.contents()));
            }
            (_, "message", "feedback-report") => {
                parts.feedback_report = Some(lossy(part.contents()))
            }
            (_, "text" | "message", "rfc822-headers" | "rfc822" | "global-headers") => {
                // Not parsed as a message (encoded, or headers only): read its header fields.
                let t = lossy(part.contents());
                for (name, value) in dsn::fields(&t) {
                    add_original_field(&name, &value, &mut parts);
                }
            }
            (PartType::Text(t), _, _) => push_text(&mut parts.body, t),
            (PartType::Html(h), _, _) => {
                push_text(
                    &mut parts.body,
                    &mail_parser::decoders::html::html_to_text(h),
                );
            }
            _ => {}
        }
    }
    parts
}

fn push_text(body: &mut String, t: &str) {
    if body.len() < MAX_MESSAGE_BYTES {
        body.push_str(t);
        body.push('\n');
    }
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn collect_original<'a>(
    headers: impl Iterator<Item = (&'a str, &'a mail_parser::HeaderValue<'a>)>,
    parts: &mut Parts,
) {
    for (name, value) in headers {
        let addresses: Vec<String> = match value {
            mail_parser::HeaderValue::Address(a) => a
                .iter()
                .filter_map(|a| a.address())
                .map(str::to_owned)
                .collect(),
            mail_parser::HeaderValue::Text(t) => {
                text::addresses(t).into_iter().map(|(_, a)| a).collect()
            }
            _ => Vec::new(),
        };
        for a in addresses {
            add_original_field(&name.to_ascii_lowercase(), &a, parts);
        }
    }
}

fn add_original_field(name: &str, value: &str, parts: &mut Parts) {
    let list = match name {
        "from" | "sender" | "return-path" | "reply-to" => &mut parts.original_senders,
        "to" | "cc" => &mut parts.original_recipients,
        _ => return,
    };
    for (_, a) in text::addresses(value) {
        if list.len() < 64 && !list.iter().any(|x| x.eq_ignore_ascii_case(&a)) {
            list.push(a);
        }
    }
}

/// The sender's side of the exchange: whom the bounce went to, who sent the original.
fn sender_addresses(message: &Message<'_>, parts: &Parts) -> Vec<String> {
    let mut out: Vec<String> = parts.original_senders.clone();
    for header in [
        "To",
        "Delivered-To",
        "Envelope-To",
        "Return-Path",
        "From",
        "Reply-To",
    ] {
        if let Some(raw) = message.header_raw(header) {
            out.extend(text::addresses(raw).into_iter().map(|(_, a)| a));
        }
    }
    out
}

/// The byte offset of the first line that starts with `name` (lower case), if any.
fn find_field_line(body: &str, name: &str) -> Option<usize> {
    let mut at = 0;
    for line in body.split_inclusive('\n') {
        if line.trim_start().to_ascii_lowercase().starts_with(name) {
            return Some(at);
        }
        at += line.len();
    }
    None
}

fn from_dsn(
    status: &str,
    parts: &Parts,
    message_id: &Option<String>,
    date: &Option<String>,
) -> Vec<Record> {
    let report = dsn::parse(status);
    let reporting = dsn::get(&report.per_message, "reporting-mta").map(dsn::mta);
    let arrival = dsn::get(&report.per_message, "arrival-date").map(str::to_owned);
    let region = text::report_region(&parts.body);
    let mut out = Vec::new();
    for fields in &report.recipients {
        let Some(recipient) = dsn::get(fields, "final-recipient")
            .and_then(dsn::address)
            .or_else(|| dsn::get(fields, "original-recipient").and_then(dsn::address))
        else {
            continue;
        };
        let action = dsn::get(fields, "action")
            .and_then(Action::parse)
            .unwrap_or(Action::Failed);
        let status = dsn::get(fields, "status")
            .and_then(|s| s.split(|c: char| c.is_whitespace() || c == '(').next())
            .and_then(EnhancedCode::parse);
        let diagnostic = dsn::get(fields, "diagnostic-code")
            .map(super::squash)
            .filter(|d| d.len() > "smtp;".len())
            .or_else(|| text::diagnostic_for(region, &recipient, &parts.original_senders))
            .unwrap_or_default();
        let c = classify(action, status, None, &diagnostic);
        out.push(Record {
            recipient,
            date: dsn::get(fields, "last-attempt-date")
                .map(str::to_owned)
                .or_else(|| arrival.clone())
                .or_else(|| date.clone()),
            status: c.status,
            reply_code: c.reply_code,
            diagnostic: (!diagnostic.is_empty())
                .then(|| super::truncate(diagnostic, MAX_DIAGNOSTIC)),
            reporting_mta: reporting.clone(),
            remote_mta: dsn::get(fields, "remote-mta").map(dsn::mta),
            message_id: message_id.clone(),
            action,
            kind: c.kind,
            reason: Some(c.reason),
            feedback_type: None,
        });
    }
    out
}

fn from_arf(
    report: &str,
    parts: &Parts,
    message_id: &Option<String>,
    date: &Option<String>,
) -> Vec<Record> {
    let fields = dsn::fields(report);
    let mut recipients: Vec<String> = fields
        .iter()
        .filter(|(n, _)| n == "original-rcpt-to" || n == "removal-recipient")
        .filter_map(|(_, v)| dsn::address(v))
        .collect();
    if recipients.is_empty() {
        recipients = parts.original_recipients.clone();
    }
    let feedback_type = dsn::get(&fields, "feedback-type").map(|t| t.to_ascii_lowercase());
    let arrival = dsn::get(&fields, "arrival-date")
        .or_else(|| dsn::get(&fields, "received-date"))
        .map(str::to_owned)
        .or_else(|| date.clone());
    recipients
        .into_iter()
        .take(MAX_RECORDS)
        .map(|recipient| Record {
            recipient,
            date: arrival.clone(),
            status: None,
            reply_code: None,
            diagnostic: None,
            reporting_mta: dsn::get(&fields, "reporting-mta").map(dsn::mta),
            remote_mta: None,
            message_id: message_id.clone(),
            action: Action::Delivered,
            kind: Kind::Complaint,
            reason: None,
            feedback_type: feedback_type.clone(),
        })
        .collect()
}

fn record(
    recipient: String,
    action: Action,
    status: Option<EnhancedCode>,
    diagnostic: String,
    message_id: &Option<String>,
    date: &Option<String>,
) -> Record {
    let c = classify(action, status, None, &diagnostic);
    Record {
        recipient,
        date: date.clone(),
        status: c.status,
        reply_code: c.reply_code,
        diagnostic: (!diagnostic.is_empty()).then_some(diagnostic),
        reporting_mta: None,
        remote_mta: None,
        message_id: message_id.clone(),
        action,
        kind: c.kind,
        reason: Some(c.reason),
        feedback_type: None,
    }
}

const BOUNCE_SENDERS: &[&str] = &[
    "mailer-daemon",
    "postmaster",
    "mail-daemon",
    "maildaemon",
    "mmdf",
    "smtp",
    "bounce",
];

const BOUNCE_SUBJECTS: &[&str] = &[
    "undeliver",
    "undelivered",
    "delivery status notification",
    "delivery failure",
    "delivery failed",
    "delivery has failed",
    "failure notice",
    "failure delivery",
    "returned mail",
    "return mail",
    "mail delivery",
    "non-delivery",
    "nondelivery",
    "non delivery",
    "not delivered",
    "could not be delivered",
    "couldn't be delivered",
    "delivery problem",
    "delivery notification",
    "delivery report",
    "mail system error",
    "mail failure",
    "message delivery",
    "rejected",
    "warning: could not send",
    "delayed mail",
    "delivery delayed",
    "failed delivery",
    "permanent error",
    "bounce",
    "error sending",
    "mail could not",
    "unable to deliver",
    "nicht zustellbar",
    "unzustellbar",
    "non remis",
    "no se puede entregar",
];

const BOUNCE_TEXT: &[&str] = &[
    "could not be delivered",
    "couldn't be delivered",
    "wasn't able to deliver",
    "was not delivered",
    "delivery to the following recipient",
    "delivery has failed",
    "permanent fatal errors",
    "following address",
    "following recipient",
    "undeliverable",
    "unable to deliver",
    "failed permanently",
    "mail delivery failed",
    "delivery failed",
    "message could not be delivered",
    "user unknown",
    "smtp error",
    "delivery status notification",
];

/// The headers say a mail system wrote the message: a failure list, a daemon sender, a
/// bounce subject.
fn sent_by_mail_system(message: &Message<'_>) -> bool {
    let from = message
        .header_raw("From")
        .unwrap_or("")
        .to_ascii_lowercase();
    let subject = message.subject().unwrap_or("").to_ascii_lowercase();
    message.header_raw("X-Failed-Recipients").is_some()
        || BOUNCE_SENDERS.iter().any(|s| from.contains(s))
        || BOUNCE_SUBJECTS.iter().any(|s| subject.contains(s))
}

fn looks_like_bounce(message: &Message<'_>, parts: &Parts) -> bool {
    if message.header_raw("X-Failed-Recipients").is_some() {
        return true;
    }
    let from = message
        .header_raw("From")
        .unwrap_or("")
        .to_ascii_lowercase();
    let return_path = message
        .header_raw("Return-Path")
        .unwrap_or("")
        .to_ascii_lowercase();
    if BOUNCE_SENDERS.iter().any(|s| from.contains(s))
        || return_path.trim().trim_matches(['<', '>', ' ']).is_empty()
            && message.header_raw("Return-Path").is_some()
        || from.contains("delivery subsystem")
    {
        return true;
    }
    let subject = message.subject().unwrap_or("").to_ascii_lowercase();
    if BOUNCE_SUBJECTS.iter().any(|s| subject.contains(s)) {
        return true;
    }
    let region = text::report_region(&parts.body).to_ascii_lowercase();
    let region = &region[..floor_char(&region, 8192)];
    BOUNCE_TEXT.iter().any(|s| region.contains(s))
}

fn floor_char(s: &str, max: usize) -> usize {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    end
}

/// A warning that delivery is still being tried (Sendmail's and Postfix's delay notices).
fn is_delay_notice(message: &Message<'_>, region: &str) -> bool {
    let subject = message.subject().unwrap_or("").to_ascii_lowercase();
    let head = region.to_ascii_lowercase();
    let head = &head[..floor_char(&head, 4096)];
    subject.contains("delayed")
        || subject.starts_with("warning:")
        || head.contains("will continue trying")
        || head.contains("will keep trying")
        || head.contains("still trying")
        || head.contains("no action is required on your part")
}

/// RFC 3834 `Auto-Submitted: auto-replied`, the older vacation headers, or a vacation subject.
fn is_auto_reply(message: &Message<'_>) -> bool {
    let header = |name: &str| {
        message
            .header_raw(name)
            .map(|v| v.trim().to_ascii_lowercase())
    };
    if header("Auto-Submitted").is_some_and(|v| v.starts_with("auto-replied"))
        || header("X-Autoreply").is_some()
        || header("X-Autorespond").is_some()
        || header("X-Auto-Response-Suppress").is_some_and(|_| header("Auto-Submitted").is_some())
        || header("Precedence").is_some_and(|v| v == "auto_reply")
    {
        return true;
    }
    let subject = message.subject().unwrap_or("").to_ascii_lowercase();
    [
        "auto:",
        "automatic reply",
        "auto reply",
        "autoreply",
        "auto-reply",
        "out of office",
        "out of the office",
        "vacation",
        "away from",
    ]
    .iter()
    .any(|s| subject.starts_with(s) || subject.contains(&format!(" {s}")))
}
