//! A primary with a synchronous standby: rows reach the standby, and after the primary is
//! killed and the standby promoted, the multi-host URL reaches the promoted standby with
//! every committed row, and it takes writes.

use std::time::{Duration, Instant};

use entitle_pgtest::{Cluster, Pair};

/// Polls `sql` on `cluster` until it prints `expected` (at most 10 s).
fn eventually(cluster: &Cluster, sql: &str, expected: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let got = cluster.psql(sql);
        if got.as_deref().ok() == Some(expected) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{sql} gave {got:?}, not {expected:?}\n{}",
            cluster.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

async fn connect(url: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

#[tokio::test]
async fn fail_over_to_the_promoted_standby() {
    let started = Instant::now();
    let pair = Pair::start().expect("a pair starts");
    eprintln!("Pair::start took {:?}", started.elapsed());
    let (primary, standby) = (pair.primary(), pair.standby());
    assert_ne!(primary.port(), standby.port());
    assert_eq!(
        primary
            .psql("select application_name, sync_state from pg_stat_replication")
            .expect("replication"),
        "standby1|sync"
    );
    assert_eq!(standby.psql("select pg_is_in_recovery()").expect("r"), "t");

    // The multi-host URL reaches the primary while it runs.
    let url = pair.multi_host_url();
    assert_eq!(
        url,
        format!(
            "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/entitle?target_session_attrs=read-write",
            primary.port(),
            standby.port()
        )
    );
    let client = connect(&url).await.expect("connect to the primary");
    let port: i32 = client
        .query_one("select inet_server_port()", &[])
        .await
        .expect("port")
        .get(0);
    assert_eq!(port, i32::from(primary.port()));
    client
        .batch_execute("create table t (n int); insert into t values (1), (2)")
        .await
        .expect("commit on the primary");
    drop(client);

    // Committed on the primary, so flushed on the standby; visible once replayed.
    eventually(standby, "select sum(n) from t", "3");
    assert!(
        standby.psql("insert into t values (9)").is_err(),
        "a standby took a write"
    );

    // One more commit, acknowledged just before the crash.
    primary
        .psql("insert into t values (4)")
        .expect("last commit");
    primary.kill().expect("kill the primary");

    // The primary is gone and the standby is read-only: no host takes writes.
    assert!(
        connect(&url).await.is_err(),
        "target_session_attrs=read-write accepted the standby before promotion"
    );

    let promoting = Instant::now();
    pair.promote_standby().expect("promote");
    eprintln!("promote_standby took {:?}", promoting.elapsed());

    let client = connect(&url)
        .await
        .expect("connect to the promoted standby");
    let row = client
        .query_one("select inet_server_port(), pg_is_in_recovery()", &[])
        .await
        .expect("where");
    assert_eq!(row.get::<_, i32>(0), i32::from(standby.port()));
    assert!(!row.get::<_, bool>(1));
    let sum: i64 = client
        .query_one("select sum(n) from t", &[])
        .await
        .expect("sum")
        .get(0);
    assert_eq!(sum, 7, "a commit acknowledged by the primary was lost");
    // Writes commit (no synchronous standby is waited for on the new primary).
    let written = tokio::time::timeout(
        Duration::from_secs(10),
        client.execute("insert into t values (10)", &[]),
    )
    .await
    .expect("a write on the promoted standby hangs")
    .expect("insert");
    assert_eq!(written, 1);
    assert_eq!(standby.psql("select sum(n) from t").expect("sum"), "17");
}
