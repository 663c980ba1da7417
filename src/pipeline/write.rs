//! Write stage (the run's own thread): the formatted rows into the lists, in input order; the
//! new dns-level and syntax-decided verdicts to the store writer; the tallies; the progress
//! bar.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::io::IsTerminal;
use std::time::Duration;

use crossbeam_channel::{Receiver, Sender};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::dns::DnsResolver;
use crate::grouping::DomainTally;
use crate::model::Status;
use crate::output::ListWriters;
use crate::output::summary::thousands;
use crate::store::{DnsVerdicts, Record, Write};
use crate::{Error, Level, ProgressMode};

use super::format::Serialized;
use super::tally::{Tally, merge_extras};
use super::{Checked, Failed};

/// changes.csv's header (the file is comma-separated whatever the lists' delimiter).
const CHANGES_HEADER: &[u8] =
    b"address,previous_status,previous_reason,previous_verified_at,status,reason\n";

/// What the write stage gathered over the run.
#[derive(Default)]
pub(super) struct Written {
    pub(super) tally: Tally,
    /// With --group-by: one tally per group id.
    pub(super) group_tallies: Vec<Tally>,
    pub(super) domains: DomainTally,
    /// `previous→new` status → rows, for summary.json.
    pub(super) transitions: BTreeMap<String, u64>,
    /// The domains whose dns-level verdict went to the store writer this run.
    domains_recorded: HashSet<Box<str>, ahash::RandomState>,
}

/// Where the write stage sends what it learnt besides the lists.
pub(super) struct WriteTargets<'a> {
    pub(super) store: Option<&'a Sender<Write>>,
    pub(super) bar: &'a ProgressBar,
    /// For the progress message.
    pub(super) resolver: Option<&'a DnsResolver>,
}

/// Writes chunks until the format stage ends. A list that cannot be written fails the run.
pub(super) fn write_stage(
    input: Receiver<(Vec<Serialized>, Checked)>,
    lists: &mut ListWriters,
    to: &WriteTargets,
    failed: &Failed,
) -> Result<Written, Error> {
    let mut written = Written::default();
    if to.store.is_some() {
        lists
            .open_changes(CHANGES_HEADER)
            .map_err(|e| failed.raise(e.into()))?;
    }
    for (mut batches, spent) in input {
        let mut new = NewVerdicts::default();
        for batch in &mut batches {
            for status in Status::ALL {
                lists
                    .write(status, &batch.lists[status.index()])
                    .map_err(|e| failed.raise(e.into()))?;
            }
            lists
                .write_changes(&batch.changes)
                .map_err(|e| failed.raise(e.into()))?;
            written.absorb(batch, &mut new);
        }
        if let (Some(tx), false) = (to.store, new.is_empty()) {
            // A closed channel: the writer failed; finishing it reports why.
            let _ = tx.send(Write::Verdicts {
                addresses: new.records,
                dns: new.dns_records,
                domains: new.domain_records,
            });
        }
        merge_extras(&batches, &mut written.domains, &mut written.group_tallies);
        // Progress is what has been written, so the ETA holds when DNS is the slow stage.
        to.bar.set_position(spent.chunk.input_end);
        to.bar
            .set_message(progress_message(&written.tally, to.resolver));
    }
    Ok(written)
}

/// A chunk's new verdicts for the store writer.
#[derive(Default)]
struct NewVerdicts {
    records: Vec<Record>,
    dns_records: Vec<DnsVerdicts>,
    domain_records: Vec<Record>,
}

impl NewVerdicts {
    fn is_empty(&self) -> bool {
        self.records.is_empty() && self.dns_records.is_empty()
    }
}

impl Written {
    /// A batch's tallies, changes and new verdicts (its lists are written already).
    fn absorb(&mut self, batch: &mut Serialized, new: &mut NewVerdicts) {
        self.tally.merge(&batch.tally);
        for first in batch.domain_firsts.drain(..) {
            let (key, reason) = batch.dns_records.get(first.record);
            let domain = key.rsplit_once('@').map_or("", |(_, d)| d);
            if !self.domains_recorded.contains(domain) {
                self.domains_recorded.insert(domain.into());
                new.domain_records.push(Record {
                    key: domain.to_owned(),
                    reason,
                    detail: first.detail,
                    mx: first.mx,
                    level: Level::Dns,
                    verified_at: batch.dns_records.verified_at(),
                    reply: None,
                });
            }
        }
        new.records.append(&mut batch.records);
        if !batch.dns_records.is_empty() {
            new.dns_records.push(std::mem::take(&mut batch.dns_records));
        }
        for (from, to) in &batch.transitions {
            *self.transitions.entry(format!("{from}→{to}")).or_default() += 1;
        }
    }
}

fn progress_message(tally: &Tally, resolver: Option<&DnsResolver>) -> String {
    let mut message = format!("{} rows", thousands(tally.rows));
    if let Some(resolver) = resolver {
        let s = resolver.stats();
        let _ = write!(
            message,
            " · {}/{} domains resolved · {} DNS queries",
            thousands(s.resolved_domains),
            thousands(s.unique_domains),
            thousands(s.queries)
        );
    }
    message
}

/// Progress on stderr: bytes of the input when its size is known, rows otherwise.
pub(super) fn progress_bar(mode: ProgressMode, total_bytes: Option<u64>) -> ProgressBar {
    let visible = match mode {
        ProgressMode::Always => true,
        ProgressMode::Never => false,
        ProgressMode::Auto => std::io::stderr().is_terminal(),
    };
    if !visible {
        return ProgressBar::hidden();
    }
    let bar = match total_bytes {
        Some(total) => ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
            .with_style(
                ProgressStyle::with_template(
                    "{spinner} {bar:30} {bytes}/{total_bytes} · {msg} · ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            ),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
            ProgressStyle::with_template("{spinner} {bytes} read · {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        ),
    };
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
