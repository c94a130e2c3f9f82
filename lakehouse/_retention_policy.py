"""How long each kind of data is kept: a default and per-view-set overrides.

``MICROMEGAS_RETENTION_DAYS`` is the default for everything. ``SIRIUS_RETENTION_DAYS_BY_VIEW``
overrides it for the partitions of named view sets, every instance included::

    SIRIUS_RETENTION_DAYS_BY_VIEW="log_entries=7,measures=365"

Raw data (``blocks`` rows and their objects, then streams and processes left without blocks)
is kept for the longest of the default and every override, because any view may be rebuilt
from it (a JIT ``view_instance`` query, ``materialize_partitions`` after an upgrade): shortening
one view's retention frees that view's Parquet partitions, never blocks another view still needs.

``blocks`` partitioned by day (``_block_partitions``) loses whole days: a day goes once all of it
is past the cutoff, so its rows stay up to a day longer than the retention. ``SIRIUS_RETENTION_EXACT=1``
also deletes, row by row, the expired rows of the day the cutoff falls in. Retention runs every
hour, so in exact mode nearly every row ends up deleted row by row before its day is dropped: the
dead tuples, WAL and vacuum that partitioning avoids come back. Use it only where a row must not
outlive the retention by an hour.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ._environment_variables import MICROMEGAS_RETENTION_DAYS, SIRIUS_RETENTION_DAYS_BY_VIEW, SIRIUS_RETENTION_EXACT
from ._exceptions import ConfigurationError

__all__ = ["RetentionPolicy", "parse_retention_by_view", "parse_retention_exact"]

_VIEW_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def parse_retention_by_view(text: str) -> tuple[tuple[str, int], ...]:
    """Parse ``name=days[,name=days…]`` (spaces around items allowed; empty: no overrides).

    >>> parse_retention_by_view(" log_entries=7, measures=90 ")
    (('log_entries', 7), ('measures', 90))

    Raises:
        ConfigurationError: an item is not ``name=days``, a name repeats, or days is not a positive integer.
    """
    overrides: dict[str, int] = {}
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        name, sep, days_text = (piece.strip() for piece in item.partition("="))
        if not sep or not _VIEW_NAME.match(name):
            msg = f"{SIRIUS_RETENTION_DAYS_BY_VIEW}: {item!r} is not view_set=days (e.g. log_entries=7)"
            raise ConfigurationError(msg)
        if not days_text.isdigit() or int(days_text) <= 0:
            msg = f"{SIRIUS_RETENTION_DAYS_BY_VIEW}: days of {name!r} must be a positive integer, got {days_text!r}"
            raise ConfigurationError(msg)
        if name in overrides:
            msg = f"{SIRIUS_RETENTION_DAYS_BY_VIEW}: {name!r} is given twice"
            raise ConfigurationError(msg)
        overrides[name] = int(days_text)
    return tuple(overrides.items())


def parse_retention_exact(text: str) -> bool:
    """Parse ``SIRIUS_RETENTION_EXACT``: ``1``/``true``/``on``/``yes`` or ``0``/``false``/``off``/``no``/empty.

    Raises:
        ConfigurationError: any other value.
    """
    value = text.strip().lower()
    if value in ("1", "true", "on", "yes"):
        return True
    if value in ("", "0", "false", "off", "no"):
        return False
    msg = f"{SIRIUS_RETENTION_EXACT} must be 1 or 0, got {text!r}"
    raise ConfigurationError(msg)


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Days kept: ``default_days`` unless a view set has its own entry in ``by_view``.

    ``exact``: also row-delete the expired rows of the ``blocks`` day partition the raw cutoff falls in.

    >>> p = RetentionPolicy(30, (("log_entries", 7), ("measures", 90)))
    >>> p.days_for("log_entries"), p.days_for("processes"), p.raw_days
    (7, 30, 90)
    """

    default_days: int = 90
    by_view: tuple[tuple[str, int], ...] = ()
    exact: bool = False

    def __post_init__(self) -> None:
        if self.default_days <= 0:
            msg = f"{MICROMEGAS_RETENTION_DAYS} must be positive"
            raise ConfigurationError(msg)
        names = [name for name, _ in self.by_view]
        if len(set(names)) != len(names) or any(days <= 0 for _, days in self.by_view):
            msg = f"{SIRIUS_RETENTION_DAYS_BY_VIEW}: each view set once, with positive days"
            raise ConfigurationError(msg)

    def days_for(self, view_set_name: str) -> int:
        """Days the partitions of ``view_set_name`` are kept."""
        return dict(self.by_view).get(view_set_name, self.default_days)

    @property
    def overridden(self) -> tuple[str, ...]:
        """The view sets with their own retention."""
        return tuple(name for name, _ in self.by_view)

    @property
    def raw_days(self) -> int:
        """Days raw blocks (and their streams and processes) are kept: the longest any view needs."""
        return max([self.default_days, *(days for _, days in self.by_view)])
