"""Fixtures of the query-service tests: a sample lake and FlightSQL servers running in threads,
and a FlightSQL server over a real stack's lakehouse."""

from __future__ import annotations

import asyncio
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from _sample_lake import SampleProcess, build_sample_lake
from _support import KEYS_JSON

from sirius.collector import ApiKeys
from sirius.flight import (
    FlightSqlConfig,
    FlightSqlService,
    InMemoryLake,
    InMemorySessionProvider,
    LakehouseSessionProvider,
)


class RunningFlight:
    """A FlightSqlService on its own event loop thread (the 'application loop')."""

    def __init__(self, provider: InMemorySessionProvider, keys: ApiKeys | None = None, **config: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="flight-app-loop", daemon=True)
        self._thread.start()
        self.provider = provider
        self.service = FlightSqlService(provider, keys, FlightSqlConfig(port=0, **config), loop=self.loop)
        self.port = self.call(self.service.start())
        self.uri = f"grpc://127.0.0.1:{self.port}"

    @property
    def server(self) -> Any:
        return self.service.server

    def call(self, coro: Any, timeout: float = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        try:
            self.call(self.service.stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
            self.loop.close()


@pytest.fixture(scope="session")
def sample() -> tuple[InMemoryLake, list[SampleProcess]]:
    return build_sample_lake()


@pytest.fixture(scope="session")
def flight_server(sample: tuple[InMemoryLake, list[SampleProcess]]) -> Iterator[RunningFlight]:
    """No authentication; shared by the read-only tests."""
    running = RunningFlight(InMemorySessionProvider(sample[0]))
    yield running
    running.close()


@pytest.fixture(scope="session")
def keyed_server(sample: tuple[InMemoryLake, list[SampleProcess]]) -> Iterator[RunningFlight]:
    """API keys required (``Authorization: Bearer test-key-123``)."""
    running = RunningFlight(InMemorySessionProvider(sample[0]), ApiKeys.parse(KEYS_JSON))
    yield running
    running.close()


@pytest.fixture
def flight_factory(sample: tuple[InMemoryLake, list[SampleProcess]]) -> Iterator[Any]:
    """Start servers with specific settings: ``flight_factory(keys=None, **FlightSqlConfig fields)``."""
    started: list[RunningFlight] = []

    def make(
        keys: ApiKeys | None = None, provider: InMemorySessionProvider | None = None, **config: Any
    ) -> RunningFlight:
        running = RunningFlight(provider or InMemorySessionProvider(sample[0]), keys, **config)
        started.append(running)
        return running

    yield make
    for running in started:
        running.close()


@pytest.fixture
def lake_flight(stack_factory: Any) -> Iterator[tuple[Any, str]]:
    """A real stack (no daemon) and a FlightSQL server over its lakehouse: ``(stack, grpc uri)``."""
    stack = stack_factory(daemon=False)
    service = FlightSqlService(
        LakehouseSessionProvider(stack.stack.lakehouse), config=FlightSqlConfig(port=0), loop=stack.loop
    )
    port = stack.call(service.start())
    yield stack, f"grpc://127.0.0.1:{port}"
    stack.call(service.stop())
