"""Doctests of the OTel bridge and the collector's OTLP modules, run against the installed ``sirius.*`` modules."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "sirius.otel_bridge._identity",
    "sirius.otel_bridge._blocks",
    "sirius.otel_bridge._signals",
    "sirius.otel_bridge._prost_encoding",
    "sirius.collector._otlp_codec",
]


@pytest.mark.parametrize("name", MODULES)
def test_doctests(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name))
    assert result.failed == 0
