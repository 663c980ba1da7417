//! Evidence → (status, reason, detail): the one place a reason code is decided.
//!
//! Stages record what they saw (the syntax outcome now; DNS answers and SMTP replies later) and
//! this pure function turns it into a verdict, so a policy change never needs a new probe.

use std::borrow::Cow;
use std::fmt;

use std::sync::Arc;

use crate::model::dns::{Addresses, DomainEvidence, Failure};
use crate::model::smtp::{CatchAll, SmtpEvidence, SmtpOutcome, one_line};
use crate::model::stored::{Prior, Suppression};
use crate::model::time::date_of;
pub use crate::model::{Reason, Status};
use crate::model::{RowProblem, is_routable};
use crate::smtp::reply::classify;
use crate::syntax::{Address, SyntaxError};

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
    /// The syntax stage's outcome; for a well-formed address at `--level syntax`, all there is.
    Syntax(Result<Address, SyntaxError>),
    /// A well-formed address, what the DNS said about its domain, and (at level smtp, when the
    /// domain takes mail) what its mail server said about the mailbox.
    Domain {
        address: Address,
        dns: Arc<DomainEvidence>,
        smtp: Option<Arc<SmtpEvidence>>,
    },
    /// A well-formed address whose verdict an earlier run stored (see `store`): not checked
    /// again.
    Stored {
        address: Address,
        prior: Arc<Prior>,
    },
    /// A well-formed address on the suppression list: not checked.
    Suppressed {
        address: Address,
        entry: Arc<Suppression>,
    },
}

impl Evidence {
    pub fn address(&self) -> Option<&Address> {
        match self {
            Evidence::Syntax(Ok(a))
            | Evidence::Domain { address: a, .. }
            | Evidence::Stored { address: a, .. }
            | Evidence::Suppressed { address: a, .. } => Some(a),
            _ => None,
        }
    }
}

/// Policy knobs of the decision (from the command line).
#[derive(Debug, Clone, Copy, Default)]
pub struct Policy {
    /// Treat loopback/private MX addresses as ordinary (labs, intranets).
    pub allow_private_mx: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Verdict<'a> {
    pub status: Status,
    pub reason: Reason,
    /// Fixed texts are borrowed: most rows share one of a handful. So are a stored verdict's,
    /// which a whole domain's rows share.
    pub detail: Cow<'a, str>,
    /// The preferred mail server, when the DNS named one.
    pub mx: Option<Cow<'a, str>>,
}

impl Verdict<'_> {
    pub fn into_owned(self) -> Verdict<'static> {
        Verdict {
            status: self.status,
            reason: self.reason,
            detail: Cow::Owned(self.detail.into_owned()),
            mx: self.mx.map(|mx| Cow::Owned(mx.into_owned())),
        }
    }
}

pub fn decide(evidence: &Evidence, policy: Policy) -> Verdict<'_> {
    match evidence {
        Evidence::Stored { prior, .. } => {
            return Verdict {
                status: prior.reason.status(),
                reason: prior.reason,
                detail: Cow::Borrowed(&prior.cached_detail),
                mx: prior.mx.as_deref().map(Cow::Borrowed),
            };
        }
        Evidence::Suppressed { entry, .. } => {
            let what = if entry.entry.starts_with('@') {
                format!("the domain {}", &entry.entry[1..])
            } else {
                "the address".to_owned()
            };
            return Verdict {
                status: Status::Invalid,
                reason: Reason::Suppressed,
                detail: Cow::Owned(format!(
                    "{what} is on the suppression list since {}: {}",
                    date_of(entry.added_at),
                    entry.reason
                )),
                mx: None,
            };
        }
        _ => {}
    }
    if let Evidence::Domain { address, dns, smtp } = evidence {
        let (mut reason, mut detail, mx) = decide_domain(address.domain_ascii(), dns, policy);
        if let (Reason::DomainAcceptsMail, Some(smtp)) = (reason, smtp) {
            (reason, detail) = decide_mailbox(smtp);
        }
        return Verdict {
            status: reason.status(),
            reason,
            detail: Cow::Owned(detail),
            mx: mx.map(Cow::Owned),
        };
    }
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
        Evidence::Domain { .. } | Evidence::Stored { .. } | Evidence::Suppressed { .. } => {
            unreachable!("handled above")
        }
    };
    Verdict {
        status: reason.status(),
        reason,
        detail,
        mx: None,
    }
}

/// SMTP evidence → (reason, detail). Only a permanent answer about the mailbox itself makes an
/// address invalid; anything the server said about the prober or the session is unknown.
pub fn decide_mailbox(smtp: &SmtpEvidence) -> (Reason, String) {
    let at = |text: String| match &smtp.server {
        Some(server) => format!("{server}: {text}"),
        None => text,
    };
    let reason = match &smtp.outcome {
        SmtpOutcome::Replied(reply) => {
            let d = classify(reply);
            match d.reason {
                Reason::MailboxAccepted if smtp.catch_all == CatchAll::Yes => {
                    return (
                        Reason::AcceptAll,
                        at(format!(
                            "{}; the domain also accepts a made-up mailbox (catch-all), so this proves nothing",
                            one_line(reply)
                        )),
                    );
                }
                Reason::MailboxAccepted if smtp.catch_all == CatchAll::Undetermined => {
                    return (
                        Reason::MailboxAccepted,
                        at(format!(
                            "{}; whether the domain accepts every mailbox could not be determined",
                            one_line(reply)
                        )),
                    );
                }
                // A 4xx still standing after the retries: say which kind of deferral.
                Reason::Deferred if reply.code == 450 || reply.code == 451 => Reason::Greylisted,
                r => r,
            }
        }
        SmtpOutcome::SessionRefused(reply) => {
            // A refusal before RCPT is about us; even a "no such user" text there is not about
            // this mailbox.
            match classify(reply).reason {
                r @ (Reason::RateLimited | Reason::SmtpUnreachable) => r,
                _ if reply.code / 100 == 4 => Reason::Deferred,
                _ => Reason::ProberBlocked,
            }
        }
        SmtpOutcome::Unreachable(_) | SmtpOutcome::Unsendable(_) => Reason::SmtpUnreachable,
        SmtpOutcome::Timeout(_) => Reason::SmtpTimeout,
        SmtpOutcome::ProtocolError(_) => Reason::ProtocolError,
        SmtpOutcome::Smtputf8Unsupported => Reason::Smtputf8Unsupported,
        SmtpOutcome::ProviderAcceptsAll(_) => Reason::ProviderAcceptsAll,
    };
    (reason, at(smtp.outcome.to_string()))
}

/// Whether the DNS evidence lets the domain take mail (the addresses the SMTP stage probes).
pub fn domain_takes_mail(domain: &str, dns: &DomainEvidence, policy: Policy) -> bool {
    decide_domain(domain, dns, policy).0 == Reason::DomainAcceptsMail
}

fn usable(addresses: &Addresses, policy: Policy) -> bool {
    match addresses {
        Addresses::Found(ips) => policy.allow_private_mx || ips.iter().any(|ip| is_routable(*ip)),
        _ => false,
    }
}

fn failure_reason(f: &Failure) -> Reason {
    match f {
        Failure::Timeout => Reason::DnsTimeout,
        _ => Reason::DnsError,
    }
}

/// DNS evidence → (reason, detail, preferred MX host). RFC 5321 §5.1 and RFC 7505.
fn decide_domain(
    domain: &str,
    dns: &DomainEvidence,
    policy: Policy,
) -> (Reason, String, Option<String>) {
    match dns {
        DomainEvidence::NoSuchDomain => (
            Reason::NoSuchDomain,
            format!("{domain} does not exist (NXDOMAIN)"),
            None,
        ),
        DomainEvidence::NullMx => (
            Reason::NullMx,
            format!(
                "{domain} publishes a null MX (\".\" as its only mail server): it accepts no mail"
            ),
            None,
        ),
        DomainEvidence::Failed(f) => (
            failure_reason(f),
            format!("MX lookup for {domain}: {f}"),
            None,
        ),
        DomainEvidence::NoMx(addresses) => match addresses {
            Addresses::Found(_) if usable(addresses, policy) => (
                Reason::DomainAcceptsMail,
                format!("no MX; implicit MX: {domain} ({addresses}); mailbox not checked"),
                Some(domain.to_owned()),
            ),
            Addresses::Found(_) => (
                Reason::MxUnroutable,
                format!("no MX; {domain} resolves only to unroutable addresses ({addresses})"),
                None,
            ),
            Addresses::None => (
                Reason::NoMailServer,
                format!("{domain} has neither MX nor A/AAAA records"),
                None,
            ),
            Addresses::Failed(f) => (
                failure_reason(f),
                format!("no MX; address lookup for {domain}: {f}"),
                None,
            ),
        },
        DomainEvidence::Mx(hosts) => {
            let listed: Vec<String> = hosts.iter().take(4).map(|h| h.to_string()).collect();
            let mut detail = listed.join("; ");
            if hosts.len() > 4 {
                detail.push_str(&format!("; and {} more", hosts.len() - 4));
            }
            if let Some(h) = hosts.iter().find(|h| usable(&h.addresses, policy)) {
                return (
                    Reason::DomainAcceptsMail,
                    format!("{detail}; mailbox not checked"),
                    Some(h.name.clone()),
                );
            }
            // Undecided when any host's lookup failed: it might have resolved to a usable
            // address, so neither "unroutable" nor "unresolvable" can be concluded.
            if let Some(f) = hosts.iter().find_map(|h| match &h.addresses {
                Addresses::Failed(f) => Some(f),
                _ => None,
            }) {
                return (failure_reason(f), detail, None);
            }
            if hosts
                .iter()
                .any(|h| matches!(h.addresses, Addresses::Found(_)))
            {
                return (
                    Reason::MxUnroutable,
                    format!("{detail}: no MX address is reachable from the internet"),
                    None,
                );
            }
            (
                Reason::MxUnresolvable,
                format!("{detail}: no MX host resolves"),
                None,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::{SyntaxOptions, check};

    #[test]
    fn microsoft_365_directory_based_edge_blocking_is_a_missing_recipient() {
        // A tenant without the recipient answers this at RCPT (issue #16): not a block.
        let reply = crate::model::reply::Reply::parse(
            "550 5.4.1 Recipient address rejected: Access denied. AS(201806281) [DM6NAM11FT012.eop-nam11.prod.protection.outlook.com]",
        )
        .expect("a reply");
        let m365 = SmtpEvidence {
            outcome: SmtpOutcome::Replied(reply),
            server: Some("example-com.mail.protection.outlook.com [192.0.2.1]".to_owned()),
            attempts: 1,
            catch_all: CatchAll::No,
        };
        assert_eq!(decide_mailbox(&m365).0, Reason::MailboxNotFound);
    }

    #[test]
    fn reason_codes_are_stable_kebab_case() {
        let codes: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(
            codes,
            [
                "syntax-ok",
                "syntax",
                "reserved-domain",
                "unreadable-row",
                "domain-accepts-mail",
                "no-such-domain",
                "null-mx",
                "no-mail-server",
                "mx-unresolvable",
                "mx-unroutable",
                "dns-error",
                "dns-timeout",
                "mailbox-accepted",
                "accept-all",
                "provider-accepts-all",
                "mailbox-not-found",
                "mailbox-disabled",
                "mailbox-full",
                "greylisted",
                "deferred",
                "rate-limited",
                "prober-blocked",
                "policy-rejected",
                "server-error",
                "protocol-error",
                "unrecognized",
                "smtp-unreachable",
                "smtp-timeout",
                "smtputf8-unsupported",
                "suppressed",
            ]
        );
        for (i, r) in Reason::ALL.into_iter().enumerate() {
            assert_eq!(Reason::from_code(r.as_str()), Some(r));
            assert_eq!(r.index(), i);
        }
    }

    #[test]
    fn decisions() {
        let v = decide(
            &Evidence::Syntax(check("a@gmail.com", SyntaxOptions::default())),
            Policy::default(),
        )
        .into_owned();
        assert_eq!((v.status, v.reason), (Status::Valid, Reason::SyntaxOk));
        let v = decide(
            &Evidence::Syntax(check("a@example.com", SyntaxOptions::default())),
            Policy::default(),
        )
        .into_owned();
        assert_eq!(
            (v.status, v.reason),
            (Status::Invalid, Reason::ReservedDomain)
        );
        let v = decide(
            &Evidence::Syntax(check("a@@gmail.com", SyntaxOptions::default())),
            Policy::default(),
        )
        .into_owned();
        assert_eq!((v.status, v.reason), (Status::Invalid, Reason::Syntax));
        assert!(v.detail.contains('@'), "{}", v.detail);
        let v = decide(
            &Evidence::Unreadable(Unreadable::NotUtf8 { valid_up_to: 3 }),
            Policy::default(),
        )
        .into_owned();
        assert_eq!(
            (v.status, v.reason),
            (Status::Invalid, Reason::UnreadableRow)
        );
        assert!(v.detail.contains("UTF-8"));
    }

    fn domain_verdict(dns: DomainEvidence, allow_private_mx: bool) -> Verdict<'static> {
        let address = check(
            "ann@lab.test",
            SyntaxOptions {
                allow_reserved_domains: true,
            },
        )
        .unwrap();
        decide(
            &Evidence::Domain {
                address,
                dns: Arc::new(dns),
                smtp: None,
            },
            Policy { allow_private_mx },
        )
        .into_owned()
    }

    fn host(preference: u16, name: &str, addresses: Addresses) -> crate::dns::MxHost {
        crate::dns::MxHost {
            preference,
            name: name.into(),
            addresses,
        }
    }

    #[test]
    fn dns_decisions_cover_every_case() {
        let public = || Addresses::Found(vec!["93.184.216.34".parse().unwrap()]);
        let private = || Addresses::Found(vec!["127.77.1.1".parse().unwrap()]);
        let cases = [
            (
                DomainEvidence::NoSuchDomain,
                false,
                Reason::NoSuchDomain,
                None,
            ),
            (DomainEvidence::NullMx, true, Reason::NullMx, None),
            (
                DomainEvidence::Failed(Failure::ServFail),
                false,
                Reason::DnsError,
                None,
            ),
            (
                DomainEvidence::Failed(Failure::Refused),
                false,
                Reason::DnsError,
                None,
            ),
            (
                DomainEvidence::Failed(Failure::Timeout),
                false,
                Reason::DnsTimeout,
                None,
            ),
            (
                DomainEvidence::NoMx(public()),
                false,
                Reason::DomainAcceptsMail,
                Some("lab.test"),
            ),
            (
                DomainEvidence::NoMx(private()),
                false,
                Reason::MxUnroutable,
                None,
            ),
            (
                DomainEvidence::NoMx(private()),
                true,
                Reason::DomainAcceptsMail,
                Some("lab.test"),
            ),
            (
                DomainEvidence::NoMx(Addresses::None),
                false,
                Reason::NoMailServer,
                None,
            ),
            (
                DomainEvidence::NoMx(Addresses::Failed(Failure::Timeout)),
                false,
                Reason::DnsTimeout,
                None,
            ),
            (
                DomainEvidence::Mx(vec![host(10, "mx1", public())]),
                false,
                Reason::DomainAcceptsMail,
                Some("mx1"),
            ),
            (
                DomainEvidence::Mx(vec![host(10, "mx1", private())]),
                false,
                Reason::MxUnroutable,
                None,
            ),
            (
                DomainEvidence::Mx(vec![host(10, "mx1", private())]),
                true,
                Reason::DomainAcceptsMail,
                Some("mx1"),
            ),
            (
                DomainEvidence::Mx(vec![
                    host(10, "gone", Addresses::None),
                    host(20, "backup", private()),
                ]),
                true,
                Reason::DomainAcceptsMail,
                Some("backup"),
            ),
            (
                DomainEvidence::Mx(vec![host(10, "gone", Addresses::None)]),
                true,
                Reason::MxUnresolvable,
                None,
            ),
            (
                DomainEvidence::Mx(vec![
                    host(10, "gone", Addresses::None),
                    host(20, "x", Addresses::Failed(Failure::ServFail)),
                ]),
                true,
                Reason::DnsError,
                None,
            ),
            // A private host and a failed one: the failed one might be routable.
            (
                DomainEvidence::Mx(vec![
                    host(10, "mxp", private()),
                    host(20, "x", Addresses::Failed(Failure::ServFail)),
                ]),
                false,
                Reason::DnsError,
                None,
            ),
        ];
        for (dns, allow, reason, mx) in cases {
            let shown = format!("{dns:?} allow_private_mx={allow}");
            let v = domain_verdict(dns, allow);
            assert_eq!(v.reason, reason, "{shown}");
            assert_eq!(v.status, reason.status(), "{shown}");
            assert_eq!(v.mx.as_deref(), mx, "{shown}");
            assert!(!v.detail.is_empty(), "{shown}");
        }
    }

    #[test]
    fn dns_details_say_what_was_found() {
        let v = domain_verdict(
            DomainEvidence::Mx(vec![host(
                10,
                "mx1.example.com",
                Addresses::Found(vec!["192.0.2.1".parse().unwrap()]),
            )]),
            true,
        );
        assert!(
            v.detail.starts_with("MX 10 mx1.example.com (192.0.2.1)"),
            "{}",
            v.detail
        );
    }
}
