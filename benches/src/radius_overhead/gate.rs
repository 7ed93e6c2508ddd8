//! The gate's cost on a saturated server: the example RADIUS server of `examples/` (its
//! library, `entitle_examples::radius_server`, in this process on a runtime of its own with
//! one packet task per core, as the `radius-server` binary runs it) with the gate in the
//! packet path and with none (`--no-gate`: `licence: None`, no check at all, not an
//! unlimited licence).
//!
//! The gate's licence (1,000,000 TPS) is far above what the server can answer, so it
//! admits everything and only its cost shows. Saturation: the load generator asks for more
//! than the server answers (1.3 times the best second of a probe of the server without the
//! gate), so the source sockets' 2,048 identifiers are all in flight and throughput is what
//! the CPU allows; latency is then the in-flight window over the throughput (Little's law)
//! plus the service time. Rounds alternate, the order rotating; each round runs the two
//! back to back, so the ratio of a round compares the two on the same machine at the same
//! moment, and each figure is the median of the rounds' ratios:
//!
//! - `ratio gate_overhead_tput`: answered/s without the gate over answered/s with it (goal
//!   <= 1.01);
//! - `ratio gate_overhead_p99`: p99 latency with the gate over without (goal <= 1.02).

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use entitle_examples::radius_server::{
    Clients, DEFAULT_SOCKET_BUFFER, Licensed, OverLimit, Server, ServerConfig, Users,
};

use super::{Options, median, rotated};
use crate::radius_load::{self, LoadReport, LoadSpec, Second};

/// The gate's licence: far above what two cores answer, so nothing is refused.
const LICENCE_TPS: u64 = 1_000_000;
/// The same tenth of a second of burst as the example's demo mode.
const LICENCE_BURST: u64 = LICENCE_TPS / 10;
/// The sample files of the example server, and the sample user's password.
const USERS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/radius/users");
const CLIENTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/radius/clients");
const SECRET: &[u8] = b"testing123";
/// Source sockets: 8 x 256 identifiers in flight at most.
const SOCKETS: usize = 8;
/// How far above the probed throughput the rounds ask.
const OVERDRIVE: f64 = 1.3;

/// One of the two servers compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    Gate,
    NoGate,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Gate => "with the gate",
            Variant::NoGate => "without the gate",
        }
    }

    fn file(self) -> &'static str {
        match self {
            Variant::Gate => "radius-gate-saturated-with.svg",
            Variant::NoGate => "radius-gate-saturated-without.svg",
        }
    }
}

/// What one round measured.
struct Round {
    /// Answered per second over the seconds after the first (the window filling).
    answered_per_s: f64,
    p99_us: u64,
}

/// The run's seconds after the first (the window filling) and before the last (cut short
/// by the end of sending, when there are more); `None` when that leaves none.
fn steady(report: &LoadReport) -> Option<&[Second]> {
    let steady = report.seconds.get(1..)?;
    let steady = if steady.len() > 1 {
        &steady[..steady.len() - 1]
    } else {
        steady
    };
    (!steady.is_empty()).then_some(steady)
}

/// Answered per second over the steady seconds.
fn steady_answered_per_s(report: &LoadReport) -> Option<f64> {
    let steady = steady(report)?;
    Some(steady.iter().map(|s| s.answered).sum::<u64>() as f64 / steady.len() as f64)
}

/// The most answered in one steady second: what the server can do when nothing else on
/// the machine gets in its way.
fn best_second(report: &LoadReport) -> Option<u64> {
    steady(report)?.iter().map(|s| s.answered).max()
}

/// Both servers, on one runtime (only the one under load has work), until dropped.
struct Servers {
    runtime: tokio::runtime::Runtime,
    gate: SocketAddr,
    no_gate: SocketAddr,
    stop: Vec<tokio::sync::oneshot::Sender<()>>,
    _licensed: Licensed,
}

impl Servers {
    /// Both servers in one runtime, the one with the gate bound and spawned first when
    /// `gate_first`. With one pair for all rounds, whichever was bound first answered a
    /// few percent more in every round (seven rounds one way, three the other), so each
    /// round starts a fresh pair, alternating the order, and warms both first.
    fn start(gate_first: bool) -> anyhow::Result<Servers> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cores)
            .enable_all()
            .build()
            .context("cannot start the server's runtime")?;
        let users = Path::new(USERS);
        let clients = Path::new(CLIENTS);
        let (licensed, gate, no_gate, stop) = runtime.block_on(async {
            let licensed = Licensed::standalone(LICENCE_TPS, LICENCE_BURST)?;
            let mut stop = Vec::new();
            let mut addresses = Vec::new();
            let order = if gate_first {
                [Some(licensed.licence.clone()), None]
            } else {
                [None, Some(licensed.licence.clone())]
            };
            for licence in order {
                let server = Server::bind(ServerConfig {
                    listen: "127.0.0.1:0".parse()?,
                    clients: Clients::read(clients)?,
                    users: Users::read(users)?,
                    licence,
                    over_limit: OverLimit::Drop,
                    workers: cores,
                    socket_buffer: DEFAULT_SOCKET_BUFFER,
                })?;
                addresses.push(server.local_addr()?);
                let (tx, rx) = tokio::sync::oneshot::channel::<()>();
                stop.push(tx);
                tokio::spawn(server.serve(async {
                    let _ = rx.await;
                }));
            }
            let (gate, no_gate) = if gate_first {
                (addresses[0], addresses[1])
            } else {
                (addresses[1], addresses[0])
            };
            anyhow::Ok((licensed, gate, no_gate, stop))
        })?;
        Ok(Servers {
            runtime,
            gate,
            no_gate,
            stop,
            _licensed: licensed,
        })
    }

    fn address(&self, variant: Variant) -> SocketAddr {
        match variant {
            Variant::Gate => self.gate,
            Variant::NoGate => self.no_gate,
        }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        for stop in self.stop.drain(..) {
            let _ = stop.send(());
        }
        // Let the serve tasks see it before the runtime goes.
        self.runtime
            .block_on(async { tokio::time::sleep(Duration::from_millis(50)).await });
    }
}

fn spec(target: SocketAddr, rate: u64, duration: Duration) -> LoadSpec {
    let mut spec = LoadSpec::new(target, SECRET, rate, duration);
    spec.sockets = SOCKETS;
    spec.timeout = Duration::from_secs(1);
    spec.user = "bob".into();
    spec.password = "builder".into();
    spec
}

/// Runs the comparison and prints its values and ratios.
pub fn run(opts: &Options) -> anyhow::Result<()> {
    let seconds = opts.pick(4, 2);
    println!("# gate: the example RADIUS server saturated, with the gate and without");
    let servers = Servers::start(true)?;

    // The probe: how much the server without the gate answers when asked for far too much;
    // its best second, so that a busy moment on the machine does not leave the rounds short
    // of saturation.
    let probe = radius_load::run(&spec(servers.no_gate, 200_000, Duration::from_secs(4)))?;
    let capacity = best_second(&probe).context("the probe was too short to measure anything")?;
    anyhow::ensure!(
        capacity > 100,
        "the server without the gate answered only {capacity}/s: is something wrong?"
    );
    let rate = (capacity as f64 * OVERDRIVE) as u64;
    eprintln!(
        "gate: the server answers up to {capacity}/s; each round asks {rate}/s for {seconds} s"
    );
    println!("value gate_probe_answered_per_s {capacity}");
    println!("value gate_asked_per_s {rate}");

    let variants = [Variant::Gate, Variant::NoGate];
    let mut rounds: Vec<(Variant, Round)> = Vec::new();
    let mut last: Vec<(Variant, LoadReport)> = Vec::new();
    drop(servers);
    for round in 0..opts.rounds {
        let servers = Servers::start(round % 2 == 0)?;
        // A fresh server's first second is slower (its pages, its caches): warm both.
        for variant in variants {
            radius_load::run(&spec(
                servers.address(variant),
                rate,
                Duration::from_secs(1),
            ))?;
        }
        for variant in rotated(&variants, round) {
            let report = radius_load::run(&spec(
                servers.address(variant),
                rate,
                Duration::from_secs(seconds),
            ))?;
            let answered_per_s = steady_answered_per_s(&report)
                .context("a round was too short to measure anything")?;
            let p99_us = report.latency.value_at_quantile(0.99);
            if report.no_identifier == 0 {
                eprintln!(
                    "gate: warning: round {} {} was not saturated (every request had an \
                     identifier): the server kept up with {rate}/s",
                    round + 1,
                    variant.name()
                );
            }
            eprintln!(
                "gate: round {} {:<17} answered {answered_per_s:>8.0}/s  p99 {p99_us:>6} us  \
                 (sent {}, unanswered {}, no identifier free {})",
                round + 1,
                variant.name(),
                report.offered,
                report.dropped,
                report.no_identifier
            );
            rounds.push((
                variant,
                Round {
                    answered_per_s,
                    p99_us,
                },
            ));
            last.retain(|(v, _)| *v != variant);
            last.push((variant, report));
        }
        drop(servers);
    }

    let of = |variant: Variant, f: fn(&Round) -> f64| -> Vec<f64> {
        rounds
            .iter()
            .filter(|(v, _)| *v == variant)
            .map(|(_, r)| f(r))
            .collect()
    };
    let tput = |r: &Round| r.answered_per_s;
    let p99 = |r: &Round| r.p99_us as f64;
    let (tput_with, tput_without) = (of(Variant::Gate, tput), of(Variant::NoGate, tput));
    let (p99_with, p99_without) = (of(Variant::Gate, p99), of(Variant::NoGate, p99));
    // Each round's two runs are back to back, so their ratio sees the same machine; the
    // median of those ratios is the figure, the ratio of the medians is printed beside it.
    let paired = |num: &[f64], den: &[f64]| {
        let ratios: Vec<f64> = num.iter().zip(den).map(|(n, d)| n / d).collect();
        median(&ratios).unwrap_or(f64::NAN)
    };
    let mid = |values: &[f64]| median(values).unwrap_or(f64::NAN);
    println!("value gate_rounds {}", opts.rounds);
    println!("value gate_answered_per_s_with {:.0}", mid(&tput_with));
    println!(
        "value gate_answered_per_s_without {:.0}",
        mid(&tput_without)
    );
    println!("value gate_p99_us_with {:.0}", mid(&p99_with));
    println!("value gate_p99_us_without {:.0}", mid(&p99_without));
    println!(
        "value gate_overhead_tput_of_medians {:.3}",
        mid(&tput_without) / mid(&tput_with)
    );
    println!(
        "value gate_overhead_p99_of_medians {:.3}",
        mid(&p99_with) / mid(&p99_without)
    );
    println!(
        "ratio gate_overhead_tput {:.3}",
        paired(&tput_without, &tput_with)
    );
    println!(
        "ratio gate_overhead_p99 {:.3}",
        paired(&p99_with, &p99_without)
    );

    if let Some(dir) = &opts.picture_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot make the picture directory {}", dir.display()))?;
        for (variant, report) in &last {
            let path = dir.join(variant.file());
            radius_load::write_svg(
                report,
                &format!(
                    "example server {}, {rate}/s asked (saturated), last round",
                    variant.name()
                ),
                &path,
            )?;
            eprintln!("gate: picture {}", path.display());
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(answered: &[u64]) -> LoadReport {
        LoadReport {
            asked_rate: 1,
            offered: 0,
            send_time: Duration::from_secs(1),
            answered: 0,
            dropped: 0,
            invalid: 0,
            no_identifier: 0,
            accepts: 0,
            rejects: 0,
            latency: hdrhistogram::Histogram::new(3).expect("a histogram"),
            seconds: answered
                .iter()
                .map(|&answered| Second {
                    answered,
                    ..Second::default()
                })
                .collect(),
        }
    }

    #[test]
    fn the_steady_rate_leaves_out_the_first_and_last_seconds() {
        assert_eq!(steady_answered_per_s(&report(&[])), None);
        assert_eq!(steady_answered_per_s(&report(&[5])), None);
        assert_eq!(steady_answered_per_s(&report(&[5, 100])), Some(100.0));
        assert_eq!(
            steady_answered_per_s(&report(&[5, 100, 300, 7])),
            Some(200.0)
        );
        assert_eq!(best_second(&report(&[500, 100, 300, 700])), Some(300));
        assert_eq!(best_second(&report(&[500])), None);
    }
}
