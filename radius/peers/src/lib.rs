//! Real RADIUS peers for the tests and the benchmarks: a FreeRADIUS 3.2 server (Debian's
//! `freeradius`) started on loopback ports with a configuration written into a temporary
//! directory (never the system's service), `radclient` (from `freeradius-utils`) and
//! `pyrad` (from PyPI, run by `python3`). `.ci/install-peers` installs all three; a missing
//! one fails the test with a message saying so.
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

pub const FREERADIUS: &str = "/usr/sbin/freeradius";
pub const RADCLIENT: &str = "/usr/bin/radclient";

/// A user FreeRADIUS knows: name, password, the Reply-Message of its Access-Accept.
pub struct User<'a> {
    pub name: &'a str,
    pub password: &'a str,
    pub reply_message: &'a str,
}

/// A FreeRADIUS server on 127.0.0.1, killed on drop.
pub struct FreeRadius {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub auth: SocketAddr,
    pub acct: SocketAddr,
    pub secret: String,
}

/// Two UDP ports free a moment ago. FreeRADIUS cannot report a port it chose itself, so
/// the test picks them; `FreeRadius::start` retries on a clash.
fn free_ports() -> (u16, u16) {
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    (
        a.local_addr().unwrap().port(),
        b.local_addr().unwrap().port(),
    )
}

fn require(path: &str, package: &str) {
    assert!(
        Path::new(path).exists(),
        "{path} is missing: install Debian's {package} (.ci/install-peers does)"
    );
}

impl FreeRadius {
    /// Writes a minimal FreeRADIUS configuration (one client, 127.0.0.1, with `secret`;
    /// `users` in the `files` module; PAP; accounting answered) and starts `freeradius -f`
    /// on two free ports, waiting (bounded) until it answers Status-Server.
    pub fn start(secret: &str, users: &[User<'_>]) -> Self {
        require(FREERADIUS, "freeradius");
        let mut last_log = String::new();
        for _ in 0..5 {
            let (auth, acct) = free_ports();
            let dir = tempfile::tempdir().unwrap();
            write_config(dir.path(), secret, users, auth, acct);
            let log = std::fs::File::create(dir.path().join("radiusd.log")).unwrap();
            let child = Command::new(FREERADIUS)
                .args(["-f", "-X", "-d"])
                .arg(dir.path())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .stdin(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {FREERADIUS}: {e}"));
            let mut server = FreeRadius {
                child: Some(child),
                dir,
                auth: SocketAddr::from(([127, 0, 0, 1], auth)),
                acct: SocketAddr::from(([127, 0, 0, 1], acct)),
                secret: secret.to_owned(),
            };
            if server.wait_ready(Duration::from_secs(20)) {
                return server;
            }
            last_log = server.log();
            server.kill();
        }
        panic!("FreeRADIUS never answered Status-Server; its last log:\n{last_log}");
    }

    /// Polls with Status-Server until it answers, it exits, or `within` passes.
    fn wait_ready(&mut self, within: Duration) -> bool {
        let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
        socket
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let deadline = Instant::now() + within;
        let mut id = 0u8;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && child.try_wait().unwrap().is_some()
            {
                return false;
            }
            id = id.wrapping_add(1);
            let mut status = Packet::new(Code::StatusServer, id, [id; 16]);
            let bytes = status.encode_request(self.secret.as_bytes()).unwrap();
            let _ = socket.send_to(&bytes, self.auth);
            let mut buffer = [0u8; 4096];
            if let Ok((n, _)) = socket.recv_from(&mut buffer)
                && let Ok(reply) = Packet::decode(&buffer[..n])
                && reply
                    .verify_response(
                        self.secret.as_bytes(),
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

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("radiusd.log")).unwrap_or_default()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for FreeRadius {
    fn drop(&mut self) {
        self.kill();
    }
}

fn write_config(dir: &Path, secret: &str, users: &[User<'_>], auth: u16, acct: u16) {
    let d = dir.display();
    let radiusd = format!(
        r#"prefix = /usr
exec_prefix = /usr
sysconfdir = /etc
localstatedir = /var
sbindir = /usr/sbin
raddbdir = {d}
confdir = {d}
modconfdir = {d}
logdir = {d}
run_dir = {d}
db_dir = {d}
libdir = /usr/lib/freeradius
radacctdir = {d}
pidfile = {d}/radiusd.pid
name = freeradius
max_request_time = 30
cleanup_delay = 2
max_requests = 65536
hostname_lookups = no
log {{
  destination = stdout
  auth = no
}}
security {{
  allow_core_dumps = no
  max_attributes = 200
  reject_delay = 0
  status_server = yes
}}
thread pool {{
  start_servers = 4
  max_servers = 8
  min_spare_servers = 1
  max_spare_servers = 8
  max_queue_size = 65536
}}
client proxy {{
  ipaddr = 127.0.0.1
  secret = "{secret}"
  require_message_authenticator = yes
}}
modules {{
  always ok {{
    rcode = ok
  }}
  pap {{
  }}
  files {{
    filename = {d}/users
  }}
}}
server default {{
  listen {{
    type = auth
    ipaddr = 127.0.0.1
    port = {auth}
  }}
  listen {{
    type = acct
    ipaddr = 127.0.0.1
    port = {acct}
  }}
  authorize {{
    files
    pap
  }}
  authenticate {{
    Auth-Type PAP {{
      pap
    }}
  }}
  preacct {{
  }}
  accounting {{
    ok
  }}
  post-auth {{
  }}
}}
"#
    );
    std::fs::write(dir.join("radiusd.conf"), radiusd).unwrap();
    let mut text = String::new();
    for user in users {
        text.push_str(&format!(
            "{} Cleartext-Password := \"{}\"\n        Reply-Message := \"{}\"\n\n",
            user.name, user.password, user.reply_message
        ));
    }
    std::fs::write(dir.join("users"), text).unwrap();
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
