"""Tick → nanosecond conversion of a process's events, vectorised (``micromegas-wire.md`` §6).

Events carry absolute ticks; blocks carry ticks relative to the process's ``start_ticks``. The
conversion mirrors Rust's ``ConvertTicks`` bit for bit: the delta is taken in i64, multiplied
in f64 by ``1e9 / freq`` and rounded half away from zero. When a process reports
``tsc_frequency == 0`` the frequency is estimated from its last block.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ..tracing.transit import Block, ProcessInfo
from ._exceptions import CorruptBlockError

_NANOS_PER_SEC = 1_000_000_000.0
_NS_FREQUENCY = 1_000_000_000
_EXACT = 2**53  # integers up to this magnitude are exact in f64


def _round_half_away(values: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """Rust's ``f64::round`` then ``as i64`` (saturating; NaN → 0), elementwise.

    ``np.rint`` rounds half to even; ``x - trunc(x)`` is exact in binary floating point, so this
    decides halves exactly (``floor(x + 0.5)`` would misround 0.49999999999999994).
    """
    whole = np.trunc(values)
    with np.errstate(invalid="ignore"):  # inf - inf: NaN, mapped to 0 below like `NaN as i64`
        rounded = whole + np.where(np.abs(values - whole) >= 0.5, np.sign(values), 0.0)
    rounded = np.nan_to_num(rounded, nan=0.0)
    limit = 2.0**63  # `as i64` saturates at the i64 bounds
    out = np.clip(rounded, -limit, np.nextafter(limit, 0.0)).astype(np.int64)
    return np.where(rounded >= limit, np.iinfo(np.int64).max, out)


def estimate_frequency(process: ProcessInfo, last_block: Block) -> int:
    """Ticks per second from the last block: ``round(end_ticks / seconds(end_time - start_time))``.

    Raises:
        CorruptBlockError: when the block gives no usable estimate (no elapsed time, no ticks).
    """
    seconds = (last_block.end_time_ns - process.start_time_ns) / _NANOS_PER_SEC
    if seconds <= 0:
        msg = f"cannot estimate the tick frequency of process {process.process_id}: no elapsed time"
        raise CorruptBlockError(msg)
    estimate = last_block.end_ticks / seconds
    if not math.isfinite(estimate) or estimate < 0.5:
        msg = f"cannot estimate the tick frequency of process {process.process_id}: {estimate} ticks/s"
        raise CorruptBlockError(msg)
    return int(_round_half_away(np.array([estimate]))[0])


@dataclass(frozen=True, slots=True)
class TickConverter:
    """Converts one process's ticks to Unix nanoseconds.

    >>> conv = TickConverter(start_time_ns=1_000, start_ticks=50, frequency=1_000_000_000)
    >>> conv.ticks_to_ns(np.array([50, 51, 1_050])).tolist()
    [1000, 1001, 2000]
    """

    start_time_ns: int
    start_ticks: int
    frequency: int

    def __post_init__(self) -> None:
        if self.frequency <= 0:
            msg = f"invalid tick frequency {self.frequency}"
            raise CorruptBlockError(msg)

    @classmethod
    def for_process(cls, process: ProcessInfo, last_block: Block | None = None) -> TickConverter:
        """Use ``tsc_frequency`` when positive, else estimate it from ``last_block``.

        Raises:
            CorruptBlockError: frequency 0 and no (usable) last block.
        """
        frequency = process.tsc_frequency
        if frequency <= 0:
            if last_block is None:
                msg = f"process {process.process_id} has tsc_frequency 0 and no block to estimate it from"
                raise CorruptBlockError(msg)
            frequency = estimate_frequency(process, last_block)
        return cls(start_time_ns=process.start_time_ns, start_ticks=process.start_ticks, frequency=frequency)

    @property
    def ns_per_tick(self) -> float:
        """``1e9 / frequency``, the f64 factor Rust multiplies by."""
        return _NANOS_PER_SEC / self.frequency

    def delta_ticks_to_ns(self, delta: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Ticks relative to ``start_ticks`` (block begin/end) → absolute Unix ns."""
        ticks = np.asarray(delta, dtype=np.int64)
        if self.frequency == _NS_FREQUENCY and ticks.size and ticks.min() >= -_EXACT and ticks.max() <= _EXACT:
            # Nanosecond ticks (Sirius's tracers): every tick is an exact f64 and the product by
            # 1.0 needs no rounding, so Rust's formula is the tick itself (one pass, not eight).
            return ticks + np.int64(self.start_time_ns)
        relative = ticks.astype(np.float64) * self.ns_per_tick
        return _round_half_away(relative) + np.int64(self.start_time_ns)

    def ticks_to_ns(self, ticks: npt.ArrayLike) -> npt.NDArray[np.int64]:
        """Absolute ticks (event ``time`` members) → absolute Unix ns."""
        # i64 subtraction wraps like Rust release builds; the f64 product then saturates.
        with np.errstate(over="ignore"):
            delta = np.asarray(ticks, dtype=np.int64) - np.int64(self.start_ticks)
        return self.delta_ticks_to_ns(delta)

    def delta_ticks_to_ms(self, delta: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Relative ticks → milliseconds (f64), e.g. span durations."""
        return np.asarray(delta, dtype=np.int64).astype(np.float64) * (1000.0 / self.frequency)
