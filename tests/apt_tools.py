"""System programs some tests drive (Chromium, pdflatex): found on PATH or installed with apt.

``require(binary, package)`` returns the program's path. When it is missing and this
process is root with apt-get, it installs Debian's ``package``; only where that cannot
happen does it skip the calling test, saying why.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

INSTALL_TIMEOUT_S = 900


def require(binary: str, package: str) -> str:
    """Path of ``binary``; installs Debian's ``package`` first if needed (or skips, with the reason)."""
    path = shutil.which(binary)
    if path:
        return path
    if shutil.which("apt-get") is None:
        pytest.skip(f"{binary} is not installed and this system has no apt-get to install {package}")
    if os.geteuid() != 0:
        pytest.skip(f"{binary} is not installed and installing Debian's {package} needs root")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for cmd in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "--no-install-recommends", package]):
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=INSTALL_TIMEOUT_S)
        if proc.returncode != 0:
            pytest.skip(f"{binary} is not installed and `{' '.join(cmd)}` failed: {proc.stderr.strip()[-300:]}")
    path = shutil.which(binary)
    if path is None:
        raise AssertionError(f"installed Debian's {package} but {binary} is still not on PATH")
    return path
