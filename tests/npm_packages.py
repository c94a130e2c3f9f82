"""Node.js packages the tests run (the Azurite emulator, the OpenTelemetry JS peer), installed
with ``npm ci`` from a package.json and lock file kept in tests/, once per lock-file content.

The install goes to the user's cache (``$XDG_CACHE_HOME/sirius-tests/<name>-<digest>``): a staging
folder is filled and renamed into place, and a marker file says the install completed, so a
session that was killed mid-install never leaves a half-filled folder that later sessions trust.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from pathlib import Path

import pytest

__all__ = ["installed_node_modules"]

_COMPLETE = ".sirius-complete"


def installed_node_modules(package_dir: Path, name: str, needed_for: str) -> Path:
    """The ``node_modules`` folder of ``package_dir``'s locked packages, installed when missing.

    ``name`` prefixes the cache folder; ``needed_for`` completes the failure message when Node.js
    or npm is missing (these tests never skip).
    """
    npm = shutil.which("npm")
    if shutil.which("node") is None or npm is None:
        pytest.fail(f"Node.js and npm are needed for {needed_for}: apt-get install nodejs npm")
    files = [package_dir / "package.json", package_dir / "package-lock.json"]
    digest = hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()[:16]
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "sirius-tests"
    target = root / f"{name}-{digest}"
    if not (target / "node_modules" / _COMPLETE).exists():
        staging = root / f"{name}-{digest}.tmp{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for f in files:
            shutil.copy(f, staging / f.name)
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=staging,
            check=True,
            timeout=600,
            capture_output=True,
        )
        (staging / "node_modules" / _COMPLETE).touch()
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    return target / "node_modules"
