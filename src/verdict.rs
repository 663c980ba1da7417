//! Evidence → (status, reason, detail): the one place a reason code is decided.
//!
//! Stages record what they saw (the syntax outcome now; DNS answers and SMTP replies later) and
//! this pure function turns it into a verdict, so a policy change never needs a new probe.

use std::borrow::Cow;
use std::fmt;

use serde::Serialize;

use crate::input::RowProblem;
use crate::syntax::{Address, SyntaxError};

/// The four output lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Status {
    Valid,
    Invalid,
    CatchAll,
    Unknown,
}

impl Status {
    pub const ALL: [Status; 4] = [
        Status::Valid,
        Status::Invalid,
        Status::CatchAll,
        Status::Unknown,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Valid => "valid",
            Status::Invalid => "invalid",
            Status::CatchAll => "catch-all",
            Status::Unknown => "unknown",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Stable, kebab-case reason codes: users filter on them, so add, never rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Reason {
    /// Well-formed address; only syntax was checked.
    SyntaxOk,
    /// Malformed address (the detail says how).
    Syntax,
    /// Well-formed address at a reserved or special-use domain (RFC 2606/6761).
    ReservedDomain,
    /// The CSV row itself could not be read (field count, unclosed quote, too long, not UTF-8).
    UnreadableRow,
}

impl Reason {
    pub const ALL: [Reason; 4] = [
        Reason::SyntaxOk,
        Reason::Syntax,
        Reason::ReservedDomain,
        Reason::UnreadableRow,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::SyntaxOk => "syntax-ok",
            Reason::Syntax => "syntax",
            Reason::ReservedDomain => "reserved-domain",
            Reason::UnreadableRow => "unreadable-row",
        }
    }

    pub fn status(self) -> Status {
        match self {
            Reason::SyntaxOk => Status::Valid,
            Reason::Syntax | Reason::ReservedDomain | Reason::UnreadableRow => Status::Invalid,
        }
    }

    /// Whether a row with this reason has an address one could send to at all
    /// (the denominator of the "send to everything" forecast).
    pub fn has_address(self) -> bool {
        !matches!(self, Reason::UnreadableRow)
    }

    /// Position in [`Reason::ALL`], for per-reason tables.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn from_code(code: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == code)
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a row never reached the address checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unreadable {
    Row(RowProblem),
    NotUtf8 {
        valid_up_to: usize,
    },
    /// The row is shorter than the email column.
    MissingEmailCell,
}

impl fmt::Display for Unreadable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unreadable::Row(p) => p.fmt(f),
            Unreadable::NotUtf8 { valid_up_to } => write!(
                f,
                "the email cell is not valid UTF-8 (bad byte after {valid_up_to} bytes); re-save the file as UTF-8"
            ),
            Unreadable::MissingEmailCell => f.write_str("the row has no email cell"),
        }
    }
}

/// What the stages learned about one row.
#[derive(Debug, Clone, PartialEq)]
pub enum Evidence {
    Unreadable(Unreadable),
    Syntax(Result<Address, SyntaxError>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    pub status: Status,
    pub reason: Reason,
    /// Fixed texts are borrowed: most rows share one of a handful.
    pub detail: Cow<'static, str>,
}

pub fn decide(evidence: &Evidence) -> Verdict {
    let (reason, detail) = match evidence {
        Evidence::Unreadable(why) => (Reason::UnreadableRow, Cow::Owned(why.to_string())),
        Evidence::Syntax(Ok(_)) => (
            Reason::SyntaxOk,
            // The reason says it all; an empty detail keeps a million-row valid.csv lean.
            Cow::Borrowed(""),
        ),
        Evidence::Syntax(Err(e)) if e.is_reserved_domain() => {
            (Reason::ReservedDomain, Cow::Owned(e.to_string()))
        }
        Evidence::Syntax(Err(e)) => (Reason::Syntax, Cow::Owned(e.to_string())),
    };
    Verdict {
        status: reason.status(),
        reason,
        detail,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::{SyntaxOptions, check};

    #[test]
    fn reason_codes_are_stable_kebab_case() {
        let codes: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            codes,
            ["syntax-ok", "syntax", "reserved-domain", "unreadable-row"]
        );
        for (i, r) in Reason::ALL.into_iter().enumerate() {
            assert_eq!(Reason::from_code(r.as_str()), Some(r));
            assert_eq!(r.index(), i);
        }
    }

    #[test]
    fn decisions() {
        let v = decide(&Evidence::Syntax(check(
            "a@gmail.com",
            SyntaxOptions::default(),
        )));
        assert_eq!((v.status, v.reason), (Status::Valid, Reason::SyntaxOk));
        let v = decide(&Evidence::Syntax(check(
            "a@example.com",
            SyntaxOptions::default(),
        )));
        assert_eq!(
            (v.status, v.reason),
            (Status::Invalid, Reason::ReservedDomain)
        );
        let v = decide(&Evidence::Syntax(check(
            "a@@gmail.com",
            SyntaxOptions::default(),
        )));
        assert_eq!((v.status, v.reason), (Status::Invalid, Reason::Syntax));
        assert!(v.detail.contains('@'), "{}", v.detail);
        let v = decide(&Evidence::Unreadable(Unreadable::NotUtf8 {
            valid_up_to: 3,
        }));
        assert_eq!(
            (v.status, v.reason),
            (Status::Invalid, Reason::UnreadableRow)
        );
        assert!(v.detail.contains("UTF-8"));
    }
}
