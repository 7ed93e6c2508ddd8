//! `radius-overhead`: what entitle costs on the RADIUS path, beside the peers, in one run
//! with rounds alternated (issue 11; see `entitle_benches::radius_overhead`).
//!
//! ```text
//! cargo run --release -p entitle-benches --bin radius-overhead -- \
//!     [--only PART] [--rounds N] [--quick] [--picture-dir DIR] [--proxy-rate N]
//! ```
//!
//! `--proxy-rate N` runs the proxies part at that one rate only (no search for the
//! highest), to compare two builds of the proxy in a couple of minutes.
//!
//! Each part prints `value <name> <number>` and `ratio <name> <number>` lines on stdout,
//! progress on stderr. `--quick` runs every part for a second or so, to check the
//! machinery; its figures mean nothing.

use std::process::ExitCode;

use entitle_benches::radius_overhead::{self, Options, load_average};

/// A part of the run: its name (for `--only`) and what runs it.
type Part = (&'static str, fn(&Options) -> anyhow::Result<()>);

/// The parts, in the order they run.
const PARTS: &[Part] = &[
    ("proxies", radius_overhead::proxies::run),
    ("gate", radius_overhead::gate::run),
    ("accuracy", radius_overhead::accuracy::run),
];

fn main() -> ExitCode {
    // The proxy under test is this binary re-executed (see serve_proxy_if_asked).
    if let Some(code) = radius_overhead::serve_proxy_if_asked() {
        return code;
    }
    let options = match Options::parse(std::env::args().skip(1)) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("radius-overhead: {e:#}");
            return ExitCode::from(64);
        }
    };
    if let Some(only) = &options.only
        && !PARTS.iter().any(|(name, _)| name == only)
    {
        let names: Vec<_> = PARTS.iter().map(|(name, _)| *name).collect();
        eprintln!("radius-overhead: no part {only:?}; the parts are {names:?}");
        return ExitCode::from(64);
    }
    for (name, run) in PARTS.iter().filter(|(name, _)| options.runs(name)) {
        println!(
            "part {name}: load average (1, 5, 15 min) before: {}",
            load_average()
        );
        if let Err(e) = run(&options) {
            eprintln!("radius-overhead: {name}: {e:#}");
            return ExitCode::FAILURE;
        }
        println!(
            "part {name}: load average (1, 5, 15 min) after: {}",
            load_average()
        );
    }
    ExitCode::SUCCESS
}
