//! A FreeRADIUS 3.2 server on loopback, from a configuration written into a temporary
//! directory: answering itself (PAP users, accounting), or proxying everything to an
//! upstream, in debug mode (`-X`: single-threaded, every request logged, for tests) or as
//! it runs in production (`-f`: its thread pool, for benchmarks).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{Upstream, free_port, require, wait_for_status_server};

pub const FREERADIUS: &str = "/usr/sbin/freeradius";

/// A user FreeRADIUS knows: name, password, the Reply-Message of its Access-Accept.
pub struct User<'a> {
    pub name: &'a str,
    pub password: &'a str,
    pub reply_message: &'a str,
}

/// How to run FreeRADIUS.
pub struct Setup<'a> {
    /// The secret of its one client, 127.0.0.1.
    pub secret: &'a str,
    /// The users it authenticates (unused when it proxies).
    pub users: &'a [User<'a>],
    /// `-X` (single-threaded, every request logged) rather than `-f`.
    pub debug: bool,
    /// Proxy every request to this server instead of answering.
    pub proxy_to: Option<Upstream<'a>>,
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
/// the caller picks them; `FreeRadius::start` retries on a clash.
fn free_ports() -> (u16, u16) {
    (free_port(), free_port())
}

impl FreeRadius {
    /// Writes a minimal FreeRADIUS configuration (one client, 127.0.0.1, with `secret`;
    /// `users` in the `files` module; PAP; accounting answered) and starts `freeradius -X`
    /// on two free ports, waiting (bounded) until it answers Status-Server.
    pub fn start(secret: &str, users: &[User<'_>]) -> Self {
        Self::start_with(&Setup {
            secret,
            users,
            debug: true,
            proxy_to: None,
        })
    }

    /// Starts FreeRADIUS as `setup` says, on two free ports, waiting (bounded) until it
    /// answers Status-Server.
    pub fn start_with(setup: &Setup<'_>) -> Self {
        require(FREERADIUS, "freeradius");
        let mut last_log = String::new();
        for _ in 0..5 {
            let (auth, acct) = free_ports();
            let dir = tempfile::tempdir().unwrap();
            write_config(dir.path(), setup, auth, acct);
            let log = std::fs::File::create(dir.path().join("radiusd.log")).unwrap();
            let child = Command::new(FREERADIUS)
                .arg(if setup.debug { "-X" } else { "-f" })
                .arg("-d")
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
                secret: setup.secret.to_owned(),
            };
            let ready = wait_for_status_server(
                server.child.as_mut().unwrap(),
                server.auth,
                &server.secret,
                Duration::from_secs(20),
            );
            if ready {
                return server;
            }
            last_log = server.log();
            server.kill();
        }
        panic!("FreeRADIUS never answered Status-Server; its last log:\n{last_log}");
    }

    /// The server's process id (for its CPU time in /proc).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
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

fn write_config(dir: &Path, setup: &Setup<'_>, auth: u16, acct: u16) {
    let d = dir.display();
    let secret = setup.secret;
    // Proxying: every request to the realm "upstream", whose home servers are the upstream.
    let (proxy_requests, homes, authorize, preacct) = match &setup.proxy_to {
        Some(up) => (
            "yes",
            format!(
                r#"proxy server {{
  default_fallback = no
}}
home_server upstream_auth {{
  type = auth
  ipaddr = {auth_ip}
  port = {auth_port}
  secret = "{up_secret}"
  response_window = 20
  zombie_period = 40
  revive_interval = 10
  status_check = none
  max_outstanding = 65536
}}
home_server upstream_acct {{
  type = acct
  ipaddr = {acct_ip}
  port = {acct_port}
  secret = "{up_secret}"
  response_window = 20
  zombie_period = 40
  revive_interval = 10
  status_check = none
  max_outstanding = 65536
}}
home_server_pool upstream_auth_pool {{
  type = fail-over
  home_server = upstream_auth
}}
home_server_pool upstream_acct_pool {{
  type = fail-over
  home_server = upstream_acct
}}
realm upstream {{
  auth_pool = upstream_auth_pool
  acct_pool = upstream_acct_pool
  nostrip
}}
"#,
                auth_ip = up.auth.ip(),
                auth_port = up.auth.port(),
                acct_ip = up.acct.ip(),
                acct_port = up.acct.port(),
                up_secret = up.secret,
            ),
            "update control {\n      &Proxy-To-Realm := \"upstream\"\n    }",
            "update control {\n      &Proxy-To-Realm := \"upstream\"\n    }",
        ),
        None => ("no", String::new(), "files\n    pap", ""),
    };
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
proxy_requests = {proxy_requests}
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
{homes}
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
    {authorize}
  }}
  authenticate {{
    Auth-Type PAP {{
      pap
    }}
  }}
  preacct {{
    {preacct}
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
    for user in setup.users {
        text.push_str(&format!(
            "{} Cleartext-Password := \"{}\"\n        Reply-Message := \"{}\"\n\n",
            user.name, user.password, user.reply_message
        ));
    }
    std::fs::write(dir.join("users"), text).unwrap();
}
