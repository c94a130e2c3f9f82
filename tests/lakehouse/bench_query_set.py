"""The benchmarks' query set and lake builder, loaded for the parity tests, and the small lake they use.

The benchmarks (bench/) import each other by bare name, as scripts; the parity tests against
DuckDB and Sail load the same two modules by path so the queries exist once.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

__all__ = ["SMALL", "observability_lake", "query_set"]

BENCH = Path(__file__).resolve().parents[2] / "bench"


def _load(name: str) -> ModuleType:
    """A bench module by path (registered under its bare name, as the benchmarks import it)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


query_set = _load("_query_set")
observability_lake = _load("_observability_lake")

SMALL = observability_lake.LakeShape(
    processes=6, exes=3, log_events=700, metric_events=500, services=4, traces=400, minutes=3
)
"""A few thousand rows per view over several processes, executables and services."""
