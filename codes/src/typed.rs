//! What request and return codes share: text an operator may type, made of UDI characters,
//! `:` between the parts, and a check at the end (see [`alphabet`](super::alphabet)).

use super::alphabet::{CHECK_LEN, check, check_value, crc20};
use super::error::{CodeError, CodeKind, Result};
use super::udi::is_udi_char;

/// How one kind of typed code looks.
pub(crate) struct Shape {
    pub kind: CodeKind,
    /// Mixed into the check, so that one kind of code never passes for another.
    pub domain: &'static [u8],
    pub min_len: usize,
    pub max_len: usize,
    /// How many `:` separate the parts.
    pub colons: usize,
    /// Said when the parts are not there.
    pub layout: &'static str,
}

/// `body` followed by its check.
pub(crate) fn seal(shape: &Shape, body: &str) -> String {
    let mut code = String::with_capacity(body.len() + CHECK_LEN);
    code.push_str(body);
    code.push_str(&check(shape.domain, body));
    code
}

/// The parts of `code` (surrounding whitespace removed, the check verified and cut off),
/// split at `:`. Refuses anything else, cheapest tests first.
pub(crate) fn open<'a>(shape: &Shape, code: &'a str) -> Result<Vec<&'a str>> {
    let kind = shape.kind;
    let code = code.trim_matches(|c: char| c.is_ascii_whitespace());
    if code.is_empty() {
        return Err(CodeError::Empty { kind });
    }
    if code.len() > shape.max_len {
        return Err(CodeError::TooLong {
            kind,
            len: code.chars().count(),
            max: shape.max_len,
        });
    }
    for (i, c) in code.chars().enumerate() {
        if !c.is_ascii() || c.is_ascii_control() {
            return Err(CodeError::NotAscii {
                kind,
                position: i + 1,
            });
        }
        if !(is_udi_char(c as u8) || c == ':') {
            return Err(CodeError::BadCharacter {
                kind,
                character: c,
                position: i + 1,
            });
        }
    }
    if code.len() < shape.min_len {
        return Err(CodeError::TooShort {
            kind,
            len: code.len(),
            min: shape.min_len,
        });
    }
    if code.bytes().filter(|&c| c == b':').count() != shape.colons {
        return Err(CodeError::Malformed {
            kind,
            detail: shape.layout,
        });
    }
    let (body, written) = code.split_at(code.len() - CHECK_LEN);
    if check_value(written) != Some(crc20(shape.domain, body.as_bytes())) {
        return Err(CodeError::CheckMismatch { kind });
    }
    Ok(body.split(':').collect())
}
