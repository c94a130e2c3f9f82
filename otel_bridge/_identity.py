"""Micromegas identities of OTLP data: uuid5 process, stream and block ids (``micromegas-wire.md`` §9).

The formulas are load-bearing: a Rust Micromegas ingester and a Sirius one must derive the same
ids from the same request so each deduplicates the other's retries. Everything here mirrors
``rust/otel-ingestion/src/identity.rs``:

* ``process_id = uuid5(NS_OTEL_PROCESS_V1, key)`` where ``key`` joins 31 resource attributes with
  the unit separator U+001F (most of them trimmed and ASCII-lower-cased); with a bound audience
  the namespace is ``uuid5(NS_OTEL_PROCESS_V1, audience)``;
* ``stream_id = uuid5(NS_OTEL_STREAM_V1, f"{process_id}␟{signal}")`` (␟ = U+001F);
* ``block_id = uuid5(NS_OTEL_BLOCK_V1, prefix + payload)`` over the protobuf bytes of one resource.

Attribute values are stringified the way Rust's ``attr_to_string`` does (``str`` as-is, ints in
decimal, bools ``true``/``false``, doubles with Rust's ``Display`` for ``f64``).

**What is one process.** The key holds every per-run attribute an SDK can send, so an OTLP
producer's runs are told apart by whatever its resource carries, combined:

* ``service.instance.id`` (the SDK's ``service_instance`` resource detector, or
  ``OTEL_RESOURCE_ATTRIBUTES``): a new value per run is a new process;
* ``process.pid`` (the SDK's ``ProcessResourceDetector``, ``OTEL_EXPERIMENTAL_RESOURCE_DETECTORS
  =process``) together with ``host.name``/``host.id``: a restart gets another pid;
* ``process.creation.time`` (else ``process.start_time``): tells apart runs that reuse a pid
  (PID 1 of a restarted container on the same host name).

A resource with none of them (the Python SDK's default: ``service.name`` and
``telemetry.sdk.*`` only) gives the same id to every run of the service: there is nothing in
the request to tell runs apart, and the id must stay a pure function of the resource so retried
exports (and a Rust Micromegas ingester) land on the same process. The in-process ``sirius``
exporters are not concerned: they write under the running process's own (native) identity,
new for every run (``_process_identity``).
"""

from __future__ import annotations

import functools
import hashlib
import math
import uuid
from collections.abc import Iterable, Mapping
from decimal import Decimal

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

__all__ = [
    "NS_OTEL_BLOCK_V1",
    "NS_OTEL_PROCESS_V1",
    "NS_OTEL_STREAM_V1",
    "SEPARATOR",
    "attribute_map",
    "attribute_text",
    "audience_prefix",
    "block_id_for_payload",
    "is_degenerate_resource",
    "process_id_for_resource",
    "process_key",
    "process_owner",
    "process_start_text",
    "stream_id_for",
    "uuid5_bytes",
]

NS_OTEL_PROCESS_V1 = uuid.UUID("80a447b8-fcdd-42a6-a613-f6c8719cd5fe")
"""Namespace of OTel-derived ``process_id`` values."""
NS_OTEL_STREAM_V1 = uuid.UUID("fe93bacf-e851-4cf6-8526-05f8454b3488")
"""Namespace of OTel-derived ``stream_id`` values."""
NS_OTEL_BLOCK_V1 = uuid.UUID("5829a6f7-0577-4c8c-862f-cf4fdab445cc")
"""Namespace of OTel-derived ``block_id`` values."""
SEPARATOR = "\x1f"
"""ASCII unit separator between the fields of an identity key."""

_OWNER_KEYS = ("process.owner", "process.user.name", "process.real_user.name", "user.name")

# The 31 fields of the process key, in order; ``True`` = normalised (trim + ASCII lower-case).
# Rows 4 and 8 (creation time, owner) are computed separately and are listed as None.
_KEY_FIELDS: tuple[tuple[str | None, bool], ...] = (
    ("host.id", True),
    ("host.name", True),
    ("process.pid", False),
    (None, False),  # process.creation.time, fallback process.start_time (raw)
    ("service.namespace", True),
    ("service.name", True),
    ("service.instance.id", True),
    (None, True),  # owner
    ("os.type", True),
    ("os.version", True),
    ("os.name", True),
    ("os.description", True),
    ("os.build_id", True),
    ("host.arch", True),
    ("host.type", True),
    ("host.image.id", True),
    ("host.image.name", True),
    ("host.image.version", True),
    ("host.cpu.model.id", True),
    ("host.cpu.model.name", True),
    ("host.cpu.family", True),
    ("host.cpu.vendor.id", True),
    ("host.cpu.stepping", True),
    ("host.cpu.cache.l2.size", True),
    ("service.version", True),
    ("telemetry.sdk.name", True),
    ("telemetry.sdk.language", True),
    ("telemetry.sdk.version", True),
    ("process.runtime.name", True),
    ("process.runtime.version", True),
    ("process.runtime.description", True),
)


def rust_f64_display(value: float) -> str:
    """Format a float as Rust's ``Display`` for ``f64`` does: shortest round-trip digits, no exponent.

    >>> [rust_f64_display(v) for v in (1.0, 1.5, 1e21, 1.5e-7, -0.0, float("inf"), float("nan"))]
    ['1', '1.5', '1000000000000000000000', '0.00000015', '-0', 'inf', 'NaN']
    """
    if math.isnan(value):
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "inf" if value > 0 else "-inf"
    text = format(Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _rust_debug_str(text: str) -> str:
    # Rust's Debug for str: double quotes, escapes for quotes, backslashes and control characters.
    out = ['"']
    for ch in text:
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{{{ord(ch):x}}}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _rust_debug_f64(value: float) -> str:
    # Debug for f64 keeps a ".0" on integral values; exponent forms are rare enough to ignore.
    text = rust_f64_display(value)
    return text if any(c in text for c in ".ie") or text in ("NaN",) else text + ".0"


def _debug_any_value(value: AnyValue) -> str:
    return f"AnyValue {{ value: {_debug_value_option(value)} }}"


def _debug_value_option(value: AnyValue) -> str:
    kind = value.WhichOneof("value")
    if kind is None:
        return "None"
    return f"Some({_debug_value(value, kind)})"


def _debug_value(value: AnyValue, kind: str) -> str:  # noqa: PLR0911 - one arm per AnyValue kind, as Rust's match
    if kind == "string_value":
        return f"StringValue({_rust_debug_str(value.string_value)})"
    if kind == "bool_value":
        return f"BoolValue({'true' if value.bool_value else 'false'})"
    if kind == "int_value":
        return f"IntValue({value.int_value})"
    if kind == "double_value":
        return f"DoubleValue({_rust_debug_f64(value.double_value)})"
    if kind == "bytes_value":
        return f"BytesValue([{', '.join(str(b) for b in value.bytes_value)}])"
    if kind == "string_value_strindex":
        return f"StringValueStrindex({value.string_value_strindex})"
    if kind == "array_value":
        items = ", ".join(_debug_any_value(v) for v in value.array_value.values)
        return f"ArrayValue(ArrayValue {{ values: [{items}] }})"
    items = ", ".join(
        f"KeyValue {{ key: {_rust_debug_str(kv.key)}, "
        f"value: {'Some(' + _debug_any_value(kv.value) + ')' if kv.HasField('value') else 'None'}, "
        f"key_strindex: {kv.key_strindex} }}"
        for kv in value.kvlist_value.values
    )
    return f"KvlistValue(KeyValueList {{ values: [{items}] }})"


def attribute_text(value: AnyValue | None) -> str:  # noqa: PLR0911 - one arm per AnyValue kind, as Rust's match
    """Stringify an attribute value exactly as the identity formulas need it.

    Strings as-is, ints in decimal, bools ``true``/``false``, doubles with Rust's ``Display``,
    bytes as Rust's ``Debug`` of ``Vec<u8>`` (``[1, 2]``); the profiling-only string index is
    treated as absent; arrays and key-value lists use (an emulation of) prost's ``Debug`` form —
    they never carry identity in practice.
    """
    if value is None:
        return ""
    kind = value.WhichOneof("value")
    if kind is None or kind == "string_value_strindex":
        return ""
    if kind == "string_value":
        return value.string_value
    if kind == "int_value":
        return str(value.int_value)
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "double_value":
        return rust_f64_display(value.double_value)
    if kind == "bytes_value":
        return f"[{', '.join(str(b) for b in value.bytes_value)}]"
    return f"Some({_debug_value(value, kind)})"


def attribute_map(attributes: Iterable[KeyValue]) -> dict[str, AnyValue | None]:
    """Index attributes by key; the **first** occurrence of a key wins (Rust's ``find``)."""
    out: dict[str, AnyValue | None] = {}
    for kv in attributes:
        if kv.key not in out:
            out[kv.key] = kv.value if kv.HasField("value") else None
    return out


def _norm(text: str) -> str:
    # Rust's to_ascii_lowercase: only A-Z change (str.lower() would also fold non-ASCII letters).
    return text.strip(" \t\n\r\x0c\x0b").translate(_ASCII_LOWER)


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _raw(attrs: Mapping[str, AnyValue | None], key: str) -> str:
    return attribute_text(attrs.get(key))


def process_owner(attrs: Mapping[str, AnyValue | None]) -> str:
    """First non-empty of ``process.owner``, ``process.user.name``, ``process.real_user.name``, ``user.name``."""
    for key in _OWNER_KEYS:
        text = _raw(attrs, key)
        if text:
            return text
    return ""


def process_start_text(attrs: Mapping[str, AnyValue | None]) -> str:
    """``process.creation.time``, else the legacy ``process.start_time`` (raw text)."""
    return _raw(attrs, "process.creation.time") or _raw(attrs, "process.start_time")


def process_key(attrs: Mapping[str, AnyValue | None]) -> str:
    """The 31-field identity key of a resource (``micromegas-wire.md`` §9.2)."""
    fields: list[str] = []
    for index, (key, normalise) in enumerate(_KEY_FIELDS):
        if key is not None:
            text = _raw(attrs, key)
            fields.append(_norm(text) if normalise else text)
        elif index == 3:
            fields.append(process_start_text(attrs))
        else:  # index 7
            fields.append(_norm(process_owner(attrs)))
    return SEPARATOR.join(fields)


def is_degenerate_resource(attrs: Mapping[str, AnyValue | None]) -> bool:
    """True when none of host.id, host.name, process.pid, service.instance.id is set.

    Such producers all collapse onto one process id.
    """
    return not (
        _norm(_raw(attrs, "host.id"))
        or _norm(_raw(attrs, "host.name"))
        or _raw(attrs, "process.pid")
        or _norm(_raw(attrs, "service.instance.id"))
    )


def process_id_for_resource(attrs: Mapping[str, AnyValue | None], audience: str | None = None) -> uuid.UUID:
    """``uuid5`` process id of a resource (per-audience namespace when one is bound)."""
    namespace = NS_OTEL_PROCESS_V1 if audience is None else uuid.uuid5(NS_OTEL_PROCESS_V1, audience)
    return uuid.uuid5(namespace, process_key(attrs))


@functools.lru_cache(maxsize=4096)  # one per (process, signal): receivers ask for it on every request
def stream_id_for(process_id: uuid.UUID, signal: str) -> uuid.UUID:
    """``uuid5(NS_OTEL_STREAM_V1, f"{process_id}␟{signal}")`` (␟ = U+001F); signal is logs, metrics or traces."""
    return uuid.uuid5(NS_OTEL_STREAM_V1, f"{process_id}{SEPARATOR}{signal}")


def uuid5_bytes(namespace: uuid.UUID, *parts: bytes) -> uuid.UUID:
    """RFC 4122 version-5 UUID of a binary name (``uuid.uuid5`` only takes text before Python 3.12).

    >>> uuid5_bytes(uuid.NAMESPACE_DNS, b"python.org") == uuid.uuid5(uuid.NAMESPACE_DNS, "python.org")
    True
    """
    digest = hashlib.sha1(namespace.bytes, usedforsecurity=False)
    for part in parts:  # incremental: no copy of a multi-MiB payload
        digest.update(part)
    return uuid.UUID(bytes=digest.digest()[:16], version=5)


def block_id_for_payload(payload: bytes, prefix: bytes = b"") -> uuid.UUID:
    """``uuid5(NS_OTEL_BLOCK_V1, prefix + payload)`` (``prefix`` = ``aud␟<aud>␟`` when an audience is bound)."""
    return uuid5_bytes(NS_OTEL_BLOCK_V1, prefix, payload)


def audience_prefix(audience: str | None) -> bytes:
    """The block-id hash prefix for a bound audience (empty without one)."""
    return b"" if audience is None else f"aud{SEPARATOR}{audience}{SEPARATOR}".encode()
