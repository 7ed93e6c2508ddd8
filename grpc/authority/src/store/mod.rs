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
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};

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
    /// The chain it is stored in the order of, if any.
    chain: Option<Chain>,
    tries: u32,
    reply: Reply,
}

/// Jobs stored in the order they were queued, none after one that failed: one device's
/// usage stream, whose reports must not be stored past one the device was told failed
/// (it resends from there, and a report stored after it would count as out of order).
///
/// A job of a failed chain is answered with the chain's refusal without running. A chain
/// fails when one of its jobs fails, whether in its closure or with its batch (a begin or
/// a commit that failed): the answer is given on the writer thread before the next batch
/// runs. When a job must run again (it lost to a concurrent transaction), the chain's
/// later jobs of the batch wait and run again after it.
#[derive(Clone)]
pub struct Chain(Arc<ChainState>);

struct ChainState {
    failed: AtomicBool,
    /// What a job of the chain answers once the chain failed.
    refusal: String,
    /// The batch (numbered from 1) in which a job of the chain was put off, or 0.
    put_off_in: AtomicU64,
}

impl Chain {
    /// A new chain whose jobs, once it failed, are refused as FAILED_PRECONDITION with
    /// `refusal`.
    pub fn new(refusal: impl Into<String>) -> Self {
        Self(Arc::new(ChainState {
            failed: AtomicBool::new(false),
            refusal: refusal.into(),
            put_off_in: AtomicU64::new(0),
        }))
    }
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
        self.queue(work, true, None)
    }

    /// As [`submit`](Self::submit), without the ledger lock and in the order of `chain`:
    /// only for work whose every write is keyed so that two processes cannot both make it
    /// (a usage report, stored once per (instance, sequence)).
    pub fn submit_keyed<T, W>(
        &self,
        chain: &Chain,
        work: W,
    ) -> impl Future<Output = Result<T>> + Send + 'static + use<T, W>
    where
        T: Send + 'static,
        W: FnMut(&Db) -> Result<T> + Send + 'static,
    {
        self.queue(work, false, Some(chain.clone()))
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
            None,
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
        chain: Option<Chain>,
    ) -> impl Future<Output = Result<T>> + Send + 'static + use<T, W>
    where
        T: Send + 'static,
        W: FnMut(&Db) -> Result<T> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let queued = self.send(
            work,
            locked,
            chain,
            Box::new(move |result| {
                let _ = reply.send(result);
            }),
        );
        async move {
            queued?;
            take(answer.await.map_err(|_| stopped())?)
        }
    }

    fn send<T, W>(
        &self,
        mut work: W,
        locked: bool,
        chain: Option<Chain>,
        reply: Reply,
    ) -> Result<()>
    where
        T: Send + 'static,
        W: FnMut(&Db) -> Result<T> + Send + 'static,
    {
        let work: Work = Box::new(move |db| work(db).map(|v| Box::new(v) as Box<dyn Any + Send>));
        self.jobs
            .send(Job {
                work,
                locked,
                chain,
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
    for number in 1u64.. {
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
                answer(
                    job.chain.as_ref(),
                    job.reply,
                    Err(failed(&e, "cannot begin a transaction")),
                );
            }
            continue;
        }
        let mut done = Vec::with_capacity(batch.len());
        for mut job in batch {
            if let Some(chain) = &job.chain {
                if chain.0.failed.load(Ordering::Relaxed) {
                    let refusal = Error::FailedPrecondition(chain.0.refusal.clone());
                    done.push((job.chain, job.reply, Err(refusal)));
                    continue;
                }
                if chain.0.put_off_in.load(Ordering::Relaxed) == number {
                    retry.push(job);
                    continue;
                }
            }
            let result = run_in_savepoint(&db, &mut job.work);
            match result {
                Err(Error::Storage(DbError::Conflict(_))) if job.tries + 1 < MAX_TRIES => {
                    job.tries += 1;
                    if let Some(chain) = &job.chain {
                        chain.0.put_off_in.store(number, Ordering::Relaxed);
                    }
                    retry.push(job);
                }
                result => {
                    // Failed now, so that the chain's later jobs of this batch are refused.
                    if let (Some(chain), Err(_)) = (&job.chain, &result) {
                        chain.0.failed.store(true, Ordering::Relaxed);
                    }
                    done.push((job.chain, job.reply, result));
                }
            }
        }
        match db.execute_batch("COMMIT") {
            Ok(()) => {
                for (chain, reply, result) in done {
                    // The caller may have gone away; its write is durable all the same.
                    answer(chain.as_ref(), reply, result);
                }
            }
            Err(e) => {
                let _ = db.execute_batch("ROLLBACK");
                for (chain, reply, _) in done {
                    let e = failed(&e, "commit failed, nothing was stored");
                    answer(chain.as_ref(), reply, Err(e));
                }
            }
        }
    }
}

/// Answers a job, failing its chain first if the job failed.
fn answer(chain: Option<&Chain>, reply: Reply, result: Result<Box<dyn Any + Send>>) {
    if let (Some(chain), Err(_)) = (chain, &result) {
        chain.0.failed.store(true, Ordering::Relaxed);
    }
    reply(result);
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

#[cfg(test)]
mod tests;
