//! Verdicts of earlier runs as the store hands them to the stages, and the suppression list's
//! entries.

use super::time::date_of;
use super::{Level, Reason, Status};

/// A verdict from an earlier verification.
///
/// Aligned to a cache line: in its `Arc`, shared by every row of a domain, the fields then sit
/// on another line than the reference counts, which the threads answering rows from it and the
/// list writer keep changing while the format threads read the fields.
#[derive(Debug, Clone, PartialEq)]
#[repr(align(64))]
pub struct Prior {
    pub reason: Reason,
    pub detail: String,
    pub mx: Option<String>,
    pub level: Level,
    pub verified_at: i64,
    /// The verdict it replaced, if any.
    pub previous: Option<Previous>,
    /// The detail of the rows answered from it (`…; verified <date> (cached)`): made once here,
    /// not once per row, because a domain's verdict answers all its rows.
    pub cached_detail: String,
    /// The options it was decided under: it serves only a run under the same ones.
    pub under: DecidedUnder,
    /// The run that wrote it (None: a store from before runs were recorded with verdicts).
    /// "This run's own verdict" is decided by it, not by time stamps: a run started in the
    /// same second as another does not take the other's verdicts for its own.
    pub run: Option<i64>,
}

/// The options beyond the level that can change a verdict, as stored with it.
///
/// `--allow-reserved-domains` is not one: it only decides whether a reserved domain's address
/// is refused by the syntax check, which answers such a row before any stored verdict is
/// looked up; for any other address it changes nothing.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DecidedUnder {
    /// `--allow-private-mx`: a domain whose mail servers have private addresses only is
    /// `mx-unroutable` without it, and takes mail (and is probed) with it.
    pub allow_private_mx: bool,
    /// Level smtp: who the probe said it was (`MAIL FROM` and HELO), which servers may answer
    /// differently (a refused or greylisted sender). None for other levels, and for an smtp
    /// verdict stored before it was recorded.
    pub sender: Option<String>,
}

impl DecidedUnder {
    /// The stored form of the options (the sender is stored apart): empty for the defaults,
    /// which is what a store from before they were recorded holds.
    pub fn options_code(&self) -> &'static str {
        if self.allow_private_mx {
            "allow-private-mx"
        } else {
            ""
        }
    }

    /// The options of a stored code; None for a code this build does not know (a newer
    /// prebounce wrote it: its verdict is a miss).
    pub fn from_codes(options: &str, sender: Option<String>) -> Option<DecidedUnder> {
        let allow_private_mx = match options {
            "" => false,
            "allow-private-mx" => true,
            _ => return None,
        };
        Some(DecidedUnder {
            allow_private_mx,
            sender,
        })
    }

    /// The sender identity as stored: `MAIL FROM` and HELO.
    pub fn sender_of(mail_from: &str, helo: &str) -> String {
        format!("from={mail_from} helo={helo}")
    }
}

impl Prior {
    pub fn new(
        reason: Reason,
        detail: String,
        mx: Option<String>,
        level: Level,
        verified_at: i64,
        previous: Option<Previous>,
    ) -> Prior {
        let when = date_of(verified_at);
        let cached_detail = if detail.is_empty() {
            format!("verified {when} (cached)")
        } else {
            format!("{detail}; verified {when} (cached)")
        };
        Prior {
            reason,
            detail,
            mx,
            level,
            verified_at,
            previous,
            cached_detail,
            under: DecidedUnder::default(),
            run: None,
        }
    }

    /// The same verdict, decided under `under` by the run `run`.
    pub fn decided(self, under: DecidedUnder, run: Option<i64>) -> Prior {
        Prior { under, run, ..self }
    }
}

/// What the store knows of a domain at level dns (the store's `lookup_domain`).
#[derive(Debug, Clone, Default)]
pub struct StoredDomain {
    /// Its latest dns-level verdict, young enough to serve or not.
    pub verdict: Option<Prior>,
    /// When one of its addresses was last verified at level smtp.
    pub smtp_at: Option<i64>,
}

/// An address's verdict as it was before the latest verification.
#[derive(Debug, Clone, PartialEq)]
pub struct Previous {
    pub status: Status,
    pub reason: Reason,
    pub verified_at: i64,
}

/// One entry of the suppression list.
#[derive(Debug, Clone, PartialEq)]
pub struct Suppression {
    /// An address key, or `@` and a domain.
    pub entry: String,
    pub reason: String,
    pub added_at: i64,
}
