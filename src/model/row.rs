//! What can be wrong with a row of the input itself, before any address check.

/// Longest record we accept. Real email-list rows are under 1 KiB; this leaves room for notes
/// columns while keeping a runaway quote or a 10 MB field from costing more than this.
pub const MAX_RECORD_BYTES: usize = 1 << 20;
/// How much of an over-long record is kept for the output row.
pub const KEPT_PREFIX_BYTES: usize = 4096;

/// Why a row cannot be taken at face value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowProblem {
    FieldCount { found: usize, expected: usize },
    UnterminatedQuote,
    TooLong { bytes: u64 },
}

impl std::fmt::Display for RowProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RowProblem::FieldCount { found, expected } => {
                write!(f, "row has {found} fields, the header has {expected}")
            }
            RowProblem::UnterminatedQuote => {
                f.write_str("a quote opened on this line is never closed; the line is kept as read")
            }
            RowProblem::TooLong { bytes } => write!(
                f,
                "row is {bytes} bytes long (limit {} bytes); only its first {} bytes are kept",
                MAX_RECORD_BYTES, KEPT_PREFIX_BYTES
            ),
        }
    }
}
