"""Packaging guards: every subpackage is in the wheel, and each public surface is pinned."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = ("otel_bridge", "tracing", "collector", "lakehouse", "flight", "admin", "identity", "distributed")


def test_every_package_folder_is_listed_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = set()
    for folder in FOLDERS:
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT)
            found.add("sirius." + ".".join(rel.parts))
    assert found == listed
    assert {f"sirius.{f}": f for f in FOLDERS} == config["package-dir"]


@pytest.mark.parametrize("folder", [*FOLDERS, "tracing.transit"])
def test_exported_names_exist_and_are_unique(folder: str) -> None:
    module = importlib.import_module(f"sirius.{folder}")
    exported = module.__all__
    assert len(exported) == len(set(exported))
    for name in exported:
        assert hasattr(module, name), name


def test_tracing_re_exports_the_wire_format_unchanged() -> None:
    # sirius.tracing.transit is the wire format's home; sirius.tracing keeps serving its names.
    tracing = importlib.import_module("sirius.tracing")
    transit = importlib.import_module("sirius.tracing.transit")
    for name in transit.__all__:
        assert name in tracing.__all__, name
        assert getattr(tracing, name) is getattr(transit, name), name


def test_native_extension_is_built_and_current() -> None:
    from sirius.tracing import _binding

    assert _binding.abi_version() == _binding.ABI_VERSION
