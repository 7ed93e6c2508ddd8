//! Real PostgreSQL servers for tests and benchmarks: a throwaway [`Cluster`] in a
//! temporary directory on a loopback port of its own, or a [`Pair`] of a primary and a
//! synchronous streaming standby for fail-over tests.
//!
//! ```
//! # fn main() -> std::io::Result<()> {
//! use entitle_pgtest::Cluster;
//!
//! let pg = Cluster::start()?; // initdb, start, CREATE DATABASE entitle
//! pg.psql("CREATE TABLE t (n int); INSERT INTO t VALUES (1)")?;
//! pg.kill()?; // SIGKILL, as a crash
//! pg.start_again()?; // crash recovery on the same data and port
//! assert_eq!(pg.psql("SELECT n FROM t")?, "1");
//! let url = pg.url(); // postgres://postgres@127.0.0.1:PORT/entitle
//! # let _ = url;
//! # Ok(()) }
//! ```
//!
//! # What it needs
//!
//! PostgreSQL's `initdb`, `pg_ctl`, `postgres`, `psql` and `pg_basebackup`, found on
//! `PATH` first and then in the newest `/usr/lib/postgresql/VERSION/bin` (where Debian's
//! `postgresql` package puts the server programs), and Linux (`/proc`).
//!
//! # Root
//!
//! `initdb` and `postgres` refuse to run as root. When the effective uid is 0 the server
//! programs run as the `postgres` system user (`setpriv --reuid --regid --clear-groups`),
//! and each cluster's directory is given to that user; otherwise they run as the current
//! user. `psql` runs as the caller either way.
//!
//! # Settings
//!
//! `listen_addresses = '127.0.0.1'`, the socket in the cluster's own directory,
//! `max_connections = 100`, `shared_buffers = 64MB`, `fsync = on`, trust authentication,
//! UTF8 in the C locale, the log in a file ([`Cluster::log`]).

#![forbid(unsafe_code)]
#![doc(test(attr(deny(warnings))))]

mod bins;
mod cluster;
mod pair;
mod port;
mod process;
mod shared;
mod user;

pub use cluster::{Cluster, DATABASE, SUPERUSER};
pub use pair::Pair;
pub use shared::database_for_tests;

/// Where PostgreSQL's program `name` (such as `pg_dump` or `pg_restore`) is, found as the
/// server programs are (see the crate docs), for tests that run it as an operator would.
pub fn program(name: &str) -> std::io::Result<std::path::PathBuf> {
    bins::find(name)
}
