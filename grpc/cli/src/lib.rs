//! The operator CLI `entitle`: the licence commands of CPAR's `aregcmd`, sent to the
//! sidecar `entitled` over its `Sidecar` gRPC service.
//!
//! ```text
//! license smart register <id-token>
//! license smart deregister
//! license smart renew id | auth
//! license smart trust renew
//! license selection <TAG> <count>
//! no license selection <TAG>
//! license smart reservation | no license smart reservation
//! license smart reservation request | install <code> | return [authorization <code>] | cancel
//! callhome destination address http <url>
//! callhome destination proxy <url> | no callhome destination proxy
//! show license status | summary | usage | selection | reservation | eventlog
//! help | exit | quit
//! ```
//!
//! [`command`] parses the words (pure), [`format`] turns the sidecar's answers into text
//! (pure), and a [`Session`] connects and runs commands; [`run_shell`] reads them line by
//! line from a pipe, and [`shell`] from a terminal, with line editing, history and
//! completion. Shell lines are quoted as a shell quotes words (`register "abc def"`). Every failure is an [`Error`] whose `Display` is one sentence for the operator.
//!
//! ```
//! use entitle_cli::{Error, command};
//!
//! let err = Error::from(command::parse(&["foo"]).unwrap_err());
//! assert_eq!(err.to_string(), "unknown command `foo`; try `help`");
//! assert_eq!(err.exit_code(), 2);
//! ```

#![forbid(unsafe_code)]

pub mod command;
pub mod format;
pub mod program;
pub mod shell;

use std::io::{self, BufRead, Write};
use std::time::Duration;

use entitle_proto::local::{ConnectError, Credential, LocalEndpoint, SidecarChannel};
use entitle_proto::pb;
use entitle_proto::pb::sidecar_client::SidecarClient;

pub use command::{Command, ParseError, Show};

/// Where the sidecar listens unless `--sidecar` or `ENTITLE_SIDECAR` says otherwise: the
/// socket of an `entitled` with `data_dir = "/var/lib/entitled"`.
pub const DEFAULT_SIDECAR: &str = entitle_proto::local::DEFAULT_ADDRESS;

/// The answer to `help`.
pub const HELP: &str = "\
Commands:
  license smart register <id-token>        register with an ID token, then authorize
  license smart deregister                 give the licences back and unregister
  license smart renew id                   renew the ID certificate now
  license smart renew auth                 renew the authorization now
  license smart trust renew                trust the configured authority keys, not
                                           the ones pinned at registration (logged)
  license selection <TAG> <count>          ask for <count> <TAG> licences (applied live)
  no license selection <TAG>               stop asking for <TAG>
  license smart reservation                enable licence reservation (PLR/SLR)
  no license smart reservation             disable it
  license smart reservation request        print the reservation request code
  license smart reservation install <code> install an authorization code (live)
  license smart reservation return         print the return code and remove it
  license smart reservation return authorization <code>
                                           a return code for a code never installed
  license smart reservation cancel         drop the pending request
  callhome destination address http <url>  where the authority is (https://...)
  callhome destination proxy <url>         call home through an HTTP CONNECT proxy,
                                           http://[user:password@]host:port
  no callhome destination proxy            call home directly
  show license status                      the full licence state
  show license summary                     one line per licence and per limit
  show license usage                       the most recent usage snapshots
  show license selection                   the licences the next authorization asks for
  show license reservation                 the reservation state and reserved counts
  show license eventlog                    the licence events, newest first, with times
  help                                     this list
  exit | quit                              leave the shell
";

/// How long to wait for a connection to the sidecar.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a command did not run: [`Display`](std::fmt::Display) is the one sentence to print.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The words are not a command.
    #[error(transparent)]
    Parse(#[from] ParseError),
    /// `exit` or `quit` outside the shell.
    #[error("`{0}` only works in the interactive shell")]
    ShellOnly(String),
    /// The sidecar address cannot be a URL.
    #[error("`{url}` is not a sidecar address: {reason}")]
    BadAddress {
        /// The address given.
        url: String,
        /// Why it is not one.
        reason: String,
    },
    /// No sidecar on the socket, or its permissions keep this user out, or the
    /// credential file does not read.
    #[error(transparent)]
    Connect(ConnectError),
    /// No connection to the sidecar, or it broke before an answer.
    #[error("cannot reach the sidecar at {url}: {reason}")]
    Unreachable {
        /// The sidecar's URL.
        url: String,
        /// The deepest cause, such as "Connection refused (os error 111)".
        reason: String,
    },
    /// The sidecar answered with an error; its message is written for operators.
    #[error("{0}")]
    Refused(String),
}

/// The result of a CLI step.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The process exit status: 2 for a malformed command or address, 1 for a command the
    /// sidecar refused or could not be sent.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Parse(_) | Self::ShellOnly(_) | Self::BadAddress { .. } => 2,
            Self::Connect(_) | Self::Unreachable { .. } | Self::Refused(_) => 1,
        }
    }
}

/// A connection to one sidecar, made at the first command that needs it and made again
/// after it breaks.
pub struct Session {
    url: String,
    endpoint: LocalEndpoint,
    timeout: Duration,
    client: Option<SidecarClient<SidecarChannel>>,
}

impl Session {
    /// A session with the sidecar at `address`: `unix:PATH` (its socket), or a URL of its
    /// TCP listener (`http://` is assumed when there is no scheme), where `credential` goes
    /// with every call. Each command waits at most `timeout` for its answer. Connects
    /// nothing yet.
    pub fn new(address: &str, credential: Option<&Credential>, timeout: Duration) -> Result<Self> {
        let endpoint = LocalEndpoint::new(address, credential)
            .map_err(|e| match e {
                ConnectError::BadAddress { address, reason } => Error::BadAddress {
                    url: address,
                    reason,
                },
                other => Error::Connect(other),
            })?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(timeout);
        Ok(Self {
            url: endpoint.address().to_string(),
            endpoint,
            timeout,
            client: None,
        })
    }

    /// The sidecar's address (`unix:PATH` or its URL).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Parses `words` and runs them as one command (not `exit` or `quit`); nothing is sent
    /// when they are malformed.
    pub async fn run_words<S: AsRef<str>>(&mut self, words: &[S]) -> Result<String> {
        let command = command::parse(words)?;
        self.execute(&command).await
    }

    /// Runs one command; answers the text to print (empty or ending in a newline).
    pub async fn execute(&mut self, command: &Command) -> Result<String> {
        let reply = match command {
            Command::Help => return Ok(HELP.to_owned()),
            Command::Exit => return Err(Error::ShellOnly("exit".to_owned())),
            Command::Register { id_token } => {
                let request = pb::RegisterCommand {
                    id_token: id_token.clone(),
                };
                self.call(|mut c| async move { c.register(request).await })
                    .await?
            }
            Command::Deregister => {
                self.call(|mut c| async move { c.deregister(pb::DeregisterCommand {}).await })
                    .await?
            }
            Command::RenewId => {
                self.call(|mut c| async move { c.renew_id(pb::RenewIdCommand {}).await })
                    .await?
            }
            Command::RenewAuth => {
                self.call(|mut c| async move {
                    c.renew_authorization(pb::RenewAuthorizationCommand {})
                        .await
                })
                .await?
            }
            Command::RenewTrust => {
                self.call(|mut c| async move { c.renew_trust(pb::RenewTrustCommand {}).await })
                    .await?
            }
            Command::SetSelection { tag, count } => self.set_selection(tag, *count).await?,
            Command::RemoveSelection { tag } => self.set_selection(tag, 0).await?,
            Command::ReservationEnable => {
                self.call(|mut c| async move {
                    c.reservation_enable(pb::ReservationEnableCommand {}).await
                })
                .await?
            }
            Command::ReservationDisable => {
                self.call(|mut c| async move {
                    c.reservation_disable(pb::ReservationDisableCommand {})
                        .await
                })
                .await?
            }
            Command::ReservationCancel => {
                self.call(|mut c| async move {
                    c.reservation_cancel(pb::ReservationCancelCommand {}).await
                })
                .await?
            }
            Command::ReservationRequest => {
                let reply = self
                    .call(|mut c| async move {
                        c.reservation_request(pb::ReservationRequestCommand {})
                            .await
                    })
                    .await?;
                return Ok(format::code_reply(&reply));
            }
            Command::ReservationInstall { code } => {
                let request = pb::ReservationInstallCommand {
                    authorization_code: code.clone(),
                };
                let reply = self
                    .call(|mut c| async move { c.reservation_install(request).await })
                    .await?;
                return Ok(format::code_reply(&reply));
            }
            Command::ReservationReturn { code } => {
                let request = pb::ReservationReturnCommand {
                    authorization_code: code.clone().unwrap_or_default(),
                };
                let reply = self
                    .call(|mut c| async move { c.reservation_return(request).await })
                    .await?;
                return Ok(format::code_reply(&reply));
            }
            Command::SetCallHomeProxy { url } => {
                let request = pb::SetCallHomeProxyCommand {
                    url: url.clone().unwrap_or_default(),
                };
                self.call(|mut c| async move { c.set_call_home_proxy(request).await })
                    .await?
            }
            Command::SetCallHome { url } => {
                let request = pb::SetCallHomeCommand { url: url.clone() };
                self.call(|mut c| async move { c.set_call_home(request).await })
                    .await?
            }
            Command::Show(show) => return self.show(*show).await,
        };
        Ok(line(reply.message))
    }

    async fn show(&mut self, show: Show) -> Result<String> {
        Ok(match show {
            Show::Status => format::status(&self.status().await?),
            Show::Summary => format::summary(&self.status().await?),
            Show::Selection => format::selection(&self.status().await?),
            Show::Reservation => format::reservation(&self.status().await?),
            Show::EventLog => format::eventlog(
                &self
                    .call(|mut c| async move {
                        c.get_event_log(pb::GetEventLogRequest { limit: 0 }).await
                    })
                    .await?,
            ),
            Show::Usage => format::usage(
                &self
                    .call(|mut c| async move {
                        c.get_recent_usage(pb::GetRecentUsageRequest { limit: 0 })
                            .await
                    })
                    .await?,
            ),
        })
    }

    async fn status(&mut self) -> Result<pb::LicenseStatus> {
        self.call(|mut c| async move { c.get_status(pb::GetStatusRequest {}).await })
            .await
    }

    async fn set_selection(&mut self, tag: &str, count: u64) -> Result<pb::CommandReply> {
        let request = pb::SetSelectionCommand {
            counts: vec![pb::LicenseCount {
                tag: tag.to_owned(),
                count,
            }],
        };
        self.call(|mut c| async move { c.set_selection(request).await })
            .await
    }

    /// Sends one request on a (cheaply cloned) client and sorts its failure: the sidecar's
    /// own statuses are refusals, failures tonic made on this side mean it was not reached.
    async fn call<T, F, Fut>(&mut self, send: F) -> Result<T>
    where
        F: FnOnce(SidecarClient<SidecarChannel>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let client = self.client().await?;
        match send(client).await {
            Ok(response) => Ok(response.into_inner()),
            Err(status) => Err(self.sort(status)),
        }
    }

    async fn client(&mut self) -> Result<SidecarClient<SidecarChannel>> {
        if let Some(client) = &self.client {
            return Ok(client.clone());
        }
        let channel = self.endpoint.connect().await.map_err(|e| match e {
            ConnectError::Unreachable { address, reason } => Error::Unreachable {
                url: address,
                reason,
            },
            other => Error::Connect(other),
        })?;
        let client = SidecarClient::new(channel);
        self.client = Some(client.clone());
        Ok(client)
    }

    fn sort(&mut self, status: tonic::Status) -> Error {
        // A status decoded from the sidecar's answer has no source; one tonic built from a
        // local transport failure or timeout keeps the error it came from.
        let Some(cause) = std::error::Error::source(&status) else {
            return Error::Refused(if status.message().is_empty() {
                format!(
                    "the sidecar refused the command: {}",
                    status.code().description()
                )
            } else {
                status.message().to_owned()
            });
        };
        // Connect afresh next time rather than reuse what broke.
        self.client = None;
        // The socket went away (or changed hands) since the session connected.
        if let Some(found @ (ConnectError::NoSidecar(_) | ConnectError::PermissionDenied(_))) =
            ConnectError::find(cause)
        {
            return Error::Connect(found.clone());
        }
        let reason = if is_timeout(cause) {
            format!("no answer within {} seconds", self.timeout.as_secs())
        } else {
            deepest_cause(cause)
        };
        Error::Unreachable {
            url: self.url.clone(),
            reason,
        }
    }
}

/// Reads commands line by line until EOF, `exit` or `quit`, printing each answer to `out`
/// and each error sentence to `err`; an error does not stop the shell. Blank lines and `#`
/// comments are skipped. With `prompt`, `entitle> ` is printed before each line.
pub async fn run_shell(
    session: &mut Session,
    mut input: impl BufRead,
    out: &mut impl Write,
    err: &mut impl Write,
    prompt: bool,
) -> io::Result<()> {
    let mut bytes = Vec::new();
    loop {
        if prompt {
            write!(out, "entitle> ")?;
            out.flush()?;
        }
        bytes.clear();
        if input.read_until(b'\n', &mut bytes)? == 0 {
            if prompt {
                // Leave the operator's terminal on a fresh line after Ctrl-D.
                writeln!(out)?;
            }
            return Ok(());
        }
        // Bad UTF-8 becomes U+FFFD, which no keyword matches: an error, not an end.
        let line = String::from_utf8_lossy(&bytes);
        if run_line(session, &line, out, err).await? == Line::Exit {
            return Ok(());
        }
    }
}

/// What a shell line asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Line {
    /// Go on reading.
    Next,
    /// `exit` or `quit`.
    Exit,
}

/// Runs one shell line (quoted as a shell quotes words; blank lines and `#` comments do
/// nothing), printing the answer to `out` and an error sentence to `err`.
pub async fn run_line(
    session: &mut Session,
    line: &str,
    out: &mut impl Write,
    err: &mut impl Write,
) -> io::Result<Line> {
    let words = match command::split_line(line) {
        Ok(Some(words)) => words,
        Ok(None) => return Ok(Line::Next),
        Err(e) => {
            writeln!(err, "{e}")?;
            return Ok(Line::Next);
        }
    };
    match command::parse(&words) {
        Ok(Command::Exit) => return Ok(Line::Exit),
        Ok(command) => match session.execute(&command).await {
            Ok(text) => write!(out, "{text}")?,
            Err(e) => writeln!(err, "{e}")?,
        },
        Err(e) => writeln!(err, "{e}")?,
    }
    out.flush()?;
    err.flush()?;
    Ok(Line::Next)
}

/// The sidecar's reply as one line ending in a newline (nothing for an empty reply).
fn line(mut message: String) -> String {
    if !message.is_empty() && !message.ends_with('\n') {
        message.push('\n');
    }
    message
}

/// The innermost error of the chain: the one that says what went wrong ("Connection
/// refused") rather than where ("transport error").
fn deepest_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut err = err;
    while let Some(source) = err.source() {
        err = source;
    }
    err.to_string()
}

fn is_timeout(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if e.is::<tonic::TimeoutExpired>() {
            return true;
        }
        next = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn an_address_without_a_scheme_is_http() {
        let s = Session::new("127.0.0.1:7070", None, Duration::from_secs(1)).unwrap();
        assert_eq!(s.url(), "http://127.0.0.1:7070");
        let s = Session::new("https://sidecar.example:7070", None, Duration::from_secs(1)).unwrap();
        assert_eq!(s.url(), "https://sidecar.example:7070");
    }

    #[test]
    fn the_default_is_the_documented_socket() {
        let s = Session::new(DEFAULT_SIDECAR, None, Duration::from_secs(1)).unwrap();
        assert_eq!(s.url(), "unix:/var/lib/entitled/entitled.sock");
    }

    #[tokio::test]
    async fn a_missing_socket_says_so_in_one_line() {
        let mut s = Session::new("unix:/nonexistent/e.sock", None, Duration::from_secs(1)).unwrap();
        let err = s.execute(&Command::Show(Show::Status)).await.unwrap_err();
        assert_eq!(err.exit_code(), 1);
        assert_eq!(
            err.to_string(),
            "no sidecar at unix:/nonexistent/e.sock (is entitled running?)"
        );
    }

    #[test]
    fn a_malformed_address_is_a_usage_error() {
        let err = Session::new("http://bad host", None, Duration::from_secs(1))
            .err()
            .unwrap();
        assert_eq!(err.exit_code(), 2);
        assert!(
            err.to_string()
                .starts_with("`http://bad host` is not a sidecar address: "),
            "{err}"
        );
    }

    #[test]
    fn exit_codes_tell_malformed_from_refused() {
        assert_eq!(Error::ShellOnly("exit".into()).exit_code(), 2);
        assert_eq!(Error::Refused("no".into()).exit_code(), 1);
        let unreachable = Error::Unreachable {
            url: "http://x".into(),
            reason: "Connection refused".into(),
        };
        assert_eq!(unreachable.exit_code(), 1);
        assert_eq!(
            unreachable.to_string(),
            "cannot reach the sidecar at http://x: Connection refused"
        );
    }

    #[test]
    fn the_sidecars_sentence_is_printed_as_it_is() {
        let mut s = Session::new("127.0.0.1:1", None, Duration::from_secs(1)).unwrap();
        let err = s.sort(tonic::Status::failed_precondition(
            "The device is not registered.",
        ));
        assert_eq!(err.to_string(), "The device is not registered.");
        let err = s.sort(tonic::Status::new(tonic::Code::Internal, ""));
        assert_eq!(
            err.to_string(),
            "the sidecar refused the command: Internal error"
        );
    }

    #[test]
    fn a_local_timeout_is_unreachable_not_a_refusal() {
        let mut s = Session::new("127.0.0.1:1", None, Duration::from_secs(7)).unwrap();
        let status = tonic::Status::from_error(Box::new(tonic::TimeoutExpired(())));
        assert_eq!(
            s.sort(status).to_string(),
            "cannot reach the sidecar at http://127.0.0.1:1: no answer within 7 seconds"
        );
    }
}
