//! What can be wrong with a row of the input itself, before any address check, and how a
//! readable row's shape can differ from the header's.

/// Longest record we accept. Real email-list rows are under 1 KiB; this leaves room for notes
/// columns while keeping a runaway quote or a 10 MB field from costing more than this.
pub const MAX_RECORD_BYTES: usize = 1 << 20;
/// Longest first row (the header, or the first data row that sets the width) we read whole.
/// A header is read once and decides every row's shape, so cutting it would misread the whole
/// list; wide exports (150,000 columns of short names) pass well under this.
pub const MAX_HEADER_BYTES: usize = 16 << 20;
/// How much of an over-long record is kept for the output row.
pub const KEPT_PREFIX_BYTES: usize = 4096;

/// Why a row cannot be taken at face value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowProblem {
    UnterminatedQuote,
    TooLong { bytes: u64 },
}

impl std::fmt::Display for RowProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
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

/// A readable row with more or fewer cells than the header (an unquoted comma in a name, a
/// trailing cell cut off). Its cells are kept as they came and its address checked like any
/// other; this says how it differs, for the `ragged-row` flag and the detail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ragged {
    /// (u32: a row's cells are bounded by its bytes, and every checked row carries this.)
    pub found: u32,
    pub expected: u32,
    /// Set when the email column's cell held no address and exactly one other cell did (the
    /// cells were shifted): the 0-based column the address was taken from.
    pub shifted_to: Option<u32>,
}

impl Ragged {
    /// The column the row's address was taken from, when its cells were shifted.
    pub fn shifted_column(&self) -> Option<usize> {
        self.shifted_to.map(|c| c as usize)
    }
}

impl std::fmt::Display for Ragged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Ragged {
            found, expected, ..
        } = self;
        write!(f, "row has {found} cells, the header has {expected}")?;
        if let Some(column) = self.shifted_to {
            write!(
                f,
                "; the email column's cell holds no address, so the address is taken from \
                 column {}, the only cell that holds one",
                column + 1
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ragged_detail_names_the_shape_and_the_column_used() {
        let plain = Ragged {
            found: 5,
            expected: 3,
            shifted_to: None,
        };
        assert_eq!(plain.to_string(), "row has 5 cells, the header has 3");
        let shifted = Ragged {
            shifted_to: Some(2),
            ..plain
        };
        assert!(shifted.to_string().contains("column 3"), "{shifted}");
    }
}
