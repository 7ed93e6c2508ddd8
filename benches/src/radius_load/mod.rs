//! An open-loop UDP RADIUS load generator that holds an exact offered rate.
//!
//! Open loop: requests leave on a schedule (request `i` is due `i / rate` seconds after the
//! start) whatever the server answers, so a slow server shows as latency and drops, not as
//! a lower offered rate (what a closed-loop client such as `radclient -n` reports). A
//! single sender thread sends every request that is due, then sleeps until the next one;
//! the offered rate is therefore exact on average, with bursts no longer than one sleep.
//! Requests are spread over several source sockets (each with 256 RADIUS identifiers), one
//! receiver thread per socket matches answers to requests by identifier, checks the
//! Response Authenticator and Message-Authenticator against the request, and records the
//! latency in an HDR histogram, per second of the run and in all. An identifier whose
//! request was not answered within the timeout counts as dropped and is reused.
//!
//! Access-Requests carry User-Name, a hidden User-Password (PAP), NAS-IP-Address and a
//! Message-Authenticator; Accounting-Requests (`Kind::Accounting`) carry User-Name,
//! Acct-Status-Type Interim-Update and Acct-Session-Id. Request Authenticators come from a
//! per-run random seed and a counter (unique, not secret: this is a test client).

mod picture;

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use entitle_radius::attribute::{
    ACCT_SESSION_ID, ACCT_STATUS_TYPE, Attribute, NAS_IP_ADDRESS, USER_NAME,
};
use entitle_radius::{Code, Packet, Policy, RequestContext};
use hdrhistogram::Histogram;
use parking_lot::Mutex;

pub use picture::write_svg;

/// What kind of request to send.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Access-Request with PAP.
    Access,
    /// Accounting-Request (Interim-Update).
    Accounting,
}

/// One run's parameters.
#[derive(Clone, Debug)]
pub struct LoadSpec {
    /// The server.
    pub target: SocketAddr,
    /// The shared secret.
    pub secret: Vec<u8>,
    /// Requests per second asked.
    pub rate: u64,
    /// How long to send.
    pub duration: Duration,
    /// Source sockets (each holds at most 256 requests in flight).
    pub sockets: usize,
    /// How long an answer may take before the request counts as dropped.
    pub timeout: Duration,
    /// Access or accounting.
    pub kind: Kind,
    /// User-Name and User-Password sent.
    pub user: String,
    /// The password.
    pub password: String,
    /// Show a progress bar on stderr (runs over a few seconds, on a terminal).
    pub progress: bool,
}

impl LoadSpec {
    /// A spec with the defaults: 4 sockets, 1 s timeout, Access-Requests as `bob`.
    pub fn new(target: SocketAddr, secret: &[u8], rate: u64, duration: Duration) -> Self {
        LoadSpec {
            target,
            secret: secret.to_vec(),
            rate,
            duration,
            sockets: 4,
            timeout: Duration::from_secs(1),
            kind: Kind::Access,
            user: "bob".into(),
            password: "hello".into(),
            progress: false,
        }
    }
}

/// One second of a run.
#[derive(Clone, Debug, Default)]
pub struct Second {
    /// Requests sent in this second.
    pub offered: u64,
    /// Of those, answered correctly in time.
    pub answered: u64,
    /// Of those, not answered within the timeout (or answered wrongly).
    pub dropped: u64,
    /// Latency of this second's answers: p50, p99 and max, in microseconds.
    pub p50_us: u64,
    /// The 99th percentile.
    pub p99_us: u64,
}

/// What a run measured.
#[derive(Debug)]
pub struct LoadReport {
    /// The rate asked.
    pub asked_rate: u64,
    /// Requests sent.
    pub offered: u64,
    /// How long sending took.
    pub send_time: Duration,
    /// Answers that verified.
    pub answered: u64,
    /// Requests with no (valid) answer in time.
    pub dropped: u64,
    /// Answers that did not verify (wrong authenticator, unknown identifier, late).
    pub invalid: u64,
    /// Requests not sent because every identifier of every socket was in flight.
    pub no_identifier: u64,
    /// Answers by code (Access-Accept, Access-Reject, ...).
    pub accepts: u64,
    /// Access-Rejects among the answers.
    pub rejects: u64,
    /// Latency of every answer, in microseconds.
    pub latency: Histogram<u64>,
    /// Per second of the run.
    pub seconds: Vec<Second>,
}

impl LoadReport {
    /// Offered over asked, minus one, in absolute value.
    pub fn rate_error(&self) -> f64 {
        let asked = self.asked_rate as f64 * self.send_time.as_secs_f64();
        if asked == 0.0 {
            return 0.0;
        }
        (self.offered as f64 / asked - 1.0).abs()
    }

    /// Requests sent per second.
    pub fn offered_per_s(&self) -> f64 {
        self.offered as f64 / self.send_time.as_secs_f64().max(1e-9)
    }

    /// Whether the run held its rate: offered within 0.5% of asked, and at most 0.1% of the
    /// requests unanswered.
    pub fn held(&self) -> bool {
        self.rate_error() <= 0.005
            && self.no_identifier == 0
            && (self.dropped as f64) <= 0.001 * self.offered as f64
    }

    /// Prints the summary as `value <name> <number>` lines, each name after `prefix`.
    pub fn print_values(&self, prefix: &str) {
        println!("value {prefix}asked_per_s {}", self.asked_rate);
        println!("value {prefix}offered_per_s {:.1}", self.offered_per_s());
        println!("value {prefix}rate_error {:.5}", self.rate_error());
        println!("value {prefix}offered {}", self.offered);
        println!("value {prefix}answered {}", self.answered);
        println!("value {prefix}dropped {}", self.dropped);
        println!("value {prefix}invalid {}", self.invalid);
        println!("value {prefix}no_identifier {}", self.no_identifier);
        for (name, q) in [("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("p999", 0.999)] {
            println!(
                "value {prefix}latency_{name}_us {}",
                self.latency.value_at_quantile(q)
            );
        }
        println!("value {prefix}latency_max_us {}", self.latency.max());
    }
}

/// A request in flight on one identifier of one socket.
#[derive(Clone, Copy)]
struct InFlight {
    sent: Instant,
    second: usize,
    authenticator: [u8; 16],
}

/// One source socket: its identifiers in flight, and what its receiver counted.
struct Lane {
    socket: UdpSocket,
    slots: Mutex<[Option<InFlight>; 256]>,
    tally: Mutex<Tally>,
}

#[derive(Default)]
struct Tally {
    answered: u64,
    invalid: u64,
    dropped: u64,
    accepts: u64,
    rejects: u64,
    per_second: Vec<(u64, u64, Option<Histogram<u64>>)>,
    latency: Option<Histogram<u64>>,
}

impl Tally {
    fn second(&mut self, s: usize) -> &mut (u64, u64, Option<Histogram<u64>>) {
        if self.per_second.len() <= s {
            self.per_second.resize_with(s + 1, || (0, 0, None));
        }
        &mut self.per_second[s]
    }
}

fn histogram() -> Histogram<u64> {
    // 1 us to 60 s at 3 significant digits.
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid histogram bounds")
}

/// Socket buffers large enough for a few thousand requests in flight.
const SOCKET_BUFFER: usize = 8 << 20;

fn lane(target: SocketAddr) -> anyhow::Result<Lane> {
    let domain = socket2::Domain::for_address(target);
    let socket = socket2::Socket::new(domain, socket2::Type::DGRAM, Some(socket2::Protocol::UDP))?;
    // Best effort: the kernel caps them at net.core.[rw]mem_max.
    let _ = socket.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = socket.set_send_buffer_size(SOCKET_BUFFER);
    let local: SocketAddr = if target.is_ipv4() {
        "127.0.0.1:0".parse()?
    } else {
        "[::1]:0".parse()?
    };
    socket.bind(&local.into())?;
    socket.connect(&target.into())?;
    let socket: UdpSocket = socket.into();
    socket.set_read_timeout(Some(Duration::from_millis(20)))?;
    Ok(Lane {
        socket,
        slots: Mutex::new([None; 256]),
        tally: Mutex::new(Tally::default()),
    })
}

/// The request with identifier `id` and authenticator `authenticator`, encoded and signed.
fn request(spec: &LoadSpec, id: u8, authenticator: [u8; 16], n: u64) -> anyhow::Result<Vec<u8>> {
    let mut packet = match spec.kind {
        Kind::Access => {
            let mut p = Packet::new(Code::AccessRequest, id, authenticator)
                .with(Attribute::new(USER_NAME, spec.user.as_bytes()))
                .with(Attribute::from_ipv4(
                    NAS_IP_ADDRESS,
                    std::net::Ipv4Addr::LOCALHOST,
                ));
            p.set_user_password(spec.password.as_bytes(), &spec.secret)?;
            p
        }
        Kind::Accounting => Packet::new(Code::AccountingRequest, id, [0; 16])
            .with(Attribute::new(USER_NAME, spec.user.as_bytes()))
            .with(Attribute::from_u32(ACCT_STATUS_TYPE, 3))
            .with(Attribute::new(ACCT_SESSION_ID, format!("{n:016x}"))),
    };
    Ok(packet.encode_request(&spec.secret)?)
}

/// A fast, unique stream of authenticators: splitmix64 of a random seed and a counter.
fn authenticator(seed: u64, n: u64) -> [u8; 16] {
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let a = mix(seed ^ n.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let b = mix(a ^ n);
    let mut out = [0; 16];
    out[..8].copy_from_slice(&a.to_le_bytes());
    out[8..].copy_from_slice(&b.to_le_bytes());
    out
}

fn receive(lane: &Lane, spec: &LoadSpec, stop: &AtomicBool) {
    let mut buf = [0u8; 4096];
    let mut latency = histogram();
    let mut tally_local: Vec<(u64, u64, Histogram<u64>)> = Vec::new();
    let (mut answered, mut invalid, mut accepts, mut rejects) = (0, 0, 0, 0);
    while !stop.load(Ordering::Relaxed) {
        let n = match lane.socket.recv(&mut buf) {
            Ok(n) => n,
            Err(_) => continue, // timeout: look at `stop` again
        };
        let now = Instant::now();
        let Ok(reply) = Packet::decode(&buf[..n]) else {
            invalid += 1;
            continue;
        };
        let Some(sent) = lane.slots.lock()[usize::from(reply.identifier)].take() else {
            invalid += 1; // late (already counted as dropped) or never sent
            continue;
        };
        let context = RequestContext {
            code: match spec.kind {
                Kind::Access => Code::AccessRequest,
                Kind::Accounting => Code::AccountingRequest,
            },
            identifier: reply.identifier,
            authenticator: sent.authenticator,
        };
        if reply
            .verify_response(
                &spec.secret,
                context,
                Policy::AllowMissingMessageAuthenticator,
            )
            .is_err()
        {
            invalid += 1;
            let mut tally = lane.tally.lock();
            tally.dropped += 1;
            tally.second(sent.second).1 += 1;
            continue;
        }
        match reply.code {
            Code::AccessAccept => accepts += 1,
            Code::AccessReject => rejects += 1,
            _ => {}
        }
        answered += 1;
        let us = u64::try_from((now - sent.sent).as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        latency.saturating_record(us);
        if tally_local.len() <= sent.second {
            tally_local.resize_with(sent.second + 1, || (0, 0, histogram()));
        }
        let second = &mut tally_local[sent.second];
        second.0 += 1;
        second.2.saturating_record(us);
    }
    let mut tally = lane.tally.lock();
    tally.answered += answered;
    tally.invalid += invalid;
    tally.accepts += accepts;
    tally.rejects += rejects;
    tally.latency = Some(latency);
    for (s, (n, _, h)) in tally_local.into_iter().enumerate() {
        let second = tally.second(s);
        second.0 += n;
        second.2 = Some(h);
    }
}

/// Counts the requests of `lane` that have waited longer than `timeout` as dropped and
/// frees their identifiers; with `all`, every request still in flight.
fn expire(lane: &Lane, now: Instant, timeout: Duration, all: bool) {
    let mut expired: Vec<usize> = Vec::new();
    {
        let mut slots = lane.slots.lock();
        for slot in slots.iter_mut() {
            if let Some(f) = slot
                && (all || now - f.sent > timeout)
            {
                expired.push(f.second);
                *slot = None;
            }
        }
    }
    if !expired.is_empty() {
        let mut tally = lane.tally.lock();
        tally.dropped += expired.len() as u64;
        for s in expired {
            tally.second(s).1 += 1;
        }
    }
}

/// Runs the load and waits for the last answers (at most the timeout).
pub fn run(spec: &LoadSpec) -> anyhow::Result<LoadReport> {
    if spec.rate == 0 || spec.duration.is_zero() || spec.sockets == 0 {
        bail!("the rate, the duration and the number of sockets must be above zero");
    }
    if spec.secret.is_empty() {
        bail!("the shared secret is empty");
    }
    let lanes: Vec<Arc<Lane>> = (0..spec.sockets)
        .map(|_| lane(spec.target).map(Arc::new))
        .collect::<anyhow::Result<_>>()
        .context("cannot open the source sockets")?;
    let stop = Arc::new(AtomicBool::new(false));
    let receivers: Vec<_> = lanes
        .iter()
        .map(|lane| {
            let (lane, stop, spec) = (Arc::clone(lane), Arc::clone(&stop), spec.clone());
            std::thread::spawn(move || receive(&lane, &spec, &stop))
        })
        .collect();
    let seed = u64::from_le_bytes(entitle_proto::signing::random_bytes::<8>()?);
    let progress = progress_bar(spec);

    let start = Instant::now();
    let total = u128::from(spec.rate) * spec.duration.as_nanos() / 1_000_000_000;
    let total = u64::try_from(total).unwrap_or(u64::MAX);
    let per_request = 1e9 / spec.rate as f64;
    let (mut sent, mut no_identifier) = (0u64, 0u64);
    let mut next_id = vec![0u8; lanes.len()];
    let mut offered_by_second: Vec<u64> = Vec::new();
    let mut last_expiry = start;
    let mut last_tick = 0u64;
    while sent + no_identifier < total {
        let now = Instant::now();
        let elapsed = (now - start).as_nanos() as f64;
        let due = ((elapsed / per_request) as u64 + 1).min(total);
        while sent + no_identifier < due {
            let n = sent + no_identifier;
            let lane_index = (n % lanes.len() as u64) as usize;
            let lane = &lanes[lane_index];
            let second = ((n as f64 * per_request) / 1e9) as usize;
            let authenticator = authenticator(seed, n);
            // The next free identifier of this socket, if any.
            let id = {
                let mut slots = lane.slots.lock();
                let first = next_id[lane_index];
                let mut id = None;
                for k in 0..256u16 {
                    let candidate = first.wrapping_add(k as u8);
                    if slots[usize::from(candidate)].is_none() {
                        id = Some(candidate);
                        break;
                    }
                }
                if let Some(id) = id {
                    slots[usize::from(id)] = Some(InFlight {
                        sent: Instant::now(),
                        second,
                        authenticator,
                    });
                    next_id[lane_index] = id.wrapping_add(1);
                }
                id
            };
            let Some(id) = id else {
                no_identifier += 1;
                continue;
            };
            let datagram = request(spec, id, authenticator, n)?;
            // The kind's own authenticator for accounting is computed by encode_request.
            if spec.kind == Kind::Accounting
                && let Some(f) = lane.slots.lock()[usize::from(id)].as_mut()
            {
                f.authenticator.copy_from_slice(&datagram[4..20]);
            }
            if lane.socket.send(&datagram).is_err() {
                // A full socket buffer or a refused port: the request is dropped.
            }
            if offered_by_second.len() <= second {
                offered_by_second.resize(second + 1, 0);
            }
            offered_by_second[second] += 1;
            sent += 1;
        }
        if now - last_expiry > Duration::from_millis(50) {
            for lane in &lanes {
                expire(lane, now, spec.timeout, false);
            }
            last_expiry = now;
        }
        let tick = (now - start).as_secs();
        if tick != last_tick {
            if let Some(bar) = &progress {
                bar.set_position(tick);
            }
            last_tick = tick;
        }
        // Sleep until the next request is due (at least a little, to yield the core).
        let next_due = (sent + no_identifier) as f64 * per_request;
        let wait = (next_due - (Instant::now() - start).as_nanos() as f64).max(0.0);
        if wait > 20_000.0 {
            std::thread::sleep(Duration::from_nanos(wait as u64).min(Duration::from_millis(2)));
        }
    }
    let send_time = start.elapsed();
    if let Some(bar) = &progress {
        bar.finish_and_clear();
    }
    // Wait for what is in flight, at most the timeout.
    let deadline = Instant::now() + spec.timeout;
    while Instant::now() < deadline
        && lanes
            .iter()
            .any(|l| l.slots.lock().iter().any(Option::is_some))
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    for lane in &lanes {
        expire(lane, Instant::now(), spec.timeout, true);
    }
    stop.store(true, Ordering::Relaxed);
    for r in receivers {
        r.join()
            .map_err(|_| anyhow::anyhow!("a receiver thread panicked"))?;
    }

    let mut report = LoadReport {
        asked_rate: spec.rate,
        offered: sent,
        send_time,
        answered: 0,
        dropped: 0,
        invalid: 0,
        no_identifier,
        accepts: 0,
        rejects: 0,
        latency: histogram(),
        seconds: offered_by_second
            .iter()
            .map(|&offered| Second {
                offered,
                ..Second::default()
            })
            .collect(),
    };
    let mut per_second: Vec<Histogram<u64>> =
        (0..report.seconds.len()).map(|_| histogram()).collect();
    for lane in &lanes {
        let mut tally = lane.tally.lock();
        report.answered += tally.answered;
        report.dropped += tally.dropped;
        report.invalid += tally.invalid;
        report.accepts += tally.accepts;
        report.rejects += tally.rejects;
        if let Some(h) = tally.latency.take() {
            report.latency.add(&h)?;
        }
        for (s, (answered, dropped, h)) in tally.per_second.drain(..).enumerate() {
            if let Some(second) = report.seconds.get_mut(s) {
                second.answered += answered;
                second.dropped += dropped;
                if let Some(h) = h {
                    per_second[s].add(&h)?;
                }
            }
        }
    }
    for (second, h) in report.seconds.iter_mut().zip(&per_second) {
        second.p50_us = h.value_at_quantile(0.5);
        second.p99_us = h.value_at_quantile(0.99);
    }
    Ok(report)
}

fn progress_bar(spec: &LoadSpec) -> Option<indicatif::ProgressBar> {
    if !spec.progress || spec.duration < Duration::from_secs(3) {
        return None;
    }
    let bar = indicatif::ProgressBar::new(spec.duration.as_secs());
    bar.set_style(
        indicatif::ProgressStyle::with_template("{prefix} [{bar:40}] {pos}/{len} s, {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar.set_prefix(format!("{}/s to {}", spec.rate, spec.target));
    Some(bar)
}

/// The highest rate of `rates` (tried in order, lowest first) that `run` holds against the
/// target; each run lasts `duration`. Stops at the first rate not held.
pub fn max_held_rate(
    spec: &LoadSpec,
    rates: impl IntoIterator<Item = u64>,
) -> anyhow::Result<Option<(u64, LoadReport)>> {
    let mut best = None;
    for rate in rates {
        let report = run(&LoadSpec {
            rate,
            progress: false,
            ..spec.clone()
        })?;
        let held = report.held();
        eprintln!(
            "  {rate}/s: offered {:.0}/s, answered {}, dropped {}, p99 {} us{}",
            report.offered_per_s(),
            report.answered,
            report.dropped,
            report.latency.value_at_quantile(0.99),
            if held { "" } else { "  (not held)" }
        );
        if !held {
            break;
        }
        best = Some((rate, report));
    }
    Ok(best)
}
