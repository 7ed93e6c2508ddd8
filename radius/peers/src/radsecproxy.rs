//! radsecproxy (Debian's `radsecproxy`) as a plain UDP RADIUS proxy on loopback: one client
//! (127.0.0.1), every realm to one upstream, its configuration in a temporary directory.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::{Upstream, free_port, require, wait_for_status_server};

pub const RADSECPROXY: &str = "/usr/sbin/radsecproxy";

/// A radsecproxy on 127.0.0.1 forwarding to one upstream, killed on drop.
pub struct Radsecproxy {
    child: Option<Child>,
    pub dir: tempfile::TempDir,
    /// Where it listens (Access- and Accounting-Requests alike).
    pub listen: SocketAddr,
    /// Its client's secret.
    pub secret: String,
}

impl Radsecproxy {
    /// Writes the configuration (client 127.0.0.1 with `secret`; `realm *` to `upstream`,
    /// accounting to its accounting port) and starts `radsecproxy -f` on a free port,
    /// waiting (bounded) until it answers Status-Server.
    pub fn start(secret: &str, upstream: &Upstream<'_>) -> Self {
        require(RADSECPROXY, "radsecproxy");
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = free_port();
            let dir = tempfile::tempdir().unwrap();
            let config = format!(
                "ListenUDP 127.0.0.1:{port}\n\
                 LogLevel 2\n\
                 client loadgen {{\n  host 127.0.0.1\n  type udp\n  secret \"{secret}\"\n}}\n\
                 server upstream_auth {{\n  host {}\n  port {}\n  type udp\n  secret \"{}\"\n  \
                 statusServer off\n}}\n\
                 server upstream_acct {{\n  host {}\n  port {}\n  type udp\n  secret \"{}\"\n  \
                 statusServer off\n}}\n\
                 realm * {{\n  server upstream_auth\n  accountingServer upstream_acct\n}}\n",
                upstream.auth.ip(),
                upstream.auth.port(),
                upstream.secret,
                upstream.acct.ip(),
                upstream.acct.port(),
                upstream.secret,
            );
            let path = dir.path().join("radsecproxy.conf");
            std::fs::write(&path, config).unwrap();
            let log = std::fs::File::create(dir.path().join("radsecproxy.log")).unwrap();
            let child = Command::new(RADSECPROXY)
                .arg("-f")
                .arg("-c")
                .arg(&path)
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .stdin(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {RADSECPROXY}: {e}"));
            let mut proxy = Radsecproxy {
                child: Some(child),
                dir,
                listen: SocketAddr::from(([127, 0, 0, 1], port)),
                secret: secret.to_owned(),
            };
            let ready = wait_for_status_server(
                proxy.child.as_mut().unwrap(),
                proxy.listen,
                secret,
                Duration::from_secs(20),
            );
            if ready {
                return proxy;
            }
            last_log = proxy.log();
            proxy.kill();
        }
        panic!("radsecproxy never answered Status-Server; its last log:\n{last_log}");
    }

    /// The proxy's process id (for its CPU time in /proc).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("radsecproxy.log")).unwrap_or_default()
    }

    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Radsecproxy {
    fn drop(&mut self) {
        self.kill();
    }
}
