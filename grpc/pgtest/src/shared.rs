//! One cluster per test process, for suites that run on SQLite or PostgreSQL by
//! `ENTITLE_TEST_STORE`.

use std::io;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::{Cluster, SUPERUSER};

/// A fresh database's URL when `ENTITLE_TEST_STORE=postgres`, `None` when the variable is
/// unset or `sqlite`; an error for any other value or when the cluster cannot start.
///
/// The first call starts a cluster for the whole test process (a static is never dropped,
/// so a watchdog process kills the server and removes its directory once this process
/// has ended); every call creates a database of its own in it.
pub fn database_for_tests() -> io::Result<Option<String>> {
    match std::env::var("ENTITLE_TEST_STORE").as_deref() {
        Err(_) | Ok("sqlite") => return Ok(None),
        Ok("postgres") => {}
        Ok(other) => {
            return Err(io::Error::other(format!(
                "ENTITLE_TEST_STORE is sqlite or postgres, not {other:?}"
            )));
        }
    }
    static CLUSTER: OnceLock<Mutex<Option<Cluster>>> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let slot = CLUSTER.get_or_init(|| Mutex::new(None));
    let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
    if slot.is_none() {
        let cluster = Cluster::start()?;
        watch(&cluster)?;
        *slot = Some(cluster);
    }
    let cluster = slot
        .as_ref()
        .ok_or_else(|| io::Error::other("no cluster"))?;
    let name = format!("entitle_{}", NEXT.fetch_add(1, Ordering::Relaxed));
    cluster.psql(&format!("CREATE DATABASE {name}"))?;
    Ok(Some(format!(
        "postgres://{SUPERUSER}@127.0.0.1:{}/{name}",
        cluster.port()
    )))
}

/// Starts a process that waits for this one to end, then kills the cluster's server and
/// removes its directory.
fn watch(cluster: &Cluster) -> io::Result<()> {
    let data = cluster.data_dir();
    let top = data.parent().unwrap_or(data);
    let script = format!(
        "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; \
         kill -9 \"$(head -n 1 '{data}/postmaster.pid')\" 2>/dev/null; sleep 1; rm -rf '{top}'",
        pid = std::process::id(),
        data = data.display(),
        top = top.display(),
    );
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map(drop)
}
