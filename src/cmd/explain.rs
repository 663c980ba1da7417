//! `prebounce explain "550 5.1.1 user unknown"`: what an SMTP reply says about the address.

use std::io::Write as _;

use super::Failure;

#[derive(clap::Args)]
pub struct Args {
    /// The reply text; a multi-line reply may use real line breaks or "\n".
    reply: String,
}

pub fn run(args: &Args) -> Result<(), Failure> {
    // Shells make it hard to type a line break: accept a literal "\n" as one.
    let text = args.reply.replace("\\n", "\n");
    let explained = prebounce::smtp::reply::explain(&text)
        .map_err(|e| Failure::usage(anyhow::anyhow!("cannot decode the reply: {e}")))?;
    let json = serde_json::to_string_pretty(&explained).map_err(Failure::other)?;
    let _ = writeln!(std::io::stdout(), "{json}");
    Ok(())
}
