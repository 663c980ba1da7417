//! `prebounce collect JOB --queue postgres://… -o DIR`: the job's lists, summary.json and
//! report.html, as one machine's `verify` of the list would write them: the same pipeline
//! over the job's copy of the list, as the job's run, answered from the verdicts the workers
//! stored.

use std::io::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use super::Failure;
use super::job::{QueueArgs, job_config, queue_failure};

#[derive(clap::Args)]
pub struct Args {
    /// The job's id, as `submit` printed it.
    job: i64,
    #[command(flatten)]
    queue: QueueArgs,
    /// Output folder.
    #[arg(short, long, value_name = "DIR")]
    out: PathBuf,
    /// Replace the files of an existing output folder.
    #[arg(long)]
    force: bool,
    /// Wait for an unfinished job instead of exiting 2.
    #[arg(long)]
    wait: bool,
    /// No summary on stderr.
    #[arg(short, long)]
    quiet: bool,
    /// Also print summary.json to stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<(), Failure> {
    let mut queue = args.queue.connect()?;
    let mut status = queue.status(args.job).map_err(queue_failure)?;
    while status.state == "running" {
        if !args.wait {
            return Err(Failure::usage(anyhow::anyhow!(
                "job {} is not finished ({} of {} addresses done); pass --wait to wait for it, \
                 or see `prebounce status {}`",
                args.job,
                status.addresses_done,
                status.addresses,
                args.job
            )));
        }
        std::thread::sleep(Duration::from_secs(2));
        status = queue.status(args.job).map_err(queue_failure)?;
    }
    if status.state == "failed" {
        let units: Vec<String> = status
            .failed_units
            .iter()
            .map(|f| format!("unit {} ({} {}): {}", f.unit, f.kind, f.label, f.error))
            .collect();
        return Err(Failure::other(anyhow::anyhow!(
            "job {} failed: {}",
            args.job,
            units.join("; ")
        )));
    }
    let job = queue.job(args.job).map_err(queue_failure)?;
    let dir = tempfile::Builder::new()
        .prefix("prebounce-collect-")
        .tempdir()
        .map_err(|e| Failure::other(anyhow::anyhow!("cannot make a temporary folder: {e}")))?;
    let list = dir.path().join(&job.input_name);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&list)
        .map_err(|e| Failure::other(anyhow::anyhow!("cannot write {}: {e}", list.display())))?;
    queue.copy_input(job.id, &mut file).map_err(queue_failure)?;
    file.flush().map_err(Failure::other)?;
    drop(file);
    let (_, mut config) = job_config(&job, &args.queue.queue, list, args.out.clone(), true)?;
    config.force = args.force;
    config.interrupt = Some(super::verify::interrupt_on_signals().map_err(Failure::other)?);
    let summary = prebounce::verify(&config)?;
    super::verify::print_summary(args.quiet, args.json, &summary)
}
