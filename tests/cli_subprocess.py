"""``sirius`` as a user runs it, in subprocesses: the command line, an environment on the embedded
default, a data directory the postgres OS user can reach, and what ``sirius up`` printed.

Shared by the tests of ``sirius up`` and of the documentation (``tests/conftest.py`` puts this
folder on ``sys.path``: the suite runs with ``--import-mode=importlib``).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SIRIUS = [sys.executable, "-m", "sirius.admin.cli"]
SERVICES = ("ingestion", "otlp-grpc", "otlp-http", "flight", "gateway")
ZERO_PORTS = [arg for name in SERVICES for arg in (f"--{name}-port", "0")]
"""``sirius up`` flags putting every service on a free port."""


def embedded_env(*, keep_otel: bool = True, self_telemetry: bool = False) -> dict[str, str]:
    """This environment without ``MICROMEGAS_*``/``SIRIUS_*`` (no DSN, no object-store URI: the
    embedded default), and without ``OTEL_*`` unless ``keep_otel``.

    ``sirius up`` traces itself by default; tests turn that off (``SIRIUS_SELF_TELEMETRY=0``) so
    the lake holds only what they put there, unless ``self_telemetry``.
    """
    prefixes = ("MICROMEGAS_", "SIRIUS_") if keep_otel else ("MICROMEGAS_", "SIRIUS_", "OTEL_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(prefixes)}
    if not self_telemetry:
        env["SIRIUS_SELF_TELEMETRY"] = "0"
    return env


@contextmanager
def reachable_tmp_dir(prefix: str) -> Iterator[Path]:
    """A temporary directory under /tmp with mode 755, removed afterwards.

    The postgres OS user must traverse it when tests run as root (pytest's ``tmp_path`` sits below
    a 0700 directory, which would force the pgserver path).
    """
    path = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    os.chmod(path, 0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@dataclass
class UpBanner:
    """What ``sirius up`` printed before "sirius is up": service → URL, and the exported variables."""

    urls: dict[str, str] = field(default_factory=dict)
    exports: dict[str, str] = field(default_factory=dict)


def read_up_banner(proc: subprocess.Popen[str]) -> UpBanner:
    """Read ``proc``'s stdout up to its "sirius is up" line (each line arrives when printed: no sleeps).

    Fails the test with the process's stderr (when piped) if it ends before.
    """
    assert proc.stdout is not None
    banner = UpBanner()
    for line in proc.stdout:
        if line.startswith("sirius is up"):
            return banner
        words = line.split()
        if words[:1] == ["export"]:
            banner.exports.update(word.split("=", 1) for word in shlex.split(line)[1:])
        elif len(words) == 2 and "://" in words[1]:
            banner.urls.setdefault(words[0], words[1])
    proc.kill()
    _, err = proc.communicate(timeout=60)
    pytest.fail(f"sirius up ended before it was up (exit {proc.returncode}): {err}")
