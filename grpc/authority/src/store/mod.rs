//! The authority's store: SQLite (one file, the default) or PostgreSQL (shared by several
//! authority processes), behind writer threads with group commit: one on SQLite; on
//! PostgreSQL one for every operation but the usage streams, and [`USAGE_WRITERS`] more
//! for those, each stream on one of them.
//!
//! Every operation is a closure run on a writer thread inside a savepoint of the current
//! batch transaction, over a [`Db`] (see [`db`]), so the ledger is written once for both
//! backends. Operations queued while a batch commits form the next batch, so one commit
//! covers many of them; a closure that fails is rolled back to its savepoint and nothing it
//! wrote survives. Results are handed back only after the batch's commit is durable
//! (SQLite: `synchronous=FULL`; PostgreSQL: its commit, which waits for a synchronous
//! standby when one is configured), so nothing is acknowledged that a crash could lose.
//!
//! Work of one kind that many callers queue (the usage reports) can be [`Grouped`]: the
//! writer hands a run of consecutive items to one call that reads and writes set-wise, in
//! one savepoint, instead of a savepoint and a few statements for each. On PostgreSQL
//! every statement is a round trip to the server, so a batch of reports then costs a
//! handful of them in all instead of nine a report. When that call fails, nothing
//! it wrote is kept and every item runs again alone, in a savepoint of its own, as any
//! other operation does.
//!
//! On PostgreSQL other processes write beside this one. Every operation but the usage
//! reports (stored once per (instance, sequence) by the primary key, whoever writes first)
//! runs under the ledger lock, which the batch takes first, so that two processes never
//! both give out a pool's last licence. An operation that lost a deadlock to another
//! process is run again in the next batch (one of a [`Chain`], a usage stream, is answered
//! with the conflict instead, and its chain stops); a lost connection is opened again at the
//! next batch, and the operations of a batch it failed are answered "unavailable".

pub mod db;
#[cfg(test)]
mod grouped_tests;
#[cfg(test)]
mod migration_tests;
mod postgres;
mod sqlite;

use std::any::{Any, TypeId};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
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

/// Writers (each a connection) for the usage streams on PostgreSQL, beside the one for
/// everything else. A commit there waits for the WAL to be flushed (and for a synchronous
/// standby); with one writer the authority sat idle a quarter of the time under usage
/// load, waiting for its commits; with two, one commits while the other fills its next
/// batch (four were slower: smaller batches, more CPU a report).
/// A stream keeps to one writer, so its reports are stored in order and the rule of its
/// [`Chain`] holds within that writer; across writers this is what two authority
/// processes on one database already are.
pub const USAGE_WRITERS: usize = 2;

/// Numbers chains, to spread them over the usage writers.
static CHAINS: AtomicUsize = AtomicUsize::new(0);

/// Work that many callers queue one item at a time and that is cheaper done for many
/// items at once (see the module docs).
pub trait Grouped: Send + Sized + 'static {
    /// What each item answers.
    type Output: Send + 'static;

    /// Runs this item alone (in a savepoint of its own): what a run of items falls back to
    /// when [`run_all`](Self::run_all) fails.
    fn run_one(&self, db: &Db) -> Result<Self::Output>;

    /// Runs `items`, consecutive in the queue and in its order, together: each answers what
    /// [`run_one`](Self::run_one) would have had they run one after the other, and an item
    /// answered with an error has written nothing. An error here fails them all; the store
    /// then rolls back what this call wrote and runs each with `run_one`.
    fn run_all(db: &Db, items: &[&Self]) -> Result<Vec<Result<Self::Output>>>;
}

type Answer = Result<Box<dyn Any + Send>>;
type Reply = Box<dyn FnOnce(Answer) + Send>;

enum Work {
    /// A closure, run in a savepoint of its own.
    Alone(Box<dyn FnMut(&Db) -> Answer + Send>),
    /// An item of a [`Grouped`] kind, run with the items of its kind next to it.
    Grouped(GroupedItem),
}

/// A [`Grouped`] item with its kind's functions, its type erased.
struct GroupedItem {
    kind: TypeId,
    item: Box<dyn Any + Send>,
    run_one: fn(&Db, &dyn Any) -> Answer,
    run_all: fn(&Db, &[&dyn Any]) -> Result<Vec<Answer>>,
}

impl Work {
    fn kind(&self) -> Option<TypeId> {
        match self {
            Work::Alone(_) => None,
            Work::Grouped(grouped) => Some(grouped.kind),
        }
    }

    fn run_alone(&mut self, db: &Db) -> Answer {
        match self {
            Work::Alone(work) => work(db),
            Work::Grouped(grouped) => (grouped.run_one)(db, grouped.item.as_ref()),
        }
    }
}

fn run_one_of<G: Grouped>(db: &Db, item: &dyn Any) -> Answer {
    let item = item.downcast_ref::<G>().ok_or_else(wrong_kind)?;
    Ok(Box::new(item.run_one(db)?))
}

fn run_all_of<G: Grouped>(db: &Db, items: &[&dyn Any]) -> Result<Vec<Answer>> {
    let items = items
        .iter()
        .map(|item| item.downcast_ref::<G>().ok_or_else(wrong_kind))
        .collect::<Result<Vec<_>>>()?;
    let answers = G::run_all(db, &items)?;
    if answers.len() != items.len() {
        return Err(Error::Internal(format!(
            "{} answers for {} grouped items",
            answers.len(),
            items.len()
        )));
    }
    Ok(answers
        .into_iter()
        .map(|answer| answer.map(|v| Box::new(v) as Box<dyn Any + Send>))
        .collect())
}

fn wrong_kind() -> Error {
    Error::Internal("a grouped item of another kind than its run".into())
}

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
/// A chain fails when one of its jobs is answered with an error, whether from its own
/// work or with its batch (a begin or a commit that failed); the answer is given on the
/// writer thread before the next batch runs, and every later job of the chain is refused
/// without running. A job of a chain that loses to a concurrent transaction is answered
/// with the conflict rather than run again, as its chain's later jobs may already have
/// run. [`Grouped`] work of a chain checks [`failed`](Chain::failed) itself, and fails the
/// chain for a refusal it decides within a run.
#[derive(Clone)]
pub struct Chain(Arc<ChainState>);

struct ChainState {
    /// Its number, which picks its writer.
    number: usize,
    failed: AtomicBool,
    /// What a job of the chain answers once the chain failed.
    refusal: String,
}

impl Chain {
    /// A new chain whose jobs, once it failed, are refused as FAILED_PRECONDITION with
    /// `refusal`.
    pub fn new(refusal: impl Into<String>) -> Self {
        Self(Arc::new(ChainState {
            number: CHAINS.fetch_add(1, Ordering::Relaxed),
            failed: AtomicBool::new(false),
            refusal: refusal.into(),
        }))
    }

    /// Whether a job of the chain failed.
    pub fn failed(&self) -> bool {
        self.0.failed.load(Ordering::Relaxed)
    }

    /// Fails the chain.
    pub fn fail(&self) {
        self.0.failed.store(true, Ordering::Relaxed);
    }

    /// What a job of the failed chain answers.
    pub fn refusal(&self) -> Error {
        Error::FailedPrecondition(self.0.refusal.clone())
    }

    /// Whether `other` is this chain.
    pub fn is(&self, other: &Chain) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }
}

/// A handle on the store; cheap to clone.
#[derive(Clone)]
pub struct Store {
    /// The writers' queues: the first takes every job but a chain's, and chains too when
    /// it is the only one.
    writers: Arc<[mpsc::Sender<Job>]>,
}

impl Store {
    /// Opens (creating if needed) the SQLite database at `path`, migrates it, and starts
    /// the writer thread.
    pub fn open(path: &Path) -> Result<Self> {
        Self::open_at(&Location::Sqlite(path.to_owned()))
    }

    /// Opens the store at `location`, migrates it (refusing a schema newer than this
    /// binary's), and starts the writer threads.
    pub fn open_at(location: &Location) -> Result<Self> {
        let usage_writers = match location {
            Location::Sqlite(_) => 0,
            Location::Postgres(_) => USAGE_WRITERS,
        };
        // The first writer migrates; the others open only once it has.
        let writers: Vec<_> = (0..=usage_writers)
            .map(|writer| start_writer(location, writer))
            .collect::<Result<_>>()?;
        Ok(Self {
            writers: writers.into(),
        })
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
        let mut work = work;
        self.send(
            Work::Alone(Box::new(move |db| {
                work(db).map(|v| Box::new(v) as Box<dyn Any + Send>)
            })),
            true,
            None,
            Box::new(move |result| {
                let _ = reply.send(result);
            }),
        )?;
        take(answer.recv().map_err(|_| stopped())?)
    }

    /// As [`submit_keyed`](Self::submit_keyed) (no ledger lock: for keyed work only, in
    /// the order of `chain`), for an item that runs with the items of its kind queued next
    /// to it.
    pub fn submit_grouped<G: Grouped>(
        &self,
        chain: &Chain,
        item: G,
    ) -> impl Future<Output = Result<G::Output>> + Send + 'static + use<G> {
        let work = Work::Grouped(GroupedItem {
            kind: TypeId::of::<G>(),
            item: Box::new(item),
            run_one: run_one_of::<G>,
            run_all: run_all_of::<G>,
        });
        self.queue_work(work, false, Some(chain.clone()))
    }

    fn queue<T, W>(
        &self,
        mut work: W,
        locked: bool,
        chain: Option<Chain>,
    ) -> impl Future<Output = Result<T>> + Send + 'static + use<T, W>
    where
        T: Send + 'static,
        W: FnMut(&Db) -> Result<T> + Send + 'static,
    {
        let work = Work::Alone(Box::new(move |db| {
            work(db).map(|v| Box::new(v) as Box<dyn Any + Send>)
        }));
        self.queue_work(work, locked, chain)
    }

    fn queue_work<T: Send + 'static>(
        &self,
        work: Work,
        locked: bool,
        chain: Option<Chain>,
    ) -> impl Future<Output = Result<T>> + Send + 'static + use<T> {
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

    fn send(&self, work: Work, locked: bool, chain: Option<Chain>, reply: Reply) -> Result<()> {
        let usage_writers = self.writers.len() - 1;
        let writer = match &chain {
            Some(chain) if usage_writers > 0 => 1 + chain.0.number % usage_writers,
            _ => 0,
        };
        self.writers[writer]
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

/// Starts writer thread number `writer` (0 migrates) on a backend it opens itself, and
/// waits until it has.
fn start_writer(location: &Location, writer: usize) -> Result<mpsc::Sender<Job>> {
    let (opened, ready) = std::sync::mpsc::sync_channel::<Result<()>>(1);
    let (jobs, queue) = mpsc::channel::<Job>();
    let location = location.clone();
    let name = match writer {
        0 => "entitle-store".to_owned(),
        n => format!("entitle-store-usage-{n}"),
    };
    // The backend is made on the writer thread: a PostgreSQL connection belongs to the
    // runtime of the thread that drives it.
    std::thread::Builder::new()
        .name(name)
        .spawn(move || {
            let opening = open_backend(&location, writer == 0).and_then(|db| {
                let checkpointer = match &location {
                    Location::Sqlite(path) => Some(sqlite::Checkpointer::start(path)?),
                    Location::Postgres(_) => None,
                };
                Ok((db, checkpointer))
            });
            let (db, checkpointer) = match opening {
                Ok(opened_backend) => {
                    let _ = opened.send(Ok(()));
                    opened_backend
                }
                Err(e) => {
                    let _ = opened.send(Err(e));
                    return;
                }
            };
            write_loop(db, queue, checkpointer.as_ref());
        })
        .map_err(|e| Error::Internal(format!("cannot start the store thread: {e}")))?;
    ready
        .recv()
        .map_err(|_| Error::Internal("the store thread ended while opening".into()))??;
    Ok(jobs)
}

fn stopped() -> Error {
    Error::Internal("the store has stopped".into())
}

fn take<T: 'static>(result: Answer) -> Result<T> {
    result?
        .downcast::<T>()
        .map(|v| *v)
        .map_err(|_| Error::Internal("store result of the wrong type".into()))
}

fn open_backend(location: &Location, migrate: bool) -> Result<Db> {
    Ok(Db::new(match location {
        Location::Sqlite(path) => Backend::Sqlite(sqlite::open(path)?),
        Location::Postgres(url) => {
            let conn = postgres::PgConn::connect(url)?;
            if migrate {
                conn.migrate()?;
            }
            Backend::Postgres(Box::new(conn))
        }
    }))
}

fn write_loop(mut db: Db, queue: mpsc::Receiver<Job>, checkpointer: Option<&sqlite::Checkpointer>) {
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
                let e = failed(&e, "cannot begin a transaction");
                answer(job.chain.as_ref(), job.reply, Err(e));
            }
            continue;
        }
        let mut done = Vec::with_capacity(batch.len());
        let mut settle = |mut job: Job, result: Answer| match result {
            Err(Error::Storage(DbError::Conflict(_)))
                if job.chain.is_none() && job.tries + 1 < MAX_TRIES =>
            {
                job.tries += 1;
                retry.push(job);
            }
            result => {
                // Failed now, so that the chain's later jobs of this batch are refused.
                if let (Some(chain), Err(_)) = (&job.chain, &result) {
                    chain.fail();
                }
                done.push((job.chain, job.reply, result));
            }
        };
        let mut jobs = batch.into_iter().peekable();
        while let Some(mut job) = jobs.next() {
            let Some(kind) = job.work.kind() else {
                let result = match &job.chain {
                    Some(chain) if chain.failed() => Err(chain.refusal()),
                    _ => run_in_savepoint(&db, &mut job.work),
                };
                settle(job, result);
                continue;
            };
            let mut run = vec![job];
            while let Some(next) = jobs.next_if(|next| next.work.kind() == Some(kind)) {
                run.push(next);
            }
            let results = run_grouped(&db, &mut run);
            for (job, result) in run.into_iter().zip(results) {
                settle(job, result);
            }
        }
        match db.execute_batch("COMMIT") {
            Ok(()) => {
                if let Some(checkpointer) = checkpointer {
                    checkpointer.committed();
                }
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
fn answer(chain: Option<&Chain>, reply: Reply, result: Answer) {
    if let (Some(chain), Err(_)) = (chain, &result) {
        chain.fail();
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
            match conn.begin(locked) {
                // A connection lost while this writer was idle (a failover, a restart) is
                // found only now, its runtime having not run since; nothing of the batch
                // has run, so connect again and begin once more.
                Err(DbError::Unavailable(_)) => {
                    conn.reconnect()?;
                    conn.begin(locked)
                }
                result => result,
            }
        }
    }
}

fn run_in_savepoint(db: &Db, work: &mut Work) -> Answer {
    in_savepoint(db, |db| work.run_alone(db))
}

fn in_savepoint<T>(db: &Db, work: impl FnOnce(&Db) -> Result<T>) -> Result<T> {
    db.prepare_cached("SAVEPOINT job")?.execute([])?;
    let result = work(db);
    if result.is_err() {
        db.prepare_cached("ROLLBACK TO job")?.execute([])?;
    }
    db.prepare_cached("RELEASE job")?.execute([])?;
    result
}

/// Runs a run of grouped items (of one kind) together, or each alone when that fails; one
/// answer per item, in order.
fn run_grouped(db: &Db, run: &mut [Job]) -> Vec<Answer> {
    let together = in_savepoint(db, |db| {
        let mut items = Vec::with_capacity(run.len());
        let mut run_all = None;
        for job in run.iter() {
            if let Work::Grouped(grouped) = &job.work {
                items.push(grouped.item.as_ref() as &dyn Any);
                run_all = Some(grouped.run_all);
            }
        }
        match run_all {
            Some(run_all) if items.len() == run.len() => run_all(db, &items),
            _ => Err(wrong_kind()),
        }
    });
    match together {
        Ok(answers) => answers,
        Err(e) => {
            tracing::debug!(error = %e, items = run.len(), "a grouped run failed; each item runs alone");
            run.iter_mut()
                .map(|job| run_in_savepoint(db, &mut job.work))
                .collect()
        }
    }
}

#[cfg(test)]
mod tests;
