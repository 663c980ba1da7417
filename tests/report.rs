//! End to end: `--group-by`, its table on stderr, and report.html (structure and escaping; the
//! page in a real browser is tests/report_browser.rs).

mod common;

use common::*;
use serde_json::Value;

fn ok(o: &std::process::Output) {
    assert!(
        o.status.success(),
        "exit {:?}\n{}",
        o.status.code(),
        stderr(o)
    );
}

fn u(v: &Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

fn f(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

fn group<'a>(s: &'a Value, value: &str) -> &'a Value {
    s["groups"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["value"] == value)
        .unwrap_or_else(|| panic!("no group {value}: {}", s["groups"]))
}

const VENDORS: [&str; 5] = [
    "organic-signup",
    "webinar-2026",
    "trade-show-berlin",
    "acme-leads",
    "bulkdata-pro",
];

#[test]
fn group_by_source_on_the_sample_adds_up_to_the_totals() {
    let (_d, out, o) = verify_bytes(&sample_leads(), &["--group-by", "source", "--force"]);
    ok(&o);
    let s = summary(&out);
    assert_eq!(s["group_by"]["column"], "source");
    assert_eq!(s["group_by"]["column_number"], 5);
    assert_eq!(s["group_by"]["capped"], false);
    let groups = s["groups"].as_array().expect("groups");
    let mut names: Vec<&str> = groups
        .iter()
        .map(|g| g["value"].as_str().unwrap())
        .collect();
    names.sort();
    let mut vendors = VENDORS.to_vec();
    vendors.sort();
    assert_eq!(names, vendors, "one group per vendor, nothing else");

    // Every count sums to the list's.
    let sum = |get: &dyn Fn(&Value) -> u64| groups.iter().map(get).sum::<u64>();
    assert_eq!(sum(&|g| u(&g["rows"])), u(&s["rows"]));
    assert_eq!(
        sum(&|g| u(&g["unique_addresses"])),
        u(&s["unique_addresses"])
    );
    assert_eq!(sum(&|g| u(&g["duplicates"])), u(&s["duplicates"]));
    assert_eq!(sum(&|g| u(&g["suggestions"])), u(&s["suggestions"]));
    for st in ["valid", "invalid", "catch-all", "unknown"] {
        assert_eq!(sum(&|g| u(&g["status"][st])), u(&s["status"][st]), "{st}");
    }
    for (reason, n) in s["reasons"].as_object().unwrap() {
        let per_group = sum(&|g| g["reasons"].get(reason).map_or(0, u));
        assert_eq!(per_group, u(n), "reason {reason}");
    }
    for (flag, n) in s["flags"].as_object().unwrap() {
        assert_eq!(sum(&|g| u(&g["flags"][flag])), u(n), "flag {flag}");
    }
    for scenario in ["all", "valid_only", "valid_and_catch_all"] {
        let sends = |x: &Value| u(&x["predicted_bounce_rate"]["sends"][scenario]);
        assert_eq!(sum(&|g| sends(g)), sends(&s), "{scenario}");
        // The list's rate is the send-weighted mean of the groups' rates.
        let weighted: f64 = groups
            .iter()
            .map(|g| f(&g["predicted_bounce_rate"][scenario]) * sends(g) as f64)
            .sum();
        let total = f(&s["predicted_bounce_rate"][scenario]) * sends(&s) as f64;
        assert!((weighted - total).abs() < 1e-6, "{scenario}");
    }

    // Duplicates: within + across, and the sample's vendors share addresses.
    let mut across = 0;
    for g in groups {
        assert_eq!(
            u(&g["duplicates"]),
            u(&g["duplicates_within_group"]) + u(&g["duplicates_across_groups"])
        );
        across += u(&g["duplicates_across_groups"]);
        // Shares and the interval are consistent with the counts.
        let rows = u(&g["rows"]) as f64;
        assert!(
            (f(&g["status_share"]["invalid"]) - u(&g["status"]["invalid"]) as f64 / rows).abs()
                < 1e-12
        );
        let p = &g["predicted_bounce_rate"];
        let (low, high) = (
            f(&p["interval_95"]["all"]["low"]),
            f(&p["interval_95"]["all"]["high"]),
        );
        assert!(low < f(&p["all"]) && f(&p["all"]) < high, "{g}");
        assert!(g["top_reasons"].as_array().unwrap().len() <= 3);
    }
    assert!(across > 0, "cross-group duplicates are counted");

    // Worst first.
    let rates: Vec<f64> = groups
        .iter()
        .map(|g| f(&g["predicted_bounce_rate"]["all"]))
        .collect();
    assert!(rates.windows(2).all(|w| w[0] >= w[1]), "{rates:?}");
    assert_eq!(
        groups[0]["value"], "bulkdata-pro",
        "the sample's worst vendor"
    );

    // The table on stderr: a header, one line per group in the same order, all aligned.
    let err = stderr(&o);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with('│')).collect();
    assert_eq!(lines.len(), 1 + groups.len(), "{err}");
    assert!(
        lines[0].contains("source") && lines[0].contains("bounce"),
        "{err}"
    );
    for (line, g) in lines[1..].iter().zip(groups) {
        let value = g["value"].as_str().unwrap();
        assert!(line.contains(value), "{line} / {value}");
        let rate = format!("{:.2}%", f(&g["predicted_bounce_rate"]["all"]) * 100.0);
        assert!(line.contains(&rate), "{line} lacks {rate}");
    }
    let table: Vec<&str> = err
        .lines()
        .filter(|l| l.starts_with(['│', '┌', '└', '╞']))
        .collect();
    let width = table[0].chars().count();
    assert!(table.iter().all(|l| l.chars().count() == width), "{err}");
    assert!(err.contains("worst: bulkdata-pro"), "{err}");

    // The report compares the groups in the same order.
    let html = report_html(&out);
    let shown = attribute_values(&html, "class=\"group\"", "data-group");
    let expected: Vec<&str> = groups
        .iter()
        .map(|g| g["value"].as_str().unwrap())
        .collect();
    assert_eq!(shown, expected);
    assert_eq!(
        attribute_of_id(&html, "worst-group", "data-group").as_deref(),
        Some("bulkdata-pro")
    );
}

#[test]
fn duplicates_within_and_across_groups_and_special_groups() {
    let input = "email,source\n\
                 a@x.org,A\n\
                 A@x.org,A\n\
                 a@x.org,B\n\
                 b@x.org,B\n\
                 b@X.org,\n\
                 c@x.org,  \n\
                 \"d@x.org,B\n\
                 bad@@x.org,A\n\
                 bad@@x.org,B\n";
    let (_d, out, o) = verify_bytes(input.as_bytes(), &["--group-by", "source"]);
    ok(&o);
    let s = summary(&out);
    let a = group(&s, "A");
    assert_eq!(
        (
            u(&a["rows"]),
            u(&a["duplicates_within_group"]),
            u(&a["duplicates_across_groups"])
        ),
        (3, 1, 0)
    );
    let b = group(&s, "B");
    // a@x.org repeats A's; bad@@x.org repeats A's malformed cell.
    assert_eq!(
        (
            u(&b["rows"]),
            u(&b["duplicates_within_group"]),
            u(&b["duplicates_across_groups"]),
            u(&b["unique_addresses"])
        ),
        (3, 0, 2, 1)
    );
    let empty = group(&s, "(empty)");
    assert_eq!(empty["kind"], "empty");
    assert_eq!(u(&empty["rows"]), 2, "blank and missing cells");
    assert_eq!(
        u(&empty["duplicates_across_groups"]),
        1,
        "b@X.org was first in B"
    );
    let unreadable = group(&s, "(unreadable)");
    assert_eq!(unreadable["kind"], "unreadable");
    assert_eq!(u(&unreadable["rows"]), 1);
    assert_eq!(u(&unreadable["status"]["invalid"]), 1);
    assert_eq!(s["group_by"]["distinct_values"], 2);
    assert_eq!(u(&s["duplicates"]), 4);
}

#[test]
fn group_column_by_number_and_bad_columns() {
    let input = "email,source\na@x.org,A\nb@x.org,B\n";
    let (_d, out, o) = verify_bytes(input.as_bytes(), &["--group-by", "2"]);
    ok(&o);
    let s = summary(&out);
    assert_eq!(s["group_by"]["column"], "source");
    assert_eq!(s["groups"].as_array().unwrap().len(), 2);

    for (bad, says) in [("vendor", "no such column"), ("7", "does not exist")] {
        let (_d, out, o) = verify_bytes(input.as_bytes(), &["--group-by", bad]);
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains("--group-by") && err.contains(says), "{err}");
        assert!(!out.join("summary.json").exists());
    }
}

#[test]
fn without_group_by_there_are_no_groups_but_a_report() {
    let (_d, out, o) = verify_bytes(&sample_leads(), &[]);
    ok(&o);
    let s = summary(&out);
    assert!(s.get("groups").is_none() && s.get("group_by").is_none());
    assert!(!stderr(&o).contains('│'), "no table without --group-by");
    assert!(stderr(&o).contains("report.html"));
    let html = report_html(&out);
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(!html.contains("id=\"groups\""));
    assert_eq!(
        attribute_of_id(&html, "rows", "data-value").as_deref(),
        Some("2500")
    );
    let rate: f64 = attribute_of_id(&html, "rate-all", "data-value")
        .unwrap()
        .parse()
        .unwrap();
    assert!(same_float(rate, f(&s["predicted_bounce_rate"]["all"])));
    assert_eq!(
        attribute_of_id(&html, "level", "data-value").as_deref(),
        Some("syntax")
    );
}

#[test]
fn hostile_group_values_are_text_in_the_report() {
    let input = "email,source\n\
                 a@x.org,<script>alert(1)</script>\n\
                 b@x.org,\"\"\"><img src=x onerror=alert(2)>\"\n\
                 c@y.org,\"<svg onload=alert(3)>\"\n";
    let (_d, out, o) = verify_bytes(input.as_bytes(), &["--group-by", "source"]);
    ok(&o);
    let html = report_html(&out);
    let lower = html.to_lowercase();
    assert!(!lower.contains("<script"), "a script tag got through");
    assert!(!lower.contains("<img"), "an img tag got through");
    assert!(!lower.contains("<svg onload"), "an svg tag got through");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    let mut shown = attribute_values(&html, "class=\"group\"", "data-group");
    shown.sort();
    assert_eq!(
        shown,
        [
            "\"><img src=x onerror=alert(2)>",
            "<script>alert(1)</script>",
            "<svg onload=alert(3)>"
        ]
    );
    // The terminal table shows them as they are (a terminal does not run HTML).
    assert!(stderr(&o).contains("<script>alert(1)</script>"));
}

#[test]
fn the_terminal_table_shows_the_worst_fifty_groups() {
    let mut input = String::from("email,source\n");
    for i in 0..60 {
        // Group g<i> has i invalid rows of 60: the higher i, the worse.
        for k in 0..60 {
            if k < i {
                input.push_str(&format!("bad{i}.{k}@@x.org,g{i:02}\n"));
            } else {
                input.push_str(&format!("u{i}.{k}@x.org,g{i:02}\n"));
            }
        }
    }
    let (_d, out, o) = verify_bytes(input.as_bytes(), &["--group-by", "source"]);
    ok(&o);
    assert_eq!(summary(&out)["groups"].as_array().unwrap().len(), 60);
    let err = stderr(&o);
    let rows: Vec<&str> = err.lines().filter(|l| l.starts_with("│ g")).collect();
    assert_eq!(rows.len(), 50, "{err}");
    assert!(rows[0].contains("g59") && rows[49].contains("g10"), "{err}");
    assert!(err.contains("the 50 worst of 60 groups"), "{err}");
}
