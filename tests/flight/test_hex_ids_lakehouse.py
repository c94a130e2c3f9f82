"""Hex trace/span ids on the real lakehouse: OTLP spans and logs in, global views, micromegas and ADBC out."""

from __future__ import annotations

import logging

import micromegas
import pytest
from adbc_driver_flightsql import dbapi
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from sirius.lakehouse import MaintenanceDaemon, PassKind

pytestmark = pytest.mark.filterwarnings("ignore:.*LoggingHandler.*:DeprecationWarning")


def _send(otlp_http: str) -> tuple[str, str]:
    """Two traces with a log record inside the first one's span; returns (trace id, span id) in hex."""
    resource = Resource.create({"service.name": "hex-lookup"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"{otlp_http}/v1/traces")))
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter(endpoint=f"{otlp_http}/v1/logs")))
    logger = logging.getLogger("sirius.tests.hex_lookup")
    logger.propagate = False
    handler = LoggingHandler(logger_provider=logger_provider)
    logger.addHandler(handler)
    tracer = tracer_provider.get_tracer("hex")
    try:
        with tracer.start_as_current_span("checkout") as root:
            with tracer.start_as_current_span("charge"):
                logger.warning("card declined")
            context = root.get_span_context()
        with tracer.start_as_current_span("other"):
            pass
    finally:
        logger.removeHandler(handler)
        tracer_provider.shutdown()
        logger_provider.shutdown()
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


def test_lookup_by_hex_id_on_global_views(lake_flight) -> None:
    stack, uri = lake_flight
    urls = {e.name: e.url for e in stack.endpoints}
    trace, span = _send(urls["otlp-http"])

    async def daemon_pass() -> None:
        lakehouse = stack.stack.lakehouse
        await MaintenanceDaemon(lakehouse).run_pass(PassKind.MINUTE, lakehouse.now_ns() + 120 * 1_000_000_000)

    stack.call(daemon_pass())
    client = micromegas.connect(uri)
    spans = client.query(f"SELECT name FROM otel_spans WHERE trace_id = '{trace}' ORDER BY name")
    assert list(spans["name"]) == ["charge", "checkout"]
    child = client.query(f"SELECT name FROM otel_spans WHERE parent_span_id IN ('{span.upper()}')")
    assert list(child["name"]) == ["charge"]
    logs = client.query(f"SELECT msg FROM log_entries WHERE trace_id = '{trace}'")
    assert list(logs["msg"]) == ["card declined"]
    with dbapi.connect(uri, autocommit=True) as conn, conn.cursor() as cur:
        cur.execute(f"SELECT count(*) AS n FROM otel_spans WHERE '{trace}' = trace_id")
        assert cur.fetch_arrow_table()["n"].to_pylist() == [2]
