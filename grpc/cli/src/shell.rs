//! The interactive shell on a terminal: line editing (rustyline, emacs keys), history
//! across sessions, and tab completion of the command keywords ([`command::complete`]).
//!
//! History is kept in `$ENTITLE_HISTORY`, or `~/.entitle_history` (mode 0600, as
//! rustyline writes it). A `license smart register` line is never kept: it holds an ID
//! token. Ctrl-C drops the line being typed; Ctrl-D or `exit` leaves.
//!
//! A shell on a pipe (a script) goes through [`crate::run_shell`] instead, unchanged.

use std::io::{self, Write as _};
use std::path::PathBuf;

use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::history::DefaultHistory;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, Helper};

use crate::{Line, Session, command, run_line};

/// The prompt.
pub const PROMPT: &str = "entitle> ";

/// Completes command keywords.
pub struct Completion;

impl Completer for Completion {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        Ok(candidates(&line[..pos.min(line.len())]))
    }
}

impl Hinter for Completion {
    type Hint = String;
}
impl Highlighter for Completion {}
impl Validator for Completion {}
impl Helper for Completion {}

/// Where the completion of `before` (the line up to the cursor) starts, and its candidates,
/// each followed by a space.
pub fn candidates(before: &str) -> (usize, Vec<Pair>) {
    let partial_start = before
        .rfind(|c: char| c.is_whitespace())
        .map_or(0, |i| i + 1);
    let (done, partial) = before.split_at(partial_start);
    // Inside an open quote, or after a comment: nothing to offer.
    let words = match command::split_line(done) {
        Ok(words) if !done.contains('#') && !partial.starts_with(['"', '\'', '#']) => {
            words.unwrap_or_default()
        }
        _ => return (partial_start, Vec::new()),
    };
    let pairs = command::complete(&words, partial)
        .into_iter()
        .map(|k| Pair {
            display: k.to_owned(),
            replacement: format!("{k} "),
        })
        .collect();
    (partial_start, pairs)
}

/// Whether a line may go into the history file.
pub fn keep_in_history(line: &str) -> bool {
    let Ok(Some(words)) = command::split_line(line) else {
        return false;
    };
    !matches!(words.as_slice(), [a, b, c, ..] if a == "license" && b == "smart" && c == "register")
}

/// The history file: `$ENTITLE_HISTORY`, or `~/.entitle_history`; none without a home.
fn history_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("ENTITLE_HISTORY") {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".entitle_history"))
}

/// Runs the interactive shell until Ctrl-D, `exit` or `quit`; commands run on `runtime`.
pub fn interactive(session: &mut Session, runtime: &tokio::runtime::Runtime) -> io::Result<()> {
    let mut editor: Editor<Completion, DefaultHistory> = Editor::new().map_err(io::Error::other)?;
    editor.set_helper(Some(Completion));
    let history = history_path();
    if let Some(path) = &history {
        // No history yet is the usual first time.
        let _ = editor.load_history(path);
    }
    let (mut out, mut err) = (io::stdout(), io::stderr());
    loop {
        match editor.readline(PROMPT) {
            Ok(line) => {
                if keep_in_history(&line) {
                    let _ = editor.add_history_entry(line.as_str());
                }
                if runtime.block_on(run_line(session, &line, &mut out, &mut err))? == Line::Exit {
                    break;
                }
            }
            Err(ReadlineError::Interrupted) => {}
            Err(ReadlineError::Eof) => {
                writeln!(out)?;
                break;
            }
            Err(e) => return Err(io::Error::other(e)),
        }
    }
    if let Some(path) = &history
        && let Err(e) = editor.save_history(path)
    {
        writeln!(err, "cannot save the history to {}: {e}", path.display())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offered(before: &str) -> (usize, Vec<String>) {
        let (start, pairs) = candidates(before);
        (start, pairs.into_iter().map(|p| p.replacement).collect())
    }

    #[test]
    fn the_word_under_the_cursor_is_completed() {
        assert_eq!(offered("sh"), (0, vec!["show ".into()]));
        assert_eq!(offered("show lic"), (5, vec!["license ".into()]));
        assert_eq!(
            offered("show license s"),
            (
                13,
                vec!["status ".into(), "summary ".into(), "selection ".into()]
            )
        );
        assert_eq!(offered("license smart renew ").1, ["id ", "auth "]);
        assert_eq!(offered("  license   smart  ").1.len(), 5);
    }

    #[test]
    fn values_quotes_and_comments_get_nothing() {
        assert!(offered("license smart register ").1.is_empty());
        assert!(offered("license smart register \"ab").1.is_empty());
        assert!(offered("show \"lic").1.is_empty());
        assert!(offered("# show ").1.is_empty());
        assert!(offered("nonsense ").1.is_empty());
    }

    #[test]
    fn an_id_token_never_goes_into_the_history() {
        assert!(!keep_in_history("license smart register tok.SECRET"));
        assert!(!keep_in_history(
            "  license  smart 'register' \"tok SECRET\""
        ));
        assert!(!keep_in_history("license smart register \"unclosed"));
        assert!(keep_in_history("show license status"));
        assert!(keep_in_history("license smart renew auth"));
    }
}
