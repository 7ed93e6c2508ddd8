//! `entitle`: the operator CLI of the sidecar `entitled`, shaped after CPAR's `aregcmd`.
//!
//! ```text
//! entitle [--sidecar ADDRESS] [--credential-file FILE] [--timeout SECONDS] <command words...>
//! entitle [--sidecar ADDRESS] [--credential-file FILE]      a shell on stdin
//! ```
//!
//! The sidecar is at `unix:/var/lib/entitled/entitled.sock` unless `--sidecar` or
//! `ENTITLE_SIDECAR` names another socket (`unix:PATH`) or its TCP listener
//! (`http://host:port`); on TCP, `--credential-file` or `ENTITLE_SIDECAR_CREDENTIAL_FILE`
//! names the sidecar's `api.credential` (or a copy, mode 0600).
//!
//! One command exits 0, or prints one sentence to stderr and exits 2 (malformed) or 1
//! (refused by the sidecar, or the sidecar unreachable). The shell prints errors and goes
//! on until EOF, `exit` or `quit`; on a terminal it prompts, edits lines, keeps a history
//! and completes keywords with Tab ([`crate::shell`]); a script can be piped to it.
//!
//! The binary's body, in the library so that the end-to-end tests run the same program.

use std::io::{IsTerminal as _, Write as _};
use std::process::ExitCode;
use std::time::Duration;

use crate::{self as cli, Command, DEFAULT_SIDECAR, Error, Session};
use clap::Parser;
use entitle_proto::local::{Credential, SidecarAddress};

#[derive(Parser)]
#[command(
    name = "entitle",
    version,
    about = "The entitle operator CLI: licence commands for the sidecar `entitled`",
    after_help = cli::HELP
)]
struct Args {
    /// The sidecar's address: `unix:PATH` (its socket) or `http://host:port` (its TCP
    /// listener, with --credential-file).
    #[arg(long, env = "ENTITLE_SIDECAR", default_value = DEFAULT_SIDECAR)]
    sidecar: String,
    /// The sidecar's TCP credential (its data directory's `api.credential`, mode 0600);
    /// used only with an http:// address.
    #[arg(long, env = "ENTITLE_SIDECAR_CREDENTIAL_FILE", value_name = "FILE")]
    credential_file: Option<std::path::PathBuf>,
    /// How long to wait for the sidecar's answer to each command (registering waits for
    /// the authority too).
    #[arg(long, value_name = "SECONDS", default_value_t = 120)]
    timeout: u64,
    /// The command, such as `show license status`; none opens a shell.
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "COMMAND"
    )]
    words: Vec<String>,
}

/// Runs `entitle` with the process's arguments.
pub fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    let credential = match &args.credential_file {
        // The socket needs none; a file given for TCP must read.
        Some(file)
            if matches!(
                SidecarAddress::parse(&args.sidecar),
                Ok(SidecarAddress::Tcp(_))
            ) =>
        {
            match Credential::read(file) {
                Ok(credential) => Some(credential),
                Err(e) => return fail(&Error::Connect(e)),
            }
        }
        _ => None,
    };
    let timeout = Duration::from_secs(args.timeout);
    let mut session = match Session::new(&args.sidecar, credential.as_ref(), timeout) {
        Ok(session) => session,
        Err(e) => return fail(&e),
    };
    if args.words.is_empty() {
        let stdin = std::io::stdin();
        let done = if stdin.is_terminal() && std::io::stdout().is_terminal() {
            cli::shell::interactive(&mut session, &runtime)
        } else {
            // A script on a pipe: read as it comes, no prompt.
            let (mut stdout, mut stderr) = (std::io::stdout().lock(), std::io::stderr().lock());
            let shell = cli::run_shell(&mut session, stdin.lock(), &mut stdout, &mut stderr, false);
            runtime.block_on(shell)
        };
        return match done {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("the shell stopped: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let result = match cli::command::parse(&args.words) {
        Ok(Command::Exit) => Err(Error::ShellOnly(args.words.join(" "))),
        Ok(command) => runtime.block_on(session.execute(&command)),
        Err(e) => Err(e.into()),
    };
    match result {
        Ok(text) => {
            let mut stdout = std::io::stdout().lock();
            // A closed pipe (`| head`) is the reader's choice, not a failure to report.
            match stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
            {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("cannot print the answer: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => fail(&e),
    }
}

fn fail(e: &Error) -> ExitCode {
    eprintln!("{e}");
    ExitCode::from(e.exit_code())
}
