//! Our syntax rules against two public test corpora (see `tests/data/SOURCES.md`).
//!
//! Every row that maps onto our policy is asserted. Where we differ on purpose, the row must be
//! listed in `tests/data/POLICY.md`, and the test reads that file: an unlisted mismatch fails, and
//! so does a listed row that no longer differs, so the list stays true.
//!
//! How corpus labels map to ours:
//! - isemail: `ISEMAIL_VALID_CATEGORY` and `ISEMAIL_DNSWARN` (the syntax is fine, only the DNS of
//!   2010-2016 had no record) must be accepted. Everything else must be rejected: `ISEMAIL_ERR`,
//!   and the `RFC5321` (quoted strings, IP literals, dotless and numeric TLDs), `CFWS` (comments,
//!   folding whitespace), `DEPREC` (obsolete forms) and `RFC5322` (over-long parts, domain
//!   literals) categories, which are legal somewhere but not deliverable-looking. isemail knows
//!   nothing of reserved names, so its rows run with `allow_reserved_domains`.
//! - email-validator: `valid` must be accepted, `invalid` and `undeliverable` rejected. Rows for
//!   bare domains (DNS deliverability) are skipped, and so are rows that hold only with SMTPUTF8
//!   off (we accept and flag UTF-8 local parts). Where upstream asserts both outcomes for one
//!   address under different options (a split row), only the half whose options match ours is
//!   asserted: quoted local parts, domain literals and empty local parts off, the 64-octet local
//!   limit on (`strict=True`). Rows asserted without DNS (`check_deliverability=False`,
//!   `test_environment=True`) run with `allow_reserved_domains`, because our reserved-name rule
//!   stands in for their DNS check (example.com has a null MX).

mod common;

use common::unescape;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::fs;

use prebounce::syntax::{self, Flags, SyntaxOptions};

const ISEMAIL: &str = "isemail-tests.tsv";
const EMAIL_VALIDATOR: &str = "email-validator-cases.tsv";

// Row counts, so that a row can't silently stop being asserted.
const ISEMAIL_ROWS: usize = 443;
const ISEMAIL_ASSERTED: usize = 443;
const EMAIL_VALIDATOR_ROWS: usize = 355;
const EMAIL_VALIDATOR_ASSERTED: usize = 303;

fn data_path(name: &str) -> String {
    format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// One data row of a corpus file: its header names mapped to the raw (still escaped) fields.
struct Row {
    /// `file:line`, the line number in the file (the header is line 1).
    key: String,
    fields: HashMap<String, String>,
}

impl Row {
    fn get(&self, column: &str) -> &str {
        self.fields
            .get(column)
            .unwrap_or_else(|| panic!("{}: no column {column}", self.key))
    }
}

fn read_tsv(name: &str) -> Vec<Row> {
    let text = fs::read_to_string(data_path(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("header").split('\t').collect();
    lines
        .enumerate()
        .map(|(i, line)| {
            let key = format!("{name}:{}", i + 2);
            let cells: Vec<&str> = line.split('\t').collect();
            assert_eq!(cells.len(), header.len(), "{key}: wrong number of fields");
            let fields = header
                .iter()
                .zip(cells)
                .map(|(h, c)| (h.to_string(), c.to_string()))
                .collect();
            Row { key, fields }
        })
        .collect()
}

/// A corpus row mapped onto our policy.
struct Case {
    key: String,
    /// The address as stored in the file (escaped), for messages and POLICY.md.
    raw: String,
    address: String,
    /// The corpus label, short: what POLICY.md shows.
    label: String,
    accept: bool,
    opts: SyntaxOptions,
}

const RESERVED_OK: SyntaxOptions = SyntaxOptions {
    allow_reserved_domains: true,
};

fn isemail_cases() -> Vec<Case> {
    let rows = read_tsv(ISEMAIL);
    assert_eq!(rows.len(), ISEMAIL_ROWS, "{ISEMAIL}: row count changed");
    rows.iter()
        .map(|row| {
            let category = row.get("category");
            let accept = match category {
                "ISEMAIL_VALID_CATEGORY" | "ISEMAIL_DNSWARN" => true,
                "ISEMAIL_RFC5321" | "ISEMAIL_CFWS" | "ISEMAIL_DEPREC" | "ISEMAIL_RFC5322"
                | "ISEMAIL_ERR" => false,
                other => panic!("{}: unknown category {other}", row.key),
            };
            let set = row.get("test_set").split(' ').next().unwrap_or_default();
            let label = format!(
                "{} ({}, {set}#{})",
                row.get("diagnosis").trim_start_matches("ISEMAIL_"),
                category.trim_start_matches("ISEMAIL_"),
                row.get("test_id"),
            );
            Case {
                key: row.key.clone(),
                raw: row.get("address").to_owned(),
                address: unescape(row.get("address")),
                label,
                accept,
                opts: RESERVED_OK,
            }
        })
        .collect()
}

/// Options under which an email-validator `valid` is more permissive than we are.
const PERMISSIVE_FLAGS: &[&str] = &[
    "allow_quoted_local=True",
    "allow_domain_literal=True",
    "allow_empty_local=True",
    "strict=False",
];

/// The asserted email-validator cases, and the skipped rows with why.
fn email_validator_cases() -> (Vec<Case>, Vec<(String, &'static str)>) {
    let rows = read_tsv(EMAIL_VALIDATOR);
    assert_eq!(
        rows.len(),
        EMAIL_VALIDATOR_ROWS,
        "{EMAIL_VALIDATOR}: row count changed"
    );
    let mut cases = Vec::new();
    let mut skipped = Vec::new();
    for row in &rows {
        let options = row.get("options");
        let expected = row.get("expected");
        if row.get("input_kind") != "email" {
            skipped.push((
                row.key.clone(),
                "a bare domain: DNS deliverability, not syntax",
            ));
            continue;
        }
        if options.contains("allow_smtputf8=False") {
            skipped.push((
                row.key.clone(),
                "holds only with SMTPUTF8 off; we accept and flag",
            ));
            continue;
        }
        let accept = match expected {
            "valid" => true,
            "invalid" | "undeliverable" => false,
            other => panic!("{}: unexpected label {other}", row.key),
        };
        let opts = if options.contains("check_deliverability=False")
            || options.contains("test_environment=True")
        {
            RESERVED_OK
        } else {
            SyntaxOptions::default()
        };
        cases.push(Case {
            key: row.key.clone(),
            raw: row.get("address").to_owned(),
            address: unescape(row.get("address")),
            label: format!("{expected} [{options}]"),
            accept,
            opts,
        });
    }
    // Split rows: a `valid` that needs a flag we don't have, for an address that another row
    // asserts `invalid`, is the other half of the same upstream test.
    let rejected: HashSet<String> = cases
        .iter()
        .filter(|c| !c.accept)
        .map(|c| c.raw.clone())
        .collect();
    cases.retain(|c| {
        let twin = c.accept
            && rejected.contains(&c.raw)
            && PERMISSIVE_FLAGS.iter().any(|f| c.label.contains(f));
        if twin {
            skipped.push((
                c.key.clone(),
                "permissive half of a split row; the half matching our options is asserted",
            ));
        }
        !twin
    });
    (cases, skipped)
}

/// One listed difference from POLICY.md.
struct Listed {
    group: String,
    raw: String,
    label: String,
    accepted: bool,
}

/// Read the difference tables of POLICY.md: every table row whose first cell is `file:line`.
/// Columns: row | address | corpus label | ours | reason. Also checks the summary table's counts
/// (group | isemail rows | email-validator rows) against the tables, into `problems`.
fn read_policy(problems: &mut Vec<String>) -> BTreeMap<String, Listed> {
    let text = fs::read_to_string(data_path("POLICY.md")).expect("POLICY.md");
    let mut group = String::new();
    let mut listed = BTreeMap::new();
    let mut summary: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for line in text.lines() {
        if let Some(h) = line.strip_prefix("## ") {
            group = h.trim().to_owned();
            continue;
        }
        let Some(inner) = line
            .trim()
            .strip_prefix('|')
            .and_then(|l| l.strip_suffix('|'))
        else {
            continue;
        };
        let cells = split_md_row(inner);
        let key = cells[0].trim();
        if group == "Summary" && cells.len() == 3 {
            if let (Ok(i), Ok(e)) = (cells[1].trim().parse(), cells[2].trim().parse()) {
                summary.insert(key.trim_matches('*').to_owned(), (i, e));
            }
            continue;
        }
        if !(key.starts_with(ISEMAIL) || key.starts_with(EMAIL_VALIDATOR)) {
            continue;
        }
        assert_eq!(
            cells.len(),
            5,
            "POLICY.md: {key}: expected 5 cells, got {cells:?}"
        );
        let accepted = match cells[3].trim() {
            "accepted" => true,
            "rejected" => false,
            other => panic!("POLICY.md: {key}: 'ours' must be accepted or rejected, not {other:?}"),
        };
        let entry = Listed {
            group: group.clone(),
            raw: md_code_to_raw(cells[1].trim()),
            label: cells[2].trim().replace("\\|", "|"),
            accepted,
        };
        if listed.insert(key.to_owned(), entry).is_some() {
            panic!("POLICY.md: {key} is listed twice");
        }
    }
    let mut counted: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for (key, entry) in &listed {
        for group in [entry.group.as_str(), "total"] {
            let n = counted.entry(group.to_owned()).or_default();
            if key.starts_with(ISEMAIL) {
                n.0 += 1;
            } else {
                n.1 += 1;
            }
        }
    }
    if summary != counted {
        problems.push(format!(
            "POLICY.md: summary counts {summary:?} don't match the tables {counted:?}"
        ));
    }
    listed
}

/// Split a Markdown table row on `|`, except where it is escaped as `\|`.
fn split_md_row(inner: &str) -> Vec<String> {
    let mut cells = vec![String::new()];
    let mut prev = ' ';
    for c in inner.chars() {
        if c == '|' && prev != '\\' {
            cells.push(String::new());
        } else {
            cells.last_mut().expect("a cell").push(c);
        }
        prev = c;
    }
    cells
}

/// The address cell is a code span of the corpus's escaped form, with `|` written `\|`.
fn md_code_to_raw(cell: &str) -> String {
    let inner = cell
        .strip_prefix("`` ")
        .and_then(|c| c.strip_suffix(" ``"))
        .or_else(|| cell.strip_prefix('`').and_then(|c| c.strip_suffix('`')))
        .unwrap_or_else(|| panic!("POLICY.md: address cell {cell:?} is not a code span"));
    inner.replace("\\|", "|")
}

/// The inverse of `md_code_to_raw`, for printing ready-to-paste rows.
fn raw_to_md_code(raw: &str) -> String {
    let escaped = raw.replace('|', "\\|");
    if raw.contains('`') {
        format!("`` {escaped} ``")
    } else {
        format!("`{escaped}`")
    }
}

struct Report {
    problems: Vec<String>,
    agree: BTreeMap<&'static str, usize>,
    differ: BTreeMap<String, usize>,
}

fn run(
    corpus: &'static str,
    cases: &[Case],
    listed: &BTreeMap<String, Listed>,
    report: &mut Report,
) {
    // `CORPORA_VERBOSE=1 cargo test --test corpora -- --nocapture` prints every row's verdict.
    let verbose = std::env::var_os("CORPORA_VERBOSE").is_some();
    for case in cases {
        let result = syntax::check(&case.address, case.opts);
        let accepted = result.is_ok();
        let ours = match &result {
            Ok(a) => format!("accepted as {}", a.normalized()),
            Err(e) => format!("rejected: {e}"),
        };
        if verbose {
            println!("{}\t`{}`\t{}\t{ours}", case.key, case.raw, case.label);
        }
        if let Ok(a) = &result {
            // A UTF-8 local part is valid only with SMTPUTF8, so it must carry the flag.
            if !a.local.is_ascii() && !a.flags.contains(Flags::SMTPUTF8) {
                report.problems.push(format!(
                    "{}\t`{}`\tnot flagged smtputf8",
                    case.key, case.raw
                ));
            }
        }
        let entry = listed.get(&case.key);
        match (accepted == case.accept, entry) {
            (true, None) => *report.agree.entry(corpus).or_default() += 1,
            (true, Some(_)) => report.problems.push(format!(
                "{}\t`{}`\t{}\tlisted in POLICY.md but no longer differs ({ours})",
                case.key, case.raw, case.label
            )),
            (false, None) => report.problems.push(format!(
                "{}\t`{}`\t{}\tunlisted mismatch: {ours}\n    | {} | {} | {} | {} | TODO |",
                case.key,
                case.raw,
                case.label,
                case.key,
                raw_to_md_code(&case.raw),
                case.label.replace('|', "\\|"),
                if accepted { "accepted" } else { "rejected" },
            )),
            (false, Some(l)) => {
                let mut wrong = Vec::new();
                if l.accepted != accepted {
                    wrong.push(format!(
                        "POLICY.md says ours is {}",
                        if l.accepted { "accepted" } else { "rejected" }
                    ));
                }
                if l.raw != case.raw {
                    wrong.push(format!("POLICY.md address is `{}`", l.raw));
                }
                if l.label != case.label {
                    wrong.push(format!(
                        "POLICY.md label is {:?}, corpus says {:?}",
                        l.label, case.label
                    ));
                }
                if wrong.is_empty() {
                    *report.differ.entry(l.group.clone()).or_default() += 1;
                } else {
                    report.problems.push(format!(
                        "{}\t`{}`\t{}\t{ours}; {}",
                        case.key,
                        case.raw,
                        case.label,
                        wrong.join("; ")
                    ));
                }
            }
        }
    }
}

#[test]
fn unescape_decodes_every_form() {
    assert_eq!(unescape(r"a\\b\tc\nd\re"), "a\\b\tc\nd\re");
    assert_eq!(unescape(r"\x00\x7f\x9c"), "\u{0}\u{7f}\u{9c}");
    assert_eq!(unescape(r"\u200b\U0010fdef©"), "\u{200b}\u{10fdef}©");
    assert_eq!(unescape(r"\ud800@test"), "\u{fffd}@test");
    // SOURCES.md's example shows `"first\\\"last"`, but the file has `"first\\"last"` (isemail B#4).
    assert_eq!(
        unescape(r#""first\\"last"@iana.org"#),
        r#""first\"last"@iana.org"#
    );
    assert_eq!(md_code_to_raw(&raw_to_md_code("a|b`c")), "a|b`c");
}

#[test]
fn corpora_agree_with_our_rules_or_policy_md() {
    let isemail = isemail_cases();
    let (email_validator, skipped) = email_validator_cases();
    let mut problems = Vec::new();
    let listed = read_policy(&mut problems);
    let mut report = Report {
        problems,
        agree: BTreeMap::new(),
        differ: BTreeMap::new(),
    };
    run(ISEMAIL, &isemail, &listed, &mut report);
    run(EMAIL_VALIDATOR, &email_validator, &listed, &mut report);

    let asserted: HashSet<&str> = isemail
        .iter()
        .chain(&email_validator)
        .map(|c| c.key.as_str())
        .collect();
    for key in listed.keys() {
        if !asserted.contains(key.as_str()) {
            report.problems.push(format!(
                "{key}\tlisted in POLICY.md but not an asserted row"
            ));
        }
    }

    let mut summary = String::new();
    let _ = writeln!(
        summary,
        "{ISEMAIL}: {} asserted, {} agree; {EMAIL_VALIDATOR}: {} asserted, {} agree, {} skipped",
        isemail.len(),
        report.agree.get(ISEMAIL).unwrap_or(&0),
        email_validator.len(),
        report.agree.get(EMAIL_VALIDATOR).unwrap_or(&0),
        skipped.len(),
    );
    let mut skip_reasons: BTreeMap<&str, usize> = BTreeMap::new();
    for (key, why) in &skipped {
        if std::env::var_os("CORPORA_VERBOSE").is_some() {
            println!("{key}\tskipped: {why}");
        }
        *skip_reasons.entry(why).or_default() += 1;
    }
    for (why, n) in skip_reasons {
        let _ = writeln!(summary, "  skipped {n:>3}: {why}");
    }
    for (group, n) in &report.differ {
        let _ = writeln!(summary, "  policy difference {n:>3}: {group}");
    }
    println!("{summary}");

    assert!(
        report.problems.is_empty(),
        "\n{} problem(s). A genuine bug is fixed in src/syntax; a deliberate difference is \
         added to tests/data/POLICY.md (a ready row is printed under each unlisted mismatch).\n\n\
         row\taddress (escaped as in the file)\tcorpus label\twhat is wrong\n{}\n\n{summary}",
        report.problems.len(),
        report.problems.join("\n"),
    );
    assert_eq!(
        isemail.len(),
        ISEMAIL_ASSERTED,
        "{ISEMAIL}: asserted row count changed"
    );
    assert_eq!(
        email_validator.len(),
        EMAIL_VALIDATOR_ASSERTED,
        "{EMAIL_VALIDATOR}: asserted row count changed"
    );
}
