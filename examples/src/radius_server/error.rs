//! Why the server's files or its socket were refused. No message quotes a password or a
//! secret.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// The server's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why the RADIUS server cannot start.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read (or is not UTF-8).
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A line of a users or clients file is malformed.
    #[error("{}:{line}: {problem}", path.display())]
    Line {
        /// The file.
        path: PathBuf,
        /// The line, counted from 1.
        line: usize,
        /// What is wrong with it.
        problem: LineError,
    },
    /// A clients file lists no client, so every request would be dropped.
    #[error("{} lists no clients", path.display())]
    NoClients {
        /// The file.
        path: PathBuf,
    },
    /// The socket could not be made, sized or bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// What the system said.
        source: std::io::Error,
    },
    /// The server needs at least one worker.
    #[error("the server needs at least one worker")]
    NoWorkers,
    /// Receiving from the socket failed for good.
    #[error("the socket failed: {0}")]
    Socket(#[source] std::io::Error),
}

/// What is wrong with one line of a users or clients file.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// A double quote is not closed on the line.
    #[error("a double quote is not closed")]
    UnterminatedQuote,
    /// A backslash in quotes is followed by something other than `"` or `\`.
    #[error("unknown escape \\{0} in quotes (only \\\" and \\\\ are known)")]
    UnknownEscape(char),
    /// A quoted string is followed directly by more text.
    #[error("text right after a closing quote; put a blank between them")]
    TextAfterQuote,
    /// A double quote in the middle of a bare word.
    #[error("a double quote inside a word; quote the whole word")]
    QuoteInWord,
    /// A control character (other than a tab between words).
    #[error("a control character")]
    ControlCharacter,
    /// An indented line: FreeRADIUS reads those as reply items, which are not supported.
    #[error("an indented line (a reply item in FreeRADIUS); reply items are not supported")]
    Indented,
    /// A user name that is empty, too long, or has blanks or a colon.
    #[error("a user name must be 1 to 253 octets without blanks, quotes or ':'")]
    BadUserName,
    /// `DEFAULT` entries of FreeRADIUS are not supported.
    #[error("DEFAULT entries are not supported")]
    DefaultEntry,
    /// A user without a password.
    #[error("no password: write `NAME Cleartext-Password := \"PASSWORD\"` or `NAME:PASSWORD`")]
    NoPassword,
    /// A check item other than `Cleartext-Password` (not quoted back: it may be a password
    /// written in the wrong place).
    #[error("expected Cleartext-Password after the user name; no other check item is supported")]
    UnsupportedItem,
    /// An operator other than `:=`.
    #[error("expected `:=` after Cleartext-Password (with blanks around it)")]
    ExpectedAssign,
    /// More on the line after the password.
    #[error("more after the password; only one check item, Cleartext-Password, is supported")]
    TrailingText,
    /// An empty password, one over 128 octets, or one with a NUL octet.
    #[error("a password must be 1 to 128 octets without NUL")]
    BadPassword,
    /// A user listed twice.
    #[error("user {name:?} is already listed on line {first}")]
    DuplicateUser {
        /// The user.
        name: String,
        /// Where it was listed first.
        first: usize,
    },
    /// The first word of a clients line is not an IP address (not quoted back: it may be a
    /// secret written in the wrong place).
    #[error("the first word is not an IP address (networks and host names are not supported)")]
    BadAddress,
    /// A client without a secret.
    #[error("no secret: write `ADDRESS SECRET [require-message-authenticator]`")]
    NoSecret,
    /// An empty secret.
    #[error("the secret is empty")]
    EmptySecret,
    /// An option of a client that is not known (not quoted back: it may be part of a
    /// secret with a blank in it, written without quotes).
    #[error("an unknown client option after the secret (known: require-message-authenticator)")]
    UnknownOption,
    /// A client listed twice.
    #[error("client {address} is already listed on line {first}")]
    DuplicateClient {
        /// The client's address.
        address: IpAddr,
        /// Where it was listed first.
        first: usize,
    },
}
