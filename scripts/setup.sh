#!/usr/bin/env bash
# Installs what mipfast needs on a Debian/Ubuntu machine and builds it into .venv.
# Run as root (it uses apt-get). Needs a Rust toolchain (cargo) on PATH.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
    echo "setup.sh installs Debian packages: run it as root (sudo bash scripts/setup.sh)" >&2
    exit 1
fi
command -v cargo >/dev/null || { echo "setup.sh needs a Rust toolchain (https://rustup.rs)" >&2; exit 1; }

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
    libpcap-dev iproute2 dnsmasq-base ethtool iputils-ping tcpdump busybox procps kmod curl ca-certificates iptables openssl mosquitto mosquitto-clients wrk \
    python3-venv >/dev/null 2>&1 || apt-get install -y -qq --no-install-recommends \
    libpcap-dev iproute2 dnsmasq-base ethtool iputils-ping tcpdump busybox procps kmod curl ca-certificates iptables openssl mosquitto mosquitto-clients wrk

# The real-browser test's chromium: Debian packages it; Ubuntu only as a snap, where the
# test uses Google Chrome if it is installed (GitHub's Ubuntu images have it).
apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 \
    || echo "setup: no chromium package here; the browser test needs chromium or google-chrome" >&2

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q ".[test]" scapy
echo "mipfast installed in $(pwd)/.venv"
