//! Grouped work: a run of items queued together runs in one call, and when that call
//! fails nothing it wrote is kept and each item runs alone.

#![allow(clippy::unwrap_used)]

use super::*;

/// Writes its key into `meta_numbers` with the number of items it ran with.
struct Note {
    key: &'static str,
    /// Makes the run it is part of fail after writing.
    spoils_the_run: bool,
}

fn note(db: &Db, key: &str, run: usize) -> Result<()> {
    db.execute(
        "INSERT INTO meta_numbers (key, value) VALUES (?1, ?2)",
        params![key, run],
    )?;
    Ok(())
}

impl Grouped for Note {
    type Output = usize;

    fn run_one(&self, db: &Db) -> Result<usize> {
        note(db, self.key, 1)?;
        Ok(1)
    }

    fn run_all(db: &Db, items: &[&Self]) -> Result<Vec<Result<usize>>> {
        for item in items {
            note(db, item.key, items.len())?;
        }
        if items.iter().any(|item| item.spoils_the_run) {
            return Err(Error::Internal("this run fails".into()));
        }
        Ok(items.iter().map(|_| Ok(items.len())).collect())
    }
}

/// Queues `notes` while the writer is held, so that they form one run; their answers, and
/// what `meta_numbers` holds afterwards.
async fn run_held(notes: Vec<Note>) -> (Vec<usize>, Vec<(String, i64)>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("a.db")).unwrap();
    let (started, writer_held) = std::sync::mpsc::channel();
    let (release, gate) = std::sync::mpsc::channel::<()>();
    let held = store.submit(move |_| {
        let _ = started.send(());
        let _ = gate.recv();
        Ok(())
    });
    let held = tokio::spawn(held);
    writer_held.recv().unwrap();
    let chain = Chain::new("unused");
    let answers: Vec<_> = notes
        .into_iter()
        .map(|n| store.submit_grouped(&chain, n))
        .collect();
    release.send(()).unwrap();
    held.await.unwrap().unwrap();
    let mut ran = Vec::new();
    for answer in answers {
        ran.push(answer.await.unwrap());
    }
    let stored = store
        .run(|db| {
            Ok(db
                .prepare_cached("SELECT key, value FROM meta_numbers ORDER BY key")?
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<db::Result<Vec<_>>>()?)
        })
        .await
        .unwrap();
    (ran, stored)
}

fn notes(spoiler: Option<&'static str>) -> Vec<Note> {
    ["a", "b", "c"]
        .into_iter()
        .map(|key| Note {
            key,
            spoils_the_run: spoiler == Some(key),
        })
        .collect()
}

#[tokio::test]
async fn items_queued_together_run_in_one_call() {
    let (ran, stored) = run_held(notes(None)).await;
    assert_eq!(ran, [3, 3, 3]);
    assert_eq!(stored, [("a".into(), 3), ("b".into(), 3), ("c".into(), 3)]);
}

#[tokio::test]
async fn a_failed_run_keeps_nothing_and_each_item_runs_alone() {
    // Had the failed run's rows stayed, the items' own inserts would break the key.
    let (ran, stored) = run_held(notes(Some("c"))).await;
    assert_eq!(ran, [1, 1, 1]);
    assert_eq!(stored, [("a".into(), 1), ("b".into(), 1), ("c".into(), 1)]);
}
