//! The writer's batches: a chain stops at its first failure, whatever failed.

use super::*;

/// Writes `key` with its place in the order of writes.
fn write(key: &'static str) -> impl FnMut(&Db) -> Result<()> + Send + 'static {
    move |db| {
        db.prepare_cached(
            "INSERT INTO meta_numbers (key, value) VALUES (?1, (SELECT COUNT(*) FROM meta_numbers))",
        )?
        .execute(params![key])?;
        Ok(())
    }
}

/// The order `keys` were written in (`None` for one never written).
async fn places(store: &Store, keys: &'static [&'static str]) -> Vec<Option<i64>> {
    store
        .run(move |db| {
            let mut places = Vec::new();
            for key in keys {
                places.push(
                    db.prepare_cached("SELECT value FROM meta_numbers WHERE key = ?1")?
                        .query_row(params![key], |r| r.get(0))
                        .optional()?,
                );
            }
            Ok(places)
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn a_chain_stops_at_its_first_failure_a_conflict_too() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store.db")).unwrap();
    // Hold the writer until every job below is queued, so that they make one batch.
    let (go, wait) = std::sync::mpsc::channel::<()>();
    let wait = std::sync::Mutex::new(wait);
    let held = store.submit(move |_| {
        let _ = wait.lock().unwrap().recv();
        Ok(())
    });
    let chain = Chain::new("an earlier job of the chain failed");
    let first = store.submit_keyed(&chain, write("first"));
    // Loses to a concurrent transaction: a job of no chain would run again in the next
    // batch, after the chain's later jobs had run in this one.
    let lost = store.submit_keyed(&chain, |_| -> Result<()> {
        Err(Error::Storage(DbError::Conflict("a deadlock".into())))
    });
    let after = store.submit_keyed(&chain, write("after"));
    let other = store.submit_keyed(&Chain::new("unused"), write("other"));
    go.send(()).unwrap();
    held.await.unwrap();

    first.await.unwrap();
    assert!(matches!(
        lost.await,
        Err(Error::Storage(DbError::Conflict(_)))
    ));
    match after.await {
        Err(Error::FailedPrecondition(m)) => assert_eq!(m, "an earlier job of the chain failed"),
        other => panic!("{other:?}"),
    }
    other.await.unwrap();
    let places = places(&store, &["first", "after", "other"]).await;
    assert_eq!(places, [Some(0), None, Some(1)]);
}

#[tokio::test]
async fn a_job_of_a_failed_chain_never_runs() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("store.db")).unwrap();
    let chain = Chain::new("refused");
    let failed = store.submit_keyed(&chain, |_| -> Result<()> {
        Err(Error::Storage(DbError::Unavailable("down".into())))
    });
    assert!(failed.await.is_err());
    let ran = Arc::new(AtomicBool::new(false));
    let later = {
        let ran = ran.clone();
        store.submit_keyed(&chain, move |db| {
            ran.store(true, Ordering::Relaxed);
            write("later")(db)
        })
    };
    assert!(matches!(later.await, Err(Error::FailedPrecondition(_))));
    assert!(!ran.load(Ordering::Relaxed));
    assert_eq!(places(&store, &["later"]).await, [None]);
}
