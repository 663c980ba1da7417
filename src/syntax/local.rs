//! Local-part rules: RFC 5321 dot-atom, plus RFC 6531 UTF-8 characters.

use super::MAX_LOCAL_OCTETS;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LocalError {
    #[error("nothing before the @")]
    Empty,
    #[error("the part before the @ is {0} octets long; the limit is 64")]
    TooLong(usize),
    #[error("quoted local parts (\"…\"@) are legal in RFC 5321 but virtually never deliverable")]
    Quoted,
    #[error("the part before the @ starts or ends with a dot, or has two dots in a row")]
    Dots,
    #[error("the part before the @ contains the character {0:?}, which is not allowed unquoted")]
    Char(char),
    #[error("the part before the @ contains the invisible or unsafe character U+{0:04X}")]
    Unsafe(u32),
}

/// RFC 5322 `atext` for the ASCII range, as a table: this runs on every byte of every address.
const ATEXT: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 128 {
        let c = b as u8;
        t[b] = c.is_ascii_alphanumeric()
            || matches!(
                c,
                b'!' | b'#'
                    | b'$'
                    | b'%'
                    | b'&'
                    | b'\''
                    | b'*'
                    | b'+'
                    | b'-'
                    | b'/'
                    | b'='
                    | b'?'
                    | b'^'
                    | b'_'
                    | b'`'
                    | b'{'
                    | b'|'
                    | b'}'
                    | b'~'
            );
        b += 1;
    }
    t
};

pub(crate) const fn is_atext(b: u8) -> bool {
    ATEXT[b as usize]
}

/// Where, in an ASCII cell, the first byte is that no local part may hold (neither atext nor
/// a dot) and the first `..` ends: found by the syntax check's one pass over the cell.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct AsciiMarks {
    pub(crate) first_not_local: Option<usize>,
    pub(crate) first_double_dot: Option<usize>,
}

/// [`check_local`] of an ASCII local part that starts the cell `marks` were taken from, without
/// another pass over its bytes.
pub(crate) fn check_ascii_local(local: &str, marks: AsciiMarks) -> Result<(), LocalError> {
    check_local_length_and_ends(local)?;
    let end = local.len();
    let not_local = marks.first_not_local.filter(|&i| i < end);
    let double_dot = marks.first_double_dot.filter(|&i| i < end);
    // check_local reports whichever it meets first.
    match (double_dot, not_local) {
        (Some(d), Some(c)) if d < c => Err(LocalError::Dots),
        (_, Some(c)) => Err(LocalError::Char(char::from(local.as_bytes()[c]))),
        (Some(_), None) => Err(LocalError::Dots),
        (None, None) => Ok(()),
    }
}

fn check_local_length_and_ends(local: &str) -> Result<(), LocalError> {
    if local.is_empty() {
        return Err(LocalError::Empty);
    }
    if local.starts_with('"') {
        return Err(LocalError::Quoted);
    }
    if local.len() > MAX_LOCAL_OCTETS {
        return Err(LocalError::TooLong(local.len()));
    }
    let bytes = local.as_bytes();
    if bytes[0] == b'.' || bytes[bytes.len() - 1] == b'.' {
        return Err(LocalError::Dots);
    }
    Ok(())
}

pub fn check_local(local: &str) -> Result<(), LocalError> {
    check_local_length_and_ends(local)?;
    let bytes = local.as_bytes();
    if local.is_ascii() {
        // Fast path, one pass: the overwhelming majority of real addresses.
        let mut prev_dot = false;
        for &b in bytes {
            if b == b'.' {
                if prev_dot {
                    return Err(LocalError::Dots);
                }
                prev_dot = true;
            } else if is_atext(b) {
                prev_dot = false;
            } else {
                return Err(LocalError::Char(b as char));
            }
        }
        return Ok(());
    }
    if local.contains("..") {
        return Err(LocalError::Dots);
    }
    for c in local.chars() {
        if c.is_ascii() {
            if c != '.' && !is_atext(c as u8) {
                return Err(LocalError::Char(c));
            }
        } else if is_unsafe_unicode(c) {
            return Err(LocalError::Unsafe(c as u32));
        }
    }
    if local.chars().next().is_some_and(is_combining_mark) {
        return Err(LocalError::Unsafe(
            local.chars().next().unwrap_or('?') as u32
        ));
    }
    Ok(())
}

/// Characters that display as nothing, reorder text, or are not characters at all: letting them
/// through makes look-alike addresses and breaks downstream systems.
pub(crate) fn is_unsafe_unicode(c: char) -> bool {
    let u = c as u32;
    c.is_control()
        || c.is_whitespace()
        || matches!(u,
            0x00AD | 0x034F | 0x061C | 0x115F | 0x1160 | 0x17B4 | 0x17B5 | 0x180B..=0x180F
            | 0x200B..=0x200F | 0x2028..=0x202E | 0x2060..=0x206F | 0x3164 | 0xFE00..=0xFE0F
            | 0xFEFF | 0xFFA0 | 0xFFF0..=0xFFFF | 0x1BCA0..=0x1BCA3 | 0x1D173..=0x1D17A
            | 0xE0000..=0xE0FFF)
        // Private use and noncharacters.
        || (0xE000..=0xF8FF).contains(&u)
        || (0xF0000..=0x10FFFF).contains(&u)
        || (0xFDD0..=0xFDEF).contains(&u)
        || (u & 0xFFFE) == 0xFFFE
        // Fullwidth and small at-signs: someone typed the wrong @, not a real mailbox name.
        || matches!(u, 0xFF20 | 0xFE6B)
        // Greek question mark: canonically equivalent to ';' (NFC turns it into one), so any
        // system that normalises sees a character that is not allowed unquoted.
        || u == 0x037E
}

/// Combining marks cannot start a local part (they would attach to the previous character).
fn is_combining_mark(c: char) -> bool {
    matches!(c as u32,
        0x0300..=0x036F | 0x0483..=0x0489 | 0x0591..=0x05BD | 0x0610..=0x061A | 0x064B..=0x065F
        | 0x0900..=0x0903 | 0x093A..=0x094F | 0x1AB0..=0x1AFF | 0x1DC0..=0x1DFF | 0x20D0..=0x20FF
        | 0xFE20..=0xFE2F)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dot_atom_rules() {
        assert!(check_local("john.smith").is_ok());
        assert!(check_local("a").is_ok());
        assert_eq!(check_local(".a"), Err(LocalError::Dots));
        assert_eq!(check_local("a."), Err(LocalError::Dots));
        assert_eq!(check_local("a..b"), Err(LocalError::Dots));
        assert_eq!(check_local("a(b)"), Err(LocalError::Char('(')));
        assert_eq!(check_local("a,b"), Err(LocalError::Char(',')));
        assert_eq!(check_local("a\\b"), Err(LocalError::Char('\\')));
        assert_eq!(check_local("\"a b\""), Err(LocalError::Quoted));
        assert_eq!(check_local(""), Err(LocalError::Empty));
    }

    #[test]
    fn unicode_rules() {
        assert!(check_local("ñoñó").is_ok());
        assert!(check_local("伊昭傑").is_ok());
        assert_eq!(check_local("a\u{200b}b"), Err(LocalError::Unsafe(0x200b)));
        assert_eq!(check_local("a\u{202e}b"), Err(LocalError::Unsafe(0x202e)));
        assert_eq!(check_local("a\u{e000}"), Err(LocalError::Unsafe(0xe000)));
        assert_eq!(check_local("\u{0301}a"), Err(LocalError::Unsafe(0x0301)));
        assert_eq!(check_local("\u{ff20}"), Err(LocalError::Unsafe(0xff20)));
        assert_eq!(check_local("me.\u{37e}"), Err(LocalError::Unsafe(0x37e)));
    }
}
