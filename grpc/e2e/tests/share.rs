//! One licence shared among the packet-server processes attached to one `entitled`, never
//! multiplied by their number: real `entitle-authority` and `entitled` processes, and real
//! attached processes (`e2e-share-load`) offering traffic, each counting what it admitted
//! per wall-clock second, so the seconds of the processes line up.
//!
//! The band per second is the licence's `[0.99 x rate, rate + burst]`. Whole seconds are
//! cut at the same wall-clock boundaries in every process (one machine, one clock); what
//! is left of alignment is a few milliseconds of checks at each boundary, well inside it.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

mod common;
mod harness;

use std::io::{BufRead as _, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use harness::{Authority, Entitled, attached_gate, gate_rate, rate, wait_gate};

const LOAD: &str = env!("CARGO_BIN_EXE_e2e-share-load");
/// PAR-TPS 1 and PAR-ADD-TPS 2: 300 TPS, burst 300.
const SELECT_300: &str = "[agent]\nselection = { \"PAR-TPS\" = 1, \"PAR-ADD-TPS\" = 2 }\n";
const LICENCE: u64 = 300;
/// The licence's burst (the agent's: a tenth of the rate).
const BURST: u64 = 30;

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// An `e2e-share-load` process and the lines it prints.
struct Load {
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    name: String,
}

impl Load {
    fn start(sidecar: &Entitled, name: &str, offered: u64, start: u64, seconds: u64) -> Self {
        let log = std::fs::File::create(sidecar.dir.join(format!("load-{name}.log"))).unwrap();
        let mut child = Command::new(LOAD)
            .args([
                sidecar.url.as_str(),
                "PAR-TPS",
                &offered.to_string(),
                &start.to_string(),
                &seconds.to_string(),
            ])
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let reader = BufReader::new(child.stdout.take().unwrap());
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in reader.lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    return;
                }
            }
        });
        Self {
            child: Some(child),
            lines,
            name: name.to_owned(),
        }
    }

    /// The next line, within `limit`.
    fn line(&self, limit: Duration) -> Option<String> {
        self.lines.recv_timeout(limit).ok()
    }

    fn wait_attached(&self) {
        let line = self.line(Duration::from_secs(30));
        assert_eq!(line.as_deref(), Some("attached"), "load {}", self.name);
    }

    /// Admitted per second index, until `done` or the process ends (bounded by `limit`).
    fn seconds(&self, limit: Duration) -> Vec<(u64, u64, u64)> {
        let deadline = Instant::now() + limit;
        let mut seconds = Vec::new();
        while let Some(line) = self.line(deadline.saturating_duration_since(Instant::now())) {
            if line == "done" {
                break;
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["second", i, "admitted", a, "offered", o] => {
                    seconds.push((i.parse().unwrap(), a.parse().unwrap(), o.parse().unwrap()));
                }
                _ => panic!("load {} said {line:?}", self.name),
            }
        }
        seconds
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill(); // SIGKILL
            let _ = c.wait();
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A registered sidecar licensed for 300 TPS, burst 30.
async fn licensed(dir: &std::path::Path, serial: &str) -> (Authority, Entitled) {
    let authority = Authority::start(dir);
    let token = authority.acme(&[("PAR-TPS", 1), ("PAR-ADD-TPS", 2)]).await;
    let sidecar = Entitled::start(dir, &authority, serial, SELECT_300);
    sidecar.register(token).await;
    let status = sidecar.status().await;
    assert_eq!(rate(&status, "PAR-TPS"), Some(LICENCE));
    let limit = status
        .entitlements
        .iter()
        .find(|e| e.tag == "PAR-TPS")
        .and_then(|e| e.limit)
        .unwrap();
    assert_eq!(limit.burst, BURST);
    (authority, sidecar)
}

/// Admitted per second, summed over `loads` (second index -> sum), and the per-load rows.
fn sum_by_second(rows: &[Vec<(u64, u64, u64)>]) -> std::collections::BTreeMap<u64, u64> {
    let mut sums = std::collections::BTreeMap::new();
    for row in rows {
        for (second, admitted, _) in row {
            *sums.entry(*second).or_insert(0) += admitted;
        }
    }
    sums
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_processes_offered_twice_the_licence_skewed_admit_the_licence_every_second() {
    let dir = tempfile::tempdir().unwrap();
    let (_authority, sidecar) = licensed(dir.path(), "SH1").await;
    let seconds = 8;
    let start = unix_millis() + 4_000;
    let offers = [("a", 420), ("b", 120), ("c", 60)];
    let loads: Vec<Load> = offers
        .iter()
        .map(|(name, offered)| Load::start(&sidecar, name, *offered, start, seconds))
        .collect();
    for load in &loads {
        load.wait_attached();
    }
    assert!(
        unix_millis() < start,
        "the loads attached after the start: raise the lead"
    );
    let limit = Duration::from_secs(seconds + 20);
    let rows: Vec<_> = loads.iter().map(|l| l.seconds(limit)).collect();
    for (row, load) in rows.iter().zip(&loads) {
        assert_eq!(
            row.len() as u64,
            seconds,
            "load {} reported {row:?}",
            load.name
        );
    }
    let sums = sum_by_second(&rows);
    eprintln!("per second, admitted a/b/c and the sum:");
    for second in 0..seconds {
        let each: Vec<u64> = rows.iter().map(|r| r[second as usize].1).collect();
        eprintln!("  {second}: {each:?} = {}", sums[&second]);
    }
    let low = (LICENCE as f64 * 0.99).ceil() as u64;
    for second in 2..seconds {
        let sum = sums[&second];
        assert!(
            (low..=LICENCE + BURST).contains(&sum),
            "second {second}: {sum} admitted in all, not within [{low}, {}]; rows {rows:?}",
            LICENCE + BURST
        );
    }
    // And over the whole run after the first two seconds.
    let total: u64 = (2..seconds).map(|s| sums[&s]).sum();
    let whole = LICENCE * (seconds - 2);
    assert!(
        total * 100 >= whole * 99 && total <= whole + BURST,
        "{total} admitted over {} s, licence {whole}",
        seconds - 2
    );
    // The small gate got what it asked for: water-filling, not an even split.
    for second in 2..seconds {
        let (_, admitted, offered) = rows[2][second as usize];
        assert!(
            admitted + 2 >= offered,
            "c, second {second}: {admitted} of {offered}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_process_keeps_its_share_until_its_lease_runs_out_then_the_others_get_it() {
    let dir = tempfile::tempdir().unwrap();
    let (_authority, sidecar) = licensed(dir.path(), "SH2").await;
    let seconds = 13;
    let start = unix_millis() + 4_000;
    let mut loads: Vec<Load> = ["a", "b", "c"]
        .iter()
        .map(|name| Load::start(&sidecar, name, LICENCE, start, seconds))
        .collect();
    for load in &loads {
        load.wait_attached();
    }
    // Early in second 4, SIGKILL `a`: after it printed second 3 (at 4,000 ms exactly the
    // kill raced that line, and its second 3 went missing).
    let kill_at = start + 4_300;
    tokio::time::sleep(Duration::from_millis(kill_at.saturating_sub(unix_millis()))).await;
    loads[0].kill();
    let limit = Duration::from_secs(seconds + 20);
    let survivors: Vec<_> = loads[1..].iter().map(|l| l.seconds(limit)).collect();
    let killed = loads[0].seconds(Duration::from_secs(1));
    let mut rows = survivors.clone();
    rows.push(killed);
    let sums = sum_by_second(&rows);
    let alive = sum_by_second(&survivors);
    eprintln!("per second, admitted by all / by the survivors: {sums:?} / {alive:?}");
    for (second, sum) in &sums {
        assert!(
            *sum <= LICENCE + BURST,
            "second {second}: {sum} admitted in all"
        );
    }
    // Before the kill every process had its third.
    for second in 2..4 {
        assert!(
            sums[&second] * 100 >= LICENCE * 99,
            "second {second}: {}",
            sums[&second]
        );
    }
    // The killed one's share stays in force for its lease (3 s after its last report, at
    // most 1 s before the kill): the survivors are still held to their two thirds.
    assert!(
        alive[&5] <= LICENCE * 3 / 4,
        "second 5: the survivors admitted {} while the dead one's lease ran",
        alive[&5]
    );
    // Then it is freed: the survivors share the whole licence.
    for second in 9..seconds {
        assert!(
            alive[&second] * 100 >= LICENCE * 99,
            "second {second}: the survivors admitted {} after the lease ran out",
            alive[&second]
        );
    }
    sidecar
        .wait_for("the loads detach", Duration::from_secs(10), |s| {
            s.attached_engines == 0
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lone_attached_process_gets_the_whole_licence() {
    let dir = tempfile::tempdir().unwrap();
    let (_authority, sidecar) = licensed(dir.path(), "SH3").await;
    // In-process: the share is the licence itself, burst and policy included.
    let (gate, _attachment) = attached_gate(&sidecar).await;
    wait_gate(&gate, LICENCE).await;
    let limits = gate.limits();
    let limit = limits.limit(limits.entitlement("PAR-TPS").unwrap());
    assert_eq!(limit.burst(), Some(BURST));
    drop(_attachment);

    // A real process offered twice the licence admits it, every second after the first two
    // (the in-process gate's share is freed once its lease runs out, 3 s).
    tokio::time::sleep(Duration::from_secs(4)).await;
    let seconds = 6;
    let start = unix_millis() + 3_000;
    let load = Load::start(&sidecar, "lone", 2 * LICENCE, start, seconds);
    load.wait_attached();
    let row = load.seconds(Duration::from_secs(seconds + 20));
    eprintln!("lone: {row:?}");
    assert_eq!(row.len() as u64, seconds);
    let low = (LICENCE as f64 * 0.99).ceil() as u64;
    for (second, admitted, _) in &row[2..] {
        assert!(
            (low..=LICENCE + BURST).contains(admitted),
            "second {second}: {admitted}"
        );
    }
}

/// The sidecar's store stalled for longer than a lease (another writer holds the database
/// for 4 s, as a disk that stalls would): the sidecar's tasks that wait on the store must
/// not hold up the ones that answer an attached gate's reports, or the gate closes its
/// share. A command that writes the store and sixteen calls that read it wait meanwhile,
/// more than the sidecar's runtime has workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_stalled_past_the_lease_costs_no_attached_gate_its_share() {
    let dir = tempfile::tempdir().unwrap();
    let (_authority, sidecar) = licensed(dir.path(), "SH5").await;
    let (gate, _attachment) = attached_gate(&sidecar).await;
    wait_gate(&gate, LICENCE).await;

    let database = sidecar.dir.join("data").join("entitled.db");
    let (held, holding) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        let mut conn = rusqlite::Connection::open(database).unwrap();
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .unwrap();
        held.send(()).unwrap();
        std::thread::sleep(Duration::from_secs(4));
        tx.rollback().unwrap();
    });
    holding.recv().unwrap();
    // A command that writes the store (the call home's proxy set to none, as it is), and
    // calls that read it, all waiting behind the other writer.
    let mut writer = sidecar.client().await;
    let writer = tokio::spawn(async move {
        writer
            .set_call_home_proxy(entitle_proto::pb::SetCallHomeProxyCommand { url: String::new() })
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut readers = Vec::new();
    for _ in 0..16 {
        let mut client = sidecar.client().await;
        readers.push(tokio::spawn(async move {
            client
                .get_recent_usage(entitle_proto::pb::GetRecentUsageRequest { limit: 1 })
                .await
        }));
    }
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        assert_eq!(
            gate_rate(&gate),
            Some(LICENCE),
            "the attached gate closed its share while the store was stalled"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    holder.join().unwrap();
    writer.await.unwrap().unwrap();
    for reader in readers {
        reader.await.unwrap().unwrap();
    }
}

/// With engines attached, each gate's own usage levels would measure its share; the
/// operator's are the licence's: every gate's demand together, against the licence.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_levels_with_engines_attached_are_the_whole_licences() {
    let dir = tempfile::tempdir().unwrap();
    let (_authority, sidecar) = licensed(dir.path(), "SH4").await;
    let (first, _a) = attached_gate(&sidecar).await;
    let (second, _b) = attached_gate(&sidecar).await;
    // Two gates offered far beyond the licence, for a few demand reports.
    let both = tokio::join!(
        harness::traffic_for(&first, Duration::from_secs(4)),
        harness::traffic_for(&second, Duration::from_secs(4)),
    );
    assert!(both.0.rejected > 0 && both.1.rejected > 0, "{both:?}");
    // Then idle: the demand falls to nothing and the episode ends.
    let mut client = sidecar.client().await;
    let start = Instant::now();
    let usage = loop {
        let events = client
            .get_event_log(entitle_proto::pb::GetEventLogRequest { limit: 500 })
            .await
            .unwrap()
            .into_inner()
            .events;
        let usage: Vec<_> = events.into_iter().filter(|e| e.kind == "usage").collect();
        if usage.iter().any(|e| e.message.contains("fell below")) {
            break usage;
        }
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "no recovery: {usage:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    for level in [80, 90, 100] {
        assert!(
            usage.iter().any(|e| e
                .message
                .contains(&format!("crossed {level}% of the licence"))),
            "{usage:#?}"
        );
    }
    // Every figure is against the licence, never against a gate's share of it.
    let of_licence = format!("of {LICENCE} TPS)");
    assert!(
        usage.iter().all(|e| e.message.contains(&of_licence)),
        "{usage:#?}"
    );
    // One episode: each level once.
    let crossed_100 = usage
        .iter()
        .filter(|e| e.message.contains("crossed 100%"))
        .count();
    assert_eq!(crossed_100, 1, "{usage:#?}");
}
