//! `prebounce bounces import PATH… --dry-run [--json]`: read bounce messages, mboxes and ESP
//! event exports and print what each says about its recipients. The decoding is the pure
//! `prebounce::bounce`; this file only finds the files, reads them and prints.
//!
//! Writing the records to the store (suppressions, soft-bounce counts) is not built yet, so
//! without `--dry-run` the command refuses rather than pretend to import.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use clap::Subcommand;
use serde_json::{Value, json};

use prebounce::bounce::{self, Container, Decoded, Record};

use super::Failure;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand)]
enum Action {
    /// Read bounces: .eml files, Unix mboxes, maildir or other folders (walked, symlinks not
    /// followed), and ESP event JSON (Amazon SES/SNS, SendGrid, Mailgun, Postmark); the kind
    /// of each file is told by its content.
    Import {
        #[arg(value_name = "PATH", required = true)]
        paths: Vec<PathBuf>,
        /// Print the records and change nothing (required for now: importing into the store
        /// is not available yet).
        #[arg(long)]
        dry_run: bool,
        /// One JSON object per record on stdout, then a last line {"summary": {…}}.
        #[arg(long)]
        json: bool,
    },
}

/// How many paths of each problem the summary names.
const EXAMPLES: usize = 5;

/// A file larger than this is not read: a bounce or an export of this size is a mistake, and
/// the decoder holds a file in memory.
const MAX_FILE_BYTES: u64 = 1 << 30;

pub fn run(args: Args) -> Result<(), Failure> {
    match args.action {
        Action::Import {
            paths,
            dry_run,
            json,
        } => {
            if !dry_run {
                return Err(Failure::usage(anyhow::anyhow!(
                    "importing bounces into the store is not available yet; run with --dry-run \
                     to see what the files hold (nothing is written)"
                )));
            }
            import_dry_run(&paths, json)
        }
    }
}

/// Problems met on the way: counted, with the first few paths.
#[derive(Default)]
struct Problems {
    count: u64,
    first: Vec<String>,
}

impl Problems {
    fn add(&mut self, what: String) {
        self.count += 1;
        if self.first.len() < EXAMPLES {
            self.first.push(what);
        }
    }

    fn json(&self) -> Value {
        json!({"count": self.count, "first": self.first})
    }
}

#[derive(Default)]
struct Summary {
    files: u64,
    messages: u64,
    records: u64,
    by_kind: BTreeMap<&'static str, u64>,
    by_reason: BTreeMap<&'static str, u64>,
    not_a_bounce: Problems,
    unparseable: Problems,
    unreadable: Problems,
    skipped_links: Problems,
}

fn import_dry_run(paths: &[PathBuf], as_json: bool) -> Result<(), Failure> {
    let mut summary = Summary::default();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut files = Vec::new();
    for path in paths {
        // A path named on the command line is read even through a link; inside a folder,
        // links are not followed (they could lead out of it, or loop).
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => walk(path, &mut files, &mut summary),
            Ok(_) => files.push(path.clone()),
            Err(e) => summary.unreadable.add(format!("{}: {e}", path.display())),
        }
    }
    for file in files {
        summary.files += 1;
        let name = file.display().to_string();
        let bytes = match read(&file) {
            Ok(b) => b,
            Err(e) => {
                summary.unreadable.add(format!("{name}: {e}"));
                continue;
            }
        };
        let numbered = bounce::detect(&bytes) == Container::Mbox;
        for (i, decoded) in bounce::decode(&bytes).into_iter().enumerate() {
            summary.messages += 1;
            let source = if numbered {
                format!("{name}#{}", i + 1)
            } else {
                name.clone()
            };
            match decoded {
                Decoded::Records(records) => {
                    for r in records {
                        summary.records += 1;
                        *summary.by_kind.entry(r.kind.as_str()).or_default() += 1;
                        *summary
                            .by_reason
                            .entry(r.reason.map_or("none", |r| r.as_str()))
                            .or_default() += 1;
                        print_record(&mut out, &source, &r, as_json).map_err(Failure::other)?;
                    }
                }
                Decoded::NotABounce => summary.not_a_bounce.add(source),
                Decoded::Unparseable => summary.unparseable.add(source),
            }
        }
    }
    let s = &summary;
    let object = json!({"summary": {
        "files": s.files,
        "messages": s.messages,
        "records": s.records,
        "by_kind": s.by_kind,
        "by_reason": s.by_reason,
        "not_a_bounce": s.not_a_bounce.json(),
        "unparseable": s.unparseable.json(),
        "unreadable": s.unreadable.json(),
        "skipped_links": s.skipped_links.json(),
        "dry_run": true,
    }});
    if as_json {
        writeln!(out, "{object}").map_err(Failure::other)?;
    }
    out.flush().map_err(Failure::other)?;
    let kinds: Vec<String> = s.by_kind.iter().map(|(k, n)| format!("{k} {n}")).collect();
    let _ = writeln!(
        std::io::stderr(),
        "prebounce: {} files, {} messages, {} records ({}); not a bounce {}, unparseable {}, \
         unreadable {}, links skipped {}; dry run: nothing written",
        s.files,
        s.messages,
        s.records,
        if kinds.is_empty() {
            "none".into()
        } else {
            kinds.join(", ")
        },
        s.not_a_bounce.count,
        s.unparseable.count,
        s.unreadable.count,
        s.skipped_links.count,
    );
    Ok(())
}

fn read(path: &Path) -> std::io::Result<Vec<u8>> {
    let size = std::fs::metadata(path)?.len();
    if size > MAX_FILE_BYTES {
        return Err(std::io::Error::other(format!(
            "{size} bytes, more than the {MAX_FILE_BYTES} this command reads"
        )));
    }
    std::fs::read(path)
}

/// The regular files below `dir`, sorted by path so runs print in the same order; symbolic
/// links are listed as skipped, never followed.
fn walk(dir: &Path, files: &mut Vec<PathBuf>, summary: &mut Summary) {
    let mut stack = vec![dir.to_path_buf()];
    let mut found = Vec::new();
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(e) => e,
            Err(e) => {
                summary.unreadable.add(format!("{}: {e}", d.display()));
                continue;
            }
        };
        for entry in entries {
            let entry = match entry {
                Ok(e) => e,
                Err(e) => {
                    summary.unreadable.add(format!("{}: {e}", d.display()));
                    continue;
                }
            };
            let path = entry.path();
            match entry.file_type() {
                Ok(t) if t.is_symlink() => summary.skipped_links.add(path.display().to_string()),
                Ok(t) if t.is_dir() => stack.push(path),
                Ok(t) if t.is_file() => found.push(path),
                Ok(_) => {}
                Err(e) => summary.unreadable.add(format!("{}: {e}", path.display())),
            }
        }
    }
    found.sort();
    files.extend(found);
}

fn print_record(
    out: &mut impl std::io::Write,
    file: &str,
    r: &Record,
    as_json: bool,
) -> std::io::Result<()> {
    if as_json {
        let object = json!({
            "file": file,
            "recipient": r.recipient,
            "status": r.status.map(|s| s.to_string()),
            "reply_code": r.reply_code,
            "diagnostic": r.diagnostic,
            "kind": r.kind.as_str(),
            "reason": r.reason.map(|r| r.as_str()),
            "action": r.action.as_str(),
            "date": r.date,
            "reporting_mta": r.reporting_mta,
            "remote_mta": r.remote_mta,
            "message_id": r.message_id,
            "feedback_type": r.feedback_type,
        });
        writeln!(out, "{object}")
    } else {
        writeln!(
            out,
            "{file}\t{}\t{}\t{}\t{}\t{}",
            r.recipient,
            r.kind.as_str(),
            r.reason.map_or("-", |r| r.as_str()),
            r.status.map_or_else(|| "-".to_owned(), |s| s.to_string()),
            r.reply_code
                .map_or_else(|| "-".to_owned(), |c| c.to_string()),
        )
    }
}
