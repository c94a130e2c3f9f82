"""The services' event loop: uvloop when installed, asyncio's on request or without it."""

from __future__ import annotations

import asyncio
import importlib.util
from pathlib import Path

import pytest

from sirius.admin import SIRIUS_EVENT_LOOP, event_loop_name, run_service_loop, service_loop_factory
from sirius.admin.cli import main

_HAS_UVLOOP = importlib.util.find_spec("uvloop") is not None


async def _running_loop_name() -> str:
    return event_loop_name(asyncio.get_running_loop())


@pytest.mark.skipif(not _HAS_UVLOOP, reason="uvloop is not installed")
def test_services_run_on_uvloop_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SIRIUS_EVENT_LOOP, raising=False)
    assert run_service_loop(_running_loop_name()) == "uvloop"
    assert run_service_loop(_running_loop_name(), "uvloop") == "uvloop"


def test_asyncio_loop_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SIRIUS_EVENT_LOOP, "asyncio")
    assert service_loop_factory() is None
    assert run_service_loop(_running_loop_name()) == "asyncio"
    monkeypatch.setenv(SIRIUS_EVENT_LOOP, "auto")
    assert run_service_loop(_running_loop_name(), "asyncio") == "asyncio"


def test_without_uvloop_auto_falls_back_and_uvloop_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop now raises ImportError
    monkeypatch.delenv(SIRIUS_EVENT_LOOP, raising=False)
    assert service_loop_factory() is None
    assert run_service_loop(_running_loop_name()) == "asyncio"
    with pytest.raises(ImportError):
        service_loop_factory("uvloop")


def test_unknown_choice_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SIRIUS_EVENT_LOOP, "trio")
    with pytest.raises(ValueError, match=SIRIUS_EVENT_LOOP):
        service_loop_factory()


@pytest.mark.parametrize("command", ["up", "demo"])
def test_commands_that_run_services_go_through_the_service_loop(
    command: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """`sirius up` and `sirius demo` (a stack's services in-process) read SIRIUS_EVENT_LOOP; a bad one is a usage error."""
    monkeypatch.setenv(SIRIUS_EVENT_LOOP, "trio")
    not_a_directory = tmp_path / "file"
    not_a_directory.write_bytes(b"")  # what starts first would fail on it, with another message
    assert main([command, "--data-dir", str(not_a_directory)]) == 2
    assert f"sirius {command}: {SIRIUS_EVENT_LOOP} must be one of" in capsys.readouterr().err
