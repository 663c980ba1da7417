//! Predicted bounce rate: a per-row bounce probability from the row's verdict, averaged over the
//! rows one would send. Pure; the priors are data the user can override (`--priors FILE`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::model::{Reason, Status};
use crate::syntax::Flags;

/// Probability that mail to an address bounces, given what we learned about it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Priors {
    /// By reason code: the most specific evidence.
    pub reasons: BTreeMap<String, f64>,
    /// By status, for reasons without their own entry.
    pub status: BTreeMap<String, f64>,
    /// Floors applied to deliverable rows carrying a flag (a disposable inbox expires).
    pub flags: BTreeMap<String, f64>,
    /// Where these numbers came from ("built-in" or a file path), for the report.
    pub source: String,
    /// The outcomes a calibrated priors file rests on (`prebounce bounces calibrate`).
    #[serde(skip_serializing_if = "EvidenceFile::is_empty")]
    pub evidence: EvidenceFile,
}

/// What calibrated priors rest on, per reason: written with them so the next reader can judge
/// them (and a later calibration can start from them).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvidenceFile {
    #[serde(default)]
    pub reasons: BTreeMap<String, Evidence>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Evidence {
    /// Rows of the sent list with this reason.
    pub sent: u64,
    /// Of those, how many hard-bounced.
    pub hard_bounced: u64,
    /// The probability before this calibration.
    pub prior: f64,
    /// How many sends the prior counted as.
    pub strength: f64,
}

impl EvidenceFile {
    pub fn is_empty(&self) -> bool {
        self.reasons.is_empty()
    }

    pub fn insert(
        &mut self,
        reason: &str,
        sent: u64,
        hard_bounced: u64,
        prior: f64,
        strength: f64,
    ) {
        self.reasons.insert(
            reason.to_owned(),
            Evidence {
                sent,
                hard_bounced,
                prior,
                strength,
            },
        );
    }
}

impl Default for Priors {
    /// The reasoning behind each number is in the README ("Priors").
    fn default() -> Self {
        let reasons = [
            // Unverified but well formed: list decay of 22.5–30 % a year (HubSpot; ZeroBounce
            // annual reports) over an assumed ~4 months since the address was last confirmed,
            // less what ESPs suppress themselves → 8 %.
            ("syntax-ok", 0.08),
            // Malformed or reserved addresses cannot be delivered at all.
            ("syntax", 1.0),
            ("reserved-domain", 1.0),
            ("unreadable-row", 1.0),
            // The domain takes mail but the mailbox was not probed: list decay less the share
            // of dead addresses that are dead domains (about a quarter) → 6 %.
            ("domain-accepts-mail", 0.06),
            ("no-such-domain", 1.0),
            ("null-mx", 1.0),
            ("no-mail-server", 1.0),
            ("mx-unresolvable", 1.0),
            ("mx-unroutable", 1.0),
            // The mailbox's own server accepted it just now. What remains: servers that accept
            // at RCPT and bounce after DATA (some large providers do), and mailboxes closed
            // between probe and send → 2 %.
            ("mailbox-accepted", 0.02),
            ("mailbox-not-found", 1.0),
            ("mailbox-disabled", 1.0),
            // Full mailboxes bounce (softly) while full, and a mailbox nobody empties is often
            // abandoned → even odds.
            ("mailbox-full", 0.5),
            // The server cannot take a non-ASCII local part at all: the send will fail unless
            // the sender's own MTA gives up on it first.
            ("smtputf8-unsupported", 0.9),
            // On the suppression list: mostly earlier hard bounces; sending to it is what the
            // list exists to prevent.
            ("suppressed", 1.0),
            // Undecided: the status prior applies (dns-error, dns-timeout, and the SMTP answers
            // that say nothing about the mailbox: greylisted, rate-limited, prober-blocked …);
            // accept-all takes the catch-all prior.
        ];
        let status = [
            ("valid", 0.08),
            ("invalid", 1.0),
            ("catch-all", 0.10),
            ("unknown", 0.25),
        ];
        let flags = [("disposable", 0.30)];
        let map = |v: &[(&str, f64)]| v.iter().map(|(k, p)| (k.to_string(), *p)).collect();
        Priors {
            reasons: map(&reasons),
            status: map(&status),
            flags: map(&flags),
            source: "built-in".into(),
            evidence: EvidenceFile::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PriorsError {
    #[error("cannot read priors file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("priors file {path} is not valid {format}: {message}")]
    Parse {
        path: String,
        format: &'static str,
        message: String,
    },
    #[error("priors file {path}: {message}")]
    Invalid { path: String, message: String },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PriorsFile {
    #[serde(default)]
    reasons: BTreeMap<String, f64>,
    #[serde(default)]
    status: BTreeMap<String, f64>,
    #[serde(default)]
    flags: BTreeMap<String, f64>,
    #[serde(default)]
    evidence: EvidenceFile,
}

impl Priors {
    /// Built-in priors overridden by the text of a TOML or JSON priors file (JSON when the
    /// file's name ends in `.json` or the text starts with '{'). `path` names the file in
    /// messages; reading it is the caller's (`input::read_priors`).
    pub fn from_text(path: &Path, text: &str) -> Result<Priors, PriorsError> {
        let shown = path.display().to_string();
        let is_json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"))
            || text.trim_start().starts_with('{');
        let file: PriorsFile = if is_json {
            serde_json::from_str(text).map_err(|e| PriorsError::Parse {
                path: shown.clone(),
                format: "JSON",
                message: e.to_string(),
            })?
        } else {
            toml::from_str(text).map_err(|e| PriorsError::Parse {
                path: shown.clone(),
                format: "TOML",
                message: e.message().to_owned(),
            })?
        };
        let mut priors = Priors::default();
        priors.apply(file).map_err(|message| PriorsError::Invalid {
            path: shown.clone(),
            message,
        })?;
        priors.source = shown;
        Ok(priors)
    }

    fn apply(&mut self, file: PriorsFile) -> Result<(), String> {
        let check = |kind: &str, key: &str, p: f64| {
            if (0.0..=1.0).contains(&p) {
                Ok(())
            } else {
                Err(format!(
                    "{kind} {key:?} has probability {p}; it must be between 0 and 1"
                ))
            }
        };
        for (k, p) in file.reasons {
            if Reason::from_code(&k).is_none() {
                let known: Vec<&str> = Reason::ALL.iter().map(|r| r.as_str()).collect();
                return Err(format!(
                    "unknown reason {k:?} (known: {})",
                    known.join(", ")
                ));
            }
            check("reason", &k, p)?;
            self.reasons.insert(k, p);
        }
        for (k, p) in file.status {
            if !Status::ALL.iter().any(|s| s.as_str() == k) {
                return Err(format!(
                    "unknown status {k:?} (known: valid, invalid, catch-all, unknown)"
                ));
            }
            check("status", &k, p)?;
            self.status.insert(k, p);
        }
        for k in file.evidence.reasons.keys() {
            if Reason::from_code(k).is_none() {
                return Err(format!("evidence for unknown reason {k:?}"));
            }
        }
        self.evidence = file.evidence;
        for (k, p) in file.flags {
            if !Flags::ALL.iter().any(|(_, n)| *n == k) {
                let known: Vec<&str> = Flags::ALL.iter().map(|(_, n)| *n).collect();
                return Err(format!("unknown flag {k:?} (known: {})", known.join(", ")));
            }
            check("flag", &k, p)?;
            self.flags.insert(k, p);
        }
        Ok(())
    }

    /// The priors as a TOML priors file (what `--priors` reads), each line of `header` as a
    /// comment at the top.
    pub fn to_toml(&self, header: &str) -> String {
        #[derive(Serialize)]
        struct Out<'a> {
            reasons: &'a BTreeMap<String, f64>,
            status: &'a BTreeMap<String, f64>,
            flags: &'a BTreeMap<String, f64>,
            #[serde(skip_serializing_if = "EvidenceFile::is_empty")]
            evidence: &'a EvidenceFile,
        }
        let body = toml::to_string(&Out {
            reasons: &self.reasons,
            status: &self.status,
            flags: &self.flags,
            evidence: &self.evidence,
        })
        .expect("maps of strings and numbers serialize");
        let mut text: String = header.lines().map(|l| format!("# {l}\n")).collect();
        text.push_str(&body);
        if !text.ends_with('\n') {
            text.push('\n');
        }
        text
    }

    /// This row's probability of bouncing.
    pub fn bounce_p(&self, status: Status, reason: Reason, flags: Flags) -> f64 {
        let mut p = self
            .reasons
            .get(reason.as_str())
            .or_else(|| self.status.get(status.as_str()))
            .copied()
            .unwrap_or(1.0);
        if status != Status::Invalid {
            for (flag, name) in Flags::ALL {
                if flags.contains(flag)
                    && let Some(&floor) = self.flags.get(name)
                {
                    p = p.max(floor);
                }
            }
        }
        p
    }
}

/// [`Priors`] resolved into arrays once per run: the per-row lookup is an index, not a string
/// map search.
#[derive(Debug, Clone)]
pub struct PriorTable {
    by_reason: [f64; Reason::ALL.len()],
    floors: Vec<(Flags, f64)>,
}

impl PriorTable {
    pub fn new(priors: &Priors) -> Self {
        let mut by_reason = [1.0; Reason::ALL.len()];
        for r in Reason::ALL {
            by_reason[r.index()] = priors.bounce_p(r.status(), r, Flags::default());
        }
        let floors = Flags::ALL
            .iter()
            .filter_map(|(f, name)| priors.flags.get(*name).map(|p| (*f, *p)))
            .collect();
        PriorTable { by_reason, floors }
    }

    /// Same answer as [`Priors::bounce_p`] for the reason's own status.
    pub fn bounce_p(&self, reason: Reason, flags: Flags) -> f64 {
        let mut p = self.by_reason[reason.index()];
        if reason.status() != Status::Invalid && !flags.is_empty() {
            for (f, floor) in &self.floors {
                if flags.contains(*f) {
                    p = p.max(*floor);
                }
            }
        }
        p
    }
}

/// Sender-reputation bands for a predicted hard-bounce rate (mailbox providers start throttling
/// around 2 %).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Band {
    Excellent,
    Good,
    Warning,
    Critical,
    Catastrophic,
}

impl Band {
    pub fn of(rate: f64) -> Band {
        match rate {
            r if r < 0.003 => Band::Excellent,
            r if r < 0.02 => Band::Good,
            r if r < 0.05 => Band::Warning,
            r if r <= 0.10 => Band::Critical,
            _ => Band::Catastrophic,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Band::Excellent => "excellent",
            Band::Good => "good",
            Band::Warning => "warning",
            Band::Critical => "critical",
            Band::Catastrophic => "catastrophic",
        }
    }
}

impl fmt::Display for Band {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Mean {
    sum: f64,
    n: u64,
}

impl Mean {
    fn add(&mut self, p: f64) {
        self.sum += p;
        self.n += 1;
    }
    fn merge(&mut self, other: Mean) {
        self.sum += other.sum;
        self.n += other.n;
    }
    fn value(self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            self.sum / self.n as f64
        }
    }
    fn interval(self) -> Interval {
        wilson_interval(self.value(), self.n)
    }
}

/// Accumulates row probabilities into the three send scenarios.
#[derive(Debug, Clone, Default)]
pub struct Forecast {
    all: Mean,
    valid_only: Mean,
    valid_and_catch_all: Mean,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PredictedBounceRate {
    /// Sending to every distinct address in the list.
    pub all: f64,
    pub valid_only: f64,
    pub valid_and_catch_all: f64,
    /// The band of `all`.
    pub band: Band,
    /// Addresses counted in each scenario.
    pub sends: SendCounts,
    /// 95 % interval of each scenario's rate, reflecting how many addresses it rests on
    /// (see [`wilson_interval`]).
    pub interval_95: ScenarioIntervals,
}

/// A two-sided interval of a rate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    pub low: f64,
    pub high: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScenarioIntervals {
    pub all: Interval,
    pub valid_only: Interval,
    pub valid_and_catch_all: Interval,
}

/// z for a two-sided 95 % interval.
const Z_95: f64 = 1.959_963_984_540_054;

/// 95 % Wilson score interval of a bounce rate `rate` predicted over `n` sends.
///
/// The predicted rate is the mean of per-row probabilities. We treat the `n` sends as `n`
/// Bernoulli trials with success probability `rate` and ask which realised bounce rates are
/// plausible. That is what makes a 20-address group look as uncertain as it is: at 8 % the
/// interval is 2–28 % for 20 sends and 7.6–8.4 % for 20,000.
///
/// Why Wilson and not the alternatives:
/// - the textbook normal ("Wald") interval collapses to zero width at 0 % and spills below 0 for
///   small groups: "0 bounces in 5 addresses" would look certain;
/// - Jeffreys (a Beta(x + ½, n − x + ½) posterior) has about the same coverage, but needs the
///   inverse regularised incomplete beta function, i.e. a numeric library or a root finder;
/// - Wilson is closed form, stays inside [0, 1], is never zero-width for n ≥ 1, and has close
///   to nominal coverage down to very small n and rates near 0 (Brown, Cai & DasGupta 2001).
///
/// The rows' probabilities differ (a disposable address is 0.30, a typo 1.0), and a sum of
/// independent Bernoulli trials with unequal probabilities varies *less* than a binomial with
/// their mean, so this interval errs on the wide side. It reflects the group's size only: the
/// priors themselves are taken as exact.
pub fn wilson_interval(rate: f64, n: u64) -> Interval {
    if n == 0 {
        // Nothing to send: every rate is as plausible as any other.
        return Interval {
            low: 0.0,
            high: 1.0,
        };
    }
    let p = rate.clamp(0.0, 1.0);
    let n = n as f64;
    let z2 = Z_95 * Z_95;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = Z_95 / denom * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    Interval {
        low: (centre - half).max(0.0),
        high: (centre + half).min(1.0),
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SendCounts {
    pub all: u64,
    pub valid_only: u64,
    pub valid_and_catch_all: u64,
}

impl Forecast {
    /// Count a row. Repeats are skipped (a sender mails an address once) and so are rows
    /// without an address to send to.
    pub fn add(&mut self, status: Status, reason: Reason, flags: Flags, p: f64) {
        if flags.contains(Flags::DUPLICATE) || !reason.has_address() {
            return;
        }
        self.all.add(p);
        match status {
            Status::Valid => {
                self.valid_only.add(p);
                self.valid_and_catch_all.add(p);
            }
            Status::CatchAll => self.valid_and_catch_all.add(p),
            Status::Invalid | Status::Unknown => {}
        }
    }

    pub fn merge(&mut self, other: &Forecast) {
        self.all.merge(other.all);
        self.valid_only.merge(other.valid_only);
        self.valid_and_catch_all.merge(other.valid_and_catch_all);
    }

    pub fn result(&self) -> PredictedBounceRate {
        let all = self.all.value();
        PredictedBounceRate {
            all,
            valid_only: self.valid_only.value(),
            valid_and_catch_all: self.valid_and_catch_all.value(),
            band: Band::of(all),
            sends: SendCounts {
                all: self.all.n,
                valid_only: self.valid_only.n,
                valid_and_catch_all: self.valid_and_catch_all.n,
            },
            interval_95: ScenarioIntervals {
                all: self.all.interval(),
                valid_only: self.valid_only.interval(),
                valid_and_catch_all: self.valid_and_catch_all.interval(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bands_have_the_documented_edges() {
        assert_eq!(Band::of(0.0), Band::Excellent);
        assert_eq!(Band::of(0.0029), Band::Excellent);
        assert_eq!(Band::of(0.003), Band::Good);
        assert_eq!(Band::of(0.0199), Band::Good);
        assert_eq!(Band::of(0.02), Band::Warning);
        assert_eq!(Band::of(0.05), Band::Critical);
        assert_eq!(Band::of(0.10), Band::Critical);
        assert_eq!(Band::of(0.1001), Band::Catastrophic);
    }

    #[test]
    fn row_probabilities() {
        let p = Priors::default();
        assert_eq!(
            p.bounce_p(Status::Valid, Reason::SyntaxOk, Flags::default()),
            0.08
        );
        assert_eq!(
            p.bounce_p(Status::Invalid, Reason::Syntax, Flags::default()),
            1.0
        );
        assert_eq!(
            p.bounce_p(Status::Valid, Reason::SyntaxOk, Flags::DISPOSABLE),
            0.30
        );
        // A flag floor never lowers a probability.
        assert_eq!(
            p.bounce_p(Status::Invalid, Reason::Syntax, Flags::DISPOSABLE),
            1.0
        );
    }

    #[test]
    fn the_table_agrees_with_the_priors() {
        let mut priors = Priors::default();
        priors.flags.insert("role".into(), 0.5);
        let table = PriorTable::new(&priors);
        let flag_sets = [
            Flags::default(),
            Flags::DISPOSABLE,
            Flags::ROLE,
            Flags::FREE,
        ];
        for r in Reason::ALL {
            for f in flag_sets {
                assert_eq!(
                    table.bounce_p(r, f),
                    priors.bounce_p(r.status(), r, f),
                    "{r} {f}"
                );
            }
        }
    }

    #[test]
    fn scenarios_skip_duplicates_and_rows_without_address() {
        let pr = Priors::default();
        let mut f = Forecast::default();
        let mut add = |s, r, fl| f.add(s, r, fl, pr.bounce_p(s, r, fl));
        for _ in 0..9 {
            add(Status::Valid, Reason::SyntaxOk, Flags::default());
        }
        add(Status::Invalid, Reason::Syntax, Flags::default());
        add(Status::Valid, Reason::SyntaxOk, Flags::DUPLICATE);
        add(Status::Invalid, Reason::UnreadableRow, Flags::default());
        let r = f.result();
        assert!((r.all - (9.0 * 0.08 + 1.0) / 10.0).abs() < 1e-12);
        assert!((r.valid_only - 0.08).abs() < 1e-12);
        assert_eq!(r.sends.all, 10);
        assert_eq!(r.band, Band::Catastrophic);
        assert_eq!(Forecast::default().result().all, 0.0);
    }

    /// Reference values: 8 of 20 is the textbook example (0.2188–0.6134); the others were
    /// computed separately from the formula in Brown, Cai & DasGupta (2001), eq. 4.
    #[test]
    fn wilson_interval_matches_reference_values() {
        let close = |a: f64, b: f64| (a - b).abs() < 5e-5;
        // 8 of 20 → 0.2188 – 0.6134
        let i = wilson_interval(0.4, 20);
        assert!(close(i.low, 0.2188) && close(i.high, 0.6134), "{i:?}");
        // 1.6 of 20 (8 %)
        let i = wilson_interval(0.08, 20);
        assert!(close(i.low, 0.0195) && close(i.high, 0.2759), "{i:?}");
        // 0 of 5: not certain at all.
        let i = wilson_interval(0.0, 5);
        assert_eq!(i.low, 0.0);
        assert!(close(i.high, 0.4345), "{i:?}");
        // 5 of 5
        let i = wilson_interval(1.0, 5);
        assert!(close(i.low, 0.5655) && i.high == 1.0, "{i:?}");
        assert_eq!(
            wilson_interval(0.3, 0),
            Interval {
                low: 0.0,
                high: 1.0
            }
        );
    }

    #[test]
    fn wilson_interval_narrows_with_size_and_holds_the_rate() {
        let mut last_width = f64::INFINITY;
        for n in [1u64, 5, 20, 100, 2_000, 20_000, 1_000_000] {
            for rate in [0.0, 0.003, 0.08, 0.5, 0.97, 1.0] {
                let i = wilson_interval(rate, n);
                assert!(0.0 <= i.low && i.low <= rate + 1e-12, "{rate} {n} {i:?}");
                assert!(rate - 1e-12 <= i.high && i.high <= 1.0, "{rate} {n} {i:?}");
            }
            let i = wilson_interval(0.08, n);
            let width = i.high - i.low;
            assert!(width < last_width, "n={n}: {width} >= {last_width}");
            last_width = width;
        }
        // The examples of the doc comment.
        let small = wilson_interval(0.08, 20);
        let big = wilson_interval(0.08, 20_000);
        assert!(small.high - small.low > 0.2);
        assert!(big.high - big.low < 0.008);
    }

    #[test]
    fn priors_files() {
        let dir = tempfile::tempdir().unwrap();
        let toml_path = dir.path().join("p.toml");
        std::fs::write(
            &toml_path,
            "[reasons]\nsyntax-ok = 0.02\n[status]\nunknown = 0.5\n",
        )
        .unwrap();
        let p = crate::input::read_priors(&toml_path).unwrap();
        assert_eq!(p.reasons["syntax-ok"], 0.02);
        assert_eq!(p.status["unknown"], 0.5);
        assert_eq!(p.reasons["syntax"], 1.0);
        let json_path = dir.path().join("p.json");
        std::fs::write(&json_path, r#"{"flags": {"disposable": 0.9}}"#).unwrap();
        assert_eq!(
            crate::input::read_priors(&json_path).unwrap().flags["disposable"],
            0.9
        );
        std::fs::write(&json_path, r#"{"reasons": {"syntax-ok": 1.5}}"#).unwrap();
        assert!(matches!(
            crate::input::read_priors(&json_path),
            Err(PriorsError::Invalid { .. })
        ));
        std::fs::write(&json_path, r#"{"reasons": {"made-up": 0.5}}"#).unwrap();
        assert!(matches!(
            crate::input::read_priors(&json_path),
            Err(PriorsError::Invalid { .. })
        ));
        std::fs::write(&json_path, r#"{"reason": {}}"#).unwrap();
        assert!(matches!(
            crate::input::read_priors(&json_path),
            Err(PriorsError::Parse { .. })
        ));
    }
}
