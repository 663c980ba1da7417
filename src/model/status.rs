//! The four output lists.

use std::fmt;

use serde::Serialize;

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
