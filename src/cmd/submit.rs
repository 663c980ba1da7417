//! `prebounce submit LIST.csv --queue postgres://… [verify's options]`: reads and checks the list
//! here, queues its network work for the workers, and prints the job's id alone on stdout.

use std::io::Write as _;
use std::path::PathBuf;

use prebounce::queue::db::NewJob;
use prebounce::queue::work::list_addresses;

use super::Failure;
use super::job::QueueArgs;

#[derive(clap::Args)]
pub struct Args {
    /// The CSV list (a file: the job keeps a copy for `collect`).
    input: PathBuf,
    #[command(flatten)]
    queue: QueueArgs,
    /// Addresses per unit of work at most: smaller units spread one big mail server over more
    /// workers, larger ones keep more of it on one worker's connections.
    #[arg(long, value_name = "N", default_value_t = prebounce::queue::ADDRESSES_PER_UNIT, value_parser = parse_unit_size)]
    unit_size: usize,
    /// verify's options (level, sender, store, DNS servers, probe settings …): the job keeps
    /// them, so a worker needs only --queue. Not --out, --force, --json or --no-store.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "VERIFY OPTIONS"
    )]
    options: Vec<String>,
}

/// `options` without the file options the job carries as contents (`--flag VALUE` or
/// `--flag=VALUE`).
fn without_options(options: &[String], files: &[(String, String)]) -> Vec<String> {
    let mut out = Vec::new();
    let mut skip_next = false;
    for o in options {
        if std::mem::take(&mut skip_next) {
            continue;
        }
        let named = files
            .iter()
            .any(|(flag, _)| o == flag || o.starts_with(&format!("{flag}=")));
        if named {
            skip_next = !o.contains('=');
            continue;
        }
        out.push(o.clone());
    }
    out
}

fn parse_unit_size(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if (1..=1_000_000).contains(&n) => Ok(n),
        _ => Err("a number of addresses from 1 to 1000000".into()),
    }
}

pub fn run(args: Args) -> Result<(), Failure> {
    let input = args.input.display().to_string();
    if input == "-" {
        return Err(Failure::usage(anyhow::anyhow!(
            "submit needs a file, not standard input: the job keeps a copy of the list"
        )));
    }
    let argv = ["verify".to_owned(), input.clone()]
        .into_iter()
        .chain(args.options.iter().cloned());
    let verify = super::verify::parse(argv).map_err(|e| {
        Failure::usage(anyhow::anyhow!(
            "{}",
            e.to_string().trim_end().trim_start_matches("error: ")
        ))
    })?;
    let local = verify.local_only_options();
    if !local.is_empty() {
        return Err(Failure::usage(anyhow::anyhow!(
            "{} is for this machine's output, not a job's: `prebounce collect JOB -o DIR` writes the lists",
            local.join(", ")
        )));
    }
    let mut config = super::verify::config(&verify)?;
    // The job's store, which submit consults: the one --store names, else the queue's own.
    if let Some(opts) = config.store.as_mut() {
        opts.path = match verify.store_path() {
            Some(path) => path.to_owned(),
            None => std::path::PathBuf::from(&args.queue.queue),
        };
    }
    let mut files = Vec::new();
    for (flag, path) in verify.file_options() {
        let text = std::fs::read_to_string(&path).map_err(|e| {
            Failure::usage(anyhow::anyhow!(
                "cannot read {flag} {}: {e}",
                path.display()
            ))
        })?;
        files.push((flag.to_owned(), text));
    }
    if config.level == prebounce::Level::Smtp && config.smtp.is_none() {
        return Err(prebounce::Error::SmtpNeedsSender.into());
    }
    let mut list = list_addresses(&config)?;
    // What the store or the suppression list answers needs no unit: the job's collect answers
    // it as of this same moment.
    let submitted_at = config.clock.now();
    let answered = prebounce::queue::work::drop_answered(&config, &mut list, submitted_at)
        .map_err(prebounce::Error::Store)?;
    // The queue's own database is named by none: each worker reaches it by its own --queue
    // URL (its own host name, role and password), which the jobs table must not keep.
    let store = verify
        .store_path()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let file = std::fs::File::open(&args.input).map_err(|e| {
        Failure::usage(anyhow::anyhow!("cannot read {}: {e}", args.input.display()))
    })?;
    let job = NewJob {
        input_name: args
            .input
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| input.clone()),
        args: without_options(&args.options, &files),
        level: config.level.as_str().to_owned(),
        store,
        rows: list.rows,
        domains: list.domains,
        unit_size: args.unit_size,
        files,
        submitted_at,
    };
    let addresses: usize = job.domains.iter().map(|(_, a)| a.len()).sum();
    let mut queue = args.queue.connect()?;
    let id = queue
        .submit(&job, std::io::BufReader::new(file))
        .map_err(super::job::queue_failure)?;
    let _ = writeln!(
        std::io::stderr(),
        "prebounce: job {id}: {} rows, {addresses} distinct addresses at {} domains to verify \
         ({answered} more answered by the store or the suppression list), level {}; \
         start workers with `prebounce worker --queue URL`, follow it with `prebounce status {id} --queue URL`",
        job.rows,
        job.domains.len(),
        job.level
    );
    writeln!(std::io::stdout(), "{id}")
        .map_err(|e| Failure::other(anyhow::anyhow!("cannot write to standard output: {e}")))
}
