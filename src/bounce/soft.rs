//! What an import decides from the records, as pure rules: when an event happened, which soft
//! bounces count toward suppressing an address, and the soft rule itself.
//!
//! The soft rule: an address is suppressed when `limit` soft bounces that are about the
//! mailbox (full, temporarily disabled) fall within one `window`, with no delivery at or after
//! the first of them. Throttling, greylisting, the receiver's own faults and expired retries
//! say nothing about the mailbox, so they never count: suppressing on them would drop live
//! subscribers for the receiver's trouble.

use super::{Action, Kind, Record};
use crate::model::Reason;

/// The event's time in unix seconds from the date a report or an ESP wrote: an RFC 5322 date
/// (DSN `Last-Attempt-Date`, `Arrival-Date`, the message's `Date`), ISO 8601 / RFC 3339 (SES,
/// Postmark) or epoch seconds, possibly with a fraction (SendGrid, Mailgun). None when it is
/// none of these or not a real date. mail-parser's `DateTime` already reads the first two (it
/// is the MIME parser of the decoder), so no date crate is added for them.
pub fn event_time(date: &str) -> Option<i64> {
    let date = date.trim();
    if !date.is_empty() && date.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let whole = date.split('.').next()?;
        // Epoch seconds of years 2001..2286 (ten digits): a longer number is milliseconds or
        // not a time, a shorter one is not a plausible send date.
        return (whole.len() == 10).then(|| whole.parse().ok()).flatten();
    }
    let parsed = if date.as_bytes().first().is_some_and(u8::is_ascii_digit)
        && date.as_bytes().get(4) == Some(&b'-')
    {
        mail_parser::DateTime::parse_rfc3339(date)
    } else {
        mail_parser::DateTime::parse_rfc822(date)
    };
    parsed
        .filter(mail_parser::DateTime::is_valid)
        .map(|d| d.to_timestamp())
}

/// Whether a record counts toward the soft limit: a soft bounce about the mailbox itself. A
/// full mailbox by its reason; otherwise a mailbox-status code (X.2.x: disabled for now, over
/// quota) on a soft bounce whose reason is not throttling, greylisting or the receiver's fault.
/// A delay never counts: the same message is still being retried and ends in a delivery or a
/// failure of its own, which would count it twice.
pub fn counts_toward_soft_limit(r: &Record) -> bool {
    if r.kind != Kind::Soft || r.action == Action::Delayed {
        return false;
    }
    match r.reason {
        Some(Reason::MailboxFull) => true,
        Some(
            Reason::Greylisted
            | Reason::RateLimited
            | Reason::ServerError
            | Reason::ProtocolError
            | Reason::SmtpUnreachable
            | Reason::SmtpTimeout
            | Reason::PolicyRejected
            | Reason::ProberBlocked,
        ) => false,
        _ => r.status.is_some_and(|s| s.subject == 2),
    }
}

/// What the soft rule reads of an address's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Event {
    /// A soft bounce that counts (see [`counts_toward_soft_limit`]).
    SoftBounce,
    /// A delivery, or a probe whose server accepted the mailbox: the mailbox works.
    Delivery,
}

/// `--soft-limit` and `--soft-window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SoftRule {
    /// Soft bounces needed (at least 1).
    pub limit: usize,
    /// Seconds between the first and the last of them, inclusive.
    pub window: i64,
}

impl Default for SoftRule {
    fn default() -> Self {
        SoftRule {
            limit: 3,
            window: 30 * 86_400,
        }
    }
}

/// Where the soft rule crossed: the first and last soft bounce of the first window holding
/// `limit` of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crossing {
    pub first: i64,
    pub last: i64,
}

/// The soft rule over an address's events (in any order, time in unix seconds): the first
/// window of `limit` counting soft bounces with no delivery at or after its first one, if any.
/// A delivery at the same second as a soft bounce is taken to come after it: the doubt goes to
/// the subscriber.
pub fn soft_crossing(events: &[(i64, Event)], rule: SoftRule) -> Option<Crossing> {
    let limit = rule.limit.max(1);
    let last_delivery = events
        .iter()
        .filter(|(_, e)| *e == Event::Delivery)
        .map(|(t, _)| *t)
        .max();
    let mut soft: Vec<i64> = events
        .iter()
        .filter(|(t, e)| *e == Event::SoftBounce && last_delivery.is_none_or(|d| *t > d))
        .map(|(t, _)| *t)
        .collect();
    soft.sort_unstable();
    // `limit` sorted times fit a window exactly when the first and the limit-th are that close.
    soft.windows(limit)
        .find(|w| w[limit - 1] - w[0] <= rule.window)
        .map(|w| Crossing {
            first: w[0],
            last: w[limit - 1],
        })
}

/// A stable 64-bit FNV-1a hash of a message's bytes: the import's key for a message without a
/// Message-ID (std's hasher may change between Rust releases; a key must not). Not a defence
/// against someone forging collisions: the worst a collision does is skip one message.
pub fn content_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::reply::EnhancedCode;

    const DAY: i64 = 86_400;

    fn rule(limit: usize, days: i64) -> SoftRule {
        SoftRule {
            limit,
            window: days * DAY,
        }
    }

    fn softs(days: &[i64]) -> Vec<(i64, Event)> {
        days.iter().map(|d| (d * DAY, Event::SoftBounce)).collect()
    }

    #[test]
    fn dates_of_reports_and_esps_are_read() {
        assert_eq!(
            event_time("Thu, 29 Apr 2010 23:34:45 +0900"),
            Some(1_272_551_685)
        );
        assert_eq!(event_time("2016-01-27T14:59:38.237Z"), Some(1_453_906_778));
        assert_eq!(
            event_time("2019-11-05T16:33:54.9070259-05:00"),
            Some(1_572_989_634)
        );
        assert_eq!(event_time("1513299569"), Some(1_513_299_569));
        assert_eq!(event_time("1521243339.873676"), Some(1_521_243_339));
        for bad in [
            "",
            "soon",
            "1513299569000",
            "12",
            "2016-13-45T99:00:00Z",
            "Mon, 99 Foo 2010",
        ] {
            assert_eq!(event_time(bad), None, "{bad}");
        }
    }

    fn record(kind: Kind, reason: Option<Reason>, status: &str) -> Record {
        Record {
            recipient: "a@b.test".into(),
            date: None,
            status: EnhancedCode::parse(status),
            reply_code: None,
            diagnostic: None,
            reporting_mta: None,
            remote_mta: None,
            message_id: None,
            action: Action::Failed,
            kind,
            reason,
            feedback_type: None,
        }
    }

    #[test]
    fn only_mailbox_soft_bounces_count() {
        use Reason::*;
        // Every kind and every reason the decoder gives, with and without a mailbox status.
        let reasons = [
            MailboxFull,
            Deferred,
            Greylisted,
            RateLimited,
            ServerError,
            ProtocolError,
            SmtpUnreachable,
            SmtpTimeout,
            Unrecognized,
            PolicyRejected,
            ProberBlocked,
            MailboxNotFound,
            MailboxAccepted,
        ];
        for kind in Kind::ALL {
            for reason in reasons.iter().copied().map(Some).chain([None]) {
                for status in ["4.2.1", "4.4.7", "5.2.2", ""] {
                    let counts = counts_toward_soft_limit(&record(kind, reason, status));
                    let expected = kind == Kind::Soft
                        && match reason {
                            Some(MailboxFull) => true,
                            Some(Deferred | Unrecognized | MailboxNotFound | MailboxAccepted)
                            | None => status.starts_with("4.2") || status.starts_with("5.2"),
                            _ => false,
                        };
                    assert_eq!(counts, expected, "{kind:?} {reason:?} {status}");
                    let mut delayed = record(kind, reason, status);
                    delayed.action = Action::Delayed;
                    assert!(!counts_toward_soft_limit(&delayed), "delayed {reason:?}");
                }
            }
        }
    }

    #[test]
    fn three_within_the_window_cross_the_limit() {
        assert_eq!(
            soft_crossing(&softs(&[1, 10, 31]), rule(3, 30)),
            Some(Crossing {
                first: DAY,
                last: 31 * DAY
            })
        );
        // The window is inclusive, and a later window counts as well as the first.
        assert!(soft_crossing(&softs(&[0, 15, 30]), rule(3, 30)).is_some());
        assert_eq!(
            soft_crossing(&softs(&[0, 40, 50, 60]), rule(3, 30)),
            Some(Crossing {
                first: 40 * DAY,
                last: 60 * DAY
            })
        );
        // In any order.
        assert!(soft_crossing(&softs(&[20, 0, 10]), rule(3, 30)).is_some());
    }

    #[test]
    fn too_few_or_too_spread_do_not() {
        assert_eq!(soft_crossing(&softs(&[1, 2]), rule(3, 30)), None);
        assert_eq!(soft_crossing(&softs(&[0, 45, 90]), rule(3, 30)), None);
        assert_eq!(soft_crossing(&softs(&[0, 31, 62, 93]), rule(3, 30)), None);
        assert_eq!(soft_crossing(&[], rule(3, 30)), None);
    }

    #[test]
    fn a_delivery_after_the_first_resets_the_count() {
        let mut events = softs(&[0, 5, 10]);
        events.push((4 * DAY, Event::Delivery));
        assert_eq!(soft_crossing(&events, rule(3, 30)), None);
        // The same second: the delivery wins.
        let mut events = softs(&[0, 5, 10]);
        events.push((0, Event::Delivery));
        assert_eq!(soft_crossing(&events, rule(3, 30)), None);
        // A delivery before them all changes nothing; soft bounces after a delivery count again.
        let mut events = softs(&[10, 11, 12]);
        events.push((9 * DAY, Event::Delivery));
        assert!(soft_crossing(&events, rule(3, 30)).is_some());
        let mut events = softs(&[0, 1, 20, 21, 22]);
        events.push((10 * DAY, Event::Delivery));
        assert_eq!(
            soft_crossing(&events, rule(3, 30)),
            Some(Crossing {
                first: 20 * DAY,
                last: 22 * DAY
            })
        );
        // A delivery after all of them: the mailbox works.
        let mut events = softs(&[0, 1, 2]);
        events.push((50 * DAY, Event::Delivery));
        assert_eq!(soft_crossing(&events, rule(3, 30)), None);
    }

    #[test]
    fn every_small_limit_and_spacing_agrees_with_a_count() {
        // Exhaustive over small cases: n soft bounces `gap` days apart cross a limit of `limit`
        // within `days` exactly when there are enough of them and limit-1 gaps fit the window.
        for limit in 1..=5usize {
            for n in 0..=6i64 {
                for gap in 0..=20i64 {
                    for days in [0, 1, 7, 30] {
                        let events: Vec<i64> = (0..n).map(|i| i * gap).collect();
                        let crossed = soft_crossing(&softs(&events), rule(limit, days)).is_some();
                        let expected = n as usize >= limit && (limit as i64 - 1) * gap <= days;
                        assert_eq!(
                            crossed, expected,
                            "limit {limit} n {n} gap {gap} days {days}"
                        );
                    }
                }
            }
        }
        // A limit of 0 is read as 1.
        assert!(soft_crossing(&softs(&[5]), rule(0, 30)).is_some());
    }

    #[test]
    fn the_content_hash_is_fnv1a() {
        assert_eq!(content_hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(content_hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_ne!(content_hash(b"ab"), content_hash(b"ba"));
    }
}
