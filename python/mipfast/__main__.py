"""python -m mipfast: run the stack on an interface until Ctrl-C."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence

import mipfast

log = logging.getLogger("mipfast")


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
    p.add_argument("--pcap-out", help="record every frame in and out to this .pcap file")
    p.add_argument(
        "--busy-poll-us", type=int, default=0, help="spin this long after activity before sleeping"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
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
        )
    except PermissionError as e:
        print(f"mipfast: {e}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as e:
        print(f"mipfast: {e}", file=sys.stderr)
        return 2
    try:
        if lab is not None:
            stack.wait_ready(timeout=30)
            netns = lab.netns
            print(
                f"mipfast is up on {iface} with {stack.ip}. Reach it from the lab namespace:\n"
                f"  sudo ip netns exec {netns} ping {stack.ip}\n"
                f"  sudo ip netns exec {netns} arp -n   # or: ip neigh\n"
                "Ctrl-C stops the stack and removes the lab.",
                flush=True,
            )
        while True:
            stack.poll(timeout=1.0)
    except KeyboardInterrupt:
        log.info("stopping")
        return 0
    except TimeoutError as e:
        print(f"mipfast: {e}", file=sys.stderr)
        return 1
    finally:
        stack.close()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    mipfast.reset_logging()
    if args.list:
        for name in mipfast.interfaces():
            print(name)
        return 0
    _stop_on_sigterm()
    if args.lab:
        from .lab import Lab, LabError

        lab = Lab()
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
