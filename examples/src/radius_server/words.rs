//! The words of a line of the users and clients files: bare words separated by blanks,
//! double-quoted strings (with `\"` and `\\` escapes), lone commas, and `#` comments to the
//! end of the line.

use super::error::LineError;

/// One word of a line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Word {
    /// The word, unquoted.
    pub(crate) text: String,
    /// Whether it was written in double quotes (so it may hold blanks, `#` and `,`).
    pub(crate) quoted: bool,
}

impl Word {
    /// Whether this is the lone comma that separates FreeRADIUS items.
    pub(crate) fn is_comma(&self) -> bool {
        !self.quoted && self.text == ","
    }
}

/// Splits a line into words, dropping a trailing comment.
pub(crate) fn split(line: &str) -> Result<Vec<Word>, LineError> {
    let mut words = Vec::new();
    let mut chars = line.chars().peekable();
    while let Some(&c) = chars.peek() {
        match c {
            c if c.is_whitespace() => {
                chars.next();
            }
            '#' => break,
            ',' => {
                chars.next();
                words.push(Word {
                    text: ",".into(),
                    quoted: false,
                });
            }
            '"' => {
                chars.next();
                let mut text = String::new();
                loop {
                    match chars.next() {
                        None => return Err(LineError::UnterminatedQuote),
                        Some('"') => break,
                        Some('\\') => match chars.next() {
                            Some(e @ ('"' | '\\')) => text.push(e),
                            Some(e) => return Err(LineError::UnknownEscape(e)),
                            None => return Err(LineError::UnterminatedQuote),
                        },
                        Some(c) if c.is_control() => return Err(LineError::ControlCharacter),
                        Some(c) => text.push(c),
                    }
                }
                if chars
                    .peek()
                    .is_some_and(|c| !c.is_whitespace() && *c != ',')
                {
                    return Err(LineError::TextAfterQuote);
                }
                words.push(Word { text, quoted: true });
            }
            _ => {
                let mut text = String::new();
                while let Some(&c) = chars.peek() {
                    if c.is_whitespace() || c == ',' {
                        break;
                    }
                    if c == '"' {
                        return Err(LineError::QuoteInWord);
                    }
                    if c.is_control() {
                        return Err(LineError::ControlCharacter);
                    }
                    text.push(c);
                    chars.next();
                }
                words.push(Word {
                    text,
                    quoted: false,
                });
            }
        }
    }
    Ok(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(line: &str) -> Vec<(String, bool)> {
        split(line)
            .expect("splits")
            .into_iter()
            .map(|w| (w.text, w.quoted))
            .collect()
    }

    #[test]
    fn words_quotes_commas_and_comments() {
        assert_eq!(texts(""), []);
        assert_eq!(texts("   # all comment"), []);
        assert_eq!(
            texts("a\tb  \"c d # e\" # f"),
            [
                ("a".into(), false),
                ("b".into(), false),
                ("c d # e".into(), true)
            ]
        );
        assert_eq!(
            texts(r#""x\"y\\z", w"#),
            [
                ("x\"y\\z".into(), true),
                (",".into(), false),
                ("w".into(), false)
            ]
        );
        assert_eq!(texts(r#""""#), [(String::new(), true)]);
        assert_eq!(texts("a#b"), [("a#b".into(), false)], "# inside a word");
    }

    #[test]
    fn malformed_lines_are_refused() {
        assert_eq!(split(r#"a "b"#), Err(LineError::UnterminatedQuote));
        assert_eq!(split(r#"a "b\"#), Err(LineError::UnterminatedQuote));
        assert_eq!(split(r#""a\n""#), Err(LineError::UnknownEscape('n')));
        assert_eq!(split(r#""a"b"#), Err(LineError::TextAfterQuote));
        assert_eq!(split(r#"a"b""#), Err(LineError::QuoteInWord));
        assert_eq!(split("a\u{7}b"), Err(LineError::ControlCharacter));
        assert_eq!(split("\"a\u{0}\""), Err(LineError::ControlCharacter));
    }
}
