//! One line of a preflight table: a check's stable id, its status, the evidence and what to
//! do. Pure.

use serde::Serialize;
use serde_json::{Map, Value};

/// How a check came out. `Fail` makes `prebounce preflight` exit with 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckStatus {
    Pass,
    Warn,
    Fail,
    /// Not run: nothing to check, or it needs something that is missing (the reason is the
    /// detail).
    Skip,
}

impl CheckStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CheckStatus::Pass => "pass",
            CheckStatus::Warn => "warn",
            CheckStatus::Fail => "fail",
            CheckStatus::Skip => "skip",
        }
    }
}

/// One check: `{"id", "status", "detail", "advice"?, …its own fields}` in JSON. The ids are
/// stable (`mx`, `spf`, `dkim:<selector>`, `dmarc`, `bulk-sender`, `egress-ip`, `ptr`,
/// `fcrdns`, `helo`, `dnsbl:<zone>`, `port25`), and so are the fields each one documents.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Check {
    pub id: String,
    pub status: CheckStatus,
    /// The evidence: one line (`spf` adds its include tree on the lines after it).
    pub detail: String,
    /// What to do about a warning or failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advice: Option<String>,
    /// The check's own fields (`lookups`, `bits`, `listed` …), next to the common ones.
    #[serde(flatten)]
    pub fields: Map<String, Value>,
}

impl Check {
    pub fn new(id: impl Into<String>, status: CheckStatus, detail: impl Into<String>) -> Self {
        Check {
            id: id.into(),
            status,
            detail: detail.into(),
            advice: None,
            fields: Map::new(),
        }
    }

    pub fn pass(id: impl Into<String>, detail: impl Into<String>) -> Self {
        Check::new(id, CheckStatus::Pass, detail)
    }

    pub fn warn(id: impl Into<String>, detail: impl Into<String>) -> Self {
        Check::new(id, CheckStatus::Warn, detail)
    }

    pub fn fail(id: impl Into<String>, detail: impl Into<String>) -> Self {
        Check::new(id, CheckStatus::Fail, detail)
    }

    pub fn skip(id: impl Into<String>, detail: impl Into<String>) -> Self {
        Check::new(id, CheckStatus::Skip, detail)
    }

    /// Adds (or replaces) one of the check's own fields.
    pub fn with(mut self, field: &str, value: impl Into<Value>) -> Self {
        self.fields.insert(field.to_owned(), value.into());
        self
    }

    pub fn advise(mut self, advice: impl Into<String>) -> Self {
        self.advice = Some(advice.into());
        self
    }

    /// One of the check's own fields.
    pub fn field(&self, name: &str) -> Option<&Value> {
        self.fields.get(name)
    }
}

/// The worst status among `checks` that ran: fail over warn over pass; skip when none ran.
pub fn worst(checks: &[Check]) -> CheckStatus {
    let ran = checks.iter().filter(|c| c.status != CheckStatus::Skip);
    ran.map(|c| c.status).max().unwrap_or(CheckStatus::Skip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_serializes_its_own_fields_beside_the_common_ones() {
        let check = Check::fail("spf", "11 DNS lookups")
            .with("lookups", 11)
            .with("all", "-all")
            .advise("flatten includes");
        let json = serde_json::to_value(&check).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "id": "spf", "status": "fail", "detail": "11 DNS lookups",
                "advice": "flatten includes", "lookups": 11, "all": "-all"
            })
        );
        assert_eq!(check.field("lookups"), Some(&Value::from(11)));
    }

    #[test]
    fn advice_is_left_out_when_there_is_none() {
        let json = serde_json::to_value(Check::pass("mx", "ok")).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"id": "mx", "status": "pass", "detail": "ok"})
        );
    }

    #[test]
    fn the_worst_status_ignores_skipped_checks() {
        let checks = [
            Check::pass("a", ""),
            Check::skip("b", ""),
            Check::warn("c", ""),
        ];
        assert_eq!(worst(&checks), CheckStatus::Warn);
        assert_eq!(worst(&[Check::skip("b", "")]), CheckStatus::Skip);
        assert_eq!(worst(&[]), CheckStatus::Skip);
        assert_eq!(
            worst(&[Check::fail("a", ""), Check::warn("b", "")]),
            CheckStatus::Fail
        );
    }
}
