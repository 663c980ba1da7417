//! The run's summary (summary.json, the human summary and report.html) from the write
//! stage's tallies and the stages' figures.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::VerifyConfig;
use crate::grouping::{GroupIndex, MAX_GROUPS};
use crate::input::Dialect;
use crate::model::{Reason, Status};
use crate::output::summary::{
    Changes, GroupBy, GroupSummary, InputShape, MailboxesNotChecked, ReasonCount, StatusShares,
    StoreSummary, Summary,
};
use crate::syntax::Flags;

use super::format::Dedup;
use super::tally::Tally;
use super::write::Written;

/// What the summary reports besides the tallies.
pub(super) struct RunFacts<'a> {
    pub(super) config: &'a VerifyConfig,
    pub(super) dialect: &'a Dialect,
    pub(super) dedup: &'a Dedup,
    pub(super) group_column: Option<usize>,
    pub(super) started: Instant,
    pub(super) started_at: String,
    pub(super) dns: Option<crate::dns::DnsStats>,
    pub(super) smtp: Option<crate::smtp::probe::SmtpStats>,
    /// At level smtp, when port 25 turned out unreachable (the rows finished at level dns).
    pub(super) egress_blocked: Option<crate::smtp::egress::EgressBlock>,
    /// The prober checks run before the SMTP stage.
    pub(super) preflight: Option<crate::preflight::ProberReport>,
    /// With a store: whether the run resumed an interrupted one.
    pub(super) resumed: Option<bool>,
    /// Rows answered from the store.
    pub(super) cached_rows: u64,
    /// Verdicts this run wrote to the store.
    pub(super) saved: u64,
}

pub(super) fn summarize(facts: RunFacts, written: Written) -> Summary {
    let RunFacts {
        config, dialect, ..
    } = facts;
    let Written {
        tally,
        group_tallies,
        domains,
        transitions,
        ..
    } = written;
    let (group_by, groups) = match (facts.dedup, facts.group_column) {
        (Dedup::Grouped { index, .. }, Some(column)) => (
            Some(group_by(index, column, dialect)),
            group_summaries(index, &group_tallies),
        ),
        _ => (None, Vec::new()),
    };
    Summary {
        prebounce_version: env!("CARGO_PKG_VERSION"),
        level: config.level.as_str().to_owned(),
        rows: tally.rows,
        unique_addresses: tally.unique,
        duplicates: tally.duplicates,
        reasons: reason_map(&tally),
        flags: flag_map(&tally),
        providers: provider_map(&tally, &config.providers),
        status: tally.status,
        suggestions: tally.suggestions,
        predicted_bounce_rate: tally.forecast.result(),
        priors: config.priors.source.clone(),
        input: input_shape(config, dialect),
        dns: facts.dns,
        smtp: facts.smtp,
        mailboxes_not_checked: facts.egress_blocked.as_ref().map(MailboxesNotChecked::of),
        preflight: facts.preflight,
        output_dir: config.out_dir.display().to_string(),
        started_at: facts.started_at,
        elapsed_seconds: facts.started.elapsed().as_secs_f64(),
        domains: domains.report(),
        group_by,
        groups,
        store: match (facts.resumed, &config.store) {
            (Some(resumed), Some(opts)) => Some(StoreSummary {
                path: opts.shown(),
                cached_rows: facts.cached_rows,
                saved: facts.saved,
                resumed,
                max_age_seconds: opts.max_age.as_secs(),
                fresh: opts.fresh,
            }),
            _ => None,
        },
        changes: facts.resumed.map(|_| Changes {
            count: transitions.values().sum(),
            by_transition: transitions,
            file: crate::output::CHANGES_FILE.to_owned(),
        }),
    }
}

fn input_shape(config: &VerifyConfig, dialect: &Dialect) -> InputShape {
    InputShape {
        path: config.input.describe(),
        delimiter: match dialect.delimiter {
            b'\t' => "\\t".to_owned(),
            d => (d as char).to_string(),
        },
        has_header: dialect.has_header,
        email_column: header_name(dialect, dialect.email_column),
        email_column_number: dialect.email_column + 1,
        columns: dialect.width,
        warnings: dialect.warnings.clone(),
    }
}

fn header_name(dialect: &Dialect, column: usize) -> String {
    dialect
        .header
        .get(column)
        .map(|h| String::from_utf8_lossy(h).into_owned())
        .unwrap_or_default()
}

fn group_by(index: &GroupIndex, column: usize, dialect: &Dialect) -> GroupBy {
    let computed = column == super::format::PROVIDER_GROUPING;
    GroupBy {
        column: if computed {
            "prebounce_provider".to_owned()
        } else {
            header_name(dialect, column)
        },
        // 0: a computed column, not one of the input's.
        column_number: if computed { 0 } else { column + 1 },
        distinct_values: index.distinct_values() as u64,
        max_groups: MAX_GROUPS,
        capped: index.capped(),
    }
}

fn reason_map(t: &Tally) -> BTreeMap<String, u64> {
    Reason::ALL
        .iter()
        .zip(t.reasons)
        .filter(|(_, n)| *n > 0)
        .map(|(r, n)| (r.as_str().to_owned(), n))
        .collect()
}

fn flag_map(t: &Tally) -> BTreeMap<String, u64> {
    Flags::ALL
        .iter()
        .zip(t.flags)
        .map(|((_, name), n)| ((*name).to_owned(), n))
        .collect()
}

/// The per-group figures, worst first: highest predicted bounce rate sending to all, then the
/// larger group, then by value.
fn group_summaries(index: &GroupIndex, tallies: &[Tally]) -> Vec<GroupSummary> {
    let mut groups: Vec<GroupSummary> = tallies
        .iter()
        .enumerate()
        .filter(|(_, t)| t.rows > 0)
        .map(|(id, t)| group_summary(index, id, t))
        .collect();
    groups.sort_by(|a, b| {
        b.predicted_bounce_rate
            .all
            .total_cmp(&a.predicted_bounce_rate.all)
            .then(b.rows.cmp(&a.rows))
            .then_with(|| a.value.cmp(&b.value))
    });
    groups
}

/// Rows per provider id; providers without rows are left out.
fn provider_map(
    tally: &Tally,
    table: &crate::model::provider::ProviderTable,
) -> BTreeMap<String, u64> {
    tally
        .providers
        .iter()
        .enumerate()
        .skip(1)
        .filter(|(_, rows)| **rows > 0)
        .filter_map(|(i, rows)| Some((table.providers().get(i - 1)?.id.clone(), *rows)))
        .collect()
}

fn group_summary(index: &GroupIndex, id: usize, t: &Tally) -> GroupSummary {
    let (kind, value) = index.name(id as u32);
    let mut problems: Vec<(Reason, u64)> = Reason::ALL
        .iter()
        .zip(t.reasons)
        .filter(|(r, n)| *n > 0 && r.status() != Status::Valid)
        .map(|(r, n)| (*r, n))
        .collect();
    problems.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    GroupSummary {
        value,
        kind,
        rows: t.rows,
        unique_addresses: t.unique,
        duplicates: t.duplicates,
        duplicates_within_group: t.duplicates - t.duplicates_across_groups,
        duplicates_across_groups: t.duplicates_across_groups,
        status_share: StatusShares::of(&t.status, t.rows),
        status: t.status.clone(),
        reasons: reason_map(t),
        top_reasons: problems
            .into_iter()
            .take(3)
            .map(|(r, n)| ReasonCount {
                reason: r.as_str().to_owned(),
                rows: n,
                share: n as f64 / t.rows as f64,
            })
            .collect(),
        flags: flag_map(t),
        suggestions: t.suggestions,
        predicted_bounce_rate: t.forecast.result(),
    }
}
