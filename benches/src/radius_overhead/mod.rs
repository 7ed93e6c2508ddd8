//! The parts of `radius-overhead` (issue 11), run in one process so each comparison is made
//! on the same machine at the same time, with rounds alternated between the things compared:
//!
//! - [`proxies`]: entitle's RADIUS proxy beside FreeRADIUS as a proxy and radsecproxy, each
//!   in front of the same FreeRADIUS, at 3,000/s and at the highest rate all three hold.
//!
//! What the parts share: their [`Options`], a process's CPU time from `/proc`, the load
//! average, the order of each round, and the entitle proxy run as a child process.

pub mod accuracy;
pub mod gate;
pub mod proxies;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, bail};

/// The command line of `radius-overhead`.
#[derive(Clone, Debug)]
pub struct Options {
    /// Run only this part.
    pub only: Option<String>,
    /// Rounds of each comparison (alternated).
    pub rounds: usize,
    /// A short run that checks the machinery (seconds, not minutes), figures meaningless.
    pub quick: bool,
    /// Where the SVG pictures go (none without it).
    pub picture_dir: Option<PathBuf>,
    /// The proxies part only at this rate, with no search for the highest: the CPU per
    /// request of each proxy and the latency each adds, for comparing a change quickly.
    pub proxy_rate: Option<u64>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            only: None,
            rounds: 3,
            quick: false,
            picture_dir: None,
            proxy_rate: None,
        }
    }
}

impl Options {
    /// Parses `--only <part>`, `--rounds N`, `--quick`, `--picture-dir DIR` and
    /// `--proxy-rate N`.
    pub fn parse(mut args: impl Iterator<Item = String>) -> anyhow::Result<Options> {
        let mut options = Options::default();
        while let Some(arg) = args.next() {
            let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--only" => options.only = Some(value()?),
                "--rounds" => {
                    options.rounds = value()?.parse().context("--rounds: not a number")?;
                    if options.rounds == 0 || options.rounds > 100 {
                        bail!("--rounds must be between 1 and 100");
                    }
                }
                "--quick" => options.quick = true,
                "--picture-dir" => options.picture_dir = Some(PathBuf::from(value()?)),
                "--proxy-rate" => {
                    let rate: u64 = value()?.parse().context("--proxy-rate: not a number")?;
                    if !(1..=1_000_000).contains(&rate) {
                        bail!("--proxy-rate must be between 1 and 1000000 requests/s");
                    }
                    options.proxy_rate = Some(rate);
                }
                "-h" | "--help" => {
                    bail!(
                        "usage: radius-overhead [--only PART] [--rounds N] [--quick] [--picture-dir DIR] \
                         [--proxy-rate N]"
                    )
                }
                other => bail!("unknown argument {other:?}"),
            }
        }
        Ok(options)
    }

    /// Whether part `name` runs.
    pub fn runs(&self, name: &str) -> bool {
        self.only.as_deref().is_none_or(|only| only == name)
    }

    /// `normal`, or `quick` with `--quick`.
    pub fn pick<T>(&self, normal: T, quick: T) -> T {
        if self.quick { quick } else { normal }
    }
}

/// The CPU time (user + system, all threads) process `pid` has used, from
/// `/proc/<pid>/stat` (fields 14 and 15, in clock ticks).
pub fn process_cpu(pid: u32) -> anyhow::Result<Duration> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("cannot read /proc/{pid}/stat (has it exited?)"))?;
    // The command name is in parentheses and may hold spaces: fields count from its end.
    let after = text
        .rfind(')')
        .map(|i| &text[i + 1..])
        .with_context(|| format!("/proc/{pid}/stat has no command name"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // After the name: state is field 3, utime field 14, stime field 15.
    let tick = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i - 3)
            .with_context(|| format!("/proc/{pid}/stat is short"))?
            .parse()
            .with_context(|| format!("/proc/{pid}/stat: field {i} is not a number"))
    };
    let ticks = tick(14)? + tick(15)?;
    Ok(Duration::from_secs_f64(
        ticks as f64 / clock_ticks_per_second(),
    ))
}

/// `getconf CLK_TCK`, 100 on every Linux this runs on if getconf is missing.
fn clock_ticks_per_second() -> f64 {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t: &f64| t > 0.0)
            .unwrap_or(100.0)
    })
}

/// The load average (1, 5, 15 min) as `/proc/loadavg` has it.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// The order of round `round` of `items`: rotated by one each round, so each item goes
/// first, second... equally often and none always follows the same one into a warm cache.
pub fn rotated<T: Clone>(items: &[T], round: usize) -> Vec<T> {
    let mut order = items.to_vec();
    if !order.is_empty() {
        let by = round % order.len();
        order.rotate_left(by);
    }
    order
}

/// The median of `values` (the lower middle for an even count); `None` when empty.
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get((sorted.len().max(1) - 1) / 2).copied()
}

/// The environment variable that makes this binary run entitle's RADIUS proxy instead (see
/// [`serve_proxy_if_asked`]).
const PROXY_ROLE: &str = "ENTITLE_BENCH_RUN_RADIUS_PROXY";

/// If this process was started by [`EntitleProxy::start`], runs the proxy (the very
/// function the `entitle-radius-proxy` binary runs) and returns its exit code; otherwise
/// `None`. The first thing `main` does.
pub fn serve_proxy_if_asked() -> Option<std::process::ExitCode> {
    std::env::var_os(PROXY_ROLE)?;
    Some(entitle_radius_proxy::program::main())
}

/// entitle's RADIUS proxy in a child process (this binary, re-executed), killed on drop.
pub struct EntitleProxy {
    child: Child,
    /// Where it listens.
    pub listen: std::net::SocketAddr,
    _dir: tempfile::TempDir,
}

impl EntitleProxy {
    /// Starts the proxy with configuration `toml` (its listen address must have port 0:
    /// the proxy prints the one it got) and waits (bounded) until it says where it listens.
    pub fn start(toml: &str) -> anyhow::Result<EntitleProxy> {
        use std::io::BufRead as _;
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("proxy.toml");
        std::fs::write(&path, toml)?;
        let mut child = Command::new(std::env::current_exe()?)
            .env(PROXY_ROLE, "1")
            .env("RUST_LOG", "warn")
            .arg("--config")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .context("cannot start the proxy")?;
        let stdout = child.stdout.take().context("the proxy's stdout")?;
        // The proxy prints its addresses once serving; a reader thread bounds the wait.
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Some(at) = line.strip_prefix("entitle-radius-proxy listening on ") {
                    let _ = sender.send(at.trim().to_owned());
                }
            }
        });
        let listen = match receiver.recv_timeout(Duration::from_secs(30)) {
            Ok(at) => at.parse().context("the proxy printed a bad address")?,
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the proxy did not start within 30 s (its stderr is above)");
            }
        };
        Ok(EntitleProxy {
            child,
            listen,
            _dir: dir,
        })
    }

    /// The proxy's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for EntitleProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_used_cpu_time() {
        let spin = std::time::Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < Duration::from_millis(50) {
            x = x.wrapping_add(std::hint::black_box(1));
        }
        assert!(x > 0);
        assert!(process_cpu(std::process::id()).unwrap() > Duration::ZERO);
        assert!(process_cpu(u32::MAX).is_err());
    }

    #[test]
    fn rounds_rotate_and_medians_pick_the_middle() {
        assert_eq!(rotated(&[1, 2, 3], 0), [1, 2, 3]);
        assert_eq!(rotated(&[1, 2, 3], 1), [2, 3, 1]);
        assert_eq!(rotated(&[1, 2, 3], 5), [3, 1, 2]);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.0));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn options_parse_and_refuse_nonsense() {
        let parse = |s: &str| Options::parse(s.split_whitespace().map(String::from));
        let o = parse("--only proxies --rounds 2 --quick --picture-dir /tmp/p").unwrap();
        assert_eq!(o.only.as_deref(), Some("proxies"));
        assert_eq!((o.rounds, o.quick), (2, true));
        assert!(o.runs("proxies") && !o.runs("gate"));
        assert!(parse("--rounds 0").is_err());
        assert!(parse("--rounds").is_err());
        assert!(parse("--bogus").is_err());
        assert_eq!(parse("--proxy-rate 3000").unwrap().proxy_rate, Some(3000));
        assert!(parse("--proxy-rate 0").is_err());
        assert!(parse("--proxy-rate fast").is_err());
    }
}
