#!/usr/bin/env bash
# Sets up (scripts/setup.sh), checks the helpers and the lint, then runs the
# engine's Rust tests (debug and release), every fuzz target briefly, and the
# Python tests, lab included. Run as root: the lab creates namespaces and veth
# pairs.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
echo "== helpers run with sys.executable, never an interpreter found by name"
.venv/bin/python scripts/check_interpreters.py
echo "== lint: cargo fmt, clippy (engine and bindings), ruff"
cargo fmt --check
cargo fmt --check --manifest-path fuzz/Cargo.toml
cargo clippy --all-targets -- -D warnings
cargo clippy --all-targets --features python -- -D warnings
.venv/bin/python -m ruff check .
.venv/bin/python -m ruff format --check .
echo "== the portable build on Linux (MIPFAST_PORTABLE_BUILD=1: the code macOS compiles, libpcap alone): clippy, cargo test"
MIPFAST_PORTABLE_BUILD=1 cargo clippy --all-targets --features python --target-dir target/portable -- -D warnings
MIPFAST_PORTABLE_BUILD=1 cargo test --target-dir target/portable
echo "== cargo test (debug: overflow checks and the engine's invariant checks on)"
cargo test
echo "== cargo test --release"
cargo test --release
echo "== fuzz every target briefly (a regression in a parser shows here)"
bash scripts/fuzz.sh "${FUZZ_SECONDS:-60}"
echo "== the manylinux2014 wheel (scripts/wheel.sh), installed: the suite tests what users install"
bash scripts/wheel.sh
.venv/bin/python -m pip install -q --force-reinstall --no-deps dist/mipfast-*-manylinux*.whl
echo "== stubtest: the installed extension matches its stubs"
.venv/bin/python -m mypy.stubtest mipfast._native
echo "== mypy --strict on the package's source"
.venv/bin/python -m mypy --strict python/mipfast
echo "== mypy --strict on examples/ against the installed package"
.venv/bin/python -m mypy --strict examples/
echo "== pytest"
set +e
.venv/bin/python -m pytest -v -ra tests
status=$?
if [ "$status" = 0 ]; then
    # The portable device path (libpcap alone, what macOS runs) under the whole suite again.
    echo "== pytest, MIPFAST_DEVICE=pcap"
    MIPFAST_DEVICE=pcap .venv/bin/python -m pytest -q -ra tests
    status=$?
fi
if [ "$status" = 0 ]; then
    # macOS's shape, as its CI job runs it: the peer is this host itself (a veth pair without a
    # namespace, as feth there), static addresses, libpcap alone; tests that need the Linux lab are deselected (the passes above ran them).
    echo "== pytest, MIPFAST_LAB=host MIPFAST_DEVICE=pcap (the macOS job's selection and shape)"
    MIPFAST_LAB=host MIPFAST_DEVICE=pcap .venv/bin/python -m pytest -q -ra tests
    status=$?
fi
set -e
# pytest exits 5 when it collected nothing: that is a failure here.
if [ "$status" = 5 ]; then
    echo "pytest ran no test" >&2
    exit 1
fi
exit "$status"
