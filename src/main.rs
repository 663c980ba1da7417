//! Command line: parsing and dispatch only. Each command lives in its own file under `cmd/`,
//! which also says where exit codes come from.

mod cmd;

/// jemalloc, not glibc's malloc: the pipeline's stages free on one thread what another
/// allocated, and glibc's per-thread arenas then kept about 100 MB more resident than the run
/// held at level dns over 200,000 domains (benches/RESULTS.md, "Trust round"); jemalloc gives
/// freed pages back (decay set in .cargo/config.toml) and was faster too.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "prebounce",
    version,
    about = "Tells you, before a send, which addresses of a list will bounce"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Verify a CSV list and write valid / invalid / catch-all / unknown lists plus summary.json.
    Verify(Box<cmd::verify::Args>),
    /// Decode an SMTP reply (e.g. "550 5.1.1 user unknown") and print, as JSON, what it says about
    /// the address: code, enhanced code, permanence, reason, verdict and recommended action.
    Explain(cmd::explain::Args),
    /// The suppression list: addresses and domains that must never be mailed. `verify` puts
    /// them in invalid.csv with reason `suppressed`, without checking them.
    Suppress(cmd::suppress::Args),
    /// Bounce feedback: read the bounces a send produced (DSNs, MTA bounce texts, ARF
    /// complaints, auto-replies, mboxes, ESP event JSON) and say what each means.
    Bounces(cmd::bounces::Args),
    /// Before probing or sending: can this machine probe (egress address, reverse DNS, HELO,
    /// blocklists, port 25), and is the sender domain set up (MX, SPF, DKIM, DMARC, the
    /// bulk-sender rules)? Exit 1 when a check failed.
    Preflight(Box<cmd::preflight::Args>),
    /// Queue a list for workers on many machines (PostgreSQL): prints the job's id. Takes
    /// verify's options after the list.
    Submit(cmd::submit::Args),
    /// Take and do units of the queue's jobs until stopped (or idle, with --exit-when-idle).
    Worker(cmd::worker::Args),
    /// Where a queued job stands: state, rows, domains, servers, units, time left.
    Status(cmd::status::Args),
    /// Write a finished job's lists, summary.json and report.html.
    Collect(cmd::collect::Args),
}

fn main() -> ExitCode {
    silence_caught_mime_panics();
    let done = match Cli::parse().command {
        Command::Verify(args) => cmd::verify::run(*args),
        Command::Explain(args) => cmd::explain::run(&args),
        Command::Suppress(args) => cmd::suppress::run(args),
        Command::Bounces(args) => cmd::bounces::run(args),
        Command::Preflight(args) => cmd::preflight::run(*args),
        Command::Submit(args) => cmd::submit::run(args),
        Command::Worker(args) => cmd::worker::run(args),
        Command::Status(args) => cmd::status::run(args),
        Command::Collect(args) => cmd::collect::run(args),
    };
    match done {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}

/// The bounce decoder catches the MIME parser's panics on malformed messages (it counts them
/// unparseable); their message is not the user's business. Every other panic is reported as
/// before.
fn silence_caught_mime_panics() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let from_mime_parser = info
            .location()
            .is_some_and(|l| l.file().contains(prebounce::bounce::MIME_PARSER_SOURCE));
        if !from_mime_parser {
            report(info);
        }
    }));
}
