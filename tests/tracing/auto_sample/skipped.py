"""Excluded from auto spans in the test: its calls must not appear."""

from __future__ import annotations


def helper(x: int) -> int:
    return x
