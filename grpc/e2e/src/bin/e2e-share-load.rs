//! A stand-in packet server for the end-to-end tests of a licence shared among attached
//! gates (not a program users run): a gate with one entitlement attached to an `entitled`,
//! offered a steady rate from one thread, counting what it admitted per wall-clock second.
//!
//! `e2e-share-load <sidecar address> <tag> <offered per second> <start, unix ms> <seconds>`
//!
//! It prints `attached` once the sidecar's first share is applied, then, from `start` on,
//! one line per whole second since `start`: `second I admitted A offered O`, and `done`
//! after the last. Seconds are counted on the wall clock so that several processes line up.
//! Offers keep to the schedule (a late thread catches up), so each second is offered the
//! rate, give or take one.

use std::io::Write as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use entitle_engine::{CoarseClock, Gate, Limit};
use entitle_sidecar::{AttachOptions, Attachment};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn unix_millis() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, tag, rate, start, seconds] = args.as_slice() else {
        anyhow::bail!(
            "usage: e2e-share-load <sidecar address> <tag> <offered per second> <start unix ms> <seconds>"
        );
    };
    let rate: u64 = rate.parse().context("the offered rate")?;
    let start: u64 = start.parse().context("the start")?;
    let seconds: u64 = seconds.parse().context("the seconds")?;
    let runtime = tokio::runtime::Runtime::new()?;
    let _guard = runtime.enter();

    // Closed until the sidecar's share arrives: nothing is admitted on the host's say-so.
    let mut builder = Gate::builder(CoarseClock::new()?);
    let entitlement = builder.register(tag, Limit::closed())?;
    let gate = builder.build();
    let attachment = Attachment::start(Arc::clone(&gate), url, AttachOptions::default())?;
    let mut waited = 0;
    while attachment.limit_tables() == 0 {
        anyhow::ensure!(waited < 400, "no share from the sidecar within 20 s");
        std::thread::sleep(Duration::from_millis(50));
        waited += 1;
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "attached")?;
    out.flush()?;

    while unix_millis() < start {
        std::thread::sleep(Duration::from_millis(1));
    }
    let end = start + seconds * 1000;
    let mut worker = gate.worker();
    let (mut offered, mut second, mut admitted_in, mut offered_in) = (0u64, 0u64, 0u64, 0u64);
    loop {
        let now = unix_millis();
        let this = now.saturating_sub(start) / 1000;
        if this != second {
            writeln!(
                out,
                "second {second} admitted {admitted_in} offered {offered_in}"
            )?;
            out.flush()?;
            (second, admitted_in, offered_in) = (this, 0, 0);
        }
        if now >= end {
            break;
        }
        let due = rate * (now - start) / 1000;
        while offered < due {
            offered += 1;
            offered_in += 1;
            admitted_in += u64::from(worker.check(entitlement).is_admit());
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    writeln!(out, "done")?;
    out.flush()?;
    drop(worker);
    drop(attachment);
    Ok(())
}
