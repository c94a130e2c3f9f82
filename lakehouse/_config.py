"""Lakehouse configuration, resolved once: explicit argument, then environment, then default."""

from __future__ import annotations

import os
from dataclasses import dataclass

from . import _environment_variables as env
from ._exceptions import ConfigurationError
from ._retention_policy import RetentionPolicy, parse_retention_by_view, parse_retention_exact


@dataclass(frozen=True, slots=True)
class LakehouseConfig:
    """Where the lakehouse lives.

    Attributes:
        sql_connection_string: PostgreSQL URI (``postgresql://…``).
        object_store_uri: ``file:///path``, ``s3://``, ``gs://`` or ``az://`` + ``bucket/prefix``.
        retention_days: how long data is kept.
        retention_days_by_view: per-view-set overrides of ``retention_days`` (``SIRIUS_RETENTION_DAYS_BY_VIEW``).
        retention_exact: row-delete the expired rows of the boundary day too (``SIRIUS_RETENTION_EXACT``).
    """

    sql_connection_string: str
    object_store_uri: str
    retention_days: int = 90
    retention_days_by_view: tuple[tuple[str, int], ...] = ()
    retention_exact: bool = False

    def __post_init__(self) -> None:
        if not self.sql_connection_string.startswith(("postgres://", "postgresql://")):
            msg = f"{env.MICROMEGAS_SQL_CONNECTION_STRING} must be a postgresql:// URI"
            raise ConfigurationError(msg)
        if not self.object_store_uri.startswith(("file://", "s3://", "gs://", "az://")):
            msg = (
                f"{env.MICROMEGAS_OBJECT_STORE_URI} must start with file://, s3://, gs:// or az://, "
                f"got {self.object_store_uri!r}"
            )
            raise ConfigurationError(msg)
        self.retention_policy  # noqa: B018 - validates the days (ConfigurationError)

    @property
    def retention_policy(self) -> RetentionPolicy:
        """The retention of every kind of data (default and per view set)."""
        return RetentionPolicy(self.retention_days, self.retention_days_by_view, self.retention_exact)

    @staticmethod
    def resolve_dsn(sql_connection_string: str | None = None) -> str:
        """Return the PostgreSQL URI from the argument or ``MICROMEGAS_SQL_CONNECTION_STRING``.

        Raises:
            ConfigurationError: when neither is set.
        """
        dsn = sql_connection_string or os.environ.get(env.MICROMEGAS_SQL_CONNECTION_STRING)
        if not dsn:
            msg = f"no PostgreSQL: set {env.MICROMEGAS_SQL_CONNECTION_STRING}"
            raise ConfigurationError(msg)
        return dsn

    @classmethod
    def resolve(
        cls,
        sql_connection_string: str | None = None,
        object_store_uri: str | None = None,
        retention_days: int | None = None,
    ) -> LakehouseConfig:
        """Build the configuration from arguments, falling back to the environment.

        Raises:
            ConfigurationError: when a required setting is absent or malformed.
        """
        dsn = cls.resolve_dsn(sql_connection_string)
        uri = object_store_uri or os.environ.get(env.MICROMEGAS_OBJECT_STORE_URI)
        if not uri:
            msg = f"no object store: set {env.MICROMEGAS_OBJECT_STORE_URI}"
            raise ConfigurationError(msg)
        if retention_days is None:
            raw = os.environ.get(env.MICROMEGAS_RETENTION_DAYS, "90")
            try:
                retention_days = int(raw)
            except ValueError as exc:
                msg = f"{env.MICROMEGAS_RETENTION_DAYS} must be an integer, got {raw!r}"
                raise ConfigurationError(msg) from exc
        by_view = parse_retention_by_view(os.environ.get(env.SIRIUS_RETENTION_DAYS_BY_VIEW, ""))
        exact = parse_retention_exact(os.environ.get(env.SIRIUS_RETENTION_EXACT, ""))
        return cls(dsn, uri, retention_days, by_view, exact)
