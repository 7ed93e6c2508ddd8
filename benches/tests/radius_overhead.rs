//! `radius-overhead --quick --only proxies` against the real peers (FreeRADIUS,
//! radsecproxy): every line it prints parses, and each figure the part promises is there and
//! possible. Not a measure: `--quick` figures mean nothing, and nothing here is timed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::process::Command;

#[test]
fn the_proxies_part_prints_every_figure() {
    let pictures = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_radius-overhead"))
        .args([
            "--quick",
            "--rounds",
            "1",
            "--only",
            "proxies",
            "--picture-dir",
        ])
        .arg(pictures.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");

    let mut figures = BTreeMap::new();
    for line in stdout.lines() {
        if line.starts_with("part proxies: load average") {
            continue;
        }
        let fields: Vec<&str> = line.split_whitespace().collect();
        assert!(
            fields.len() == 3 && (fields[0] == "value" || fields[0] == "ratio"),
            "not a figure line: {line:?}"
        );
        let number: f64 = fields[2]
            .parse()
            .unwrap_or_else(|_| panic!("not a number: {line:?}"));
        assert!(number.is_finite(), "{line:?}");
        figures.insert(fields[1].to_owned(), number);
    }
    for name in [
        "proxy_cpu_vs_radsecproxy_3k",
        "proxy_cpu_vs_radsecproxy_max",
        "proxy_cpu_vs_freeradius_3k",
        "proxy_cpu_vs_freeradius_max",
        "proxy_added_p99_vs_radsecproxy",
    ] {
        assert!(figures[name] >= 0.0, "{name}: {stdout}");
    }
    for proxy in ["entitle", "radsecproxy", "freeradius"] {
        assert!(
            figures[&format!("proxy_max_rate_{proxy}")] >= 500.0,
            "{stdout}"
        );
        assert!(
            figures[&format!("proxy_cpu_us_3k_{proxy}")] >= 0.0,
            "{stdout}"
        );
        assert!(figures.contains_key(&format!("proxy_added_p99_us_{proxy}")));
        let picture = pictures.path().join(format!("proxy-3k-{proxy}.svg"));
        assert!(picture.exists(), "no {}", picture.display());
    }
}
