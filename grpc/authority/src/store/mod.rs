//! The authority's store: SQLite (one file, the default) or PostgreSQL (shared by several
//! authority processes), behind one writer thread per process with group commit.
//!
//! Every operation is a closure run on the writer thread inside a savepoint of the current
//! batch transaction, over a [`Db`] (see [`db`]), so the ledger is written once for both
//! backends. Operations queued while a batch commits form the next batch, so one commit
//! covers many of them; a closure that fails is rolled back to its savepoint and nothing it
//! wrote survives. Results are handed back only after the batch's commit is durable
//! (SQLite: `synchronous=FULL`; PostgreSQL: its commit, which waits for a synchronous
//! standby when one is configured), so nothing is acknowledged that a crash could lose.
//!
//! On PostgreSQL other processes write beside this one. Every operation but the usage
//! reports (stored once per (instance, sequence) by the primary key, whoever writes first)
//! runs under the ledger lock, which the batch takes first, so that two processes never
//! both give out a pool's last licence. An operation that lost a deadlock to another
//! process is run again in the next batch; a lost connection is opened again at the next
//! batch, and the operations of a batch it failed are answered "unavailable".

pub mod db;
mod postgres;
mod sqlite;

use std::any::Any;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use tokio::sync::oneshot;

use self::db::Backend;
pub use self::db::{Db, DbError, FromColumn, OptionalExtension, Params, Row, Statement, ToParam};
use crate::error::{Error, Result};
pub use crate::params;

/// Where the store is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL database, by its connection string (`postgres://...`, several hosts
    /// with `target_session_attrs=read-write` for failover).
    Postgres(String),
}

impl Location {
    /// `--database`'s value: a `postgres://` or `postgresql://` URL, or none for the
    /// SQLite file of the data directory.
    pub fn parse(database: Option<&str>, default_file: &Path) -> Result<Self> {
        match database {
            None => Ok(Location::Sqlite(default_file.to_owned())),
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Ok(Location::Postgres(url.to_owned()))
            }
            Some(other) => Err(Error::InvalidArgument(format!(
                "--database takes a postgres:// URL (without it the store is the data directory's SQLite file), not {other:?}"
            ))),
        }
    }
}

/// Most operations in one commit.
const MAX_BATCH: usize = 4096;
/// How many times an operation that lost to a concurrent transaction is run again.
const MAX_TRIES: u32 = 5;

type Work = Box<dyn FnMut(&Db) -> Result<Box<dyn Any + Send>> + Send>;
type Reply = Box<dyn FnOnce(Result<Box<dyn Any + Send>>) + Send>;

struct Job {
    work: Work,
    /// Runs under the ledger lock (PostgreSQL).
    locked: bool,
    tries: u32,
    reply: Reply,
}

/// A handle on the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    jobs: mpsc::Sender<Job>,
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path`, migrates it, and starts
    /// the writer thread.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_at(&Location::Sqlite(path.to_owned()))
    }

    /// Opens the store at `location`, migrates it (refusing a schema newer than this
    /// binary's), and starts the writer thread.
    pub fn open_at(location: &Location) -> Result<Self> {
        let (opened, ready) = std::sync::mpsc::sync_channel::<Result<()>>(1);
        let (jobs, queue) = mpsc::channel::<Job>();
        let location = location.clone();
        // The backend is made on the writer thread: a PostgreSQL connection belongs to the
        // runtime of the thread that drives it.
        std::thread::Builder::new()
            .name("entitle-store".into())
            .spawn(move || {
                let db = match open_backend(&location) {
                    Ok(db) => {
                        let _ = opened.send(Ok(()));
                        db
                    }
                    Err(e) => {
                        let _ = opened.send(Err(e));
                        return;
                    }
                };
                write_loop(db, queue);
            })
            .map_err(|e| Error::Internal(format!("cannot start the store thread: {e}")))?;
        ready
            .recv()
            .map_err(|_| Error::Internal("the store thread ended while opening".into()))??;
        Ok(Self { jobs })
    }

    /// Runs `work` in the next batch and returns its result once the batch is durable.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnMut(&Db) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        self.submit(work).await
    }

    /// Queues `work` now (so that queued operations keep their order) and returns a future
    /// of its result, ready once the batch is durable. It runs under the ledger lock.
    pub fn submit<T, W>(
        &self,
        work: W,
    ) -> impl Future<Output = Result<T>> + Send + 'static + use<T, W>
    where
        T: Send + 'static,
        W: FnMut(&Db) -> Result<T> + Send + 'static,
    {
        self.queue(work, true)
    }

    /// As [`submit`](Self::submit), without the ledger lock: only for work whose every
    /// write is keyed so that two processes cannot both make it (a usage report, stored
    /// once per (instance, sequence)).
    pub fn submit_keyed<T, W>(
        &self,
        work: W,
    ) -> impl Future<Output = Result<T>> + Send + 'static + use<T, W>
    where
        T: Send + 'static,
        W: FnMut(&Db) -> Result<T> + Send + 'static,
    {
        self.queue(work, false)
    }

    /// Runs `work` in the next batch and waits, blocking the thread, for its result once
    /// the batch is durable: for start-up, before any runtime serves.
    pub fn run_blocking<T, W>(&self, work: W) -> Result<T>
    where
        T: Send + 'static,
        W: FnMut(&Db) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        self.send(
            work,
            true,
            Box::new(move |result| {
                let _ = reply.send(result);
            }),
        )?;
        take(answer.recv().map_err(|_| stopped())?)
    }

    fn queue<T, W>(
        &self,
        work: W,
        locked: bool,
    ) -> impl Future<Output = Result<T>> + Send + 'static + use<T, W>
    where
        T: Send + 'static,
        W: FnMut(&Db) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let queued = self.send(
            work,
            locked,
            Box::new(move |result| {
                let _ = reply.send(result);
            }),
        );
        async move {
            queued?;
            take(answer.await.map_err(|_| stopped())?)
        }
    }

    fn send<T, W>(&self, mut work: W, locked: bool, reply: Reply) -> Result<()>
    where
        T: Send + 'static,
        W: FnMut(&Db) -> Result<T> + Send + 'static,
    {
        let work: Work = Box::new(move |db| work(db).map(|v| Box::new(v) as Box<dyn Any + Send>));
        self.jobs
            .send(Job {
                work,
                locked,
                tries: 0,
                reply,
            })
            .map_err(|_| stopped())
    }
}

fn stopped() -> Error {
    Error::Internal("the store has stopped".into())
}

fn take<T: 'static>(result: Result<Box<dyn Any + Send>>) -> Result<T> {
    result?
        .downcast::<T>()
        .map(|v| *v)
        .map_err(|_| Error::Internal("store result of the wrong type".into()))
}

fn open_backend(location: &Location) -> Result<Db> {
    Ok(Db::new(match location {
        Location::Sqlite(path) => Backend::Sqlite(sqlite::open(path)?),
        Location::Postgres(url) => {
            let conn = postgres::PgConn::connect(url)?;
            conn.migrate()?;
            Backend::Postgres(Box::new(conn))
        }
    }))
}

fn write_loop(mut db: Db, queue: mpsc::Receiver<Job>) {
    let mut retry: Vec<Job> = Vec::new();
    loop {
        let mut batch = std::mem::take(&mut retry);
        if batch.is_empty() {
            match queue.recv() {
                Ok(first) => batch.push(first),
                Err(_) => return,
            }
        }
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let locked = batch.iter().any(|job| job.locked);
        if let Err(e) = begin(&mut db, locked) {
            for job in batch {
                (job.reply)(Err(failed(&e, "cannot begin a transaction")));
            }
            continue;
        }
        let mut done = Vec::with_capacity(batch.len());
        for mut job in batch {
            let result = run_in_savepoint(&db, &mut job.work);
            match result {
                Err(Error::Storage(DbError::Conflict(_))) if job.tries + 1 < MAX_TRIES => {
                    job.tries += 1;
                    retry.push(job);
                }
                result => done.push((job.reply, result)),
            }
        }
        match db.execute_batch("COMMIT") {
            Ok(()) => {
                for (reply, result) in done {
                    // The caller may have gone away; its write is durable all the same.
                    reply(result);
                }
            }
            Err(e) => {
                let _ = db.execute_batch("ROLLBACK");
                for (reply, _) in done {
                    reply(Err(failed(&e, "commit failed, nothing was stored")));
                }
            }
        }
    }
}

/// The error every operation of a batch gets when the batch as a whole failed.
fn failed(e: &DbError, what: &str) -> Error {
    match e {
        DbError::Unavailable(m) => Error::Storage(DbError::Unavailable(m.clone())),
        e => Error::Internal(format!("{what}: {e}")),
    }
}

fn begin(db: &mut Db, locked: bool) -> Result<(), DbError> {
    match db.backend_mut() {
        Backend::Sqlite(conn) => conn
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(db::from_sqlite),
        Backend::Postgres(conn) => {
            conn.ensure_connected()?;
            conn.begin(locked)
        }
    }
}

fn run_in_savepoint(db: &Db, work: &mut Work) -> Result<Box<dyn Any + Send>> {
    db.prepare_cached("SAVEPOINT job")?.execute([])?;
    let result = work(db);
    if result.is_err() {
        db.prepare_cached("ROLLBACK TO job")?.execute([])?;
    }
    db.prepare_cached("RELEASE job")?.execute([])?;
    result
}
