#!/usr/bin/env bash
# Sets up (scripts/setup.sh), then runs the engine's Rust tests and the Python
# tests, lab included. Run as root: the lab creates namespaces and veth pairs.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/setup.sh
echo "== cargo test"
cargo test --release
echo "== pytest"
set +e
.venv/bin/python -m pytest -v -ra tests
status=$?
set -e
# pytest exits 5 when it collected nothing: that is a failure here.
if [ "$status" = 5 ]; then
    echo "pytest ran no test" >&2
    exit 1
fi
exit "$status"
