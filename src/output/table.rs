//! The per-group table printed on stderr with --group-by.
//!
//! Rendered with comfy-table rather than hand padding: it measures cells by display width
//! (a vendor called "Müller Bäckerei" or "営業" still lines up), it is actively maintained (a
//! major release in 2025, used by polars and nushell), and with its default `tty` feature off it
//! pulls in no terminal crate at all, only unicode-width and unicode-segmentation. tabled was
//! the other candidate; its derive-based API suits tables of structs, and ours is built row by
//! row from computed strings.

use comfy_table::{CellAlignment, ContentArrangement, Table, presets};

use super::summary::{GroupSummary, Summary, pct, thousands};

/// Groups shown on the terminal: the worst ones. All of them are in summary.json, and the
/// report lists hundreds.
pub const MAX_TABLE_ROWS: usize = 50;

/// Cells longer than this (a group value is untrusted input) are cut with an ellipsis, so one
/// wild value cannot push every other column off the screen.
const MAX_VALUE_CHARS: usize = 32;

fn clip(s: &str) -> String {
    // Control characters would move the cursor or break the alignment: show them as '?'.
    let cleaned: String = s
        .chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if cleaned.chars().count() <= MAX_VALUE_CHARS {
        cleaned
    } else {
        let mut cut: String = cleaned.chars().take(MAX_VALUE_CHARS - 1).collect();
        cut.push('…');
        cut
    }
}

fn count_and_share(n: u64, rows: u64) -> String {
    if n == 0 {
        "0".to_owned()
    } else {
        format!(
            "{} ({:.1}%)",
            thousands(n),
            n as f64 * 100.0 / rows.max(1) as f64
        )
    }
}

fn top_reason(g: &GroupSummary) -> String {
    match g.top_reasons.first() {
        Some(r) => format!("{} {}", r.reason, thousands(r.rows)),
        None => "-".to_owned(),
    }
}

/// The groups as an aligned table, worst first; None without --group-by. The catch-all and
/// unknown columns are left out when no group has any (always so at level syntax).
pub fn group_table(summary: &Summary) -> Option<String> {
    let group_by = summary.group_by.as_ref()?;
    let with_catch_all = summary.groups.iter().any(|g| g.status.catch_all > 0);
    let with_unknown = summary.groups.iter().any(|g| g.status.unknown > 0);
    let mut header = vec![clip(&group_by.column), "rows".into(), "invalid".into()];
    if with_catch_all {
        header.push("catch-all".into());
    }
    if with_unknown {
        header.push("unknown".into());
    }
    header.extend(
        [
            "dups in/across",
            "bounce (95% interval)",
            "band",
            "top problem",
            "role",
            "disp.",
            "free",
            "typos",
        ]
        .map(String::from),
    );
    let left: Vec<usize> = [0, header.len() - 6, header.len() - 5].into();
    let mut table = Table::new();
    table
        .load_style(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(header.clone());
    for g in summary.groups.iter().take(MAX_TABLE_ROWS) {
        let f = &g.predicted_bounce_rate;
        let flag = |name: &str| thousands(g.flags.get(name).copied().unwrap_or(0));
        let mut row = vec![
            clip(&g.value),
            thousands(g.rows),
            count_and_share(g.status.invalid, g.rows),
        ];
        if with_catch_all {
            row.push(count_and_share(g.status.catch_all, g.rows));
        }
        if with_unknown {
            row.push(count_and_share(g.status.unknown, g.rows));
        }
        row.extend([
            format!(
                "{}/{}",
                thousands(g.duplicates_within_group),
                thousands(g.duplicates_across_groups)
            ),
            format!(
                "{} ({:.1}–{:.1})",
                pct(f.all),
                f.interval_95.all.low * 100.0,
                f.interval_95.all.high * 100.0
            ),
            f.band.to_string(),
            top_reason(g),
            flag("role"),
            flag("disposable"),
            flag("free"),
            thousands(g.suggestions),
        ]);
        table.add_row(row);
    }
    for i in 1..header.len() {
        if let Some(c) = table.column_mut(i)
            && !left.contains(&i)
        {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    let mut out = format!(
        "by {}, worst first (bounce: predicted bounce rate sending to all; the interval is wider for smaller groups):\n",
        clip(&group_by.column)
    );
    out.push_str(&table.to_string());
    out.push('\n');
    if summary.groups.len() > MAX_TABLE_ROWS {
        out.push_str(&format!(
            "the {MAX_TABLE_ROWS} worst of {} groups; all of them are in summary.json\n",
            thousands(summary.groups.len() as u64)
        ));
    }
    if group_by.capped {
        out.push_str(&format!(
            "note: more than {} distinct values; rows of later values are pooled in (other)\n",
            thousands(group_by.max_groups as u64)
        ));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clipping_keeps_tables_narrow_and_inert() {
        assert_eq!(clip("acme"), "acme");
        assert_eq!(clip("a\u{1b}[31mb\n"), "a?[31mb?");
        let long = "x".repeat(100);
        let c = clip(&long);
        assert_eq!(c.chars().count(), MAX_VALUE_CHARS);
        assert!(c.ends_with('…'));
    }
}
