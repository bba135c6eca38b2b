#!/usr/bin/env bash
# Runs every cargo-fuzz target in fuzz/ for SECONDS each (default 60), from
# the committed seeds (fuzz/seeds/TARGET) plus what earlier runs here found
# (fuzz/corpus/TARGET, not committed). Debug assertions are on, so the TCP
# connection's invariant checks run too. A crash fails the run; its input is
# left in fuzz/artifacts/TARGET and belongs in a regression test in rust/tests/.
# Needs the nightly toolchain (cargo +nightly) and cargo-fuzz (installed here
# from crates.io if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-60}

if ! cargo +nightly --version >/dev/null 2>&1; then
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
fi

targets=$(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^mipfast-fuzz$')
cd fuzz
cargo +nightly fuzz build -O --debug-assertions
summary=()
for t in $targets; do
    mkdir -p "corpus/$t"
    if [ -d "seeds/$t" ]; then
        cp -n seeds/"$t"/* "corpus/$t/" 2>/dev/null || true
    fi
    echo "== fuzz $t for ${SECONDS_EACH}s"
    log=$(mktemp)
    if ! cargo +nightly fuzz run -O --debug-assertions "$t" "corpus/$t" -- \
        -max_total_time="$SECONDS_EACH" -rss_limit_mb=4096 -print_final_stats=1 >"$log" 2>&1; then
        tail -60 "$log"
        echo "fuzz target $t failed: see fuzz/artifacts/$t" >&2
        exit 1
    fi
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1)
    summary+=("$t: $done_line")
    rm -f "$log"
done
echo "== fuzz summary (${SECONDS_EACH}s each)"
printf '%s\n' "${summary[@]}"
