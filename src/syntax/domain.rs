//! Domain rules: LDH labels (RFC 1035/5321), IDNA (UTS #46 via the idna crate), reserved names
//! (RFC 2606/6761 and later special-use registrations), and the per-domain flags.

use super::{Flags, SyntaxOptions, lists, typo};

/// Everything the syntax stage learns from a domain alone; computed once per domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainFacts {
    pub ascii: String,
    pub unicode: String,
    /// DISPOSABLE and FREE only: the others depend on the local part or on the list.
    pub flags: Flags,
    pub suggestion: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DomainError {
    #[error("nothing after the @")]
    Empty,
    #[error(
        "IP-address literals (user@[192.0.2.1]) are not accepted: real mailboxes have domain names"
    )]
    Literal,
    #[error("the domain ends with a dot")]
    TrailingDot,
    #[error("the domain has an empty label (starts with a dot or has two dots in a row)")]
    EmptyLabel,
    #[error("the domain label {0:?} is longer than 63 octets")]
    LabelTooLong(String),
    #[error("the domain is longer than 253 octets")]
    TooLong,
    #[error(
        "the domain contains the character {1:?} in {0:?}; only letters, digits and hyphens are allowed"
    )]
    Char(String, char),
    #[error(
        "the domain label {0:?} starts or ends with a hyphen, or has '--' in positions 3-4 without being an xn-- label"
    )]
    Hyphen(String),
    #[error("the domain has a single label; mail needs a dotted name like example.com")]
    SingleLabel,
    #[error("{0:?} is not a top-level domain (it must be letters or an xn-- label)")]
    BadTld(String),
    #[error("the domain is not a valid internationalized domain name (IDNA): {0}")]
    Idna(String),
    #[error("the domain is rejected by the RFC 5322 parser")]
    Parser,
    #[error("{0} is a reserved or special-use domain that never receives mail (RFC 2606/6761)")]
    Reserved(String),
}

/// Special-use names from RFC 2606, RFC 6761, RFC 6762 (.local), RFC 7686 (.onion),
/// RFC 8375 (home.arpa), RFC 9476 (.alt) and ICANN's .internal.
const RESERVED_SUFFIXES: &[&str] = &[
    "test",
    "example",
    "invalid",
    "localhost",
    "local",
    "onion",
    "alt",
    "internal",
    "arpa",
];
const RESERVED_EXACT: &[&str] = &["example.com", "example.net", "example.org"];

pub fn is_reserved(domain_ascii: &str) -> bool {
    let tld = domain_ascii.rsplit('.').next().unwrap_or(domain_ascii);
    RESERVED_SUFFIXES.contains(&tld)
        || RESERVED_EXACT.iter().any(|r| {
            domain_ascii == *r
                || domain_ascii
                    .strip_suffix(r)
                    .is_some_and(|head| head.ends_with('.'))
        })
}

pub fn analyse_domain(domain: &str, opts: SyntaxOptions) -> Result<DomainFacts, DomainError> {
    if domain.is_empty() {
        return Err(DomainError::Empty);
    }
    if domain.starts_with('[') {
        return Err(DomainError::Literal);
    }
    let (ascii, unicode) = to_ascii_and_unicode(domain)?;
    check_ldh(&ascii)?;
    // Second opinion from the email_address crate's RFC 5322 domain grammar (see `backstop`).
    if !email_address::EmailAddress::is_valid_domain(&ascii) {
        return Err(DomainError::Parser);
    }
    if !opts.allow_reserved_domains && is_reserved(&ascii) {
        return Err(DomainError::Reserved(ascii));
    }
    let mut flags = Flags::default();
    if lists::is_disposable(&ascii) {
        flags.insert(Flags::DISPOSABLE);
    }
    if lists::is_free(&ascii) {
        flags.insert(Flags::FREE);
    }
    let suggestion = typo::suggest_domain(&ascii);
    Ok(DomainFacts {
        ascii,
        unicode,
        flags,
        suggestion,
    })
}

fn to_ascii_and_unicode(domain: &str) -> Result<(String, String), DomainError> {
    if domain.is_ascii() {
        if domain.ends_with('.') {
            return Err(DomainError::TrailingDot);
        }
        let ascii = domain.to_ascii_lowercase();
        if !ascii.split('.').any(|l| l.starts_with("xn--")) {
            return Ok((ascii.clone(), ascii));
        }
        // A-labels must decode, or the domain is garbage that merely looks like punycode.
        let (unicode, result) = idna::domain_to_unicode(&ascii);
        // idna's error type carries no detail worth showing ("Errors"): say what failed.
        result.map_err(|_| {
            DomainError::Idna(
                "an xn-- label is not valid punycode for a permitted Unicode label".into(),
            )
        })?;
        return Ok((ascii, unicode));
    }
    for c in domain.chars() {
        if super::local::is_unsafe_unicode(c) {
            return Err(DomainError::Idna(format!(
                "contains the invisible or unsafe character U+{:04X}",
                c as u32
            )));
        }
    }
    // UTS #46 maps full-width dots and letters to their ASCII forms; a trailing mapped dot
    // shows up only after mapping, so look again.
    let ascii = idna::domain_to_ascii_strict(domain).map_err(|e| {
        if domain.ends_with(['.', '。', '．', '｡']) {
            DomainError::TrailingDot
        } else {
            let _ = e; // carries no detail worth showing
            DomainError::Idna(
                "it holds a character or label UTS #46 does not permit in a domain".into(),
            )
        }
    })?;
    if ascii.ends_with('.') {
        return Err(DomainError::TrailingDot);
    }
    let (unicode, _) = idna::domain_to_unicode(&ascii);
    Ok((ascii, unicode))
}

fn check_ldh(ascii: &str) -> Result<(), DomainError> {
    if ascii.len() > 253 {
        return Err(DomainError::TooLong);
    }
    let mut labels = 0;
    let mut last = "";
    for label in ascii.split('.') {
        labels += 1;
        if label.is_empty() {
            return Err(DomainError::EmptyLabel);
        }
        if label.len() > 63 {
            return Err(DomainError::LabelTooLong(label.to_owned()));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-'))
        {
            return Err(DomainError::Char(label.to_owned(), c));
        }
        let bytes = label.as_bytes();
        let reserved_hyphens =
            bytes.len() >= 4 && &bytes[2..4] == b"--" && !label.starts_with("xn--");
        if label.starts_with('-') || label.ends_with('-') || reserved_hyphens {
            return Err(DomainError::Hyphen(label.to_owned()));
        }
        last = label;
    }
    if labels < 2 {
        return Err(DomainError::SingleLabel);
    }
    if !(last.bytes().all(|b| b.is_ascii_alphabetic()) || last.starts_with("xn--")) {
        return Err(DomainError::BadTld(last.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn analyse(d: &str) -> Result<DomainFacts, DomainError> {
        analyse_domain(d, SyntaxOptions::default())
    }

    #[test]
    fn ldh_and_tld_rules() {
        assert!(analyse("example-mail.co.uk").is_ok());
        assert!(analyse("a1.io").is_ok());
        assert_eq!(analyse("a..com"), Err(DomainError::EmptyLabel));
        assert_eq!(analyse(".a.com"), Err(DomainError::EmptyLabel));
        assert_eq!(analyse("a.com."), Err(DomainError::TrailingDot));
        assert_eq!(analyse("com"), Err(DomainError::SingleLabel));
        assert_eq!(analyse("1.2.3.4"), Err(DomainError::BadTld("4".into())));
        assert_eq!(
            analyse("bad.tld-2"),
            Err(DomainError::BadTld("tld-2".into()))
        );
        assert_eq!(
            analyse("yy--0.tld"),
            Err(DomainError::Hyphen("yy--0".into()))
        );
        assert_eq!(analyse("a-.com"), Err(DomainError::Hyphen("a-".into())));
        assert!(matches!(analyse("x!.com"), Err(DomainError::Char(_, '!'))));
        assert!(matches!(
            analyse(&format!("{}.com", "a".repeat(64))),
            Err(DomainError::LabelTooLong(_))
        ));
        assert_eq!(analyse("[127.0.0.1]"), Err(DomainError::Literal));
        assert_eq!(analyse(""), Err(DomainError::Empty));
    }

    #[test]
    fn idna() {
        let f = analyse("臺網中心.tw").unwrap();
        assert!(f.ascii.starts_with("xn--") && f.unicode == "臺網中心.tw");
        assert!(matches!(analyse("xn--0.tld"), Err(DomainError::Idna(_))));
        assert_eq!(analyse("ｇｍａｉｌ．ｃｏｍ").unwrap().ascii, "gmail.com");
        assert_eq!(
            analyse("trailingfwdot.com．"),
            Err(DomainError::TrailingDot)
        );
        assert!(analyse("a\u{200b}b.com").is_err());
    }

    #[test]
    fn reserved() {
        for d in [
            "example.com",
            "mail.example.org",
            "x.test",
            "foo.invalid",
            "a.localhost",
            "printer.local",
            "x.onion",
            "home.arpa",
        ] {
            assert!(is_reserved(d), "{d}");
        }
        for d in ["notexample.com", "example.co", "testing.com", "test.com"] {
            assert!(!is_reserved(d), "{d}");
        }
    }
}
