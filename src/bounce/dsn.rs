//! The fields of a `message/delivery-status` (RFC 3464 §2) or `message/global-delivery-status`
//! (RFC 6533, UTF-8) body, and of a `message/feedback-report` (RFC 5965), which share its
//! syntax: header-style fields, folded lines, one per-message group then per-recipient groups.
//!
//! Read here rather than with the MIME parser's header reader because real reports break the
//! grouping rules: blank lines missing between recipients, blank lines inside a group, fields
//! out of order. A new recipient starts wherever a recipient's first field
//! (`Original-Recipient` or `Final-Recipient`) comes again, blank line or not.

/// One field: the lower-cased name and the unfolded value.
pub type Field = (String, String);

#[derive(Debug, Default, Clone)]
pub struct Report {
    pub per_message: Vec<Field>,
    pub recipients: Vec<Vec<Field>>,
}

/// The unfolded `name: value` fields of a header-style block, in order; lines that are not
/// fields are skipped.
pub fn fields(text: &str) -> Vec<Field> {
    let mut out: Vec<Field> = Vec::new();
    let mut last_was_field = false;
    // CRLF is one line end, not an LF after an empty CR line.
    let text = text.replace("\r\n", "\n");
    for line in text.split(['\n', '\r']) {
        if line.trim().is_empty() {
            last_was_field = false;
            continue;
        }
        if line.starts_with([' ', '\t']) {
            if last_was_field && let Some((_, value)) = out.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        match line.split_once(':') {
            Some((name, value))
                if !name.is_empty()
                    && name
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
            {
                out.push((name.to_ascii_lowercase(), value.trim().to_owned()));
                last_was_field = true;
            }
            _ => last_was_field = false,
        }
    }
    out
}

/// Group the fields of a delivery-status body.
pub fn parse(text: &str) -> Report {
    let mut report = Report::default();
    let mut current: Option<Vec<Field>> = None;
    // Per-recipient fields written before their recipient's first field (Amazon's and
    // Facebook's reports put Action and Status first): held for the next recipient.
    let mut pending: Vec<Field> = Vec::new();
    for (name, value) in fields(text) {
        let per_recipient = PER_RECIPIENT.contains(&name.as_str());
        if per_recipient
            && current.as_ref().is_none_or(|c| {
                c.iter().any(|(n, _)| *n == name) && !c.iter().any(|(n, _)| n == "final-recipient")
            })
        {
            if pending.len() < 64 {
                pending.push((name, value));
            }
            continue;
        }
        let opens = match name.as_str() {
            // Most reports put Original- before Final-Recipient, some after it: only a
            // second Original-, or one after the Final-Recipient's other fields, opens a new one.
            "original-recipient" => current.as_ref().is_none_or(|c| {
                c.iter().any(|(n, _)| n == "original-recipient")
                    || c.last().is_some_and(|(n, _)| n != "final-recipient")
            }),
            "final-recipient" => current
                .as_ref()
                .is_none_or(|c| c.iter().any(|(n, _)| n == "final-recipient")),
            _ => false,
        };
        if opens {
            if let Some(done) = current.take() {
                report.recipients.push(done);
            }
            current = Some(std::mem::take(&mut pending));
        }
        if report.recipients.len() >= super::MAX_RECORDS {
            break;
        }
        match current.as_mut() {
            Some(c) => c.push((name, value)),
            None => report.per_message.push((name, value)),
        }
    }
    if let Some(mut done) = current {
        for (name, value) in pending {
            if !done.iter().any(|(n, _)| *n == name) {
                done.push((name, value));
            }
        }
        report.recipients.push(done);
    }
    report
}

/// The fields RFC 3464 §2.3 defines for a recipient (besides the recipient fields).
const PER_RECIPIENT: &[&str] = &[
    "action",
    "status",
    "remote-mta",
    "diagnostic-code",
    "last-attempt-date",
    "final-log-id",
    "will-retry-until",
];

/// The value of the first field called `name` (lower case).
pub fn get<'a>(fields: &'a [Field], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

/// `rfc822; a@b.example` → `a@b.example`; also the `utf-8;` type of RFC 6533 and a bare or
/// bracketed address.
pub fn address(value: &str) -> Option<String> {
    let v = match value.split_once(';') {
        Some((_, rest)) => rest,
        None => value,
    };
    let v = v
        .trim()
        .trim_start_matches('<')
        .trim_end_matches('>')
        .trim();
    (!v.is_empty() && v.contains('@')).then(|| v.to_owned())
}

/// `dns; mx.example.com` → `mx.example.com`.
pub fn mta(value: &str) -> String {
    match value.split_once(';') {
        Some((_, rest)) => rest.trim().to_owned(),
        None => value.trim().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_split_without_blank_lines_and_fold() {
        let r = parse(
            "Reporting-MTA: dns; mx.example.org\n\nFinal-Recipient: rfc822; a@x.example\n\
             Action: failed\nStatus: 5.1.1\nDiagnostic-Code: smtp; 550 5.1.1\n  user unknown\n\
             Original-Recipient: rfc822;b@x.example\nFinal-Recipient: rfc822; b@x.example\nAction: delayed\n",
        );
        assert_eq!(
            get(&r.per_message, "reporting-mta"),
            Some("dns; mx.example.org")
        );
        assert_eq!(r.recipients.len(), 2);
        assert_eq!(
            get(&r.recipients[0], "diagnostic-code"),
            Some("smtp; 550 5.1.1 user unknown")
        );
        assert_eq!(
            address(get(&r.recipients[1], "final-recipient").unwrap()).as_deref(),
            Some("b@x.example")
        );
    }
}
