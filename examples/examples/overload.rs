//! Two packet threads offer three times the licensed TPS; the gate admits the licence.
//! Halfway through, the licence is raised from 1,000 to 2,000 TPS with no restart.
//!
//! Prints offered vs admitted TPS for every second, then the usage snapshot of the run.
//!
//! `cargo run --release -p entitle-examples --example overload`

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context;
use entitle_engine::{CoarseClock, Gate, Limit, Policy};

const SECONDS: u64 = 6;
const THREADS: u64 = 2;
const OFFERED_TPS: u64 = 3_000;
const LICENSED_TPS: u64 = 1_000;
const RAISED_TPS: u64 = 2_000;

fn main() -> anyhow::Result<()> {
    let mut builder = Gate::builder(CoarseClock::new()?);
    let par_tps = builder.register(
        "PAR-TPS",
        Limit::new(LICENSED_TPS, LICENSED_TPS / 10, Policy::Hard)?,
    )?;
    let events = builder.event_channel();
    let gate = builder.build();
    let _sampler = gate.start_sampler(Duration::from_secs(1))?;

    let stop = Arc::new(AtomicBool::new(false));
    let offered = Arc::new(AtomicU64::new(0));
    let admitted = Arc::new(AtomicU64::new(0));
    let packet_threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let (gate, stop, offered, admitted) = (
                gate.clone(),
                stop.clone(),
                offered.clone(),
                admitted.clone(),
            );
            thread::spawn(move || {
                let mut worker = gate.worker();
                let start = Instant::now();
                let mut sent = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    // Pace this thread's share of the offered load.
                    let due =
                        start.elapsed().as_micros() as u64 * (OFFERED_TPS / THREADS) / 1_000_000;
                    while sent < due {
                        sent += 1;
                        offered.fetch_add(1, Ordering::Relaxed);
                        if worker.check(par_tps).is_admit() {
                            admitted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    thread::sleep(Duration::from_micros(200));
                }
            })
        })
        .collect();

    println!("licensed {LICENSED_TPS} TPS, offered {OFFERED_TPS} TPS from {THREADS} threads");
    println!(
        "{:>6} {:>8} {:>9} {:>7}",
        "second", "offered", "admitted", "limit"
    );
    let (mut last_offered, mut last_admitted) = (0, 0);
    for second in 1..=SECONDS {
        thread::sleep(Duration::from_secs(1));
        let (o, a) = (
            offered.load(Ordering::Relaxed),
            admitted.load(Ordering::Relaxed),
        );
        let limit = gate.limits().limit(par_tps).per_second().unwrap_or(0);
        println!(
            "{second:>6} {:>8} {:>9} {limit:>7}",
            o - last_offered,
            a - last_admitted
        );
        (last_offered, last_admitted) = (o, a);
        if second == SECONDS / 2 {
            gate.set_limit(
                par_tps,
                Limit::new(RAISED_TPS, RAISED_TPS / 10, Policy::Hard)?,
            )?;
            println!("  -- licence raised to {RAISED_TPS} TPS, no restart --");
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in packet_threads {
        t.join()
            .map_err(|_| anyhow::anyhow!("a packet thread panicked"))?;
    }

    let snapshot = gate.snapshot();
    let usage = snapshot.usage("PAR-TPS").context("PAR-TPS is registered")?;
    println!(
        "\nusage snapshot #{} over {:.1} s:",
        snapshot.sequence,
        (snapshot.window_end_nanos - snapshot.window_start_nanos) as f64 / 1e9
    );
    println!(
        "  admitted {}  rejected {}  peak {} TPS  peak offered {} TPS",
        usage.admitted, usage.rejected, usage.peak_tps, usage.peak_offered_tps
    );
    if let Some(h) = &usage.tps_histogram {
        println!(
            "  admitted TPS per second: p50 {}  p99 {}  max {}",
            h.0.value_at_quantile(0.5),
            h.0.value_at_quantile(0.99),
            h.0.max()
        );
    }
    println!(
        "  metered total matches the packet threads' count: {}",
        usage.admitted == admitted.load(Ordering::Relaxed)
    );
    for event in events.try_iter() {
        println!(
            "  event: {} {:?} (offered {} TPS of {})",
            event.tag, event.kind, event.offered_tps, event.licensed_tps
        );
    }
    println!(
        "\nas JSON (the histogram in HdrHistogram's log encoding):\n{}",
        serde_json::to_string_pretty(&snapshot)?
    );
    Ok(())
}
