//! Typo suggestions for the domains people mistype most: the big providers and the .com family.
//!
//! The rule is built to never "fix" a real domain:
//! - a domain that is itself a known provider domain is never changed;
//! - a TLD is only corrected when it does not exist (`.con`, `.cmo`), never `.co` → `.com`;
//! - a second-level label is only corrected towards a provider domain when it is within
//!   Damerau distance 1 (2 for labels of 7+ letters with the same first letter), the candidate is
//!   unique, and the label is long enough (≥ 5) that distance 1 is not just another short word.

use super::lists::free_providers;

/// Misspellings of .com/.net/.org that are not delegated TLDs (checked against the IANA root
/// zone list): replacing them can only help. `.co`, `.cm`, `.om`, `.ne` are real and absent.
const TLD_FIXES: &[(&str, &str)] = &[
    ("con", "com"),
    ("cmo", "com"),
    ("ocm", "com"),
    ("comm", "com"),
    ("coom", "com"),
    ("vom", "com"),
    ("xom", "com"),
    ("cpm", "com"),
    ("cim", "com"),
    ("clm", "com"),
    ("cok", "com"),
    ("comn", "com"),
    ("c0m", "com"),
    ("cpom", "com"),
    ("ccom", "com"),
    ("nte", "net"),
    ("nett", "net"),
    ("ent", "net"),
    ("met", "net"),
    ("ogr", "org"),
    ("orgg", "org"),
    ("rog", "org"),
    ("prg", "org"),
];

/// The domains people mistype most, and the only targets of the distance rule: a long, distinctive
/// label keeps distance 1 away from other real domains.
const TYPO_TARGETS: &[&str] = &[
    "gmail.com",
    "googlemail.com",
    "yahoo.com",
    "yahoo.co.uk",
    "hotmail.com",
    "hotmail.co.uk",
    "outlook.com",
    "icloud.com",
    "comcast.net",
    "protonmail.com",
    "btinternet.com",
    "sbcglobal.net",
    "bellsouth.net",
    "verizon.net",
    "earthlink.net",
    "optonline.net",
    "rediffmail.com",
];

/// Real domains within distance 1 of a target: they must never be "corrected".
const REAL_NEIGHBOURS: &[&str] = &[
    "email.com",
    "cloud.com",
    "gmail.co.jp",
    "yahoo.co.jp",
    "hotmail.co.jp",
];

/// Providers that exist under one TLD only, so `gmail.co` is certainly a typo even though `.co`
/// is a real TLD.
const SINGLE_TLD_PROVIDERS: &[&str] = &["gmail.com", "googlemail.com"];

fn split_sld(domain: &str) -> Option<(&str, &str)> {
    domain.split_once('.')
}

/// Optimal string alignment distance (Damerau with adjacent transpositions), from strsim.
fn distance(a: &str, b: &str) -> usize {
    strsim::osa_distance(a, b)
}

pub fn suggest_domain(domain_ascii: &str) -> Option<String> {
    let providers = free_providers();
    if providers.contains(&domain_ascii) || REAL_NEIGHBOURS.contains(&domain_ascii) {
        return None;
    }
    let (sld, tld) = split_sld(domain_ascii)?;
    let fixed_tld = TLD_FIXES
        .iter()
        .find(|(typo, _)| *typo == tld)
        .map(|(_, fix)| *fix);
    let tld_now = fixed_tld.unwrap_or(tld);
    let candidate = format!("{sld}.{tld_now}");
    if providers.contains(&candidate.as_str()) || REAL_NEIGHBOURS.contains(&candidate.as_str()) {
        return (candidate != domain_ascii).then_some(candidate);
    }
    // gmail.co, icloud.cm: the label is right and only one TLD is real.
    // Only for a two-label domain: gmail.co is a typo, but icloud.com.cn is real.
    if let Some(p) = SINGLE_TLD_PROVIDERS
        .iter()
        .filter(|_| !tld.contains('.'))
        .find(|p| split_sld(p).is_some_and(|(psld, _)| psld == sld))
    {
        return Some((*p).to_owned());
    }
    if sld.len() >= 4 {
        let mut best: Option<(&str, usize)> = None;
        let mut tie = false;
        for p in TYPO_TARGETS {
            let Some((psld, ptld)) = split_sld(p) else {
                continue;
            };
            if ptld != tld_now || psld.len().abs_diff(sld.len()) > 2 {
                continue;
            }
            let d = distance(sld, psld);
            // Distance 1 only, and the first letter must match: people rarely mistype the
            // first letter, while real brands differ from providers right there (wahoo, yahoo).
            let allowed = if psld.as_bytes()[0] == sld.as_bytes()[0] {
                1
            } else {
                0
            };
            if d == 0 || d > allowed {
                continue;
            }
            match best {
                Some((_, bd)) if bd < d => {}
                Some((_, bd)) if bd == d => tie = true,
                _ => {
                    best = Some((p, d));
                    tie = false;
                }
            }
        }
        if let (Some((p, _)), false) = (best, tie) {
            return Some(p.to_owned());
        }
    }
    // Nothing provider-like: offer the TLD fix alone (acme.con → acme.com).
    fixed_tld.map(|_| candidate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixes_common_typos() {
        for (typo, fix) in [
            ("gmial.com", "gmail.com"),
            ("gmai.com", "gmail.com"),
            ("gnail.com", "gmail.com"),
            ("gmail.con", "gmail.com"),
            ("gmail.co", "gmail.com"),
            ("hotmial.com", "hotmail.com"),
            ("hotmai.com", "hotmail.com"),
            ("yahooo.com", "yahoo.com"),
            ("yaho.com", "yahoo.com"),
            ("outlok.com", "outlook.com"),
            ("acme.con", "acme.com"),
            ("acme.cmo", "acme.com"),
            ("example.nte", "example.net"),
        ] {
            assert_eq!(suggest_domain(typo).as_deref(), Some(fix), "{typo}");
        }
    }

    #[test]
    fn leaves_real_domains_alone() {
        for real in [
            "gmail.com",
            "ymail.com",
            "gmx.de",
            "gmx.net",
            "hotmail.fr",
            "yahoo.co.uk",
            "mail.com",
            "acme.co",
            "me.com",
            "mac.com",
            "aol.com",
            "live.com",
            "outlook.de",
            "web.de",
            "email.com",
            "gmaill.company",
            "yahoo.fr",
            "msn.com",
            "gamil.co.uk",
            "oracle.com",
            "google.com",
            "cloud.com",
            "never.com",
            "saver.com",
            "apple.com",
            "cox.net",
            "att.net",
            "sky.com",
        ] {
            assert_eq!(suggest_domain(real), None, "{real}");
        }
    }
}
