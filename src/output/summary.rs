//! summary.json and the short human summary on stderr.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::forecast::PredictedBounceRate;
use crate::verdict::Status;

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StatusCounts {
    pub valid: u64,
    pub invalid: u64,
    #[serde(rename = "catch-all")]
    pub catch_all: u64,
    pub unknown: u64,
}

impl StatusCounts {
    pub fn add(&mut self, s: Status) {
        *self.get_mut(s) += 1;
    }
    pub fn merge(&mut self, o: &StatusCounts) {
        for s in Status::ALL {
            *self.get_mut(s) += o.get(s);
        }
    }
    pub fn get(&self, s: Status) -> u64 {
        match s {
            Status::Valid => self.valid,
            Status::Invalid => self.invalid,
            Status::CatchAll => self.catch_all,
            Status::Unknown => self.unknown,
        }
    }
    fn get_mut(&mut self, s: Status) -> &mut u64 {
        match s {
            Status::Valid => &mut self.valid,
            Status::Invalid => &mut self.invalid,
            Status::CatchAll => &mut self.catch_all,
            Status::Unknown => &mut self.unknown,
        }
    }
}

/// How the input was read, so a surprising result can be traced to a detection guess.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InputShape {
    pub path: String,
    pub delimiter: String,
    pub has_header: bool,
    pub email_column: String,
    pub columns: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub prebounce_version: &'static str,
    pub level: String,
    pub rows: u64,
    /// Distinct well-formed addresses (local part compared case-insensitively).
    pub unique_addresses: u64,
    /// Rows repeating an earlier row's address.
    pub duplicates: u64,
    pub status: StatusCounts,
    pub reasons: BTreeMap<String, u64>,
    pub flags: BTreeMap<String, u64>,
    /// Rows with a typo suggestion.
    pub suggestions: u64,
    pub predicted_bounce_rate: PredictedBounceRate,
    pub priors: String,
    pub input: InputShape,
    /// DNS work (absent at --level syntax).
    pub dns: Option<crate::dns::DnsStats>,
    /// SMTP work (only at --level smtp).
    pub smtp: Option<crate::smtp::probe::SmtpStats>,
    pub output_dir: String,
    pub elapsed_seconds: f64,
}

fn pct(x: f64) -> String {
    format!("{:.2}%", x * 100.0)
}

/// Thousands separators: a person reads 1,204,331 faster than 1204331.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

impl Summary {
    /// The few lines a person needs: counts, the forecast with its band, where the files are.
    pub fn human(&self) -> String {
        let mut s = String::new();
        let st = &self.status;
        let _ = writeln!(
            s,
            "prebounce: {} rows at level {} in {:.2}s: valid {} · invalid {} · catch-all {} · unknown {}",
            thousands(self.rows),
            self.level,
            self.elapsed_seconds,
            thousands(st.valid),
            thousands(st.invalid),
            thousands(st.catch_all),
            thousands(st.unknown)
        );
        let flags: Vec<String> = self
            .flags
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{k} {}", thousands(*n)))
            .collect();
        let _ = writeln!(
            s,
            "  {} unique addresses, {} duplicates, {} typo suggestions{}{}",
            thousands(self.unique_addresses),
            thousands(self.duplicates),
            thousands(self.suggestions),
            if flags.is_empty() { "" } else { "; flags: " },
            flags.join(", ")
        );
        let mut reasons: Vec<(&String, &u64)> = self.reasons.iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let top: Vec<String> = reasons
            .iter()
            .take(6)
            .map(|(k, n)| format!("{k} {}", thousands(**n)))
            .collect();
        if !top.is_empty() {
            let _ = writeln!(s, "  reasons: {}", top.join(", "));
        }
        if let Some(d) = &self.dns {
            let _ = writeln!(
                s,
                "  dns: {} domains, {} queries, {} failed queries",
                thousands(d.unique_domains),
                thousands(d.queries),
                thousands(d.errors)
            );
        }
        if let Some(m) = &self.smtp {
            let _ = writeln!(
                s,
                "  smtp: {} domains ({} catch-all), {} sessions, {} RCPT commands, {} deferred, {} hosts given up",
                thousands(m.domains),
                thousands(m.catch_all_domains),
                thousands(m.sessions),
                thousands(m.rcpt_commands),
                thousands(m.deferred),
                thousands(m.hosts_given_up)
            );
        }
        let f = &self.predicted_bounce_rate;
        let _ = writeln!(
            s,
            "  predicted bounce rate: {} sending to all ({}) · {} valid only · {} valid + catch-all",
            pct(f.all),
            f.band,
            pct(f.valid_only),
            pct(f.valid_and_catch_all)
        );
        let _ = writeln!(
            s,
            "  lists: {dir}/valid.csv, invalid.csv, catch-all.csv, unknown.csv; summary: {dir}/summary.json",
            dir = self.output_dir
        );
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
    }

    #[test]
    fn status_counts_serialize_with_kebab_keys() {
        let mut c = StatusCounts::default();
        c.add(Status::CatchAll);
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(json, r#"{"valid":0,"invalid":0,"catch-all":1,"unknown":0}"#);
    }
}
