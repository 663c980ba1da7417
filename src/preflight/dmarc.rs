//! DMARC records (RFC 7489 §6.3) and the organizational domain (§3.2, from the public suffix
//! list). Pure.

use serde::Serialize;

/// A parsed DMARC record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DmarcRecord {
    /// `p=`: none, quarantine or reject.
    pub policy: String,
    /// `sp=`, the policy for sub-domains; None: `p=` applies.
    pub subdomain_policy: Option<String>,
    /// `pct=`, 100 by default.
    pub pct: u8,
    /// `rua=` and `ruf=` URIs.
    pub rua: Vec<String>,
    pub ruf: Vec<String>,
    /// `adkim=` and `aspf=`: r (relaxed, the default) or s (strict).
    pub adkim: char,
    pub aspf: char,
}

/// Whether a TXT record at `_dmarc.<domain>` is a DMARC record (RFC 7489 §6.6.3: it starts
/// with `v=DMARC1`; others are ignored).
pub fn is_dmarc(record: &str) -> bool {
    let squeezed: String = record.chars().filter(|c| !c.is_whitespace()).collect();
    squeezed == "v=DMARC1" || squeezed.starts_with("v=DMARC1;")
}

/// The organizational domain of `domain` (lower-case ASCII): its registrable domain by the
/// public suffix list, e.g. `example.co.uk` for `mail.example.co.uk`. A name that is itself
/// a public suffix is its own.
pub fn organizational_domain(domain: &str) -> String {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    psl::domain_str(&domain).unwrap_or(&domain).to_owned()
}

/// Parses a DMARC record; an error for anything a receiver would discard it for, or a value
/// it would have to ignore.
pub fn parse(record: &str) -> Result<DmarcRecord, String> {
    // The DKIM tag-list syntax (RFC 7489 §6.4 takes it from RFC 6376 §3.2); names compared
    // without case.
    let tags: Vec<(String, String)> = super::dkim::tags(record)?
        .into_iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value))
        .collect();
    if let Some(i) = (1..tags.len()).find(|&i| tags[..i].iter().any(|(n, _)| *n == tags[i].0)) {
        return Err(format!("the tag {} appears twice", tags[i].0));
    }
    match tags.first() {
        Some((name, value)) if name == "v" && value == "DMARC1" => {}
        _ => return Err("the record does not start with v=DMARC1".into()),
    }
    let get = |name: &str| {
        tags.iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let policy = match get("p") {
        Some(p) => policy_value(p, "p")?,
        None => return Err("no p= tag (the policy)".into()),
    };
    let subdomain_policy = get("sp").map(|sp| policy_value(sp, "sp")).transpose()?;
    let pct = match get("pct") {
        None => 100,
        Some(v) => v
            .parse::<u8>()
            .ok()
            .filter(|p| *p <= 100)
            .ok_or_else(|| format!("pct={v} is not a whole number from 0 to 100"))?,
    };
    let alignment = |name: &str| match get(name).map(str::to_ascii_lowercase).as_deref() {
        None | Some("r") => Ok('r'),
        Some("s") => Ok('s'),
        Some(other) => Err(format!("{name}={other} is neither r nor s")),
    };
    Ok(DmarcRecord {
        policy,
        subdomain_policy,
        pct,
        rua: uris(get("rua"), "rua")?,
        ruf: uris(get("ruf"), "ruf")?,
        adkim: alignment("adkim")?,
        aspf: alignment("aspf")?,
    })
}

fn policy_value(value: &str, tag: &str) -> Result<String, String> {
    let lower = value.to_ascii_lowercase();
    match lower.as_str() {
        "none" | "quarantine" | "reject" => Ok(lower),
        _ => Err(format!("{tag}={value} is not none, quarantine or reject")),
    }
}

/// `rua=`/`ruf=`: comma-separated URIs, each with an optional `!size` (RFC 7489 §6.2);
/// receivers only send to mailto: ones.
fn uris(value: Option<&str>, tag: &str) -> Result<Vec<String>, String> {
    let Some(value) = value else {
        return Ok(Vec::new());
    };
    value
        .split(',')
        .map(|uri| {
            let uri = uri.trim();
            let address = uri.split('!').next().unwrap_or(uri);
            let lower = address.to_ascii_lowercase();
            match lower.strip_prefix("mailto:") {
                Some(to) if to.contains('@') && !to.starts_with('@') && !to.ends_with('@') => {
                    Ok(uri.to_owned())
                }
                _ => Err(format!("{tag}: {uri:?} is not a mailto: address")),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_record_parses() {
        let record = parse(
            "v=DMARC1; p=reject; sp=quarantine; pct=50; rua=mailto:d@example.org,mailto:x@y.example!10m; \
             ruf=mailto:f@example.org; adkim=s; aspf=r; fo=1",
        )
        .unwrap();
        assert_eq!(
            record,
            DmarcRecord {
                policy: "reject".into(),
                subdomain_policy: Some("quarantine".into()),
                pct: 50,
                rua: vec![
                    "mailto:d@example.org".into(),
                    "mailto:x@y.example!10m".into()
                ],
                ruf: vec!["mailto:f@example.org".into()],
                adkim: 's',
                aspf: 'r',
            }
        );
    }

    #[test]
    fn the_defaults_fill_in() {
        let record = parse("v=DMARC1;p=none").unwrap();
        assert_eq!(record.policy, "none");
        assert_eq!(record.subdomain_policy, None);
        assert_eq!(record.pct, 100);
        assert!(record.rua.is_empty() && record.ruf.is_empty());
        assert_eq!((record.adkim, record.aspf), ('r', 'r'));
    }

    #[test]
    fn malformed_records_are_errors() {
        for (record, why) in [
            ("v=DMARC1; p=maybe; pct=150", "p=maybe"),
            ("v=DMARC1; rua=mailto:d@example.org", "no p="),
            ("p=reject; v=DMARC1", "does not start"),
            ("v=DMARC2; p=reject", "does not start"),
            ("v=DMARC1; p=reject; pct=150", "pct=150"),
            ("v=DMARC1; p=reject; pct=-1", "pct=-1"),
            ("v=DMARC1; p=reject; sp=all", "sp=all"),
            ("v=DMARC1; p=reject; adkim=x", "adkim=x"),
            ("v=DMARC1; p=reject; rua=https://example.org/r", "rua"),
            ("v=DMARC1; p=reject; rua=mailto:nobody", "rua"),
            ("v=DMARC1; p=reject; p=none", "twice"),
            ("v=DMARC1; p=reject; junk", "not tag=value"),
        ] {
            let error = parse(record).unwrap_err();
            assert!(error.contains(why), "{record}: {error}");
        }
    }

    #[test]
    fn dmarc_records_are_told_from_other_txt_records() {
        assert!(is_dmarc("v=DMARC1; p=none"));
        assert!(is_dmarc("v = DMARC1 ;p=none"));
        assert!(is_dmarc("v=DMARC1"));
        assert!(!is_dmarc("v=spf1 -all"));
        assert!(!is_dmarc("v=DMARC10; p=none"));
    }

    #[test]
    fn the_organizational_domain_follows_the_public_suffix_list() {
        assert_eq!(organizational_domain("mail.example.com"), "example.com");
        assert_eq!(organizational_domain("a.b.example.co.uk."), "example.co.uk");
        assert_eq!(organizational_domain("Example.COM"), "example.com");
        // A private-section suffix: each user's sub-domain is its own organization.
        assert_eq!(
            organizational_domain("x.alice.github.io"),
            "alice.github.io"
        );
        // Not on the list: the default rule makes the last label the suffix.
        assert_eq!(organizational_domain("sub.pf-good.test"), "pf-good.test");
        assert_eq!(organizational_domain("com"), "com");
    }
}
