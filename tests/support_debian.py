"""Test support: a tool from a Debian package, installed with apt-get when missing.

Tests that need an outside program (Chromium for the web pages, ``promtool`` for the
alert rules) install it themselves, so ``make test`` on a fresh machine runs them
instead of skipping: a check that always skips in CI proves nothing. Installing needs
root and apt-get; without either the test is skipped and says why.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

import pytest

#: apt-get's own limit; a package list and one package download take well under it.
APT_TIMEOUT_S = 900
#: Held while installing: ``make test``'s two pytest processes may both need a package,
#: and a second apt-get would fail on dpkg's lock (and skip its test) instead of waiting.
_APT_LOCK = Path("/tmp/batchline-tests-apt.lock")


def debian_binary(binary: str, package: str) -> str:
    """The path of ``binary``, installing Debian's ``package`` first when it is missing."""
    found = shutil.which(binary)
    if found:
        return found
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        pytest.skip(f"{binary} is not installed, and installing {package} needs root and apt-get")
    with _APT_LOCK.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        # The other process may have installed it while this one waited.
        if not shutil.which(binary):
            _apt_install(package)
    return shutil.which(binary) or pytest.skip(f"apt-get installed no {binary} binary")


def _apt_install(package: str) -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", package]
    for command in (["apt-get", "update", "-qq"], install):
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=APT_TIMEOUT_S
        )
        if done.returncode != 0:
            pytest.skip(f"apt-get could not install {package}: {done.stderr.strip()[-300:]}")
