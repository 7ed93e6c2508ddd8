//! The server as processes: the postmaster's pid file, whether a process is still alive,
//! and finding and killing every process of a cluster.
//!
//! Every server process (postmaster and children) changes into the data directory, and
//! each child calls `setsid()`, so neither the parent link (children of a dead postmaster
//! are reparented) nor the process group finds them all: the working directory does.
//!
//! A zombie counts as dead. Once `pg_ctl` has exited the postmaster is an orphan, and where
//! PID 1 does not reap orphans (some containers and micro-VMs) a killed postmaster stays a
//! zombie for good: `kill(pid, 0)` still succeeds on it, and the next postmaster would
//! take the stale `postmaster.pid` for a live server. Liveness is therefore read from
//! `/proc/PID/stat` (Linux).

use std::fs;
use std::io;
use std::path::Path;

use rustix::process::{Pid, Signal};

/// What the first lines of `postmaster.pid` say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PidFile {
    /// The postmaster's pid (line 1).
    pub(crate) pid: i32,
    /// The System V shared memory segment's id (line 7, second field), if any.
    pub(crate) shm_id: Option<u32>,
}

impl PidFile {
    /// Reads `DATA_DIR/postmaster.pid`; `None` if there is none (the server is not running,
    /// or was shut down cleanly).
    pub(crate) fn read(data_dir: &Path) -> io::Result<Option<PidFile>> {
        match fs::read_to_string(data_dir.join("postmaster.pid")) {
            Ok(text) => Ok(parse(&text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// `None` for a file not yet (or only partly) written.
fn parse(text: &str) -> Option<PidFile> {
    let mut lines = text.lines();
    let pid = lines.next()?.trim().parse().ok().filter(|&pid| pid > 0)?;
    let shm_id = lines
        .nth(5)
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|id| id.parse().ok());
    Some(PidFile { pid, shm_id })
}

/// The state letter and process group of a process, from `/proc/PID/stat`.
fn stat(pid: i32) -> Option<(char, i32)> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// `PID (COMM) STATE PPID PGRP ...`; COMM may hold spaces and parentheses.
fn parse_stat(text: &str) -> Option<(char, i32)> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, pgrp))
}

fn is_live_state(state: char) -> bool {
    // Z: zombie, X: dead.
    state != 'Z' && state != 'X'
}

/// Whether the process runs (exists and is no zombie).
pub(crate) fn alive(pid: i32) -> bool {
    stat(pid).is_some_and(|(state, _)| is_live_state(state))
}

/// Whether the process runs PostgreSQL's server program (so that a pid reused by another
/// program after the server died is not taken for the server).
pub(crate) fn is_postgres(pid: i32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .is_ok_and(|comm| matches!(comm.trim_end(), "postgres" | "postmaster"))
}

/// The live processes whose working directory is `dir` (give it canonical).
pub(crate) fn in_dir(dir: &Path) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&pid| {
            fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == dir) && alive(pid)
        })
        .collect()
}

/// SIGKILL to `pid`; a process already gone is no error.
pub(crate) fn kill(pid: i32) -> io::Result<()> {
    let pid = Pid::from_raw(pid).ok_or_else(|| io::Error::other("pid 0 or less"))?;
    match rustix::process::kill_process(pid, Signal::KILL) {
        Ok(()) | Err(rustix::io::Errno::SRCH) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_file_lines() {
        let text = "21833\n/tmp/x/data\n1796216939\n54999\n/tmp/x\n127.0.0.1\n 10018817         4\nready   \n";
        assert_eq!(
            parse(text),
            Some(PidFile {
                pid: 21833,
                shm_id: Some(4)
            })
        );
        assert_eq!(
            parse("21833\n/tmp/x/data\n"),
            Some(PidFile {
                pid: 21833,
                shm_id: None
            })
        );
        assert_eq!(parse(""), None);
        assert_eq!(parse("\n"), None);
    }

    #[test]
    fn stat_lines() {
        assert_eq!(
            parse_stat("21833 (postgres) Zs 1 21833 21833 0 -1"),
            Some(('Z', 21833))
        );
        assert_eq!(parse_stat("7 (a (b) c) S 1 5 5 0 -1"), Some(('S', 5)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn this_process_is_alive_and_found_in_its_directory() {
        let me = i32::try_from(std::process::id()).expect("pids fit in i32");
        assert!(alive(me));
        assert!(!alive(i32::MAX));
        let cwd = std::env::current_dir()
            .and_then(|d| d.canonicalize())
            .expect("cwd");
        assert!(in_dir(&cwd).contains(&me));
        assert!(!in_dir(Path::new("/nonexistent")).contains(&me));
    }
}
