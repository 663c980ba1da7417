//! summary.json and the short human summary on stderr.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::forecast::PredictedBounceRate;
use crate::model::Status;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StatusCounts {
    pub valid: u64,
    pub invalid: u64,
    #[serde(rename = "catch-all")]
    pub catch_all: u64,
    pub unknown: u64,
}

impl StatusCounts {
    pub fn add(&mut self, s: Status) {
        *self.get_mut(s) += 1;
    }
    pub fn merge(&mut self, o: &StatusCounts) {
        for s in Status::ALL {
            *self.get_mut(s) += o.get(s);
        }
    }
    pub fn get(&self, s: Status) -> u64 {
        match s {
            Status::Valid => self.valid,
            Status::Invalid => self.invalid,
            Status::CatchAll => self.catch_all,
            Status::Unknown => self.unknown,
        }
    }
    fn get_mut(&mut self, s: Status) -> &mut u64 {
        match s {
            Status::Valid => &mut self.valid,
            Status::Invalid => &mut self.invalid,
            Status::CatchAll => &mut self.catch_all,
            Status::Unknown => &mut self.unknown,
        }
    }
}

/// How the input was read, so a surprising result can be traced to a detection guess.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InputShape {
    pub path: String,
    pub delimiter: String,
    pub has_header: bool,
    pub email_column: String,
    /// 1-based: the name alone is ambiguous when several columns share it.
    pub email_column_number: usize,
    pub columns: usize,
    /// What the user should know about how the list was read (several columns of the name
    /// used), as printed on stderr.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub prebounce_version: &'static str,
    pub level: String,
    pub rows: u64,
    /// Distinct well-formed addresses (local part compared case-insensitively).
    pub unique_addresses: u64,
    /// Rows repeating an earlier row's address.
    pub duplicates: u64,
    pub status: StatusCounts,
    pub reasons: BTreeMap<String, u64>,
    pub flags: BTreeMap<String, u64>,
    /// Rows with a typo suggestion.
    pub suggestions: u64,
    pub predicted_bounce_rate: PredictedBounceRate,
    pub priors: String,
    pub input: InputShape,
    /// Rows per provider id (by the domain's preferred mail server: `google`, `microsoft365`
    /// …), for the rows whose provider is known.
    pub providers: BTreeMap<String, u64>,
    /// DNS work (absent at --level syntax).
    pub dns: Option<crate::dns::DnsStats>,
    /// SMTP work (only at --level smtp).
    pub smtp: Option<crate::smtp::probe::SmtpStats>,
    /// At --level smtp, when this machine turned out unable to reach port 25: why the
    /// mailboxes were not checked (the rows are finished at level dns).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mailboxes_not_checked: Option<MailboxesNotChecked>,
    /// The prober checks a --level smtp run did before probing, in the shape of `prebounce
    /// preflight --json` (`{"prober": {"egress_ip", "checks"}}`: verify checks no sender
    /// domain); absent with --no-preflight and other levels.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "as_preflight_object"
    )]
    pub preflight: Option<crate::preflight::ProberReport>,
    pub output_dir: String,
    /// When the run started, UTC (RFC 3339).
    pub started_at: String,
    pub elapsed_seconds: f64,
    /// Domains with the highest invalid and catch-all shares (for report.html).
    pub domains: DomainReport,
    /// The --group-by column (absent without --group-by).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_by: Option<GroupBy>,
    /// Every figure above, per value of the --group-by column, worst first (highest predicted
    /// bounce rate sending to all). Empty and absent without --group-by.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<GroupSummary>,
    /// The store this run used (absent with --no-store).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreSummary>,
    /// Addresses whose status changed since their previous verification (with a store).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub changes: Option<Changes>,
}

/// Why a --level smtp run checked no mailbox: port 25 could not be reached from this machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MailboxesNotChecked {
    /// The level the rows were finished at: `dns`.
    pub level_reached: String,
    /// `connections-failed` (the first mail servers of the run) or `preflight-port25`.
    pub cause: String,
    pub message: String,
    /// Mail servers (or preflight targets) that failed to connect, and how.
    pub servers_failed: u64,
    pub timed_out: u64,
    pub refused: u64,
}

impl MailboxesNotChecked {
    pub fn of(block: &crate::smtp::egress::EgressBlock) -> Self {
        let f = block.failures;
        MailboxesNotChecked {
            level_reached: crate::Level::Dns.as_str().to_owned(),
            cause: block.cause().to_owned(),
            message: block.message(),
            servers_failed: f.servers as u64,
            timed_out: f.timed_out as u64,
            refused: f.refused as u64,
        }
    }
}

/// The store's part in a run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StoreSummary {
    pub path: String,
    /// Rows answered from verdicts stored earlier (no network traffic for them).
    pub cached_rows: u64,
    /// New verdicts this run committed to the store.
    pub saved: u64,
    /// Whether the run resumed an interrupted run of the same command.
    pub resumed: bool,
    pub max_age_seconds: u64,
    pub fresh: bool,
}

/// Status changes since the previous verification; the rows are in changes.csv.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Changes {
    pub count: u64,
    /// `"valid→invalid": n`, …
    pub by_transition: BTreeMap<String, u64>,
    pub file: String,
}

/// The --group-by column and how its values were bucketed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupBy {
    /// The column's header (or `column_N` for a headerless list).
    pub column: String,
    /// 1-based; 0 for the computed `prebounce_provider`.
    pub column_number: usize,
    /// Distinct values kept as groups of their own (at most `max_groups`).
    pub distinct_values: u64,
    pub max_groups: usize,
    /// Whether values beyond `max_groups` were pooled into the "(other)" group.
    pub capped: bool,
}

/// What a group stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GroupKind {
    /// A value of the column.
    Value,
    /// The cell was empty or missing: "(empty)".
    Empty,
    /// The row could not be read, so neither could its group cell: "(unreadable)".
    Unreadable,
    /// Values first seen after the cap on distinct values: "(other)".
    Other,
}

impl GroupKind {
    /// The label of a special group.
    pub fn label(self) -> Option<&'static str> {
        match self {
            GroupKind::Value => None,
            GroupKind::Empty => Some("(empty)"),
            GroupKind::Unreadable => Some("(unreadable)"),
            GroupKind::Other => Some("(other)"),
        }
    }
}

/// Share of rows per status (0–1).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StatusShares {
    pub valid: f64,
    pub invalid: f64,
    #[serde(rename = "catch-all")]
    pub catch_all: f64,
    pub unknown: f64,
}

impl StatusShares {
    pub fn of(counts: &StatusCounts, rows: u64) -> Self {
        let share = |n: u64| {
            if rows == 0 {
                0.0
            } else {
                n as f64 / rows as f64
            }
        };
        StatusShares {
            valid: share(counts.valid),
            invalid: share(counts.invalid),
            catch_all: share(counts.catch_all),
            unknown: share(counts.unknown),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReasonCount {
    pub reason: String,
    pub rows: u64,
    /// Of the group's rows.
    pub share: f64,
}

/// All summary figures for one value of the --group-by column.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GroupSummary {
    /// The cell value (lossy UTF-8), or the label of a special group.
    pub value: String,
    pub kind: GroupKind,
    pub rows: u64,
    /// Addresses first seen in this group.
    pub unique_addresses: u64,
    /// `duplicates_within_group + duplicates_across_groups`.
    pub duplicates: u64,
    /// Repeats of an address first seen in this same group.
    pub duplicates_within_group: u64,
    /// Repeats of an address first seen in another group (a vendor reselling your own or
    /// another vendor's leads).
    pub duplicates_across_groups: u64,
    pub status: StatusCounts,
    pub status_share: StatusShares,
    pub reasons: BTreeMap<String, u64>,
    /// The (up to) three most frequent reasons of rows that are not valid: why the group is bad.
    pub top_reasons: Vec<ReasonCount>,
    pub flags: BTreeMap<String, u64>,
    pub suggestions: u64,
    pub predicted_bounce_rate: PredictedBounceRate,
}

/// Rows and shares of one domain.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DomainShare {
    pub domain: String,
    pub rows: u64,
    pub invalid: u64,
    #[serde(rename = "catch-all")]
    pub catch_all: u64,
    /// invalid / rows or catch-all / rows, by the list it is in.
    pub share: f64,
}

/// The per-domain tally behind the report's domain tables.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DomainReport {
    /// Distinct domains counted (at most `max_domains`).
    pub domains_counted: u64,
    pub max_domains: usize,
    /// Rows at domains first seen after the cap: not in the tables.
    pub rows_not_counted: u64,
    /// A domain needs this many rows to be listed.
    pub min_rows: u64,
    /// Highest invalid share first (ties: more rows first).
    pub top_invalid: Vec<DomainShare>,
    /// Highest catch-all share first.
    pub top_catch_all: Vec<DomainShare>,
}

pub(crate) fn pct(x: f64) -> String {
    format!("{:.2}%", x * 100.0)
}

/// Thousands separators: a person reads 1,204,331 faster than 1204331.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl Summary {
    /// The few lines a person needs: counts, the forecast with its band, where the files are.
    pub fn human(&self) -> String {
        let mut s = String::new();
        let st = &self.status;
        let _ = writeln!(
            s,
            "prebounce: {} rows at level {} in {:.2}s: valid {} · invalid {} · catch-all {} · unknown {}",
            thousands(self.rows),
            match &self.mailboxes_not_checked {
                Some(n) => format!(
                    "{} ({} asked, mailboxes not checked)",
                    n.level_reached, self.level
                ),
                None => self.level.clone(),
            },
            self.elapsed_seconds,
            thousands(st.valid),
            thousands(st.invalid),
            thousands(st.catch_all),
            thousands(st.unknown)
        );
        let flags: Vec<String> = self
            .flags
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{k} {}", thousands(*n)))
            .collect();
        let _ = writeln!(
            s,
            "  {} unique addresses, {} duplicates, {} typo suggestions{}{}",
            thousands(self.unique_addresses),
            thousands(self.duplicates),
            thousands(self.suggestions),
            if flags.is_empty() { "" } else { "; flags: " },
            flags.join(", ")
        );
        let mut reasons: Vec<(&String, &u64)> = self.reasons.iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let top: Vec<String> = reasons
            .iter()
            .take(6)
            .map(|(k, n)| format!("{k} {}", thousands(**n)))
            .collect();
        if !top.is_empty() {
            let _ = writeln!(s, "  reasons: {}", top.join(", "));
        }
        self.human_stages(&mut s);
        let f = &self.predicted_bounce_rate;
        let _ = writeln!(
            s,
            "  predicted bounce rate: {} sending to all ({}) · {} valid only · {} valid + catch-all",
            pct(f.all),
            f.band,
            pct(f.valid_only),
            pct(f.valid_and_catch_all)
        );
        if let (Some(g), Some(worst)) = (&self.group_by, self.groups.first()) {
            let _ = writeln!(
                s,
                "  {} groups by {}; worst: {} at {} sending to all ({}), table below",
                thousands(self.groups.len() as u64),
                g.column,
                worst.value,
                pct(worst.predicted_bounce_rate.all),
                worst.predicted_bounce_rate.band
            );
        }
        let _ = writeln!(
            s,
            "  lists: {dir}/valid.csv, invalid.csv, catch-all.csv, unknown.csv; report: {dir}/report.html; summary: {dir}/summary.json",
            dir = self.output_dir
        );
        s
    }

    /// The lines of the stages that ran: DNS, SMTP, the store and the changes it found.
    fn human_stages(&self, s: &mut String) {
        if let Some(d) = &self.dns {
            let _ = writeln!(
                s,
                "  dns: {} domains, {} queries, {} failed queries",
                thousands(d.unique_domains),
                thousands(d.queries),
                thousands(d.errors)
            );
        }
        if let Some(n) = &self.mailboxes_not_checked {
            // The message itself was printed when it happened.
            let _ = writeln!(
                s,
                "  mailboxes not checked: port 25 unreachable ({}, {} mail servers failed to connect); every row keeps its DNS verdict",
                n.cause,
                thousands(n.servers_failed)
            );
        }
        if let Some(m) = &self.smtp {
            let _ = writeln!(
                s,
                "  smtp: {} domains ({} catch-all), {} sessions, {} RCPT commands, {} deferred, {} hosts given up",
                thousands(m.domains),
                thousands(m.catch_all_domains),
                thousands(m.sessions),
                thousands(m.rcpt_commands),
                thousands(m.deferred),
                thousands(m.hosts_given_up)
            );
        }
        if let Some(st) = self.store.as_ref().filter(|_| self.level == "syntax") {
            let _ = writeln!(
                s,
                "  store: {} (at level syntax only its suppression list is read)",
                st.path
            );
        } else if let Some(st) = &self.store {
            let _ = writeln!(
                s,
                "  store: {} · {} rows answered from it (verified earlier){} · {} new verdicts saved",
                st.path,
                thousands(st.cached_rows),
                if st.resumed {
                    " · resumed an interrupted run"
                } else {
                    ""
                },
                thousands(st.saved)
            );
        }
        if let Some(c) = &self.changes
            && c.count > 0
        {
            let list: Vec<String> = c
                .by_transition
                .iter()
                .map(|(k, n)| format!("{k} {}", thousands(*n)))
                .collect();
            let _ = writeln!(
                s,
                "  changes since the previous verification: {} ({}), listed in {}",
                thousands(c.count),
                list.join(", "),
                c.file
            );
        }
    }
}

/// `{"prober": …}`, the object `prebounce preflight --json` prints (without its sender part).
fn as_preflight_object<S: serde::Serializer>(
    prober: &Option<crate::preflight::ProberReport>,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    #[derive(Serialize)]
    struct Preflight<'a> {
        prober: &'a crate::preflight::ProberReport,
    }
    match prober {
        Some(prober) => Preflight { prober }.serialize(serializer),
        None => serializer.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }

    #[test]
    fn status_counts_serialize_with_kebab_keys() {
        let mut c = StatusCounts::default();
        c.add(Status::CatchAll);
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(json, r#"{"valid":0,"invalid":0,"catch-all":1,"unknown":0}"#);
    }
}
