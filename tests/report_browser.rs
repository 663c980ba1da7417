//! report.html in a real browser: Debian's chromium, headless, installed on demand by
//! scripts/ensure-chromium.sh (CI machines are fresh and root). Behind `--features lab` like the
//! other suites that need software from Debian; scripts/test.sh runs it.
//!
//! It checks that the page loads without a single console message (the page has no script, so
//! any message is an error: a blocked load, a CSP violation), that the figures on the page are
//! those of summary.json, that hostile group values stay text in the DOM the browser built, and
//! it leaves a screenshot in target/report-screenshot.png.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use serde_json::Value;

fn chromium() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/ensure-chromium.sh");
    let out = Command::new("bash")
        .arg(&script)
        .output()
        .expect("run scripts/ensure-chromium.sh");
    assert!(
        out.status.success(),
        "scripts/ensure-chromium.sh failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

struct Browsed {
    /// What `--dump-dom` printed: the DOM after the page loaded, serialised.
    dom: String,
    /// Chromium's log (`--enable-logging=stderr`).
    log: String,
}

/// Load `page` headless with `extra` arguments (`--dump-dom`, `--screenshot=…`).
fn browse(chromium: &Path, page: &Path, extra: &[&str]) -> Browsed {
    let profile = tempfile::tempdir().unwrap();
    let url = format!("file://{}", page.display());
    // `timeout`: a wedged browser must fail the test, not hang it.
    let out = Command::new("timeout")
        .arg("120")
        .arg(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--hide-scrollbars",
            "--enable-logging=stderr",
            "--v=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(&url)
        .output()
        .expect("run chromium");
    let log = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "chromium failed on {url}:\n{log}");
    Browsed {
        dom: String::from_utf8_lossy(&out.stdout).into_owned(),
        log,
    }
}

/// Console output of the page. Chromium 156 logs every console message, errors included
/// ("Uncaught ReferenceError…", CSP violations, failed loads), as `INFO:CONSOLE:<line>] "…"`;
/// older versions wrote `ERROR:CONSOLE(…)`. The other lines are the browser's own (D-Bus, GPU).
fn console_lines(log: &str) -> Vec<&str> {
    log.lines()
        .filter(|l| l.contains(":CONSOLE") || l.contains("Uncaught"))
        .collect()
}

fn data_value(dom: &str, id: &str) -> String {
    attribute_of_id(dom, id, "data-value").unwrap_or_else(|| panic!("no #{id} with data-value"))
}

fn number(dom: &str, id: &str) -> f64 {
    data_value(dom, id)
        .parse()
        .unwrap_or_else(|e| panic!("#{id}: {e}"))
}

#[test]
fn report_in_a_headless_browser() {
    let chromium = chromium();

    // The console check must be able to fail: a page with a script error and a blocked load.
    let canary_dir = tempfile::tempdir().unwrap();
    let canary = canary_dir.path().join("canary.html");
    std::fs::write(
        &canary,
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>canary</title></head><body>\
         <script>undefinedFunction();</script></body></html>",
    )
    .unwrap();
    let b = browse(&chromium, &canary, &["--dump-dom"]);
    assert!(
        console_lines(&b.log)
            .iter()
            .any(|l| l.contains("undefinedFunction")),
        "the console check does not see a script error on this chromium:\n{}",
        b.log
    );

    // The sample, plus vendors whose names are markup.
    let mut input = sample_leads();
    input.extend_from_slice(
        b"Eve,Evil,eve@gmail.com,Evil Corp,<script>alert(1)</script>,2026-01-01\n\
          Mal,Lory,mal@gmial.com,Evil Corp,\"\"\"><img src=x onerror=alert(2)>\",2026-01-02\n",
    );
    let (_d, out, o) = verify_bytes(&input, &["--group-by", "source"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let s = summary(&out);
    let page = out.join("report.html");

    let b = browse(&chromium, &page, &["--dump-dom"]);
    assert_eq!(
        console_lines(&b.log),
        Vec::<&str>::new(),
        "report.html logged to the console"
    );
    let dom = &b.dom;
    assert!(dom.contains("id=\"headline\""), "no DOM dumped:\n{}", b.log);

    // (a) The figures on the page are summary.json's.
    let f = |v: &Value| v.as_f64().unwrap();
    assert_eq!(data_value(dom, "rows"), s["rows"].to_string());
    assert_eq!(
        data_value(dom, "unique-addresses"),
        s["unique_addresses"].to_string()
    );
    assert_eq!(data_value(dom, "duplicates"), s["duplicates"].to_string());
    let rate = &s["predicted_bounce_rate"];
    for (id, key) in [
        ("rate-all", "all"),
        ("rate-valid-only", "valid_only"),
        ("rate-valid-and-catch-all", "valid_and_catch_all"),
    ] {
        let (page, json) = (number(dom, id), f(&rate[key]));
        assert!(
            same_float(page, json),
            "#{id}: {page} on the page, {json} in summary.json"
        );
    }
    assert_eq!(data_value(dom, "band"), rate["band"].as_str().unwrap());
    // The rate as a person reads it.
    let shown = format!("{:.2}%", f(&rate["all"]) * 100.0);
    assert!(
        dom.contains(&format!(">{shown}</span>")),
        "{shown} not shown"
    );
    for st in ["valid", "invalid", "catch-all", "unknown"] {
        let count = attribute_of_id(dom, &format!("status-{st}"), "data-count").unwrap();
        assert_eq!(count, s["status"][st].to_string(), "{st}");
    }
    for (reason, n) in s["reasons"].as_object().unwrap() {
        let counts = attribute_values(dom, &format!("data-reason=\"{reason}\""), "data-count");
        assert_eq!(counts, [n.to_string()], "reason {reason}");
    }
    let groups = s["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 7);
    let marker = "class=\"group\"";
    let values = attribute_values(dom, marker, "data-group");
    let expected: Vec<&str> = groups
        .iter()
        .map(|g| g["value"].as_str().unwrap())
        .collect();
    assert_eq!(
        values, expected,
        "groups in summary.json's (worst-first) order"
    );
    let rows = attribute_values(dom, marker, "data-rows");
    let rates = attribute_values(dom, marker, "data-rate");
    let lows = attribute_values(dom, marker, "data-low");
    let highs = attribute_values(dom, marker, "data-high");
    for (i, g) in groups.iter().enumerate() {
        let p = &g["predicted_bounce_rate"];
        assert_eq!(rows[i], g["rows"].to_string());
        for (page, json) in [
            (&rates[i], &p["all"]),
            (&lows[i], &p["interval_95"]["all"]["low"]),
            (&highs[i], &p["interval_95"]["all"]["high"]),
        ] {
            let page: f64 = page.parse().unwrap();
            assert!(
                same_float(page, f(json)),
                "{}: {page} vs {json}",
                g["value"]
            );
        }
    }
    assert_eq!(data_value(dom, "level"), "syntax");
    assert_eq!(data_value(dom, "priors"), s["priors"].as_str().unwrap());
    assert_eq!(
        data_value(dom, "version"),
        s["prebounce_version"].as_str().unwrap()
    );

    // The hostile values are text nodes: the browser built no element from them.
    let lower = dom.to_lowercase();
    assert!(!lower.contains("<script"), "a script element in the DOM");
    assert!(!lower.contains("<img"), "an img element in the DOM");
    assert!(dom.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));

    // (b) A screenshot, kept as an artifact.
    let target = Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
    std::fs::create_dir_all(&target).unwrap();
    let shot = target.join("report-screenshot.png");
    let _ = std::fs::remove_file(&shot);
    let b = browse(
        &chromium,
        &page,
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,2400",
        ],
    );
    assert_eq!(console_lines(&b.log), Vec::<&str>::new());
    let png = std::fs::read(&shot).expect("chromium wrote no screenshot");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "not a PNG");
    // 1280 × 2400 of charts and tables; a blank page compresses to a few kB.
    assert!(
        png.len() > 50_000,
        "suspiciously small screenshot: {} bytes",
        png.len()
    );
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((width, height), (1280, 2400));
}
