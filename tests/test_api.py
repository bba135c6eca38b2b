"""The Python face without a network: arguments, errors, interface listing."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys

import pytest
from helpers import skip_or_fail

import mipfast


def test_interfaces_lists_loopback():
    names = mipfast.interfaces()
    assert "lo" in names
    assert all(isinstance(n, str) for n in names)


def test_missing_interface_names_it_and_lists_the_others():
    with pytest.raises(OSError) as info:
        mipfast.Stack("no-such-if0")
    assert info.value.errno == errno.ENODEV
    assert "no-such-if0" in str(info.value)
    assert "lo" in str(info.value)
    assert not isinstance(info.value, PermissionError)


@pytest.mark.parametrize("device", ["auto", "pcap"])
def test_the_loopback_interface_is_refused_as_no_ethernet(device):
    """A stack speaks Ethernet and ARP: on loopback it would open and hear nothing."""
    loopback = next(n for n in mipfast.interfaces() if n.startswith("lo"))
    with pytest.raises(ValueError, match=f"{loopback} is not an Ethernet interface"):
        mipfast.Stack(loopback, ip="10.99.0.2/24", device=device)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"mac": "zz:00:01:02:03:77"},
        {"mac": "02:00:01:02:03"},
        {"mac": "ff:ff:ff:ff:ff:ff"},
        {"ip": "10.77.0.2"},
        {"ip": "10.77.0.2/33"},
        {"ip": "10.77.0.0/24"},
        {"ip": "300.1.1.1/24"},
        {"ip": "10.77.0.2/24", "gateway": "10.78.0.1"},
        {"ip": "10.77.0.2/24", "gateway": "nonsense"},
        {"ip": "10.77.0.2/24", "dns": "1.2.3"},
        {"ip": "10.77.0.2/24", "dns": 5},
        {"gateway": "10.77.0.1"},
    ],
)
def test_bad_configuration_is_a_value_error(kwargs):
    with pytest.raises(ValueError):
        mipfast.Stack("lo", **kwargs)


def test_no_permission_says_how_to_fix():
    code = (
        "import mipfast\n"
        "try:\n"
        "    mipfast.Stack('lo')\n"
        "except PermissionError as e:\n"
        "    print('PermissionError', e)\n"
    )
    cmd = [sys.executable, "-c", code]
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            skip_or_fail("root without setpriv cannot drop CAP_NET_RAW")
        cmd = ["setpriv", "--bounding-set", "-net_raw,-net_admin", *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30).stdout
    assert out.startswith("PermissionError"), out
    assert "CAP_NET_RAW" in out and "root" in out


def test_closed_stack_raises_instead_of_crashing(lab):
    stack = mipfast.Stack(lab.iface, ip="10.77.0.2/24")
    stack.close()
    stack.close()  # idempotent
    assert stack.closed
    with pytest.raises(OSError) as info:
        stack.poll(0)
    assert info.value.errno == errno.EBADF
    with pytest.raises(OSError):
        _ = stack.ip
    assert "closed" in repr(stack)


def test_bad_timeout_is_a_value_error(lab):
    with mipfast.Stack(lab.iface, ip="10.77.0.2/24") as stack:
        with pytest.raises(ValueError):
            stack.poll(-1)
        with pytest.raises(ValueError):
            stack.wait_ready(float("nan"))
