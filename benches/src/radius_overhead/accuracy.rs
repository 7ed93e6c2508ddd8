//! Accuracy at twice the licence: entitle's RADIUS proxy (a child process, the program the
//! `entitle-radius-proxy` binary runs) licensed for 1,000 TPS in front of a real FreeRADIUS,
//! offered 2,000 Access-Requests a second, open loop, for 10 s. What it admits is what
//! FreeRADIUS accepts and the proxy relays back: the Access-Accepts the load generator
//! receives and verifies. The excess is dropped (the proxy's default `action = "drop"`).
//!
//! `value radius_admitted_over_licensed` is `(accepts - burst) / (licence x sending time)`,
//! goal within [0.99, 1.01]. "Burst aside": the proxy's bucket is full when the load starts
//! (the run waits for that), and a full bucket grants its burst at once on top of the rate,
//! once per run: 100 transactions here (the licence's `burst_ms` of 100, a tenth of a second
//! at 1,000 TPS). That is allowed by the licence, not excess, so it is subtracted.
//!
//! The load generator needs identifiers for what the proxy drops, since a dropped request
//! holds its identifier for the whole timeout: about 1,000 a second beyond the licence for
//! 1 s, so 16 sockets (4,096 identifiers) and a check that none ran out
//! (`accuracy_no_identifier` 0) and that the rate offered was the rate asked.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail, ensure};
use entitle_radius_peers::{FreeRadius, Setup, User};

use super::{EntitleProxy, Options};
use crate::radius_load::{self, LoadSpec};

const CLIENT_SECRET: &str = "accuracy-client-secret";
const UPSTREAM_SECRET: &str = "accuracy-upstream-secret";
const USER: User<'static> = User {
    name: "bob",
    password: "hello",
    reply_message: "Hello, bob",
};
/// The licence: 10 PAR-TPS licences of 100 TPS.
const LICENCE_TPS: u64 = 1_000;
const LICENCES: u64 = LICENCE_TPS / 100;
/// The burst a full bucket grants on top of the rate: the catalogue's default `burst_ms`
/// of 100, `ceil(rate x 100 / 1000)`.
const BURST: u64 = LICENCE_TPS.div_ceil(10);
/// Offered: twice the licence.
const OFFERED_PER_S: u64 = 2 * LICENCE_TPS;
const SOCKETS: usize = 16;

/// The proxy's configuration: one client, FreeRADIUS behind, its metrics on `metrics`, and
/// an embedded agent that never calls home and so evaluates at what it selects, 10 x 100
/// TPS.
fn proxy_toml(
    dir: &std::path::Path,
    upstream: &FreeRadius,
    metrics: SocketAddr,
) -> anyhow::Result<String> {
    let authority = dir.join("authority");
    entitle_authority::init(&authority).context("cannot make the licence key")?;
    let key = entitle_authority::DataDir::new(&authority).public_key();
    Ok(format!(
        "listen = [\"127.0.0.1:0\"]\nmetrics_listen = \"{metrics}\"\n\
         socket_buffer_bytes = 8388608\n\
         [counting]\naccess = \"enforce\"\naccounting = \"count\"\n\
         [over_licence]\naction = \"drop\"\n\
         [[client]]\nname = \"loadgen\"\naddress = \"127.0.0.1\"\nsecret = {CLIENT_SECRET:?}\n\
         [[upstream]]\nname = \"freeradius\"\nauth = \"{}\"\nacct = \"{}\"\nsecret = {:?}\n\
         timeout_ms = 2000\n\
         [licence]\nmode = \"embedded\"\n[licence.sidecar]\ndata_dir = {:?}\n\
         authority_public_key = {:?}\n\
         [licence.sidecar.udi]\nproduct_id = \"CPAR\"\nserial = \"BENCH-ACCURACY\"\n\
         [licence.sidecar.agent]\nselection = {{ \"PAR-TPS\" = {LICENCES} }}\n",
        upstream.auth,
        upstream.acct,
        UPSTREAM_SECRET,
        dir.join("agent"),
        key,
    ))
}

/// A port free a moment ago, for the proxy's metrics (it prints only its RADIUS address).
fn free_tcp_port() -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(listener.local_addr()?)
}

/// The proxy's metrics text, over HTTP.
fn scrape(at: SocketAddr) -> anyhow::Result<String> {
    use std::io::{Read as _, Write as _};
    let mut stream = std::net::TcpStream::connect_timeout(&at, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .context("the metrics endpoint sent no HTTP body")?;
    ensure!(head.starts_with("HTTP/1.1 200"), "metrics: {head}");
    Ok(body.to_owned())
}

/// A counter of `entitle_radius_proxy_packets_total` by reason (0 if absent).
fn packets(text: &str, reason: &str) -> u64 {
    let prefix = format!("entitle_radius_proxy_packets_total{{reason=\"{reason}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// The limit the proxy's agent enforces on PAR-TPS (a gauge: `... 1000.0`), if it says.
fn limit_tps(text: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix("entitle_limit_tps{tag=\"PAR-TPS\"} "))
        .and_then(|v| v.trim().parse().ok())
}

/// Waits (bounded) until the proxy's metrics say it enforces `tps` on PAR-TPS.
fn wait_for_limit(metrics: SocketAddr, tps: u64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = None;
    while Instant::now() < deadline {
        if let Ok(text) = scrape(metrics) {
            last = limit_tps(&text);
            if last == Some(tps as f64) {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("the proxy did not enforce {tps} TPS within 30 s (its last limit: {last:?})")
}

/// The longest this process went unscheduled: a thread sleeps 1 ms again and again and
/// keeps the most it overslept. A long stall of the machine during the run (other work on
/// its two cores) shows here.
struct StallWatch {
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: std::thread::JoinHandle<Duration>,
}

impl StallWatch {
    fn start() -> StallWatch {
        use std::sync::atomic::Ordering;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = std::sync::Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut longest = Duration::ZERO;
            while !stopped.load(Ordering::Relaxed) {
                let before = Instant::now();
                std::thread::sleep(Duration::from_millis(1));
                longest = longest.max(before.elapsed().saturating_sub(Duration::from_millis(1)));
            }
            longest
        });
        StallWatch { stop, thread }
    }

    fn stop(self) -> Duration {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.join().unwrap_or(Duration::MAX)
    }
}

/// `(accepts - burst) / (licence x seconds)`.
fn admitted_over_licensed(accepts: u64, seconds: f64) -> f64 {
    (accepts as f64 - BURST as f64) / (LICENCE_TPS as f64 * seconds)
}

/// Runs the accuracy test and prints its values.
pub fn run(opts: &Options) -> anyhow::Result<()> {
    let seconds = opts.pick(10, 2);
    eprintln!(
        "accuracy: FreeRADIUS behind entitle's proxy licensed {LICENCE_TPS} TPS, \
         {OFFERED_PER_S}/s offered for {seconds} s"
    );
    let upstream = FreeRadius::start_with(&Setup {
        secret: UPSTREAM_SECRET,
        users: &[USER],
        debug: false,
        proxy_to: None,
    });
    // The metrics port was free a moment ago; another process may take it meanwhile.
    let mut tries = 0;
    let (proxy, metrics, _dir) = loop {
        let dir = tempfile::tempdir()?;
        let metrics = free_tcp_port()?;
        match EntitleProxy::start(&proxy_toml(dir.path(), &upstream, metrics)?) {
            Ok(proxy) => break (proxy, metrics, dir),
            Err(e) if tries < 2 => {
                tries += 1;
                eprintln!("accuracy: the proxy did not start ({e:#}); again");
            }
            Err(e) => return Err(e),
        }
    };
    wait_for_limit(metrics, LICENCE_TPS)?;
    // The bucket refills to its burst in a tenth of a second; leave it ten times that.
    std::thread::sleep(Duration::from_secs(1));
    let before = scrape(metrics)?;

    let mut spec = LoadSpec::new(
        proxy.listen,
        CLIENT_SECRET.as_bytes(),
        OFFERED_PER_S,
        Duration::from_secs(seconds),
    );
    spec.sockets = SOCKETS;
    spec.timeout = Duration::from_secs(1);
    spec.user = USER.name.into();
    spec.password = USER.password.into();
    let watch = StallWatch::start();
    let report = radius_load::run(&spec)?;
    let stall = watch.stop();
    let after = scrape(metrics)?;
    let delta = |reason: &str| packets(&after, reason) - packets(&before, reason);
    let (admitted, dropped, relayed) = (
        delta("admitted"),
        delta("over_licence_dropped"),
        delta("reply_relayed"),
    );

    let sending = report.send_time.as_secs_f64();
    let ratio = admitted_over_licensed(report.accepts, sending);
    eprintln!(
        "accuracy: sent {} in {sending:.3} s ({:.1}/s); accepted {}, rejected {}, unanswered \
         {}; the proxy admitted {admitted}, dropped {dropped} over the licence, relayed \
         {relayed}",
        report.offered,
        report.offered_per_s(),
        report.accepts,
        report.rejects,
        report.dropped
    );
    println!("value accuracy_licence_tps {LICENCE_TPS}");
    println!("value accuracy_burst {BURST}");
    println!("value accuracy_asked_per_s {OFFERED_PER_S}");
    println!("value accuracy_offered_per_s {:.1}", report.offered_per_s());
    println!("value accuracy_rate_error {:.5}", report.rate_error());
    println!("value accuracy_no_identifier {}", report.no_identifier);
    println!("value accuracy_sending_s {sending:.3}");
    println!("value accuracy_accepts {}", report.accepts);
    println!("value accuracy_unanswered {}", report.dropped);
    println!("value accuracy_invalid {}", report.invalid);
    println!("value accuracy_proxy_admitted {admitted}");
    println!("value accuracy_proxy_over_licence_dropped {dropped}");
    println!("value accuracy_proxy_reply_relayed {relayed}");
    println!(
        "value accuracy_longest_stall_ms {:.1}",
        stall.as_secs_f64() * 1e3
    );
    println!("value radius_admitted_over_licensed {ratio:.4}");
    let per_second: Vec<String> = report
        .seconds
        .iter()
        .map(|s| format!("{}/{}", s.answered, s.offered))
        .collect();
    eprintln!(
        "accuracy: answered/offered per second: {}",
        per_second.join(" ")
    );
    if report.no_identifier > 0 || report.rate_error() > 0.005 {
        eprintln!(
            "accuracy: warning: the load generator did not offer what was asked \
             ({} without an identifier, rate error {:.4}); the figure is not a fair one",
            report.no_identifier,
            report.rate_error()
        );
    }
    if let Some(dir) = &opts.picture_dir {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot make the picture directory {}", dir.display()))?;
        let path = dir.join("radius-accuracy-2x.svg");
        radius_load::write_svg(
            &report,
            &format!(
                "{OFFERED_PER_S}/s offered through the proxy licensed {LICENCE_TPS} TPS \
                 (answered = admitted)"
            ),
            &path,
        )?;
        eprintln!("accuracy: picture {}", path.display());
    }
    drop(proxy);
    drop(upstream);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_burst_is_set_aside() {
        assert_eq!(BURST, 100);
        assert_eq!(admitted_over_licensed(10_100, 10.0), 1.0);
        assert!((admitted_over_licensed(8_900, 10.0) - 0.88).abs() < 1e-9);
    }

    #[test]
    fn packet_counters_are_read_by_reason() {
        let text = "entitle_radius_proxy_packets_total{reason=\"admitted\"} 42\n\
                    entitle_radius_proxy_packets_total{reason=\"over_licence_dropped\"} 7\n";
        assert_eq!(packets(text, "admitted"), 42);
        assert_eq!(packets(text, "over_licence_dropped"), 7);
        assert_eq!(packets(text, "reply_relayed"), 0);
        assert_eq!(
            limit_tps("entitle_limit_tps{tag=\"PAR-TPS\"} 1000.0\n"),
            Some(1000.0)
        );
        assert_eq!(limit_tps(text), None);
    }
}
