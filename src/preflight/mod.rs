//! Preflight: before probing, can this machine probe, and is the sender set up to send?
//!
//! Two parts, each a list of [`Check`]s (pass / warn / fail / skip, the evidence, what to do):
//! - [`prober`]: this machine as a prober for `--level smtp` — egress address, PTR and
//!   forward-confirmed reverse DNS, HELO name, DNS blocklists, port 25 egress (I/O).
//! - `sender`: the sender domain — MX, SPF, DKIM, DMARC and the bulk-sender verdict (I/O over
//!   the pure evaluators below).
//!
//! The pure parts decide what DNS answers mean and never touch the network: `check` (the check
//! type), `dnsbl` (RFC 5782 answers).

pub mod check;
pub mod dnsbl;
pub mod prober;
pub mod spf;

pub use check::{Check, CheckStatus};
pub use prober::{Port25Result, ProbeTarget, ProberOptions, ProberReport};
