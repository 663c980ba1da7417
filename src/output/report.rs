//! report.html: one self-contained page for a person who never saw the tool.
//!
//! A pure function of the [`Summary`]: no I/O, so it is tested without a run. The page has no
//! script, no font, no stylesheet and no image from anywhere: CSS is inline, the charts are SVG
//! written here, and a Content-Security-Policy (`default-src 'none'`) makes the browser refuse
//! anything else, so the file opens the same offline, from a mail attachment or a file share.
//!
//! Every string that comes from the run (group values and domains are cells of an untrusted
//! list; paths, column names) goes through [`esc`] before it reaches the page, in text and in
//! attributes alike. Figures carry stable ids or `data-*` attributes with their exact values,
//! so tests (and scripts) can read them back and compare them with summary.json.

use std::fmt::Write as _;

use super::summary::{GroupKind, GroupSummary, Summary, thousands};
use crate::forecast::{Band, Interval};
use crate::model::{Reason, Status};

/// Groups drawn in the comparison chart; the table below it lists more.
const CHART_GROUPS: usize = 40;
/// Groups listed in the table (all of them are in summary.json).
const TABLE_GROUPS: usize = 500;
/// Reasons listed.
const TOP_REASONS: usize = 12;
/// Above this catch-all share of the list, the page warns.
const CATCH_ALL_WARNING: f64 = 0.25;
/// Characters of a group value shown in a chart label (the full value is in its tooltip).
const LABEL_CHARS: usize = 26;

/// HTML-escape text for an element's content or a quoted attribute value.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters have no business in a page (and NUL is a parse error).
            c if c.is_control() && c != '\n' && c != '\t' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

fn pct(x: f64) -> String {
    format!("{:.2}%", x * 100.0)
}

fn share(n: u64, of: u64) -> f64 {
    if of == 0 { 0.0 } else { n as f64 / of as f64 }
}

pub(crate) fn band_colour(band: Band) -> &'static str {
    match band {
        Band::Excellent => "#1a7f37",
        Band::Good => "#5b8c1a",
        Band::Warning => "#b7791f",
        Band::Critical => "#d9480f",
        Band::Catastrophic => "#c92a2a",
    }
}

fn band_sentence(band: Band) -> &'static str {
    match band {
        Band::Excellent => "Very clean: this list is safe to send.",
        Band::Good => {
            "Acceptable: below the 2 % of hard bounces at which Gmail and Outlook start throttling a sender."
        }
        Band::Warning => {
            "Risky: above the 2 % at which Gmail and Outlook start throttling a sender. Remove the invalid addresses before you send."
        }
        Band::Critical => {
            "Dangerous: sent as it is, this list will likely get your mail throttled or sent to spam."
        }
        Band::Catastrophic => {
            "Do not send this list as it is: more than 1 address in 10 is predicted to bounce, enough to get a sender blocked."
        }
    }
}

fn status_colour(s: Status) -> &'static str {
    match s {
        Status::Valid => "#2f9e44",
        Status::Invalid => "#e03131",
        Status::CatchAll => "#f08c00",
        Status::Unknown => "#868e96",
    }
}

fn status_sentence(s: Status) -> &'static str {
    match s {
        Status::Valid => "deliverable as far as this check went (valid.csv)",
        Status::Invalid => "will bounce, or the row could not be read (invalid.csv)",
        Status::CatchAll => {
            "the domain accepts any address, so these cannot be confirmed (catch-all.csv)"
        }
        Status::Unknown => "could not be decided this time (unknown.csv)",
    }
}

/// The whole page.
pub fn render(s: &Summary) -> String {
    let mut h = String::with_capacity(64 * 1024);
    head(&mut h, s);
    headline(&mut h, s);
    not_checked_warning(&mut h, s);
    readiness_section(&mut h, s);
    catch_all_warning(&mut h, s);
    status_section(&mut h, s);
    reasons_section(&mut h, s);
    if s.group_by.is_some() {
        groups_section(&mut h, s);
    }
    domains_section(&mut h, s);
    flags_section(&mut h, s);
    settings_section(&mut h, s);
    h.push_str(FOOTER);
    h
}

pub(crate) const STYLE: &str = r#"
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; padding: 24px; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #212529; background: #f8f9fa; }
main { max-width: 1040px; margin: 0 auto; }
section { background: #fff; border: 1px solid #dee2e6; border-radius: 8px; padding: 16px 20px; margin: 0 0 16px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 18px; margin: 0 0 8px; }
p { margin: 6px 0; }
.sub, .note { color: #6c757d; font-size: 13px; }
.headline { display: flex; flex-wrap: wrap; gap: 12px 32px; align-items: baseline; }
.rate { font-size: 44px; font-weight: 700; }
.badge { display: inline-block; padding: 2px 10px; border-radius: 12px; color: #fff; font-weight: 600; font-size: 13px; vertical-align: middle; }
.kpis { display: flex; flex-wrap: wrap; gap: 8px 28px; list-style: none; padding: 0; margin: 12px 0 4px; }
.kpis li { font-size: 14px; color: #495057; }
.kpis b { display: block; font-size: 20px; color: #212529; }
.warning { border-color: #f08c00; background: #fff4e6; }
table { border-collapse: collapse; width: 100%; font-size: 14px; }
#groups table { font-size: 13px; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid #e9ecef; vertical-align: top; }
th { font-size: 12px; text-transform: uppercase; letter-spacing: .03em; color: #6c757d; }
td.n, th.n { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
td.nw { white-space: nowrap; }
.scroll { overflow-x: auto; }
#domains table { margin-bottom: 16px; }
.verdict { font-size: 16px; }
code { font-size: 13px; background: #f1f3f5; padding: 0 4px; border-radius: 3px; }
.special { font-style: italic; color: #6c757d; }
.chart { width: 100%; height: auto; max-width: 980px; display: block; margin: 8px 0; }
.chart text { font: 12px system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; fill: #343a40; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; margin: 0; }
dt { color: #6c757d; }
dd { margin: 0; word-break: break-all; }
footer { color: #6c757d; font-size: 13px; max-width: 1040px; margin: 0 auto; }
"#;

const FOOTER: &str = r#"<footer>
<p><b>How the prediction works.</b> Every address gets a probability of bouncing from what was
found about it (a malformed address: 100 %; a well-formed one that was not probed: the decay of
lists over a few months). The predicted bounce rate is their average over the addresses you would
send to, counting a repeated address once. The 95 % interval shows how far the rate you see could
be from the prediction by chance alone, given how many addresses it rests on: a group of 20
addresses has a wide interval, a group of 20,000 a narrow one (Wilson score interval).</p>
</footer>
</main>
</body>
</html>
"#;

fn head(h: &mut String, s: &Summary) {
    let _ = write!(
        h,
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>prebounce report: {input}</title>
<style>{STYLE}</style>
</head>
<body>
<main>
<header>
<h1>Will this list bounce?</h1>
<p class="sub">prebounce report for <code id="input-path">{input}</code> · checked at level <b>{level}</b> on {date}</p>
</header>
"#,
        input = esc(&s.input.path),
        level = esc(&s.level),
        date = esc(&s.started_at),
    );
}

fn badge(band: Band, id: Option<&str>) -> String {
    let id = id.map_or(String::new(), |i| {
        format!(r#" id="{}" data-value="{}""#, esc(i), band)
    });
    format!(
        r#"<span class="badge"{id} style="background:{}">{band}</span>"#,
        band_colour(band)
    )
}

fn interval_text(i: Interval) -> String {
    format!("{}–{}", pct(i.low), pct(i.high))
}

fn headline(h: &mut String, s: &Summary) {
    let f = &s.predicted_bounce_rate;
    let _ = write!(
        h,
        r#"<section id="headline" style="border-top:6px solid {colour}">
<div class="headline">
<div><div class="sub">Predicted bounce rate if you send to every address</div>
<span class="rate" id="rate-all" data-value="{all}" style="color:{colour}">{all_pct}</span> {badge}
<div class="note">95 % interval {interval} over {sends} distinct addresses</div></div>
</div>
<p>{sentence}</p>
<ul class="kpis">
<li>Rows<b id="rows" data-value="{rows}">{rows_t}</b></li>
<li>Distinct addresses<b id="unique-addresses" data-value="{unique}">{unique_t}</b></li>
<li>Duplicates<b id="duplicates" data-value="{dups}">{dups_t}</b></li>
<li>Sending to valid only<b><span id="rate-valid-only" data-value="{vo}">{vo_pct}</span> {vo_badge}</b></li>
<li>Sending to valid + catch-all<b><span id="rate-valid-and-catch-all" data-value="{vc}">{vc_pct}</span> {vc_badge}</b></li>
</ul>
<p class="note">Sending only to <code>valid.csv</code> ({valid} addresses) brings the predicted rate to {vo_pct}.</p>
</section>
"#,
        colour = band_colour(f.band),
        all = f.all,
        all_pct = pct(f.all),
        badge = badge(f.band, Some("band")),
        interval = interval_text(f.interval_95.all),
        sends = thousands(f.sends.all),
        sentence = band_sentence(f.band),
        rows = s.rows,
        rows_t = thousands(s.rows),
        unique = s.unique_addresses,
        unique_t = thousands(s.unique_addresses),
        dups = s.duplicates,
        dups_t = thousands(s.duplicates),
        vo = f.valid_only,
        vo_pct = pct(f.valid_only),
        vo_badge = badge(Band::of(f.valid_only), None),
        vc = f.valid_and_catch_all,
        vc_pct = pct(f.valid_and_catch_all),
        vc_badge = badge(Band::of(f.valid_and_catch_all), None),
        valid = thousands(s.status.valid),
    );
}

/// A --level smtp run that could not reach port 25 says so first: the figures below are the
/// DNS level's.
fn not_checked_warning(h: &mut String, s: &Summary) {
    let Some(n) = &s.mailboxes_not_checked else {
        return;
    };
    let _ = write!(
        h,
        r#"<section id="mailboxes-not-checked" class="warning" data-cause="{cause}">
<h2>⚠ The mailboxes were not checked: port 25 is unreachable from this machine</h2>
<p>{message}</p>
<p>The lists and figures below are those of level dns: a domain that accepts mail says nothing
about the mailbox.</p>
</section>
"#,
        cause = esc(&n.cause),
        message = esc(&n.message),
    );
}

/// The prober checks a --level smtp run did before probing: one row per check, worst first
/// in colour, with the evidence and what to do.
fn readiness_section(h: &mut String, s: &Summary) {
    let Some(report) = &s.preflight else {
        return;
    };
    let egress = report
        .egress_ip
        .map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
    let _ = write!(
        h,
        r#"<section id="readiness">
<h2>This machine as a prober</h2>
<p>Checked before probing (egress address <b>{egress}</b>): a blocklisted address or a HELO name
that does not resolve gets <code>prober-blocked</code> answers; a blocked port 25 checks no
mailbox at all.</p>
<table><thead><tr><th>check</th><th>status</th><th>evidence</th><th>what to do</th></tr></thead><tbody>
"#,
        egress = esc(&egress),
    );
    for check in &report.checks {
        let status = check.status.as_str();
        let colour = match check.status {
            crate::preflight::CheckStatus::Pass => "#2b8a3e",
            crate::preflight::CheckStatus::Warn => "#e67700",
            crate::preflight::CheckStatus::Fail => "#c92a2a",
            crate::preflight::CheckStatus::Skip => "#868e96",
        };
        let _ = writeln!(
            h,
            r#"<tr class="check" data-id="{id}" data-status="{status}"><td class="nw">{id}</td><td class="nw" style="color:{colour}"><b>{status}</b></td><td>{detail}</td><td>{advice}</td></tr>"#,
            id = esc(&check.id),
            detail = esc(&check.detail),
            advice = esc(check.advice.as_deref().unwrap_or("")),
        );
    }
    h.push_str("</tbody></table>\n</section>\n");
}

fn catch_all_warning(h: &mut String, s: &Summary) {
    let ca = share(s.status.catch_all, s.rows);
    if ca <= CATCH_ALL_WARNING {
        return;
    }
    let _ = write!(
        h,
        r#"<section id="catch-all-warning" class="warning" data-value="{ca}">
<h2>⚠ {pct} of this list is at catch-all domains</h2>
<p>These domains accept mail for any address, real or not, so nothing can confirm these
{n} addresses before you send. Some will bounce later or vanish silently. Send to them last, in
small batches, and suppress the ones that bounce.</p>
</section>
"#,
        pct = pct(ca),
        n = thousands(s.status.catch_all),
    );
}

/// Horizontal bars, one per status, as a share of all rows.
fn status_section(h: &mut String, s: &Summary) {
    const W: f64 = 720.0;
    const LABEL: f64 = 90.0;
    const BAR: f64 = 440.0;
    const ROW: f64 = 34.0;
    let height = ROW * 4.0 + 10.0;
    let _ = write!(
        h,
        r#"<section id="status">
<h2>Where the rows went</h2>
<svg class="chart" viewBox="0 0 {W} {height}" role="img" aria-label="Rows per status">
"#
    );
    for (i, st) in Status::ALL.into_iter().enumerate() {
        let n = s.status.get(st);
        let sh = share(n, s.rows);
        let y = 6.0 + i as f64 * ROW;
        let w = (sh * BAR).max(if n > 0 { 1.5 } else { 0.0 });
        let _ = write!(
            h,
            r##"<g id="status-{st}" data-count="{n}">
<text x="{lx}" y="{ty}" text-anchor="end">{st}</text>
<rect x="{LABEL}" y="{y}" width="{BAR}" height="22" fill="#f1f3f5"/>
<rect x="{LABEL}" y="{y}" width="{w:.2}" height="22" fill="{colour}"/>
<text x="{vx}" y="{ty}">{nt} ({pct})</text>
</g>
"##,
            lx = LABEL - 8.0,
            ty = y + 15.5,
            colour = status_colour(st),
            vx = LABEL + BAR + 10.0,
            nt = thousands(n),
            pct = pct(sh),
        );
    }
    h.push_str("</svg>\n<table><tbody>\n");
    for st in Status::ALL {
        let _ = writeln!(
            h,
            r#"<tr><td><span class="badge" style="background:{}">{st}</span></td><td class="n">{}</td><td>{}</td></tr>"#,
            status_colour(st),
            thousands(s.status.get(st)),
            status_sentence(st)
        );
    }
    h.push_str("</tbody></table>\n</section>\n");
}

fn reasons_section(h: &mut String, s: &Summary) {
    let mut reasons: Vec<(&String, &u64)> = s.reasons.iter().collect();
    reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
    h.push_str(
        r#"<section id="reasons">
<h2>Why: the reasons, most frequent first</h2>
<table>
<thead><tr><th>reason</th><th class="n">rows</th><th class="n">share</th><th>what it means</th><th>what to do</th></tr></thead>
<tbody>
"#,
    );
    for (code, n) in reasons.iter().take(TOP_REASONS) {
        let (meaning, (action, advice)) = match Reason::from_code(code) {
            Some(r) => (r.meaning(), r.advice()),
            None => ("", ("", "")),
        };
        let _ = writeln!(
            h,
            r#"<tr data-reason="{c}" data-count="{n}"><td><code>{c}</code></td><td class="n">{nt}</td><td class="n">{sh}</td><td>{meaning}</td><td><b>{action}</b>: {advice}</td></tr>"#,
            c = esc(code),
            nt = thousands(**n),
            sh = pct(share(**n, s.rows)),
            meaning = esc(meaning),
            action = esc(action),
            advice = esc(advice),
        );
    }
    h.push_str("</tbody></table>\n");
    if reasons.len() > TOP_REASONS {
        let _ = writeln!(
            h,
            r#"<p class="note">{} more reasons in summary.json.</p>"#,
            reasons.len() - TOP_REASONS
        );
    }
    h.push_str("</section>\n");
}

/// The chart's scale: the smallest of a few round rates that holds every bar and whisker.
fn chart_max(groups: &[GroupSummary]) -> f64 {
    let top = groups
        .iter()
        .map(|g| g.predicted_bounce_rate.interval_95.all.high)
        .fold(0.0, f64::max);
    [0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 1.0]
        .into_iter()
        .find(|m| top <= *m)
        .unwrap_or(1.0)
}

fn label(value: &str) -> String {
    if value.chars().count() <= LABEL_CHARS {
        value.to_owned()
    } else {
        let mut v: String = value.chars().take(LABEL_CHARS - 1).collect();
        v.push('…');
        v
    }
}

fn groups_section(h: &mut String, s: &Summary) {
    let Some(group_by) = &s.group_by else {
        return;
    };
    let column = esc(&group_by.column);
    let _ = write!(
        h,
        r#"<section id="groups" data-count="{count}">
<h2>By {column}: worst first</h2>
<p>Predicted bounce rate sending to all of each group's addresses. The whisker is the 95 %
interval: a small group's rate is less certain, so its whisker is longer. The dashed line is the
2 % at which mailbox providers start throttling.</p>
"#,
        count = s.groups.len(),
    );
    worst_sentence(h, s);
    group_chart(h, &s.groups[..s.groups.len().min(CHART_GROUPS)], &column);
    group_table(h, s, &column);
    if s.groups.len() > TABLE_GROUPS {
        let _ = writeln!(
            h,
            r#"<p class="note">{} more groups in summary.json.</p>"#,
            thousands((s.groups.len() - TABLE_GROUPS) as u64)
        );
    }
    if group_by.capped {
        let _ = writeln!(
            h,
            r#"<p class="note">The column has more than {} distinct values: rows of the values seen after that many are pooled in <i>(other)</i>.</p>"#,
            thousands(group_by.max_groups as u64)
        );
    }
    h.push_str(
        r#"<p class="note">"Duplicates across" are addresses first seen in another group: a vendor selling you leads you already had.</p>
</section>
"#,
    );
}

/// The groups' predicted bounce rates as bars with their 95 % whiskers, worst first.
fn group_chart(h: &mut String, shown: &[GroupSummary], column: &str) {
    if shown.is_empty() {
        return;
    }
    const W: f64 = 760.0;
    const LABEL: f64 = 200.0;
    const BAR: f64 = 440.0;
    const ROW: f64 = 30.0;
    let max = chart_max(shown);
    let x = |rate: f64| LABEL + rate.clamp(0.0, max) / max * BAR;
    let top = 24.0;
    let height = top + ROW * shown.len() as f64 + 8.0;
    let _ = writeln!(
        h,
        r#"<svg class="chart" viewBox="0 0 {W} {height}" role="img" aria-label="Predicted bounce rate by {column}">"#
    );
    for k in 0..=5 {
        let rate = max * k as f64 / 5.0;
        let _ = writeln!(
            h,
            r##"<line x1="{gx:.2}" y1="{top}" x2="{gx:.2}" y2="{bottom}" stroke="#e9ecef"/><text x="{gx:.2}" y="14" text-anchor="middle">{t}%</text>"##,
            gx = x(rate),
            bottom = height - 8.0,
            t = trim_float(rate * 100.0),
        );
    }
    if max >= 0.02 {
        let _ = writeln!(
            h,
            r##"<line x1="{tx:.2}" y1="{top}" x2="{tx:.2}" y2="{bottom}" stroke="#495057" stroke-dasharray="4 3"/>"##,
            tx = x(0.02),
            bottom = height - 8.0,
        );
    }
    for (i, g) in shown.iter().enumerate() {
        let f = &g.predicted_bounce_rate;
        let y = top + 4.0 + i as f64 * ROW;
        let mid = y + 10.0;
        let (lo, hi) = (x(f.interval_95.all.low), x(f.interval_95.all.high));
        let _ = write!(
            h,
            r##"<g class="group-bar" data-group="{v}" data-rate="{rate}"><title>{v}: {rp} (95 % interval {iv}), {rows} rows</title>
<text x="{lx}" y="{ty}" text-anchor="end"{italic}>{lab}</text>
<rect x="{LABEL}" y="{y}" width="{bw:.2}" height="20" fill="{colour}" opacity="0.85"/>
<line x1="{lo:.2}" y1="{mid}" x2="{hi:.2}" y2="{mid}" stroke="#212529" stroke-width="1.5"/>
<line x1="{lo:.2}" y1="{c1}" x2="{lo:.2}" y2="{c2}" stroke="#212529" stroke-width="1.5"/>
<line x1="{hi:.2}" y1="{c1}" x2="{hi:.2}" y2="{c2}" stroke="#212529" stroke-width="1.5"/>
<text x="{vx:.2}" y="{ty}">{rp}</text>
</g>
"##,
            v = esc(&g.value),
            rate = f.all,
            rp = pct(f.all),
            iv = interval_text(f.interval_95.all),
            rows = thousands(g.rows),
            lx = LABEL - 8.0,
            ty = y + 14.5,
            italic = if g.kind == GroupKind::Value {
                ""
            } else {
                r#" font-style="italic""#
            },
            lab = esc(&label(&g.value)),
            bw = (x(f.all) - LABEL).max(1.0),
            colour = band_colour(f.band),
            c1 = mid - 5.0,
            c2 = mid + 5.0,
            vx = hi.max(x(f.all)) + 8.0,
        );
    }
    h.push_str("</svg>\n");
}

/// One row a group: its counts, main problem and forecast. Columns no group has anything in
/// (catch-all and unknown at level syntax) are left out.
fn group_table(h: &mut String, s: &Summary, column: &str) {
    let with_catch_all = s.groups.iter().any(|g| g.status.catch_all > 0);
    let with_unknown = s.groups.iter().any(|g| g.status.unknown > 0);
    let _ = write!(
        h,
        r#"<div class="scroll"><table>
<thead><tr><th>{column}</th><th class="n">rows</th><th class="n">invalid</th>{ca_th}{unk_th}<th class="n">dups within / across</th><th>main problem</th><th class="n">bounce (all)</th><th class="n">95 % interval</th><th>band</th></tr></thead>
<tbody>
"#,
        ca_th = if with_catch_all {
            r#"<th class="n">catch-all</th>"#
        } else {
            ""
        },
        unk_th = if with_unknown {
            r#"<th class="n">unknown</th>"#
        } else {
            ""
        },
    );
    for g in s.groups.iter().take(TABLE_GROUPS) {
        let f = &g.predicted_bounce_rate;
        let problem = g.top_reasons.first().map_or(String::from("–"), |r| {
            format!(
                "<code>{}</code> {} ({})",
                esc(&r.reason),
                thousands(r.rows),
                pct(r.share)
            )
        });
        let _ = writeln!(
            h,
            r#"<tr class="group" data-group="{v}" data-kind="{kind}" data-rows="{rows}" data-rate="{rate}" data-low="{low}" data-high="{high}" data-band="{band}"><td{cls}>{v}</td><td class="n">{rows_t}</td><td class="n">{inv}</td>{ca}{unk}<td class="n">{dw} / {da}</td><td class="nw">{problem}</td><td class="n"><b>{rp}</b></td><td class="n">{iv}</td><td>{badge}</td></tr>"#,
            v = esc(&g.value),
            kind = match g.kind {
                GroupKind::Value => "value",
                GroupKind::Empty => "empty",
                GroupKind::Unreadable => "unreadable",
                GroupKind::Other => "other",
            },
            rows = g.rows,
            rate = f.all,
            low = f.interval_95.all.low,
            high = f.interval_95.all.high,
            band = f.band,
            cls = if g.kind == GroupKind::Value {
                ""
            } else {
                r#" class="special""#
            },
            rows_t = thousands(g.rows),
            inv = format_args!(
                "{} ({})",
                thousands(g.status.invalid),
                pct(g.status_share.invalid)
            ),
            ca = if with_catch_all {
                format!(
                    r#"<td class="n">{} ({})</td>"#,
                    thousands(g.status.catch_all),
                    pct(g.status_share.catch_all)
                )
            } else {
                String::new()
            },
            unk = if with_unknown {
                format!(
                    r#"<td class="n">{} ({})</td>"#,
                    thousands(g.status.unknown),
                    pct(g.status_share.unknown)
                )
            } else {
                String::new()
            },
            dw = thousands(g.duplicates_within_group),
            da = thousands(g.duplicates_across_groups),
            rp = pct(f.all),
            iv = interval_text(f.interval_95.all),
            badge = badge(f.band, None),
        );
    }
    h.push_str("</tbody></table></div>\n");
}

/// The answer to "which one is worst, and why", in words.
fn worst_sentence(h: &mut String, s: &Summary) {
    let (Some(group_by), Some(worst), Some(best)) =
        (&s.group_by, s.groups.first(), s.groups.last())
    else {
        return;
    };
    let f = &worst.predicted_bounce_rate;
    let mut why: Vec<String> = worst
        .top_reasons
        .iter()
        .map(|r| {
            format!(
                "{} {} ({}, <code>{}</code>)",
                thousands(r.rows),
                match Reason::from_code(&r.reason).map(Reason::status) {
                    Some(Status::Invalid) => "invalid",
                    Some(Status::CatchAll) => "catch-all",
                    _ => "unknown",
                },
                pct(r.share),
                esc(&r.reason)
            )
        })
        .collect();
    for (flag, words) in [
        ("disposable", "disposable"),
        ("role", "role"),
        ("duplicate", "duplicate"),
    ] {
        let n = worst.flags.get(flag).copied().unwrap_or(0);
        if n > 0 {
            why.push(format!(
                "{} {words} ({})",
                thousands(n),
                pct(share(n, worst.rows))
            ));
        }
    }
    let _ = writeln!(
        h,
        r#"<p class="verdict" id="worst-group" data-group="{v}">Worst {column}: <b>{v}</b>, {rp} predicted bounce rate (95 % interval {iv}, {rows} rows){than}. Of its rows: {why}.</p>"#,
        column = esc(&group_by.column),
        v = esc(&worst.value),
        rp = pct(f.all),
        iv = interval_text(f.interval_95.all),
        rows = thousands(worst.rows),
        than = if s.groups.len() > 1 {
            format!(
                ", against {} for the best, <b>{}</b>",
                pct(best.predicted_bounce_rate.all),
                esc(&best.value)
            )
        } else {
            String::new()
        },
        why = if why.is_empty() {
            String::from("nothing stands out")
        } else {
            why.join(", ")
        },
    );
}

fn trim_float(x: f64) -> String {
    let s = format!("{x:.1}");
    s.strip_suffix(".0").map(str::to_owned).unwrap_or(s)
}

fn domain_table(h: &mut String, id: &str, title: &str, rows: &[super::summary::DomainShare]) {
    let _ = writeln!(h, "<h2>{}</h2>", esc(title));
    if rows.is_empty() {
        let _ = writeln!(
            h,
            r#"<p class="note" id="{}-none">None with enough rows.</p>"#,
            esc(id)
        );
        return;
    }
    let _ = writeln!(
        h,
        r#"<table id="{}"><thead><tr><th>domain</th><th class="n">rows</th><th class="n">invalid</th><th class="n">catch-all</th><th class="n">share</th></tr></thead><tbody>"#,
        esc(id)
    );
    for d in rows {
        let _ = writeln!(
            h,
            r#"<tr data-domain="{dn}" data-share="{sh}"><td>{dn}</td><td class="n">{r}</td><td class="n">{i}</td><td class="n">{c}</td><td class="n"><b>{shp}</b></td></tr>"#,
            dn = esc(&d.domain),
            sh = d.share,
            r = thousands(d.rows),
            i = thousands(d.invalid),
            c = thousands(d.catch_all),
            shp = pct(d.share),
        );
    }
    h.push_str("</tbody></table>\n");
}

fn domains_section(h: &mut String, s: &Summary) {
    let d = &s.domains;
    h.push_str("<section id=\"domains\">\n");
    domain_table(
        h,
        "domains-invalid",
        "Domains with the highest share of invalid addresses",
        &d.top_invalid,
    );
    domain_table(
        h,
        "domains-catch-all",
        "Domains with the highest share of catch-all addresses",
        &d.top_catch_all,
    );
    let _ = writeln!(
        h,
        r#"<p class="note">Domains with at least {} rows. A malformed address counts at the text after its last @.{}</p>"#,
        d.min_rows,
        if d.rows_not_counted > 0 {
            format!(
                " The list has more than {} domains: {} rows at the domains seen after that many are not in these tables.",
                thousands(d.max_domains as u64),
                thousands(d.rows_not_counted)
            )
        } else {
            String::new()
        }
    );
    if s.level == "syntax" {
        h.push_str(
            r#"<p class="note">Catch-all domains are only found at <code>--level smtp</code>; at level syntax, a domain's invalid addresses are malformed or reserved ones.</p>
"#,
        );
    }
    h.push_str("</section>\n");
}

fn flags_section(h: &mut String, s: &Summary) {
    let flag = |name: &str| s.flags.get(name).copied().unwrap_or(0);
    let rows = [
        (
            "role",
            flag("role"),
            "addresses of a function, not a person (info@, sales@…): often shared, often complain",
        ),
        (
            "disposable",
            flag("disposable"),
            "throwaway inboxes that expire within minutes to days",
        ),
        (
            "free",
            flag("free"),
            "consumer providers (Gmail, Yahoo, Outlook…): a personal, not a company, address",
        ),
        (
            "duplicate",
            flag("duplicate"),
            "repeats of an earlier row's address: mailed once",
        ),
        (
            "ragged-row",
            flag("ragged-row"),
            "rows with more or fewer cells than the header (an unquoted comma in a name, say): kept as they came, their address checked; look at them in the lists",
        ),
        (
            "typo-suggestions",
            s.suggestions,
            "domains that look like a typo of a big provider (gmial.com → gmail.com): see prebounce_suggestion",
        ),
    ];
    h.push_str(
        r#"<section id="flags">
<h2>Flags</h2>
<table><tbody>
"#,
    );
    // A ragged row is a fault of the export, rare and worth a row only when there is one.
    for (name, n, meaning) in rows
        .into_iter()
        .filter(|&(name, n, _)| name != "ragged-row" || n > 0)
    {
        let _ = writeln!(
            h,
            r#"<tr data-flag="{name}" data-count="{n}"><td><code>{name}</code></td><td class="n">{nt}</td><td class="n">{sh}</td><td>{meaning}</td></tr>"#,
            nt = thousands(n),
            sh = pct(share(n, s.rows)),
        );
    }
    h.push_str("</tbody></table>\n</section>\n");
}

fn settings_section(h: &mut String, s: &Summary) {
    let group_by = s.group_by.as_ref().map_or(String::from("–"), |g| {
        if g.column_number == 0 {
            format!("{} (computed)", esc(&g.column))
        } else {
            format!("{} (column {})", esc(&g.column), g.column_number)
        }
    });
    let _ = write!(
        h,
        r#"<section id="settings">
<h2>How this was checked</h2>
<dl>
<dt>level</dt><dd id="level" data-value="{level}">{level}</dd>
<dt>priors</dt><dd id="priors" data-value="{priors}">{priors}</dd>
<dt>date</dt><dd id="started-at">{date}</dd>
<dt>prebounce version</dt><dd id="version" data-value="{version}">{version}</dd>
<dt>input</dt><dd>{input} ({columns} columns, delimiter <code>{delim}</code>, {header})</dd>
<dt>email column</dt><dd>{email}</dd>
<dt>grouped by</dt><dd id="group-by">{group_by}</dd>
<dt>output folder</dt><dd>{out}</dd>
<dt>run time</dt><dd>{elapsed:.2} s</dd>
</dl>
</section>
"#,
        level = esc(&s.level),
        priors = esc(&s.priors),
        date = esc(&s.started_at),
        version = esc(s.prebounce_version),
        input = esc(&s.input.path),
        columns = s.input.columns,
        delim = esc(&s.input.delimiter),
        header = if s.input.has_header {
            "with a header row"
        } else {
            "no header row"
        },
        email = esc(&s.input.email_column),
        out = esc(&s.output_dir),
        elapsed = s.elapsed_seconds,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forecast::Forecast;
    use crate::output::summary::{
        DomainReport, DomainShare, GroupBy, InputShape, ReasonCount, StatusCounts, StatusShares,
    };
    use crate::syntax::Flags;

    fn forecast(valid: u64, invalid: u64) -> crate::forecast::PredictedBounceRate {
        let mut f = Forecast::default();
        for _ in 0..valid {
            f.add(Status::Valid, Reason::SyntaxOk, Flags::default(), 0.08);
        }
        for _ in 0..invalid {
            f.add(Status::Invalid, Reason::Syntax, Flags::default(), 1.0);
        }
        f.result()
    }

    fn group(value: &str, kind: GroupKind, valid: u64, invalid: u64) -> GroupSummary {
        let status = StatusCounts {
            valid,
            invalid,
            ..Default::default()
        };
        GroupSummary {
            value: value.into(),
            kind,
            rows: valid + invalid,
            unique_addresses: valid + invalid,
            duplicates: 0,
            duplicates_within_group: 0,
            duplicates_across_groups: 0,
            status_share: StatusShares::of(&status, valid + invalid),
            status,
            reasons: [
                ("syntax-ok".to_owned(), valid),
                ("syntax".to_owned(), invalid),
            ]
            .into(),
            top_reasons: vec![ReasonCount {
                reason: "syntax".into(),
                rows: invalid,
                share: invalid as f64 / (valid + invalid) as f64,
            }],
            flags: Default::default(),
            suggestions: 0,
            predicted_bounce_rate: forecast(valid, invalid),
        }
    }

    fn summary(groups: Vec<GroupSummary>) -> Summary {
        let status = StatusCounts {
            valid: 90,
            invalid: 10,
            ..Default::default()
        };
        Summary {
            prebounce_version: "0.1.0",
            level: "syntax".into(),
            rows: 100,
            unique_addresses: 100,
            duplicates: 0,
            status,
            reasons: [("syntax-ok".to_owned(), 90), ("syntax".to_owned(), 10)].into(),
            flags: [("role".to_owned(), 3)].into(),
            providers: [("google".to_owned(), 40)].into(),
            suggestions: 2,
            predicted_bounce_rate: forecast(90, 10),
            priors: "built-in".into(),
            input: InputShape {
                path: "leads<1>.csv".into(),
                delimiter: ",".into(),
                has_header: true,
                email_column: "e\"mail".into(),
                email_column_number: 2,
                columns: 3,
                warnings: Vec::new(),
            },
            dns: None,
            smtp: None,
            mailboxes_not_checked: None,
            preflight: None,
            output_dir: "out".into(),
            store: None,
            changes: None,
            started_at: "2026-11-22T23:35:53Z".into(),
            elapsed_seconds: 0.1,
            domains: DomainReport {
                top_invalid: vec![DomainShare {
                    domain: "<img src=x onerror=alert(1)>".into(),
                    rows: 5,
                    invalid: 5,
                    catch_all: 0,
                    share: 1.0,
                }],
                ..Default::default()
            },
            group_by: (!groups.is_empty()).then(|| GroupBy {
                column: "<source>".into(),
                column_number: 2,
                distinct_values: groups.len() as u64,
                max_groups: 10_000,
                capped: false,
            }),
            groups,
        }
    }

    #[test]
    fn escaping() {
        assert_eq!(
            esc(r#"<script>alert("x" & 'y')</script>"#),
            "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;"
        );
        assert_eq!(esc("Müller\u{0}"), "Müller\u{FFFD}");
    }

    #[test]
    fn hostile_values_render_as_text() {
        let s = summary(vec![
            group("<script>alert(1)</script>", GroupKind::Value, 5, 15),
            group("\"><img src=x onerror=alert(2)>", GroupKind::Value, 10, 1),
        ]);
        let html = render(&s);
        // The only tags are ours: no script, no img, no event handler attribute.
        assert!(!html.to_lowercase().contains("<script"), "{html}");
        assert!(!html.contains("<img"));
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(html.contains("data-group=\"&quot;&gt;&lt;img src=x onerror=alert(2)&gt;\""));
        assert!(html.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(html.contains("leads&lt;1&gt;.csv"));
        assert!(html.contains("e&quot;mail"));
        assert!(html.contains("By &lt;source&gt;"));
    }

    #[test]
    fn self_contained_and_structured() {
        let s = summary(vec![
            group("bulk", GroupKind::Value, 5, 15),
            group("organic", GroupKind::Value, 1000, 2),
            group("(empty)", GroupKind::Empty, 3, 0),
        ]);
        let html = render(&s);
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.trim_end().ends_with("</html>"));
        // Nothing is fetched: no URL, no src, no link, no script.
        for needle in ["http://", "https://", "src=\"", "<link", "<script", "url("] {
            assert!(!html.contains(needle), "found {needle}");
        }
        assert!(html.contains("default-src 'none'"));
        // Headline figures carry their exact values.
        let f = &s.predicted_bounce_rate;
        assert!(html.contains(&format!(r#"id="rate-all" data-value="{}""#, f.all)));
        assert!(html.contains(r#"id="rows" data-value="100""#));
        assert!(html.contains(r#"id="band" data-value="catastrophic""#));
        assert!(
            html.contains(&format!(">{}</span>", pct(f.all))),
            "the rate as shown"
        );
        // Status bars, reasons with plain English and an action.
        for st in ["valid", "invalid", "catch-all", "unknown"] {
            assert!(html.contains(&format!(r#"id="status-{st}""#)), "{st}");
        }
        assert!(html.contains(r#"data-reason="syntax" data-count="10""#));
        assert!(html.contains(Reason::Syntax.meaning()));
        // Groups: chart bars and table rows in the given (worst-first) order, with intervals.
        let bars: Vec<usize> = ["bulk", "organic", "(empty)"]
            .iter()
            .map(|g| {
                html.find(&format!(r#"class="group-bar" data-group="{g}""#))
                    .unwrap()
            })
            .collect();
        assert!(bars.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(html.matches(r#"<tr class="group""#).count(), 3);
        assert!(html.contains(r#"data-kind="empty""#));
        // The small group's whisker is wider than the big one's.
        let width = |g: &GroupSummary| {
            let i = g.predicted_bounce_rate.interval_95.all;
            i.high - i.low
        };
        assert!(width(&s.groups[0]) > 5.0 * width(&s.groups[1]));
        // No catch-all warning below 25 %.
        assert!(!html.contains("catch-all-warning"));
        // Settings.
        assert!(html.contains(r#"id="level" data-value="syntax""#));
        assert!(html.contains(r#"id="priors" data-value="built-in""#));
        assert!(html.contains("2026-11-22T23:35:53Z"));
    }

    #[test]
    fn catch_all_warning_above_a_quarter() {
        let mut s = summary(Vec::new());
        s.status.catch_all = 26;
        s.status.valid = 64;
        let html = render(&s);
        assert!(html.contains(r#"id="catch-all-warning""#));
        assert!(
            !html.contains(r#"id="groups""#),
            "no group section without --group-by"
        );
        s.status.catch_all = 25;
        s.status.valid = 65;
        assert!(!render(&s).contains(r#"id="catch-all-warning""#));
    }

    #[test]
    fn the_readiness_table_shows_every_preflight_check_as_text() {
        use crate::preflight::{Check, ProberReport};
        let mut s = summary(Vec::new());
        assert!(!render(&s).contains(r#"id="readiness""#));
        s.preflight = Some(ProberReport {
            egress_ip: Some([127, 0, 0, 1].into()),
            checks: vec![
                Check::pass("helo", "probe.sender.test resolves to 127.0.0.1"),
                Check::fail("dnsbl:<bl>.test", "127.0.0.1 is listed (127.0.0.2)")
                    .advise("request <delisting>"),
            ],
            port25: Vec::new(),
        });
        let html = render(&s);
        assert!(html.contains(r#"<section id="readiness">"#));
        let helo = html
            .find(r#"<tr class="check" data-id="helo" data-status="pass">"#)
            .expect("the helo row");
        let listed = html
            .find(r#"<tr class="check" data-id="dnsbl:&lt;bl&gt;.test" data-status="fail">"#)
            .expect("the blocklist row, its zone escaped");
        assert!(helo < listed, "in the report's order");
        assert!(html.contains("request &lt;delisting&gt;"));
        assert!(!html.contains("<delisting>"));
    }

    #[test]
    fn a_run_that_could_not_reach_port_25_says_why_first() {
        let mut s = summary(Vec::new());
        assert!(!render(&s).contains("mailboxes-not-checked"));
        s.level = "smtp".into();
        s.mailboxes_not_checked = Some(crate::output::summary::MailboxesNotChecked::of(
            &crate::smtp::egress::EgressBlock {
                by: crate::smtp::egress::BlockedBy::FirstServers,
                failures: crate::smtp::egress::Failures {
                    servers: 8,
                    refused: 0,
                    timed_out: 8,
                },
            },
        ));
        let html = render(&s);
        let section = html
            .find(r#"<section id="mailboxes-not-checked""#)
            .expect("the section");
        // Before where the rows went: those figures are the DNS level's.
        assert!(
            section
                < html
                    .find(r#"<section id="status">"#)
                    .expect("the status section")
        );
        assert!(html.contains(r#"data-cause="connections-failed""#));
        assert!(html.contains("the first 8 mail servers contacted all failed to connect on port 25 (8 timed out, 0 refused)"));
    }
}
