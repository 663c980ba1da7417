//! `prebounce status JOB --queue postgres://…`: where a job stands (state, rows, domains,
//! servers, units, workers, an estimate of the time left).

use std::io::Write as _;

use super::Failure;
use super::job::QueueArgs;

#[derive(clap::Args)]
pub struct Args {
    /// The job's id, as `submit` printed it.
    job: i64,
    #[command(flatten)]
    queue: QueueArgs,
    /// As JSON on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(args: Args) -> Result<(), Failure> {
    let mut queue = args.queue.connect()?;
    let s = queue.status(args.job).map_err(super::job::queue_failure)?;
    let text = if args.json {
        serde_json::to_string_pretty(&s).map_err(Failure::other)? + "\n"
    } else {
        let mut t = format!(
            "job {} ({}, level {}): {}\n  {} rows, {} distinct addresses at {} domains",
            s.job, s.input, s.level, s.state, s.rows, s.addresses, s.domains
        );
        if s.servers > 0 {
            t.push_str(&format!(", {} mail servers", s.servers));
        }
        t.push_str(&format!(
            "\n  addresses done: {} of {}\n",
            s.addresses_done, s.addresses
        ));
        for (kind, c) in &s.units {
            t.push_str(&format!(
                "  {kind} units: {} done, {} running, {} queued, {} failed\n",
                c.done, c.running, c.queued, c.failed
            ));
        }
        let n = &s.network;
        t.push_str(&format!(
            "  network: {} DNS queries, {} SMTP sessions, {} RCPT, {} deferred\n",
            n.dns_queries, n.smtp_sessions, n.rcpt_commands, n.deferred
        ));
        if !s.workers.is_empty() {
            t.push_str(&format!("  workers: {}\n", s.workers.join(", ")));
        }
        if let (Some(eta), "running") = (s.eta_seconds, s.state.as_str()) {
            t.push_str(&format!("  time left: about {:.0} s\n", eta));
        }
        for f in &s.failed_units {
            t.push_str(&format!(
                "  failed: unit {} ({} {}) after {} attempts: {}\n",
                f.unit, f.kind, f.label, f.attempts, f.error
            ));
        }
        t
    };
    std::io::stdout()
        .write_all(text.as_bytes())
        .map_err(|e| Failure::other(anyhow::anyhow!("cannot write to standard output: {e}")))
}
