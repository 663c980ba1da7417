//! The sender domain: MX (the DNS stage's own rules), SPF, DKIM per selector, DMARC and the
//! bulk-sender verdict. I/O: the DNS queries through [`DnsResolver`]; the records are read by
//! the pure `spf`, `dkim`, `dmarc` and `bulk` modules.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::{Value, json};

use super::check::Check;
use super::prober::ProberReport;
use super::spf::{self, Progress, SpfResult};
use super::{bulk, dkim, dmarc};
use crate::dns::{DnsResolver, RecordKind, RecordLookup};
use crate::model::Status;
use crate::verdict::{self, Evidence, Policy};

/// What to check.
#[derive(Debug, Clone)]
pub struct SenderOptions {
    /// The sender domain, lower-case ASCII.
    pub domain: String,
    /// DKIM selectors to look keys up under.
    pub dkim_selectors: Vec<String>,
    /// MX hosts on loopback or private addresses count (labs, intranets).
    pub allow_private_mx: bool,
}

/// The sender part of a preflight: `{"domain": …, "checks": […]}` in JSON, checks in this
/// order: `mx`, `spf`, `dkim:<selector>`…, `dmarc`, `bulk-sender`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SenderReport {
    pub domain: String,
    pub checks: Vec<Check>,
}

/// Runs the sender checks; `prober` (when the prober part ran) gives the bulk-sender verdict
/// its reverse-DNS requirement. Must be called inside a tokio runtime.
pub async fn check(
    options: &SenderOptions,
    prober: Option<&ProberReport>,
    dns: &DnsResolver,
) -> SenderReport {
    let domain = options.domain.trim_end_matches('.').to_ascii_lowercase();
    let keys = options
        .dkim_selectors
        .iter()
        .map(|selector| dkim_check(&domain, selector, dns));
    let (mx, spf, dkim, dmarc) = futures::join!(
        mx_check(&domain, options.allow_private_mx, dns),
        spf_check(&domain, dns),
        futures::future::join_all(keys),
        dmarc_check(&domain, dns),
    );
    let fcrdns = prober.and_then(|p| p.check("fcrdns"));
    let bulk = bulk::verdict(&spf, &dkim, &dmarc, fcrdns);
    let mut checks = vec![mx, spf];
    checks.extend(dkim);
    checks.push(dmarc);
    checks.push(bulk);
    SenderReport { domain, checks }
}

/// `mx`: decided by the DNS stage's rules, as a list's address at this domain would be.
async fn mx_check(domain: &str, allow_private_mx: bool, dns: &DnsResolver) -> Check {
    let options = crate::syntax::SyntaxOptions {
        allow_reserved_domains: true,
    };
    let address = match crate::syntax::check(&format!("postmaster@{domain}"), options) {
        Ok(address) => address,
        Err(e) => return Check::fail("mx", format!("{domain} is not a usable domain: {e}")),
    };
    let evidence = Evidence::Domain {
        address,
        dns: dns.domain(domain).await,
        smtp: None,
    };
    let decided = verdict::decide(&evidence, Policy { allow_private_mx });
    let check = match decided.status {
        Status::Valid => Check::pass("mx", decided.detail.to_string()),
        Status::Unknown => Check::warn("mx", decided.detail.to_string())
            .advise("the DNS could not answer: run again, or check --dns-server"),
        _ => Check::fail("mx", decided.detail.to_string()).advise(
            "publish an MX record for a server that accepts mail: bounces and replies must be \
             able to come back, and receivers refuse senders whose domain takes no mail",
        ),
    };
    check
        .with("reason", decided.reason.as_str())
        .with("mx", decided.mx.as_deref())
}

/// `spf`: the pure evaluator asks for answers until it has all it needs.
async fn spf_check(domain: &str, dns: &DnsResolver) -> Check {
    let mut answers: HashMap<(String, RecordKind), RecordLookup> = HashMap::new();
    // Each round answers the queries of one more level of includes; the evaluator's own
    // limits (depth, lookups counted) end the rounds on any record.
    let report = loop {
        match spf::evaluate(domain, &answers) {
            Progress::Done(report) => break report,
            Progress::Need(queries) => {
                let asked = queries.into_iter().map(|(name, kind)| async move {
                    let answer = dns.records(&name, kind).await;
                    ((name, kind), answer)
                });
                answers.extend(futures::future::join_all(asked).await);
            }
        }
    };
    let root = report.tree.record.clone();
    let tree = report.tree.lines().join("\n");
    let counts = format!(
        "DNS lookups {} (limit {}), void {} (limit {})",
        report.lookups,
        spf::LOOKUP_LIMIT,
        report.void_lookups,
        spf::VOID_LIMIT
    );
    let check = match report.result {
        SpfResult::None => Check::fail("spf", format!("{domain} has no SPF record")).advise(
            "publish one TXT record \"v=spf1 include:<your sending service> -all\" (or ~all) \
             listing every service that sends as this domain",
        ),
        SpfResult::PermError => Check::fail(
            "spf",
            format!("permerror: {}\n{counts}\n{tree}", report.errors.join("; ")),
        )
        .advise(
            "receivers fail every message's SPF: keep one record, under 10 lookups (replace \
             includes you do not need by ip4:/ip6: ranges), with no loops or missing includes",
        ),
        SpfResult::TempError => Check::warn(
            "spf",
            format!("temperror: {}\n{counts}\n{tree}", report.errors.join("; ")),
        )
        .advise("the DNS did not answer: run again"),
        SpfResult::Ok if !report.warnings.is_empty() => Check::warn(
            "spf",
            format!("{}\n{counts}\n{tree}", report.warnings.join("; ")),
        )
        .advise("end the record with -all or ~all after listing your senders, and drop ptr"),
        SpfResult::Ok => Check::pass("spf", format!("{counts}\n{tree}")),
    };
    check
        .with("result", json!(report.result))
        .with("record", root)
        .with("lookups", report.lookups)
        .with("void_lookups", report.void_lookups)
        .with("all", report.all.clone())
        .with("errors", report.errors.clone())
        .with("warnings", report.warnings.clone())
        .with("tree", json!(report.tree))
}

/// `dkim:<selector>`.
async fn dkim_check(domain: &str, selector: &str, dns: &DnsResolver) -> Check {
    let id = format!("dkim:{selector}");
    let valid_selector = !selector.is_empty()
        && selector.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if !valid_selector {
        return Check::fail(&id, format!("{selector:?} is not a valid selector"))
            .with("bits", Value::Null);
    }
    let name = format!("{}._domainkey.{domain}", selector.to_ascii_lowercase());
    let answer = dns.records(&name, RecordKind::Txt).await;
    let base = |check: Check| check.with("name", name.clone());
    if let RecordLookup::Failed(e) = &answer {
        return base(Check::warn(
            &id,
            format!("the TXT lookup of {name} failed: {e}"),
        ))
        .with("bits", Value::Null);
    }
    let records: Vec<&String> = answer
        .records()
        .iter()
        .filter(|r| dkim::is_key_record(r))
        .collect();
    let record = match records.as_slice() {
        [] => {
            return base(Check::fail(&id, format!("no DKIM key at {name}")))
                .with("bits", Value::Null)
                .advise(format!(
                    "publish the selector's public key as a TXT record at {name} (your sending \
                     service gives it), or check the selector's name in a signed message's \
                     DKIM-Signature s= tag"
                ));
        }
        [one] => one.to_string(),
        more => {
            return base(Check::fail(
                &id,
                format!(
                    "{} key records at {name}: receivers cannot tell which applies",
                    more.len()
                ),
            ))
            .with("bits", Value::Null)
            .advise("keep one key record per selector");
        }
    };
    let key = match dkim::parse(&record) {
        Ok(key) => key,
        Err(e) => {
            return base(Check::fail(&id, format!("malformed key record: {e}")))
                .with("bits", Value::Null)
                .with("record", record)
                .advise("publish the key again as your sending service gives it");
        }
    };
    let with_key = |check: Check| {
        base(check)
            .with("bits", key.bits)
            .with("key_type", key.key_type.clone())
            .with("revoked", key.revoked)
            .with("testing", key.testing)
    };
    let bits = key.bits.unwrap_or(0);
    let rsa = key.key_type == "rsa";
    let kind = match key.key_type.as_str() {
        "rsa" => "RSA",
        "ed25519" => "Ed25519",
        other => other,
    };
    if key.revoked {
        with_key(Check::fail(
            &id,
            format!("the key at {name} is revoked (empty p=)"),
        ))
        .advise("every signature with this selector fails: sign with a selector that has a key")
    } else if rsa && bits < dkim::MIN_RSA_BITS {
        with_key(Check::fail(
            &id,
            format!("{bits}-bit RSA key: receivers ignore keys under 1024 bits"),
        ))
        .advise("make a 2048-bit key and publish it under a new selector")
    } else if rsa && bits < dkim::GOOD_RSA_BITS {
        with_key(Check::warn(
            &id,
            format!("{bits}-bit RSA key; 2048 bits is the norm now"),
        ))
        .advise("rotate to a 2048-bit key under a new selector")
    } else if key.testing {
        with_key(Check::warn(
            &id,
            format!("{bits}-bit {kind} key in testing mode (t=y)"),
        ))
        .advise("remove t=y once signing works: receivers treat failures as unsigned mail")
    } else {
        with_key(Check::pass(&id, format!("{bits}-bit {kind} key")))
    }
}

/// `dmarc`: `_dmarc.<domain>`, else the organizational domain's record.
async fn dmarc_check(domain: &str, dns: &DnsResolver) -> Check {
    let own = dmarc_records(domain, dns).await;
    let org = dmarc::organizational_domain(domain);
    let (source, found) = match own {
        Ok(records) if records.is_empty() && org != domain => {
            (org.clone(), dmarc_records(&org, dns).await)
        }
        other => (domain.to_owned(), other),
    };
    let absent = |check: Check| {
        check
            .with("policy", Value::Null)
            .with("source", Value::Null)
    };
    let records = match found {
        Ok(records) => records,
        Err(e) => {
            return absent(Check::warn(
                "dmarc",
                format!("the TXT lookup of _dmarc.{source} failed: {e}"),
            ));
        }
    };
    let record = match records.as_slice() {
        [] => {
            let also = if org != domain {
                format!(" nor at _dmarc.{org}")
            } else {
                String::new()
            };
            return absent(Check::fail(
                "dmarc",
                format!("no DMARC record at _dmarc.{domain}{also}"),
            ))
            .advise(format!(
                "publish \"v=DMARC1; p=none; rua=mailto:dmarc@{org}\" at _dmarc.{org} to start: \
                 Gmail and Yahoo reject bulk mail without one"
            ));
        }
        [one] => one.clone(),
        more => {
            return absent(Check::fail(
                "dmarc",
                format!(
                    "{} DMARC records at _dmarc.{source}: receivers apply none",
                    more.len()
                ),
            ))
            .advise("keep exactly one");
        }
    };
    let parsed = match dmarc::parse(&record) {
        Ok(parsed) => parsed,
        Err(e) => {
            return absent(Check::fail(
                "dmarc",
                format!("malformed record at _dmarc.{source}: {e}"),
            ))
            .with("record", record)
            .advise("fix the record: receivers discard it, so the domain has no DMARC policy");
        }
    };
    // A record found at the organizational domain covers this one through sp=.
    let policy = if source == domain {
        parsed.policy.clone()
    } else {
        parsed
            .subdomain_policy
            .clone()
            .unwrap_or_else(|| parsed.policy.clone())
    };
    let from = if source == domain {
        format!("_dmarc.{domain}")
    } else {
        format!("_dmarc.{source} (the organizational domain)")
    };
    let reports = if parsed.rua.is_empty() {
        "no aggregate reports (rua=)".to_owned()
    } else {
        format!("reports to {}", parsed.rua.join(", "))
    };
    let summary = format!(
        "p={policy} from {from}, pct={}, adkim={}, aspf={}, {reports}",
        parsed.pct, parsed.adkim, parsed.aspf
    );
    let check = if policy == "none" {
        Check::warn("dmarc", format!("{summary}: monitoring only")).advise(
            "p=none meets the bulk-sender minimum but protects nothing: move to quarantine, \
             then reject, once the reports show your mail aligned",
        )
    } else if parsed.pct < 100 {
        Check::warn(
            "dmarc",
            format!("{summary}: applied to {}% of mail", parsed.pct),
        )
        .advise("raise pct to 100 once the reports are clean")
    } else {
        Check::pass("dmarc", summary)
    };
    check
        .with("policy", policy)
        .with("source", source)
        .with("record", record)
        .with("p", parsed.policy)
        .with("sp", parsed.subdomain_policy)
        .with("pct", parsed.pct)
        .with("rua", parsed.rua)
        .with("ruf", parsed.ruf)
        .with("adkim", parsed.adkim.to_string())
        .with("aspf", parsed.aspf.to_string())
}

/// The DMARC records at `_dmarc.<domain>`: none for NXDOMAIN or no data.
async fn dmarc_records(domain: &str, dns: &DnsResolver) -> Result<Vec<String>, String> {
    match dns
        .records(&format!("_dmarc.{domain}"), RecordKind::Txt)
        .await
    {
        RecordLookup::Failed(e) => Err(e.to_string()),
        answer => Ok(answer
            .records()
            .iter()
            .filter(|r| dmarc::is_dmarc(r))
            .cloned()
            .collect()),
    }
}
