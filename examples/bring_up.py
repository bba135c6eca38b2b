"""Bring the stack up on an interface, print its address, and answer pings until Ctrl-C.

sudo .venv/bin/python examples/bring_up.py mip0            # DHCP
sudo .venv/bin/python examples/bring_up.py mip0 10.77.0.2/24
"""

import logging
import sys

import mipfast

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
iface = sys.argv[1] if len(sys.argv) > 1 else "mip0"
ip = sys.argv[2] if len(sys.argv) > 2 else None

with mipfast.Stack(iface, ip=ip) as stack:
    stack.wait_ready(timeout=10)
    print(f"{stack.ip}/{stack.prefix_len} via {stack.gateway}, DNS {stack.dns}; Ctrl-C to stop")
    try:
        while True:
            stack.poll(timeout=5)
    except KeyboardInterrupt:
        print(stack.counters)
