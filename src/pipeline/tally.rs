//! The run's tallies: what each row adds (counted in the format stage's batches, in
//! parallel) and how the batches fold into the run's, its domains' and its groups' figures.

use crate::forecast::{Forecast, PriorTable};
use crate::grouping::DomainTally;
use crate::model::Reason;
use crate::output::summary::StatusCounts;
use crate::syntax::{Address, Flags};

use super::RowCheck;
use super::format::Serialized;

/// What one row adds to the tallies: everything [`Tally::count`] needs, in 24 bytes, so the
/// per-group tallies can be fed from a compact array instead of the rows themselves.
#[derive(Clone, Copy)]
pub(super) struct Outcome {
    pub(super) reason: Reason,
    pub(super) flags: Flags,
    suggestion: bool,
    duplicate: bool,
    cross_group: bool,
    has_address: bool,
    sendable: bool,
    /// 1 + the index of the provider in the run's table; 0: none known.
    pub(super) provider: u16,
    pub(super) p: f64,
}

impl Outcome {
    pub(super) fn of(
        row: &RowCheck,
        reason: Reason,
        priors: &PriorTable,
        provider: Option<usize>,
    ) -> Outcome {
        let address = row.evidence.address();
        let mut flags = address.map_or(Flags::default(), |a| a.flags);
        if row.duplicate {
            flags.insert(Flags::DUPLICATE);
        }
        if row.ragged.is_some() {
            flags.insert(Flags::RAGGED_ROW);
        }
        if row.soft_bounced.is_some() {
            flags.insert(Flags::SOFT_BOUNCED);
        }
        Outcome {
            reason,
            flags,
            suggestion: address.and_then(Address::suggestion).is_some(),
            duplicate: row.duplicate,
            cross_group: row.cross_group,
            has_address: address.is_some(),
            sendable: row.sendable,
            provider: provider.map_or(0, |i| u16::try_from(i + 1).unwrap_or(0)),
            p: priors.bounce_p(reason, flags),
        }
    }
}

/// Running totals; per batch in parallel, merged in order. With --group-by, one per group too.
#[derive(Default)]
pub(super) struct Tally {
    pub(super) rows: u64,
    pub(super) unique: u64,
    pub(super) duplicates: u64,
    /// Of `duplicates`: repeats of an address first seen in another group (--group-by).
    pub(super) duplicates_across_groups: u64,
    pub(super) suggestions: u64,
    pub(super) status: StatusCounts,
    pub(super) reasons: [u64; Reason::ALL.len()],
    pub(super) flags: [u64; Flags::ALL.len()],
    pub(super) forecast: Forecast,
    /// Rows per provider, by 1 + its index in the run's table (0: none).
    pub(super) providers: Vec<u64>,
}

impl Tally {
    pub(super) fn count(&mut self, o: &Outcome) {
        let status = o.reason.status();
        self.rows += 1;
        self.status.add(status);
        self.reasons[o.reason.index()] += 1;
        for (i, (flag, _)) in Flags::ALL.iter().enumerate() {
            if o.flags.contains(*flag) {
                self.flags[i] += 1;
            }
        }
        if o.duplicate {
            self.duplicates += 1;
            if o.cross_group {
                self.duplicates_across_groups += 1;
            }
        } else if o.has_address {
            self.unique += 1;
        }
        if o.suggestion {
            self.suggestions += 1;
        }
        if o.sendable {
            self.forecast.add(status, o.reason, o.flags, o.p);
        }
        let p = usize::from(o.provider);
        if self.providers.len() <= p {
            self.providers.resize(p + 1, 0);
        }
        self.providers[p] += 1;
    }

    pub(super) fn merge(&mut self, o: &Tally) {
        self.rows += o.rows;
        self.unique += o.unique;
        self.duplicates += o.duplicates;
        self.duplicates_across_groups += o.duplicates_across_groups;
        self.suggestions += o.suggestions;
        self.status.merge(&o.status);
        for (a, b) in self.reasons.iter_mut().zip(o.reasons) {
            *a += b;
        }
        for (a, b) in self.flags.iter_mut().zip(o.flags) {
            *a += b;
        }
        self.forecast.merge(&o.forecast);
        if self.providers.len() < o.providers.len() {
            self.providers.resize(o.providers.len(), 0);
        }
        for (a, b) in self.providers.iter_mut().zip(&o.providers) {
            *a += b;
        }
    }
}

/// Rows per status at one domain, counted within a batch.
pub(super) type DomainCounts = [u64; 4];

/// Writer side: fold a chunk's batches into the run's domain tally and, with --group-by, the
/// group tallies. The batches counted while the rows were hot; this only merges a few entries
/// per batch and walks the compact group outcomes.
pub(super) fn merge_extras(
    batches: &[Serialized],
    domains: &mut DomainTally,
    groups: &mut Vec<Tally>,
) {
    for batch in batches {
        for (facts, counts) in &batch.domains {
            domains.add_counts(&facts.unicode, counts);
        }
        for (d, status) in &batch.malformed_domains {
            let mut counts = [0; 4];
            counts[status.index()] = 1;
            domains.add_counts(d, &counts);
        }
        for (g, outcome) in &batch.group_rows {
            let g = *g as usize;
            if g >= groups.len() {
                groups.resize_with(g + 1, Tally::default);
            }
            groups[g].count(outcome);
        }
    }
}
