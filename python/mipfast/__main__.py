"""python -m mipfast: run the stack on an interface until Ctrl-C."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import ssl
import sys
import time
from collections.abc import Sequence
from typing import Any

import mipfast
from mipfast.dashboard.auth import generate_password

log = logging.getLogger("mipfast")

#: The Rust engine's loggers (the `log` crate's targets, through pyo3-log).
ENGINE_LOGGERS = ("mipfast.socket", "mipfast.iface", "mipfast.wire", "mipfast.stack", "mipfast.runtime")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m mipfast",
        description="Run the mipfast TCP/IP stack on a network interface (DHCP unless --ip is given).",
    )
    p.add_argument("-i", "--iface", help="interface to own, e.g. a veth end")
    p.add_argument("--mac", help=f"the stack's own MAC (default {mipfast.DEFAULT_MAC})")
    p.add_argument("--ip", help="static address with prefix, e.g. 10.77.0.2/24 (default: DHCP)")
    p.add_argument("--gw", help="default gateway, with --ip")
    p.add_argument("--dns", action="append", help="DNS server, with --ip (repeatable)")
    p.add_argument("--bpf", help="pcap filter applied to incoming frames")
    p.add_argument(
        "--device",
        choices=("auto", "pcap"),
        help="how frames leave: auto (Linux: our own packet socket) or pcap (libpcap alone, as on macOS)",
    )
    p.add_argument("--pcap-out", help="record every frame in and out to this .pcap file")
    p.add_argument(
        "--busy-poll-us", type=int, default=0, help="spin this long after activity before sleeping"
    )
    p.add_argument(
        "-v", "--verbose", action="count", default=0, help="-v: debug logging, -vv: the engine's too"
    )
    p.add_argument(
        "--mdns",
        default="mipfast",
        metavar="NAME",
        help="answer as NAME.local by multicast DNS, and name the host so to DHCP (default mipfast)",
    )
    p.add_argument("--no-mdns", action="store_true", help="no multicast DNS responder")
    p.add_argument(
        "--no-ipv6",
        action="store_true",
        help="leave IPv6 alone (by default: link-local address, SLAAC, ping)",
    )
    p.add_argument("--version", action="version", version=f"mipfast {mipfast.__version__}")
    web = p.add_argument_group("dashboard (served by the stack itself)")
    web.add_argument("--http-port", type=int, default=8000, help="dashboard port (default 8000)")
    web.add_argument("--no-http", action="store_true", help="no dashboard")
    web.add_argument("--https-port", type=int, help="also serve the dashboard over TLS on this port")
    web.add_argument("--cert", help="certificate chain (PEM) for --https-port")
    web.add_argument("--key", help="private key (PEM) for --https-port")
    web.add_argument("--admin-password", help="password of the admin account (default: generated)")
    web.add_argument("--user-password", help="password of the read-only user account (default: generated)")
    web.add_argument(
        "--password-file",
        help="a file of 'admin:PASSWORD' and 'user:PASSWORD' lines (instead of the two above)",
    )
    web.add_argument("--mqtt", metavar="mqtt://HOST[:PORT]", help="connect the MQTT console to this broker")
    web.add_argument(
        "--mqtt-topic", default="mipfast/device", help="the console's topic (default mipfast/device)"
    )
    web.add_argument("--max-clients", type=int, default=64, help="concurrent dashboard clients (default 64)")
    p.add_argument("--list", action="store_true", help="list interfaces and exit")
    p.add_argument(
        "--lab",
        action="store_true",
        help="create a veth pair + namespace with a DHCP server (root) and run the stack on it",
    )
    return p


def _stop_on_sigterm() -> None:
    def raise_interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, raise_interrupt)


def _passwords(args: argparse.Namespace) -> tuple[dict[str, str], list[str]]:
    """The accounts' passwords, and the names of those generated here (to print once)."""
    given: dict[str, str] = {}
    if args.password_file:
        with open(args.password_file) as f:
            for n, line in enumerate(f, 1):
                line = line.strip()
                if not line or line.startswith("#"):
                    continue
                name, sep, password = line.partition(":")
                if not sep or name not in ("admin", "user") or not password:
                    raise ValueError(
                        f"{args.password_file}:{n}: expected 'admin:PASSWORD' or 'user:PASSWORD'"
                    )
                given[name] = password
    if args.admin_password:
        given["admin"] = args.admin_password
    if args.user_password:
        given["user"] = args.user_password
    generated = [name for name in ("admin", "user") if name not in given]
    for name in generated:
        given[name] = generate_password()
    return given, generated


def _tls_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    if args.https_port is None:
        return None
    if not (args.cert and args.key):
        raise ValueError("--https-port needs --cert and --key")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(args.cert, args.key)
    return ctx


async def _serve_dashboard(stack: mipfast.Stack, args: argparse.Namespace, summary: dict[str, Any]) -> None:
    from . import dashboard

    passwords, generated = _passwords(args)
    server = await dashboard.serve(
        stack,
        args.http_port,
        passwords,
        https_port=args.https_port,
        tls=_tls_context(args),
        limits=dashboard.Limits(max_clients=args.max_clients),
        mqtt_url=args.mqtt,
        mqtt_topic=args.mqtt_topic,
    )
    summary["server"] = server
    loop = asyncio.get_running_loop()
    while not stack.ready:  # DHCP: the READY line comes first
        await loop.run_in_executor(None, stack.poll, 0.5)
    urls = [f"http://{stack.ip}:{args.http_port}/"]
    if args.https_port is not None:
        urls.append(f"https://{stack.ip}:{args.https_port}/")
    print(f"Dashboard: {' '.join(urls)}", flush=True)
    for name in generated:  # on the terminal once; never logged
        print(f"  {name} password: {passwords[name]}", flush=True)
    if not args.no_mdns:
        for _ in range(40):  # probing and the first announcement take about a second
            if stack.mdns_name:
                print(f"mDNS: http://{stack.mdns_name}:{args.http_port}/", flush=True)
                break
            await asyncio.sleep(0.25)
    if not args.no_ipv6:
        for _ in range(40):  # duplicate address detection takes one to two seconds
            if stack.ipv6_addresses:
                print(f"IPv6: {' '.join(stack.ipv6_addresses)}", flush=True)
                break
            await asyncio.sleep(0.25)
    await asyncio.Event().wait()


async def _serve_mqtt(stack: mipfast.Stack, args: argparse.Namespace, summary: dict[str, Any]) -> None:
    """``--no-http --mqtt``: the device's MQTT link (status published, messages kept) without the page."""
    from . import dashboard

    summary["server"] = await dashboard.serve(stack, None, {}, mqtt_url=args.mqtt, mqtt_topic=args.mqtt_topic)
    print(f"MQTT: {args.mqtt}, topic {args.mqtt_topic} (status on {args.mqtt_topic}/status)", flush=True)
    await asyncio.Event().wait()


def _services(args: argparse.Namespace) -> list[tuple[str, str, int, dict[str, str]]]:
    """What mDNS announces by DNS-SD: the dashboard, as browsers and `avahi-browse` list it."""
    if args.no_mdns or args.no_http:
        return []
    services = [(f"{args.mdns} dashboard", "_http._tcp", args.http_port, {"path": "/"})]
    if args.https_port is not None:
        services.append((f"{args.mdns} dashboard", "_https._tcp", args.https_port, {"path": "/"}))
    return services


def _run_stack(args: argparse.Namespace, iface: str, lab: object | None = None) -> int:
    try:
        stack = mipfast.Stack(
            iface,
            mac=args.mac,
            ip=args.ip,
            gateway=args.gw,
            dns=args.dns,
            bpf=args.bpf,
            pcap_out=args.pcap_out,
            busy_poll_us=args.busy_poll_us,
            device=args.device,
            mdns=None if args.no_mdns else args.mdns,
            services=_services(args),
            ipv6=not args.no_ipv6,
        )
    except PermissionError as e:
        print(f"mipfast: {e}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as e:
        print(f"mipfast: {e}", file=sys.stderr)
        return 2
    started = time.monotonic()
    summary: dict[str, Any] = {}
    try:
        if lab is not None:
            stack.wait_ready(timeout=30)
            print(lab.describe(stack.ip, args.http_port), flush=True)  # type: ignore[attr-defined]
        if args.no_http and args.mqtt is None:
            while True:
                stack.poll(timeout=1.0)
        elif args.no_http:
            asyncio.run(_serve_mqtt(stack, args, summary))
        else:
            asyncio.run(_serve_dashboard(stack, args, summary))
        return 0
    except KeyboardInterrupt:
        _print_summary(stack, started, summary)
        return 0
    except socket.timeout as e:  # no address in time (an OSError: before the next clause)
        print(f"mipfast: {e}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as e:
        print(f"mipfast: {e}", file=sys.stderr)
        return 2
    finally:
        stack.close()


def _print_summary(stack: mipfast.Stack, started: float, summary: dict[str, Any]) -> None:
    """The one line Ctrl-C leaves: uptime, frames, connections served."""
    up = int(time.monotonic() - started)
    try:
        c = stack.counters
        frames = f"frames in {c['frames_in']}, out {c['frames_out']}"
    except OSError:
        frames = "frames unknown"
    server = summary.get("server")
    served = f", {server.http.connections} dashboard connections served" if server else ""
    print(
        f"mipfast: stopped after {up // 3600}h{up % 3600 // 60:02d}m{up % 60:02d}s, {frames}{served}",
        flush=True,
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if args.verbose == 1:  # the engine's per-segment debugging only with -vv
        for engine in ENGINE_LOGGERS:
            logging.getLogger(engine).setLevel(logging.INFO)
    mipfast.reset_logging()
    if args.list:
        for name in mipfast.interfaces():
            print(name)
        return 0
    _stop_on_sigterm()
    if args.lab:
        from ._lab import FethLab, Lab, LabError

        if sys.platform == "darwin":
            lab = FethLab()
            args.ip = args.ip or lab.stack_cidr
        else:
            # The libpcap path needs the peer's checksum offload off (as Stack, MIPFAST_DEVICE counts).
            device = args.device or os.environ.get("MIPFAST_DEVICE", "auto")
            lab = Lab(host_access=True, offloads=device != "pcap", ipv6=not args.no_ipv6)
        try:
            lab.up()
        except LabError as e:
            lab.down()
            print(f"mipfast: {e}", file=sys.stderr)
            return 1
        try:
            return _run_stack(args, lab.iface, lab)
        finally:
            lab.down()
    if not args.iface:
        _parser().print_usage(sys.stderr)
        print("mipfast: give an interface with -i IFACE (see --list), or try --lab", file=sys.stderr)
        return 2
    return _run_stack(args, args.iface)


if __name__ == "__main__":
    sys.exit(main())
