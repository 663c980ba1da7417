//! The shared vocabulary of every stage, pure: what a row's verdict can be (statuses, one
//! table of reasons with their meaning and advice), the levels, and the evidence each stage
//! records (DNS answers, SMTP replies, stored verdicts). It imports no other module of the
//! crate and no I/O: the stages depend on it, never the other way round (tests/layout.rs).

pub mod dns;
mod level;
pub mod provider;
mod reason;
pub mod reply;
mod routable;
pub mod row;
pub mod smtp;
mod status;
pub mod stored;
pub mod time;

pub use level::Level;
pub use reason::{Action, Reason};
pub use routable::is_routable;
pub use row::{Ragged, RowProblem};
pub use status::Status;
