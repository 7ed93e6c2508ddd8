//! A primary with one synchronous streaming standby, for fail-over tests: a commit the
//! primary acknowledged is on the standby's disk, so it survives killing the primary and
//! promoting the standby.

use std::io;

use crate::cluster::{self, Cluster, DATABASE, SUPERUSER, WAIT};

/// A primary and its synchronous standby (`synchronous_standby_names = 'standby1'`,
/// `synchronous_commit = on`), each a [`Cluster`] with its own directory and port.
///
/// The standby is a hot standby: it answers read-only queries. Commits on the primary wait
/// until the standby has flushed their WAL, so while the standby is down they hang.
#[derive(Debug)]
pub struct Pair {
    primary: Cluster,
    standby: Cluster,
}

impl Pair {
    /// The standby's `application_name`, the one `synchronous_standby_names` names.
    pub const STANDBY_NAME: &'static str = "standby1";

    /// Starts a primary (with the [`DATABASE`]), copies it with
    /// `pg_basebackup -R -X stream`, starts the copy as its standby, and waits until the
    /// primary's `pg_stat_replication` shows the standby as `sync` (at most 30 s).
    pub fn start() -> io::Result<Pair> {
        let mut primary = Cluster::empty()?;
        primary.initdb()?;
        // Synchronous replication is switched on once the standby streams: until then every
        // commit (CREATE DATABASE too) would wait for it.
        primary.configure("wal_level = replica\nmax_wal_senders = 5\nsynchronous_commit = on\n")?;
        primary.append_hba(&format!(
            "host replication {SUPERUSER} 127.0.0.1/32 trust\n"
        ))?;
        primary.launch()?;
        primary.create_database()?;

        let mut standby = Cluster::empty()?;
        let mut cmd = standby.server_command(&standby.bins.pg_basebackup);
        cmd.arg("-D")
            .arg(standby.data_dir())
            .args(["-R", "-X", "stream", "--checkpoint=fast", "--no-sync"])
            .args(["-h", "127.0.0.1", "-p", &primary.port().to_string()])
            .args(["-U", SUPERUSER]);
        cluster::run(cmd, "pg_basebackup").map_err(|e| primary.with_log(e))?;
        // The copy carries the primary's settings: its own port and socket directory win
        // over them. It must have no synchronous standby of its own, or once promoted it
        // would wait for one at every commit; the primary names its standby only after
        // this copy, but the standby says so itself rather than rely on that order.
        standby.configure("synchronous_standby_names = ''\n")?;
        // After the primary_conninfo that -R wrote, so this one (with the name) wins.
        standby.append_auto_conf(&format!(
            "primary_conninfo = 'host=127.0.0.1 port={} user={SUPERUSER} application_name={}'\n",
            primary.port(),
            Pair::STANDBY_NAME
        ))?;
        standby.launch()?;

        let pair = Pair { primary, standby };
        pair.primary.configure_more(&format!(
            "synchronous_standby_names = '{}'\n",
            Pair::STANDBY_NAME
        ))?;
        pair.primary.psql("SELECT pg_reload_conf()")?;
        let query = format!(
            "SELECT sync_state FROM pg_stat_replication WHERE application_name = '{}'",
            Pair::STANDBY_NAME
        );
        pair.primary
            .wait_for("the standby to stream synchronously", WAIT, || {
                pair.primary.psql(&query).is_ok_and(|state| state == "sync")
            })
            .map_err(|e| pair.standby.with_log(e))?;
        Ok(pair)
    }

    /// The primary.
    pub fn primary(&self) -> &Cluster {
        &self.primary
    }

    /// The standby (after [`promote_standby`](Pair::promote_standby), the new primary).
    pub fn standby(&self) -> &Cluster {
        &self.standby
    }

    /// Promotes the standby (`pg_ctl promote -w`) and waits until
    /// `pg_is_in_recovery()` is false on it (at most 30 s). Kill or stop the primary first,
    /// or there are two primaries.
    pub fn promote_standby(&self) -> io::Result<()> {
        self.standby.pg_ctl_promote()?;
        self.standby
            .wait_for("the promoted standby to leave recovery", WAIT, || {
                self.standby
                    .psql("SELECT pg_is_in_recovery()")
                    .is_ok_and(|in_recovery| in_recovery == "f")
            })
    }

    /// Both servers in one URL, the primary first, for a client that fails over:
    /// `postgres://postgres@127.0.0.1:P1,127.0.0.1:P2/entitle?target_session_attrs=read-write`.
    ///
    /// A client (libpq, tokio-postgres 0.7) tries the hosts in turn and keeps the first
    /// that accepts writes: the primary, or after a fail-over the promoted standby.
    pub fn multi_host_url(&self) -> String {
        format!(
            "postgres://{SUPERUSER}@127.0.0.1:{},127.0.0.1:{}/{DATABASE}?target_session_attrs=read-write",
            self.primary.port(),
            self.standby.port()
        )
    }
}
