//! `prebounce bounces report`: bounce rates per day and per group (receiving provider, domain,
//! the list's source or campaign), hard vs soft vs block, the top reasons with what to do, and
//! the findings a sender acts on ("only Microsoft rejects you"). Pure: the command feeds it the
//! stored records and, when known, how many messages were sent.
//!
//! A delay is not counted as a bounce: the same message ends in a delivery or a failure of its
//! own. Rates need the number of messages sent: the sent list's rows (`--sent`), else the ESP
//! exports' final outcomes (delivered plus failed) when they hold deliveries; without either
//! the counts are reported and the rates are null. The band is the hard-bounce rate's, with the
//! thresholds of the forecast (0.3 %, 2 %, 5 %, 10 %), so it reads like `verify`'s prediction.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::{Action, Kind};
use crate::forecast::Band;
use crate::model::Reason;
use crate::model::provider::provider_of;
use crate::model::time::date_of;

/// What a report groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum GroupBy {
    /// The receiving provider (Google, Microsoft, Yahoo/AOL …), by the remote MTA a bounce
    /// names, else by the recipient's domain.
    Provider,
    /// The recipient's domain.
    Domain,
    /// The sent list's `source` column.
    Source,
    /// The sent list's `campaign` column.
    Campaign,
}

/// One stored record, as the report needs it.
#[derive(Debug, Clone)]
pub struct Outcome<'a> {
    pub recipient: &'a str,
    pub at: i64,
    pub kind: Kind,
    pub action: Action,
    pub reason: Option<&'a str>,
    pub remote_mta: Option<&'a str>,
}

/// Where the number of messages sent came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SentFrom {
    /// The rows of the sent list.
    SentList,
    /// The deliveries and failures in the imported events.
    Events,
}

/// Counts of one day, one group or the whole report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Counts {
    /// Messages sent, when known.
    pub sent: Option<u64>,
    pub hard: u64,
    pub soft: u64,
    pub block: u64,
    pub complaint: u64,
    pub delayed: u64,
    pub delivered: u64,
    pub auto_reply: u64,
    /// hard + soft + block over sent.
    pub bounce_rate: Option<f64>,
    pub hard_rate: Option<f64>,
    pub complaint_rate: Option<f64>,
    /// The band of the hard-bounce rate.
    pub band: Option<&'static str>,
}

impl Counts {
    fn add(&mut self, o: &Outcome<'_>) {
        match (o.kind, o.action) {
            (_, Action::Delayed) => self.delayed += 1,
            (Kind::Hard, _) => self.hard += 1,
            (Kind::Soft, _) => self.soft += 1,
            (Kind::Block, _) => self.block += 1,
            (Kind::Complaint, _) => self.complaint += 1,
            (Kind::Delivered, _) => self.delivered += 1,
            (Kind::AutoReply, _) => self.auto_reply += 1,
        }
    }

    pub fn bounced(&self) -> u64 {
        self.hard + self.soft + self.block
    }

    /// Messages with a final outcome in the events: each ends delivered or failed.
    fn outcomes(&self) -> u64 {
        self.delivered + self.bounced()
    }

    fn with_sent(mut self, sent: Option<u64>) -> Counts {
        // Fewer sent than bounced means the sent figure covers another send: no rate from it.
        let sent = sent.filter(|&s| s > 0 && s >= self.bounced());
        self.sent = sent;
        if let Some(s) = sent {
            let rate = |n: u64| n as f64 / s as f64;
            self.bounce_rate = Some(rate(self.bounced()));
            self.hard_rate = Some(rate(self.hard));
            self.complaint_rate = Some(rate(self.complaint));
            self.band = Some(Band::of(rate(self.hard)).as_str());
        }
        self
    }
}

/// One reason's count, with what it means and what to do.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReasonCount {
    pub kind: &'static str,
    pub reason: String,
    pub count: u64,
    pub meaning: Option<&'static str>,
    pub advice: Option<&'static str>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Day {
    pub date: String,
    #[serde(flatten)]
    pub counts: Counts,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    pub group: String,
    #[serde(flatten)]
    pub counts: Counts,
    /// The group's most frequent bounce reason.
    pub top_reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BounceReport {
    pub since: Option<String>,
    pub records: u64,
    pub sent: Option<u64>,
    pub sent_from: Option<SentFrom>,
    pub totals: Counts,
    /// Records by kind and reason: `{"hard": {"mailbox-not-found": 3}, …}`.
    pub by_reason: BTreeMap<&'static str, BTreeMap<String, u64>>,
    pub days: Vec<Day>,
    pub group_by: GroupBy,
    /// Worst first (by bounce rate when known, else by bounces).
    pub groups: Vec<Group>,
    pub top_reasons: Vec<ReasonCount>,
    /// Plain sentences: where blocks concentrate, bands crossed, complaint rates, spikes.
    pub findings: Vec<String>,
}

/// How many top reasons a report lists.
const TOP_REASONS: usize = 10;
/// A provider holding this share of the blocks (with at least [`MIN_BLOCKS`]) is where the
/// sender's reputation problem is.
const BLOCK_CONCENTRATION: f64 = 0.8;
const MIN_BLOCKS: u64 = 5;
/// Gmail asks bulk senders to stay below 0.1 % complaints (and never reach 0.3 %).
const COMPLAINT_GUIDANCE: f64 = 0.001;

/// Accumulates outcomes; [`Builder::finish`] makes the report.
pub struct Builder {
    group_by: GroupBy,
    since: Option<i64>,
    records: u64,
    totals: Counts,
    by_reason: BTreeMap<&'static str, BTreeMap<String, u64>>,
    days: BTreeMap<String, Counts>,
    groups: HashMap<String, (Counts, BTreeMap<String, u64>)>,
    blocks_by_provider: BTreeMap<String, u64>,
    providers_seen: BTreeMap<String, u64>,
}

/// The recipient's domain, lower case.
pub fn domain_of(recipient: &str) -> String {
    recipient
        .rsplit_once('@')
        .map_or("", |(_, d)| d)
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

/// The provider group of an outcome: a known provider, else "other".
pub fn provider_group(recipient: &str, remote_mta: Option<&str>) -> String {
    provider_of(&domain_of(recipient), remote_mta)
        .unwrap_or("other")
        .to_owned()
}

impl Builder {
    pub fn new(group_by: GroupBy, since: Option<i64>) -> Builder {
        Builder {
            group_by,
            since,
            records: 0,
            totals: Counts::default(),
            by_reason: BTreeMap::new(),
            days: BTreeMap::new(),
            groups: HashMap::new(),
            blocks_by_provider: BTreeMap::new(),
            providers_seen: BTreeMap::new(),
        }
    }

    /// Count one outcome. `list_group` is its address's value in the sent list's source or
    /// campaign column (the groups of those groupings; `unknown` when it has none).
    pub fn add(&mut self, o: &Outcome<'_>, list_group: Option<&str>) {
        self.records += 1;
        self.totals.add(o);
        self.days.entry(date_of(o.at)).or_default().add(o);
        // Every outcome's provider is needed for the findings: told once.
        let provider = provider_group(o.recipient, o.remote_mta);
        let group = match self.group_by {
            GroupBy::Provider => provider.clone(),
            GroupBy::Domain => domain_of(o.recipient),
            GroupBy::Source | GroupBy::Campaign => list_group.unwrap_or("unknown").to_owned(),
        };
        let (counts, reasons) = self.groups.entry(group).or_default();
        counts.add(o);
        let bounced =
            matches!(o.kind, Kind::Hard | Kind::Soft | Kind::Block) && o.action != Action::Delayed;
        if bounced {
            let reason = o.reason.unwrap_or("unrecognized").to_owned();
            *reasons.entry(reason.clone()).or_default() += 1;
            *self
                .by_reason
                .entry(o.kind.as_str())
                .or_default()
                .entry(reason)
                .or_default() += 1;
        } else if o.kind == Kind::Complaint {
            *self
                .by_reason
                .entry(o.kind.as_str())
                .or_default()
                .entry("complaint".into())
                .or_default() += 1;
        }
        if o.kind == Kind::Block && o.action != Action::Delayed {
            *self.blocks_by_provider.entry(provider.clone()).or_default() += 1;
        }
        *self.providers_seen.entry(provider).or_default() += 1;
    }

    /// The report. `sent_list` is the sent list's row count and its rows per group, when one
    /// was given; otherwise the events' own deliveries and failures stand in for it when they
    /// include deliveries.
    pub fn finish(self, sent_list: Option<(u64, &HashMap<String, u64>)>) -> BounceReport {
        let from_events = self.totals.delivered > 0;
        let sent_from = match sent_list {
            Some(_) => Some(SentFrom::SentList),
            None if from_events => Some(SentFrom::Events),
            None => None,
        };
        let sent_of = |group: Option<&str>, counts: &Counts| match (sent_list, group) {
            (Some((total, _)), None) => Some(total),
            (Some((_, by_group)), Some(g)) => by_group.get(g).copied(),
            (None, _) if from_events => Some(counts.outcomes()),
            (None, _) => None,
        };
        let totals = self.totals.clone().with_sent(sent_of(None, &self.totals));
        let days = self
            .days
            .into_iter()
            .map(|(date, c)| {
                // A sent list has no dates: a day's rate needs the events' deliveries.
                let sent = (sent_list.is_none() && from_events).then(|| c.outcomes());
                Day {
                    date,
                    counts: c.with_sent(sent),
                }
            })
            .collect::<Vec<_>>();
        let mut group_counts = self.groups;
        // A group of the sent list without any record took all its mail: it belongs in the
        // table with its zeros.
        if let Some((_, by_group)) = sent_list {
            for g in by_group.keys() {
                group_counts.entry(g.clone()).or_default();
            }
        }
        let mut groups: Vec<Group> = group_counts
            .into_iter()
            .map(|(group, (c, reasons))| {
                let sent = sent_of(Some(&group), &c);
                let top_reason = reasons
                    .iter()
                    .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
                    .map(|(r, _)| r.clone());
                Group {
                    counts: c.with_sent(sent),
                    group,
                    top_reason,
                }
            })
            .collect();
        groups.sort_by(|a, b| {
            let rate = |g: &Group| g.counts.bounce_rate.unwrap_or(-1.0);
            rate(b)
                .total_cmp(&rate(a))
                .then(b.counts.bounced().cmp(&a.counts.bounced()))
                .then(a.group.cmp(&b.group))
        });
        let mut top_reasons: Vec<ReasonCount> = self
            .by_reason
            .iter()
            .flat_map(|(kind, reasons)| {
                reasons.iter().map(move |(reason, &count)| {
                    let known = Reason::from_code(reason);
                    ReasonCount {
                        kind,
                        reason: reason.clone(),
                        count,
                        meaning: known.map(Reason::meaning),
                        advice: known.map(|r| r.advice().1),
                    }
                })
            })
            .collect();
        top_reasons.sort_by(|a, b| b.count.cmp(&a.count).then(a.reason.cmp(&b.reason)));
        top_reasons.truncate(TOP_REASONS);
        let findings = findings(
            &totals,
            &days,
            &self.blocks_by_provider,
            &self.providers_seen,
        );
        BounceReport {
            since: self.since.map(date_of),
            records: self.records,
            sent: totals.sent,
            sent_from: totals.sent.and(sent_from),
            totals,
            by_reason: self.by_reason,
            days,
            group_by: self.group_by,
            groups,
            top_reasons,
            findings,
        }
    }
}

fn pct(x: f64) -> String {
    format!("{:.2} %", 100.0 * x)
}

/// The sentences a sender acts on.
fn findings(
    totals: &Counts,
    days: &[Day],
    blocks_by_provider: &BTreeMap<String, u64>,
    providers_seen: &BTreeMap<String, u64>,
) -> Vec<String> {
    let mut out = Vec::new();
    let blocks: u64 = blocks_by_provider.values().sum();
    if blocks >= MIN_BLOCKS
        && let Some((provider, &n)) = blocks_by_provider.iter().max_by_key(|(_, n)| **n)
        && n as f64 >= BLOCK_CONCENTRATION * blocks as f64
        && provider != "other"
    {
        let others = providers_seen.keys().filter(|p| *p != provider).count();
        let only = if n == blocks && others > 0 {
            "only "
        } else {
            ""
        };
        out.push(format!(
            "{only}{provider} rejects you ({n} of {blocks} blocks) while {others} other receiving \
             group(s) take your mail: a reputation problem at {provider}, not a list problem; see \
             its postmaster pages"
        ));
    } else if blocks >= MIN_BLOCKS {
        out.push(format!(
            "{blocks} blocks spread over several providers: check your sending setup (SPF, DKIM, \
             DMARC, reverse DNS, blocklists: `prebounce preflight`)"
        ));
    }
    if let (Some(rate), Some(band)) = (totals.hard_rate, totals.band)
        && rate >= 0.02
    {
        out.push(format!(
            "hard bounces at {} ({band}): above the ~2 % at which Gmail and Outlook throttle or \
             block senders; verify the list before the next send",
            pct(rate)
        ));
    }
    if let Some(rate) = totals.complaint_rate
        && rate >= COMPLAINT_GUIDANCE
    {
        out.push(format!(
            "complaints at {}: above the 0.1 % Gmail asks bulk senders to stay under (0.3 % is \
             its hard limit)",
            pct(rate)
        ));
    }
    // A day with several times the usual bounces: a bad import or a provider's block.
    let mut per_day: Vec<u64> = days.iter().map(|d| d.counts.bounced()).collect();
    if per_day.len() >= 3 {
        per_day.sort_unstable();
        let median = per_day[per_day.len() / 2].max(1);
        for d in days {
            if d.counts.bounced() >= 10 && d.counts.bounced() >= 3 * median {
                out.push(format!(
                    "{}: {} bounces, {}× the median day",
                    d.date,
                    d.counts.bounced(),
                    d.counts.bounced() / median
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;
    const T0: i64 = 1_793_923_200; // 2026-11-06

    fn o<'a>(
        recipient: &'a str,
        at: i64,
        kind: Kind,
        reason: Option<&'a str>,
        mta: Option<&'a str>,
    ) -> Outcome<'a> {
        Outcome {
            recipient,
            at,
            kind,
            action: if kind == Kind::Delivered {
                Action::Delivered
            } else {
                Action::Failed
            },
            reason,
            remote_mta: mta,
        }
    }

    fn build(group_by: GroupBy, outcomes: &[Outcome<'_>]) -> Builder {
        let mut b = Builder::new(group_by, None);
        for x in outcomes {
            b.add(x, None);
        }
        b
    }

    #[test]
    fn without_deliveries_or_a_sent_list_there_are_counts_but_no_rates() {
        let r = build(
            GroupBy::Provider,
            &[
                o(
                    "a@gmail.com",
                    T0,
                    Kind::Hard,
                    Some("mailbox-not-found"),
                    None,
                ),
                o("b@x.test", T0, Kind::Soft, Some("mailbox-full"), None),
            ],
        )
        .finish(None);
        assert_eq!((r.totals.hard, r.totals.soft), (1, 1));
        assert_eq!(r.sent, None);
        assert_eq!(r.totals.bounce_rate, None);
        assert_eq!(r.sent_from, None);
        assert_eq!(r.by_reason["hard"]["mailbox-not-found"], 1);
        let names: Vec<&str> = r.groups.iter().map(|g| g.group.as_str()).collect();
        assert!(names.contains(&"Google") && names.contains(&"other"));
    }

    #[test]
    fn deliveries_give_the_rates_and_a_delay_is_not_a_bounce() {
        let mut all = vec![o(
            "h@x.test",
            T0,
            Kind::Hard,
            Some("mailbox-not-found"),
            None,
        )];
        let delivered: Vec<String> = (0..19).map(|i| format!("d{i}@x.test")).collect();
        all.extend(
            delivered
                .iter()
                .map(|r| o(r, T0, Kind::Delivered, Some("mailbox-accepted"), None)),
        );
        let mut delay = o("late@x.test", T0, Kind::Soft, Some("greylisted"), None);
        delay.action = Action::Delayed;
        all.push(delay);
        let r = build(GroupBy::Domain, &all).finish(None);
        assert_eq!(r.sent, Some(20));
        assert_eq!(r.sent_from, Some(SentFrom::Events));
        assert_eq!(r.totals.delayed, 1);
        assert_eq!(r.totals.hard_rate, Some(0.05));
        assert_eq!(r.totals.band, Some("critical"));
        assert_eq!(r.days.len(), 1);
        assert_eq!(r.days[0].counts.sent, Some(20));
        assert!(
            r.findings
                .iter()
                .any(|f| f.starts_with("hard bounces at 5.00 %"))
        );
    }

    #[test]
    fn a_sent_list_gives_rates_per_group_and_none_per_day() {
        let outcomes = [
            o("a@x.test", T0, Kind::Hard, Some("mailbox-not-found"), None),
            o("b@x.test", T0, Kind::Hard, Some("mailbox-not-found"), None),
            o("c@y.test", T0, Kind::Soft, Some("mailbox-full"), None),
        ];
        let mut b = Builder::new(GroupBy::Source, Some(T0 - 30 * DAY));
        for (x, g) in outcomes.iter().zip(["vendor-a", "vendor-a", "vendor-b"]) {
            b.add(x, Some(g));
        }
        let by_group: HashMap<String, u64> =
            [("vendor-a".to_owned(), 10), ("vendor-b".to_owned(), 90)].into();
        let r = b.finish(Some((100, &by_group)));
        assert_eq!(r.sent, Some(100));
        assert_eq!(r.sent_from, Some(SentFrom::SentList));
        assert_eq!(r.groups[0].group, "vendor-a");
        assert_eq!(r.groups[0].counts.hard_rate, Some(0.2));
        assert_eq!(r.groups[0].top_reason.as_deref(), Some("mailbox-not-found"));
        assert_eq!(r.groups[1].counts.bounce_rate, Some(1.0 / 90.0));
        assert_eq!(r.days[0].counts.sent, None);
        assert_eq!(r.since.as_deref(), Some("2026-10-07"));
    }

    #[test]
    fn blocks_at_one_provider_are_called_its_reputation_problem() {
        let mut all = Vec::new();
        let names: Vec<String> = (0..6).map(|i| format!("u{i}@corp.test")).collect();
        for n in &names {
            all.push(o(
                n,
                T0,
                Kind::Block,
                Some("prober-blocked"),
                Some("corp-test.mail.protection.outlook.com"),
            ));
        }
        all.push(o("g@gmail.com", T0, Kind::Delivered, None, None));
        let r = build(GroupBy::Provider, &all).finish(None);
        assert_eq!(r.groups[0].group, "Microsoft 365");
        assert!(
            r.findings
                .iter()
                .any(|f| f.starts_with("only Microsoft 365 rejects you (6 of 6 blocks)")),
            "{:?}",
            r.findings
        );
        let top = &r.top_reasons[0];
        assert_eq!(
            (top.kind, top.reason.as_str(), top.count),
            ("block", "prober-blocked", 6)
        );
        assert!(top.advice.is_some_and(|a| a.contains("sending setup")));
    }

    #[test]
    fn a_day_far_above_the_others_is_a_spike() {
        let mut all = Vec::new();
        let names: Vec<String> = (0..30).map(|i| format!("u{i}@x.test")).collect();
        for (i, n) in names.iter().enumerate() {
            let day = if i < 24 { 3 } else { (i % 3) as i64 };
            all.push(o(
                n,
                T0 + day * DAY,
                Kind::Hard,
                Some("mailbox-not-found"),
                None,
            ));
        }
        let r = build(GroupBy::Domain, &all).finish(None);
        assert_eq!(r.days.len(), 4);
        assert!(
            r.findings
                .iter()
                .any(|f| f.starts_with("2026-11-09: 24 bounces")),
            "{:?}",
            r.findings
        );
    }
}
