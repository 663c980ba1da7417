//! `prebounce bounces report`: bounce rates per day and per group from the store's records.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;

use prebounce::bounce::report::{BounceReport, Builder, GroupBy, Outcome};
use prebounce::output::{bounce_report, write_files};
use prebounce::store::Store;

use super::sent::read_sent;
use crate::cmd::StoreArgs;

#[derive(Clone, Copy, clap::ValueEnum)]
pub enum GroupByArg {
    /// The receiving provider (Google, Microsoft, Yahoo/AOL …): by the remote MTA a bounce
    /// names, else by the recipient's domain.
    Provider,
    Domain,
    /// The sent list's `source` column (--sent).
    Source,
    /// The sent list's `campaign` column (--sent).
    Campaign,
}

pub struct ReportArgs {
    pub since: Option<Duration>,
    pub group_by: GroupByArg,
    pub sent: Vec<PathBuf>,
    pub column: Option<String>,
    pub group_column: Option<String>,
    pub out: Option<PathBuf>,
    pub force: bool,
    pub json: bool,
    pub store: StoreArgs,
}

pub fn run(a: ReportArgs) -> anyhow::Result<()> {
    let group_by = match a.group_by {
        GroupByArg::Provider => GroupBy::Provider,
        GroupByArg::Domain => GroupBy::Domain,
        GroupByArg::Source => GroupBy::Source,
        GroupByArg::Campaign => GroupBy::Campaign,
    };
    let group_column = match (group_by, &a.group_column) {
        (_, Some(c)) => Some(c.clone()),
        (GroupBy::Source, None) => Some("source".to_owned()),
        (GroupBy::Campaign, None) => Some("campaign".to_owned()),
        _ => None,
    };
    if matches!(group_by, GroupBy::Source | GroupBy::Campaign) && a.sent.is_empty() {
        bail!("--group-by source and campaign read that column of the sent list: pass --sent FILE");
    }
    let sent = if a.sent.is_empty() {
        None
    } else {
        let column = matches!(group_by, GroupBy::Source | GroupBy::Campaign)
            .then_some(group_column.as_deref())
            .flatten();
        Some(read_sent(&a.sent, a.column.as_deref(), column)?)
    };
    let path = a.store.path()?;
    let store = Store::open_to_read(&path, a.store.access())?;
    let now = a.store.clock().now();
    let since = a
        .since
        .map(|d| now.saturating_sub(i64::try_from(d.as_secs()).unwrap_or(i64::MAX)));
    let mut builder = Builder::new(group_by, since);
    store.each_bounce(since.unwrap_or(i64::MIN), |b| {
        let outcome = Outcome {
            recipient: &b.recipient,
            at: b.event_at,
            kind: b.kind,
            action: b.action,
            reason: b.reason.as_deref(),
            remote_mta: b.remote_mta.as_deref(),
        };
        let list_group = sent
            .as_ref()
            .and_then(|s| s.rows.get(&b.recipient))
            .and_then(|(_, g)| g.as_deref());
        builder.add(&outcome, list_group);
        Ok(())
    })?;
    let per_group = sent.as_ref().map(|s| s.per_group());
    let report = builder.finish(
        sent.as_ref()
            .zip(per_group.as_ref())
            .map(|(s, g)| (s.rows.len() as u64, g)),
    );
    if let Some(dir) = &a.out {
        let json = serde_json::to_string_pretty(&report)?;
        let html = bounce_report::render(&report, &path.display().to_string());
        write_files(
            dir,
            a.force,
            &[
                ("bounce-report.html", html.as_bytes()),
                ("bounce-report.json", json.as_bytes()),
            ],
        )?;
    }
    if a.json {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", serde_json::to_string(&report)?)?;
        out.flush()?;
    }
    print_summary(&report, a.out.as_deref());
    Ok(())
}

/// The report's headline, its worst groups and findings on stderr.
fn print_summary(report: &BounceReport, out_dir: Option<&std::path::Path>) {
    let mut err = std::io::stderr().lock();
    let t = &report.totals;
    let rate =
        |r: Option<f64>| r.map_or_else(|| "unknown".into(), |r| format!("{:.2}%", 100.0 * r));
    let _ = writeln!(
        err,
        "prebounce: {} records since {}: hard {} · soft {} · block {} · complaint {} · delayed {} · delivered {}",
        report.records,
        report.since.as_deref().unwrap_or("the first"),
        t.hard,
        t.soft,
        t.block,
        t.complaint,
        t.delayed,
        t.delivered
    );
    let _ = writeln!(
        err,
        "  sent {}: bounce rate {}, hard-bounce rate {}{}",
        report
            .sent
            .map_or_else(|| "unknown".into(), |s| s.to_string()),
        rate(t.bounce_rate),
        rate(t.hard_rate),
        t.band.map_or_else(String::new, |b| format!(" ({b})"))
    );
    for g in report.groups.iter().take(5) {
        let _ = writeln!(
            err,
            "  {:<24} hard {:>6} · soft {:>6} · block {:>6} · bounce rate {}",
            g.group,
            g.counts.hard,
            g.counts.soft,
            g.counts.block,
            rate(g.counts.bounce_rate)
        );
    }
    for f in &report.findings {
        let _ = writeln!(err, "  ! {f}");
    }
    if let Some(dir) = out_dir {
        let _ = writeln!(
            err,
            "  report: {}, {}",
            dir.join("bounce-report.html").display(),
            dir.join("bounce-report.json").display()
        );
    }
}
