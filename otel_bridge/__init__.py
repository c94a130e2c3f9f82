"""Sirius otel_bridge."""

from __future__ import annotations

__all__: list[str] = []
