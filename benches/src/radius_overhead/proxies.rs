//! entitle's RADIUS proxy beside the peers that do the same job, each in front of the same
//! FreeRADIUS (the upstream, run as in production: `-f`, its thread pool): FreeRADIUS
//! itself configured as a proxy, and radsecproxy as a UDP proxy. The load generator
//! (`radius_load`) sends Access-Requests open loop.
//!
//! 1. At 3,000/s, rounds alternated over talking to the upstream directly and through each
//!    proxy: the CPU time (utime + stime in `/proc`) of each proxy process per forwarded
//!    request, and the latency each adds at p50 and p99 over the direct runs.
//! 2. The highest rate each proxy forwards without loss: rates stepped up (each step a few
//!    seconds; loss is any request unanswered within the timeout, or the generator unable
//!    to hold the rate), then halved twice between the last held and the first lost; a
//!    step fails only if it fails twice in a row, so one burst from another process on the
//!    machine does not decide it. Per round, alternated; the median of the rounds.
//! 3. At the highest rate all three held, rounds alternated: the CPU per request again
//!    (cost per request falls with the rate, as more requests share each wakeup).
//!
//! The licence of entitle's proxy evaluates at 1,000,000 TPS, far above any offered rate,
//! so every request is checked on the gate and forwarded.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context as _, bail, ensure};
use entitle_radius_peers::{FreeRadius, Radsecproxy, Setup, Upstream, User};
use hdrhistogram::Histogram;

use super::{EntitleProxy, Options, median, process_cpu, rotated};
use crate::radius_load::{self, LoadReport, LoadSpec};

const CLIENT_SECRET: &str = "bench-client-secret";
const UPSTREAM_SECRET: &str = "bench-upstream-secret";
const USER: User<'static> = User {
    name: "bob",
    password: "hello",
    reply_message: "Hello, bob",
};
/// The licence-sized load.
const LICENCE_RATE: u64 = 3_000;
/// The rates the search for the highest starts from, and never goes beyond.
const SEARCH_FROM: u64 = 4_000;
const SEARCH_CAP: u64 = 100_000;
/// The pause after a run that lost requests.
const SETTLE: Duration = Duration::from_secs(3);

/// What a load is sent to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Via {
    /// The upstream itself.
    Direct,
    Entitle,
    Radsecproxy,
    FreeRadius,
}

impl Via {
    const PROXIES: [Via; 3] = [Via::Entitle, Via::Radsecproxy, Via::FreeRadius];

    fn name(self) -> &'static str {
        match self {
            Via::Direct => "direct",
            Via::Entitle => "entitle",
            Via::Radsecproxy => "radsecproxy",
            Via::FreeRadius => "freeradius",
        }
    }
}

/// The upstream and the three proxies in front of it, all running.
struct Rig {
    upstream: FreeRadius,
    entitle: EntitleProxy,
    radsecproxy: Radsecproxy,
    freeradius: FreeRadius,
    _dir: tempfile::TempDir,
}

impl Rig {
    fn start() -> anyhow::Result<Rig> {
        let upstream = FreeRadius::start_with(&Setup {
            secret: UPSTREAM_SECRET,
            users: &[USER],
            debug: false,
            proxy_to: None,
        });
        let to = Upstream {
            auth: upstream.auth,
            acct: upstream.acct,
            secret: UPSTREAM_SECRET,
        };
        let dir = tempfile::tempdir()?;
        let entitle = EntitleProxy::start(&entitle_toml(dir.path(), &to)?)?;
        let radsecproxy = Radsecproxy::start(CLIENT_SECRET, &to);
        let freeradius = FreeRadius::start_with(&Setup {
            secret: CLIENT_SECRET,
            users: &[],
            debug: false,
            proxy_to: Some(to),
        });
        Ok(Rig {
            upstream,
            entitle,
            radsecproxy,
            freeradius,
            _dir: dir,
        })
    }

    fn target(&self, via: Via) -> SocketAddr {
        match via {
            Via::Direct => self.upstream.auth,
            Via::Entitle => self.entitle.listen,
            Via::Radsecproxy => self.radsecproxy.listen,
            Via::FreeRadius => self.freeradius.auth,
        }
    }

    fn secret(via: Via) -> &'static str {
        match via {
            Via::Direct => UPSTREAM_SECRET,
            _ => CLIENT_SECRET,
        }
    }

    /// The process whose CPU a run through `via` measures: the proxy, or the upstream.
    fn pid(&self, via: Via) -> anyhow::Result<u32> {
        match via {
            Via::Direct => self.upstream.pid(),
            Via::Entitle => Some(self.entitle.pid()),
            Via::Radsecproxy => self.radsecproxy.pid(),
            Via::FreeRadius => self.freeradius.pid(),
        }
        .with_context(|| format!("{} is not running", via.name()))
    }

    fn upstream_pid(&self) -> anyhow::Result<u32> {
        self.pid(Via::Direct)
    }
}

/// The proxy's configuration: one client, the upstream (never marked down for long: it is
/// the only one, and a search step that overloads it must not decide the next), sockets
/// sized for bursts, an embedded agent that never calls home and evaluates at 10,000 x 100
/// TPS.
fn entitle_toml(dir: &std::path::Path, to: &Upstream<'_>) -> anyhow::Result<String> {
    let authority = dir.join("authority");
    entitle_authority::init(&authority).context("cannot make the licence key")?;
    let key = entitle_authority::DataDir::new(&authority).public_key();
    Ok(format!(
        "listen = [\"127.0.0.1:0\"]\nsocket_buffer_bytes = 8388608\n\
         [counting]\naccess = \"enforce\"\naccounting = \"count\"\n\
         [[client]]\nname = \"loadgen\"\naddress = \"127.0.0.1\"\nsecret = {CLIENT_SECRET:?}\n\
         [[upstream]]\nname = \"freeradius\"\nauth = \"{}\"\nacct = \"{}\"\nsecret = {:?}\n\
         timeout_ms = 2000\nmax_timeouts = 100\ndown_secs = 1\n\
         [licence]\nmode = \"embedded\"\n[licence.sidecar]\ndata_dir = {:?}\n\
         authority_public_key = {:?}\n\
         [licence.sidecar.udi]\nproduct_id = \"CPAR\"\nserial = \"BENCH\"\n\
         [licence.sidecar.agent]\nselection = {{ \"PAR-TPS\" = 10000 }}\n",
        to.auth,
        to.acct,
        to.secret,
        dir.join("agent"),
        key,
    ))
}

/// One run's measure: the load's report and the CPU the proxy and the upstream used.
struct Measured {
    report: LoadReport,
    cpu: Duration,
    upstream_cpu: Duration,
}

impl Measured {
    /// Microseconds of the measured process's CPU per answered request.
    fn cpu_us(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / self.report.answered.max(1) as f64
    }

    fn upstream_cpu_us(&self) -> f64 {
        self.upstream_cpu.as_secs_f64() * 1e6 / self.report.answered.max(1) as f64
    }

    /// Every request answered, at the rate asked.
    fn lossless(&self) -> bool {
        let r = &self.report;
        r.dropped == 0 && r.invalid == 0 && r.no_identifier == 0 && r.rate_error() <= 0.005
    }
}

fn spec(rig: &Rig, via: Via, rate: u64, duration: Duration) -> LoadSpec {
    let mut spec = LoadSpec::new(rig.target(via), Rig::secret(via).as_bytes(), rate, duration);
    spec.user = USER.name.into();
    spec.password = USER.password.into();
    spec
}

/// Sends `rate` requests a second through `via` for `duration`, measuring CPU over the run.
fn measure(rig: &Rig, via: Via, rate: u64, duration: Duration) -> anyhow::Result<Measured> {
    let (pid, upstream) = (rig.pid(via)?, rig.upstream_pid()?);
    let (before, upstream_before) = (process_cpu(pid)?, process_cpu(upstream)?);
    let report = radius_load::run(&spec(rig, via, rate, duration))?;
    let (after, upstream_after) = (process_cpu(pid)?, process_cpu(upstream)?);
    if report.dropped > 0 || report.no_identifier > 0 {
        // An overloaded proxy or upstream drains its queues before the next run starts.
        std::thread::sleep(SETTLE);
    }
    Ok(Measured {
        report,
        cpu: after.saturating_sub(before),
        upstream_cpu: upstream_after.saturating_sub(upstream_before),
    })
}

/// A few requests through each, all answered with Access-Accept, before measuring.
fn check_paths(rig: &Rig) -> anyhow::Result<()> {
    for via in [Via::Direct, Via::Entitle, Via::Radsecproxy, Via::FreeRadius] {
        let report = radius_load::run(&spec(rig, via, 200, Duration::from_millis(500)))?;
        ensure!(
            report.offered > 0 && report.accepts == report.offered,
            "{} answered {} of {} requests with Access-Accept ({} dropped, {} invalid)",
            via.name(),
            report.accepts,
            report.offered,
            report.dropped,
            report.invalid
        );
    }
    Ok(())
}

/// The rounds at one rate: per target, each round's measure.
/// `--proxy-rate`: the proxies at one rate only, rounds alternated with the direct runs;
/// CPU per request and the latency added, under names of their own (`_at_<rate>`).
fn at_one_rate(rig: &Rig, rate: u64, options: &Options) -> anyhow::Result<()> {
    let all = [Via::Direct, Via::Entitle, Via::Radsecproxy, Via::FreeRadius];
    eprintln!("proxies: {rate}/s only, {} rounds", options.rounds);
    let runs = rounds_at(rig, &all, rate, options)?;
    let cpu = cpu_medians(&runs);
    let direct = pooled(&runs[&Via::Direct])?;
    for via in all {
        let name = via.name();
        println!("value proxy_cpu_us_at_{rate}_{name} {:.1}", cpu[&via]);
        let lost: u64 = runs[&via].iter().map(|m| m.report.dropped).sum();
        println!("value proxy_lost_at_{rate}_{name} {lost}");
    }
    for via in Via::PROXIES {
        let through = pooled(&runs[&via])?;
        let added = through.value_at_quantile(0.99) as i64 - direct.value_at_quantile(0.99) as i64;
        println!("value proxy_added_p99_us_at_{rate}_{} {added}", via.name());
    }
    let ours = cpu[&Via::Entitle];
    println!(
        "ratio proxy_cpu_vs_radsecproxy_at_{rate} {:.2}",
        ratio(ours, cpu[&Via::Radsecproxy])
    );
    println!(
        "ratio proxy_cpu_vs_freeradius_at_{rate} {:.2}",
        ratio(ours, cpu[&Via::FreeRadius])
    );
    Ok(())
}

fn rounds_at(
    rig: &Rig,
    targets: &[Via],
    rate: u64,
    options: &Options,
) -> anyhow::Result<BTreeMap<Via, Vec<Measured>>> {
    let duration = options.pick(Duration::from_secs(5), Duration::from_millis(400));
    let mut all: BTreeMap<Via, Vec<Measured>> = BTreeMap::new();
    for round in 0..options.rounds {
        for via in rotated(targets, round) {
            let m = measure(rig, via, rate, duration)?;
            eprintln!(
                "  round {round}, {rate}/s via {}: {} answered, {} dropped, cpu {:.1} us/request \
                 (upstream {:.1}), p50 {} us, p99 {} us",
                via.name(),
                m.report.answered,
                m.report.dropped,
                m.cpu_us(),
                m.upstream_cpu_us(),
                m.report.latency.value_at_quantile(0.5),
                m.report.latency.value_at_quantile(0.99),
            );
            all.entry(via).or_default().push(m);
        }
    }
    Ok(all)
}

/// Whether `via` forwards `rate` without loss: tried twice before saying no.
fn holds(rig: &Rig, via: Via, rate: u64, step: Duration) -> anyhow::Result<(bool, Measured)> {
    let mut last = None;
    for attempt in 0..2 {
        let m = measure(rig, via, rate, step)?;
        let held = m.lossless();
        eprintln!(
            "    {}: {rate}/s{}: offered {:.0}/s, dropped {}, p99 {} us{}",
            via.name(),
            if attempt > 0 { " again" } else { "" },
            m.report.offered_per_s(),
            m.report.dropped + m.report.no_identifier,
            m.report.latency.value_at_quantile(0.99),
            if held { "" } else { "  (lost)" }
        );
        if held {
            return Ok((true, m));
        }
        last = Some(m);
    }
    Ok((false, last.context("no attempt made")?))
}

/// The highest rate `via` forwards without loss (bounded: at most 20 rates tried, 2 with
/// `--quick`), with the run that held it; `None` when not even the first rate holds.
fn max_rate(rig: &Rig, via: Via, options: &Options) -> anyhow::Result<Option<(u64, Measured)>> {
    let step = options.pick(Duration::from_secs(3), Duration::from_millis(300));
    let mut held: Option<(u64, Measured)> = None;
    let mut lost = None;
    let mut rate = search_from(options);
    for _ in 0..options.pick(20, 2) {
        let (ok, m) = holds(rig, via, rate, step)?;
        if ok {
            held = Some((rate, m));
            if rate >= SEARCH_CAP {
                break;
            }
            rate = (rate * 5 / 4).div_ceil(500) * 500;
        } else {
            lost = Some(rate);
            break;
        }
    }
    let (Some(lost), Some((low, _))) = (lost, held.as_ref()) else {
        return Ok(held);
    };
    // Two halvings between the last held and the first lost.
    let (mut low, mut high) = (*low, lost);
    for _ in 0..options.pick(2, 0) {
        let mid = (low + high) / 2 / 250 * 250;
        if mid <= low {
            break;
        }
        let (ok, m) = holds(rig, via, mid, step)?;
        if ok {
            low = mid;
            held = Some((mid, m));
        } else {
            high = mid;
        }
    }
    Ok(held)
}

/// Where the search starts: low with `--quick`, whose builds may be unoptimised.
fn search_from(options: &Options) -> u64 {
    options.pick(SEARCH_FROM, 500)
}

fn picture(options: &Options, report: &LoadReport, title: &str, file: &str) -> anyhow::Result<()> {
    if let Some(dir) = &options.picture_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot make {}", dir.display()))?;
        let path = dir.join(file);
        radius_load::write_svg(report, title, &path)?;
        eprintln!("picture: {}", path.display());
    }
    Ok(())
}

/// The median over rounds of the CPU per request of each target.
fn cpu_medians(runs: &BTreeMap<Via, Vec<Measured>>) -> BTreeMap<Via, f64> {
    runs.iter()
        .filter_map(|(via, ms)| {
            let per: Vec<f64> = ms.iter().map(Measured::cpu_us).collect();
            median(&per).map(|m| (*via, m))
        })
        .collect()
}

/// Every round's latencies of one target, in one histogram.
fn pooled(runs: &[Measured]) -> anyhow::Result<Histogram<u64>> {
    let mut all = Histogram::new_with_bounds(1, 60_000_000, 3)?;
    for m in runs {
        all.add(&m.report.latency)?;
    }
    Ok(all)
}

fn ratio(ours: f64, theirs: f64) -> f64 {
    ours / theirs.max(1e-9)
}

/// Runs the comparison and prints its lines.
pub fn run(options: &Options) -> anyhow::Result<()> {
    eprintln!(
        "proxies: starting FreeRADIUS (the upstream), entitle's proxy, radsecproxy, FreeRADIUS as a proxy"
    );
    let rig = Rig::start()?;
    check_paths(&rig)?;
    let all = [Via::Direct, Via::Entitle, Via::Radsecproxy, Via::FreeRadius];
    if !options.quick {
        for via in all {
            measure(&rig, via, LICENCE_RATE, Duration::from_secs(1))?; // warm-up
        }
    }

    if let Some(rate) = options.proxy_rate {
        return at_one_rate(&rig, rate, options);
    }

    eprintln!("proxies: {LICENCE_RATE}/s, {} rounds", options.rounds);
    let at_3k = rounds_at(&rig, &all, LICENCE_RATE, options)?;
    for (via, runs) in &at_3k {
        let lost: u64 = runs.iter().map(|m| m.report.dropped).sum();
        if lost > 0 {
            eprintln!(
                "  note: {} lost {lost} requests at {LICENCE_RATE}/s",
                via.name()
            );
        }
    }
    let cpu_3k = cpu_medians(&at_3k);
    let direct = pooled(&at_3k[&Via::Direct])?;

    eprintln!(
        "proxies: the highest rate without loss, {} rounds",
        options.rounds
    );
    let mut maxima: BTreeMap<Via, Vec<u64>> = BTreeMap::new();
    let mut best_runs: BTreeMap<Via, (u64, Measured)> = BTreeMap::new();
    for round in 0..options.rounds {
        for via in rotated(&Via::PROXIES, round) {
            let found = max_rate(&rig, via, options)?;
            let rate = found.as_ref().map_or(0, |(r, _)| *r);
            eprintln!("  round {round}: {} held {rate}/s", via.name());
            maxima.entry(via).or_default().push(rate);
            if let Some((rate, m)) = found
                && best_runs.get(&via).is_none_or(|(r, _)| rate > *r)
            {
                best_runs.insert(via, (rate, m));
            }
        }
    }
    let max_of = |via: Via| -> u64 {
        let rates: Vec<f64> = maxima[&via].iter().map(|&r| r as f64).collect();
        median(&rates).unwrap_or(0.0) as u64
    };
    let common = Via::PROXIES.iter().map(|&v| max_of(v)).min().unwrap_or(0);
    if common == 0 {
        bail!(
            "one proxy held not even {}/s without loss",
            search_from(options)
        );
    }

    eprintln!(
        "proxies: {common}/s (the highest all three held), {} rounds",
        options.rounds
    );
    let at_max = rounds_at(&rig, &Via::PROXIES, common, options)?;
    let cpu_max = cpu_medians(&at_max);

    // The figures.
    println!("value proxy_loadgen_rate_3k {LICENCE_RATE}");
    println!("value proxy_common_max_rate {common}");
    for via in all {
        let name = via.name();
        println!("value proxy_cpu_us_3k_{name} {:.1}", cpu_3k[&via]);
        let upstream: Vec<f64> = at_3k[&via].iter().map(Measured::upstream_cpu_us).collect();
        println!(
            "value proxy_upstream_cpu_us_3k_via_{name} {:.1}",
            median(&upstream).unwrap_or(0.0)
        );
    }
    for via in Via::PROXIES {
        let name = via.name();
        println!("value proxy_cpu_us_max_{name} {:.1}", cpu_max[&via]);
        let lost: u64 = at_max[&via].iter().map(|m| m.report.dropped).sum();
        println!("value proxy_lost_at_common_max_{name} {lost}");
    }
    println!(
        "value proxy_direct_p50_us {}",
        direct.value_at_quantile(0.5)
    );
    println!(
        "value proxy_direct_p99_us {}",
        direct.value_at_quantile(0.99)
    );
    let mut added_p99 = BTreeMap::new();
    for via in Via::PROXIES {
        let through = pooled(&at_3k[&via])?;
        let added =
            |q: f64| through.value_at_quantile(q) as i64 - direct.value_at_quantile(q) as i64;
        println!("value proxy_added_p50_us_{} {}", via.name(), added(0.5));
        println!("value proxy_added_p99_us_{} {}", via.name(), added(0.99));
        added_p99.insert(via, added(0.99));
    }
    for via in Via::PROXIES {
        println!("value proxy_max_rate_{} {}", via.name(), max_of(via));
    }
    let (ours_3k, ours_max) = (cpu_3k[&Via::Entitle], cpu_max[&Via::Entitle]);
    println!(
        "ratio proxy_cpu_vs_radsecproxy_3k {:.2}",
        ratio(ours_3k, cpu_3k[&Via::Radsecproxy])
    );
    println!(
        "ratio proxy_cpu_vs_radsecproxy_max {:.2}",
        ratio(ours_max, cpu_max[&Via::Radsecproxy])
    );
    println!(
        "ratio proxy_cpu_vs_freeradius_3k {:.2}",
        ratio(ours_3k, cpu_3k[&Via::FreeRadius])
    );
    println!(
        "ratio proxy_cpu_vs_freeradius_max {:.2}",
        ratio(ours_max, cpu_max[&Via::FreeRadius])
    );
    // A proxy adding less than nothing (noise) counts as adding 1 us.
    let (ours, theirs) = (added_p99[&Via::Entitle], added_p99[&Via::Radsecproxy]);
    println!(
        "ratio proxy_added_p99_vs_radsecproxy {:.2}",
        ratio(ours.max(1) as f64, theirs.max(1) as f64)
    );

    for via in all {
        if let Some(last) = at_3k[&via].last() {
            let title = format!("{LICENCE_RATE}/s via {}", via.name());
            picture(
                options,
                &last.report,
                &title,
                &format!("proxy-3k-{}.svg", via.name()),
            )?;
        }
    }
    for (via, (rate, m)) in &best_runs {
        let title = format!("{rate}/s via {}, its highest without loss", via.name());
        picture(
            options,
            &m.report,
            &title,
            &format!("proxy-max-{}.svg", via.name()),
        )?;
    }
    Ok(())
}
