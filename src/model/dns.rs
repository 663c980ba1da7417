//! What the DNS stage saw of a domain: the evidence `verdict::decide` turns into a verdict.

use core::net::IpAddr;
use std::fmt;

/// Why a lookup gave no usable answer although the name may exist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    ServFail,
    Refused,
    /// No answer within the timeout, after the retries.
    Timeout,
    Other(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::ServFail => f.write_str("SERVFAIL"),
            Failure::Refused => f.write_str("REFUSED"),
            Failure::Timeout => f.write_str("timed out"),
            Failure::Other(e) => f.write_str(e),
        }
    }
}

/// The outcome of an address (A + AAAA) lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Addresses {
    Found(Vec<IpAddr>),
    /// NXDOMAIN, or the name exists without A/AAAA records.
    None,
    Failed(Failure),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MxHost {
    pub preference: u16,
    /// Lower-case, without the trailing dot.
    pub name: String,
    pub addresses: Addresses,
}

/// What the DNS said about a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DomainEvidence {
    /// MX records, in preference order (equal preferences in random order).
    Mx(Vec<MxHost>),
    /// `MX 0 .`: the domain declares it accepts no mail (RFC 7505).
    NullMx,
    /// NXDOMAIN for the domain itself.
    NoSuchDomain,
    /// The domain exists without MX records: its own A/AAAA are the implicit MX (RFC 5321 §5.1).
    NoMx(Addresses),
    /// The MX lookup itself failed.
    Failed(Failure),
}

impl fmt::Display for Addresses {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Addresses::Found(ips) => {
                for (i, ip) in ips.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{ip}")?;
                }
                Ok(())
            }
            Addresses::None => f.write_str("no address"),
            Addresses::Failed(e) => write!(f, "address lookup {e}"),
        }
    }
}

impl fmt::Display for MxHost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "MX {} {} ({})",
            self.preference, self.name, self.addresses
        )
    }
}

/// A record type the preflight checks ask for (SPF, DKIM, DMARC, PTR, DNSBL, HELO).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RecordKind {
    A,
    Aaaa,
    Mx,
    Txt,
    Ptr,
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RecordKind::A => "A",
            RecordKind::Aaaa => "AAAA",
            RecordKind::Mx => "MX",
            RecordKind::Txt => "TXT",
            RecordKind::Ptr => "PTR",
        })
    }
}

/// One query's answer, each record as text: an address, `10 mx.example.org` for MX, a TXT
/// record's strings joined without separator (RFC 7208 §3.3), a PTR target without the
/// trailing dot. NXDOMAIN and "no records of this type" stay apart: SPF counts both as void
/// lookups, but a DNSBL's NXDOMAIN is its "not listed".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordLookup {
    Found(Vec<String>),
    NxDomain,
    NoData,
    Failed(Failure),
}

impl RecordLookup {
    /// The records, none for NXDOMAIN, no data and failures.
    pub fn records(&self) -> &[String] {
        match self {
            RecordLookup::Found(records) => records,
            _ => &[],
        }
    }

    /// NXDOMAIN or no data (RFC 7208 §4.6.4's "void lookup").
    pub fn is_void(&self) -> bool {
        matches!(self, RecordLookup::NxDomain | RecordLookup::NoData)
            || matches!(self, RecordLookup::Found(r) if r.is_empty())
    }
}
