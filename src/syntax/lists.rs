//! Word lists behind the row flags. Each is a hash set built once, so a lookup costs a hash and
//! a compare, never a scan.

use std::sync::LazyLock;

use ahash::AHashSet;

/// Local parts that reach a function or a team, not a person (RFC 2142 and common practice).
/// Mail to them is deliverable but often filtered, shared, or complained about.
const ROLE_LOCAL_PARTS: &[&str] = &[
    "abuse",
    "account",
    "accounts",
    "accounting",
    "admin",
    "administrator",
    "all",
    "billing",
    "booking",
    "bookings",
    "careers",
    "ceo",
    "compliance",
    "contact",
    "contactus",
    "customercare",
    "customerservice",
    "customersupport",
    "dev",
    "devnull",
    "dns",
    "do-not-reply",
    "donotreply",
    "enquiries",
    "enquiry",
    "everyone",
    "feedback",
    "finance",
    "ftp",
    "hello",
    "help",
    "helpdesk",
    "hostmaster",
    "hr",
    "info",
    "information",
    "inquiries",
    "inquiry",
    "it",
    "jobs",
    "legal",
    "list",
    "mail",
    "mailer-daemon",
    "marketing",
    "media",
    "newsletter",
    "no-reply",
    "noc",
    "noreply",
    "no_reply",
    "office",
    "orders",
    "postmaster",
    "press",
    "privacy",
    "recruitment",
    "reservations",
    "root",
    "sales",
    "security",
    "service",
    "services",
    "spam",
    "staff",
    "subscribe",
    "support",
    "sysadmin",
    "team",
    "tech",
    "unsubscribe",
    "usenet",
    "uucp",
    "webmaster",
    "welcome",
    "www",
];

/// The big consumer mailbox providers. "free" means the address belongs to a person's private
/// account rather than an organisation: useful for B2B lead scoring.
const FREE_PROVIDERS: &[&str] = &[
    "gmail.com",
    "googlemail.com",
    "yahoo.com",
    "yahoo.co.uk",
    "yahoo.fr",
    "yahoo.de",
    "yahoo.es",
    "yahoo.it",
    "yahoo.co.jp",
    "yahoo.com.br",
    "yahoo.co.in",
    "ymail.com",
    "rocketmail.com",
    "hotmail.com",
    "hotmail.co.uk",
    "hotmail.fr",
    "hotmail.de",
    "hotmail.it",
    "hotmail.es",
    "outlook.com",
    "outlook.fr",
    "outlook.de",
    "live.com",
    "live.co.uk",
    "live.fr",
    "msn.com",
    "aol.com",
    "aim.com",
    "icloud.com",
    "me.com",
    "mac.com",
    "protonmail.com",
    "proton.me",
    "pm.me",
    "gmx.com",
    "gmx.de",
    "gmx.net",
    "gmx.at",
    "gmx.ch",
    "web.de",
    "t-online.de",
    "freenet.de",
    "mail.com",
    "mail.ru",
    "inbox.ru",
    "list.ru",
    "bk.ru",
    "yandex.ru",
    "yandex.com",
    "ya.ru",
    "rambler.ru",
    "zoho.com",
    "zohomail.com",
    "fastmail.com",
    "tutanota.com",
    "tuta.io",
    "hushmail.com",
    "qq.com",
    "163.com",
    "126.com",
    "sina.com",
    "naver.com",
    "daum.net",
    "hanmail.net",
    "libero.it",
    "virgilio.it",
    "orange.fr",
    "wanadoo.fr",
    "free.fr",
    "laposte.net",
    "sfr.fr",
    "btinternet.com",
    "sky.com",
    "comcast.net",
    "verizon.net",
    "att.net",
    "sbcglobal.net",
    "bellsouth.net",
    "cox.net",
    "charter.net",
    "earthlink.net",
    "optonline.net",
    "rediffmail.com",
    "seznam.cz",
    "wp.pl",
    "o2.pl",
    "interia.pl",
    "onet.pl",
    "bol.com.br",
    "uol.com.br",
    "terra.com.br",
    "shaw.ca",
    "rogers.com",
    "sympatico.ca",
    "bigpond.com",
    "optusnet.com.au",
    "hotmail.ca",
    "live.ca",
    "yahoo.ca",
    "outlook.es",
    "outlook.it",
    "hotmail.se",
    "hotmail.com.br",
    "yahoo.com.mx",
    "protonmail.ch",
    "tutanota.de",
    "tutamail.com",
    "tuta.com",
    "keemail.me",
    "hey.com",
    "posteo.de",
    "posteo.net",
    "mailbox.org",
];

/// By bytes: the lookup runs on every address, and needs no UTF-8 check this way.
static ROLES: LazyLock<AHashSet<&'static [u8]>> =
    LazyLock::new(|| ROLE_LOCAL_PARTS.iter().map(|r| r.as_bytes()).collect());
static FREE: LazyLock<AHashSet<&'static str>> =
    LazyLock::new(|| FREE_PROVIDERS.iter().copied().collect());
/// mailchecker's list (≈56k domains, MIT, maintained): its own check scans the list linearly
/// per call, so we take the list once into a set.
static DISPOSABLE: LazyLock<AHashSet<&'static str>> =
    LazyLock::new(|| mailchecker::blacklist().into_iter().collect());

/// Real long-lived mailboxes that throwaway-domain lists catch by mistake: privacy relays
/// forward to a person's real inbox for as long as they keep the alias, and Tuta's domains are
/// ordinary mail accounts.
const NOT_DISPOSABLE: &[&str] = &[
    "duck.com",
    "mozmail.com",
    "passmail.net",
    "passinbox.com",
    "simplelogin.com",
    "simplelogin.co",
    "slmail.me",
    "aleeas.com",
    "anonaddy.me",
    "addy.io",
    "privaterelay.appleid.com",
    "keemail.me",
    "tutamail.com",
    "tuta.com",
    "tuta.io",
    "tutanota.com",
    "tutanota.de",
];

/// Role accounts, ignoring case and a `+tag`.
pub fn is_role(local: &str) -> bool {
    let bytes = local.as_bytes();
    let end = bytes.iter().position(|&b| b == b'+').unwrap_or(bytes.len());
    // Every role name is short ASCII: fold case on the stack, no allocation.
    let mut buf = [0u8; ROLE_MAX_LEN];
    if end == 0 || end > ROLE_MAX_LEN {
        return false;
    }
    for (dst, src) in buf.iter_mut().zip(&bytes[..end]) {
        *dst = src.to_ascii_lowercase();
    }
    ROLES.contains(&buf[..end])
}

/// Longest entry of the role list.
const ROLE_MAX_LEN: usize = 16;

pub fn is_free(domain_ascii: &str) -> bool {
    FREE.contains(domain_ascii)
}

/// True when the domain or any parent of it is a known throwaway-mail domain
/// (`x.mailinator.com` is as disposable as `mailinator.com`).
pub fn is_disposable(domain_ascii: &str) -> bool {
    if NOT_DISPOSABLE.iter().any(|d| {
        domain_ascii == *d
            || domain_ascii
                .strip_suffix(d)
                .is_some_and(|h| h.ends_with('.'))
    }) {
        return false;
    }
    let mut rest = domain_ascii;
    loop {
        if DISPOSABLE.contains(rest) {
            return true;
        }
        match rest.split_once('.') {
            Some((_, parent)) if parent.contains('.') => rest = parent,
            _ => return false,
        }
    }
}

/// Consumer providers and their common country variants, used by the typo rule: a domain in
/// this set is real and never "corrected".
pub(crate) fn free_providers() -> &'static [&'static str] {
    FREE_PROVIDERS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_list_fits_the_stack_buffer() {
        assert!(
            ROLE_LOCAL_PARTS
                .iter()
                .all(|r| r.len() <= ROLE_MAX_LEN && r.is_ascii())
        );
    }

    #[test]
    fn roles() {
        assert!(is_role("info"));
        assert!(is_role("INFO"));
        assert!(is_role("sales+eu"));
        assert!(is_role("no-reply"));
        assert!(!is_role("john"));
        assert!(!is_role("infoline"));
    }

    #[test]
    fn disposable_checks_parents_not_tlds() {
        assert!(is_disposable("mailinator.com"));
        assert!(is_disposable("a.b.mailinator.com"));
        assert!(!is_disposable("gmail.com"));
        assert!(!is_disposable("com"));
        for relay in [
            "duck.com",
            "mozmail.com",
            "abc.mozmail.com",
            "keemail.me",
            "passmail.net",
        ] {
            assert!(!is_disposable(relay), "{relay}");
        }
        assert!(DISPOSABLE.len() > 40_000);
    }

    #[test]
    fn free() {
        assert!(is_free("gmail.com"));
        assert!(!is_free("acme.com"));
    }
}
