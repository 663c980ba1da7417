//! `prebounce bounces calibrate --sent SENT.csv`: how well the forecast predicted this
//! sender's real hard bounces, and priors fitted on them for `verify --priors`.

use std::collections::HashSet;
use std::io::Write as _;
use std::path::PathBuf;

use anyhow::{Context as _, bail};

use prebounce::bounce::{Action, Kind};
use prebounce::calibration::{Calibration, SentRow, calibrate, fit};
use prebounce::forecast::Priors;
use prebounce::input::read_priors;
use prebounce::store::Store;

use super::sent::read_sent;
use crate::cmd::StoreArgs;

pub struct CalibrateArgs {
    pub sent: Vec<PathBuf>,
    pub column: Option<String>,
    pub priors: Option<PathBuf>,
    pub write_priors: Option<PathBuf>,
    pub strength: f64,
    pub json: bool,
    pub store: StoreArgs,
}

pub fn run(a: CalibrateArgs) -> anyhow::Result<()> {
    let sent = read_sent(&a.sent, a.column.as_deref(), None)?;
    let base = match &a.priors {
        Some(p) => read_priors(p)?,
        None => Priors::default(),
    };
    let path = a.store.path()?;
    let store = Store::open_to_read(&path, a.store.access())?;
    // One pass over the store: the addresses that hard-bounced. A delay or a block says
    // nothing about the address; a soft bounce is not what the forecast predicts.
    let mut hard = HashSet::new();
    store.each_bounce(i64::MIN, |b| {
        if b.kind == Kind::Hard
            && b.action != Action::Delayed
            && sent.rows.contains_key(&b.recipient)
        {
            hard.insert(b.recipient);
        }
        Ok(())
    })?;
    let mut without_prediction = 0u64;
    let rows: Vec<SentRow> = sent
        .rows
        .iter()
        .filter_map(|(key, (prediction, _))| match prediction {
            Some(p) => Some(SentRow {
                status: p.status,
                reason: p.reason,
                predicted: p.bounce_p,
                hard_bounced: hard.contains(key),
            }),
            None => {
                without_prediction += 1;
                None
            }
        })
        .collect();
    if rows.is_empty() {
        bail!(
            "no row of the sent list carries prebounce's columns (prebounce_status, \
             prebounce_reason, prebounce_bounce_p): pass the lists prebounce wrote (valid.csv, \
             catch-all.csv …) for the addresses that were sent"
        );
    }
    let result = calibrate(rows);
    let fitted = fit(&result, &base, a.strength);
    if let Some(out) = &a.write_priors {
        let header = format!(
            "prebounce priors calibrated by `prebounce bounces calibrate` on {} sent addresses \
             ({} hard bounces) from the store {}.\nEach reason seen is a Beta-binomial update of \
             {}, the prior counting as {} sends; [evidence] holds what each rests on.\nUse with: \
             prebounce verify --priors {}",
            result.sent,
            result.hard_bounced,
            path.display(),
            if base.source == "built-in" {
                "the built-in priors"
            } else {
                &base.source
            },
            a.strength,
            out.display()
        );
        write_priors_file(out, &fitted.to_toml(&header))?;
    }
    if a.json {
        let mut object = serde_json::to_value(&result)?;
        object["priors"] = serde_json::to_value(&fitted.reasons)?;
        object["strength"] = a.strength.into();
        object["without_prediction"] = without_prediction.into();
        let mut out = std::io::stdout().lock();
        writeln!(out, "{object}")?;
        out.flush()?;
    }
    print_table(
        &result,
        &fitted,
        without_prediction,
        a.write_priors.as_deref(),
    );
    Ok(())
}

/// The calibration, worst predicted first, on stderr.
fn print_table(
    result: &Calibration,
    fitted: &Priors,
    without_prediction: u64,
    priors_file: Option<&std::path::Path>,
) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(
        err,
        "prebounce: {} sent addresses with a prediction, {} hard-bounced ({:.2}%); Brier score {:.4}{}",
        result.sent,
        result.hard_bounced,
        100.0 * result.hard_bounced as f64 / result.sent.max(1) as f64,
        result.brier.unwrap_or(0.0),
        if without_prediction > 0 {
            format!("; {without_prediction} rows without prebounce columns left out")
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        err,
        "  {:<11} {:<22} {:>8} {:>7} {:>9} {:>9} {:>17} {:>9}",
        "status", "reason", "sent", "hard", "predicted", "observed", "95% interval", "fitted"
    );
    for r in &result.rows {
        let _ = writeln!(
            err,
            "  {:<11} {:<22} {:>8} {:>7} {:>8.2}% {:>8.2}% {:>7.2}%–{:>6.2}% {:>8.2}%{}",
            r.status,
            r.reason,
            r.sent,
            r.hard_bounced,
            100.0 * r.predicted,
            100.0 * r.observed,
            100.0 * r.low,
            100.0 * r.high,
            100.0 * fitted.reasons.get(r.reason).copied().unwrap_or(r.predicted),
            if r.outside {
                "  ← predicted badly"
            } else {
                ""
            }
        );
    }
    if let Some(out) = priors_file {
        let _ = writeln!(
            err,
            "  priors: {} (use: prebounce verify --priors {})",
            out.display(),
            out.display()
        );
    }
}

/// Written like the lists: a fresh temporary name in the same folder, renamed over the target.
fn write_priors_file(out: &std::path::Path, text: &str) -> anyhow::Result<()> {
    let name = out
        .file_name()
        .and_then(|n| n.to_str())
        .context("--write-priors must name a file")?;
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    prebounce::output::write_files(dir, false, &[(name, text.as_bytes())])?;
    Ok(())
}
