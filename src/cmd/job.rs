//! What the distributed mode's commands (`submit`, `worker`, `status`, `collect`) share: the
//! queue's URL, and a job's verify settings rebuilt from the options it was submitted with.

use std::path::PathBuf;

use prebounce::VerifyConfig;
use prebounce::queue::db::{Job, Queue, QueueError, is_postgres_url};
use prebounce::store::JobRun;

use super::Failure;

/// The queue's database.
#[derive(clap::Args, Clone)]
pub struct QueueArgs {
    /// The queue: a PostgreSQL database, postgres://user:password@host:port/database. It is
    /// also the job's store unless the job was submitted with --store.
    #[arg(long, value_name = "URL", value_parser = parse_queue_url)]
    pub queue: String,
}

fn parse_queue_url(s: &str) -> Result<String, String> {
    if is_postgres_url(s) {
        Ok(s.to_owned())
    } else {
        Err("the queue is a PostgreSQL URL: postgres://user:password@host:port/database".into())
    }
}

impl QueueArgs {
    pub fn connect(&self) -> Result<Queue, Failure> {
        Queue::connect(&self.queue).map_err(queue_failure)
    }
}

/// A queue error: 2 when the user can fix it (no such job, a bad URL, refused), else 1.
pub fn queue_failure(e: QueueError) -> Failure {
    match &e {
        QueueError::Job(_) => Failure::usage(e),
        QueueError::Db { .. } if e.is_connection() || e.is_access() => Failure::usage(e),
        QueueError::Db { .. } => Failure::other(e),
    }
}

/// The job's run in its store: every unit and the collect are this one run, whatever URL each
/// worker reaches the queue by.
pub fn job_fingerprint(job: &Job) -> String {
    format!("job {} submitted at {} µs", job.id, job.submitted_us)
}

/// A job's verify settings over `input`, writing to `out`: its submitted options, its store
/// (the queue unless it named another) as the job's run, no preflight (the workers' machines
/// are not the submitter's; each worker's first sessions judge its own port 25).
pub fn job_config(
    job: &Job,
    queue_url: &str,
    input: PathBuf,
    out: PathBuf,
    finish_run: bool,
) -> Result<(super::verify::Args, VerifyConfig), Failure> {
    // The files the job carries, written beside the list and named again.
    let folder = input.parent().map(PathBuf::from).unwrap_or_default();
    let mut files = Vec::new();
    for (flag, text) in &job.files {
        let path = folder.join(format!("job-{}{}.toml", job.id, flag.replace('-', "_")));
        std::fs::write(&path, text)
            .map_err(|e| Failure::other(anyhow::anyhow!("cannot write {}: {e}", path.display())))?;
        files.push(flag.clone());
        files.push(path.display().to_string());
    }
    let argv = std::iter::once("verify".to_owned())
        .chain(std::iter::once(input.display().to_string()))
        .chain(job.args.iter().cloned())
        .chain(files);
    let args = super::verify::parse(argv).map_err(|e| {
        Failure::other(anyhow::anyhow!(
            "job {}: its options no longer parse: {}",
            job.id,
            e.to_string().lines().next().unwrap_or_default()
        ))
    })?;
    let mut config = super::verify::config(&args)?;
    config.out_dir = out;
    config.preflight = None;
    let mut store = config
        .store
        .take()
        .unwrap_or_else(|| prebounce::store::StoreOptions::new(PathBuf::new()));
    store.path = PathBuf::from(match job.store.as_str() {
        "" => queue_url,
        other => other,
    });
    store.job_run = Some(JobRun {
        fingerprint: job_fingerprint(job),
        finish: finish_run,
        as_of: job.submitted_us.div_euclid(1_000_000),
    });
    config.store = Some(store);
    Ok((args, config))
}
