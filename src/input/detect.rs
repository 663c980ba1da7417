//! Guessing the shape of a list: delimiter, header row, which column holds the addresses.
//! Pure functions over a sample, so every guess is unit-tested.

pub const DELIMITER_CANDIDATES: [u8; 4] = [b',', b';', b'\t', b'|'];

/// The delimiter whose per-line count is most consistent (and non-zero) over the sample's lines.
/// Quoted sections are skipped so "Smith, John" does not vote for ','. One-column files → ','.
pub fn sniff_delimiter(sample: &[u8]) -> u8 {
    let lines: Vec<&[u8]> = sample
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.is_empty())
        .take(50)
        .collect();
    // A sample cut mid-line would skew the last line's counts.
    let lines = if lines.len() > 1 && !sample.ends_with(b"\n") {
        &lines[..lines.len() - 1]
    } else {
        &lines[..]
    };
    // (delimiter, lines agreeing with the mode, cells that look like addresses, mode)
    let mut best = (b',', 0usize, 0usize, 0usize);
    for &d in &DELIMITER_CANDIDATES {
        let counts: Vec<usize> = lines.iter().map(|l| count_unquoted(l, d)).collect();
        let Some(mode) = mode_nonzero(&counts) else {
            continue;
        };
        let agree = counts.iter().filter(|&&c| c == mode).count();
        // On a tie ("Smith, Ann;ann@x.com" has one ',' and one ';' a line), the delimiter that
        // cuts out whole addresses wins.
        let addresses = lines
            .iter()
            .map(|l| {
                l.split(|&b| b == d)
                    .filter(|cell| looks_like_bare_address(&String::from_utf8_lossy(cell)))
                    .count()
            })
            .sum();
        if (agree, addresses, mode) > (best.1, best.2, best.3) {
            best = (d, agree, addresses, mode);
        }
    }
    best.0
}

fn count_unquoted(line: &[u8], d: u8) -> usize {
    let mut quoted = false;
    let mut n = 0;
    for &b in line {
        if b == b'"' {
            quoted = !quoted;
        } else if b == d && !quoted {
            n += 1;
        }
    }
    n
}

fn mode_nonzero(counts: &[usize]) -> Option<usize> {
    let mut tally: Vec<(usize, usize)> = Vec::new();
    for &c in counts.iter().filter(|&&c| c > 0) {
        match tally.iter_mut().find(|(v, _)| *v == c) {
            Some((_, n)) => *n += 1,
            None => tally.push((c, 1)),
        }
    }
    tally
        .into_iter()
        .max_by_key(|&(v, n)| (n, v))
        .map(|(v, _)| v)
}

/// Header names that mean "the email address", compared after lower-casing and dropping
/// everything but letters and digits ("E-Mail Address" → "emailaddress").
const EMAIL_HEADERS: &[&str] = &[
    "email",
    "emailaddress",
    "mail",
    "emails",
    "mailaddress",
    "emailid",
    "eaddress",
    "workemail",
    "businessemail",
    "primaryemail",
    "contactemail",
    "useremail",
    "personalemail",
    "courriel",
    "adressemail",
    "correo",
    "correoelectronico",
    "epost",
    "emailadresse",
];

fn squash(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_alphanumeric())
        .flat_map(char::to_lowercase)
        .collect()
}

/// Index of a header that names the email column: exact known names first, then any name
/// containing "email" ("Email (work)").
pub fn email_header_index(header: &[String]) -> Option<usize> {
    email_header_candidates(header).first().copied()
}

/// Every header that may name the email column, best first: exact known names, then names
/// containing "email" (Google Contacts has "E-mail 1 - Type" before "E-mail 1 - Value", so
/// the caller picks among these by content).
pub fn email_header_candidates(header: &[String]) -> Vec<usize> {
    let squashed: Vec<String> = header.iter().map(|h| squash(h)).collect();
    let exact: Vec<usize> = (0..squashed.len())
        .filter(|&i| EMAIL_HEADERS.contains(&squashed[i].as_str()))
        .collect();
    if !exact.is_empty() {
        return exact;
    }
    (0..squashed.len())
        .filter(|&i| squashed[i].contains("email") && !looks_like_address(&header[i]))
        .collect()
}

/// Whether the first record is a header: no when a cell already holds an address (a data row
/// such as "jane@email.com" must not be mistaken for a header naming "email"); yes otherwise
/// (most exports have one).
pub fn looks_like_header(first: &[String]) -> bool {
    !first.iter().any(|c| looks_like_address(c))
}

/// Share of the non-empty sampled values of `col` that contain '@'.
pub fn at_share(rows: &[Vec<String>], col: usize) -> f64 {
    let values: Vec<&String> = rows
        .iter()
        .filter_map(|r| r.get(col))
        .filter(|v| !v.trim().is_empty())
        .collect();
    if values.is_empty() {
        return 0.0;
    }
    values.iter().filter(|v| v.contains('@')).count() as f64 / values.len() as f64
}

/// A cell that is an address and nothing else: what a correctly split row has.
fn looks_like_bare_address(cell: &str) -> bool {
    let c = cell.trim().trim_matches('"');
    !c.contains(|ch: char| ch.is_whitespace() || ch == ',' || ch == ';' || ch == '|')
        && looks_like_address(c)
}

fn looks_like_address(cell: &str) -> bool {
    let c = cell.trim();
    match c.rfind('@') {
        Some(at) => at > 0 && c[at + 1..].contains('.'),
        None => false,
    }
}

/// The column whose sampled values mostly look like addresses (≥ half of the non-empty ones).
pub fn email_column_by_content(rows: &[Vec<String>], width: usize) -> Option<usize> {
    let mut best: Option<(usize, f64)> = None;
    for col in 0..width {
        let share = at_share(rows, col);
        if share >= 0.5 && best.is_none_or(|(_, s)| share > s) {
            best = Some((col, share));
        }
    }
    best.map(|(c, _)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn delimiters() {
        assert_eq!(sniff_delimiter(b"email,name\na@b.com,Ann\n"), b',');
        assert_eq!(
            sniff_delimiter(b"email;name\na@b.com;\"Smith, Ann\"\n"),
            b';'
        );
        assert_eq!(sniff_delimiter(b"email\tname\na@b.com\tAnn\n"), b'\t');
        assert_eq!(sniff_delimiter(b"email|name|x\na@b.com|Ann|1\n"), b'|');
        assert_eq!(sniff_delimiter(b"a@b.com\nc@d.com\n"), b',');
        // A tie in counts goes to the delimiter that isolates the addresses.
        assert_eq!(
            sniff_delimiter(b"Smith, Ann;ann@acme.com\nLee, Bo;bo@acme.com\n"),
            b';'
        );
        assert_eq!(
            sniff_delimiter(b"Smith, Ann\tann@acme.com\nLee, Bo\tbo@acme.com\n"),
            b'\t'
        );
        assert_eq!(sniff_delimiter(b""), b',');
        // Commas inside quotes do not vote.
        assert_eq!(
            sniff_delimiter(b"n;e\n\"a,b,c\";x@y.z\n\"d,e\";q@r.s\n"),
            b';'
        );
    }

    #[test]
    fn headers() {
        assert_eq!(
            email_header_index(&strings(&["Name", "E-Mail Address"])),
            Some(1)
        );
        assert_eq!(email_header_index(&strings(&["id", "EMAIL"])), Some(1));
        assert_eq!(
            email_header_index(&strings(&["id", "Email (work)"])),
            Some(1)
        );
        assert_eq!(email_header_index(&strings(&["id", "name"])), None);
        assert!(looks_like_header(&strings(&["id", "name"])));
        assert!(!looks_like_header(&strings(&["ann@x.com", "Ann"])));
        assert!(looks_like_header(&strings(&["email"])));
        // Data that merely mentions "email" is data.
        assert!(!looks_like_header(&strings(&["jane@email.com"])));
        assert!(!looks_like_header(&strings(&[
            "Ann",
            "Email Masters Ltd",
            "ann@emailmasters.com"
        ])));
        let google = strings(&["Name", "E-mail 1 - Type", "E-mail 1 - Value"]);
        assert_eq!(email_header_candidates(&google), vec![1, 2]);
    }

    #[test]
    fn content_detection() {
        let rows = vec![
            strings(&["1", "Ann", "ann@x.com"]),
            strings(&["2", "Bob", "bob@y.org"]),
            strings(&["3", "Cy", "not given"]),
        ];
        assert_eq!(email_column_by_content(&rows, 3), Some(2));
        assert_eq!(email_column_by_content(&rows[..0], 3), None);
    }
}
