"""Finds the Chromium the Explore browser tests drive, installing Debian's package when missing.

Playwright (a dev extra) brings its driver only; the browser is Debian's ``chromium``, launched
through ``executable_path`` (``playwright install`` would download a browser build, which the
project never does). Order: ``/usr/bin/chromium`` (or ``SIRIUS_TEST_CHROMIUM``) when present;
otherwise, as root with apt, ``apt-get install chromium`` under a file lock (parallel sessions
on one machine install it once); otherwise a clear failure — these tests never skip.
:func:`chromium_context` launches it the one way the tests use it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

CHROMIUM_ENV = "SIRIUS_TEST_CHROMIUM"
DEFAULT_CHROMIUM = Path("/usr/bin/chromium")
LOCK_FILE = Path("/tmp/sirius-chromium-install.lock")
LAUNCH_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


class ChromiumUnavailableError(RuntimeError):
    """No Chromium on this machine and no way to install it here."""


def _say(message: str) -> None:
    # Straight to the terminal: pytest captures stdout, and an install takes a minute.
    print(f"[explore-browser] {message}", file=sys.__stderr__, flush=True)


def _installed() -> Path | None:
    configured = os.environ.get(CHROMIUM_ENV)
    if configured:
        return Path(configured) if Path(configured).exists() else None
    return DEFAULT_CHROMIUM if DEFAULT_CHROMIUM.exists() else None


def _apt_install() -> None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (
        ["apt-get", "update", "-qq"],
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"],
    ):
        _say(" ".join(command))
        result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, check=False)
        if result.returncode != 0:
            raise ChromiumUnavailableError(
                f"{' '.join(command)} failed ({result.returncode}):\n{result.stdout[-2000:]}{result.stderr[-2000:]}"
            )


def find_chromium() -> Path:
    """Path of a Chromium binary, installing Debian's ``chromium`` first when it is missing.

    Raises:
        ChromiumUnavailableError: none is installed and this process cannot install one.
    """
    found = _installed()
    if found is not None:
        return found
    if os.environ.get(CHROMIUM_ENV):
        raise ChromiumUnavailableError(f"{CHROMIUM_ENV}={os.environ[CHROMIUM_ENV]} does not exist")
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise ChromiumUnavailableError(
            f"the Explore browser tests need Chromium at {DEFAULT_CHROMIUM}: install Debian's package "
            f"(`sudo apt-get install chromium`) or set {CHROMIUM_ENV} to a Chromium binary"
        )
    with LOCK_FILE.open("w") as lock:
        _say(f"{DEFAULT_CHROMIUM} missing: installing Debian's chromium (waiting for the install lock)")
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if _installed() is None:  # another session may have installed it while we waited
                _apt_install()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    found = _installed()
    if found is None:
        raise ChromiumUnavailableError(f"apt-get installed chromium but {DEFAULT_CHROMIUM} is still missing")
    _say(f"using {found}")
    return found


@contextlib.contextmanager
def chromium_context(chromium: Path, profile: Path) -> Iterator[Any]:
    """A headless Chromium at ``chromium`` with the profile folder ``profile``, 1280x800, closed on exit.

    Playwright's sync API runs an event loop in this thread while the context is open.
    """
    from playwright.sync_api import sync_playwright  # a dev extra: imported where a browser is needed

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile),
            executable_path=str(chromium),
            args=list(LAUNCH_ARGS),
            headless=True,
            viewport={"width": 1280, "height": 800},
        )
        try:
            yield context
        finally:
            context.close()
