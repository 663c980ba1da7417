//! SPF (RFC 7208) as a sender's setup check: the record parsed term by term, and every
//! DNS-querying term counted across nested includes and redirects. Pure: the DNS answers come
//! from an [`Answers`] source, and [`evaluate`] says which ones it still needs.
//!
//! This is a static check of the whole record, not an evaluation for one client address: every
//! branch is followed (a real evaluation stops at the first match, so it may do fewer), which is
//! the worst case a receiver can meet and what the 10-lookup limit has to hold for.

use core::net::{Ipv4Addr, Ipv6Addr};
use std::collections::{BTreeSet, HashMap};

use serde::Serialize;

use crate::model::dns::{RecordKind, RecordLookup};

/// RFC 7208 §4.6.4: more DNS-querying terms than this is a permerror.
pub const LOOKUP_LIMIT: u32 = 10;
/// RFC 7208 §4.6.4: more void lookups (NXDOMAIN or no data) than this is a permerror.
pub const VOID_LIMIT: u32 = 2;
/// RFC 7208 §4.6.4: an `mx` term naming more hosts than this is a permerror.
const MX_LIMIT: usize = 10;
/// Includes are not followed deeper than this, nor once this many lookups are counted: the
/// verdict (permerror) is known long before, and a hostile record cannot make the check
/// endless.
const MAX_DEPTH: usize = 12;
const MAX_COUNTED: u32 = 40;

/// The DNS answers the evaluation reads, by name (lower case, no trailing dot) and type.
pub trait Answers {
    /// None: not asked yet.
    fn answer(&self, name: &str, kind: RecordKind) -> Option<&RecordLookup>;
}

impl Answers for HashMap<(String, RecordKind), RecordLookup> {
    fn answer(&self, name: &str, kind: RecordKind) -> Option<&RecordLookup> {
        self.get(&(name.to_owned(), kind))
    }
}

/// What [`evaluate`] came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// These queries must be answered before the evaluation can finish: ask them, add the
    /// answers and evaluate again.
    Need(Vec<(String, RecordKind)>),
    Done(SpfReport),
}

/// How the domain's SPF came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SpfResult {
    /// A record that receivers can evaluate (it may still have warnings).
    Ok,
    /// No SPF record.
    None,
    /// Receivers fail it: over a limit, a loop, a syntax error, two records, an include without
    /// a record.
    PermError,
    /// A DNS failure: the check could not finish.
    TempError,
}

/// One record of the include tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpfNode {
    pub domain: String,
    /// `root`, `include` or `redirect`.
    pub via: &'static str,
    /// The record, when there was exactly one.
    pub record: Option<String>,
    /// DNS-querying terms of this record alone.
    pub lookups: u32,
    /// Why this record was not followed or read, if so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub children: Vec<SpfNode>,
}

impl SpfNode {
    /// The tree as indented lines: `include:x (3 lookups): v=spf1 …`.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.push_lines(0, &mut out);
        out
    }

    fn push_lines(&self, depth: usize, out: &mut Vec<String>) {
        let head = match self.via {
            "root" => self.domain.clone(),
            via => format!("{via}:{}", self.domain),
        };
        let mut line = format!("{}{head} ({} lookups)", "  ".repeat(depth), self.lookups);
        if let Some(record) = &self.record {
            line.push_str(&format!(": {record}"));
        }
        if let Some(note) = &self.note {
            line.push_str(&format!(" [{note}]"));
        }
        out.push(line);
        for child in &self.children {
            child.push_lines(depth + 1, out);
        }
    }
}

/// The whole check's outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpfReport {
    pub result: SpfResult,
    /// DNS-querying terms (include, a, mx, ptr, exists, redirect) in the whole tree.
    pub lookups: u32,
    /// Of their queries, those that found nothing (NXDOMAIN or no data).
    pub void_lookups: u32,
    /// The `all` that ends the evaluation (`-all`, `~all`, `?all`, `+all`), from the record or
    /// its redirect; None when there is none.
    pub all: Option<String>,
    pub tree: SpfNode,
    /// Why it is a permerror or temperror.
    pub errors: Vec<String>,
    /// What works but should change.
    pub warnings: Vec<String>,
}

/// One term of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Term {
    All(char),
    Include(char, String),
    A(char, Option<String>),
    Mx(char, Option<String>),
    Ptr(char, Option<String>),
    Ip4(char),
    Ip6(char),
    Exists(char, String),
    Redirect(String),
    Exp,
    /// An unknown modifier (`name=value`): ignored, as RFC 7208 §6 says.
    Other,
}

/// Whether a TXT record is an SPF record: `v=spf1` alone or followed by a space (RFC 7208
/// §4.5; `v=spf10` is not one).
pub fn is_spf(record: &str) -> bool {
    let lower = record.trim_start().to_ascii_lowercase();
    lower == "v=spf1" || lower.starts_with("v=spf1 ")
}

/// The terms of an SPF record, or the first syntax error.
pub fn parse(record: &str) -> Result<Vec<Term>, String> {
    let mut words = record.split(' ').filter(|w| !w.is_empty());
    match words.next() {
        Some(v) if v.eq_ignore_ascii_case("v=spf1") => {}
        _ => return Err("the record does not start with v=spf1".into()),
    }
    let mut terms = Vec::new();
    let (mut redirects, mut exps) = (0, 0);
    for word in words {
        let term = parse_term(word)?;
        match term {
            Term::Redirect(_) => redirects += 1,
            Term::Exp => exps += 1,
            _ => {}
        }
        terms.push(term);
    }
    if redirects > 1 || exps > 1 {
        return Err("redirect= or exp= appears more than once".into());
    }
    Ok(terms)
}

fn parse_term(word: &str) -> Result<Term, String> {
    let bad = |why: &str| Err(format!("{word:?}: {why}"));
    if !word.is_ascii() || word.bytes().any(|b| b.is_ascii_control()) {
        return bad("not printable ASCII");
    }
    // A modifier is name=value where the name has no ':' or '/' before the '='.
    if let Some((name, value)) = word.split_once('=')
        && !name.contains([':', '/'])
    {
        let valid_name = name.bytes().next().is_some_and(|b| b.is_ascii_alphabetic())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !valid_name {
            return bad("not a valid modifier name");
        }
        return match name.to_ascii_lowercase().as_str() {
            "redirect" => domain_spec(value)
                .map(|d| Term::Redirect(d.to_owned()))
                .map_err(|why| format!("{word:?}: {why}")),
            "exp" => domain_spec(value)
                .map(|_| Term::Exp)
                .map_err(|why| format!("{word:?}: {why}")),
            _ => macro_string(value)
                .map(|()| Term::Other)
                .map_err(|why| format!("{word:?}: {why}")),
        };
    }
    let (qualifier, rest) = match word.as_bytes()[0] {
        q @ (b'+' | b'-' | b'~' | b'?') => (q as char, &word[1..]),
        _ => ('+', word),
    };
    let (name, arg) = match rest.find([':', '/']) {
        Some(at) => (&rest[..at], Some(&rest[at..])),
        None => (rest, None),
    };
    let result = match name.to_ascii_lowercase().as_str() {
        "all" if arg.is_none() => Ok(Term::All(qualifier)),
        "include" => required_domain(arg.and_then(|a| a.strip_prefix(':')), arg)
            .map(|d| Term::Include(qualifier, d)),
        "exists" => required_domain(arg.and_then(|a| a.strip_prefix(':')), arg)
            .map(|d| Term::Exists(qualifier, d)),
        "a" => optional_domain_with_cidr(arg).map(|d| Term::A(qualifier, d)),
        "mx" => optional_domain_with_cidr(arg).map(|d| Term::Mx(qualifier, d)),
        "ptr" => match arg {
            None => Ok(Term::Ptr(qualifier, None)),
            Some(a) => match a.strip_prefix(':') {
                Some(d) => domain_spec(d).map(|d| Term::Ptr(qualifier, Some(d.to_owned()))),
                None => Err("ptr takes no CIDR length".into()),
            },
        },
        "ip4" => match arg.and_then(|a| a.strip_prefix(':')) {
            Some(net) => ip4_network(net).map(|()| Term::Ip4(qualifier)),
            None => Err("ip4 needs an address".into()),
        },
        "ip6" => match arg.and_then(|a| a.strip_prefix(':')) {
            Some(net) => ip6_network(net).map(|()| Term::Ip6(qualifier)),
            None => Err("ip6 needs an address".into()),
        },
        _ => Err("unknown mechanism".into()),
    };
    result.map_err(|why| format!("{word:?}: {why}"))
}

fn required_domain(spec: Option<&str>, arg: Option<&str>) -> Result<String, String> {
    match spec {
        Some(d) => domain_spec(d).map(str::to_owned),
        None if arg.is_some() => Err("takes no CIDR length".into()),
        None => Err("needs a domain".into()),
    }
}

/// `a`/`mx`'s `[:domain][/ip4-cidr][//ip6-cidr]`.
fn optional_domain_with_cidr(arg: Option<&str>) -> Result<Option<String>, String> {
    let Some(arg) = arg else { return Ok(None) };
    let (domain, cidr) = match arg.strip_prefix(':') {
        Some(rest) => match rest.find('/') {
            Some(at) => (Some(&rest[..at]), &rest[at..]),
            None => (Some(rest), ""),
        },
        None => (None, arg),
    };
    if !cidr.is_empty() {
        dual_cidr(cidr)?;
    }
    match domain {
        Some(d) => domain_spec(d).map(|d| Some(d.to_owned())),
        None => Ok(None),
    }
}

/// `/24`, `//64` or `/24//64`.
fn dual_cidr(cidr: &str) -> Result<(), String> {
    let (v4, v6) = match cidr.split_once("//") {
        Some((v4, v6)) => (v4, Some(v6)),
        None => (cidr, None),
    };
    if !v4.is_empty() {
        let len = v4.strip_prefix('/').ok_or("malformed CIDR length")?;
        cidr_length(len, 32)?;
    }
    if let Some(v6) = v6 {
        cidr_length(v6, 128)?;
    }
    Ok(())
}

fn cidr_length(len: &str, max: u8) -> Result<(), String> {
    let valid = !len.is_empty()
        && len.bytes().all(|b| b.is_ascii_digit())
        && !(len.len() > 1 && len.starts_with('0'))
        && len.parse::<u8>().is_ok_and(|n| n <= max);
    if valid {
        Ok(())
    } else {
        Err(format!("CIDR length /{len} is not 0–{max}"))
    }
}

fn ip4_network(net: &str) -> Result<(), String> {
    let (ip, len) = match net.split_once('/') {
        Some((ip, len)) => (ip, Some(len)),
        None => (net, None),
    };
    ip.parse::<Ipv4Addr>()
        .map_err(|_| format!("{ip} is not an IPv4 address"))?;
    len.map_or(Ok(()), |len| cidr_length(len, 32))
}

fn ip6_network(net: &str) -> Result<(), String> {
    let (ip, len) = match net.split_once('/') {
        Some((ip, len)) => (ip, Some(len)),
        None => (net, None),
    };
    ip.parse::<Ipv6Addr>()
        .map_err(|_| format!("{ip} is not an IPv6 address"))?;
    len.map_or(Ok(()), |len| cidr_length(len, 128))
}

/// A domain-spec (RFC 7208 §7.1): a macro string; without macros, a domain name whose last
/// label is not all digits.
fn domain_spec(spec: &str) -> Result<&str, String> {
    if spec.is_empty() {
        return Err("empty domain".into());
    }
    macro_string(spec)?;
    if has_macro(spec) {
        return Ok(spec);
    }
    let name = spec.strip_suffix('.').unwrap_or(spec);
    let labels: Vec<&str> = name.split('.').collect();
    let well_formed = labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        && !labels[labels.len() - 1].bytes().all(|b| b.is_ascii_digit());
    if well_formed {
        Ok(spec)
    } else {
        Err(format!("{spec} is not a domain name"))
    }
}

fn has_macro(s: &str) -> bool {
    s.contains('%')
}

/// RFC 7208 §7.1: `%{letter digits r delimiters}`, `%%`, `%_`, `%-`; visible characters.
fn macro_string(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'%' {
            if !(0x21..=0x7e).contains(&b[i]) {
                return Err("invisible character".into());
            }
            i += 1;
            continue;
        }
        match b.get(i + 1) {
            Some(b'%' | b'_' | b'-') => i += 2,
            Some(b'{') => {
                let close = s[i..].find('}').ok_or("unclosed macro")? + i;
                let body = &s[i + 2..close];
                let mut chars = body.chars();
                let letter = chars.next().ok_or("empty macro")?;
                if !"slodiphcrtvSLODIPHCRTV".contains(letter) {
                    return Err(format!("unknown macro letter {letter}"));
                }
                let rest: String = chars.collect();
                let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
                let after = rest[digits..]
                    .strip_prefix(['r', 'R'])
                    .unwrap_or(&rest[digits..]);
                if !after.chars().all(|c| ".-+,/_=".contains(c)) {
                    return Err(format!("malformed macro %{{{body}}}"));
                }
                i = close + 1;
            }
            _ => return Err("a lone % (write %% for a percent sign)".into()),
        }
    }
    Ok(())
}

/// Evaluates `domain`'s SPF over the `answers` known so far.
pub fn evaluate(domain: &str, answers: &impl Answers) -> Progress {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let mut walk = Walk {
        answers,
        need: BTreeSet::new(),
        lookups: 0,
        voids: 0,
        errors: Vec::new(),
        warnings: BTreeSet::new(),
        temp: Vec::new(),
    };
    let (tree, all) = walk.record(&domain, "root", &mut Vec::new());
    if !walk.need.is_empty() {
        return Progress::Need(walk.need.into_iter().collect());
    }
    let none = tree.record.is_none() && walk.errors.is_empty() && walk.temp.is_empty();
    let mut errors = walk.errors;
    if walk.lookups > LOOKUP_LIMIT {
        errors.push(format!(
            "{} DNS-querying terms, over the limit of {LOOKUP_LIMIT}",
            walk.lookups
        ));
    }
    if walk.voids > VOID_LIMIT {
        errors.push(format!(
            "{} void lookups (names with no records), over the limit of {VOID_LIMIT}",
            walk.voids
        ));
    }
    let result = if none {
        SpfResult::None
    } else if !errors.is_empty() {
        SpfResult::PermError
    } else if !walk.temp.is_empty() {
        errors = walk.temp;
        SpfResult::TempError
    } else {
        SpfResult::Ok
    };
    let mut warnings: Vec<String> = walk.warnings.into_iter().collect();
    if result == SpfResult::Ok {
        match all.as_deref() {
            Some("+all") => warnings.insert(
                0,
                "+all lets every server on the internet send as this domain".into(),
            ),
            Some("?all") => warnings.insert(0, "?all (neutral) protects nothing".into()),
            None => warnings.insert(
                0,
                "no all term: mail from other servers is not failed (neutral)".into(),
            ),
            _ => {}
        }
    }
    Progress::Done(SpfReport {
        result,
        lookups: walk.lookups,
        void_lookups: walk.voids,
        all,
        tree,
        errors,
        warnings,
    })
}

struct Walk<'a, A> {
    answers: &'a A,
    need: BTreeSet<(String, RecordKind)>,
    lookups: u32,
    voids: u32,
    errors: Vec<String>,
    warnings: BTreeSet<String>,
    temp: Vec<String>,
}

impl<A: Answers> Walk<'_, A> {
    /// The answer, or None when it is still to be asked (then recorded in `need`).
    fn ask(&mut self, name: &str, kind: RecordKind) -> Option<RecordLookup> {
        match self.answers.answer(name, kind) {
            Some(answer) => Some(answer.clone()),
            None => {
                self.need.insert((name.to_owned(), kind));
                None
            }
        }
    }

    /// Reads one query's answer for a term: counts a void lookup, notes a failure. True when
    /// the name has records.
    fn term_query(&mut self, term: &str, name: &str, kind: RecordKind) -> Option<bool> {
        let answer = self.ask(name, kind)?;
        Some(self.read(term, &answer))
    }

    fn read(&mut self, term: &str, answer: &RecordLookup) -> bool {
        match answer {
            RecordLookup::Failed(e) => {
                self.temp
                    .push(format!("{term}: the DNS query failed ({e})"));
                false
            }
            answer if answer.is_void() => {
                self.voids += 1;
                false
            }
            _ => true,
        }
    }

    /// The SPF record of `domain` as a tree node, and the `all` that ends its evaluation.
    /// `chain` holds the domains being evaluated above it (to find loops).
    fn record(
        &mut self,
        domain: &str,
        via: &'static str,
        chain: &mut Vec<String>,
    ) -> (SpfNode, Option<String>) {
        let mut node = SpfNode {
            domain: domain.to_owned(),
            via,
            record: None,
            lookups: 0,
            note: None,
            children: Vec::new(),
        };
        if chain.iter().any(|d| d == domain) {
            let path = format!("{} → {domain}", chain.join(" → "));
            self.errors.push(format!("{via} loop: {path}"));
            node.note = Some("loop".into());
            return (node, None);
        }
        if chain.len() >= MAX_DEPTH || self.lookups > MAX_COUNTED {
            node.note = Some("not followed: the limits are already exceeded".into());
            return (node, None);
        }
        let Some(answer) = self.ask(domain, RecordKind::Txt) else {
            return (node, None);
        };
        let term = if via == "root" {
            domain.to_owned()
        } else {
            format!("{via}:{domain}")
        };
        if via != "root" {
            // The include's or redirect's own query is one of the void lookups it may cause.
            self.read(&term, &answer);
        } else if let RecordLookup::Failed(e) = &answer {
            self.temp.push(format!("the TXT query failed ({e})"));
        }
        let records: Vec<&String> = answer.records().iter().filter(|r| is_spf(r)).collect();
        let record = match records.as_slice() {
            [] => {
                if via != "root" && !matches!(answer, RecordLookup::Failed(_)) {
                    self.errors.push(format!("{term} has no SPF record"));
                }
                node.note = Some("no SPF record".into());
                return (node, None);
            }
            [one] => one.to_string(),
            more => {
                self.errors.push(format!(
                    "{} has {} SPF records; it must have exactly one",
                    domain,
                    more.len()
                ));
                node.note = Some(format!("{} SPF records", more.len()));
                return (node, None);
            }
        };
        node.record = Some(record.clone());
        let terms = match parse(&record) {
            Ok(terms) => terms,
            Err(e) => {
                self.errors
                    .push(format!("syntax error in {domain}'s record: {e}"));
                node.note = Some("syntax error".into());
                return (node, None);
            }
        };
        chain.push(domain.to_owned());
        let all = self.terms(domain, &terms, &mut node, chain);
        chain.pop();
        (node, all)
    }

    fn terms(
        &mut self,
        domain: &str,
        terms: &[Term],
        node: &mut SpfNode,
        chain: &mut Vec<String>,
    ) -> Option<String> {
        let mut all = None;
        let mut redirect = None;
        for (i, term) in terms.iter().enumerate() {
            let counts = matches!(
                term,
                Term::Include(..)
                    | Term::A(..)
                    | Term::Mx(..)
                    | Term::Ptr(..)
                    | Term::Exists(..)
                    | Term::Redirect(_)
            );
            if counts {
                self.lookups += 1;
                node.lookups += 1;
            }
            match term {
                Term::All(q) => {
                    all = Some(format!("{q}all"));
                    if terms[i + 1..]
                        .iter()
                        .any(|t| !matches!(t, Term::Redirect(_) | Term::Exp | Term::Other))
                    {
                        self.warnings
                            .insert(format!("{domain}: terms after all are never used"));
                    }
                }
                Term::Include(_, target) if has_macro(target) => {
                    node.children.push(unfollowed(target, "include"));
                }
                Term::Include(_, target) => {
                    let target = target.trim_end_matches('.').to_ascii_lowercase();
                    let (child, _) = self.record(&target, "include", chain);
                    node.children.push(child);
                }
                Term::A(_, target) => {
                    let name = target.as_deref().unwrap_or(domain);
                    if !has_macro(name) {
                        self.address_query(&format!("a:{name}"), name);
                    }
                }
                Term::Mx(_, target) => {
                    let name = target.as_deref().unwrap_or(domain);
                    if !has_macro(name) {
                        let name = name.trim_end_matches('.').to_ascii_lowercase();
                        let term = format!("mx:{name}");
                        if self.term_query(&term, &name, RecordKind::Mx) == Some(true) {
                            let hosts = self
                                .answers
                                .answer(&name, RecordKind::Mx)
                                .map_or(0, |a| a.records().len());
                            if hosts > MX_LIMIT {
                                self.errors.push(format!(
                                    "{term} names {hosts} mail servers, over the limit of {MX_LIMIT}"
                                ));
                            }
                        }
                    }
                }
                Term::Ptr(..) => {
                    self.warnings.insert(format!(
                        "{domain}: ptr is deprecated (RFC 7208 §5.5): slow, and some receivers skip it"
                    ));
                }
                Term::Exists(_, target) => {
                    if !has_macro(target) {
                        let name = target.trim_end_matches('.').to_ascii_lowercase();
                        self.term_query(&format!("exists:{name}"), &name, RecordKind::A);
                    }
                }
                Term::Redirect(target) => redirect = Some(target.clone()),
                Term::Ip4(_) | Term::Ip6(_) | Term::Exp | Term::Other => {}
            }
        }
        match redirect {
            // RFC 7208 §6.1: with an all term, redirect is never used (but its lookup was
            // counted above, as the limit counts terms).
            Some(_) if all.is_some() => {
                self.warnings
                    .insert(format!("{domain}: redirect= is ignored after an all term"));
                all
            }
            Some(target) if has_macro(&target) => {
                node.children.push(unfollowed(&target, "redirect"));
                None
            }
            Some(target) => {
                let target = target.trim_end_matches('.').to_ascii_lowercase();
                let (child, all) = self.record(&target, "redirect", chain);
                node.children.push(child);
                all
            }
            None => all,
        }
    }

    /// `a`: A and AAAA; void only when neither has a record.
    fn address_query(&mut self, term: &str, name: &str) {
        let name = name.trim_end_matches('.').to_ascii_lowercase();
        let (a, aaaa) = (
            self.ask(&name, RecordKind::A),
            self.ask(&name, RecordKind::Aaaa),
        );
        let (Some(a), Some(aaaa)) = (a, aaaa) else {
            return;
        };
        match (&a, &aaaa) {
            (RecordLookup::Failed(e), _) | (_, RecordLookup::Failed(e))
                if a.records().is_empty() && aaaa.records().is_empty() =>
            {
                self.temp
                    .push(format!("{term}: the DNS query failed ({e})"));
            }
            _ if a.is_void() && aaaa.is_void() => self.voids += 1,
            _ => {}
        }
    }
}

fn unfollowed(target: &str, via: &'static str) -> SpfNode {
    SpfNode {
        domain: target.to_owned(),
        via,
        record: None,
        lookups: 0,
        note: Some("a macro: depends on the message, not followed".into()),
        children: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::dns::Failure;

    /// A zone: TXT records by name, and names with A, MX records; everything else NXDOMAIN.
    #[derive(Default)]
    struct Zone {
        answers: HashMap<(String, RecordKind), RecordLookup>,
    }

    impl Zone {
        fn txt(mut self, name: &str, records: &[&str]) -> Self {
            let found = records.iter().map(|r| r.to_string()).collect();
            self.answers
                .insert((name.into(), RecordKind::Txt), RecordLookup::Found(found));
            self
        }

        fn host(mut self, name: &str) -> Self {
            self.answers.insert(
                (name.into(), RecordKind::A),
                RecordLookup::Found(vec!["192.0.2.1".into()]),
            );
            self.answers
                .insert((name.into(), RecordKind::Aaaa), RecordLookup::NoData);
            self
        }

        fn mx(mut self, name: &str, hosts: usize) -> Self {
            let found = (0..hosts).map(|i| format!("10 mx{i}.{name}")).collect();
            self.answers
                .insert((name.into(), RecordKind::Mx), RecordLookup::Found(found));
            self
        }

        fn set(mut self, name: &str, kind: RecordKind, answer: RecordLookup) -> Self {
            self.answers.insert((name.into(), kind), answer);
            self
        }

        /// Evaluates as the I/O driver does: answer what is needed (NXDOMAIN for names the
        /// zone does not have), then again, until done.
        fn check(mut self, domain: &str) -> (SpfReport, usize) {
            for round in 1..50 {
                match evaluate(domain, &self.answers) {
                    Progress::Done(report) => return (report, round),
                    Progress::Need(queries) => {
                        assert!(!queries.is_empty());
                        for q in queries {
                            self.answers.entry(q).or_insert(RecordLookup::NxDomain);
                        }
                    }
                }
            }
            panic!("the evaluation never finished");
        }
    }

    fn report(zone: Zone, domain: &str) -> SpfReport {
        zone.check(domain).0
    }

    #[test]
    fn a_good_record_counts_its_lookups_through_includes() {
        let zone = Zone::default()
            .txt(
                "example.org",
                &[
                    "v=spf1 ip4:192.0.2.0/24 include:_spf.example.org mx -all",
                    "some-verification=abc",
                ],
            )
            .txt("_spf.example.org", &["v=spf1 a:relay.example.org ~all"])
            .host("relay.example.org")
            .mx("example.org", 2);
        let (report, rounds) = zone.check("example.org");
        assert_eq!(report.result, SpfResult::Ok);
        assert_eq!(report.lookups, 3);
        assert_eq!(report.void_lookups, 0);
        assert_eq!(report.all.as_deref(), Some("-all"));
        assert!(report.warnings.is_empty(), "{:?}", report.warnings);
        assert!(report.errors.is_empty());
        // Every answer was there: one pass.
        assert_eq!(rounds, 1);
        assert_eq!(report.tree.lookups, 2);
        assert_eq!(report.tree.children[0].domain, "_spf.example.org");
        assert_eq!(report.tree.children[0].lookups, 1);
        assert_eq!(
            report.tree.lines(),
            [
                "example.org (2 lookups): v=spf1 ip4:192.0.2.0/24 include:_spf.example.org mx -all",
                "  include:_spf.example.org (1 lookups): v=spf1 a:relay.example.org ~all",
            ]
        );
    }

    #[test]
    fn the_queries_are_asked_for_level_by_level() {
        let mut answers: HashMap<(String, RecordKind), RecordLookup> = HashMap::new();
        let need = |answers: &HashMap<_, _>| match evaluate("Example.org.", answers) {
            Progress::Need(queries) => queries,
            Progress::Done(report) => panic!("done early: {report:?}"),
        };
        assert_eq!(
            need(&answers),
            [("example.org".to_owned(), RecordKind::Txt)]
        );
        answers.insert(
            ("example.org".into(), RecordKind::Txt),
            RecordLookup::Found(vec!["v=spf1 a include:_spf.example.org -all".into()]),
        );
        assert_eq!(
            need(&answers),
            [
                ("_spf.example.org".to_owned(), RecordKind::Txt),
                ("example.org".to_owned(), RecordKind::A),
                ("example.org".to_owned(), RecordKind::Aaaa),
            ]
        );
    }

    #[test]
    fn eleven_lookups_through_nested_includes_are_a_permerror() {
        let mut zone = Zone::default()
            .txt(
                "d.test",
                &["v=spf1 include:i1.d.test include:i2.d.test -all"],
            )
            .txt(
                "i1.d.test",
                &["v=spf1 a:h1.d.test a:h2.d.test a:h3.d.test mx include:i3.d.test ~all"],
            )
            .txt("i2.d.test", &["v=spf1 a:h4.d.test a:h5.d.test -all"])
            .txt("i3.d.test", &["v=spf1 a:h6.d.test a:h7.d.test -all"])
            .mx("i1.d.test", 1);
        for i in 1..=7 {
            zone = zone.host(&format!("h{i}.d.test"));
        }
        let report = report(zone, "d.test");
        assert_eq!(report.result, SpfResult::PermError);
        assert_eq!(report.lookups, 11);
        assert_eq!(report.void_lookups, 0);
        assert_eq!(
            report.errors,
            ["11 DNS-querying terms, over the limit of 10"]
        );
    }

    #[test]
    fn ten_lookups_are_within_the_limit() {
        let mut record = "v=spf1".to_owned();
        let mut zone = Zone::default();
        for i in 0..10 {
            record.push_str(&format!(" a:h{i}.d.test"));
            zone = zone.host(&format!("h{i}.d.test"));
        }
        record.push_str(" -all");
        let report = report(zone.txt("d.test", &[&record]), "d.test");
        assert_eq!(report.result, SpfResult::Ok);
        assert_eq!(report.lookups, 10);
    }

    #[test]
    fn three_void_lookups_are_a_permerror_and_two_are_not() {
        let three = Zone::default().txt(
            "d.test",
            &["v=spf1 a:gone1.d.test a:gone2.d.test exists:gone3.d.test ~all"],
        );
        let report3 = report(three, "d.test");
        assert_eq!(report3.result, SpfResult::PermError);
        assert_eq!(report3.void_lookups, 3);
        assert!(
            report3.errors[0].contains("3 void lookups"),
            "{:?}",
            report3.errors
        );

        let two = Zone::default()
            .txt("d.test", &["v=spf1 a:gone1.d.test mx:nomx.d.test ~all"])
            .set("nomx.d.test", RecordKind::Mx, RecordLookup::NoData);
        let report2 = report(two, "d.test");
        assert_eq!(report2.result, SpfResult::Ok);
        assert_eq!(report2.void_lookups, 2);
    }

    #[test]
    fn an_include_loop_is_a_permerror() {
        let zone = Zone::default()
            .txt("d.test", &["v=spf1 include:back.d.test -all"])
            .txt("back.d.test", &["v=spf1 include:d.test -all"]);
        let report = report(zone, "d.test");
        assert_eq!(report.result, SpfResult::PermError);
        assert_eq!(
            report.errors,
            ["include loop: d.test → back.d.test → d.test"]
        );
    }

    #[test]
    fn the_same_include_twice_is_no_loop() {
        let zone = Zone::default()
            .txt("d.test", &["v=spf1 include:x.d.test include:y.d.test -all"])
            .txt("x.d.test", &["v=spf1 include:z.d.test -all"])
            .txt("y.d.test", &["v=spf1 include:z.d.test -all"])
            .txt("z.d.test", &["v=spf1 ip4:192.0.2.1 -all"]);
        let report = report(zone, "d.test");
        assert_eq!(report.result, SpfResult::Ok);
        assert_eq!(report.lookups, 4);
    }

    #[test]
    fn two_spf_records_are_a_permerror() {
        let zone = Zone::default().txt(
            "d.test",
            &["v=spf1 ip4:192.0.2.1 -all", "v=spf1 ip4:192.0.2.2 -all"],
        );
        let report = report(zone, "d.test");
        assert_eq!(report.result, SpfResult::PermError);
        assert_eq!(
            report.errors,
            ["d.test has 2 SPF records; it must have exactly one"]
        );
    }

    #[test]
    fn no_record_is_none() {
        let zone = Zone::default().txt("d.test", &["not spf", "v=spf10 -all"]);
        assert_eq!(report(zone, "d.test").result, SpfResult::None);
        assert_eq!(report(Zone::default(), "gone.test").result, SpfResult::None);
    }

    #[test]
    fn an_include_without_a_record_is_a_permerror_and_a_void_lookup() {
        let zone = Zone::default().txt("d.test", &["v=spf1 include:missing.d.test -all"]);
        let report = report(zone, "d.test");
        assert_eq!(report.result, SpfResult::PermError);
        assert_eq!(report.void_lookups, 1);
        assert_eq!(report.errors, ["include:missing.d.test has no SPF record"]);
    }

    #[test]
    fn permissive_or_missing_all_is_a_warning() {
        for (record, all, warning) in [
            (
                "v=spf1 ip4:192.0.2.1 +all",
                Some("+all"),
                "+all lets every server",
            ),
            (
                "v=spf1 ip4:192.0.2.1 all",
                Some("+all"),
                "+all lets every server",
            ),
            ("v=spf1 ip4:192.0.2.1 ?all", Some("?all"), "?all (neutral)"),
            ("v=spf1 ip4:192.0.2.1", None, "no all term"),
        ] {
            let report = report(Zone::default().txt("d.test", &[record]), "d.test");
            assert_eq!(report.result, SpfResult::Ok, "{record}");
            assert_eq!(report.all.as_deref(), all, "{record}");
            assert!(
                report.warnings[0].starts_with(warning),
                "{record}: {:?}",
                report.warnings
            );
        }
        let soft = report(
            Zone::default()
                .txt("d.test", &["v=spf1 mx ~all"])
                .mx("d.test", 1),
            "d.test",
        );
        assert!(soft.warnings.is_empty());
    }

    #[test]
    fn ptr_is_counted_and_warned_about() {
        let report = report(
            Zone::default().txt("d.test", &["v=spf1 ptr -all"]),
            "d.test",
        );
        assert_eq!(report.result, SpfResult::Ok);
        assert_eq!(report.lookups, 1);
        assert!(report.warnings[0].contains("ptr is deprecated"));
    }

    #[test]
    fn redirect_takes_the_all_of_its_target() {
        let zone = Zone::default()
            .txt("d.test", &["v=spf1 redirect=_spf.other.test"])
            .txt("_spf.other.test", &["v=spf1 ip4:192.0.2.0/24 -all"]);
        let report = report(zone, "d.test");
        assert_eq!(report.result, SpfResult::Ok);
        assert_eq!(report.all.as_deref(), Some("-all"));
        assert_eq!(report.lookups, 1);
        assert_eq!(report.tree.children[0].via, "redirect");
    }

    #[test]
    fn redirect_after_all_is_ignored_with_a_warning() {
        let zone = Zone::default().txt("d.test", &["v=spf1 -all redirect=x.test"]);
        let report = report(zone, "d.test");
        assert_eq!(report.all.as_deref(), Some("-all"));
        assert!(
            report
                .warnings
                .iter()
                .any(|w| w.contains("redirect= is ignored"))
        );
        assert!(report.tree.children.is_empty());
    }

    #[test]
    fn too_many_mx_hosts_are_a_permerror() {
        let zone = Zone::default()
            .txt("d.test", &["v=spf1 mx -all"])
            .mx("d.test", 11);
        let report = report(zone, "d.test");
        assert_eq!(report.result, SpfResult::PermError);
        assert!(report.errors[0].contains("11 mail servers"));
    }

    #[test]
    fn macros_are_counted_but_not_followed() {
        let zone = Zone::default().txt(
            "d.test",
            &["v=spf1 include:%{i}._spf.d.test exists:%{l}.x.d.test -all"],
        );
        let (report, rounds) = zone.check("d.test");
        assert_eq!(report.result, SpfResult::Ok);
        assert_eq!(report.lookups, 2);
        assert_eq!(rounds, 1);
        assert!(
            report.tree.children[0]
                .note
                .as_deref()
                .unwrap()
                .contains("macro")
        );
    }

    #[test]
    fn a_dns_failure_is_a_temperror() {
        let zone = Zone::default()
            .txt("d.test", &["v=spf1 include:broken.d.test -all"])
            .set(
                "broken.d.test",
                RecordKind::Txt,
                RecordLookup::Failed(Failure::ServFail),
            );
        let report = report(zone, "d.test");
        assert_eq!(report.result, SpfResult::TempError);
        assert_eq!(
            report.errors,
            ["include:broken.d.test: the DNS query failed (SERVFAIL)"]
        );
        let root = Zone::default().set(
            "d.test",
            RecordKind::Txt,
            RecordLookup::Failed(Failure::Timeout),
        );
        assert_eq!(report_of(root), SpfResult::TempError);
    }

    fn report_of(zone: Zone) -> SpfResult {
        report(zone, "d.test").result
    }

    #[test]
    fn syntax_errors_are_a_permerror() {
        for record in [
            "v=spf1 ip4:300.1.2.3 -all",
            "v=spf1 ip4:192.0.2.0/33 -all",
            "v=spf1 ip6:2001:db8::/129",
            "v=spf1 ip6:not-an-address",
            "v=spf1 a/33",
            "v=spf1 mx//129",
            "v=spf1 include -all",
            "v=spf1 include:x.test/24",
            "v=spf1 foo:bar.test",
            "v=spf1 redirect=a.test redirect=b.test",
            "v=spf1 exp=a.test exp=b.test",
            "v=spf1 a:bad..name",
            "v=spf1 a:host.123",
            "v=spf1 include:%{z}.test",
            "v=spf1 include:50%.test",
            "v=spf1 1bad=x",
            "v=spf1 ptr/24",
            "v=spf1 -all:x",
            "v=spf1 ip4",
        ] {
            let report = report(Zone::default().txt("d.test", &[record]), "d.test");
            assert_eq!(report.result, SpfResult::PermError, "{record}");
            assert!(
                report.errors[0].starts_with("syntax error"),
                "{record}: {:?}",
                report.errors
            );
        }
    }

    #[test]
    fn valid_terms_parse() {
        let terms = parse(
            "v=spf1 +ip4:192.0.2.0/24 -ip6:2001:db8::/32 ~a ?a:x.test/24//64 mx/24 mx:x.test//64 \
             ptr:x.test exists:%{ir}.%{v}._spf.%{d2} include:_spf.x.test. unknown-mod=%{h} exp=explain.x.test -all",
        )
        .unwrap();
        assert_eq!(terms.len(), 12);
        assert_eq!(terms[0], Term::Ip4('+'));
        assert_eq!(terms[2], Term::A('~', None));
        assert_eq!(terms[3], Term::A('?', Some("x.test".into())));
        assert_eq!(terms[11], Term::All('-'));
        assert!(is_spf("V=SPF1 -all"));
        assert!(is_spf("v=spf1"));
        assert!(!is_spf("v=spf10 -all"));
        assert!(!is_spf("spf1"));
    }

    #[test]
    fn a_hostile_include_chain_ends() {
        // Every include names two more: the walk stops at the limits, not at the end of DNS.
        let mut zone = Zone::default();
        for i in 0..200 {
            zone = zone.txt(
                &format!("n{i}.test"),
                &[&format!(
                    "v=spf1 include:n{}.test include:n{}.test -all",
                    2 * i + 1,
                    2 * i + 2
                )],
            );
        }
        let report = report(zone, "n0.test");
        assert_eq!(report.result, SpfResult::PermError);
        assert!(report.lookups > LOOKUP_LIMIT);
    }
}
