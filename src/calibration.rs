//! Calibration of the forecast on a sender's real outcomes (`prebounce bounces calibrate`):
//! rows of a list that was sent after verification, each with the status, reason and bounce
//! probability prebounce gave it, joined with whether it really hard-bounced. Pure.
//!
//! Per status and reason: the observed hard-bounce rate against the predicted one, with a 95 %
//! Wilson interval (it stays inside [0, 1] and is honest for small groups and rates near 0,
//! where the normal approximation is not); a reliability table by predicted probability; the
//! Brier score. Then new priors per reason: a Beta-binomial update of the priors the rows were
//! predicted with, the prior counting as `strength` sends, so a reason seen on a handful of
//! rows barely moves and one seen on thousands follows its observed rate.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::forecast::{EvidenceFile, Priors};
use crate::model::{Reason, Status};

/// One sent row.
#[derive(Debug, Clone, PartialEq)]
pub struct SentRow {
    pub status: Status,
    pub reason: Reason,
    /// `prebounce_bounce_p` of the row.
    pub predicted: f64,
    pub hard_bounced: bool,
}

/// One status and reason.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    pub status: &'static str,
    pub reason: &'static str,
    pub sent: u64,
    pub hard_bounced: u64,
    /// The mean predicted probability of its rows.
    pub predicted: f64,
    pub observed: f64,
    /// The observed rate's 95 % interval.
    pub low: f64,
    pub high: f64,
    /// The predicted rate lies outside the interval: this reason predicted badly.
    pub outside: bool,
}

/// One bin of predicted probability.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Bin {
    /// Predicted probabilities in [from, to).
    pub from: f64,
    pub to: f64,
    pub sent: u64,
    pub hard_bounced: u64,
    pub predicted: f64,
    pub observed: f64,
    pub low: f64,
    pub high: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Calibration {
    pub sent: u64,
    pub hard_bounced: u64,
    /// Mean squared difference between predicted probability and outcome (0 is perfect; always
    /// predicting the observed overall rate r scores r(1−r)).
    pub brier: Option<f64>,
    /// Worst predicted first (by how far the prediction lies from the observed rate, in units
    /// of the prediction's own binomial spread).
    pub rows: Vec<Row>,
    pub reliability: Vec<Bin>,
}

/// Bin edges of the reliability table: fine where most rows are (low probabilities).
const BIN_EDGES: [f64; 8] = [0.0, 0.01, 0.03, 0.07, 0.15, 0.35, 0.7, 1.0000001];

/// 95 % Wilson score interval of k successes in n trials.
pub fn wilson(k: u64, n: u64) -> (f64, f64) {
    if n == 0 {
        return (0.0, 1.0);
    }
    let z = 1.959_963_984_540_054_f64;
    let (n, p) = (n as f64, k as f64 / n as f64);
    let denom = 1.0 + z * z / n;
    let centre = (p + z * z / (2.0 * n)) / denom;
    let half = z * ((p * (1.0 - p) / n) + z * z / (4.0 * n * n)).sqrt() / denom;
    // At k = 0 or k = n the bound is exactly 0 or 1; rounding would leave 1e-16 off it.
    let low = if k == 0 {
        0.0
    } else {
        (centre - half).max(0.0)
    };
    let high = if p >= 1.0 {
        1.0
    } else {
        (centre + half).min(1.0)
    };
    (low, high)
}

#[derive(Default)]
struct Acc {
    sent: u64,
    bounced: u64,
    predicted_sum: f64,
}

impl Acc {
    fn add(&mut self, r: &SentRow) {
        self.sent += 1;
        self.bounced += u64::from(r.hard_bounced);
        self.predicted_sum += r.predicted;
    }
    fn predicted(&self) -> f64 {
        self.predicted_sum / self.sent.max(1) as f64
    }
    fn observed(&self) -> f64 {
        self.bounced as f64 / self.sent.max(1) as f64
    }
}

/// How far the prediction lies from what was observed, in standard deviations of a binomial
/// with the predicted rate (a floor keeps a prediction of 0 or 1 finite).
fn surprise(row: &Row) -> f64 {
    let p = row.predicted.clamp(0.001, 0.999);
    (row.observed - row.predicted).abs() / (p * (1.0 - p) / row.sent as f64).sqrt()
}

pub fn calibrate(rows: impl IntoIterator<Item = SentRow>) -> Calibration {
    let mut by_reason: BTreeMap<(Status, Reason), Acc> = BTreeMap::new();
    let mut bins: Vec<Acc> = (0..BIN_EDGES.len() - 1).map(|_| Acc::default()).collect();
    let (mut total, mut squared) = (Acc::default(), 0.0);
    for r in rows {
        let y = if r.hard_bounced { 1.0 } else { 0.0 };
        squared += (r.predicted - y) * (r.predicted - y);
        total.add(&r);
        by_reason.entry((r.status, r.reason)).or_default().add(&r);
        let bin = BIN_EDGES
            .windows(2)
            .position(|w| r.predicted < w[1])
            .unwrap_or(bins.len() - 1);
        bins[bin].add(&r);
    }
    let mut out_rows: Vec<Row> = by_reason
        .into_iter()
        .map(|((status, reason), a)| {
            let (low, high) = wilson(a.bounced, a.sent);
            let predicted = a.predicted();
            Row {
                status: status.as_str(),
                reason: reason.as_str(),
                sent: a.sent,
                hard_bounced: a.bounced,
                predicted,
                observed: a.observed(),
                low,
                high,
                outside: predicted < low || predicted > high,
            }
        })
        .collect();
    out_rows.sort_by(|a, b| {
        surprise(b)
            .total_cmp(&surprise(a))
            .then(a.reason.cmp(b.reason))
    });
    let reliability = bins
        .into_iter()
        .enumerate()
        .filter(|(_, a)| a.sent > 0)
        .map(|(i, a)| {
            let (low, high) = wilson(a.bounced, a.sent);
            Bin {
                from: BIN_EDGES[i],
                to: BIN_EDGES[i + 1].min(1.0),
                sent: a.sent,
                hard_bounced: a.bounced,
                predicted: a.predicted(),
                observed: a.observed(),
                low,
                high,
            }
        })
        .collect();
    Calibration {
        sent: total.sent,
        hard_bounced: total.bounced,
        brier: (total.sent > 0).then(|| squared / total.sent as f64),
        rows: out_rows,
        reliability,
    }
}

/// New priors: each reason seen in the sent rows moves from `base` toward its observed rate,
/// `(k + strength·p₀) / (n + strength)`; the reasons not seen keep `base`'s value. The evidence
/// each rests on goes with it (`Priors::evidence`, written into the priors file).
pub fn fit(calibration: &Calibration, base: &Priors, strength: f64) -> Priors {
    let mut fitted = base.clone();
    let mut evidence = EvidenceFile::default();
    // Rows of one reason may carry several statuses only in theory (a reason has one status);
    // pool them anyway.
    let mut pooled: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
    for row in &calibration.rows {
        let e = pooled.entry(row.reason).or_default();
        e.0 += row.sent;
        e.1 += row.hard_bounced;
    }
    for (reason, (sent, bounced)) in pooled {
        let Some(r) = Reason::from_code(reason) else {
            continue;
        };
        let prior = base.bounce_p(r.status(), r, Default::default());
        let p = (bounced as f64 + strength * prior) / (sent as f64 + strength);
        fitted.reasons.insert(reason.to_owned(), p);
        evidence.insert(reason, sent, bounced, prior, strength);
    }
    fitted.evidence = evidence;
    fitted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(reason: Reason, n: usize, bounced: usize, p: f64) -> Vec<SentRow> {
        (0..n)
            .map(|i| SentRow {
                status: reason.status(),
                reason,
                predicted: p,
                hard_bounced: i < bounced,
            })
            .collect()
    }

    #[test]
    fn wilson_intervals_match_known_values() {
        let (l, h) = wilson(0, 10);
        assert!(l == 0.0 && (h - 0.2775).abs() < 1e-3, "{l} {h}");
        let (l, h) = wilson(50, 100);
        assert!(
            (l - 0.4038).abs() < 1e-3 && (h - 0.5962).abs() < 1e-3,
            "{l} {h}"
        );
        let (l, h) = wilson(10, 10);
        assert!((l - 0.7225).abs() < 1e-3 && h == 1.0, "{l} {h}");
        assert_eq!(wilson(0, 0), (0.0, 1.0));
    }

    #[test]
    fn a_reason_that_bounces_far_more_than_predicted_comes_first_and_outside() {
        let mut all = rows(Reason::MailboxAccepted, 1000, 20, 0.02);
        all.extend(rows(Reason::DomainAcceptsMail, 500, 100, 0.06));
        let c = calibrate(all);
        assert_eq!((c.sent, c.hard_bounced), (1500, 120));
        assert_eq!(c.rows[0].reason, "domain-accepts-mail");
        assert!(c.rows[0].outside);
        assert_eq!(c.rows[0].observed, 0.2);
        assert!(!c.rows[1].outside, "{:?}", c.rows[1]);
        // Brier: 1000 rows at 0.02 with 20 bounces, 500 at 0.06 with 100.
        let want = (20.0 * 0.98f64.powi(2)
            + 980.0 * 0.02f64.powi(2)
            + 100.0 * 0.94f64.powi(2)
            + 400.0 * 0.06f64.powi(2))
            / 1500.0;
        assert!((c.brier.unwrap() - want).abs() < 1e-12);
        let bins: Vec<(f64, u64)> = c.reliability.iter().map(|b| (b.from, b.sent)).collect();
        assert_eq!(bins, [(0.01, 1000), (0.03, 500)]);
    }

    #[test]
    fn fitted_priors_move_with_the_evidence_and_its_strength() {
        let base = Priors::default();
        let small = calibrate(rows(Reason::DomainAcceptsMail, 10, 5, 0.06));
        let p = fit(&small, &base, 100.0);
        let got = p.reasons["domain-accepts-mail"];
        assert!((got - (5.0 + 6.0) / 110.0).abs() < 1e-12);
        let big = calibrate(rows(Reason::DomainAcceptsMail, 100_000, 20_000, 0.06));
        let p_big = fit(&big, &base, 100.0);
        assert!((p_big.reasons["domain-accepts-mail"] - 0.2).abs() < 0.001);
        // Reasons not in the sent list keep the base value.
        assert_eq!(
            p_big.reasons["mailbox-accepted"],
            base.reasons["mailbox-accepted"]
        );
        let e = &p.evidence.reasons["domain-accepts-mail"];
        assert_eq!((e.sent, e.hard_bounced), (10, 5));
        assert_eq!(e.prior, 0.06);
    }

    #[test]
    fn nothing_sent_has_no_score() {
        let c = calibrate(Vec::new());
        assert_eq!(c.brier, None);
        assert!(c.rows.is_empty() && c.reliability.is_empty());
    }
}
