//! One cluster at a time: it answers, its URL works with tokio-postgres, and committed rows
//! survive a clean stop and a SIGKILL.

use std::time::Instant;

use entitle_pgtest::Cluster;

/// The live processes working in `dir` (every server process works in its data directory).
fn processes_in(dir: &std::path::Path) -> usize {
    let dir = dir.canonicalize().expect("data dir");
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(Result::ok)
        .filter(|entry| {
            let path = entry.path();
            std::fs::read_link(path.join("cwd")).is_ok_and(|cwd| cwd == dir)
                && std::fs::read_to_string(path.join("stat")).is_ok_and(|stat| {
                    !stat
                        .rsplit(')')
                        .next()
                        .unwrap_or("")
                        .trim_start()
                        .starts_with('Z')
                })
        })
        .count()
}

fn start() -> Cluster {
    let started = Instant::now();
    let pg = Cluster::start().expect("a cluster starts");
    eprintln!("Cluster::start took {:?}", started.elapsed());
    pg
}

#[test]
fn psql_answers() {
    let pg = start();
    assert_eq!(pg.psql("select 1").expect("select 1"), "1");
    assert_eq!(
        pg.psql("select current_database(), current_user")
            .expect("who"),
        "entitle|postgres"
    );
    // Several statements, several rows, and fsync left on.
    let out = pg
        .psql("create table t (n int); insert into t values (1), (2); select n from t order by n; show fsync")
        .expect("a script");
    assert_eq!(out, "1\n2\non");
}

#[test]
fn psql_reports_errors() {
    let pg = start();
    let err = pg
        .psql("select * from no_such_table")
        .expect_err("must fail");
    assert!(err.to_string().contains("no_such_table"), "{err}");
    // ON_ERROR_STOP: nothing after the failing statement runs.
    pg.psql("create table t (n int)").expect("create");
    pg.psql("insert into t values (1); select 1/0; insert into t values (2)")
        .expect_err("division by zero");
    assert_eq!(pg.psql("select count(*) from t").expect("count"), "1");
}

#[tokio::test]
async fn the_url_works_with_tokio_postgres() {
    let pg = start();
    assert!(pg.url().starts_with("postgres://postgres@127.0.0.1:"));
    let (client, connection) = tokio_postgres::connect(&pg.url(), tokio_postgres::NoTls)
        .await
        .expect("connect through the url");
    let connection = tokio::spawn(connection);
    let row = client
        .query_one("select inet_server_port(), current_database()", &[])
        .await
        .expect("query");
    assert_eq!(row.get::<_, i32>(0), i32::from(pg.port()));
    assert_eq!(row.get::<_, String>(1), "entitle");
    drop(client);
    connection.await.expect("task").expect("connection");
}

#[test]
fn stop_and_start_again_keep_rows() {
    let pg = start();
    pg.psql("create table t (n int); insert into t values (1), (2), (3)")
        .expect("insert");
    pg.stop().expect("stop");
    assert!(pg.psql("select 1").is_err(), "a stopped server answers");
    pg.stop().expect("a second stop does nothing");
    pg.start_again().expect("start again");
    assert_eq!(pg.psql("select sum(n) from t").expect("sum"), "6");
}

#[test]
fn kill_then_start_again_recovers_committed_rows() {
    let pg = start();
    pg.psql("create table t (n int)").expect("create");
    // Committed one by one (psql runs each statement in its own transaction), so that
    // each of them is acknowledged, hence durable, before the kill.
    let inserts: String = (1..=100)
        .map(|n| format!("insert into t values ({n});\n"))
        .collect();
    pg.psql(&inserts).expect("insert");

    // The postmaster, its background processes, and a session's backend.
    let mut session = std::process::Command::new("psql")
        .args(["-X", "-q", "-c", "select pg_sleep(60)", &pg.url()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("a long session");
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    while pg.psql("select count(*) from pg_stat_activity where query like '%pg_sleep(60)%' and pid <> pg_backend_pid()").expect("activity") != "1" {
        assert!(Instant::now() < deadline, "the session did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(processes_in(pg.data_dir()) > 5);

    let killed = Instant::now();
    pg.kill().expect("kill");
    eprintln!("kill took {:?}", killed.elapsed());
    assert_eq!(
        processes_in(pg.data_dir()),
        0,
        "a server process outlived the kill"
    );
    assert!(
        !session.wait().expect("psql").success(),
        "the session survived"
    );
    assert!(pg.psql("select 1").is_err(), "a killed server answers");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", pg.port())).is_err(),
        "the port still accepts after kill"
    );

    let restarted = Instant::now();
    pg.start_again().expect("start again after the kill");
    eprintln!("start_again after kill took {:?}", restarted.elapsed());
    assert!(
        pg.log().contains("database system was interrupted"),
        "the server was not recovering from a crash:\n{}",
        pg.log()
    );
    assert_eq!(
        pg.psql("select count(*), sum(n) from t").expect("count"),
        "100|5050"
    );
    // And it goes on working.
    pg.psql("insert into t values (0)")
        .expect("insert after recovery");
}

#[test]
fn two_clusters_at_once_get_different_ports() {
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(start);
        let b = s.spawn(start);
        (a.join().expect("a"), b.join().expect("b"))
    });
    assert_ne!(a.port(), b.port());
    assert_ne!(a.data_dir(), b.data_dir());
    a.psql("create table only_a (n int)").expect("create on a");
    assert_eq!(
        b.psql("select count(*) from pg_tables where tablename = 'only_a'")
            .expect("look on b"),
        "0"
    );
}

#[test]
fn drop_removes_the_directory_and_stops_the_server() {
    let pg = start();
    let port = pg.port();
    let dir = pg
        .data_dir()
        .parent()
        .expect("the data dir is in the cluster's dir")
        .to_owned();
    assert!(dir.exists());
    drop(pg);
    assert!(!dir.exists(), "{} is still there", dir.display());
    assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
}

#[test]
fn handles_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Cluster>();
    send_sync::<entitle_pgtest::Pair>();
}
