#!/usr/bin/env bash
# Builds every fuzz target and runs each for SECONDS (default 60), failing on any crash.
#
#   fuzz/run.sh [SECONDS]
#
# libFuzzer through cargo-fuzz on stable Rust: `--sanitizer none` needs no nightly (the
# coverage instrumentation, sancov, is a stable codegen pass; only the sanitizers are
# nightly, and the code under test has no unsafe). Debug assertions and overflow checks
# are on. Each target starts from its committed seeds (real inputs, fuzz/seeds/<target>/)
# and grows its own corpus in fuzz/corpus/<target>/ (kept between runs, not committed).
# A crash leaves its input in fuzz/artifacts/<target>/; replay it with
#   cargo fuzz run --sanitizer none <target> fuzz/artifacts/<target>/<file>
# Needs cargo-fuzz: cargo install cargo-fuzz --version 0.13.2 --locked
set -euo pipefail

seconds=${1:-60}
cd "$(dirname "$0")/.."

if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "cargo-fuzz is missing: cargo install cargo-fuzz --version 0.13.2 --locked" >&2
    exit 1
fi

# -a: debug assertions and overflow checks in the optimised build.
flags=(--sanitizer none -a)
cargo fuzz build "${flags[@]}"

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
status=0
for target in request plr slr return verify envelope token radius proxy_answer chain; do
    # SLR codes run up to 16 KiB; ID tokens stop at 128 bytes; the others are short.
    max_len=4096
    case $target in
        slr | verify) max_len=20000 ;;
        token) max_len=512 ;;
    esac
    mkdir -p "fuzz/corpus/$target"
    echo "== fuzz $target for ${seconds}s"
    if ! cargo fuzz run "${flags[@]}" "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
        -max_total_time="$seconds" -max_len="$max_len" -timeout=10 -rss_limit_mb=4096 \
        -print_final_stats=1 >"$logs/$target" 2>&1; then
        tail -n 40 "$logs/$target"
        echo "== fuzz $target: FAILED (a crashing input is kept in fuzz/artifacts/$target/)"
        status=1
        continue
    fi
    # Coverage as libFuzzer counts it: first and last status lines, then the totals.
    grep -E '^#[0-9]+.*(INITED|cov:)' "$logs/$target" | sed -n '1p;$p'
    grep -E '^stat::(number_of_executed_units|new_units_added|peak_rss_mb)' "$logs/$target" \
        | tr '\n' ' '
    echo
done
exit "$status"
