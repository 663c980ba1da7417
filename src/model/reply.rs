//! An SMTP reply as data: its code, enhanced code and text, parsed from the server's lines
//! (RFC 5321 §4.2, RFC 3463). What a reply means for an address is `smtp::reply`'s job.

use std::fmt;

use serde::{Serialize, Serializer};

/// An RFC 3463 enhanced status code, `class.subject.detail` (`5.1.1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EnhancedCode {
    /// 2 success, 4 persistent transient failure, 5 permanent failure.
    pub class: u8,
    /// 0 other, 1 addressing, 2 mailbox, 3 mail system, 4 network/routing, 5 protocol,
    /// 6 content, 7 security/policy.
    pub subject: u16,
    pub detail: u16,
}

impl EnhancedCode {
    pub const fn new(class: u8, subject: u16, detail: u16) -> Self {
        EnhancedCode {
            class,
            subject,
            detail,
        }
    }

    /// `2.1.5`, `4.7.0`, `5.1.10` …: class 2, 4 or 5, then one to three digits twice.
    pub fn parse(token: &str) -> Option<EnhancedCode> {
        let mut parts = token.split('.');
        let (class, subject, detail) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let number = |s: &str| (1..=3).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit());
        if !matches!(class, "2" | "4" | "5") || !number(subject) || !number(detail) {
            return None;
        }
        Some(EnhancedCode::new(
            class.as_bytes()[0] - b'0',
            subject.parse().ok()?,
            detail.parse().ok()?,
        ))
    }
}

impl fmt::Display for EnhancedCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.class, self.subject, self.detail)
    }
}

impl Serialize for EnhancedCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One SMTP reply, multi-line replies joined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The three-digit reply code (200–599).
    pub code: u16,
    /// The first line's enhanced status code, when it has one.
    pub enhanced: Option<EnhancedCode>,
    /// The text after the codes, lines joined with one space.
    pub text: String,
}

/// Why a text is not one SMTP reply. Lines are counted without blank ones, from 1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReplyError {
    #[error("the reply is empty")]
    Empty,
    #[error(
        "line {line} starts with the enhanced status code {code} but no three-digit reply code \
         (a bounce's Status: text is not an SMTP reply; put the code first, e.g. \"550 {code} …\")"
    )]
    EnhancedWithoutCode { line: usize, code: EnhancedCode },
    #[error("line {line} does not start with a three-digit SMTP reply code")]
    NoCode { line: usize },
    #[error("line {line}: {code} is not an SMTP reply code (the first digit must be 2, 3, 4 or 5)")]
    CodeOutOfRange { line: usize, code: u16 },
    #[error("line {line}: the code {code} is followed by {found:?}, not a space, '-' or ':'")]
    BadSeparator { line: usize, code: u16, found: char },
    #[error(
        "line {line} has the code {found} but the reply began with {first}; the lines of one reply \
         share one code (is this a transcript of several replies? give the one to decode)"
    )]
    MixedCodes { line: usize, first: u16, found: u16 },
    #[error(
        "line {line} follows the reply's last line (\"{code} …\", code then a space); is this a \
         transcript of several replies? give the one to decode"
    )]
    AfterLastLine { line: usize, code: u16 },
}

impl Reply {
    pub fn parse(text: &str) -> Result<Reply, ReplyError> {
        let mut code: Option<u16> = None;
        let mut enhanced = None;
        let mut texts: Vec<&str> = Vec::new();
        let mut ended = false;
        let lines = text
            .split(['\n', '\r'])
            .map(str::trim)
            .filter(|l| !l.is_empty());
        for (i, line) in lines.enumerate() {
            let number = i + 1;
            if let Some(code) = code.filter(|_| ended) {
                return Err(ReplyError::AfterLastLine { line: number, code });
            }
            let (this, last, rest) = split_code(line, number)?;
            let first = *code.get_or_insert(this);
            if this != first {
                return Err(ReplyError::MixedCodes {
                    line: number,
                    first,
                    found: this,
                });
            }
            ended = last;
            let mut rest = rest.trim_start();
            let (token, after) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            // qmail and vpopmail write `#5.1.1`; some servers `5.7.0,` or `5.1.1:`.
            let token = token.strip_prefix('#').unwrap_or(token);
            let token = token.strip_suffix([',', ':', ';']).unwrap_or(token);
            if let Some(e) = EnhancedCode::parse(token) {
                if number == 1 {
                    enhanced = Some(e);
                    rest = after;
                } else if enhanced == Some(e) {
                    rest = after;
                }
            }
            let rest = rest.trim();
            if !rest.is_empty() {
                texts.push(rest);
            }
        }
        Ok(Reply {
            code: code.ok_or(ReplyError::Empty)?,
            enhanced,
            text: texts.join(" "),
        })
    }
}

/// `(code, is the last line, the rest of the line)`.
fn split_code(line: &str, number: usize) -> Result<(u16, bool, &str), ReplyError> {
    let b = line.as_bytes();
    if b.len() < 3 || !b[..3].iter().all(u8::is_ascii_digit) {
        let token = line.split(char::is_whitespace).next().unwrap_or("");
        return Err(match EnhancedCode::parse(token) {
            Some(code) => ReplyError::EnhancedWithoutCode { line: number, code },
            None => ReplyError::NoCode { line: number },
        });
    }
    let code = b[..3]
        .iter()
        .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
    if !(200..600).contains(&code) {
        return Err(ReplyError::CodeOutOfRange { line: number, code });
    }
    // The first three bytes are ASCII digits, so byte 3 starts a character.
    let tail = &line[3..];
    match tail.chars().next() {
        None => Ok((code, true, "")),
        Some(' ' | '\t' | ':') => Ok((code, true, &tail[1..])),
        Some('-') => Ok((code, false, &tail[1..])),
        Some(found) => Err(ReplyError::BadSeparator {
            line: number,
            code,
            found,
        }),
    }
}

impl fmt::Display for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.code)?;
        if let Some(e) = self.enhanced {
            write!(f, " {e}")?;
        }
        if !self.text.is_empty() {
            write!(f, " {}", self.text)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 1000,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Whatever a server sends, the parser returns a reply or an error.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in vec(any::<u8>(), 0..300)) {
            if let Ok(reply) = Reply::parse(&String::from_utf8_lossy(&bytes)) {
                prop_assert!((200..600).contains(&reply.code));
                let _ = reply.to_string();
            }
        }

        /// Text shaped like replies (codes, separators, enhanced codes, odd line ends) reaches
        /// the paths that plain random bytes rarely do.
        #[test]
        fn reply_shaped_text_never_panics(
            text in "([0-9]{1,4}[- :\t\u{e9}x]?#?([0-9]\\.[0-9]{1,4}\\.[0-9]{1,4}[,:;]?)? ?[ -~\u{e9}]{0,12}(\r\n|\n|\r)?){0,5}"
        ) {
            let _ = Reply::parse(&text);
        }

        /// A well-formed reply, single- or multi-line, with or without an enhanced code (on
        /// every line or the first only), parses to its parts; its display parses back to it.
        #[test]
        fn a_well_formed_reply_round_trips(
            code in 200u16..600,
            enhanced in proptest::option::of((prop_oneof![Just(2u8), Just(4), Just(5)], 0u16..1000, 0u16..1000)),
            every_line in any::<bool>(),
            lines in vec("[a-zA-Z<][a-zA-Z0-9.<>@]{0,10}( [a-zA-Z][a-zA-Z0-9.,]{0,10}){0,3}", 1..4),
            line_end in prop_oneof![Just("\r\n"), Just("\n")],
        ) {
            let enhanced = enhanced.map(|(c, s, d)| EnhancedCode::new(c, s, d));
            let mut wire = String::new();
            for (i, line) in lines.iter().enumerate() {
                let sep = if i + 1 == lines.len() { ' ' } else { '-' };
                wire.push_str(&format!("{code}{sep}"));
                if let Some(e) = enhanced.filter(|_| i == 0 || every_line) {
                    wire.push_str(&format!("{e} "));
                }
                wire.push_str(line);
                wire.push_str(line_end);
            }
            let reply = Reply::parse(&wire).unwrap();
            prop_assert_eq!(&reply, &Reply { code, enhanced, text: lines.join(" ") });
            prop_assert_eq!(Reply::parse(&reply.to_string()).unwrap(), reply);
        }
    }
}
