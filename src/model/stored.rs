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
        }
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
