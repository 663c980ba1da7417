//! The page of `prebounce bounces report`, in the style of report.html: one self-contained
//! file, no script, every value escaped.

use std::fmt::Write as _;

use crate::bounce::report::{BounceReport, Counts, GroupBy};
use crate::forecast::Band;
use crate::output::report::{STYLE, band_colour, esc};

/// How many groups the table shows (the JSON has them all).
const GROUPS_SHOWN: usize = 200;

fn rate(r: Option<f64>) -> String {
    r.map_or_else(|| "–".into(), |r| format!("{:.2}%", 100.0 * r))
}

fn badge(c: &Counts) -> String {
    match c.hard_rate {
        Some(r) => {
            let band = Band::of(r);
            format!(
                r#"<span class="badge" style="background:{}">{band}</span>"#,
                band_colour(band)
            )
        }
        None => String::new(),
    }
}

fn counts_cells(h: &mut String, c: &Counts) {
    let sent = c.sent.map_or_else(|| "–".into(), |s| s.to_string());
    let _ = write!(
        h,
        r#"<td class="n">{sent}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td class="n">{}</td><td>{}</td>"#,
        c.hard,
        c.soft,
        c.block,
        c.complaint,
        c.delayed,
        rate(c.bounce_rate),
        rate(c.hard_rate),
        badge(c)
    );
}

const COUNT_HEADS: &str = r#"<th class="n">sent</th><th class="n">hard</th><th class="n">soft</th><th class="n">block</th><th class="n">complaints</th><th class="n">delays</th><th class="n">bounce rate</th><th class="n">hard rate</th><th>band</th>"#;

pub fn render(r: &BounceReport, store: &str) -> String {
    let mut h = String::with_capacity(32 * 1024);
    head(&mut h, r, store);
    totals(&mut h, r);
    findings(&mut h, r);
    groups(&mut h, r);
    reasons(&mut h, r);
    days(&mut h, r);
    h.push_str("</main>\n</body>\n</html>\n");
    h
}

fn head(h: &mut String, r: &BounceReport, store: &str) {
    let since = r.since.as_deref().unwrap_or("the first record");
    let _ = write!(
        h,
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>prebounce bounce report</title>
<style>{STYLE}</style>
</head>
<body>
<main>
<header>
<h1>What bounced?</h1>
<p class="sub">prebounce bounce report of <code>{store}</code> · records since {since}</p>
</header>
"#,
        store = esc(store),
        since = esc(since),
    );
}

fn totals(h: &mut String, r: &BounceReport) {
    let t = &r.totals;
    let sent_note = match (r.sent, r.sent_from) {
        (Some(s), Some(from)) => format!(
            "{s} messages sent ({})",
            match from {
                crate::bounce::report::SentFrom::SentList => "the rows of the sent list",
                crate::bounce::report::SentFrom::Events => "deliveries and failures in the events",
            }
        ),
        _ => {
            "messages sent: unknown (import the ESP's delivery events or pass --sent) — counts only"
                .into()
        }
    };
    let _ = write!(
        h,
        r#"<section id="totals">
<h2>Totals {badge}</h2>
<p>{sent}</p>
<ul class="kpis">
<li><b id="hard">{hard}</b>hard</li><li><b id="soft">{soft}</b>soft</li><li><b id="block">{block}</b>blocks of the sender</li>
<li><b>{complaint}</b>complaints</li><li><b>{delayed}</b>delays</li><li><b>{delivered}</b>delivered</li>
<li><b>{bounce_rate}</b>bounce rate</li><li><b>{hard_rate}</b>hard-bounce rate</li>
</ul>
<p class="note">Bands of the hard-bounce rate: excellent under 0.3 %, good under 2 %, warning under 5 %, critical up to 10 %, catastrophic above. Blocks refuse the sender, not the address: they never suppress it.</p>
</section>
"#,
        badge = badge(t),
        sent = esc(&sent_note),
        hard = t.hard,
        soft = t.soft,
        block = t.block,
        complaint = t.complaint,
        delayed = t.delayed,
        delivered = t.delivered,
        bounce_rate = rate(t.bounce_rate),
        hard_rate = rate(t.hard_rate),
    );
}

fn findings(h: &mut String, r: &BounceReport) {
    if !r.findings.is_empty() {
        h.push_str("<section id=\"findings\" class=\"warning\">\n<h2>What to do</h2>\n<ul>\n");
        for f in &r.findings {
            let _ = writeln!(h, "<li>{}</li>", esc(f));
        }
        h.push_str("</ul>\n</section>\n");
    }
}

fn groups(h: &mut String, r: &BounceReport) {
    let by = match r.group_by {
        GroupBy::Provider => "receiving provider",
        GroupBy::Domain => "recipient domain",
        GroupBy::Source => "source",
        GroupBy::Campaign => "campaign",
    };
    let _ = write!(
        h,
        "<section id=\"groups\">\n<h2>By {by}, worst first</h2>\n<div class=\"scroll\"><table>\n<tr><th>{by}</th>{COUNT_HEADS}<th>top reason</th></tr>\n"
    );
    for g in r.groups.iter().take(GROUPS_SHOWN) {
        let _ = write!(h, "<tr><td>{}</td>", esc(&g.group));
        counts_cells(h, &g.counts);
        let _ = writeln!(
            h,
            "<td>{}</td></tr>",
            esc(g.top_reason.as_deref().unwrap_or(""))
        );
    }
    h.push_str("</table></div>\n");
    if r.groups.len() > GROUPS_SHOWN {
        let _ = writeln!(
            h,
            "<p class=\"note\">{} more in bounce-report.json.</p>",
            r.groups.len() - GROUPS_SHOWN
        );
    }
    h.push_str("</section>\n");
}

fn reasons(h: &mut String, r: &BounceReport) {
    h.push_str("<section id=\"reasons\">\n<h2>Top reasons</h2>\n<table>\n<tr><th>kind</th><th>reason</th><th class=\"n\">records</th><th>what it means</th><th>what to do</th></tr>\n");
    for x in &r.top_reasons {
        let _ = writeln!(
            h,
            "<tr><td>{}</td><td><code>{}</code></td><td class=\"n\">{}</td><td>{}</td><td>{}</td></tr>",
            esc(x.kind),
            esc(&x.reason),
            x.count,
            esc(x.meaning.unwrap_or("")),
            esc(x.advice.unwrap_or(""))
        );
    }
    h.push_str("</table>\n</section>\n");
}

fn days(h: &mut String, r: &BounceReport) {
    let _ = write!(
        h,
        "<section id=\"days\">\n<h2>By day (UTC)</h2>\n<div class=\"scroll\"><table>\n<tr><th>day</th>{COUNT_HEADS}</tr>\n"
    );
    for d in &r.days {
        let _ = write!(h, "<tr><td class=\"nw\">{}</td>", esc(&d.date));
        counts_cells(h, &d.counts);
        h.push_str("</tr>\n");
    }
    h.push_str("</table></div>\n</section>\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bounce::report::{Builder, Outcome};
    use crate::bounce::{Action, Kind};

    #[test]
    fn hostile_values_render_as_text() {
        let mut b = Builder::new(GroupBy::Domain, None);
        let o = Outcome {
            recipient: "x@<script>.test",
            at: 1_793_923_200,
            kind: Kind::Hard,
            action: Action::Failed,
            reason: Some("<b>odd</b>"),
            remote_mta: None,
        };
        b.add(&o, None);
        let page = render(&b.finish(None), "/tmp/<store>");
        assert!(!page.contains("<script>") && !page.contains("<b>odd"));
        assert!(page.contains("&lt;script&gt;.test") && page.contains("&lt;b&gt;odd"));
        assert!(page.contains("/tmp/&lt;store&gt;"));
    }
}
