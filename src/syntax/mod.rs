//! Syntax stage: is this string a deliverable-looking mailbox address?
//!
//! Pure and allocation-light so it can run on every row in parallel. The rules are stricter than
//! RFC 5322 on purpose: we judge whether a real mail system will accept the address as a
//! recipient, not whether a parser could read it. The policy differences from public corpora are
//! listed in `tests/data/POLICY.md`.

mod domain;
pub mod lists;
mod local;
mod typo;

use std::cell::RefCell;
use std::fmt;
use std::sync::{Arc, LazyLock};

use ahash::AHashMap;

pub use domain::{DomainError, DomainFacts, analyse_domain};
pub use local::LocalError;
pub use typo::suggest_domain;

/// RFC 5321 §4.5.3.1.3: a path is at most 256 octets including the angle brackets.
pub const MAX_ADDRESS_OCTETS: usize = 254;
/// RFC 5321 §4.5.3.1.1.
pub const MAX_LOCAL_OCTETS: usize = 64;

/// Knobs the user controls that change what the syntax stage accepts.
#[derive(Debug, Clone, Copy, Default)]
pub struct SyntaxOptions {
    /// Treat .test, .example, .invalid, .localhost … as ordinary domains (labs, staging).
    pub allow_reserved_domains: bool,
}

/// Row flags. A small bit set so a row carries them without allocation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Flags(u8);

impl Flags {
    pub const ROLE: Flags = Flags(1);
    pub const DISPOSABLE: Flags = Flags(2);
    pub const FREE: Flags = Flags(4);
    pub const DUPLICATE: Flags = Flags(8);
    pub const SMTPUTF8: Flags = Flags(16);
    /// The row has more or fewer cells than the header: a row's flag, not its address's.
    pub const RAGGED_ROW: Flags = Flags(32);
    /// The store holds soft bounces about the mailbox below the suppression limit (full,
    /// temporarily disabled): an address's flag, from `bounces import`, not from its syntax.
    pub const SOFT_BOUNCED: Flags = Flags(64);

    /// Every flag with its stable name, in output order.
    pub const ALL: [(Flags, &'static str); 7] = [
        (Flags::ROLE, "role"),
        (Flags::DISPOSABLE, "disposable"),
        (Flags::FREE, "free"),
        (Flags::DUPLICATE, "duplicate"),
        (Flags::SMTPUTF8, "smtputf8"),
        (Flags::RAGGED_ROW, "ragged-row"),
        (Flags::SOFT_BOUNCED, "soft-bounced"),
    ];

    /// Largest value of [`Flags::bits`].
    pub const MAX_BITS: u8 = 127;

    pub fn bits(self) -> u8 {
        self.0
    }
    pub fn from_bits(bits: u8) -> Flags {
        Flags(bits & Flags::MAX_BITS)
    }

    pub fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0 && other.0 != 0
    }
    pub fn insert(&mut self, other: Flags) {
        self.0 |= other.0;
    }
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        Flags::ALL
            .into_iter()
            .filter(move |(f, _)| self.contains(*f))
            .map(|(_, n)| n)
    }
}

impl Flags {
    /// The `;`-separated names, as in `prebounce_flags`; from a table built once, since every
    /// output row needs it.
    pub fn as_str(self) -> &'static str {
        static TEXTS: LazyLock<Vec<String>> = LazyLock::new(|| {
            (0..=Flags::MAX_BITS)
                .map(|bits| Flags(bits).names().collect::<Vec<_>>().join(";"))
                .collect()
        });
        TEXTS.get(self.0 as usize).map_or("", String::as_str)
    }
}

impl fmt::Display for Flags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A syntactically deliverable address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Address {
    /// The local part as the user wrote it (case kept: some servers are case-sensitive).
    pub local: compact_str::CompactString,
    /// Shared by every address at the domain: analysed once per domain.
    pub domain: Arc<DomainFacts>,
    pub flags: Flags,
}

impl Address {
    /// Lower-case ASCII (A-label) domain: what DNS and SMTP see.
    pub fn domain_ascii(&self) -> &str {
        &self.domain.ascii
    }

    /// Lower-case Unicode (U-label) domain: what a person reads.
    pub fn domain_unicode(&self) -> &str {
        &self.domain.unicode
    }

    /// A likely intended domain when this one looks like a typo of a common provider.
    pub fn suggestion(&self) -> Option<&str> {
        self.domain.suggestion.as_deref()
    }

    /// What goes in `prebounce_normalized`: local part as written, domain in lower-case Unicode.
    pub fn normalized(&self) -> String {
        let domain = self.domain_unicode();
        let mut s = String::with_capacity(self.local.len() + 1 + domain.len());
        s.push_str(&self.local);
        s.push('@');
        s.push_str(domain);
        s
    }

    /// Identity for duplicate detection: local parts are compared case-insensitively, because
    /// practically every mail system treats them so and a list holding both is a duplicate.
    pub fn dedup_key(&self) -> String {
        let mut key = self.local.as_str().to_lowercase();
        key.push('@');
        key.push_str(self.domain_ascii());
        key
    }

    /// Append [`Address::dedup_key`] to `out` (without a string of its own).
    pub fn push_dedup_key(&self, out: &mut String) {
        if self.local.is_ascii() {
            out.extend(self.local.chars().map(|c| c.to_ascii_lowercase()));
        } else {
            out.push_str(&self.local.to_lowercase());
        }
        out.push('@');
        out.push_str(self.domain_ascii());
    }

    /// `identity_hash_of(dedup_key())`, built on the stack for ASCII local parts: it runs on
    /// every row. 64 bits keep a duplicate set at ~16 bytes an address; a false "duplicate"
    /// needs a collision (≈ n²/2⁶⁵: 3·10⁻⁸ at a million addresses).
    pub fn identity_hash(&self) -> u64 {
        let (local, domain) = (self.local.as_bytes(), self.domain_ascii().as_bytes());
        let mut buf = [0u8; MAX_ADDRESS_OCTETS];
        let len = local.len() + 1 + domain.len();
        if !self.local.is_ascii() || len > buf.len() {
            return identity_hash_of(&self.dedup_key());
        }
        for (dst, src) in buf.iter_mut().zip(local) {
            *dst = src.to_ascii_lowercase();
        }
        buf[local.len()] = b'@';
        buf[local.len() + 1..len].copy_from_slice(domain);
        identity_hasher_finish(&buf[..len])
    }
}

/// Hash of an identity string with fixed seeds: equal across threads and runs.
pub fn identity_hash_of(key: &str) -> u64 {
    identity_hasher_finish(key.as_bytes())
}

fn identity_hasher_finish(bytes: &[u8]) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = ahash::RandomState::with_seeds(0x5eed, 0xb0b, 0xdead, 0xbeef).build_hasher();
    h.write(bytes);
    h.finish()
}

/// Why an address is not deliverable as written. The Display text is the row's
/// `prebounce_detail`, so it says what is wrong in words a list owner understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SyntaxError {
    #[error("the email cell is empty")]
    Empty,
    #[error("no @ sign")]
    NoAtSign,
    #[error("{0}")]
    Local(#[from] LocalError),
    #[error("{0}")]
    Domain(#[from] DomainError),
    #[error("address is {0} octets long; the limit is 254")]
    TooLong(usize),
    #[error("a display name or text around the address (\"Name <addr>\") is not an address")]
    DisplayText,
    #[error("contains whitespace or a control character")]
    Whitespace,
    #[error("rejected by the RFC 5322 parser: {0}")]
    Parser(String),
}

impl SyntaxError {
    /// Whether the address is well formed but points at a reserved (never-deliverable) domain.
    pub fn is_reserved_domain(&self) -> bool {
        matches!(self, SyntaxError::Domain(DomainError::Reserved(_)))
    }
}

/// Strip what people paste around addresses: blanks, `mailto:`, one pair of angle brackets.
pub fn normalize_input(raw: &str) -> &str {
    let mut s = raw.trim();
    if s.get(..7)
        .is_some_and(|p| p.eq_ignore_ascii_case("mailto:"))
    {
        s = s[7..].trim_start();
    }
    if let Some(inner) = s.strip_prefix('<').and_then(|r| r.strip_suffix('>')) {
        s = inner.trim();
    }
    s
}

/// Check one raw cell. Domain analysis (IDNA, lists, typo distance) is memoised per thread,
/// because lists repeat the same few thousand domains millions of times.
pub fn check(raw: &str, opts: SyntaxOptions) -> Result<Address, SyntaxError> {
    let s = normalize_input(raw);
    if s.is_empty() {
        return Err(SyntaxError::Empty);
    }
    let scan = CellScan::of(s.as_bytes());
    // "John <j@x.com>" is the common case; name it rather than blaming the space. Before the
    // quote test: exports write `"Smith, John" <j@x.com>`, whose local part is not quoted.
    if scan.angle_bracket && s.ends_with('>') {
        return Err(SyntaxError::DisplayText);
    }
    if s.starts_with('"') {
        // Name the real problem: a quoted local part may hold spaces legitimately.
        return Err(LocalError::Quoted.into());
    }
    let blank_or_control = if scan.ascii {
        scan.blank_or_control
    } else {
        s.chars().any(|c| c.is_whitespace() || c.is_control())
    };
    if blank_or_control {
        return Err(SyntaxError::Whitespace);
    }
    let Some(at) = scan.last_at else {
        return Err(SyntaxError::NoAtSign);
    };
    let (local, domain) = (&s[..at], &s[at + 1..]);
    if scan.ascii {
        local::check_ascii_local(local, scan.local_marks)?;
    } else {
        local::check_local(local)?;
    }
    let facts = DOMAIN_MEMO.with(|memo| memo.borrow_mut().get(domain, opts))?;
    let octets = local.len() + 1 + facts.ascii.len();
    if octets > MAX_ADDRESS_OCTETS {
        return Err(SyntaxError::TooLong(octets));
    }

    let mut flags = facts.flags;
    if !scan.ascii && !local.is_ascii() {
        flags.insert(Flags::SMTPUTF8);
    }
    if lists::is_role(local) {
        flags.insert(Flags::ROLE);
    }
    Ok(Address {
        local: compact_str::CompactString::new(local),
        domain: facts,
        flags,
    })
}

/// Whether the ASCII byte `b` can occur in a well-formed address as [`Address::normalized`]
/// writes it (bytes of 0x80 and up always can): when a list's delimiter cannot, the output
/// writes that cell without looking for characters to quote.
pub fn may_occur_in_address(b: u8) -> bool {
    b >= 0x80 || b == b'.' || b == b'@' || local::is_atext(b)
}

/// What [`check`] needs to know about a cell's bytes before it splits it, from one pass: this
/// runs on every row, and separate searches for each were a tenth of a syntax-level run.
struct CellScan {
    ascii: bool,
    angle_bracket: bool,
    /// A byte at or below the space, or DEL (meaningful when `ascii`).
    blank_or_control: bool,
    last_at: Option<usize>,
    /// For the local part's rules (meaningful when `ascii`).
    local_marks: local::AsciiMarks,
}

/// Byte classes for [`CellScan`].
mod class {
    /// A local part's ordinary byte (RFC 5322 atext): the common case, nothing to note.
    pub(super) const ATEXT: u8 = 0;
    pub(super) const AT: u8 = 1;
    pub(super) const ANGLE_BRACKET: u8 = 2;
    pub(super) const BLANK_OR_CONTROL: u8 = 3;
    pub(super) const NON_ASCII: u8 = 4;
    pub(super) const DOT: u8 = 5;
    /// Printable ASCII a local part may not hold unquoted.
    pub(super) const OTHER: u8 = 6;
}

const SCAN_CLASSES: [u8; 256] = {
    let mut t = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = match b as u8 {
            b'@' => class::AT,
            b'<' => class::ANGLE_BRACKET,
            0..=b' ' | 0x7f => class::BLANK_OR_CONTROL,
            0x80..=0xff => class::NON_ASCII,
            b'.' => class::DOT,
            c if local::is_atext(c) => class::ATEXT,
            _ => class::OTHER,
        };
        b += 1;
    }
    t
};

impl CellScan {
    fn of(bytes: &[u8]) -> CellScan {
        let mut scan = CellScan {
            ascii: true,
            angle_bracket: false,
            blank_or_control: false,
            last_at: None,
            local_marks: local::AsciiMarks::default(),
        };
        let marks = &mut scan.local_marks;
        let mut last_dot = None;
        for (i, &b) in bytes.iter().enumerate() {
            let class = SCAN_CLASSES[b as usize];
            if class == class::ATEXT {
                continue;
            }
            match class {
                class::DOT => {
                    if last_dot.is_some_and(|d| d + 1 == i) {
                        marks.first_double_dot.get_or_insert(i);
                    }
                    last_dot = Some(i);
                    continue;
                }
                class::NON_ASCII => {
                    scan.ascii = false;
                    continue;
                }
                class::AT => scan.last_at = Some(i),
                class::ANGLE_BRACKET => scan.angle_bracket = true,
                class::BLANK_OR_CONTROL => scan.blank_or_control = true,
                _ => {}
            }
            marks.first_not_local.get_or_insert(i);
        }
        scan
    }
}

/// Per-thread memo of domain analysis. Bounded: when full it is simply cleared, which costs a
/// few recomputations and keeps memory flat on lists with millions of distinct domains.
struct DomainMemo {
    map: AHashMap<Box<str>, Result<Arc<DomainFacts>, DomainError>>,
    opts_reserved: bool,
}

const DOMAIN_MEMO_CAPACITY: usize = 50_000;

impl DomainMemo {
    fn get(&mut self, domain: &str, opts: SyntaxOptions) -> Result<Arc<DomainFacts>, DomainError> {
        if self.opts_reserved != opts.allow_reserved_domains {
            self.map.clear();
            self.opts_reserved = opts.allow_reserved_domains;
        }
        if let Some(hit) = self.map.get(domain) {
            return hit.clone();
        }
        let result = analyse_domain(domain, opts).map(Arc::new);
        if self.map.len() >= DOMAIN_MEMO_CAPACITY {
            self.map.clear();
        }
        self.map.insert(domain.into(), result.clone());
        result
    }
}

thread_local! {
    static DOMAIN_MEMO: RefCell<DomainMemo> = RefCell::new(DomainMemo {
        map: AHashMap::new(),
        opts_reserved: false,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> Address {
        check(s, SyntaxOptions::default()).unwrap_or_else(|e| panic!("{s:?} rejected: {e}"))
    }
    fn err(s: &str) -> SyntaxError {
        match check(s, SyntaxOptions::default()) {
            Ok(a) => panic!("{s:?} accepted as {a:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn accepts_ordinary_addresses() {
        for s in [
            "john.smith@gmail.com",
            "a@b.co",
            "user+tag@sub.example-mail.com",
            "!#$%&'*+-/=?^_`{|}~@example-mail.org.uk",
            "jeff@臺網中心.tw",
            "o'brien@company.ie",
        ] {
            ok(s);
        }
    }

    #[test]
    fn normalizes_wrapping_and_case() {
        let a = ok("  mailto:John.Smith@GMAIL.Com ");
        assert_eq!(a.local, "John.Smith");
        assert_eq!(a.domain_ascii(), "gmail.com");
        assert_eq!(a.normalized(), "John.Smith@gmail.com");
        assert_eq!(a.dedup_key(), "john.smith@gmail.com");
        assert_eq!(a.identity_hash(), identity_hash_of(&a.dedup_key()));
        let b = ok("θσερ@acme.gr");
        assert_eq!(b.identity_hash(), identity_hash_of(&b.dedup_key()));
        assert_eq!(ok("<x@acme.net>").normalized(), "x@acme.net");
        assert_eq!(ok("MAILTO:<x@acme.net>").normalized(), "x@acme.net");
    }

    #[test]
    fn idn_domains_convert_both_ways() {
        let a = ok("info@Bücher.de");
        assert_eq!(a.domain_ascii(), "xn--bcher-kva.de");
        assert_eq!(a.domain_unicode(), "bücher.de");
        let b = ok("info@xn--bcher-kva.de");
        assert_eq!(b.domain_unicode(), "bücher.de");
    }

    #[test]
    fn non_ascii_local_part_is_valid_but_flagged() {
        let a = ok("θσερ@acme.gr");
        assert!(a.flags.contains(Flags::SMTPUTF8));
        assert!(!ok("ascii@acme.gr").flags.contains(Flags::SMTPUTF8));
    }

    #[test]
    fn rejects_with_specific_details() {
        assert_eq!(err(""), SyntaxError::Empty);
        assert_eq!(err("   "), SyntaxError::Empty);
        assert_eq!(err("john.gmail.com"), SyntaxError::NoAtSign);
        assert_eq!(err("John Smith <john@gmail.com>"), SyntaxError::DisplayText);
        assert_eq!(
            err("\"Smith, John\" <john@gmail.com>"),
            SyntaxError::DisplayText
        );
        assert_eq!(err("\"J\"<j@gmail.com>"), SyntaxError::DisplayText);
        assert_eq!(err("jo hn@gmail.com"), SyntaxError::Whitespace);
        assert!(matches!(
            err("\"quoted\"@acme.com"),
            SyntaxError::Local(LocalError::Quoted)
        ));
        assert!(matches!(
            err("me@[127.0.0.1]"),
            SyntaxError::Domain(DomainError::Literal)
        ));
        assert!(matches!(
            err("me@localhost"),
            SyntaxError::Domain(DomainError::SingleLabel)
        ));
        assert!(matches!(
            err("me@acme.123"),
            SyntaxError::Domain(DomainError::BadTld(_))
        ));
        assert!(matches!(
            err("a..b@acme.com"),
            SyntaxError::Local(LocalError::Dots)
        ));
        assert!(matches!(
            err("a@exa_mple.com"),
            SyntaxError::Domain(DomainError::Char(..))
        ));
        assert!(matches!(
            err("a@-example.com"),
            SyntaxError::Domain(DomainError::Hyphen(_))
        ));
        assert!(matches!(
            err("a@acme.com."),
            SyntaxError::Domain(DomainError::TrailingDot)
        ));
        assert!(matches!(
            err("a@b@acme.com"),
            SyntaxError::Local(LocalError::Char('@'))
        ));
    }

    /// A second opinion on the local part from the email_address crate (RFC 5322 grammar).
    /// Our rules accept only RFC 5322 dot-atoms, which email_address always accepts: the
    /// property test below holds us to that, so no row pays for the second opinion (the
    /// domain gets its own for real, once per domain, in `analyse_domain`).
    fn email_address_accepts_local(local: &str) -> bool {
        if local.is_ascii() {
            return email_address::EmailAddress::is_valid_local_part(local);
        }
        // Non-ASCII characters are judged by our own rules only: email_address 0.2.9 tests a
        // code point's value, not its UTF-8 bytes, against UTF8-non-ascii, so it refuses every
        // non-ASCII character that is not alphanumeric, such as the Devanagari virama in
        // "परीक्ष".
        let placeholder: String = local
            .chars()
            .map(|c| if c.is_ascii() { c } else { 'u' })
            .collect();
        email_address::EmailAddress::is_valid_local_part(&placeholder)
    }

    #[test]
    fn utf8_local_parts_are_not_refused_by_the_backstop() {
        // Virama (U+094D) and other combining marks are not alphanumeric, but are UTF-8 atext.
        let a = ok("उदाहरण.परीक्ष@domain.with.idn.tld");
        assert!(a.flags.contains(Flags::SMTPUTF8));
        ok("שָׁלוֹם@acme.co.il");
        // The second opinion still judges the ASCII structure around them.
        assert!(!email_address_accepts_local("é.;"));
    }

    #[test]
    fn length_limits_are_octets() {
        let local64 = "a".repeat(64);
        ok(&format!("{local64}@acme.com"));
        assert!(matches!(
            err(&format!("{}@acme.com", "a".repeat(65))),
            SyntaxError::Local(LocalError::TooLong(65))
        ));
        // 22 two-octet characters = 44 octets fits, 33 = 66 octets does not.
        ok(&format!("{}@acme.com", "é".repeat(22)));
        assert!(matches!(
            err(&format!("{}@acme.com", "é".repeat(33))),
            SyntaxError::Local(LocalError::TooLong(66))
        ));
        let label = "d".repeat(63);
        let long = format!("{local64}@{label}.{label}.{label}.com");
        assert!(matches!(err(&long), SyntaxError::TooLong(_)));
    }

    #[test]
    fn reserved_domains_depend_on_the_option() {
        assert!(err("a@example.com").is_reserved_domain());
        assert!(err("a@foo.test").is_reserved_domain());
        assert!(err("a@host.localhost").is_reserved_domain());
        assert!(err("a@x.invalid").is_reserved_domain());
        let allow = SyntaxOptions {
            allow_reserved_domains: true,
        };
        assert!(check("a@foo.test", allow).is_ok());
        assert!(check("a@example.com", allow).is_ok());
        // Memo must not leak a verdict across option changes.
        assert!(err("a@foo.test").is_reserved_domain());
    }

    #[test]
    fn flags_role_free_disposable() {
        let a = ok("Info@gmail.com");
        assert!(a.flags.contains(Flags::ROLE) && a.flags.contains(Flags::FREE));
        assert!(ok("x@mailinator.com").flags.contains(Flags::DISPOSABLE));
        assert!(ok("x@sub.mailinator.com").flags.contains(Flags::DISPOSABLE));
        assert!(ok("x@acme-widgets.com").flags.is_empty());
        assert_eq!(a.flags.to_string(), "role;free");
    }

    #[test]
    fn never_panics_on_odd_input() {
        for s in [
            "@",
            "@@",
            "a@",
            "@b",
            "a@.",
            ".@.",
            "<>",
            "mailto:",
            "a@b.c\u{0}",
            "\u{feff}a@b.com",
            "a@\u{200b}.com",
            "ä@ö.ü",
        ] {
            let _ = check(s, SyntaxOptions::default());
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4000))]
        /// The one-pass local-part verdict is check_local's, for every '@' of an ASCII cell.
        #[test]
        fn the_scanned_local_part_verdict_is_check_locals(
            cell in "[a-z.@\"<>,;() \t!#|~-]{0,40}|[a-z.]{60,70}@[a-z]{1,3}"
        ) {
            let scan = CellScan::of(cell.as_bytes());
            for (at, _) in cell.match_indices('@') {
                let local = &cell[..at];
                proptest::prop_assert_eq!(
                    local::check_ascii_local(local, scan.local_marks),
                    local::check_local(local),
                    "{:?}", local
                );
            }
        }
    }

    proptest::proptest! {
        /// The output relies on it to copy the normalised address unquoted.
        #[test]
        fn a_well_formed_address_holds_only_bytes_that_may_occur_in_one(
            cell in "[ -~]{0,30}|[a-zA-Z0-9.@\"<>,;|\t\r\n -]{1,30}|[a-z.+_é伊\u{301}@-]{1,20}|\\PC{1,20}@\\PC{1,20}"
        ) {
            for allow_reserved_domains in [false, true] {
                let opts = SyntaxOptions { allow_reserved_domains };
                if let Ok(address) = check(&cell, opts) {
                    let normalized = address.normalized();
                    proptest::prop_assert!(
                        normalized.bytes().all(may_occur_in_address),
                        "{:?} normalised as {:?}", cell, normalized
                    );
                }
            }
        }
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(4000))]
        /// What lets every build skip email_address's second opinion per row.
        #[test]
        fn local_rules_never_accept_what_email_address_rejects(
            local in "[a-zA-Z0-9!#$%&'*+/=?^_`{|}~.-]{1,70}|[ -~]{1,20}|[a-z.+_é伊\u{301}-]{1,20}"
        ) {
            if local::check_local(&local).is_ok() {
                proptest::prop_assert!(email_address_accepts_local(&local), "{:?}", local);
            }
        }
    }
}
