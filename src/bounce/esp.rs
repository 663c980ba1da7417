//! ESP event JSON → records: Amazon SES notifications (bare, or inside an SNS envelope whose
//! `Message` is the notification as a JSON string), SendGrid event webhook posts (and its
//! older bounce exports), Mailgun events (webhook `event-data` or the events API's `items`),
//! Postmark bounce and spam-complaint JSON (webhook or the bounces API's `Bounces`).
//!
//! The ESPs' own words (`Permanent`, `HardBounce`, `severity: temporary`) are only a fallback:
//! each record is classified from its SMTP diagnostic by the same decoder as an e-mail bounce,
//! because ESPs file sender blocks under "permanent" too. Where the diagnostic says nothing
//! (`unrecognized`), an ESP's explicit "no such mailbox" type makes it hard and its transient
//! types make it a delay.

use serde_json::Value;

use super::classify::{Action, classify};
use super::{Decoded, Kind, MAX_DIAGNOSTIC, MAX_RECORDS, Record};
use crate::model::Reason;
use crate::model::reply::EnhancedCode;

/// Decode one JSON document (an object, or an array of events).
pub fn decode_json(bytes: &[u8]) -> Decoded {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(value) => from_value(&value),
        Err(_) => Decoded::Unparseable,
    }
}

/// Decode the first JSON value of the data and ignore what follows it (SNS e-mail
/// notifications append an unsubscribe footer).
pub fn decode_json_prefix(bytes: &[u8]) -> Decoded {
    let mut stream = serde_json::Deserializer::from_slice(bytes).into_iter::<Value>();
    match stream.next() {
        Some(Ok(value)) => from_value(&value),
        _ => Decoded::Unparseable,
    }
}

/// The records of a parsed document; not a bounce when no ESP's shape is recognised.
fn from_value(value: &Value) -> Decoded {
    let mut out = Vec::new();
    let mut recognised = false;
    events(value, 0, &mut out, &mut recognised);
    if recognised {
        Decoded::Records(out)
    } else {
        Decoded::NotABounce
    }
}

/// serde_json bounds its own nesting (128), so this depth is only ours: envelopes and lists.
fn events(v: &Value, depth: usize, out: &mut Vec<Record>, recognised: &mut bool) {
    if depth > 4 || out.len() >= MAX_RECORDS {
        return;
    }
    match v {
        Value::Array(items) => {
            for item in items {
                events(item, depth + 1, out, recognised);
            }
        }
        Value::Object(o) => {
            if let Some(Value::String(inner)) = o.get("Message")
                && o.get("Type").is_some()
            {
                if let Ok(inner) = serde_json::from_str::<Value>(inner) {
                    events(&inner, depth + 1, out, recognised);
                }
                return;
            }
            for list in ["items", "Bounces", "events"] {
                if let Some(items @ Value::Array(_)) = o.get(list) {
                    return events(items, depth + 1, out, recognised);
                }
            }
            if let Some(data) = o.get("event-data") {
                return events(data, depth + 1, out, recognised);
            }
            if o.contains_key("notificationType") || o.contains_key("eventType") {
                *recognised = true;
                ses(v, out);
            } else if o.contains_key("RecordType") || o.contains_key("TypeCode") {
                *recognised = true;
                postmark(v, out);
            } else if o.contains_key("recipient") && o.contains_key("event") {
                *recognised = true;
                mailgun(v, out);
            } else if o.contains_key("email") {
                *recognised = true;
                sendgrid(v, out);
            }
        }
        _ => {}
    }
}

fn s<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

/// The elements of `v[key]`, none when it is absent or not an array.
fn array<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a Value> {
    v.get(key).and_then(Value::as_array).into_iter().flatten()
}

fn owned(v: Option<&str>) -> Option<String> {
    v.map(str::to_owned)
}

/// A timestamp as the ESP gave it: a string as is, unix seconds as a number.
fn when(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

pub(super) struct Event<'a> {
    pub recipient: &'a str,
    pub action: Action,
    pub status: Option<&'a str>,
    pub code: Option<u16>,
    pub diagnostic: String,
    pub date: Option<String>,
    pub id: Option<String>,
    pub reporting: Option<String>,
    pub remote: Option<String>,
    /// The ESP says the mailbox does not exist.
    pub esp_hard: bool,
}

pub(super) fn push(e: Event<'_>, out: &mut Vec<Record>) {
    if !e.recipient.contains('@') || out.len() >= MAX_RECORDS {
        return;
    }
    let status = e.status.and_then(|s| EnhancedCode::parse(s.trim()));
    let mut c = classify(e.action, status, e.code, &e.diagnostic);
    if e.esp_hard && c.reason == Reason::Unrecognized && e.action == Action::Failed {
        c.reason = Reason::MailboxNotFound;
        c.kind = Kind::Hard;
    }
    out.push(Record {
        recipient: e.recipient.trim().to_owned(),
        date: e.date,
        status: c.status,
        reply_code: c.reply_code.or(e.code),
        diagnostic: (!e.diagnostic.is_empty())
            .then(|| super::truncate(super::squash(&e.diagnostic), MAX_DIAGNOSTIC)),
        reporting_mta: e.reporting,
        remote_mta: e.remote,
        message_id: e.id,
        action: e.action,
        kind: c.kind,
        reason: Some(c.reason),
        feedback_type: None,
    });
}

pub(super) fn complaint(
    recipient: &str,
    date: Option<String>,
    id: Option<String>,
    feedback: Option<String>,
    out: &mut Vec<Record>,
) {
    if !recipient.contains('@') || out.len() >= MAX_RECORDS {
        return;
    }
    out.push(Record {
        recipient: recipient.trim().to_owned(),
        date,
        status: None,
        reply_code: None,
        diagnostic: None,
        reporting_mta: None,
        remote_mta: None,
        message_id: id,
        action: Action::Delivered,
        kind: Kind::Complaint,
        reason: None,
        feedback_type: feedback,
    });
}

fn ses(v: &Value, out: &mut Vec<Record>) {
    let kind = s(v, "notificationType")
        .or_else(|| s(v, "eventType"))
        .unwrap_or("");
    let mail_id = v.get("mail").and_then(|m| owned(s(m, "messageId")));
    match kind.to_ascii_lowercase().as_str() {
        "bounce" => {
            let Some(b) = v.get("bounce") else { return };
            let permanent = s(b, "bounceType").is_some_and(|t| t.eq_ignore_ascii_case("permanent"));
            let sub = s(b, "bounceSubType").unwrap_or("").to_ascii_lowercase();
            for r in array(b, "bouncedRecipients") {
                let action = s(r, "action")
                    .and_then(Action::parse)
                    .unwrap_or(if permanent {
                        Action::Failed
                    } else {
                        Action::Delayed
                    });
                push(
                    Event {
                        recipient: s(r, "emailAddress").unwrap_or(""),
                        action: if permanent { action } else { Action::Delayed },
                        status: s(r, "status"),
                        code: None,
                        diagnostic: s(r, "diagnosticCode").unwrap_or("").to_owned(),
                        date: when(b.get("timestamp")),
                        id: owned(s(b, "feedbackId")).or_else(|| mail_id.clone()),
                        reporting: s(b, "reportingMTA").map(super::dsn::mta),
                        remote: owned(s(b, "remoteMtaIp")),
                        esp_hard: permanent && sub == "noemail",
                    },
                    out,
                );
            }
        }
        "complaint" => {
            let Some(c) = v.get("complaint") else { return };
            for r in array(c, "complainedRecipients") {
                complaint(
                    s(r, "emailAddress").unwrap_or(""),
                    when(c.get("timestamp")),
                    owned(s(c, "feedbackId")).or_else(|| mail_id.clone()),
                    owned(s(c, "complaintFeedbackType")).or_else(|| Some("abuse".into())),
                    out,
                );
            }
        }
        "delivery" => {
            let Some(d) = v.get("delivery") else { return };
            for r in array(d, "recipients") {
                push(
                    Event {
                        recipient: r.as_str().unwrap_or(""),
                        action: Action::Delivered,
                        status: None,
                        code: None,
                        diagnostic: s(d, "smtpResponse").unwrap_or("").to_owned(),
                        date: when(d.get("timestamp")),
                        id: mail_id.clone(),
                        reporting: owned(s(d, "reportingMTA")),
                        remote: owned(s(d, "remoteMtaIp")),
                        esp_hard: false,
                    },
                    out,
                );
            }
        }
        _ => {}
    }
}

fn sendgrid(v: &Value, out: &mut Vec<Record>) {
    let event = s(v, "event").unwrap_or("bounce").to_ascii_lowercase();
    let id = owned(s(v, "sg_event_id")).or_else(|| owned(s(v, "sg_message_id")));
    let date = when(v.get("timestamp")).or_else(|| when(v.get("created")));
    let email = s(v, "email").unwrap_or("");
    let (action, esp_hard) = match event.as_str() {
        "spamreport" => return complaint(email, date, id, Some("abuse".into()), out),
        "delivered" => (Action::Delivered, false),
        "deferred" => (Action::Delayed, false),
        "bounce" | "dropped" | "blocked" => (Action::Failed, false),
        _ => return,
    };
    let status = s(v, "status");
    // Older exports put the bare reply code (`550`) in `status`.
    let code = status.filter(|s| s.len() == 3).and_then(|s| s.parse().ok());
    let diagnostic = s(v, "reason")
        .or_else(|| s(v, "response"))
        .unwrap_or("")
        .to_owned();
    push(
        Event {
            recipient: email,
            action,
            status: status.filter(|s| s.contains('.')),
            code,
            diagnostic,
            date,
            id,
            reporting: None,
            remote: None,
            esp_hard,
        },
        out,
    );
}

fn mailgun(v: &Value, out: &mut Vec<Record>) {
    let event = s(v, "event").unwrap_or("").to_ascii_lowercase();
    let recipient = s(v, "recipient").unwrap_or("");
    let date = when(v.get("timestamp"));
    let id = owned(s(v, "id")).or_else(|| {
        v.pointer("/message/headers/message-id")
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    let action = match event.as_str() {
        "complained" => return complaint(recipient, date, id, Some("abuse".into()), out),
        "delivered" => Action::Delivered,
        "failed" | "bounced" | "rejected" => {
            if s(v, "severity").is_some_and(|s| s.eq_ignore_ascii_case("temporary")) {
                Action::Delayed
            } else {
                Action::Failed
            }
        }
        _ => return,
    };
    let status = v.get("delivery-status");
    let code = status
        .and_then(|d| d.get("code"))
        .and_then(|c| {
            c.as_u64()
                .or_else(|| c.as_str().and_then(|s| s.parse().ok()))
        })
        .and_then(|c| u16::try_from(c).ok());
    let diagnostic = status
        .and_then(|d| s(d, "message").or_else(|| s(d, "description")))
        .or_else(|| s(v, "reason"))
        .unwrap_or("")
        .to_owned();
    push(
        Event {
            recipient,
            action,
            status: status.and_then(|d| s(d, "enhanced-code")),
            code,
            diagnostic,
            date,
            id,
            reporting: None,
            remote: status.and_then(|d| owned(s(d, "mx-host"))),
            esp_hard: false,
        },
        out,
    );
}

fn postmark(v: &Value, out: &mut Vec<Record>) {
    let record_type = s(v, "RecordType").unwrap_or("Bounce").to_ascii_lowercase();
    let kind = s(v, "Type").unwrap_or("").to_ascii_lowercase();
    let recipient = s(v, "Email").or_else(|| s(v, "Recipient")).unwrap_or("");
    let date = when(v.get("BouncedAt"))
        .or_else(|| when(v.get("DeliveredAt")))
        .or_else(|| when(v.get("ReceivedAt")));
    let id = when(v.get("ID")).or_else(|| owned(s(v, "MessageID")));
    if record_type == "spamcomplaint" || kind == "spamcomplaint" {
        return complaint(recipient, date, id, Some("abuse".into()), out);
    }
    let action = match (record_type.as_str(), kind.as_str()) {
        ("delivery", _) => Action::Delivered,
        (
            _,
            "transient" | "softbounce" | "dnserror" | "autoresponder" | "challengeverification",
        ) => Action::Delayed,
        ("bounce", _) => Action::Failed,
        _ => return,
    };
    let details = s(v, "Details")
        .or_else(|| s(v, "Description"))
        .unwrap_or("")
        .to_owned();
    push(
        Event {
            recipient,
            action,
            status: None,
            code: None,
            diagnostic: details,
            date,
            id,
            reporting: None,
            remote: None,
            esp_hard: kind == "hardbounce",
        },
        out,
    );
}
