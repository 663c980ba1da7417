//! The `bulk-sender` check: the other checks read against Gmail's and Yahoo's requirements
//! for bulk senders (February 2024): SPF and DKIM, DMARC of at least `p=none` with alignment,
//! forward-confirmed reverse DNS of the sending address, TLS. Pure.

use serde_json::{Value, json};

use super::check::{Check, CheckStatus};

/// One requirement: met, not met, or not known (None).
struct Requirement {
    name: &'static str,
    met: Option<bool>,
    detail: String,
    /// Whether an unknown counts against the verdict (TLS cannot be checked from here, so it
    /// is shown as a reminder only).
    counts: bool,
}

/// The verdict from the `spf`, `dkim:<selector>` and `dmarc` checks, and the prober's `fcrdns`
/// when the prober part ran. Its `requirements` field lists each one with `met`
/// (true/false/null).
pub fn verdict(spf: &Check, dkim: &[Check], dmarc: &Check, fcrdns: Option<&Check>) -> Check {
    let spf_met = match spf.field("result").and_then(Value::as_str) {
        Some("ok") => Some(true),
        Some("temperror") | None => None,
        Some(_) => Some(false),
    };
    let usable_key = |c: &&Check| {
        matches!(c.status, CheckStatus::Pass | CheckStatus::Warn)
            && c.field("bits").and_then(Value::as_u64).is_some()
    };
    let dkim_met = if dkim.iter().any(|c| usable_key(&c)) {
        Some(true)
    } else if dkim.iter().any(|c| c.status == CheckStatus::Fail) {
        Some(false)
    } else {
        None
    };
    let dmarc_met = match (dmarc.status, dmarc.field("policy")) {
        (_, Some(Value::String(_))) => Some(true),
        (CheckStatus::Fail, _) => Some(false),
        _ => None,
    };
    let aligned = match (spf_met, dkim_met) {
        (Some(true), _) | (_, Some(true)) => Some(true),
        (Some(false), Some(false)) => Some(false),
        _ => None,
    };
    let fcrdns_met = match fcrdns.map(|c| c.status) {
        Some(CheckStatus::Pass) => Some(true),
        Some(CheckStatus::Fail) => Some(false),
        _ => None,
    };
    let requirements = [
        Requirement {
            name: "spf",
            met: spf_met,
            detail: "an SPF record that receivers can evaluate".into(),
            counts: true,
        },
        Requirement {
            name: "dkim",
            met: dkim_met,
            detail: if dkim.is_empty() {
                "not checked: name your DKIM selectors with --dkim-selector".into()
            } else {
                "a DKIM key of at least 1024 bits under one of the selectors checked".into()
            },
            counts: true,
        },
        Requirement {
            name: "dmarc",
            met: dmarc_met,
            detail: "a DMARC record, at least p=none".into(),
            counts: true,
        },
        Requirement {
            name: "alignment",
            met: aligned,
            detail: "SPF or DKIM passing for the From domain itself (both are checked at the \
                     From domain, so they align when your sending service uses it as envelope \
                     sender or d= domain)"
                .into(),
            counts: true,
        },
        Requirement {
            name: "fcrdns",
            met: fcrdns_met,
            detail: match fcrdns {
                Some(_) => "forward-confirmed reverse DNS of this machine's address".into(),
                None => "not checked: run with --from on the sending machine (an ESP sees to it for you)"
                    .into(),
            },
            counts: true,
        },
        Requirement {
            name: "tls",
            met: None,
            detail: "not checked here: your sending server or service must use TLS".into(),
            counts: false,
        },
    ];
    let missing: Vec<&str> = requirements
        .iter()
        .filter(|r| r.met == Some(false))
        .map(|r| r.name)
        .collect();
    let unknown: Vec<&str> = requirements
        .iter()
        .filter(|r| r.counts && r.met.is_none())
        .map(|r| r.name)
        .collect();
    let listed = json!(
        requirements
            .iter()
            .map(|r| json!({"name": r.name, "met": r.met, "detail": r.detail}))
            .collect::<Vec<_>>()
    );
    let check = if !missing.is_empty() {
        Check::fail(
            "bulk-sender",
            format!(
                "Gmail and Yahoo will reject or junk bulk mail: {} not met",
                missing.join(", ")
            ),
        )
        .advise("fix the checks above marked fail; bulk senders (5,000+ a day to Gmail) need all of them")
    } else if !unknown.is_empty() {
        Check::warn(
            "bulk-sender",
            format!("met so far; not known: {}", unknown.join(", ")),
        )
        .advise("see each requirement's detail for how to check it")
    } else {
        Check::pass(
            "bulk-sender",
            "SPF, DKIM, DMARC with alignment and reverse DNS meet the bulk-sender rules (TLS not checked)",
        )
    };
    check.with("requirements", listed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spf(result: &str) -> Check {
        Check::pass("spf", "").with("result", result)
    }

    fn dkim(status: CheckStatus, bits: Option<u64>) -> Check {
        Check::new("dkim:s", status, "").with("bits", bits)
    }

    fn dmarc(policy: Option<&str>, status: CheckStatus) -> Check {
        Check::new("dmarc", status, "").with("policy", policy)
    }

    fn met(check: &Check, name: &str) -> Value {
        check
            .field("requirements")
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == name)
            .unwrap()["met"]
            .clone()
    }

    #[test]
    fn everything_in_place_passes() {
        let fcrdns = Check::pass("fcrdns", "");
        let check = verdict(
            &spf("ok"),
            &[dkim(CheckStatus::Pass, Some(2048))],
            &dmarc(Some("none"), CheckStatus::Warn),
            Some(&fcrdns),
        );
        assert_eq!(check.status, CheckStatus::Pass);
        assert_eq!(met(&check, "alignment"), json!(true));
        assert_eq!(met(&check, "tls"), Value::Null);
    }

    #[test]
    fn a_missing_requirement_fails() {
        let fcrdns = Check::fail("fcrdns", "");
        let check = verdict(
            &spf("permerror"),
            &[dkim(CheckStatus::Fail, None)],
            &dmarc(None, CheckStatus::Fail),
            Some(&fcrdns),
        );
        assert_eq!(check.status, CheckStatus::Fail);
        assert!(
            check.detail.contains("spf, dkim, dmarc, alignment, fcrdns"),
            "{}",
            check.detail
        );
    }

    #[test]
    fn what_was_not_checked_is_a_warning() {
        // No selector given, no prober part: DKIM and FCrDNS are unknown.
        let check = verdict(
            &spf("ok"),
            &[],
            &dmarc(Some("reject"), CheckStatus::Pass),
            None,
        );
        assert_eq!(check.status, CheckStatus::Warn);
        assert_eq!(met(&check, "dkim"), Value::Null);
        assert_eq!(met(&check, "fcrdns"), Value::Null);
        assert_eq!(met(&check, "alignment"), json!(true));
        assert!(check.detail.contains("dkim, fcrdns"));
    }

    #[test]
    fn one_usable_key_among_broken_selectors_is_enough() {
        let fcrdns = Check::pass("fcrdns", "");
        let keys = [
            dkim(CheckStatus::Fail, None),
            dkim(CheckStatus::Warn, Some(1024)),
        ];
        let check = verdict(
            &spf("none"),
            &keys,
            &dmarc(Some("reject"), CheckStatus::Pass),
            Some(&fcrdns),
        );
        assert_eq!(met(&check, "dkim"), json!(true));
        assert_eq!(met(&check, "spf"), json!(false));
        // DKIM alone aligns, but SPF is still required.
        assert_eq!(met(&check, "alignment"), json!(true));
        assert_eq!(check.status, CheckStatus::Fail);
    }

    #[test]
    fn a_dns_failure_leaves_spf_unknown() {
        let check = verdict(
            &spf("temperror"),
            &[],
            &dmarc(None, CheckStatus::Warn),
            None,
        );
        assert_eq!(met(&check, "spf"), Value::Null);
        assert_eq!(met(&check, "dmarc"), Value::Null);
        assert_eq!(met(&check, "alignment"), Value::Null);
        assert_eq!(check.status, CheckStatus::Warn);
    }
}
