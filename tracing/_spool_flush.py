"""``flush_spool``: deliver a spool now, from any process (what ``sirius spool flush`` runs)."""

from __future__ import annotations

import contextlib
import os

from ._sink import HttpTransport, SinkConfig
from ._spool import SpoolConfig
from ._spool_delivery import SpoolDeliveryStats, deliver_until


def flush_spool(
    spool_dir: str | os.PathLike[str] | None = None,
    *,
    url: str | None = None,
    api_key: str | None = None,
    timeout: float = 60.0,
    ca_file: str | None = None,
) -> SpoolDeliveryStats:
    """Deliver every spooled body no live process holds, retrying while the service is unreachable.

    Args:
        spool_dir: the spool (default ``SIRIUS_SPOOL_DIR``, then the user's cache directory).
        url: ingestion service (default ``MICROMEGAS_TELEMETRY_URL``, then ``http://127.0.0.1:9000``).
        api_key: Bearer token (default ``MICROMEGAS_INGESTION_API_KEY``).
        timeout: seconds to keep trying while the service is unreachable.
        ca_file: PEM bundle of the CAs trusted for an ``https://`` url (default ``SIRIUS_TLS_CA_FILE``,
            then the system's trust store).

    Returns:
        What was delivered, rejected, found corrupt, and what remains (``remaining_entries``,
        ``busy_directories``: held by a running process).
    """
    sink_config = SinkConfig.resolve(url=url, api_key=api_key, spool_dir=spool_dir, ca_file=ca_file)
    spool = sink_config.spool
    if spool is None:
        return SpoolDeliveryStats()
    return _flush(spool, sink_config, timeout)


def _flush(spool: SpoolConfig, sink_config: SinkConfig, timeout: float) -> SpoolDeliveryStats:
    if not spool.directory.is_dir():
        return SpoolDeliveryStats()
    transport = HttpTransport(sink_config)
    try:
        return deliver_until(spool, lambda path, body: transport.post(path, body).status, timeout=timeout)
    finally:
        with contextlib.suppress(Exception):
            transport.close()
