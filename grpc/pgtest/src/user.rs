//! Who runs the server. `initdb`, `pg_ctl` and `postgres` refuse to run as root, so under
//! root (as the tests run) they run as the `postgres` system user through
//! `setpriv --reuid --regid --clear-groups`, and the cluster's directory is given to that
//! user; otherwise they run as the current user.

use std::fs;
use std::io;
use std::os::unix::fs::chown;
use std::path::Path;
use std::process::Command;

/// The system user that runs the server when the tests run as root.
const SERVER_USER: &str = "postgres";

/// The user that the server programs run as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RunAs {
    /// Not root: the current user.
    Current,
    /// Root: this (the `postgres` user's) uid and gid.
    User {
        /// The user's uid.
        uid: u32,
        /// The user's primary gid.
        gid: u32,
    },
}

impl RunAs {
    /// The current user, or the `postgres` user if the effective uid is 0.
    pub(crate) fn detect() -> io::Result<RunAs> {
        if !rustix::process::geteuid().is_root() {
            return Ok(RunAs::Current);
        }
        let passwd = fs::read_to_string("/etc/passwd")?;
        lookup(&passwd, SERVER_USER).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "running as root, and PostgreSQL refuses root: the server runs as the \
                     `{SERVER_USER}` user, which is not in /etc/passwd (the postgresql \
                     package creates it)"
                ),
            )
        })
    }

    /// A command that runs `program` as this user.
    pub(crate) fn command(&self, program: &Path) -> Command {
        match *self {
            RunAs::Current => Command::new(program),
            RunAs::User { uid, gid } => {
                let mut cmd = Command::new("setpriv");
                cmd.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .arg("--clear-groups")
                    .arg("--")
                    .arg(program);
                cmd
            }
        }
    }

    /// Gives `path` to this user (a no-op for the current user).
    pub(crate) fn give(&self, path: &Path) -> io::Result<()> {
        match *self {
            RunAs::Current => Ok(()),
            RunAs::User { uid, gid } => chown(path, Some(uid), Some(gid)),
        }
    }
}

/// The uid and gid of `name` in the text of /etc/passwd (`name:x:uid:gid:...`).
fn lookup(passwd: &str, name: &str) -> Option<RunAs> {
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        if fields.next()? != name {
            return None;
        }
        let _password = fields.next()?;
        let uid = fields.next()?.parse().ok()?;
        let gid = fields.next()?.parse().ok()?;
        Some(RunAs::User { uid, gid })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwd_lines_are_parsed() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\n\
                      postgresql:x:7:7::/:/bin/false\n\
                      postgres:x:101:104:PostgreSQL administrator,,,:/var/lib/postgresql:/bin/bash\n";
        assert_eq!(
            lookup(passwd, "postgres"),
            Some(RunAs::User { uid: 101, gid: 104 })
        );
        assert_eq!(lookup(passwd, "nobody"), None);
        assert_eq!(lookup("postgres:x:oops:1::/:/bin/sh", "postgres"), None);
    }
}
