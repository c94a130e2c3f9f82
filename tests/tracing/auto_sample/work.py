"""Functions whose calls auto_spans records."""

from __future__ import annotations

from . import skipped


def inner(x: int) -> int:
    return x + 1


def outer(x: int) -> int:
    return inner(x) * 2 + skipped.helper(x)


def numbers(n: int):
    yield from range(n)


def fails() -> None:
    inner(0)
    raise ValueError("boom")


class Greeter:
    def greet(self, name: str) -> str:
        return f"hello {name}"


async def coro(x: int) -> int:
    return inner(x)
