"""How the browser tests find Chromium: a configured binary, Debian's, or a failure that says what to do."""

from __future__ import annotations

import sys
from pathlib import Path

import _chromium
import pytest


def test_a_configured_binary_is_used(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(_chromium.CHROMIUM_ENV, sys.executable)
    assert _chromium.find_chromium() == Path(sys.executable)


def test_a_configured_binary_that_is_missing_fails_naming_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    missing = tmp_path / "chromium"
    monkeypatch.setenv(_chromium.CHROMIUM_ENV, str(missing))
    with pytest.raises(_chromium.ChromiumUnavailableError, match=str(missing)):
        _chromium.find_chromium()


def test_without_root_a_missing_chromium_fails_with_the_install_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(_chromium.CHROMIUM_ENV, raising=False)
    monkeypatch.setattr(_chromium, "DEFAULT_CHROMIUM", tmp_path / "chromium")
    monkeypatch.setattr(_chromium.os, "geteuid", lambda: 1000)
    with pytest.raises(_chromium.ChromiumUnavailableError, match=r"apt-get install chromium"):
        _chromium.find_chromium()
