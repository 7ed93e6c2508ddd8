//! The users file: who may log in with PAP, and with which password.
//!
//! One user per line, in either of two forms; blank lines and `#` comments are ignored:
//!
//! ```text
//! # FreeRADIUS users-file style (a subset: one check item, no reply items)
//! alice   Cleartext-Password := "wonderland"
//! # or NAME:PASSWORD, the password being the rest of the line, verbatim
//! bob:builder
//! ```
//!
//! A user name is 1 to 253 octets without blanks, quotes or `:`; a password is 1 to 128
//! octets (the most User-Password carries) without NUL. A quoted password may hold blanks,
//! `#`, `\"` and `\\`. Indented lines (FreeRADIUS reply items), `DEFAULT` entries, other
//! check items and a user listed twice are refused, each with its line number and never
//! quoting a password.
//!
//! ```
//! use entitle_examples::radius_server::Users;
//!
//! let users = Users::parse("alice Cleartext-Password := \"wonder land\"\nbob:builder\n")?;
//! assert!(users.check(b"alice", b"wonder land"));
//! assert!(users.check(b"bob", b"builder"));
//! assert!(!users.check(b"bob", b"Builder"));
//! assert!(!users.check(b"carol", b""));
//! assert!(Users::parse("alice Crypt-Password := \"x\"").is_err());
//! # Ok::<(), entitle_examples::radius_server::ParseError>(())
//! ```

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use super::error::{Error, LineError, Result};
use super::words::{Word, split};

/// The longest User-Password (RFC 2865 §5.2).
const MAX_PASSWORD: usize = 128;
/// The longest User-Name: what one attribute holds.
const MAX_NAME: usize = 253;

/// A malformed line, before the file's name is known.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct ParseError {
    /// The line, counted from 1.
    pub line: usize,
    /// What is wrong with it.
    pub problem: LineError,
}

impl ParseError {
    pub(crate) fn in_file(self, path: &Path) -> Error {
        Error::Line {
            path: path.to_owned(),
            line: self.line,
            problem: self.problem,
        }
    }
}

/// A cleartext password, never shown by `Debug`.
#[derive(Clone, PartialEq, Eq)]
struct Password(Vec<u8>);

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

/// The users of a users file.
#[derive(Clone, Debug, Default)]
pub struct Users {
    /// Each user's password and the line it was read from.
    by_name: HashMap<Vec<u8>, (Password, usize)>,
}

impl Users {
    /// Reads and parses a users file.
    pub fn read(path: &Path) -> Result<Users> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_owned(),
            source,
        })?;
        Users::parse(&text).map_err(|e| e.in_file(path))
    }

    /// Parses the text of a users file.
    pub fn parse(text: &str) -> Result<Users, ParseError> {
        let mut users = Users::default();
        for (index, line) in text.lines().enumerate() {
            let line_no = index + 1;
            let at = |problem| ParseError {
                line: line_no,
                problem,
            };
            let Some((name, password)) = parse_line(line).map_err(at)? else {
                continue;
            };
            if let Some((_, first)) = users.by_name.get(name.as_bytes()) {
                return Err(at(LineError::DuplicateUser {
                    name,
                    first: *first,
                }));
            }
            users.by_name.insert(
                name.into_bytes(),
                (Password(password.into_bytes()), line_no),
            );
        }
        Ok(users)
    }

    /// How many users there are.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }

    /// Whether `name` is a user whose password is `password`. The passwords are compared
    /// in time that depends only on their lengths.
    pub fn check(&self, name: &[u8], password: &[u8]) -> bool {
        self.by_name
            .get(name)
            .is_some_and(|(known, _)| same_octets(&known.0, password))
    }
}

/// One line: `None` for a blank line or a comment.
fn parse_line(line: &str) -> Result<Option<(String, String)>, LineError> {
    let trimmed = line.trim_start();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Ok(None);
    }
    if trimmed.len() != line.len() {
        return Err(LineError::Indented);
    }
    let first = line.split(char::is_whitespace).next().unwrap_or(line);
    if let Some((name, _)) = first.split_once(':') {
        // NAME:PASSWORD takes the rest of the line, blanks and all.
        return Ok(Some((
            checked_name(name)?,
            checked_password(&line[name.len() + 1..])?,
        )));
    }
    let words = split(line)?;
    let mut words = words.into_iter();
    let name = match words.next() {
        Some(Word {
            text,
            quoted: false,
        }) => text,
        _ => return Err(LineError::BadUserName),
    };
    if name == "DEFAULT" {
        return Err(LineError::DefaultEntry);
    }
    let name = checked_name(&name)?;
    match words.next() {
        None => return Err(LineError::NoPassword),
        Some(w) if !w.quoted && w.text.eq_ignore_ascii_case("Cleartext-Password") => {}
        Some(_) => return Err(LineError::UnsupportedItem),
    }
    match words.next() {
        Some(w) if !w.quoted && w.text == ":=" => {}
        _ => return Err(LineError::ExpectedAssign),
    }
    let password = match words.next() {
        Some(w) if !w.is_comma() => w.text,
        _ => return Err(LineError::NoPassword),
    };
    if words.next().is_some() {
        return Err(LineError::TrailingText);
    }
    Ok(Some((name, checked_password(&password)?)))
}

fn checked_name(name: &str) -> Result<String, LineError> {
    let bad = |c: char| c.is_whitespace() || c.is_control() || c == '"' || c == ':';
    if name.is_empty() || name.len() > MAX_NAME || name.contains(bad) {
        return Err(LineError::BadUserName);
    }
    Ok(name.to_owned())
}

fn checked_password(password: &str) -> Result<String, LineError> {
    if password.is_empty() || password.len() > MAX_PASSWORD || password.contains('\0') {
        return Err(LineError::BadPassword);
    }
    Ok(password.to_owned())
}

/// Equality in time that depends on the lengths only.
fn same_octets(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let difference = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(difference) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problem(text: &str) -> LineError {
        Users::parse(text).expect_err("refused").problem
    }

    #[test]
    fn both_forms_comments_and_blank_lines() {
        let users = Users::parse(
            "# users\n\nalice\tCleartext-Password := \"a b # c\"   # trailing comment\r\n\
             bob:has:colons and blanks \n\
             carol cleartext-password := bare\n",
        )
        .expect("parses");
        assert_eq!(users.len(), 3);
        assert!(users.check(b"alice", b"a b # c"));
        assert!(users.check(b"bob", b"has:colons and blanks "));
        assert!(users.check(b"carol", b"bare"));
        assert!(!users.check(b"carol", b"bar"));
        assert!(!users.check(b"carol", b"bare "));
        assert!(!users.check(b"dave", b"bare"));
        assert!(Users::parse("").expect("empty").is_empty());
    }

    #[test]
    fn debug_never_shows_a_password() {
        let users = Users::parse("alice:wonderland").expect("parses");
        assert!(!format!("{users:?}").contains("wonderland"));
    }

    #[test]
    fn malformed_lines_are_refused_with_their_number() {
        let e = Users::parse("alice:a\n\n  Reply-Message := \"hi\"\n").expect_err("refused");
        assert_eq!(
            e,
            ParseError {
                line: 3,
                problem: LineError::Indented
            }
        );
        assert_eq!(problem("alice"), LineError::NoPassword);
        assert_eq!(problem("alice:"), LineError::BadPassword);
        assert_eq!(problem(":secret"), LineError::BadUserName);
        assert_eq!(
            problem("\"alice\" Cleartext-Password := x"),
            LineError::BadUserName
        );
        assert_eq!(
            problem("DEFAULT Auth-Type := Reject"),
            LineError::DefaultEntry
        );
        assert_eq!(
            problem("alice Crypt-Password := \"x\""),
            LineError::UnsupportedItem
        );
        assert_eq!(problem("alice secret"), LineError::UnsupportedItem);
        assert_eq!(
            problem("alice Cleartext-Password == \"x\""),
            LineError::ExpectedAssign
        );
        assert_eq!(
            problem("alice Cleartext-Password:=\"x\""),
            LineError::QuoteInWord
        );
        assert_eq!(
            problem("alice Cleartext-Password :="),
            LineError::NoPassword
        );
        assert_eq!(
            problem("alice Cleartext-Password := ,"),
            LineError::NoPassword
        );
        assert_eq!(
            problem("alice Cleartext-Password := \"x\", Reply-Message := \"y\""),
            LineError::TrailingText
        );
        assert_eq!(
            problem("alice Cleartext-Password := \"\""),
            LineError::BadPassword
        );
        assert_eq!(
            problem(&format!("alice:{}", "x".repeat(129))),
            LineError::BadPassword
        );
        assert!(Users::parse(&format!("alice:{}", "x".repeat(128))).is_ok());
        assert_eq!(
            problem(&format!("{}:x", "n".repeat(254))),
            LineError::BadUserName
        );
        assert_eq!(
            problem("alice Cleartext-Password := \"x"),
            LineError::UnterminatedQuote
        );
        assert_eq!(
            problem("alice:x\nbob:y\nalice Cleartext-Password := z"),
            LineError::DuplicateUser {
                name: "alice".into(),
                first: 1
            }
        );
    }

    #[test]
    fn no_error_message_quotes_a_password() {
        for text in [
            "alice hunter2",
            "alice Cleartext-Password := hunter2 hunter2",
            "alice Cleartext-Password := \"hunter2",
            "alice:hunter2\nalice:hunter2",
        ] {
            let message = Users::parse(text).expect_err("refused").to_string();
            assert!(!message.contains("hunter2"), "{message}");
        }
    }

    #[test]
    fn read_names_the_file() {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join("users");
        std::fs::write(&path, "alice:x\nbob\n").expect("written");
        let message = Users::read(&path).expect_err("refused").to_string();
        assert!(message.ends_with("users:2: no password: write `NAME Cleartext-Password := \"PASSWORD\"` or `NAME:PASSWORD`"), "{message}");
        let missing = Users::read(&dir.path().join("none")).expect_err("refused");
        assert!(matches!(missing, Error::Read { .. }));
    }
}
