//! Real RADIUS peers for the tests and the benchmarks: a FreeRADIUS 3.2 server (Debian's
//! `freeradius`), as a server or as a proxy, and radsecproxy (Debian's `radsecproxy`) as a
//! UDP proxy, each started on loopback ports with a configuration written into a temporary
//! directory (never the system's service); `radclient` (from `freeradius-utils`) and
//! `pyrad` (from PyPI, run by `python3`). `.ci/install-peers` installs them; a missing one
//! fails the test with a message saying so.
// Test and benchmark support: a peer that fails to start fails the run, so unwrap is the
// clearest report.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::io::Write as _;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use entitle_radius::attribute::Attribute;
use entitle_radius::{Code, Packet, Policy};

mod freeradius;
mod radsecproxy;

pub use freeradius::{FREERADIUS, FreeRadius, Setup, User};
pub use radsecproxy::{RADSECPROXY, Radsecproxy};

pub const RADCLIENT: &str = "/usr/bin/radclient";

/// Where a proxy sends what it forwards: a RADIUS server's ports and its secret.
#[derive(Clone, Copy)]
pub struct Upstream<'a> {
    pub auth: SocketAddr,
    pub acct: SocketAddr,
    pub secret: &'a str,
}

/// A UDP port on 127.0.0.1 free a moment ago (the peers cannot report one they chose).
pub(crate) fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub(crate) fn require(path: &str, package: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: install Debian's {package} (.ci/install-peers does)"
    );
}

/// Polls `at` with Status-Server until it answers, `child` exits, or `within` passes.
pub(crate) fn wait_for_status_server(
    child: &mut Child,
    at: SocketAddr,
    secret: &str,
    within: Duration,
) -> bool {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let deadline = Instant::now() + within;
    let mut id = 0u8;
    while Instant::now() < deadline {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        id = id.wrapping_add(1);
        let mut status = Packet::new(Code::StatusServer, id, [id; 16]);
        let bytes = status.encode_request(secret.as_bytes()).unwrap();
        let _ = socket.send_to(&bytes, at);
        let mut buffer = [0u8; 4096];
        if let Ok((n, _)) = socket.recv_from(&mut buffer)
            && let Ok(reply) = Packet::decode(&buffer[..n])
            && reply
                .verify_response(
                    secret.as_bytes(),
                    &status,
                    Policy::AllowMissingMessageAuthenticator,
                )
                .is_ok()
        {
            return true;
        }
    }
    false
}

/// Runs `radclient -x -s -t timeout -r retries ... server kind secret` with `stdin` as the
/// attribute lists (one packet per paragraph).
pub fn radclient(
    extra: &[&str],
    server: SocketAddr,
    kind: &str,
    secret: &str,
    stdin: &str,
) -> Output {
    require(RADCLIENT, "freeradius-utils");
    let mut child = Command::new(RADCLIENT)
        .args(["-x", "-s"])
        .args(extra)
        .arg(server.to_string())
        .arg(kind)
        .arg(secret)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {RADCLIENT}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// radclient's final summary: (accepted, rejected, lost).
pub fn radclient_summary(output: &Output) -> (u64, u64, u64) {
    let text = String::from_utf8_lossy(&output.stdout);
    let field = |name: &str| {
        text.lines()
            .filter_map(|l| l.trim().strip_prefix(name))
            .filter_map(|rest| {
                rest.trim()
                    .trim_start_matches(':')
                    .trim()
                    .parse::<u64>()
                    .ok()
            })
            .next_back()
            .unwrap_or_else(|| panic!("radclient printed no {name:?}:\n{text}"))
    };
    (field("Accepted"), field("Rejected"), field("Lost"))
}

/// Runs a Python script with `python3`, failing clearly if pyrad is not importable.
pub fn python(dir: &Path, name: &str, script: &str, args: &[&str]) -> Output {
    let check = Command::new("python3")
        .args(["-c", "import pyrad"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run python3: {e}"));
    assert!(
        check.status.success(),
        "pyrad is not installed for python3 (pip install pyrad; .ci/install-peers does): {}",
        String::from_utf8_lossy(&check.stderr)
    );
    let path: PathBuf = dir.join(name);
    std::fs::write(&path, script).unwrap();
    Command::new("python3")
        .arg(&path)
        .args(args)
        .output()
        .unwrap()
}

/// An Access-Request for `user`, its password hidden with `secret`.
pub fn access_request(
    id: u8,
    authenticator: [u8; 16],
    user: &str,
    password: &str,
    secret: &[u8],
) -> Packet {
    let mut packet = Packet::new(Code::AccessRequest, id, authenticator)
        .with(Attribute::new(entitle_radius::attribute::USER_NAME, user));
    packet
        .set_user_password(password.as_bytes(), secret)
        .unwrap();
    packet
}
