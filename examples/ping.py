"""ping through mipfast: `sudo python examples/ping.py -i IFACE [--ip CIDR] [-c N] [-s SIZE] HOST`.

Prints one line per echo request like ping(8) and a summary; exits 1 if no reply came.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import mipfast


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("host", help="IPv4 address or name (resolved through the stack)")
    p.add_argument("-i", "--iface", required=True, help="interface the stack owns")
    p.add_argument("--ip", help="static address with prefix (default: DHCP)")
    p.add_argument("--gw", help="default gateway, with --ip")
    p.add_argument("--dns", action="append", help="DNS server (repeatable)")
    p.add_argument("-c", "--count", type=int, default=4)
    p.add_argument("-s", "--size", type=int, default=56, help="data bytes per request")
    p.add_argument("-W", "--timeout", type=float, default=1.0, help="seconds to wait for each reply")
    args = p.parse_args()
    with mipfast.Stack(args.iface, ip=args.ip, gateway=args.gw, dns=args.dns) as stack:
        stack.wait_ready(timeout=10)
        target = stack.resolve(args.host)[0]
        print(f"PING {args.host} ({target}) {args.size} data bytes from {stack.ip}")
        rtts: list[float] = []
        for seq in range(args.count):
            (rtt,) = stack.ping(target, count=1, timeout=args.timeout, size=args.size)
            if rtt is None:
                print(f"no reply from {target}: seq={seq}")
            else:
                rtts.append(rtt * 1000)
                print(f"{args.size + 8} bytes from {target}: seq={seq} time={rtt * 1000:.3f} ms")
        lost = args.count - len(rtts)
        print(f"--- {args.host} ping statistics ---")
        print(f"{args.count} transmitted, {len(rtts)} received, {100 * lost / max(1, args.count):.0f}% loss")
        if rtts:
            print(f"rtt min/avg/max = {min(rtts):.3f}/{statistics.mean(rtts):.3f}/{max(rtts):.3f} ms")
    return 0 if rtts else 1


if __name__ == "__main__":
    sys.exit(main())
