#!/usr/bin/env bash
# macOS: the stack on a feth pair, as the seed's first setup. feth0 is the stack's, feth1
# the host kernel's (10.79.0.1/24); the host pings the stack and fetches its dashboard.
# Usage (root): bash scripts/macos_smoke.sh PYTHON
set -euo pipefail
PY=${1:-python3}
cleanup() {
    [ -n "${STACK_PID:-}" ] && kill -INT "$STACK_PID" 2>/dev/null && wait "$STACK_PID" || true
    ifconfig feth0 destroy 2>/dev/null || true
    ifconfig feth1 destroy 2>/dev/null || true
}
trap cleanup EXIT
ifconfig feth0 destroy 2>/dev/null || true
ifconfig feth1 destroy 2>/dev/null || true
ifconfig feth0 create
ifconfig feth1 create
ifconfig feth0 peer feth1
ifconfig feth1 inet 10.79.0.1/24 up
ifconfig feth0 up
"$PY" -c 'import mipfast; print("mipfast", mipfast.__version__)'
"$PY" -m mipfast -i feth0 --ip 10.79.0.2/24 --admin-password smoke --user-password smoke >stack.log 2>&1 &
STACK_PID=$!
for _ in $(seq 50); do grep -q "Dashboard:" stack.log && break; sleep 0.2; done
cat stack.log
ping -c 3 -t 10 10.79.0.2
code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 http://10.79.0.2:8000/login)
[ "$code" = 200 ] || { echo "dashboard answered $code" >&2; exit 1; }
curl -sf --max-time 10 -H 'Content-Type: application/json' \
    -d '{"username":"user","password":"smoke"}' http://10.79.0.2:8000/api/login
echo
kill -INT "$STACK_PID"; wait "$STACK_PID" || true; STACK_PID=
ifconfig feth0 destroy; ifconfig feth1 destroy

# `python -m mipfast --lab` makes its own feth pair (static 10.77.0.2) and removes it on Ctrl-C.
"$PY" -m mipfast --lab --admin-password smoke >lab.log 2>&1 &
STACK_PID=$!
for _ in $(seq 50); do grep -q "Dashboard:" lab.log && break; sleep 0.2; done
cat lab.log
ping -c 3 -t 10 10.77.0.2
curl -sf --max-time 10 -o /dev/null http://10.77.0.2:8000/login
kill -INT "$STACK_PID"; wait "$STACK_PID"; STACK_PID=
tail -1 lab.log | grep -q "mipfast: stopped after"
if ifconfig feth0 >/dev/null 2>&1; then echo "--lab left feth0 behind" >&2; exit 1; fi
echo "macOS smoke test passed"
