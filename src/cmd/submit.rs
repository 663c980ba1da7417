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
    let config = super::verify::config(&verify)?;
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
    let list = list_addresses(&config)?;
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
    };
    let addresses: usize = job.domains.iter().map(|(_, a)| a.len()).sum();
    let mut queue = args.queue.connect()?;
    let id = queue
        .submit(&job, std::io::BufReader::new(file))
        .map_err(super::job::queue_failure)?;
    let _ = writeln!(
        std::io::stderr(),
        "prebounce: job {id}: {} rows, {addresses} distinct addresses at {} domains, level {}; \
         start workers with `prebounce worker --queue URL`, follow it with `prebounce status {id} --queue URL`",
        job.rows,
        job.domains.len(),
        job.level
    );
    writeln!(std::io::stdout(), "{id}")
        .map_err(|e| Failure::other(anyhow::anyhow!("cannot write to standard output: {e}")))
}
