//! DNS stage: does the domain accept mail, and at which hosts (RFC 5321 §5.1, RFC 7505).
//!
//! `resolve` asks the DNS (hickory-resolver on tokio), once per domain and once per MX host for a
//! whole run, and records what it saw as [`DomainEvidence`]. Turning that evidence into a verdict
//! is `verdict::decide`'s job; nothing here decides validity.

mod resolve;

pub use crate::model::dns::{Addresses, DomainEvidence, Failure, MxHost, RecordKind, RecordLookup};
pub use crate::model::is_routable;
pub use resolve::{DnsConfig, DnsResolver, DnsSetupError, DnsStats};
