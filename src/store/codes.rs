//! How verdicts' levels, statuses and domain rows are written as stored values: the same in
//! every backend.

use super::{DecidedUnder, Prior};
use crate::model::{Level, Reason, Status};

pub(super) fn level_of(n: i64) -> Option<Level> {
    match n {
        0 => Some(Level::Syntax),
        1 => Some(Level::Dns),
        2 => Some(Level::Smtp),
        _ => None,
    }
}

pub(super) fn level_index(l: Level) -> i64 {
    match l {
        Level::Syntax => 0,
        Level::Dns => 1,
        Level::Smtp => 2,
    }
}

pub(super) fn status_of(s: &str) -> Option<Status> {
    Status::ALL.into_iter().find(|x| x.as_str() == s)
}

/// A domain's stored dns-level verdict as a [`Prior`] (None for a reason or options this build
/// does not know: a newer prebounce wrote it).
pub(super) fn domain_prior(
    reason: &str,
    detail: String,
    mx: Option<String>,
    at: i64,
    options: &str,
    run: Option<i64>,
) -> Option<Prior> {
    let under = DecidedUnder::from_codes(options, None)?;
    Reason::from_code(reason)
        .map(|reason| Prior::new(reason, detail, mx, Level::Dns, at, None).decided(under, run))
}
