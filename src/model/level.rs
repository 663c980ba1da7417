//! How far a run verifies.

/// How far to verify; each level includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Syntax,
    Dns,
    Smtp,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Syntax => "syntax",
            Level::Dns => "dns",
            Level::Smtp => "smtp",
        }
    }
}
