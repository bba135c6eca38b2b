"""Rules shared by the tests."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def skip_or_fail(reason: str) -> None:
    """Skip on a developer's machine that lacks something; under CI=true,
    where .ci/run installs everything, a missing piece is a failure."""
    if IN_CI:
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


@contextmanager
def peer_checksum_offload_off(lab) -> Iterator[None]:
    """The kernel side's TX checksum offload (and so TSO) off for a while, as
    the libpcap path needs; restored after if the lab runs with offloads."""
    subprocess.run(lab.ns("ethtool", "-K", lab.peer, "tx", "off"), check=True, capture_output=True)
    try:
        yield
    finally:
        if lab.offloads:
            subprocess.run(lab.ns("ethtool", "-K", lab.peer, "tx", "on"), check=True, capture_output=True)
