//! Preflight: before probing, can this machine probe, and is the sender set up to send?
//!
//! Two parts, each a list of [`Check`]s (pass / warn / fail / skip, the evidence, what to do),
//! together a [`PreflightReport`] (`{"sender": …, "prober": …}` in JSON):
//! - [`sender`]: the sender domain — MX (the DNS stage's rules), SPF, DKIM per selector,
//!   DMARC and the bulk-sender verdict (I/O: DNS queries).
//! - [`prober`]: this machine as a prober for `--level smtp` — egress address, PTR and
//!   forward-confirmed reverse DNS, HELO name, DNS blocklists, port 25 egress (I/O: DNS
//!   queries and TCP connections).
//!
//! What the answers mean is decided by pure modules that never touch the network: [`check`]
//! (the check type), [`spf`] (RFC 7208 parsing and lookup counting over a DNS-answer source),
//! [`dkim`] (key records, RSA key size), [`dmarc`] (records, organizational domain), [`dnsbl`]
//! (RFC 5782 answers) and [`bulk`] (the bulk-sender verdict).

pub mod bulk;
pub mod check;
pub mod dkim;
pub mod dmarc;
pub mod dnsbl;
pub mod prober;
pub mod sender;
pub mod spf;

use serde::Serialize;

pub use check::{Check, CheckStatus};
pub use prober::{Port25Result, ProbeTarget, ProberOptions, ProberReport};
pub use sender::{SenderOptions, SenderReport};

/// Both parts: `{"sender": {"domain", "checks"}, "prober": {"egress_ip", "checks"} | null}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PreflightReport {
    pub sender: SenderReport,
    /// None when only the sender domain was checked (`--domain` without `--from`).
    pub prober: Option<ProberReport>,
}

impl PreflightReport {
    /// Every check, the sender's first.
    pub fn checks(&self) -> impl Iterator<Item = &Check> {
        let prober = self.prober.iter().flat_map(|p| p.checks.iter());
        self.sender.checks.iter().chain(prober)
    }

    /// Whether any check failed (`prebounce preflight` then exits with 1).
    pub fn failed(&self) -> bool {
        self.checks().any(|c| c.status == CheckStatus::Fail)
    }
}
