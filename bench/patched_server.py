"""An unmodified uvicorn app served through `python -m mipfast.patch` beside the same app on kernel sockets.

The server side is the same command on both sides, `python -m uvicorn … app:app` (a tiny ASGI app answering
3 bytes), in its own process: once under `python -m mipfast.patch -i <lab interface> -m uvicorn …` (its
listening socket on the stack, each accepted connection a bridged socket), once on a kernel address (a veth
pair between two namespaces, the kernel's offloads at their defaults). `wrk -c 50` (keep-alive) runs in the
client's namespace. Rounds interleave the two; medians of requests per second. Run as root:
`sudo .venv/bin/python bench/patched_server.py [--rounds 5]`. Asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from tcp_bulk import KernelPair  # noqa: E402

from mipfast._lab import Lab  # noqa: E402

APP = """\
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", b"3")]})
    await send({"type": "http.response.body", "body": b"hi\\n"})
"""


def wrk(netns: str, url: str, seconds: int) -> float:
    out = subprocess.run(
        ["ip", "netns", "exec", netns, "wrk", "-t", "1", "-c", "50", "-d", f"{seconds}s", url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(next(line for line in out.splitlines() if "Requests/sec" in line).split()[-1])


def wait_served(netns: str, url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    curl = ["ip", "netns", "exec", netns, "curl", "-s", "-m", "1", url]
    while subprocess.run(curl, capture_output=True).returncode:
        if server.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the server did not come up at {url}")
        time.sleep(0.2)


def serve(command: list[str], netns: str, url: str, seconds: int) -> float:
    server = subprocess.Popen(command)
    try:
        wait_served(netns, url, server)
        return wrk(netns, url, seconds)
    finally:
        server.terminate()
        server.wait(20)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--seconds", type=int, default=5, help="wrk's duration per round")
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as app_dir:
        (Path(app_dir) / "bench_app.py").write_text(APP)
        uvicorn = ["-m", "uvicorn", "--app-dir", app_dir, "--host", "0.0.0.0", "--port", "8000"]
        uvicorn += ["--log-level", "warning", "bench_app:app"]
        results: dict[str, list[float]] = {"stack": [], "kernel": []}
        with (
            Lab(netns="mipfast-bench-ps", iface="mfps", peer="mfps-p", dhcp=False) as lab,
            KernelPair(offloads=True, tag="ps") as pair,
        ):
            patch = ["-m", "mipfast.patch", "-i", lab.iface, "--ip", "10.77.0.2/24"]
            patched = [sys.executable, *patch, *uvicorn]
            kernel = ["ip", "netns", "exec", pair.A, sys.executable, *uvicorn]
            for r in range(a.rounds):
                stack_rps = serve(patched, lab.netns, "http://10.77.0.2:8000/", a.seconds)
                kernel_rps = serve(kernel, pair.B, f"http://{pair.net}.1:8000/", a.seconds)
                results["stack"].append(stack_rps)
                results["kernel"].append(kernel_rps)
                print(f"round {r + 1}: stack {stack_rps:,.0f}, kernel {kernel_rps:,.0f} req/s", flush=True)
    stack, kernel = (statistics.median(results[k]) for k in ("stack", "kernel"))
    print(
        f"uvicorn, wrk -c 50 keep-alive, medians of {a.rounds}: stack (patched) {stack:,.0f} req/s, "
        f"kernel {kernel:,.0f} req/s, ratio {stack / kernel:.2f}x"
    )


if __name__ == "__main__":
    main()
