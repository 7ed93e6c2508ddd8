//! The command words of the operator CLI, parsed into a [`Command`].
//!
//! The grammar is a small tree of keywords (`license smart renew id`) ending in values (an
//! ID token, a tag, a count, a URL). Each step names what it expected, so a malformed
//! command gets a precise sentence. To add a command, add a keyword to the step where it
//! branches and a variant to [`Command`].
//!
//! ```
//! use entitle_cli::command::{parse, Command};
//!
//! assert_eq!(parse(&["license", "smart", "renew", "id"]), Ok(Command::RenewId));
//! let err = parse(&["license", "smart", "renew"]).unwrap_err();
//! assert_eq!(err.to_string(), "`license smart renew` needs `id` or `auth`");
//! ```

use entitle_engine::table::is_valid_tag;

/// One operator command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `license smart register <id-token>`.
    Register {
        /// The ID token from the virtual account.
        id_token: String,
    },
    /// `license smart deregister`.
    Deregister,
    /// `license smart renew id`.
    RenewId,
    /// `license smart renew auth`.
    RenewAuth,
    /// `license smart trust renew`: trust the configured authority keys instead of the
    /// pinned ones.
    RenewTrust,
    /// `license selection <tag> <count>`.
    SetSelection {
        /// The licence tag, such as `PAR-TPS`.
        tag: String,
        /// How many the next authorisation asks for (0 removes the licence).
        count: u64,
    },
    /// `no license selection <tag>`.
    RemoveSelection {
        /// The licence tag to stop asking for.
        tag: String,
    },
    /// `license smart reservation`: enable licence reservation.
    ReservationEnable,
    /// `no license smart reservation`: disable it.
    ReservationDisable,
    /// `license smart reservation request`: print the request code.
    ReservationRequest,
    /// `license smart reservation install <code>`.
    ReservationInstall {
        /// The authorisation code from the portal.
        code: String,
    },
    /// `license smart reservation return [authorization <code>]`.
    ReservationReturn {
        /// An authorisation code that was never installed; `None` returns the installed one.
        code: Option<String>,
    },
    /// `license smart reservation cancel`.
    ReservationCancel,
    /// `callhome destination address http <url>`.
    SetCallHome {
        /// The authority's URL.
        url: String,
    },
    /// `callhome destination proxy <url>`, or with `None` `no callhome destination proxy`.
    SetCallHomeProxy {
        /// The HTTP proxy's URL, `http://[user:password@]host:port`.
        url: Option<String>,
    },
    /// `show license ...`.
    Show(Show),
    /// `help`.
    Help,
    /// `exit` or `quit` (the shell only).
    Exit,
}

/// What `show license` shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Show {
    /// `show license status`.
    Status,
    /// `show license summary`.
    Summary,
    /// `show license usage`.
    Usage,
    /// `show license selection`.
    Selection,
    /// `show license reservation`.
    Reservation,
    /// `show license eventlog`.
    EventLog,
}

/// Why the words are not a command: one sentence for the operator.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// No words at all.
    #[error("no command given; try `help`")]
    Empty,
    /// The first word is no command.
    #[error("unknown command `{0}`; try `help`")]
    UnknownCommand(String),
    /// A later keyword is not one the command takes.
    #[error("unknown command `{given}`; `{path}` takes {expected}")]
    UnknownKeyword {
        /// The words up to and including the unknown one.
        given: String,
        /// The words before it.
        path: String,
        /// The keywords it would take, as a list for a sentence.
        expected: String,
    },
    /// The command stops where it needs a keyword or a value.
    #[error("`{path}` needs {what}")]
    Missing {
        /// The words given.
        path: String,
        /// What comes next, such as "`id` or `auth`" or "a count".
        what: String,
    },
    /// Words left over after a whole command.
    #[error("`{path}` takes nothing more, got `{extra}`")]
    Extra {
        /// The whole command.
        path: String,
        /// The first word too many.
        extra: String,
    },
    /// A count that is not a whole number.
    #[error("count must be a whole number, got `{0}`")]
    BadCount(String),
    /// A licence tag that breaks the tag rule.
    #[error(
        "`{0}` is not a licence tag: use 1 to 64 letters, digits and `- _ . :` (such as `PAR-TPS`)"
    )]
    BadTag(String),
    /// A call-home URL that is not http:// or https://.
    #[error("`{0}` is not an http:// or https:// URL")]
    BadUrl(String),
    /// A proxy URL that is not http://.
    #[error("`{0}` is not an HTTP proxy URL: use http://[user:password@]host:port")]
    BadProxy(String),
    /// A quote opened and never closed.
    #[error("the line has an unmatched quote")]
    Quote,
}

/// Parses one command from its words.
pub fn parse<S: AsRef<str>>(words: &[S]) -> Result<Command, ParseError> {
    let words: Vec<&str> = words.iter().map(AsRef::as_ref).collect();
    let mut w = Words {
        words: &words,
        next: 0,
    };
    let command = match w.keyword(&["license", "no", "callhome", "show", "help", "exit", "quit"])? {
        "license" => match w.keyword(&["smart", "selection"])? {
            "smart" => {
                match w.keyword(&["register", "deregister", "renew", "reservation", "trust"])? {
                    "register" => Command::Register {
                        id_token: w.value("an ID token")?.to_owned(),
                    },
                    "deregister" => Command::Deregister,
                    "reservation" => reservation(&mut w)?,
                    "trust" => {
                        w.keyword(&["renew"])?;
                        Command::RenewTrust
                    }
                    _ => match w.keyword(&["id", "auth"])? {
                        "id" => Command::RenewId,
                        _ => Command::RenewAuth,
                    },
                }
            }
            _ => {
                let tag = w.tag()?;
                let count = w.value("a count")?;
                let count = count
                    .parse()
                    .map_err(|_| ParseError::BadCount(count.to_owned()))?;
                Command::SetSelection { tag, count }
            }
        },
        "no" => match w.keyword(&["license", "callhome"])? {
            "callhome" => {
                w.keyword(&["destination"])?;
                w.keyword(&["proxy"])?;
                Command::SetCallHomeProxy { url: None }
            }
            _ => match w.keyword(&["selection", "smart"])? {
                "selection" => Command::RemoveSelection { tag: w.tag()? },
                _ => {
                    w.keyword(&["reservation"])?;
                    Command::ReservationDisable
                }
            },
        },
        "callhome" => {
            w.keyword(&["destination"])?;
            match w.keyword(&["address", "proxy"])? {
                "proxy" => {
                    let url = w.value("a proxy URL")?;
                    if !url.starts_with("http://") {
                        return Err(ParseError::BadProxy(url.to_owned()));
                    }
                    Command::SetCallHomeProxy {
                        url: Some(url.to_owned()),
                    }
                }
                _ => {
                    w.keyword(&["http"])?;
                    let url = w.value("a URL")?;
                    if !(url.starts_with("http://") || url.starts_with("https://")) {
                        return Err(ParseError::BadUrl(url.to_owned()));
                    }
                    Command::SetCallHome {
                        url: url.to_owned(),
                    }
                }
            }
        }
        "show" => {
            w.keyword(&["license"])?;
            Command::Show(
                match w.keyword(&[
                    "status",
                    "summary",
                    "usage",
                    "selection",
                    "reservation",
                    "eventlog",
                ])? {
                    "status" => Show::Status,
                    "summary" => Show::Summary,
                    "usage" => Show::Usage,
                    "reservation" => Show::Reservation,
                    "eventlog" => Show::EventLog,
                    _ => Show::Selection,
                },
            )
        }
        "help" => Command::Help,
        _ => Command::Exit,
    };
    w.end()?;
    Ok(command)
}

/// `license smart reservation [request | install <code> | return [authorization <code>] |
/// cancel]`.
fn reservation(w: &mut Words<'_>) -> Result<Command, ParseError> {
    if w.at_end() {
        return Ok(Command::ReservationEnable);
    }
    Ok(
        match w.keyword(&["request", "install", "return", "cancel"])? {
            "request" => Command::ReservationRequest,
            "install" => Command::ReservationInstall {
                code: w.rest("an authorization code")?,
            },
            "return" => {
                if w.at_end() {
                    Command::ReservationReturn { code: None }
                } else {
                    w.keyword(&["authorization"])?;
                    Command::ReservationReturn {
                        code: Some(w.rest("an authorization code")?),
                    }
                }
            }
            _ => Command::ReservationCancel,
        },
    )
}

/// Splits a shell line into words as a POSIX shell quotes them (`'...'`, `"..."` and
/// backslashes; no expansions): `register "abc def"` is two words. `None` for a blank line
/// or a `#` comment; a word that starts with `#` begins a comment to the end of the line.
/// An unmatched quote is an error.
pub fn split_line(line: &str) -> Result<Option<Vec<String>>, ParseError> {
    // Carriage returns and other whitespace count as spaces, as a script's lines end.
    let line: String = line
        .chars()
        .map(|c| if c.is_whitespace() { ' ' } else { c })
        .collect();
    let words = shell_words::split(&line).map_err(|_| ParseError::Quote)?;
    Ok((!words.is_empty()).then_some(words))
}

/// One keyword of the grammar and the keywords that may follow it (none where a value or
/// the end follows). The parser above is the authority; a test keeps this tree in step.
struct Keyword {
    word: &'static str,
    next: &'static [Keyword],
}

const fn leaf(word: &'static str) -> Keyword {
    Keyword { word, next: &[] }
}

/// Every command's keywords, for completion.
static GRAMMAR: &[Keyword] = &[
    Keyword {
        word: "license",
        next: &[
            Keyword {
                word: "smart",
                next: &[
                    leaf("register"),
                    leaf("deregister"),
                    Keyword {
                        word: "renew",
                        next: &[leaf("id"), leaf("auth")],
                    },
                    Keyword {
                        word: "trust",
                        next: &[leaf("renew")],
                    },
                    Keyword {
                        word: "reservation",
                        next: &[
                            leaf("request"),
                            leaf("install"),
                            Keyword {
                                word: "return",
                                next: &[leaf("authorization")],
                            },
                            leaf("cancel"),
                        ],
                    },
                ],
            },
            leaf("selection"),
        ],
    },
    Keyword {
        word: "no",
        next: &[
            Keyword {
                word: "license",
                next: &[
                    leaf("selection"),
                    Keyword {
                        word: "smart",
                        next: &[leaf("reservation")],
                    },
                ],
            },
            Keyword {
                word: "callhome",
                next: &[Keyword {
                    word: "destination",
                    next: &[leaf("proxy")],
                }],
            },
        ],
    },
    Keyword {
        word: "callhome",
        next: &[Keyword {
            word: "destination",
            next: &[
                Keyword {
                    word: "address",
                    next: &[leaf("http")],
                },
                leaf("proxy"),
            ],
        }],
    },
    Keyword {
        word: "show",
        next: &[Keyword {
            word: "license",
            next: &[
                leaf("status"),
                leaf("summary"),
                leaf("usage"),
                leaf("selection"),
                leaf("reservation"),
                leaf("eventlog"),
            ],
        }],
    },
    leaf("help"),
    leaf("exit"),
    leaf("quit"),
];

/// The keywords that can follow `words` and start with `partial`, in grammar order; none
/// where a value comes next.
///
/// ```
/// use entitle_cli::command::complete;
///
/// assert_eq!(complete(&["show", "license"], "s"), ["status", "summary", "selection"]);
/// assert_eq!(complete::<&str>(&[], "c"), ["callhome"]);
/// assert!(complete(&["license", "smart", "register"], "").is_empty());
/// ```
pub fn complete<S: AsRef<str>>(words: &[S], partial: &str) -> Vec<&'static str> {
    let mut level = GRAMMAR;
    for word in words {
        match level.iter().find(|k| k.word == word.as_ref()) {
            Some(keyword) => level = keyword.next,
            None => return Vec::new(),
        }
    }
    level
        .iter()
        .map(|k| k.word)
        .filter(|w| w.starts_with(partial))
        .collect()
}

/// A cursor over the words, remembering what was read for the error sentences.
struct Words<'a> {
    words: &'a [&'a str],
    next: usize,
}

impl<'a> Words<'a> {
    /// The words read so far, joined.
    fn path(&self) -> String {
        self.words[..self.next].join(" ")
    }

    /// The next word, which must be one of `expected` (returned as the static keyword, so
    /// callers match on it).
    fn keyword(&mut self, expected: &[&'static str]) -> Result<&'static str, ParseError> {
        let Some(&word) = self.words.get(self.next) else {
            return Err(if self.next == 0 {
                ParseError::Empty
            } else {
                ParseError::Missing {
                    path: self.path(),
                    what: one_of(expected),
                }
            });
        };
        let path = self.path();
        self.next += 1;
        match expected.iter().find(|&&k| k == word) {
            Some(keyword) => Ok(keyword),
            None if path.is_empty() => Err(ParseError::UnknownCommand(word.to_owned())),
            None => Err(ParseError::UnknownKeyword {
                given: self.path(),
                path,
                expected: one_of(expected),
            }),
        }
    }

    /// The next word as a value; `what` names it for the error ("a count").
    fn value(&mut self, what: &str) -> Result<&'a str, ParseError> {
        let word = self
            .words
            .get(self.next)
            .ok_or_else(|| ParseError::Missing {
                path: self.path(),
                what: what.to_owned(),
            })?;
        self.next += 1;
        Ok(word)
    }

    /// The next word as a licence tag.
    fn tag(&mut self) -> Result<String, ParseError> {
        let tag = self.value("a licence tag")?;
        if is_valid_tag(tag) {
            Ok(tag.to_owned())
        } else {
            Err(ParseError::BadTag(tag.to_owned()))
        }
    }

    /// Whether every word was read.
    fn at_end(&self) -> bool {
        self.next >= self.words.len()
    }

    /// The rest of the words, joined without spaces: a long code pasted with line breaks
    /// arrives in pieces.
    fn rest(&mut self, what: &str) -> Result<String, ParseError> {
        if self.at_end() {
            return Err(ParseError::Missing {
                path: self.path(),
                what: what.to_owned(),
            });
        }
        let code = self.words[self.next..].concat();
        self.next = self.words.len();
        Ok(code)
    }

    /// No words may be left.
    fn end(&self) -> Result<(), ParseError> {
        match self.words.get(self.next) {
            None => Ok(()),
            Some(extra) => Err(ParseError::Extra {
                path: self.path(),
                extra: (*extra).to_owned(),
            }),
        }
    }
}

/// "`a`", "`a` or `b`", "`a`, `b` or `c`".
fn one_of(keywords: &[&str]) -> String {
    let quoted: Vec<String> = keywords.iter().map(|k| format!("`{k}`")).collect();
    match quoted.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("{} or {last}", rest.join(", ")),
        Some((last, _)) => last.clone(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests;
