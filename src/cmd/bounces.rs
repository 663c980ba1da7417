//! `prebounce bounces import PATH… [--dry-run] [--json]`: read bounce messages, mboxes and ESP
//! event exports, keep every record in the store and suppress the addresses they condemn.
//! `bounces report` (report.rs) and `bounces calibrate` (calibrate.rs) read those records back. The
//! decoding and the rules (which soft bounces count, the sliding window) are the pure
//! `prebounce::bounce`; this file finds and reads the files, asks the rules and writes the store.
//!
//! What suppresses: a hard bounce and a complaint at once; soft bounces about the mailbox when
//! `--soft-limit` of them fall within `--soft-window` with no delivery after the first. A block
//! (the receiver refused the sender) never does: it says nothing about the address.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Subcommand;
use serde_json::{Value, json};

use prebounce::bounce::{self, Container, Decoded, Event, Kind, Record, SoftRule};
use prebounce::model::{Level, Reason};
use prebounce::store::{Store, StoredBounce, date_of, suppression_entry};

use super::{Failure, StoreArgs};

mod calibrate;
mod report;
mod sent;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand)]
enum Action {
    /// Read bounces: .eml files, Unix mboxes, maildir or other folders (walked, symlinks not
    /// followed), ESP event JSON (Amazon SES/SNS, SendGrid, Mailgun, Postmark) and CSV event
    /// exports (an `email` column, any of `status`/`code`, `diagnostic`/`reason`,
    /// `date`/`timestamp`, `type`, `id`); the kind of each file is told by its content.
    Import {
        #[arg(value_name = "PATH", required = true)]
        paths: Vec<PathBuf>,
        /// Print the records and change nothing.
        #[arg(long)]
        dry_run: bool,
        /// With --dry-run: one JSON object per record on stdout, then a last line
        /// {"summary": {…}}; without: that summary line alone.
        #[arg(long)]
        json: bool,
        /// Suppress an address after this many soft bounces about its mailbox (full,
        /// temporarily disabled) within --soft-window.
        #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
        soft_limit: u32,
        /// The window those soft bounces must fall within, e.g. 30d.
        #[arg(long, value_name = "DURATION", default_value = "30d", value_parser = super::parse_age)]
        soft_window: Duration,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Bounce rates per day and per group (receiving provider, domain, or the sent list's
    /// source or campaign): hard vs soft vs block, top reasons with what to do, where blocks
    /// concentrate. Rates need the messages sent: the ESP exports' deliveries, or --sent.
    Report {
        /// Only records of this last period, e.g. 30d; 0s for all.
        #[arg(long, value_name = "AGE", default_value = "30d", value_parser = super::parse_age)]
        since: Duration,
        #[arg(long, value_enum, default_value = "provider")]
        group_by: report::GroupByArg,
        /// The list(s) the campaign was sent to: its row count is the messages sent, and its
        /// source or campaign column the groups.
        #[arg(long, value_name = "FILE")]
        sent: Vec<PathBuf>,
        /// The sent list's email column: a header name or a 1-based number [default: detected].
        #[arg(short = 'c', long, value_name = "COLUMN")]
        column: Option<String>,
        /// The sent list's column for --group-by source or campaign [default: that name].
        #[arg(long, value_name = "COLUMN")]
        group_column: Option<String>,
        /// Write bounce-report.html and bounce-report.json into this folder.
        #[arg(short = 'o', long = "out", value_name = "DIR")]
        out: Option<PathBuf>,
        /// Write into an output folder another user owns.
        #[arg(long)]
        force: bool,
        /// Print the report as one JSON object on stdout.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Compare the forecast with what really bounced: the observed hard-bounce rate per
    /// prebounce status and reason against the predicted one, with 95 % intervals, a
    /// reliability table and the Brier score; then fit priors for `verify --priors`.
    Calibrate {
        /// The list(s) that were sent after verification: prebounce's output lists (valid.csv,
        /// catch-all.csv …) or any CSV with its prebounce_* columns.
        #[arg(long, value_name = "FILE", required = true)]
        sent: Vec<PathBuf>,
        /// The email column: a header name or a 1-based number [default: detected].
        #[arg(short = 'c', long, value_name = "COLUMN")]
        column: Option<String>,
        /// The priors the sent list was verified with [default: the built-in ones].
        #[arg(long, value_name = "FILE")]
        priors: Option<PathBuf>,
        /// Write the fitted priors (TOML, with the evidence each rests on) to this file.
        #[arg(long, value_name = "FILE")]
        write_priors: Option<PathBuf>,
        /// How many sends a prior counts as against the observed outcomes.
        #[arg(long, value_name = "N", default_value_t = 100.0, value_parser = parse_strength)]
        prior_strength: f64,
        /// Print the calibration as one JSON object on stdout.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
}

fn parse_strength(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(n) if n.is_finite() && n >= 0.0 => Ok(n),
        _ => Err("a number of sends, 0 or more".into()),
    }
}

/// How many paths of each problem the summary names.
const EXAMPLES: usize = 5;

/// A file read whole (a message, a JSON or CSV export) larger than this is not read: one of
/// this size is a mistake, and the decoder holds it in memory. An mbox is read message by
/// message, whatever its size.
const MAX_FILE_BYTES: u64 = 1 << 30;

pub fn run(args: Args) -> Result<(), Failure> {
    match args.action {
        Action::Import {
            paths,
            dry_run: true,
            json,
            ..
        } => import_dry_run(&paths, json),
        Action::Import {
            paths,
            dry_run: false,
            json,
            soft_limit,
            soft_window,
            store,
        } => {
            let rule = SoftRule {
                limit: soft_limit as usize,
                window: i64::try_from(soft_window.as_secs()).unwrap_or(i64::MAX),
            };
            import(&paths, json, rule, &store).map_err(Failure::of_store_command)
        }
        Action::Report {
            since,
            group_by,
            sent,
            column,
            group_column,
            out,
            force,
            json,
            store,
        } => report::run(report::ReportArgs {
            since: (!since.is_zero()).then_some(since),
            group_by,
            sent,
            column,
            group_column,
            out,
            force,
            json,
            store,
        })
        .map_err(Failure::of_store_command),
        Action::Calibrate {
            sent,
            column,
            priors,
            write_priors,
            prior_strength,
            json,
            store,
        } => calibrate::run(calibrate::CalibrateArgs {
            sent,
            column,
            priors,
            write_priors,
            strength: prior_strength,
            json,
            store,
        })
        .map_err(Failure::of_store_command),
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

impl Summary {
    fn json(&self) -> serde_json::Map<String, Value> {
        let object = json!({
            "files": self.files,
            "messages": self.messages,
            "records": self.records,
            "by_kind": self.by_kind,
            "by_reason": self.by_reason,
            "not_a_bounce": self.not_a_bounce.json(),
            "unparseable": self.unparseable.json(),
            "unreadable": self.unreadable.json(),
            "skipped_links": self.skipped_links.json(),
        });
        match object {
            Value::Object(m) => m,
            _ => unreachable!("json! of an object literal is an object"),
        }
    }

    /// The first part of the stderr line: what was read.
    fn read_line(&self) -> String {
        let kinds: Vec<String> = self
            .by_kind
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        format!(
            "{} files, {} messages, {} records ({}); not a bounce {}, unparseable {}, \
             unreadable {}, links skipped {}",
            self.files,
            self.messages,
            self.records,
            if kinds.is_empty() {
                "none".into()
            } else {
                kinds.join(", ")
            },
            self.not_a_bounce.count,
            self.unparseable.count,
            self.unreadable.count,
            self.skipped_links.count,
        )
    }

    /// The first few paths of each problem, one line each, for people.
    fn problem_lines(&self) -> Vec<String> {
        [
            ("not a bounce", &self.not_a_bounce),
            ("unparseable", &self.unparseable),
            ("unreadable", &self.unreadable),
        ]
        .into_iter()
        .filter(|(_, p)| p.count > 0)
        .map(|(what, p)| format!("{what}: {}", p.first.join(", ")))
        .collect()
    }
}

/// One record as read, with where it came from and the key that makes it the same record on a
/// second import.
struct Read {
    source: String,
    key: String,
    record: Record,
}

/// Read every input and hand each record to `each`, tallying the summary. The key of a record:
/// `mid:` and its message's Message-ID; for a message without one, `hash:` and a hash of the
/// message's bytes; for an ESP event, `event:` and its id with the action (an ESP may give a
/// delivery and a bounce of one message the same message id); for an event without an id,
/// the file's hash and the record's position in it.
fn read_all<E>(
    paths: &[PathBuf],
    summary: &mut Summary,
    mut each: impl FnMut(Read) -> Result<(), E>,
) -> Result<(), E> {
    let mut files = Vec::new();
    for path in paths {
        // A path named on the command line is read even through a link; inside a folder,
        // links are not followed (they could lead out of it, or loop).
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => walk(path, &mut files, summary),
            Ok(_) => files.push(path.clone()),
            Err(e) => summary.unreadable.add(format!("{}: {e}", path.display())),
        }
    }
    for file in files {
        summary.files += 1;
        let name = file.display().to_string();
        let mut message = |i: usize, container: Container, hash: u64, decoded: Decoded| {
            summary.messages += 1;
            let source = if container == Container::Mbox {
                format!("{name}#{}", i + 1)
            } else {
                name.clone()
            };
            match decoded {
                Decoded::Records(records) => {
                    for (n, r) in records.into_iter().enumerate() {
                        summary.records += 1;
                        *summary.by_kind.entry(r.kind.as_str()).or_default() += 1;
                        *summary
                            .by_reason
                            .entry(r.reason.map_or("none", |r| r.as_str()))
                            .or_default() += 1;
                        each(Read {
                            source: source.clone(),
                            key: record_key(&r, container, hash, n),
                            record: r,
                        })?;
                    }
                }
                Decoded::NotABounce => summary.not_a_bounce.add(source),
                Decoded::Unparseable => summary.unparseable.add(source),
            }
            Ok(())
        };
        match read_input(&file, &mut message) {
            Ok(result) => result?,
            Err(e) => summary.unreadable.add(format!("{name}: {e}")),
        }
    }
    Ok(())
}

/// How much of a file is looked at to tell what it holds.
const SNIFF_BYTES: usize = 64 * 1024;

/// Hand each message of a file to `message` (its index, the file's shape, the hash of its
/// bytes, what it decoded to). An mbox with LF or CRLF line ends is read line by line, so a
/// file of any size costs one message's memory; anything else is read whole (a single message,
/// a JSON or CSV export, an mbox with bare-CR line ends), up to [`MAX_FILE_BYTES`]. An I/O
/// error is the outer one; the inner is `message`'s own.
fn read_input<E>(
    path: &Path,
    message: &mut impl FnMut(usize, Container, u64, Decoded) -> Result<(), E>,
) -> std::io::Result<Result<(), E>> {
    use std::io::{BufRead as _, Read as _};
    let file = std::fs::File::open(path)?;
    let size = file.metadata()?.len();
    let mut reader = std::io::BufReader::with_capacity(SNIFF_BYTES, file);
    let head = reader.fill_buf()?;
    let streamable = bounce::detect(head) == Container::Mbox && head.contains(&b'\n');
    if !streamable {
        if size > MAX_FILE_BYTES {
            return Err(std::io::Error::other(format!(
                "{size} bytes, more than the {MAX_FILE_BYTES} this command reads"
            )));
        }
        let mut bytes = Vec::with_capacity(size as usize);
        reader.read_to_end(&mut bytes)?;
        let container = bounce::detect(&bytes);
        for (i, (hash, decoded)) in decode_file(&bytes, container).into_iter().enumerate() {
            if let Err(e) = message(i, container, hash, decoded) {
                return Ok(Err(e));
            }
        }
        return Ok(Ok(()));
    }
    let mut mbox = bounce::MboxReader::new();
    let mut line = Vec::new();
    let mut index = 0;
    let mut decode = |m: Vec<u8>, index: &mut usize| {
        let r = message(
            *index,
            Container::Mbox,
            bounce::content_hash(&m),
            bounce::decode_message(&m),
        );
        *index += 1;
        r
    };
    loop {
        line.clear();
        // A line is read at most a message's worth at a time: the reader takes the pieces.
        let n = (&mut reader)
            .take(bounce::MAX_MESSAGE_BYTES as u64)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            break;
        }
        if let Some(m) = mbox.line(&line)
            && let Err(e) = decode(m, &mut index)
        {
            return Ok(Err(e));
        }
    }
    if let Some(m) = mbox.finish()
        && let Err(e) = decode(m, &mut index)
    {
        return Ok(Err(e));
    }
    Ok(Ok(()))
}

/// Each message of a file with the hash of its bytes (its key when it has no Message-ID).
fn decode_file(bytes: &[u8], container: Container) -> Vec<(u64, Decoded)> {
    match container {
        Container::Json => vec![(bounce::content_hash(bytes), bounce::decode_json(bytes))],
        Container::Csv => vec![(bounce::content_hash(bytes), bounce::decode_csv(bytes))],
        Container::Mbox => bounce::split_mbox(bytes)
            .iter()
            .map(|m| (bounce::content_hash(m), bounce::decode_message(m)))
            .collect(),
        Container::Message => vec![(bounce::content_hash(bytes), bounce::decode_message(bytes))],
    }
}

/// The key that makes a record the same record on a second import (see [`read_all`]); `n` is
/// its position among its message's records.
fn record_key(r: &Record, container: Container, hash: u64, n: usize) -> String {
    match (&r.message_id, container) {
        (Some(id), Container::Json | Container::Csv) => {
            format!("event:{id}:{}", r.action.as_str())
        }
        (Some(id), _) => format!("mid:{id}"),
        (None, Container::Json | Container::Csv) => format!("hash:{hash:016x}:{n}"),
        (None, _) => format!("hash:{hash:016x}"),
    }
}

fn import_dry_run(paths: &[PathBuf], as_json: bool) -> Result<(), Failure> {
    let mut summary = Summary::default();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    read_all(paths, &mut summary, |read| {
        print_record(&mut out, &read.source, &read.record, as_json).map_err(Failure::other)
    })?;
    let mut object = summary.json();
    object.insert("dry_run".into(), true.into());
    if as_json {
        writeln!(out, "{}", json!({ "summary": object })).map_err(Failure::other)?;
    }
    out.flush().map_err(Failure::other)?;
    let _ = writeln!(
        std::io::stderr(),
        "prebounce: {}; dry run: nothing written",
        summary.read_line()
    );
    Ok(())
}

/// Records are written to the store in transactions of this many: a crash loses at most the
/// last batch, which the next import of the same files writes again.
const BATCH: usize = 5_000;

/// Why an address is suppressed, in the order that decides (a hard bounce is the strongest
/// evidence).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Cause {
    Hard,
    Complaint,
    Soft,
}

/// What the import did to the store.
#[derive(Default)]
struct Changes {
    new_records: u64,
    undated: u64,
    unusable_recipients: Problems,
    added: BTreeMap<&'static str, u64>,
    already_suppressed: u64,
    soft_below_limit: u64,
    blocks_by_domain: BTreeMap<String, u64>,
}

/// The addresses an import read: those with a hard bounce or a complaint (with its row, the
/// evidence), and those with any record (whose soft count is worked out again).
#[derive(Default)]
struct Touched {
    condemned: BTreeMap<String, (Cause, StoredBounce)>,
    all: BTreeSet<String>,
}

impl Changes {
    /// How many suppressions of this cause ("hard", "complaint", "soft") were added.
    fn added_of(&self, cause: &str) -> u64 {
        self.added.get(cause).copied().unwrap_or(0)
    }
}

fn import(
    paths: &[PathBuf],
    as_json: bool,
    rule: SoftRule,
    store_args: &StoreArgs,
) -> anyhow::Result<()> {
    // Opened first: a path that is not a prebounce store stops the command before any work.
    let path = store_args.path()?;
    let mut store = Store::open(&path, store_args.access())?;
    let now = store_args.clock().now();
    let mut summary = Summary::default();
    let mut changes = Changes::default();
    let touched = store_records(paths, &mut store, now, &mut summary, &mut changes)?;
    let added = suppress(&mut store, &touched, rule, &mut changes)?;
    if as_json {
        let object = import_json(&summary, &changes, added, rule, &store);
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", json!({ "summary": object }))?;
        out.flush()?;
    }
    print_import(&summary, &changes, added, &store);
    Ok(())
}

/// Read every input and write its records to the store in batches; what was read and which
/// addresses it touched.
fn store_records(
    paths: &[PathBuf],
    store: &mut Store,
    now: i64,
    summary: &mut Summary,
    changes: &mut Changes,
) -> anyhow::Result<Touched> {
    let mut touched = Touched::default();
    let mut batch = Vec::new();
    let flush = |batch: &mut Vec<StoredBounce>, store: &mut Store| -> anyhow::Result<u64> {
        let n = store.add_bounces(batch)?;
        batch.clear();
        Ok(n as u64)
    };
    read_all(paths, summary, |read| {
        let r = &read.record;
        let event_at = r.date.as_deref().and_then(bounce::event_time);
        changes.undated += u64::from(event_at.is_none());
        // Only an address (not a domain, not garbage) can be suppressed.
        let key = suppression_entry(&r.recipient)
            .ok()
            .filter(|k| !k.starts_with('@'));
        if key.is_none() {
            changes
                .unusable_recipients
                .add(format!("{}: {:?}", read.source, r.recipient));
        }
        let kind = r.kind;
        let row = stored_row(read, key.as_deref(), event_at, now);
        if kind == Kind::Block
            && let Some((_, domain)) = row.recipient.rsplit_once('@')
        {
            *changes
                .blocks_by_domain
                .entry(domain.to_owned())
                .or_default() += 1;
        }
        if let Some(key) = key {
            let cause = match kind {
                Kind::Hard => Some(Cause::Hard),
                Kind::Complaint => Some(Cause::Complaint),
                _ => None,
            };
            if let Some(cause) = cause {
                let stronger = touched.condemned.get(&key).is_none_or(|(c, _)| cause < *c);
                if stronger {
                    touched.condemned.insert(key.clone(), (cause, row.clone()));
                }
            }
            touched.all.insert(key);
        }
        batch.push(row);
        if batch.len() >= BATCH {
            changes.new_records += flush(&mut batch, store)?;
        }
        anyhow::Ok(())
    })?;
    changes.new_records += flush(&mut batch, store)?;
    Ok(touched)
}

/// The store's row of a record: under its suppression key when it has one, dated at the
/// import's time when it carries no readable date.
fn stored_row(read: Read, key: Option<&str>, event_at: Option<i64>, now: i64) -> StoredBounce {
    let r = read.record;
    StoredBounce {
        source_key: read.key,
        recipient: key.map_or_else(|| r.recipient.trim().to_lowercase(), str::to_owned),
        event_at: event_at.unwrap_or(now),
        dated: event_at.is_some(),
        kind: r.kind,
        reason: r.reason.map(|x| x.as_str().to_owned()),
        counts_soft: bounce::counts_toward_soft_limit(&r),
        status: r.status.map(|s| s.to_string()),
        reply_code: r.reply_code,
        diagnostic: r.diagnostic,
        source: read.source,
        message_id: r.message_id,
        remote_mta: r.remote_mta,
        action: r.action,
    }
}

/// The suppressions: listed entries (the address or its whole domain) are left alone, so a
/// second import of the same files, or an address someone listed with a reason of their own,
/// changes nothing. How many were added.
fn suppress(
    store: &mut Store,
    touched: &Touched,
    rule: SoftRule,
    changes: &mut Changes,
) -> anyhow::Result<usize> {
    let listed: HashSet<String> = store.suppressions()?.into_iter().map(|s| s.entry).collect();
    let is_listed = |key: &str| {
        listed.contains(key)
            || key
                .rsplit_once('@')
                .is_some_and(|(_, d)| listed.contains(&format!("@{d}")))
    };
    let mut entries: Vec<(String, String, Cause)> = Vec::new();
    for key in &touched.all {
        let decided = match touched.condemned.get(key) {
            Some((cause, row)) => Some((*cause, evidence(*cause, row))),
            None => soft_decision(store, key, rule, changes)?,
        };
        let Some((cause, reason)) = decided else {
            continue;
        };
        if is_listed(key) {
            changes.already_suppressed += 1;
        } else {
            entries.push((key.clone(), reason, cause));
        }
    }
    for (_, _, cause) in &entries {
        let name = match cause {
            Cause::Hard => "hard",
            Cause::Complaint => "complaint",
            Cause::Soft => "soft",
        };
        *changes.added.entry(name).or_default() += 1;
    }
    let pairs: Vec<(String, String)> = entries.into_iter().map(|(k, r, _)| (k, r)).collect();
    Ok(store.suppress_new(&pairs)?)
}

/// The `--json` summary of an import.
fn import_json(
    summary: &Summary,
    c: &Changes,
    added: usize,
    rule: SoftRule,
    store: &Store,
) -> serde_json::Map<String, Value> {
    let mut object = summary.json();
    object.insert("dry_run".into(), false.into());
    object.insert("new_records".into(), c.new_records.into());
    object.insert(
        "records_already_stored".into(),
        (summary.records - c.new_records).into(),
    );
    object.insert("undated".into(), c.undated.into());
    object.insert("unusable_recipients".into(), c.unusable_recipients.json());
    object.insert(
        "suppressions_added".into(),
        json!({
            "total": added,
            "hard": c.added_of("hard"),
            "complaint": c.added_of("complaint"),
            "soft": c.added_of("soft"),
        }),
    );
    object.insert("soft_limit_crossed".into(), c.added_of("soft").into());
    object.insert("soft_below_limit".into(), c.soft_below_limit.into());
    object.insert("already_suppressed".into(), c.already_suppressed.into());
    object.insert("blocks_by_domain".into(), json!(c.blocks_by_domain));
    object.insert(
        "soft_rule".into(),
        json!({"limit": rule.limit, "window_seconds": rule.window}),
    );
    object.insert("store".into(), store.path().display().to_string().into());
    object
}

/// The import's lines on stderr, for people.
fn print_import(summary: &Summary, c: &Changes, added: usize, store: &Store) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "prebounce: {}", summary.read_line());
    let _ = writeln!(
        err,
        "prebounce: {} new records in {} ({} already stored or repeated); suppressions added: {added} \
         (hard {}, complaint {}, soft limit crossed {}); already suppressed {}; \
         under the soft limit {}",
        c.new_records,
        store.path().display(),
        summary.records - c.new_records,
        c.added_of("hard"),
        c.added_of("complaint"),
        c.added_of("soft"),
        c.already_suppressed,
        c.soft_below_limit,
    );
    let blocks = summary.by_kind.get("block").copied().unwrap_or(0);
    if blocks > 0 {
        let _ = writeln!(
            err,
            "prebounce: {blocks} blocks (the receiver refused the sender, not the address: \
             nothing suppressed); {}",
            Reason::ProberBlocked.action().advice()
        );
    }
    if c.undated > 0 {
        let _ = writeln!(
            err,
            "prebounce: {} records carry no readable date: dated at the import's time",
            c.undated
        );
    }
    if c.unusable_recipients.count > 0 {
        let _ = writeln!(
            err,
            "prebounce: {} records name no usable address (kept, never suppressed): {}",
            c.unusable_recipients.count,
            c.unusable_recipients.first.join(", ")
        );
    }
    for line in summary.problem_lines() {
        let _ = writeln!(err, "prebounce: {line}");
    }
}

/// The suppression's reason: what bounced, when and where it was read.
fn evidence(cause: Cause, b: &StoredBounce) -> String {
    let what = match cause {
        Cause::Hard => "hard bounce",
        Cause::Complaint => "complaint",
        Cause::Soft => "soft bounces",
    };
    let mut parts = vec![what.to_owned()];
    parts.extend(b.reason.clone());
    parts.extend(b.status.clone());
    parts.extend(b.reply_code.map(|c| c.to_string()));
    format!(
        "{} on {}{} ({})",
        parts.join(" "),
        date_of(b.event_at),
        if b.dated { "" } else { " (import date)" },
        b.source
    )
}

/// The soft rule over an address's stored history: its soft bounces about the mailbox, its
/// deliveries, and a probe whose server accepted the mailbox (a working mailbox, as a delivery
/// says). The suppression's reason when it crossed.
fn soft_decision(
    store: &Store,
    key: &str,
    rule: SoftRule,
    changes: &mut Changes,
) -> anyhow::Result<Option<(Cause, String)>> {
    let history = store.bounces_of(key)?;
    if !history.iter().any(|b| b.counts_soft) {
        return Ok(None);
    }
    let mut events: Vec<(i64, Event)> = history
        .iter()
        .filter_map(|b| match b.kind {
            Kind::Soft if b.counts_soft => Some((b.event_at, Event::SoftBounce)),
            Kind::Delivered => Some((b.event_at, Event::Delivery)),
            _ => None,
        })
        .collect();
    if let Some(prior) = store.lookup(key)?
        && prior.level == Level::Smtp
        && prior.reason == Reason::MailboxAccepted
    {
        events.push((prior.verified_at, Event::Delivery));
    }
    let Some(crossing) = bounce::soft_crossing(&events, rule) else {
        changes.soft_below_limit += 1;
        return Ok(None);
    };
    let last = history
        .iter()
        .rfind(|b| b.counts_soft && b.event_at == crossing.last)
        .expect("the crossing's last soft bounce is in the history");
    Ok(Some((
        Cause::Soft,
        format!(
            "{} ({} mailbox soft bounces from {} to {}, limit {} within {} days)",
            evidence(Cause::Soft, last),
            rule.limit,
            date_of(crossing.first),
            date_of(crossing.last),
            rule.limit,
            rule.window / 86_400
        ),
    )))
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
