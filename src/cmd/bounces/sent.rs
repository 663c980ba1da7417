//! `--sent FILE…`: the list a campaign went to, usually prebounce's own output lists (valid.csv,
//! catch-all.csv …) or any CSV with the prebounce columns. Read once, keeping per distinct
//! address only what the report and the calibration need.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::bail;

use prebounce::input::detect::{email_header_index, sniff_delimiter};
use prebounce::input::find_column;
use prebounce::model::{Reason, Status};
use prebounce::store::suppression_entry;

/// What prebounce said of a sent address, when the list carries its columns.
#[derive(Debug, Clone, Copy)]
pub struct Prediction {
    pub status: Status,
    pub reason: Reason,
    pub bounce_p: f64,
}

#[derive(Debug, Default)]
pub struct SentList {
    /// By address key (as the store keys bounces): the prediction and the group, if any.
    pub rows: HashMap<String, (Option<Prediction>, Option<String>)>,
    /// Rows whose email cell holds no usable address.
    pub unusable: u64,
    /// Rows repeating an address already read (sent once).
    pub duplicates: u64,
}

impl SentList {
    /// Rows per group value ("unknown" for an empty cell).
    pub fn per_group(&self) -> HashMap<String, u64> {
        let mut out = HashMap::new();
        for (_, group) in self.rows.values() {
            let g = group.clone().unwrap_or_else(|| "unknown".into());
            *out.entry(g).or_default() += 1;
        }
        out
    }
}

/// Read the sent lists. `column` names the email column (else it is found by its header);
/// `group_column`, when given, must exist in every file.
pub fn read_sent(
    paths: &[PathBuf],
    column: Option<&str>,
    group_column: Option<&str>,
) -> anyhow::Result<SentList> {
    let mut list = SentList::default();
    for path in paths {
        // The cause in the message itself: the command prints an error's outer message only.
        read_one(path, column, group_column, &mut list)
            .map_err(|e| anyhow::anyhow!("sent list {}: {e:#}", path.display()))?;
    }
    Ok(list)
}

fn read_one(
    path: &Path,
    column: Option<&str>,
    group_column: Option<&str>,
    list: &mut SentList,
) -> anyhow::Result<()> {
    let bytes = std::fs::read(path)?;
    let delimiter = sniff_delimiter(&bytes[..bytes.len().min(64 * 1024)]);
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .flexible(true)
        .from_reader(bytes.as_slice());
    let names: Vec<String> = reader
        .byte_headers()?
        .iter()
        .map(|h| {
            String::from_utf8_lossy(h)
                .trim_start_matches('\u{feff}')
                .to_owned()
        })
        .collect();
    let email = match column {
        Some(c) => find_column(c, true, &names)?,
        None => match email_header_index(&names) {
            Some(i) => i,
            None => bail!("no email column in its header; name it with --column"),
        },
    };
    let named = |n: &str| names.iter().position(|h| h.trim() == n);
    let (status, reason, bounce_p) = (
        named("prebounce_status"),
        named("prebounce_reason"),
        named("prebounce_bounce_p"),
    );
    let group = group_column
        .map(|g| {
            find_column(g, true, &names).map_err(|_| {
                anyhow::anyhow!(
                    "no column {g:?} to group by (columns: {}); name another with --group-column",
                    names.join(", ")
                )
            })
        })
        .transpose()?;
    for row in reader.byte_records() {
        let row = row?;
        let text = |i: Option<usize>| {
            i.and_then(|i| row.get(i))
                .map(|c| String::from_utf8_lossy(c).trim().to_owned())
        };
        let Some(key) = text(Some(email))
            .and_then(|e| suppression_entry(&e).ok())
            .filter(|k| !k.starts_with('@'))
        else {
            list.unusable += 1;
            continue;
        };
        let prediction = (|| {
            let status = text(status)?;
            Some(Prediction {
                status: *Status::ALL.iter().find(|s| s.as_str() == status)?,
                reason: Reason::from_code(&text(reason)?)?,
                bounce_p: text(bounce_p)?
                    .parse()
                    .ok()
                    .filter(|p| (0.0..=1.0).contains(p))?,
            })
        })();
        let group = text(group).filter(|g| !g.is_empty());
        if list.rows.insert(key, (prediction, group)).is_some() {
            list.duplicates += 1;
        }
    }
    Ok(())
}
