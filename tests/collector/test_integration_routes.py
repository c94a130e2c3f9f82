"""The webhook and Firehose routes end to end: real aiohttp server on loopback, real PostgreSQL, read back as SQL.

Bodies are built the way Amazon Data Firehose documents its HTTP endpoint delivery: a JSON
envelope ``{"requestId", "timestamp", "records": [{"data": <base64>}]}`` with the headers
``X-Amz-Firehose-Request-Id``, ``X-Amz-Firehose-Access-Key`` and
``X-Amz-Firehose-Protocol-Version``; CloudWatch Metric Streams records in the OpenTelemetry 1.0
format (length-delimited ``ExportMetricsServiceRequest`` messages), CloudWatch Logs records as
gzip-compressed subscription-filter JSON.
"""

from __future__ import annotations

import base64
import gzip
import http.client
import json
import socket
import time
from types import SimpleNamespace

import micromegas
import pytest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue, KeyValueList
from opentelemetry.proto.metrics.v1.metrics_pb2 import (
    Metric,
    ResourceMetrics,
    ScopeMetrics,
    Summary,
    SummaryDataPoint,
)
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from waiting import wait_until as _wait_until_shared  # tests/ is on sys.path

from sirius.collector import ApiKeys, HttpServer, IngestionLimits, IngestionService
from sirius.lakehouse import MaintenanceDaemon, ObjectStoreError, PassKind, QueryRange, SessionFactory
from sirius.lakehouse._sql_jsonb import decode_jsonb

KEY = "firehose-secret-key"
HOUR_NS = 3_600_000_000_000
T_MS = 1_765_000_000_000  # 2025-12-06, Unix ms
ARN = "arn:aws:cloudwatch:eu-west-1:123456789012:metric-stream/sirius-test"
METRICS_PATH = "/ingestion/otlp/v1/metrics/firehose"
LOGS_PATH = "/ingestion/cloudwatch/v1/logs/firehose"


def post(port: int, path: str, body: bytes, headers: dict[str, str]) -> SimpleNamespace:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request("POST", path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        return SimpleNamespace(status=response.status, headers=dict(response.getheaders()), body=data)
    finally:
        conn.close()


class Ingestion:
    """An ``IngestionService`` (keys on) on loopback, over a running stack's lake and store."""

    def __init__(self, stack, limits: IngestionLimits | None = None, store=None) -> None:
        self.stack = stack
        keys = ApiKeys((("firehose", KEY),))
        self.service = IngestionService(stack.stack.lake, store or stack.stack.store, keys, limits=limits)
        self.server = HttpServer(self.service.make_app(), "127.0.0.1", 0)
        self.port = stack.call(self.server.start())

    def post(self, path: str, body: bytes, headers: dict[str, str]) -> SimpleNamespace:
        return post(self.port, path, body, headers)

    def firehose(self, path: str, records: list[bytes], request_id: str, **extra: str) -> SimpleNamespace:
        body, headers = firehose_request(records, request_id)
        headers.update(extra)
        return self.post(path, body, headers)

    def count(self, table: str) -> int:
        return self.stack.call(self.stack.stack.lake.pool.fetchval(f"SELECT count(*) FROM {table}"))

    def counts(self) -> tuple[int, int, int]:
        return self.count("processes"), self.count("streams"), self.count("blocks")


@pytest.fixture
def ingestion_factory(stack_factory):
    started: list[Ingestion] = []

    def make(limits: IngestionLimits | None = None, store=None) -> Ingestion:
        stack = stack_factory(daemon=False)
        ingestion = Ingestion(stack, limits, store(stack.stack.store) if store else None)
        started.append(ingestion)
        return ingestion

    yield make
    for ingestion in started:
        ingestion.stack.call(ingestion.server.stop())


def firehose_request(records: list[bytes], request_id: str) -> tuple[bytes, dict[str, str]]:
    """A Firehose HTTP endpoint delivery request (body and headers) carrying ``records``."""
    body = {
        "requestId": request_id,
        "timestamp": T_MS,
        "records": [{"data": base64.b64encode(r).decode("ascii")} for r in records],
    }
    headers = {
        "Content-Type": "application/json",
        "X-Amz-Firehose-Protocol-Version": "1.0",
        "X-Amz-Firehose-Request-Id": request_id,
        "X-Amz-Firehose-Source-Arn": "arn:aws:firehose:eu-west-1:123456789012:deliverystream/sirius",
        "X-Amz-Firehose-Access-Key": KEY,
    }
    return json.dumps(body).encode(), headers


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append((value & 0x7F) | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def delimited(*messages: bytes) -> bytes:
    return b"".join(varint(len(m)) + m for m in messages)


def kv(key: str, value: str) -> KeyValue:
    return KeyValue(key=key, value=AnyValue(string_value=value))


def cloudwatch_metric(
    namespace: str, name: str, dimension: tuple[str, str], minute: int, values: list[float]
) -> Metric:
    """A metric as CloudWatch Metric Streams writes it in the OpenTelemetry 1.0 format (a Summary)."""
    start_ns = (T_MS + minute * 60_000) * 1_000_000
    point = SummaryDataPoint(
        attributes=[
            kv("Namespace", namespace),
            kv("MetricName", name),
            KeyValue(key="Dimensions", value=AnyValue(kvlist_value=KeyValueList(values=[kv(*dimension)]))),
        ],
        start_time_unix_nano=start_ns,
        time_unix_nano=start_ns + 60_000_000_000,
        count=len(values),
        sum=sum(values),
        quantile_values=[
            SummaryDataPoint.ValueAtQuantile(quantile=0.0, value=min(values)),
            SummaryDataPoint.ValueAtQuantile(quantile=1.0, value=max(values)),
        ],
    )
    return Metric(name=f"amazonaws.com/{namespace}/{name}", unit="{Percent}", summary=Summary(data_points=[point]))


def metric_stream_message(*metrics: Metric) -> bytes:
    resource = Resource(
        attributes=[
            kv("cloud.provider", "aws"),
            kv("cloud.account.id", "123456789012"),
            kv("cloud.region", "eu-west-1"),
            kv("aws.exporter.arn", ARN),
        ]
    )
    request = ExportMetricsServiceRequest(
        resource_metrics=[ResourceMetrics(resource=resource, scope_metrics=[ScopeMetrics(metrics=list(metrics))])]
    )
    return request.SerializeToString()


def logs_record(log_group: str, log_stream: str, events: list[tuple[str, int, str]], *, control: bool = False) -> bytes:
    """A CloudWatch Logs subscription-filter record: gzip-compressed JSON."""
    message = {
        "messageType": "CONTROL_MESSAGE" if control else "DATA_MESSAGE",
        "owner": "CloudwatchLogs" if control else "123456789012",
        "logGroup": log_group,
        "logStream": log_stream,
        "subscriptionFilters": [] if control else ["sirius-filter"],
        "logEvents": [{"id": i, "timestamp": t, "message": m} for i, t, m in events],
    }
    return gzip.compress(json.dumps(message).encode())


def read(stack, queries: dict[str, str]) -> dict[str, list[dict]]:
    lake = stack.stack.lakehouse

    async def run() -> dict[str, list[dict]]:
        report = await MaintenanceDaemon(lake).run_pass(PassKind.HOUR, lake.now_ns() + HOUR_NS)
        assert not report.failures, report.failures
        session = await SessionFactory(lake).create(QueryRange(None, None))
        return {name: (await session.sql(sql)).to_arrow_table().to_pylist() for name, sql in queries.items()}

    return stack.call(run())


def assert_ack(response: SimpleNamespace, request_id: str) -> None:
    assert response.status == 200, response.body
    assert response.headers["Content-Type"].startswith("application/json")
    ack = json.loads(response.body)
    assert ack["requestId"] == request_id
    assert isinstance(ack["timestamp"], int)
    assert "errorMessage" not in ack


# -- stored and read back ------------------------------------------------------------------


def test_metric_streams_are_stored_once_and_read_back_as_measures(ingestion_factory) -> None:
    ingestion = ingestion_factory()
    ec2 = cloudwatch_metric("AWS/EC2", "CPUUtilization", ("InstanceId", "i-0abc"), 0, [10.0, 30.0, 20.0])
    rds = cloudwatch_metric("AWS/RDS", "CPUUtilization", ("DBInstanceIdentifier", "db-1"), 0, [5.0, 7.0])
    ec2_later = cloudwatch_metric("AWS/EC2", "CPUUtilization", ("InstanceId", "i-0abc"), 1, [50.0])
    # record 0: two length-delimited messages; record 1: one more
    records = [
        delimited(metric_stream_message(ec2, rds), metric_stream_message(ec2_later)),
        delimited(metric_stream_message(ec2_later, rds)),  # resources already sent: the same blocks
    ]
    assert_ack(ingestion.firehose(METRICS_PATH, records, "req-metrics-1"), "req-metrics-1")
    stored = ingestion.counts()
    assert stored == (2, 2, 3)  # a process (and metrics stream) per namespace; a block per distinct resource
    objects = ingestion.stack.call(ingestion.stack.stack.lake.pool.fetch("SELECT block_id FROM blocks"))

    # Firehose retries the same request: same request id, same records; nothing is stored twice
    assert_ack(ingestion.firehose(METRICS_PATH, records, "req-metrics-1"), "req-metrics-1")
    assert ingestion.counts() == stored
    again = ingestion.stack.call(ingestion.stack.stack.lake.pool.fetch("SELECT block_id FROM blocks"))
    assert sorted(r["block_id"] for r in again) == sorted(r["block_id"] for r in objects)

    # the same delivery gzip-compressed (a Firehose option) is the same data: still nothing new
    body, headers = firehose_request(records, "req-metrics-2")
    headers["Content-Encoding"] = "gzip"
    assert_ack(ingestion.post(METRICS_PATH, gzip.compress(body), headers), "req-metrics-2")
    assert ingestion.counts() == stored

    tables = read(
        ingestion.stack,
        {
            "measures": "SELECT exe, name, value, CAST(time AS BIGINT) AS t, properties FROM measures"
            " WHERE name NOT LIKE '%CPUUtilization' ORDER BY exe, time, name",
            "processes": "SELECT exe, properties FROM processes ORDER BY exe",
        },
    )
    rows = [(r["exe"], r["name"].rsplit("/", 1)[1], r["value"]) for r in tables["measures"]]
    assert rows == [
        ("AWS/EC2", "CPUUtilization_count", 3.0),
        ("AWS/EC2", "CPUUtilization_max", 30.0),
        ("AWS/EC2", "CPUUtilization_min", 10.0),
        ("AWS/EC2", "CPUUtilization_sum", 60.0),
        ("AWS/EC2", "CPUUtilization_count", 1.0),
        ("AWS/EC2", "CPUUtilization_max", 50.0),
        ("AWS/EC2", "CPUUtilization_min", 50.0),
        ("AWS/EC2", "CPUUtilization_sum", 50.0),
        ("AWS/RDS", "CPUUtilization_count", 2.0),
        ("AWS/RDS", "CPUUtilization_max", 7.0),
        ("AWS/RDS", "CPUUtilization_min", 5.0),
        ("AWS/RDS", "CPUUtilization_sum", 12.0),
    ]  # the points sent twice (in two messages) are stored once
    first = tables["measures"][0]
    assert first["t"] == (T_MS + 60_000) * 1_000_000
    props = decode_jsonb(first["properties"])
    assert (props["Namespace"], props["MetricName"]) == ("AWS/EC2", "CPUUtilization")
    process = decode_jsonb(tables["processes"][0]["properties"])
    assert process["otel.resource.service.instance.id"] == ARN
    assert process["otel.resource.cloud.region"] == "eu-west-1"


def test_cloudwatch_logs_are_stored_once_and_read_back_as_logs(ingestion_factory) -> None:
    ingestion = ingestion_factory()
    records = [
        logs_record("/ecs/shop", "web/task-1", [("e1", T_MS, "GET / 200"), ("e2", T_MS + 5, "GET /cart 500")]),
        logs_record(
            "", "", [("c1", T_MS, "CWL CONTROL MESSAGE: Checking health of destination Firehose.")], control=True
        ),
        logs_record("/ecs/shop", "web/task-2", [("e3", T_MS + 9, '{"level": "warn", "msg": "slow"}')]),
        logs_record("/ecs/shop", "web/task-3", []),  # a data message without events: nothing
    ]
    assert_ack(ingestion.firehose(LOGS_PATH, records, "req-logs-1"), "req-logs-1")
    stored = ingestion.counts()
    assert stored == (2, 2, 2)
    assert_ack(ingestion.firehose(LOGS_PATH, records, "req-logs-1"), "req-logs-1")  # Firehose's retry
    assert ingestion.counts() == stored

    tables = read(
        ingestion.stack,
        {
            "logs": "SELECT exe, level, target, msg, CAST(time AS BIGINT) AS t, properties FROM log_entries ORDER BY time"
        },
    )
    logs = tables["logs"]
    assert [(r["exe"], r["level"], r["msg"]) for r in logs] == [
        ("/ecs/shop", 4, "GET / 200"),
        ("/ecs/shop", 4, "GET /cart 500"),
        ("/ecs/shop", 4, '{"level": "warn", "msg": "slow"}'),
    ]
    assert [r["t"] for r in logs] == [T_MS * 1_000_000, (T_MS + 5) * 1_000_000, (T_MS + 9) * 1_000_000]
    assert decode_jsonb(logs[1]["properties"])["aws.log.event.id"] == "e2"

    # the PyPI micromegas client over FlightSQL sees the same rows
    flight = next(e.url for e in ingestion.stack.endpoints if e.name == "flightsql")
    client = micromegas.connect(flight)
    found = client.query(
        "SELECT msg FROM log_entries WHERE property_get(properties, 'aws.log.event.id') < 'e3' ORDER BY time"
    )
    assert list(found["msg"]) == ["GET / 200", "GET /cart 500"]


def test_webhook_is_stored_once_and_read_back_as_a_log(ingestion_factory) -> None:
    ingestion = ingestion_factory()
    body = json.dumps({"object_kind": "pipeline", "object_attributes": {"status": "failed"}}).encode()
    headers = {
        "Authorization": f"Bearer {KEY}",
        "Content-Type": "application/json",
        "X-Micromegas-Service-Name": "gitlab",
        "X-Micromegas-Service-Namespace": "ci",
        "X-Micromegas-Target": "pipeline_hook",
        "X-Gitlab-Event-UUID": "uuid-1",
    }
    response = ingestion.post("/ingestion/webhook", body, headers)
    assert (response.status, response.body) == (200, b"")
    assert ingestion.counts() == (1, 1, 1)
    assert ingestion.post("/ingestion/webhook", body, headers).status == 200  # a retried delivery
    assert ingestion.counts() == (1, 1, 1)
    # another delivery of the same body (another delivery id) is kept; a gzip one too
    assert ingestion.post("/ingestion/webhook", body, {**headers, "X-Gitlab-Event-UUID": "uuid-2"}).status == 200
    zipped = {**headers, "X-Gitlab-Event-UUID": "uuid-3", "Content-Encoding": "gzip"}
    assert ingestion.post("/ingestion/webhook", gzip.compress(b"\xffnot utf-8"), zipped).status == 200
    assert ingestion.counts() == (1, 1, 3)

    before = time.time_ns()
    tables = read(
        ingestion.stack,
        {"logs": "SELECT exe, level, target, msg, CAST(time AS BIGINT) AS t FROM log_entries ORDER BY msg"},
    )
    assert [(r["exe"], r["level"], r["target"], r["msg"]) for r in tables["logs"]] == [
        ("ci/gitlab", 4, "pipeline_hook", body.decode()),
        ("ci/gitlab", 4, "pipeline_hook", body.decode()),
        ("ci/gitlab", 4, "pipeline_hook", "\ufffdnot utf-8"),
    ]
    assert all(0 < r["t"] <= before for r in tables["logs"])  # the arrival time


# -- refused, changing nothing -------------------------------------------------------------

GOOD_METRICS = delimited(metric_stream_message(cloudwatch_metric("AWS/EC2", "CPU", ("InstanceId", "i-1"), 0, [1.0])))
GOOD_LOGS = logs_record("/g", "s", [("e1", T_MS, "hello")])


def _envelope(obj: object) -> bytes:
    return json.dumps(obj).encode()


BAD_FIREHOSE = [
    # (path, body, status, error fragment)
    (METRICS_PATH, b"{not json", 400, "not valid JSON"),
    (METRICS_PATH, _envelope([1, 2]), 400, "must be a JSON object"),
    (METRICS_PATH, _envelope({"requestId": "x", "records": {"data": "AA=="}}), 400, "'records' must be a list"),
    (METRICS_PATH, _envelope({"records": [{"data": 7}]}), 400, "record[0] must be an object with a string 'data'"),
    (METRICS_PATH, _envelope({"records": [{"data": "!!not base64!!"}]}), 400, "record[0] data is not valid base64"),
    (
        METRICS_PATH,
        _envelope({"records": [{"data": "QUJD"}, {"data": "QUJ"}]}),
        400,
        "record[1] data is not valid base64",
    ),
    (LOGS_PATH, b"", 400, "not valid JSON"),
]
BAD_METRIC_RECORDS = [
    ([GOOD_METRICS, b"\x05abc"], "record[1] message[0]: length prefix says 5 bytes but 3 remain"),
    ([GOOD_METRICS + b"\x80"], "record[0] message[1]: truncated length prefix"),
    ([b"\xff" * 11], "longer than 10 bytes"),
    ([GOOD_METRICS, delimited(b"\x0a\x05ab")], "record[1] message[0] is not an OTLP ExportMetricsServiceRequest"),
]
BAD_LOG_RECORDS = [
    ([GOOD_LOGS, b'{"messageType": "DATA_MESSAGE"}'], "record[1]: not valid gzip"),
    ([GOOD_LOGS, GOOD_LOGS[:-6]], "record[1]: not valid gzip"),
    ([gzip.compress(b"not json")], "record[0]: not valid JSON after gunzip"),
    (
        [gzip.compress(b'{"messageType": "DATA_MESSAGE", "owner": "1", "logStream": "s", "logEvents": []}')],
        "'logGroup'",
    ),
    ([logs_record("/g", "s", [("e1", -1, "x")])], "record[0] logEvents[0]: 'timestamp' must be a non-negative"),
    ([gzip.compress(b'{"messageType": "OTHER", "logEvents": []}')], "unknown messageType 'OTHER'"),
]


def test_bad_firehose_requests_get_a_firehose_error_and_change_nothing(ingestion_factory) -> None:
    ingestion = ingestion_factory()
    cases = [(path, body, 400, fragment) for path, body, _, fragment in BAD_FIREHOSE]
    cases += [(METRICS_PATH, firehose_request(r, "x")[0], 400, f) for r, f in BAD_METRIC_RECORDS]
    cases += [(LOGS_PATH, firehose_request(r, "x")[0], 400, f) for r, f in BAD_LOG_RECORDS]
    for number, (path, body, status, fragment) in enumerate(cases):
        request_id = f"bad-{number}"
        headers = firehose_request([], request_id)[1]
        response = ingestion.post(path, body, headers)
        assert response.status == status, (number, response.body)
        reply = json.loads(response.body)
        assert reply["requestId"] == request_id
        assert fragment in reply["errorMessage"], (number, reply)
    # corrupt gzip Content-Encoding, unknown Content-Encoding
    body, headers = firehose_request([GOOD_METRICS], "enc")
    response = ingestion.post(METRICS_PATH, gzip.compress(body)[:-4], {**headers, "Content-Encoding": "gzip"})
    assert (response.status, json.loads(response.body)["requestId"]) == (400, "enc")
    assert "not valid gzip" in json.loads(response.body)["errorMessage"]
    assert ingestion.post(METRICS_PATH, body, {**headers, "Content-Encoding": "br"}).status == 415
    assert ingestion.counts() == (0, 0, 0)


def test_firehose_access_key_is_checked_against_the_api_keys(ingestion_factory) -> None:
    ingestion = ingestion_factory()
    for path, record in ((METRICS_PATH, GOOD_METRICS), (LOGS_PATH, GOOD_LOGS)):
        body, headers = firehose_request([record], "auth-1")
        del headers["X-Amz-Firehose-Access-Key"]
        response = ingestion.post(path, body, {**headers, "Authorization": f"Bearer {KEY}"})
        reply = json.loads(response.body)
        assert (response.status, reply["requestId"]) == (401, "auth-1")
        assert "missing X-Amz-Firehose-Access-Key" in reply["errorMessage"]
        response = ingestion.post(path, body, {**headers, "X-Amz-Firehose-Access-Key": "wrong"})
        assert response.status == 401
        assert json.loads(response.body)["errorMessage"] == "invalid X-Amz-Firehose-Access-Key"
    assert ingestion.counts() == (0, 0, 0)
    # the request id comes from the body when the header is absent
    body, headers = firehose_request([GOOD_LOGS], "from-body")
    del headers["X-Amz-Firehose-Request-Id"]
    assert_ack(ingestion.post(LOGS_PATH, body, headers), "from-body")
    assert ingestion.counts() == (1, 1, 1)


def test_bad_webhooks_are_refused_and_change_nothing(ingestion_factory) -> None:
    ingestion = ingestion_factory()
    auth = {"Authorization": f"Bearer {KEY}", "X-Micromegas-Service-Name": "svc"}
    assert ingestion.post("/ingestion/webhook", b"{}", {"X-Micromegas-Service-Name": "svc"}).status == 401
    assert ingestion.post("/ingestion/webhook", b"{}", {**auth, "Authorization": "Bearer nope"}).status == 401
    response = ingestion.post("/ingestion/webhook", b"", auth)
    assert (response.status, response.body) == (400, b"empty body")
    response = ingestion.post("/ingestion/webhook", b"\x1f\x8b junk", {**auth, "Content-Encoding": "gzip"})
    assert response.status == 400
    assert b"not valid gzip" in response.body
    assert ingestion.counts() == (0, 0, 0)


def test_oversize_requests_get_413_and_change_nothing(ingestion_factory) -> None:
    limit = 64 * 1024
    ingestion = ingestion_factory(IngestionLimits(max_body_bytes=limit))
    big = [logs_record("/g", "s", [("e1", T_MS, "x" * limit)])]  # compresses well below the limit
    body, headers = firehose_request(big, "big-1")
    assert len(body) < limit
    response = ingestion.post(LOGS_PATH, body, headers)
    reply = json.loads(response.body)
    assert (response.status, reply["requestId"]) == (413, "big-1")
    assert "record[0]: the decompressed records are larger than the request limit" in reply["errorMessage"]

    body, headers = firehose_request([b"\0" * limit], "big-2")
    response = ingestion.post(METRICS_PATH, body, headers)  # declared Content-Length over the limit
    assert (response.status, json.loads(response.body)["requestId"]) == (413, "big-2")

    body, headers = firehose_request([b"\0" * limit], "big-3")
    response = ingestion.post(METRICS_PATH, gzip.compress(body), {**headers, "Content-Encoding": "gzip"})
    assert response.status == 413  # a small gzip body over the limit once decompressed
    assert "after decompression" in json.loads(response.body)["errorMessage"]

    auth = {"Authorization": f"Bearer {KEY}"}
    response = ingestion.post("/ingestion/webhook", b"y" * (limit + 1), auth)
    assert response.status == 413
    assert ingestion.counts() == (0, 0, 0)


class FlakyStore:
    """An object store whose puts fail after the first ``healthy_puts`` until ``repaired``."""

    def __init__(self, inner, healthy_puts: int = 1) -> None:
        self._inner = inner
        self.healthy_puts = healthy_puts
        self.repaired = False

    async def put_if_absent(self, key, data):
        if not self.repaired and self.healthy_puts <= 0:
            raise ObjectStoreError("bucket unreachable")
        self.healthy_puts -= 1
        return await self._inner.put_if_absent(key, data)

    def __getattr__(self, name):
        return getattr(self._inner, name)


def test_a_delivery_failing_half_way_is_retried_into_one_copy(ingestion_factory) -> None:
    stores: list[FlakyStore] = []

    def flaky(inner) -> FlakyStore:
        stores.append(FlakyStore(inner))
        return stores[0]

    ingestion = ingestion_factory(store=flaky)
    records = [
        logs_record("/ecs/a", "task-1", [("e1", T_MS, "one")]),
        logs_record("/ecs/a", "task-2", [("e2", T_MS, "two")]),
    ]
    response = ingestion.firehose(LOGS_PATH, records, "half-1")
    reply = json.loads(response.body)
    assert (response.status, response.headers["Retry-After"], reply["requestId"]) == (503, "1", "half-1")
    assert "storage unavailable: bucket unreachable" in reply["errorMessage"]
    assert ingestion.count("blocks") == 1  # the first resource made it before the store failed

    stores[0].repaired = True
    assert_ack(ingestion.firehose(LOGS_PATH, records, "half-1"), "half-1")  # Firehose's retry
    assert_ack(ingestion.firehose(LOGS_PATH, records, "half-1"), "half-1")
    assert ingestion.count("blocks") == 2
    keys = ingestion.stack.call(ingestion.stack.stack.store.list_keys("blobs/"))
    assert len(keys) == 2
    tables = read(ingestion.stack, {"logs": "SELECT msg FROM log_entries ORDER BY msg"})
    assert [r["msg"] for r in tables["logs"]] == ["one", "two"]


def wait_until(condition, what: str, timeout: float = 10.0) -> None:
    _wait_until_shared(what, condition, timeout)


def test_firehose_requests_past_the_in_flight_budget_get_429_with_retry_after(ingestion_factory) -> None:
    ingestion = ingestion_factory(IngestionLimits(max_inflight_requests=1))
    budget = ingestion.service.budget
    # a delivery whose body is still arriving holds the only slot
    slow = socket.create_connection(("127.0.0.1", ingestion.port), timeout=30)
    try:
        slow.sendall(
            f"POST {LOGS_PATH} HTTP/1.1\r\nHost: sirius\r\nContent-Length: 100\r\n"
            f"X-Amz-Firehose-Access-Key: {KEY}\r\n\r\n{{".encode()
        )
        wait_until(lambda: budget.in_flight_requests == 1, "the slow request to be admitted")
        response = ingestion.firehose(LOGS_PATH, [GOOD_LOGS], "busy-1")
        reply = json.loads(response.body)
        assert (response.status, response.headers["Retry-After"], reply["requestId"]) == (429, "1", "busy-1")
        assert "too many requests in flight" in reply["errorMessage"]
    finally:
        slow.close()
    wait_until(lambda: budget.in_flight_requests == 0 and budget.in_flight_bytes == 0, "the slot to be released")
    assert ingestion.counts() == (0, 0, 0)
    assert_ack(ingestion.firehose(LOGS_PATH, [GOOD_LOGS], "busy-1"), "busy-1")  # Firehose's retry goes through
    assert ingestion.counts() == (1, 1, 1)


def test_sirius_up_serves_the_routes_open_without_keys(stack_factory) -> None:
    """The stack ``sirius up`` runs, without API keys: the routes take requests without credentials."""
    stack = stack_factory(daemon=False)
    port = int(stack.url.rsplit(":", 1)[1])
    for path, record, request_id in ((LOGS_PATH, GOOD_LOGS, "open-1"), (METRICS_PATH, GOOD_METRICS, "open-2")):
        body, headers = firehose_request([record], request_id)
        del headers["X-Amz-Firehose-Access-Key"]
        assert_ack(post(port, path, body, headers), request_id)
    assert post(port, "/ingestion/webhook", b'{"ping": true}', {"Content-Type": "application/json"}).status == 200
    count = stack.call(stack.stack.lake.pool.fetchval("SELECT count(*) FROM blocks"))
    assert count == 3
