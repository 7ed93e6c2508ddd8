//! One throwaway PostgreSQL server: its own temporary directory under `/tmp`, a loopback
//! port of its own, the `entitle` database, and the operations a durability test needs
//! (a clean stop, a SIGKILL, a start on the same data after either).
//!
//! The directory holds `data/` (the cluster), `server.log` (the server's log, written by
//! `pg_ctl -l`) and the server's Unix socket, so nothing touches `/var/run/postgresql`.
//! It is under `/tmp` rather than `$TMPDIR` because a socket's path must stay short and
//! the `postgres` user must be able to reach it.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::bins::Binaries;
use crate::port;
use crate::process::{self, PidFile};
use crate::user::RunAs;

/// The superuser that `initdb` creates; every URL and [`Cluster::psql`] connect as it.
pub const SUPERUSER: &str = "postgres";

/// The database that [`Cluster::start`] creates and that [`Cluster::url`] names.
pub const DATABASE: &str = "entitle";

/// How long `pg_ctl` may wait for a start, stop or promotion, and how long the waits for
/// replication and promotion may take.
pub(crate) const WAIT: Duration = Duration::from_secs(30);

/// How long the processes of a killed server may take to exit.
const KILL_WAIT: Duration = Duration::from_secs(10);

/// How often a first start may pick another port after the server could not bind one.
const BIND_TRIES: usize = 5;

/// How many lines of the server log an error carries.
const LOG_TAIL_LINES: usize = 40;

/// A running PostgreSQL server in a temporary directory, stopped (immediate mode) and
/// removed on drop.
///
/// Every method blocks (it runs `pg_ctl` or `psql` and waits): in async code call them
/// where blocking is fine, e.g. outside the runtime or in `spawn_blocking`.
///
/// The server listens on `127.0.0.1` only, trusts every local connection, and keeps
/// `fsync = on`, so what a commit acknowledged survives [`kill`](Cluster::kill). To change
/// a setting, `ALTER SYSTEM SET name = value` through [`psql`](Cluster::psql), then
/// `SELECT pg_reload_conf()` or [`stop`](Cluster::stop) and
/// [`start_again`](Cluster::start_again).
#[derive(Debug)]
pub struct Cluster {
    dir: TempDir,
    data_dir: PathBuf,
    log_file: PathBuf,
    port: u16,
    pub(crate) bins: Binaries,
    run_as: RunAs,
}

impl Cluster {
    /// Creates a cluster (`initdb`), starts it on a free loopback port, waits until it
    /// accepts connections (at most 30 s) and creates the [`DATABASE`].
    ///
    /// Under root the server runs as the `postgres` system user (PostgreSQL refuses root).
    /// Fails if PostgreSQL's programs are not found (see the crate docs), if that user is
    /// missing, or if a step fails; the error then carries the end of the server log.
    pub fn start() -> io::Result<Cluster> {
        let mut cluster = Cluster::empty()?;
        cluster.initdb()?;
        cluster.configure("")?;
        cluster.launch()?;
        cluster.create_database()?;
        Ok(cluster)
    }

    /// `postgres://postgres@127.0.0.1:PORT/entitle`, for `tokio_postgres::connect` and the like.
    pub fn url(&self) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{DATABASE}", self.port)
    }

    /// The loopback port the server listens on (the same after a restart).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The cluster's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The server log's text so far (empty if there is none yet), for failure messages.
    pub fn log(&self) -> String {
        fs::read(&self.log_file)
            .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
            .unwrap_or_default()
    }

    /// Runs `sql` (one or more statements, each in its own transaction unless the script
    /// says otherwise) in the [`DATABASE`] as the [`SUPERUSER`], through
    /// `psql -X -A -t -q -v ON_ERROR_STOP=1`, and returns what it printed without the final
    /// newlines: one line a row, columns separated by `|`; `"1"` for `select 1`.
    ///
    /// Fails with psql's error output if a statement fails or the server does not answer.
    pub fn psql(&self, sql: &str) -> io::Result<String> {
        self.psql_in(DATABASE, sql)
    }

    /// Stops the server with a fast shutdown (sessions are ended, a checkpoint is written)
    /// and waits until it is down. Does nothing if the server does not run.
    pub fn stop(&self) -> io::Result<()> {
        if self.running_pid()?.is_none() {
            return Ok(());
        }
        self.pg_ctl_stop("fast")
    }

    /// Kills the server as a crash would: SIGKILL to the postmaster, then to every other
    /// process of the cluster, and waits until they have exited and the port refuses
    /// connections (at most 10 s). Does nothing if the server does not run.
    pub fn kill(&self) -> io::Result<()> {
        let Some(pid) = self.running_pid()? else {
            return Ok(());
        };
        // The postmaster first, so that it starts no new process meanwhile.
        process::kill(pid)?;
        self.kill_the_rest()
    }

    /// SIGKILL to every process of the cluster until none is left and the port is closed.
    fn kill_the_rest(&self) -> io::Result<()> {
        let data_dir = self.data_dir.canonicalize()?;
        let mut failed = None;
        self.wait_for(
            "the killed server's processes to exit and its port to close",
            KILL_WAIT,
            || {
                let left = process::in_dir(&data_dir);
                for &pid in &left {
                    if let Err(e) = process::kill(pid) {
                        failed = Some(e);
                    }
                }
                left.is_empty() && !port::accepts(self.port)
            },
        )
        .map_err(|e| failed.unwrap_or(e))
    }

    /// Starts the server again on the same data directory and port after
    /// [`stop`](Cluster::stop) or [`kill`](Cluster::kill) (after a kill, the server runs
    /// crash recovery first), and waits until it accepts connections (at most 30 s).
    /// Does nothing if the server runs.
    pub fn start_again(&self) -> io::Result<()> {
        if self.running_pid()?.is_some() {
            return Ok(());
        }
        // A killed postmaster leaves its lock files (the data directory's and the socket's).
        // Where orphans are never reaped, the pid in them still names a zombie, which the
        // new postmaster would take for a live server.
        let socket_lock = self.dir.path().join(format!(".s.PGSQL.{}.lock", self.port));
        for lock in [self.data_dir.join("postmaster.pid"), socket_lock] {
            match fs::remove_file(&lock) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(context(e, &format!("could not remove {}", lock.display()))),
            }
        }
        self.pg_ctl_start()
    }

    /// A directory, a port and the programs, but no cluster yet.
    pub(crate) fn empty() -> io::Result<Cluster> {
        let bins = Binaries::find()?;
        let run_as = RunAs::detect()?;
        let dir = tempfile::Builder::new()
            .prefix("entitle-pgtest-")
            .tempdir_in("/tmp")?;
        // Root's temporary directories are 0700: the server's user gets this one, to reach
        // the data directory and to write its socket and log.
        run_as.give(dir.path())?;
        Ok(Cluster {
            data_dir: dir.path().join("data"),
            log_file: dir.path().join("server.log"),
            dir,
            port: port::pick()?,
            bins,
            run_as,
        })
    }

    pub(crate) fn initdb(&self) -> io::Result<()> {
        let mut cmd = self.server_command(&self.bins.initdb);
        cmd.arg("-D")
            .arg(&self.data_dir)
            .args(["-A", "trust", "-U", SUPERUSER, "-E", "UTF8", "--no-locale"])
            // Only initdb's own files go unsynced; the server keeps fsync on.
            .arg("--no-sync");
        run(cmd, "initdb").map(drop)
    }

    /// Appends this cluster's settings, then `extra` (lines of `name = value`), to
    /// `postgresql.conf`; later lines win, so this also overrides settings that
    /// `pg_basebackup` copied from a primary.
    ///
    /// `wal_init_zero = off`: a new cluster has no WAL segments to recycle, so every 16 MB
    /// segment it fills is a new file, which PostgreSQL would first write full of zeroes
    /// and flush, on the commit path; a database that has run for a while renames old
    /// segments instead. Off, a new segment gets only its last byte written. Commits are
    /// flushed as before (`fsync = on`). Under the ingest bench's load this took the
    /// acknowledgement p99 from 25-28.5 ms to 22-28 ms (median of six runs 26.8 to 24.4).
    pub(crate) fn configure(&self, extra: &str) -> io::Result<()> {
        let settings = format!(
            "\n# entitle-pgtest\n\
             listen_addresses = '127.0.0.1'\n\
             port = {port}\n\
             unix_socket_directories = '{dir}'\n\
             max_connections = 100\n\
             shared_buffers = 64MB\n\
             fsync = on\n\
             wal_init_zero = off\n\
             logging_collector = off\n\
             {extra}",
            port = self.port,
            dir = self.dir.path().display(),
        );
        append(&self.data_dir.join("postgresql.conf"), &settings)
    }

    /// Appends lines (`name = value`) to `postgresql.conf` alone; they take effect at the
    /// next reload or start.
    pub(crate) fn configure_more(&self, lines: &str) -> io::Result<()> {
        append(&self.data_dir.join("postgresql.conf"), lines)
    }

    /// Appends lines to `pg_hba.conf`.
    pub(crate) fn append_hba(&self, lines: &str) -> io::Result<()> {
        append(&self.data_dir.join("pg_hba.conf"), lines)
    }

    /// Appends lines to `postgresql.auto.conf` (read after `postgresql.conf`).
    pub(crate) fn append_auto_conf(&self, lines: &str) -> io::Result<()> {
        append(&self.data_dir.join("postgresql.auto.conf"), lines)
    }

    /// The first start: if another process took the port meanwhile, picks another.
    pub(crate) fn launch(&mut self) -> io::Result<()> {
        let mut tries = 0;
        loop {
            tries += 1;
            let log_before = self.log().len();
            let Err(e) = self.pg_ctl_start() else {
                return Ok(());
            };
            let log = self.log();
            let new_lines = log.get(log_before..).unwrap_or(&log);
            if tries == BIND_TRIES || !new_lines.contains("could not bind") {
                return Err(e);
            }
            self.port = port::pick()?;
            self.configure_more(&format!("port = {}\n", self.port))?;
        }
    }

    pub(crate) fn create_database(&self) -> io::Result<()> {
        self.psql_in("postgres", &format!("CREATE DATABASE {DATABASE}"))
            .map(drop)
    }

    fn psql_in(&self, database: &str, sql: &str) -> io::Result<String> {
        let conninfo = format!(
            "host=127.0.0.1 port={} user={SUPERUSER} dbname={database} connect_timeout=10",
            self.port
        );
        let mut cmd = Command::new(&self.bins.psql);
        self.prepare(&mut cmd);
        cmd.args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d"])
            .arg(conninfo)
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| context(e, "could not run psql"))?;
        let mut stdin = child.stdin.take().expect("stdin was set to piped");
        // Written from another thread, so that a script with much output cannot deadlock
        // on full pipes; the write end closes when the thread ends.
        let (written, output) = thread::scope(|s| {
            let writer = s.spawn(move || stdin.write_all(sql.as_bytes()));
            let output = child.wait_with_output();
            (writer.join(), output)
        });
        let output = output?;
        if !output.status.success() {
            return Err(io::Error::other(format!(
                "psql failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim_end()
            )));
        }
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(context(e, "could not write the SQL to psql")),
            Err(_) => return Err(io::Error::other("the thread writing to psql panicked")),
        }
        let mut stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        stdout.truncate(stdout.trim_end_matches('\n').len());
        Ok(stdout)
    }

    fn pg_ctl_start(&self) -> io::Result<()> {
        let mut cmd = self.server_command(&self.bins.pg_ctl);
        cmd.args(["start", "-w", "-t", &WAIT.as_secs().to_string(), "-D"])
            .arg(&self.data_dir)
            .arg("-l")
            .arg(&self.log_file);
        run(cmd, "pg_ctl start")
            .map(drop)
            .map_err(|e| self.with_log(e))
    }

    fn pg_ctl_stop(&self, mode: &str) -> io::Result<()> {
        let mut cmd = self.server_command(&self.bins.pg_ctl);
        cmd.args([
            "stop",
            "-m",
            mode,
            "-w",
            "-t",
            &WAIT.as_secs().to_string(),
            "-D",
        ])
        .arg(&self.data_dir);
        run(cmd, "pg_ctl stop")
            .map(drop)
            .map_err(|e| self.with_log(e))
    }

    /// `pg_ctl promote`, for a standby.
    pub(crate) fn pg_ctl_promote(&self) -> io::Result<()> {
        let mut cmd = self.server_command(&self.bins.pg_ctl);
        cmd.args(["promote", "-w", "-t", &WAIT.as_secs().to_string(), "-D"])
            .arg(&self.data_dir);
        run(cmd, "pg_ctl promote")
            .map(drop)
            .map_err(|e| self.with_log(e))
    }

    /// The postmaster's pid if it runs (a zombie, or a pid now used by another program,
    /// does not count).
    fn running_pid(&self) -> io::Result<Option<i32>> {
        Ok(PidFile::read(&self.data_dir)?
            .map(|file| file.pid)
            .filter(|&pid| process::alive(pid) && process::is_postgres(pid)))
    }

    /// A command that runs a server program (initdb, pg_ctl, pg_basebackup) as the
    /// server's user.
    pub(crate) fn server_command(&self, program: &Path) -> Command {
        let mut cmd = self.run_as.command(program);
        self.prepare(&mut cmd);
        cmd
    }

    /// In the cluster's directory (which the server's user can enter), with no standard
    /// input and without the caller's `PG*` variables (`PGHOST`, `PGDATA`, ...), which
    /// would redirect the programs.
    fn prepare(&self, cmd: &mut Command) {
        cmd.current_dir(self.dir.path()).stdin(Stdio::null());
        for (name, _) in std::env::vars_os() {
            if name.to_str().is_some_and(|n| n.starts_with("PG")) {
                cmd.env_remove(name);
            }
        }
    }

    /// Polls `done` every 20 ms for at most `limit`; the error names `what` and carries
    /// the end of the server log.
    pub(crate) fn wait_for(
        &self,
        what: &str,
        limit: Duration,
        mut done: impl FnMut() -> bool,
    ) -> io::Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            if done() {
                return Ok(());
            }
            if Instant::now() >= deadline {
                let e = io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("waited {limit:?} for {what}"),
                );
                return Err(self.with_log(e));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// `e`, followed by the last lines of the server log.
    pub(crate) fn with_log(&self, e: io::Error) -> io::Error {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
        io::Error::new(
            e.kind(),
            format!("{e}\n--- end of {} ---\n{tail}", self.log_file.display()),
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Ok(Some(pid)) = self.running_pid()
            && self.pg_ctl_stop("immediate").is_err()
            && process::kill(pid).is_ok()
        {
            // Let the processes go before their directory is removed.
            let _ = self.kill_the_rest();
        }
        // A pid file still there means the server was killed: its System V segment is
        // left behind too (a clean or immediate stop removes both), and nobody else will
        // remove it.
        if let Ok(Some(PidFile {
            shm_id: Some(id), ..
        })) = PidFile::read(&self.data_dir)
        {
            let _ = Command::new("ipcrm")
                .arg("-m")
                .arg(id.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        // The TempDir removes the directory, ignoring errors.
    }
}

/// Runs `cmd` to completion; its standard output, or an error with its output if it failed.
pub(crate) fn run(mut cmd: Command, what: &str) -> io::Result<String> {
    let output = cmd
        .output()
        .map_err(|e| context(e, &format!("could not run {what}")))?;
    if !output.status.success() {
        return Err(io::Error::other(format!(
            "{what} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stderr),
            String::from_utf8_lossy(&output.stdout).trim_end(),
        )));
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

fn context(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn append(path: &Path, text: &str) -> io::Result<()> {
    OpenOptions::new()
        .append(true)
        .open(path)
        .and_then(|mut file| file.write_all(text.as_bytes()))
        .map_err(|e| context(e, &format!("could not append to {}", path.display())))
}
