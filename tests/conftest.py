"""The lab fixture: a veth pair + network namespace with dnsmasq and the Linux
kernel as the peer. Without root or netns the lab tests skip, except under
CI=true, where a missing lab is a failure."""

from __future__ import annotations

import logging
import os
import subprocess

import pytest
from helpers import skip_or_fail

import mipfast
from mipfast.lab import Lab, LabError, missing_tools


def _lab_problem() -> str | None:
    if os.geteuid() != 0:
        return "the lab needs root"
    missing = missing_tools()
    if missing:
        return f"the lab needs {', '.join(missing)}"
    probe = f"mftprobe{os.getpid() % 10000}"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if r.returncode != 0:
        return f"cannot create a network namespace: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


@pytest.fixture(scope="session")
def lab():
    problem = _lab_problem()
    if problem:
        skip_or_fail(problem)
    tag = os.getpid() % 100000
    lab = Lab(netns=f"mipfast-test-{tag}", iface=f"mft{tag}a", peer=f"mft{tag}b")
    try:
        lab.up()
    except LabError as e:
        lab.down()
        skip_or_fail(str(e))
    yield lab
    lab.down()


@pytest.fixture(autouse=True)
def _mipfast_logging():
    logging.getLogger("mipfast").setLevel(logging.DEBUG)
    mipfast.reset_logging()
    yield
