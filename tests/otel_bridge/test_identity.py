"""OTLP identity formulas: byte-exact with the Rust ingester (micromegas-wire.md §9)."""

from __future__ import annotations

import uuid

import pytest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue

from sirius.otel_bridge import (
    NS_OTEL_BLOCK_V1,
    NS_OTEL_PROCESS_V1,
    NS_OTEL_STREAM_V1,
    attribute_map,
    attribute_text,
    block_id_for_payload,
    is_degenerate_resource,
    process_id_for_resource,
    process_key,
    stream_id_for,
)
from sirius.otel_bridge._identity import audience_prefix, process_owner, rust_f64_display, uuid5_bytes


def kvs(pairs):
    return attribute_map([KeyValue(key=k, value=AnyValue(string_value=v)) for k, v in pairs])


def test_namespaces_are_the_reference_constants() -> None:
    assert str(NS_OTEL_PROCESS_V1) == "80a447b8-fcdd-42a6-a613-f6c8719cd5fe"
    assert str(NS_OTEL_STREAM_V1) == "fe93bacf-e851-4cf6-8526-05f8454b3488"
    assert str(NS_OTEL_BLOCK_V1) == "5829a6f7-0577-4c8c-862f-cf4fdab445cc"


def test_process_id_matches_the_rust_regression_lock() -> None:
    # rust/otel-ingestion/tests/identity_tests.rs `process_id_is_stable_with_new_fields`.
    resource = kvs(
        [
            ("host.name", "my-host"),
            ("service.name", "my-service"),
            ("os.type", "linux"),
            ("os.version", "5.15.0"),
            ("host.arch", "x86_64"),
            ("service.version", "2.3.1"),
            ("telemetry.sdk.name", "opentelemetry"),
            ("telemetry.sdk.language", "rust"),
            ("telemetry.sdk.version", "0.28.0"),
            ("process.runtime.name", "rustc"),
            ("process.runtime.version", "1.88.0"),
        ]
    )
    assert str(process_id_for_resource(resource)) == "92267645-021b-5d0f-960b-c74719552658"


def test_process_key_has_31_fields_normalised_except_pid_and_start() -> None:
    key = process_key(
        kvs(
            [
                ("host.name", "  Foo "),
                ("process.pid", " 12 "),
                ("process.start_time", "2026-04-01T12:00:00Z"),
                ("user.name", "Bob"),
            ]
        )
    )
    fields = key.split("\x1f")
    assert len(fields) == 31
    assert fields[1] == "foo"
    assert fields[2] == " 12 "  # raw
    assert fields[3] == "2026-04-01T12:00:00Z"  # raw, legacy name as fallback
    assert fields[7] == "bob"  # owner, normalised
    # only ASCII letters are folded (Rust to_ascii_lowercase)
    assert process_key(kvs([("host.name", "ÉCOLE")])).split("\x1f")[1] == "École"


def test_identity_ignores_attribute_order_and_host_case() -> None:
    a = kvs([("service.name", "svc"), ("host.name", "FOO"), ("process.pid", "1")])
    b = kvs([("process.pid", "1"), ("host.name", "foo"), ("service.name", "svc")])
    assert process_id_for_resource(a) == process_id_for_resource(b)
    assert process_id_for_resource(a) != process_id_for_resource(kvs([("service.name", "svc"), ("process.pid", "2")]))


def test_runs_of_a_service_are_told_apart_by_what_the_resource_carries() -> None:
    service = [("service.name", "shop"), ("host.name", "node-1"), ("telemetry.sdk.language", "python")]

    def pid(*extra: tuple[str, str]) -> uuid.UUID:
        return process_id_for_resource(kvs([*service, *extra]))

    # the same resource (a retry, another signal of the same run) is the same process
    assert pid(("process.pid", "7")) == pid(("process.pid", "7"))
    # a restart: another pid, another instance id, or the same pid started at another time
    assert pid(("process.pid", "7")) != pid(("process.pid", "8"))
    assert pid(("service.instance.id", "a")) != pid(("service.instance.id", "b"))
    started = ("process.creation.time", "2026-01-01T00:00:00Z")
    restarted = ("process.creation.time", "2026-01-01T00:05:00Z")
    assert pid(("process.pid", "1"), started) != pid(("process.pid", "1"), restarted)
    # nothing per run in the resource: every run is one process (documented, and needed for retries)
    assert pid() == pid()


def test_owner_priority_and_creation_time_preference() -> None:
    assert process_owner(kvs([("user.name", "g"), ("process.real_user.name", "r"), ("process.user.name", "e")])) == "e"
    assert process_owner(kvs([("user.name", "g"), ("process.owner", "o")])) == "o"
    both = kvs([("process.start_time", "legacy"), ("process.creation.time", "canonical")])
    assert process_key(both).split("\x1f")[3] == "canonical"


def test_first_occurrence_of_a_key_wins() -> None:
    resource = attribute_map(
        [
            KeyValue(key="host.name", value=AnyValue(string_value="a")),
            KeyValue(key="host.name", value=AnyValue(string_value="b")),
        ]
    )
    assert process_key(resource).split("\x1f")[1] == "a"


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (AnyValue(string_value="x y"), "x y"),
        (AnyValue(int_value=-42), "-42"),
        (AnyValue(bool_value=True), "true"),
        (AnyValue(double_value=2.0), "2"),
        (AnyValue(double_value=0.1), "0.1"),
        (AnyValue(double_value=1e21), "1000000000000000000000"),
        (AnyValue(bytes_value=b"\x01\xff"), "[1, 255]"),
        (AnyValue(string_value_strindex=5), ""),  # profiling-only: treated as absent
        (AnyValue(), ""),
        (None, ""),
        (
            AnyValue(array_value=ArrayValue(values=[AnyValue(string_value="a")])),
            'Some(ArrayValue(ArrayValue { values: [AnyValue { value: Some(StringValue("a")) }] }))',
        ),
    ],
)
def test_attribute_text_is_rust_attr_to_string(value, text) -> None:
    assert attribute_text(value) == text


def test_rust_float_display() -> None:
    assert [rust_f64_display(v) for v in (3.0, -1.25, 1.5e-7, 123456789012.5)] == [
        "3",
        "-1.25",
        "0.00000015",
        "123456789012.5",
    ]


def test_degenerate_resources() -> None:
    assert is_degenerate_resource(kvs([("service.name", "svc")]))
    assert is_degenerate_resource(kvs([("host.name", "   ")]))
    assert not is_degenerate_resource(kvs([("service.name", "svc"), ("service.instance.id", "i")]))


def test_stream_and_block_ids() -> None:
    process_id = uuid.UUID("59df9dd5-3a0c-5e8a-bb3d-6add5a51cdeb")
    assert stream_id_for(process_id, "logs") == uuid.uuid5(NS_OTEL_STREAM_V1, f"{process_id}\x1flogs")
    assert len({stream_id_for(process_id, s) for s in ("logs", "metrics", "traces")}) == 3
    assert block_id_for_payload(b"hello") == uuid.uuid5(NS_OTEL_BLOCK_V1, "hello")
    assert block_id_for_payload(b"hello") != block_id_for_payload(b"world")
    assert block_id_for_payload(b"p", audience_prefix("team")) == uuid.uuid5(NS_OTEL_BLOCK_V1, "aud\x1fteam\x1fp")
    assert block_id_for_payload(b"\xff\x00") == uuid5_bytes(NS_OTEL_BLOCK_V1, b"\xff", b"\x00")


def test_audience_changes_the_process_namespace() -> None:
    resource = kvs([("service.name", "svc")])
    bound = process_id_for_resource(resource, "team")
    assert bound == uuid.uuid5(uuid.uuid5(NS_OTEL_PROCESS_V1, "team"), process_key(resource))
    assert bound != process_id_for_resource(resource)
