//! `prebounce suppress add|remove|import|export|list`: the suppression list, addresses and
//! domains that must never be mailed.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Subcommand;

use prebounce::store::{Store, date_of, suppression_entry};

use super::{Failure, StoreArgs};

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Subcommand)]
enum Action {
    /// Add an address, or a whole domain (@example.com or example.com).
    Add {
        #[arg(value_name = "ADDRESS|@DOMAIN|DOMAIN", required = true)]
        entries: Vec<String>,
        #[arg(long, value_name = "TEXT", default_value = "added by hand")]
        reason: String,
    },
    /// Remove entries.
    Remove {
        #[arg(value_name = "ADDRESS|@DOMAIN|DOMAIN", required = true)]
        entries: Vec<String>,
    },
    /// Add the entries of a CSV file: its `email` column (or its first column) and an optional
    /// `reason` column. A header row is recognised by those names.
    Import {
        #[arg(value_name = "CSV")]
        file: PathBuf,
        /// Reason for rows without one.
        #[arg(long, value_name = "TEXT", default_value = "imported")]
        reason: String,
    },
    /// Print the list as CSV (entry,reason,added_at) on standard output.
    Export,
    /// Print the list for a person.
    List,
}

pub fn run(args: Args) -> Result<(), Failure> {
    apply(args.action, &args.store).map_err(Failure::of_store_command)
}

fn apply(action: Action, store: &StoreArgs) -> anyhow::Result<()> {
    let path = store.path()?;
    // Listing only reads: a store this user may not write still answers.
    let mut store = match action {
        Action::Export | Action::List => Store::open_to_read(&path, store.access())?,
        _ => Store::open(&path, store.access())?,
    };
    let mut out = std::io::stdout().lock();
    match action {
        Action::Add { entries, reason } => {
            let entries = entries
                .iter()
                .map(|e| Ok((suppression_entry(e)?, reason.clone())))
                .collect::<Result<Vec<_>, prebounce::store::StoreError>>()?;
            let added = store.suppress(&entries)?;
            eprintln!(
                "prebounce: {added} added, {} already listed (reason updated)",
                entries.len() - added
            );
        }
        Action::Remove { entries } => {
            for e in entries {
                let entry = suppression_entry(&e)?;
                if !store.unsuppress(&entry)? {
                    anyhow::bail!("{entry} is not on the suppression list");
                }
            }
        }
        Action::Import { file, reason } => {
            let entries = read_suppression_csv(&file, &reason)?;
            let added = store.suppress(&entries)?;
            eprintln!(
                "prebounce: {} entries read, {added} added, {} already listed (reason updated)",
                entries.len(),
                entries.len() - added
            );
        }
        Action::Export => {
            let mut w = csv::Writer::from_writer(&mut out);
            w.write_record(["entry", "reason", "added_at"])?;
            for s in store.suppressions()? {
                w.write_record([s.entry.as_str(), &s.reason, &date_of(s.added_at)])?;
            }
            w.flush().context("cannot write to standard output")?;
        }
        Action::List => {
            let list = store.suppressions()?;
            for s in &list {
                writeln!(out, "{}  {}  {}", date_of(s.added_at), s.entry, s.reason)
                    .context("cannot write to standard output")?;
            }
            eprintln!(
                "prebounce: {} entries in {}",
                list.len(),
                store.path().display()
            );
        }
    }
    Ok(())
}

/// Entries of a suppression CSV: the `email` (or `entry`, `address`, `domain`) column, else
/// the first; the `reason` column when there is one. Every entry must be usable.
fn read_suppression_csv(
    path: &Path,
    default_reason: &str,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut r = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_path(path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let mut rows = r.records();
    let Some(first) = rows.next() else {
        return Ok(Vec::new());
    };
    let first = first.with_context(|| format!("cannot read {}", path.display()))?;
    let names: Vec<String> = first.iter().map(|c| c.trim().to_lowercase()).collect();
    let col = names
        .iter()
        .position(|n| ["email", "e-mail", "entry", "address", "domain"].contains(&n.as_str()));
    let reason_col = names.iter().position(|n| n == "reason");
    let header = col.is_some() || reason_col.is_some();
    let col = col.unwrap_or(0);
    let mut out = Vec::new();
    let mut add = |rec: &csv::StringRecord, line: u64| -> anyhow::Result<()> {
        let Some(cell) = rec.get(col).filter(|c| !c.trim().is_empty()) else {
            return Ok(());
        };
        let entry =
            suppression_entry(cell).with_context(|| format!("{} line {line}", path.display()))?;
        let reason = reason_col
            .and_then(|i| rec.get(i))
            .filter(|r| !r.trim().is_empty())
            .unwrap_or(default_reason);
        out.push((entry, reason.to_owned()));
        Ok(())
    };
    if !header {
        add(&first, 1)?;
    }
    for (i, rec) in rows.enumerate() {
        let rec = rec.with_context(|| format!("cannot read {}", path.display()))?;
        add(&rec, i as u64 + 2)?;
    }
    Ok(out)
}
