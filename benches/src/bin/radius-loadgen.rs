//! An open-loop UDP RADIUS load generator: holds an exact offered rate against a RADIUS
//! server, and prints `value <name> <number>` lines, an HDR latency summary and optionally
//! an SVG picture of the run (see `entitle_benches::radius_load`).
//!
//! ```text
//! radius-loadgen --target 127.0.0.1:1812 --secret testing123 --rate 5000 --seconds 10 \
//!     [--sockets 4] [--timeout-ms 1000] [--acct] [--user bob --password hello]
//!     [--svg run.svg] [--find-max 5000,10000,20000,40000] [--radclient]
//! ```
//!
//! `--find-max` steps through the rates given (lowest first) and reports the highest one
//! held (offered within 0.5% of asked, at most 0.1% unanswered). `--radclient` also drives
//! FreeRADIUS's `radclient` as hard as it goes against the same target and prints
//! `ratio loadgen_max_vs_radclient <x>`: this generator's highest held rate over the rate
//! radclient achieved.

use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use entitle_benches::radius_load::{self, Kind, LoadSpec};

struct Args {
    spec: LoadSpec,
    svg: Option<PathBuf>,
    find_max: Vec<u64>,
    radclient: bool,
}

fn parse(mut args: impl Iterator<Item = String>) -> anyhow::Result<Args> {
    let mut target = None;
    let mut secret = None;
    let mut rate = 1000;
    let mut seconds = 10.0;
    let mut sockets = 4;
    let mut timeout_ms = 1000;
    let mut kind = Kind::Access;
    let mut user = "bob".to_owned();
    let mut password = "hello".to_owned();
    let (mut svg, mut find_max, mut radclient) = (None, Vec::new(), false);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--target" => target = Some(value()?.parse().context("--target: not host:port")?),
            "--secret" => secret = Some(value()?),
            "--rate" => rate = value()?.parse().context("--rate: not a number")?,
            "--seconds" => seconds = value()?.parse().context("--seconds: not a number")?,
            "--sockets" => sockets = value()?.parse().context("--sockets: not a number")?,
            "--timeout-ms" => timeout_ms = value()?.parse().context("--timeout-ms")?,
            "--acct" => kind = Kind::Accounting,
            "--user" => user = value()?,
            "--password" => password = value()?,
            "--svg" => svg = Some(PathBuf::from(value()?)),
            "--find-max" => {
                find_max = value()?
                    .split(',')
                    .map(|r| r.trim().parse::<u64>())
                    .collect::<Result<_, _>>()
                    .context("--find-max: a comma-separated list of rates")?;
            }
            "--radclient" => radclient = true,
            "-h" | "--help" => bail!("usage: see the opening comment of radius-loadgen.rs"),
            other => bail!("unknown argument {other:?}"),
        }
    }
    let target = target.context("--target host:port is needed")?;
    let secret: String = secret.context("--secret is needed")?;
    if !(seconds > 0.0 && seconds < 3600.0) {
        bail!("--seconds must be between 0 and 3600");
    }
    let mut spec = LoadSpec::new(
        target,
        secret.as_bytes(),
        rate,
        Duration::from_secs_f64(seconds),
    );
    spec.sockets = sockets;
    spec.timeout = Duration::from_millis(timeout_ms);
    spec.kind = kind;
    spec.user = user;
    spec.password = password;
    spec.progress = true;
    Ok(Args {
        spec,
        svg,
        find_max,
        radclient,
    })
}

/// The rate radclient achieves against `spec.target`, asked for far more than it can do:
/// answers received over the wall time of the run.
pub fn radclient_rate(spec: &LoadSpec, count: u64) -> anyhow::Result<f64> {
    let attributes = format!(
        "User-Name = \"{}\", User-Password = \"{}\", NAS-IP-Address = 127.0.0.1, \
         Message-Authenticator = 0x00\n",
        spec.user, spec.password
    );
    let started = Instant::now();
    let mut child = Command::new("radclient")
        .args([
            "-q",
            "-s",
            "-c",
            &count.to_string(),
            "-n",
            "1000000",
            "-p",
            "256",
            "-r",
            "1",
            "-t",
            "2",
            &spec.target.to_string(),
            "auth",
        ])
        .arg(String::from_utf8_lossy(&spec.secret).as_ref())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot start radclient (Debian's freeradius-utils; .ci/install-peers)")?;
    if let Some(mut stdin) = child.stdin.take() {
        use std::io::Write as _;
        stdin.write_all(attributes.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    let elapsed = started.elapsed().as_secs_f64();
    let text = String::from_utf8_lossy(&out.stdout);
    // radclient -s: "Packet summary: Accepted : N  Rejected : M  Lost : L ..."
    let number_after = |label: &str| -> Option<u64> {
        let at = text.find(label)? + label.len();
        text[at..]
            .trim_start_matches([' ', ':', '\t'])
            .split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    let answered = number_after("Accepted").unwrap_or(0) + number_after("Rejected").unwrap_or(0);
    if answered == 0 {
        bail!(
            "radclient got no answers: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(answered as f64 / elapsed)
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("radius-loadgen: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let args = parse(std::env::args().skip(1))?;
    if args.find_max.is_empty() {
        let report = radius_load::run(&args.spec)?;
        report.print_values("loadgen_");
        if let Some(path) = &args.svg {
            radius_load::write_svg(
                &report,
                &format!("{}/s asked of {}", args.spec.rate, args.spec.target),
                path,
            )?;
            eprintln!("picture: {}", path.display());
        }
        return Ok(());
    }
    eprintln!("the highest rate held, of {:?}:", args.find_max);
    let best = radius_load::max_held_rate(&args.spec, args.find_max.iter().copied())?;
    let Some((rate, report)) = best else {
        bail!("not even the lowest rate was held");
    };
    println!("value loadgen_max_held_per_s {rate}");
    println!("value loadgen_rate_error {:.5}", report.rate_error());
    if let Some(path) = &args.svg {
        radius_load::write_svg(&report, &format!("{rate}/s, the highest held"), path)?;
    }
    if args.radclient {
        let count = (args.spec.duration.as_secs_f64() * 20_000.0) as u64;
        let theirs = radclient_rate(&args.spec, count.max(10_000))?;
        println!("value radclient_max_per_s {theirs:.0}");
        println!("ratio loadgen_max_vs_radclient {:.2}", rate as f64 / theirs);
    }
    Ok(())
}
