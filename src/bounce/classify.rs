//! A report's fields → the SMTP reply they stand for → the project's reason → a [`Kind`].
//!
//! A bounce is read the way `prebounce explain` reads a reply, so the two never disagree:
//! 1. The diagnostic's own SMTP reply wins (`550 5.1.1 …` found inside Postfix's `host x said:
//!    …` or qmail's `Remote host said: …`): it is what the receiving server said, and `explain`
//!    decides from a reply's code and text, preferring the text where the two disagree and
//!    ignoring an enhanced code whose class contradicts the reply code.
//! 2. Where the diagnostic carries no enhanced code, the report's `Status` field stands in for
//!    it (it is the reporting MTA's reading of the same reply).
//! 3. Where there is no reply code at all (a local MTA's own `Host unknown`, `retry timeout
//!    exceeded`), the code is derived from the status class or the action (5 → 550, 4 → 450),
//!    so that the decoder's text rules still apply; a derived code is not reported as the
//!    record's `reply_code`.
//!
//! The kind follows from the reason: a dead mailbox or domain (`mailbox-not-found`,
//! `mailbox-disabled`, `no-such-domain`, which the decoder only gives on a 5xx that says so)
//! is `hard`; a refusal of the sender (`prober-blocked`, `policy-rejected`: reputation,
//! blocklists, SPF/DKIM/DMARC, X.7.x, content) is `block`, never `hard`; everything else that
//! failed or was delayed is `soft`, because doubt must not suppress a live subscriber.

use serde::Serialize;

use super::Kind;
use crate::model::Reason;
use crate::model::reply::{EnhancedCode, Reply};
use crate::smtp::reply::classify as classify_reply;

/// The DSN `Action` field (RFC 3464 §2.3.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Failed,
    Delayed,
    Delivered,
    Relayed,
    Expanded,
}

impl Action {
    pub fn parse(s: &str) -> Option<Action> {
        let s = s
            .trim()
            .trim_end_matches(|c: char| !c.is_ascii_alphabetic());
        let word = s.split_whitespace().next()?.to_ascii_lowercase();
        Some(match word.as_str() {
            "failed" | "failure" => Action::Failed,
            "delayed" => Action::Delayed,
            "delivered" => Action::Delivered,
            "relayed" => Action::Relayed,
            "expanded" => Action::Expanded,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Failed => "failed",
            Action::Delayed => "delayed",
            Action::Delivered => "delivered",
            Action::Relayed => "relayed",
            Action::Expanded => "expanded",
        }
    }
}

/// What [`classify`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Classified {
    pub kind: Kind,
    pub reason: Reason,
    /// The reply code the report itself holds (in its diagnostic or an ESP field).
    pub reply_code: Option<u16>,
    /// The report's status, else the diagnostic's enhanced code.
    pub status: Option<EnhancedCode>,
}

/// Classify one recipient of a report: its action, its `Status` field, a reply code given
/// apart from the text (ESPs), and the diagnostic text.
pub fn classify(
    action: Action,
    status: Option<EnhancedCode>,
    reply_code: Option<u16>,
    diagnostic: &str,
) -> Classified {
    let found = find_reply(diagnostic);
    // A 2xx/3xx quoted in the diagnostic of a failure (`250 OK` of an earlier command) is not
    // the refusal.
    let failing = matches!(action, Action::Failed | Action::Delayed);
    let found = found.filter(|f| !failing || f.code >= 400);
    let given = reply_code.filter(|c| (200..600).contains(c) && (!failing || *c >= 400));
    let code = found.as_ref().map(|f| f.code).or(given);
    let enhanced = found
        .as_ref()
        .and_then(|f| f.enhanced)
        .or(status)
        .or_else(|| find_enhanced(diagnostic));
    // The status a record reports: the receiving server's own enhanced code where the
    // diagnostic holds one of the report's class (what `explain` reads), else the report's.
    let quoted = found
        .as_ref()
        .and_then(|f| f.enhanced)
        .or_else(|| find_enhanced(diagnostic));
    let report_status = match (status, quoted) {
        (Some(s), Some(q)) if q.class == s.class => Some(q),
        (Some(s), _) => Some(s),
        (None, q) => q,
    };
    if matches!(
        action,
        Action::Delivered | Action::Relayed | Action::Expanded
    ) {
        return Classified {
            kind: Kind::Delivered,
            reason: Reason::MailboxAccepted,
            reply_code: code,
            status: report_status,
        };
    }
    let derived = code.unwrap_or_else(|| match (enhanced.map(|e| e.class), action) {
        (Some(5), _) => 550,
        (Some(4), _) | (_, Action::Delayed) => 450,
        _ => 550,
    });
    let text = match &found {
        Some(f) => super::squash(&diagnostic[f.text_at..]),
        None => super::squash(strip_type(diagnostic)),
    };
    let reply = Reply {
        code: derived,
        enhanced,
        text,
    };
    let mut reason = classify_reply(&reply).reason;
    if let Some(r) = bounce_phrase(&super::squash(diagnostic).to_lowercase(), reason, enhanced) {
        reason = r;
    }
    if code.is_none() && reason == Reason::Greylisted {
        // 450 was our stand-in: nothing said greylisting.
        reason = Reason::Deferred;
    }
    // A refusal of MAIL FROM came before any recipient was named: it is about the sender,
    // whatever its text says ("553 5.1.0 … unknown" is the sender's address).
    if matches!(reason.status(), crate::model::Status::Invalid) || reason == Reason::Unrecognized {
        let lower = diagnostic.to_ascii_lowercase();
        if [
            "after mail from",
            "in reply to mail from",
            "our mail from",
            "mail from command",
        ]
        .iter()
        .any(|p| lower.contains(p))
        {
            reason = Reason::ProberBlocked;
        }
    }
    let mut kind = kind_of(reason);
    if let Some(e) = enhanced {
        match (e.subject, e.detail) {
            // A temporary refusal under a security or policy status ("421 4.7.0 [TSS04] …
            // user complaints", "451 4.7.650 … IP reputation") is about the sender, as its
            // permanent form is: a block, never a soft bounce of the address. Greylisting is
            // the receiver's routine, not a verdict on the sender.
            (7, _) if kind == Kind::Soft && reason != Reason::Greylisted => kind = Kind::Block,
            // X.2.3: the message is over the mailbox's size limit: the mailbox, not the sender.
            (2, 3) if kind == Kind::Block => kind = Kind::Soft,
            _ => {}
        }
    }
    if action == Action::Delayed {
        // A delay is not a verdict on the address, whatever code the last attempt drew; a
        // refusal of the sender stays a block (it never suppresses, and the report counts
        // delays apart by their action).
        if kind != Kind::Block {
            kind = Kind::Soft;
        }
        if reason.status() == crate::model::Status::Invalid {
            reason = Reason::Deferred;
        }
    }
    Classified {
        kind,
        reason,
        reply_code: code,
        status: report_status,
    }
}

/// What bounce texts say that SMTP replies do not (an MTA's own words for a failure, where the
/// reply decoder finds nothing or only a generic refusal), as (phrase, reason): the first phrase
/// found in the lower-cased text wins (the refusals of the sender first: "my name was rejected …
/// Invalid domain name" is about the sender's HELO, not the recipient's domain). Every entry comes from a labelled message of the corpus
/// in tests/data/bounces (its file named), and none turns a refusal of the sender into a dead
/// address: a hard phrase applies only where the decoder saw no block of the sender.
const BOUNCE_PHRASES: &[(&str, Reason)] = &[
    // The receiver refused the sender.
    ("refused to talk to me", Reason::ProberBlocked), // lhost-postfix-49, -50
    ("but my name was rejected", Reason::ProberBlocked), // lhost-qmail-04
    ("not accepting connections", Reason::ProberBlocked), // lhost-sendmail-56
    ("invalid ip for sending", Reason::ProberBlocked), // lhost-yahoo-14
    ("email address is not verified", Reason::PolicyRejected), // lhost-postfix-77
    ("may not have permission to post", Reason::PolicyRejected), // lhost-googlegroups-*
    // Google Groups' refusal in every language links its help pages.
    ("groups.google.com/support", Reason::PolicyRejected), // lhost-googlegroups-*
    ("from: domain is invalid", Reason::PolicyRejected),   // lhost-exim-45
    ("protocol violation", Reason::PolicyRejected),        // lhost-postfix-41
    ("mail rejete", Reason::PolicyRejected), // Orange: rhost-franceptt-04, lhost-einsundeins-03
    ("does not support tls", Reason::PolicyRejected), // lhost-gmail-07: the sender requires TLS
    // Refused at the greeting, before any recipient was named ("… daily relay quota").
    ("after initial connection", Reason::ProberBlocked), // lhost-exim-56
    // The recipient is gone.
    (
        "the recipient name is not recognized",
        Reason::MailboxNotFound,
    ), // lhost-exchange2003-*
    ("no valid recipients", Reason::MailboxNotFound), // lhost-verizon-01
    ("invalid recipient", Reason::MailboxNotFound),   // lhost-bigfoot-02
    ("user account disabled", Reason::MailboxDisabled), // lhost-dragonfly-21
    ("disabled recipient address", Reason::MailboxDisabled), // lhost-dragonfly-27
    ("recipient account is blocked", Reason::MailboxDisabled), // rhost-franceptt-05
    // The domain is gone or takes no mail.
    ("no mx found for domain", Reason::NoSuchDomain), // lhost-opensmtpd-12
    ("no mx record found for domain", Reason::NoSuchDomain), // lhost-yahoo-09
    ("couldn't find a mail exchanger", Reason::NoSuchDomain), // lhost-qmail-11
    ("dns lookup failure: host", Reason::NoSuchDomain), // lhost-dragonfly-04
    ("the domain is not reachable", Reason::NoSuchDomain), // lhost-outlook-03
    ("invalid domain", Reason::NoSuchDomain),         // lhost-amazonses-18
    ("host does not accept mail", Reason::NoMailServer), // lhost-sendmail-57
    ("not accepting network messages", Reason::NoMailServer), // lhost-dragonfly-16 (521)
];

/// The reason a bounce phrase gives, when it should replace the decoder's `reason`: where the
/// decoder recognised nothing, or only a generic refusal. A DNS answer to "try again" is a
/// temporary failure, never a dead domain.
fn bounce_phrase(text: &str, reason: Reason, enhanced: Option<EnhancedCode>) -> Option<Reason> {
    if reason == Reason::NoSuchDomain && text.contains("try again") {
        return Some(Reason::DnsError); // lhost-postfix-34
    }
    // RFC 3463 X.7.13 is "user account disabled" (RFC 4954 uses it for the same).
    if enhanced.is_some_and(|e| e.subject == 7 && e.detail == 13) {
        return Some(Reason::MailboxDisabled);
    }
    let (_, phrase_reason) = BOUNCE_PHRASES.iter().find(|(p, _)| text.contains(p))?;
    let to_hard = kind_of(*phrase_reason) == Kind::Hard;
    if kind_of(*phrase_reason) == Kind::Block {
        // The text says the sender was refused: whatever else it says ("the group may not
        // exist, or you may not have permission to post"), it proves nothing about the address.
        return (kind_of(reason) != Kind::Block).then_some(*phrase_reason);
    }
    let replaceable = match reason {
        Reason::Unrecognized | Reason::ServerError | Reason::ProtocolError => true,
        // A generic refusal ("553 Invalid recipient", "550 5.5.0 … account is blocked") may
        // be named more precisely, but a security or policy status (X.7.x) keeps it a block
        // of the sender unless the phrase names the recipient's own account.
        Reason::PolicyRejected | Reason::ProberBlocked => {
            !to_hard
                || matches!(*phrase_reason, Reason::MailboxDisabled)
                || enhanced.is_none_or(|e| e.subject != 7)
        }
        Reason::SmtpUnreachable => true,
        Reason::RateLimited => !to_hard,
        _ => false,
    };
    replaceable.then_some(*phrase_reason)
}

/// The kind a reason of the reply decoder amounts to for a failed delivery.
pub fn kind_of(reason: Reason) -> Kind {
    match reason {
        Reason::MailboxNotFound
        | Reason::MailboxDisabled
        | Reason::NoSuchDomain
        | Reason::NullMx
        | Reason::NoMailServer => Kind::Hard,
        Reason::ProberBlocked | Reason::PolicyRejected => Kind::Block,
        Reason::MailboxAccepted => Kind::Delivered,
        _ => Kind::Soft,
    }
}

/// `smtp; 550 …`, `X-Postfix; …`: the diagnostic-type prefix of a DSN field is not text.
fn strip_type(s: &str) -> &str {
    let t = s.trim_start();
    match t.split_once(';') {
        Some((kind, rest))
            if !kind.is_empty()
                && kind.len() <= 20
                && kind
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            rest
        }
        _ => t,
    }
}

struct Found {
    code: u16,
    enhanced: Option<EnhancedCode>,
    /// Where the reply's text starts (after the codes).
    text_at: usize,
}

/// The first SMTP reply code in the text (`550`, `550-`, `550:`), with the enhanced code that
/// follows it. Numbers inside IP addresses, dates or longer numbers are not codes.
fn find_reply(s: &str) -> Option<Found> {
    let b = s.as_bytes();
    let mut i = 0;
    while i + 3 <= b.len() {
        let is_code = matches!(b[i], b'2' | b'4' | b'5')
            && b[i + 1].is_ascii_digit()
            && b[i + 2].is_ascii_digit()
            && (i == 0
                || !(b[i - 1].is_ascii_alphanumeric()
                    || matches!(b[i - 1], b'.' | b'-' | b'#' | b'/' | b'=' | b':' | b'_')))
            && b.get(i + 3).is_none_or(|&c| {
                matches!(
                    c,
                    b' ' | b'-' | b':' | b'\t' | b'\r' | b'\n' | b'\'' | b'"' | b')' | b']' | b','
                )
            });
        if is_code {
            // Digits only: safe to slice.
            let code: u16 = s[i..i + 3].parse().ok()?;
            let mut j = i + 3;
            while j < b.len() && matches!(b[j], b' ' | b'-' | b':' | b'\t' | b'\'' | b'"') {
                j += 1;
            }
            let end = b[j..]
                .iter()
                .position(|c| c.is_ascii_whitespace())
                .map_or(b.len(), |p| j + p);
            let token = s[j..end]
                .trim_matches(|c: char| matches!(c, ',' | ':' | ';' | '#' | '(' | ')' | '<' | '>'));
            let enhanced = EnhancedCode::parse(token);
            let text_at = if enhanced.is_some() { end } else { i + 3 };
            return Some(Found {
                code,
                enhanced,
                text_at,
            });
        }
        i += 1;
    }
    None
}

/// The first enhanced status code anywhere in the text (qmail's `(#5.1.1)`, a bare `5.7.1`).
fn find_enhanced(s: &str) -> Option<EnhancedCode> {
    s.split(|c: char| {
        c.is_whitespace()
            || matches!(
                c,
                '(' | ')' | '#' | '[' | ']' | ',' | ';' | ':' | '<' | '>' | '"' | '\''
            )
    })
    .map(|t| t.trim_end_matches([':', '.']))
    .find_map(|t| EnhancedCode::parse(t).filter(|e| e.class != 2 || e.subject != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(action: Action, status: &str, diag: &str) -> (Kind, Reason) {
        let c = classify(action, EnhancedCode::parse(status), None, diag);
        (c.kind, c.reason)
    }

    #[test]
    fn bounce_kinds_follow_the_reply_decoder() {
        assert_eq!(
            kind(
                Action::Failed,
                "5.1.1",
                "smtp; 550 5.1.1 <a@b.example>: Recipient address rejected: User unknown"
            ),
            (Kind::Hard, Reason::MailboxNotFound)
        );
        assert_eq!(
            kind(Action::Failed, "5.2.2", "smtp; 552 5.2.2 Mailbox full"),
            (Kind::Soft, Reason::MailboxFull)
        );
        // A sender block is never hard, even under 5.1.1-looking text with a 5.7 status.
        assert_eq!(
            kind(Action::Failed, "5.7.1", "smtp; 550 5.7.1 Service unavailable; client host [192.0.2.1] blocked using zen.spamhaus.org").0,
            Kind::Block
        );
        assert_eq!(
            kind(
                Action::Failed,
                "5.1.2",
                "X-Postfix; Host or domain name not found"
            )
            .0,
            Kind::Hard
        );
        assert_eq!(
            kind(Action::Delayed, "4.4.1", "connection timed out").0,
            Kind::Soft
        );
        assert_eq!(
            kind(Action::Delivered, "2.0.0", "250 ok").0,
            Kind::Delivered
        );
    }

    #[test]
    fn bounce_phrases_name_what_the_reply_decoder_cannot() {
        let failed = |diag: &str| kind(Action::Failed, "", diag);
        assert_eq!(
            failed("The recipient name is not recognized"),
            (Kind::Hard, Reason::MailboxNotFound)
        );
        // The sender's own refusal wins over the words about a domain that follow it.
        assert_eq!(
            failed(
                "Connected to 192.0.2.1 but my name was rejected. Remote host said: 501 5.0.0 Invalid domain name"
            ),
            (Kind::Block, Reason::ProberBlocked)
        );
        // "may not exist, or you may not have permission": nothing is proven about the address.
        assert_eq!(
            failed("the group you tried to contact may not exist, or you may not have permission to post").0,
            Kind::Block
        );
        // A policy status keeps a refusal a block, even beside recipient words.
        assert_eq!(
            failed("554 5.7.1 <a@b.example>: Recipient address rejected: Access denied").0,
            Kind::Block
        );
        assert_eq!(
            failed("553 Invalid recipient a@b.example (Mode: normal)"),
            (Kind::Hard, Reason::MailboxNotFound)
        );
        assert_eq!(
            failed("525 5.7.13 <a@b.example>: Recipient address rejected: User account disabled"),
            (Kind::Hard, Reason::MailboxDisabled)
        );
        // A DNS failure "try again" is not a dead domain.
        assert_eq!(
            failed("Name service error for domain b.example: Host not found, try again").0,
            Kind::Soft
        );
        // Temporary reputation refusals are blocks, greylisting is not; a size limit of the
        // mailbox is soft.
        assert_eq!(
            failed("421 4.7.0 [TSS04] Messages from 192.0.2.1 temporarily deferred due to user complaints").0,
            Kind::Block
        );
        assert_eq!(
            failed("451 4.7.1 Greylisted, try again later").0,
            Kind::Soft
        );
        assert_eq!(
            failed("552 5.2.3 Message length exceeds limit set by recipient").0,
            Kind::Soft
        );
        // A delayed report keeps a block a block, and anything else soft.
        assert_eq!(
            kind(
                Action::Delayed,
                "4.7.0",
                "421 4.7.0 [TSS04] temporarily deferred"
            )
            .0,
            Kind::Block
        );
        assert_eq!(
            kind(Action::Delayed, "4.0.0", "No MX found for domain b.example").0,
            Kind::Soft
        );
    }

    #[test]
    fn codes_inside_addresses_and_numbers_are_not_replies() {
        assert!(find_reply("host 192.0.2.1 said nothing at 2013-04-24").is_none());
        let f = find_reply("host mx[192.0.2.1] said: 550-5.1.1 no such user").expect("a reply");
        assert_eq!((f.code, f.enhanced), (550, EnhancedCode::parse("5.1.1")));
    }
}
