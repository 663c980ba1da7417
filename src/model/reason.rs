//! The reason codes: one table of what each means, which list it puts a row in, and what to do
//! about it. Stable and kebab-case: users filter on them, so add, never rename.

use std::fmt;

use serde::{Serialize, Serializer};

use super::Status;

/// What the sender should do with the address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// The mailbox accepts mail: send.
    Keep,
    /// The address will bounce: take it off the list.
    Suppress,
    /// Nothing is known yet: ask again later, backing off between tries.
    RetryLater,
    /// The server refused the prober: fix the sending IP, reverse DNS or authentication before
    /// trusting any result from this server.
    FixSendingSetup,
    /// A person should look at the reply.
    Investigate,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Keep => "keep",
            Action::Suppress => "suppress",
            Action::RetryLater => "retry-later",
            Action::FixSendingSetup => "fix-sending-setup",
            Action::Investigate => "investigate",
        }
    }

    /// One sentence for people.
    pub fn advice(self) -> &'static str {
        match self {
            Action::Keep => "keep the address: its server accepts mail for it",
            Action::Suppress => "suppress the address: mail to it will bounce",
            Action::RetryLater => {
                "retry later with backoff (minutes, then hours); until then the address is unknown"
            }
            Action::FixSendingSetup => {
                "fix your sending setup (IP reputation and blocklists, reverse DNS, SPF/DKIM/DMARC, \
                 HELO name, sender address) and probe again; the address itself is unknown"
            }
            Action::Investigate => {
                "investigate: read the reply; the address stays unknown until someone does"
            }
        }
    }
}

/// Stable, kebab-case reason codes: users filter on them, so add, never rename.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Reason {
    /// Well-formed address; only syntax was checked.
    SyntaxOk,
    /// Malformed address (the detail says how).
    Syntax,
    /// Well-formed address at a reserved or special-use domain (RFC 2606/6761).
    ReservedDomain,
    /// No address could be read from the CSV row (no email cell, unclosed quote, too long, not
    /// UTF-8).
    UnreadableRow,
    /// The domain has a mail server that resolves (the mailbox itself is not checked).
    DomainAcceptsMail,
    /// NXDOMAIN.
    NoSuchDomain,
    /// `MX 0 .` (RFC 7505).
    NullMx,
    /// No MX and no A/AAAA.
    NoMailServer,
    /// MX hosts exist but none resolves.
    MxUnresolvable,
    /// Every mail server address is loopback, private or otherwise unreachable from the internet.
    MxUnroutable,
    /// SERVFAIL, REFUSED or another DNS failure: nothing is known.
    DnsError,
    /// No DNS answer in time, after retries.
    DnsTimeout,
    // SMTP (level smtp). The names are shared with `prebounce explain`'s reply reasons.
    /// 250/251 to RCPT at a domain that rejects made-up mailboxes (or whose canary got no
    /// decisive answer).
    MailboxAccepted,
    /// Accepted, but the domain also accepts a mailbox that cannot exist: proves nothing.
    AcceptAll,
    /// Not probed: the domain's mail goes to a provider whose servers accept every recipient
    /// at RCPT and bounce later (Yahoo/AOL, Mail.ru, Yandex: the provider table).
    ProviderAcceptsAll,
    MailboxNotFound,
    MailboxDisabled,
    MailboxFull,
    /// Still deferred (450/451) after the retries.
    Greylisted,
    /// Another 4xx about the mailbox, still so after the retries.
    Deferred,
    RateLimited,
    /// The server refused the prober (blocklist, reputation, PTR, sender, 5.7.x): nothing is
    /// known about the mailbox.
    ProberBlocked,
    PolicyRejected,
    ServerError,
    ProtocolError,
    /// A 5xx that gives no cause.
    Unrecognized,
    SmtpUnreachable,
    SmtpTimeout,
    /// Non-ASCII local part; the server does not advertise SMTPUTF8 (RFC 6531).
    Smtputf8Unsupported,
    /// On the suppression list (`prebounce suppress`): never to be mailed; not checked.
    Suppressed,
}

impl Reason {
    /// The reasons an SMTP reply decodes to (`smtp::reply::classify`, `prebounce explain`).
    pub const FROM_REPLIES: [Reason; 15] = [
        Reason::MailboxAccepted,
        Reason::MailboxNotFound,
        Reason::MailboxDisabled,
        Reason::NoSuchDomain,
        Reason::MailboxFull,
        Reason::Greylisted,
        Reason::Deferred,
        Reason::RateLimited,
        Reason::ProberBlocked,
        Reason::PolicyRejected,
        Reason::ServerError,
        Reason::ProtocolError,
        Reason::Unrecognized,
        Reason::SmtpUnreachable,
        Reason::SmtpTimeout,
    ];

    pub const ALL: [Reason; 30] = [
        Reason::SyntaxOk,
        Reason::Syntax,
        Reason::ReservedDomain,
        Reason::UnreadableRow,
        Reason::DomainAcceptsMail,
        Reason::NoSuchDomain,
        Reason::NullMx,
        Reason::NoMailServer,
        Reason::MxUnresolvable,
        Reason::MxUnroutable,
        Reason::DnsError,
        Reason::DnsTimeout,
        Reason::MailboxAccepted,
        Reason::AcceptAll,
        Reason::ProviderAcceptsAll,
        Reason::MailboxNotFound,
        Reason::MailboxDisabled,
        Reason::MailboxFull,
        Reason::Greylisted,
        Reason::Deferred,
        Reason::RateLimited,
        Reason::ProberBlocked,
        Reason::PolicyRejected,
        Reason::ServerError,
        Reason::ProtocolError,
        Reason::Unrecognized,
        Reason::SmtpUnreachable,
        Reason::SmtpTimeout,
        Reason::Smtputf8Unsupported,
        Reason::Suppressed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::SyntaxOk => "syntax-ok",
            Reason::Syntax => "syntax",
            Reason::ReservedDomain => "reserved-domain",
            Reason::UnreadableRow => "unreadable-row",
            Reason::DomainAcceptsMail => "domain-accepts-mail",
            Reason::NoSuchDomain => "no-such-domain",
            Reason::NullMx => "null-mx",
            Reason::NoMailServer => "no-mail-server",
            Reason::MxUnresolvable => "mx-unresolvable",
            Reason::MxUnroutable => "mx-unroutable",
            Reason::DnsError => "dns-error",
            Reason::DnsTimeout => "dns-timeout",
            Reason::MailboxAccepted => "mailbox-accepted",
            Reason::AcceptAll => "accept-all",
            Reason::ProviderAcceptsAll => "provider-accepts-all",
            Reason::MailboxNotFound => "mailbox-not-found",
            Reason::MailboxDisabled => "mailbox-disabled",
            Reason::MailboxFull => "mailbox-full",
            Reason::Greylisted => "greylisted",
            Reason::Deferred => "deferred",
            Reason::RateLimited => "rate-limited",
            Reason::ProberBlocked => "prober-blocked",
            Reason::PolicyRejected => "policy-rejected",
            Reason::ServerError => "server-error",
            Reason::ProtocolError => "protocol-error",
            Reason::Unrecognized => "unrecognized",
            Reason::SmtpUnreachable => "smtp-unreachable",
            Reason::SmtpTimeout => "smtp-timeout",
            Reason::Smtputf8Unsupported => "smtputf8-unsupported",
            Reason::Suppressed => "suppressed",
        }
    }

    pub fn status(self) -> Status {
        match self {
            Reason::SyntaxOk | Reason::DomainAcceptsMail | Reason::MailboxAccepted => Status::Valid,
            Reason::AcceptAll | Reason::ProviderAcceptsAll => Status::CatchAll,
            Reason::MailboxNotFound | Reason::MailboxDisabled => Status::Invalid,
            Reason::Syntax
            | Reason::ReservedDomain
            | Reason::UnreadableRow
            | Reason::NoSuchDomain
            | Reason::NullMx
            | Reason::NoMailServer
            | Reason::MxUnresolvable
            | Reason::MxUnroutable
            | Reason::Suppressed => Status::Invalid,
            Reason::DnsError
            | Reason::DnsTimeout
            | Reason::MailboxFull
            | Reason::Greylisted
            | Reason::Deferred
            | Reason::RateLimited
            | Reason::ProberBlocked
            | Reason::PolicyRejected
            | Reason::ServerError
            | Reason::ProtocolError
            | Reason::Unrecognized
            | Reason::SmtpUnreachable
            | Reason::SmtpTimeout
            | Reason::Smtputf8Unsupported => Status::Unknown,
        }
    }

    /// Whether a row with this reason has an address one could send to at all
    /// (the denominator of the "send to everything" forecast).
    pub fn has_address(self) -> bool {
        !matches!(self, Reason::UnreadableRow)
    }

    /// Position in [`Reason::ALL`], for per-reason tables.
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn from_code(code: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.as_str() == code)
    }

    /// What the sender should do with an address for which a reply decoded to this reason.
    /// Defined for every reason: the rows' advice ([`Reason::advice`]) starts from it.
    pub fn action(self) -> Action {
        match self {
            Reason::MailboxAccepted => Action::Keep,
            Reason::MailboxNotFound | Reason::MailboxDisabled | Reason::NoSuchDomain => {
                Action::Suppress
            }
            Reason::MailboxFull
            | Reason::Greylisted
            | Reason::Deferred
            | Reason::RateLimited
            | Reason::ServerError
            | Reason::SmtpUnreachable
            | Reason::SmtpTimeout => Action::RetryLater,
            Reason::ProberBlocked => Action::FixSendingSetup,
            Reason::PolicyRejected | Reason::ProtocolError | Reason::Unrecognized => {
                Action::Investigate
            }
            Reason::SyntaxOk | Reason::DomainAcceptsMail => Action::Keep,
            Reason::Syntax
            | Reason::ReservedDomain
            | Reason::NullMx
            | Reason::NoMailServer
            | Reason::MxUnresolvable
            | Reason::MxUnroutable
            | Reason::Smtputf8Unsupported
            | Reason::Suppressed => Action::Suppress,
            Reason::DnsError | Reason::DnsTimeout => Action::RetryLater,
            Reason::UnreadableRow | Reason::AcceptAll | Reason::ProviderAcceptsAll => {
                Action::Investigate
            }
        }
    }

    /// A one-line explanation of the reason for someone who does not know SMTP or DNS.
    pub fn meaning(self) -> &'static str {
        match self {
            Reason::SyntaxOk => {
                "The address is well formed. Only its spelling was checked, not its domain or mailbox."
            }
            Reason::Syntax => {
                "The address is malformed (no @, a space, two dots in a row…) and cannot receive mail."
            }
            Reason::ReservedDomain => {
                "The domain is reserved for examples and tests (example.com, .test, .invalid…) and never receives mail."
            }
            Reason::UnreadableRow => {
                "No address could be read from the row of the file: too few cells to reach the email column, an unclosed quote, too long, or not UTF-8."
            }
            Reason::DomainAcceptsMail => {
                "The domain has a working mail server. The mailbox itself was not checked."
            }
            Reason::NoSuchDomain => "The domain does not exist.",
            Reason::NullMx => "The domain declares that it accepts no mail at all (null MX).",
            Reason::NoMailServer => "The domain exists but has no mail server.",
            Reason::MxUnresolvable => {
                "The domain names mail servers, but none of them can be found."
            }
            Reason::MxUnroutable => {
                "The domain's mail servers sit on private or unreachable network addresses."
            }
            Reason::DnsError => {
                "The DNS lookup failed on the name server's side; nothing is known about the address."
            }
            Reason::DnsTimeout => "The DNS lookup got no answer in time; nothing is known yet.",
            Reason::MailboxAccepted => "The mailbox's own server said it accepts mail for it.",
            Reason::AcceptAll => {
                "The server accepts any address at this domain, even made-up ones, so its \"yes\" proves nothing."
            }
            Reason::ProviderAcceptsAll => {
                "The domain's mail goes to a provider whose servers accept every address when asked and bounce unknown ones later, so asking proves nothing; it was not probed."
            }
            Reason::MailboxNotFound => "The mail server said this mailbox does not exist.",
            Reason::MailboxDisabled => "The mail server said this mailbox is disabled or inactive.",
            Reason::MailboxFull => "The mailbox is over its storage quota.",
            Reason::Greylisted => "The server kept asking to try again later (greylisting).",
            Reason::Deferred => "The server kept answering \"not now\" about this mailbox.",
            Reason::RateLimited => {
                "The server slowed the checks down; it said nothing about the mailbox."
            }
            Reason::ProberBlocked => {
                "The server refused the checking machine itself (blocklist, reputation, reverse DNS), not the address."
            }
            Reason::PolicyRejected => {
                "A rule of the receiving side refused this recipient; the mailbox may exist."
            }
            Reason::ServerError => "The receiving mail system failed on its own side.",
            Reason::ProtocolError => "The mail server broke the SMTP dialogue.",
            Reason::Unrecognized => "The mail server refused the address without saying why.",
            Reason::SmtpUnreachable => "None of the domain's mail servers would talk to us.",
            Reason::SmtpTimeout => "The mail server did not answer in time.",
            Reason::Smtputf8Unsupported => {
                "The address has non-ASCII characters before the @, and its server cannot take them."
            }
            Reason::Suppressed => {
                "The address or its domain is on your suppression list (an earlier hard bounce, an unsubscribe…); it was not checked."
            }
        }
    }

    /// What to do about rows with this reason: a short label and one sentence. The reasons a
    /// reply decodes to take the advice `prebounce explain` gives.
    pub fn advice(self) -> (&'static str, &'static str) {
        let of = |a: Action| (a.as_str(), a.advice());
        if Reason::FROM_REPLIES.contains(&self) {
            return of(self.action());
        }
        match self {
            Reason::SyntaxOk => (
                "keep",
                "keep it, but it is unverified: run at --level dns or --level smtp before a large send",
            ),
            Reason::DomainAcceptsMail => (
                "keep",
                "keep it; --level smtp would also ask the mailbox's own server",
            ),
            Reason::Syntax => (
                "suppress",
                "suppress the address, or correct it by hand when the detail shows an obvious slip",
            ),
            Reason::UnreadableRow => (
                "fix-the-file",
                "fix the row in the source file (quotes, number of cells, encoding) and run again",
            ),
            Reason::AcceptAll | Reason::ProviderAcceptsAll => (
                "send-with-care",
                "send with care: the address may not exist; mail it last, in small batches, and watch its bounces",
            ),
            Reason::Suppressed => (
                "suppress",
                "do not mail it: remove it with `prebounce suppress remove` if it was listed by mistake",
            ),
            Reason::Smtputf8Unsupported => (
                "suppress",
                "suppress it, or ask the person for an address without accents or non-Latin letters",
            ),
            Reason::DnsError | Reason::DnsTimeout => of(Action::RetryLater),
            Reason::ReservedDomain
            | Reason::NullMx
            | Reason::NoMailServer
            | Reason::MxUnresolvable
            | Reason::MxUnroutable => of(Action::Suppress),
            // Every other reason is an SMTP one, answered above.
            _ => of(Action::Investigate),
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_explained_with_an_action() {
        for r in Reason::ALL {
            assert!(!r.meaning().is_empty(), "{r}");
            let (action, advice) = r.advice();
            assert!(!action.is_empty() && !advice.is_empty(), "{r}");
            if r.status() == Status::Invalid && r != Reason::UnreadableRow {
                assert_eq!(action, "suppress", "{r}");
            }
        }
        // SMTP reasons reuse `prebounce explain`'s advice.
        assert_eq!(
            Reason::ProberBlocked.advice().1,
            Action::FixSendingSetup.advice()
        );
        assert_eq!(Reason::Greylisted.advice().0, Action::RetryLater.as_str());
    }
}
