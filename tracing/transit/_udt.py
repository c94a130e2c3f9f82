"""Transit UDT metadata: the self-description of a stream's event layouts.

A stream registers two arrays of ``UserDefinedType`` (``dependencies_metadata`` and
``objects_metadata``); every block of the stream is decoded from them alone
(``micromegas-wire.md`` §5.2). This module holds the typed form and its CBOR codec.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import cbor2

from ._exceptions import WireFormatError

INTRINSIC_SIZES: dict[str, int] = {
    "u8": 1,
    "uint8": 1,
    "u32": 4,
    "uint32": 4,
    "u64": 8,
    "uint64": 8,
    "i64": 8,
    "int64": 8,
    "f64": 8,
}
"""Intrinsic member types the reader knows, with their byte size (there is no ``i32``)."""


@dataclass(frozen=True, slots=True)
class Member:
    """One field of a POD ``UserDefinedType``."""

    name: str
    type_name: str
    offset: int
    size: int
    is_reference: bool = False

    def to_cbor_value(self) -> dict[str, Any]:
        """Return the CBOR map Micromegas expects (serde field names)."""
        return {
            "name": self.name,
            "type_name": self.type_name,
            "offset": self.offset,
            "size": self.size,
            "is_reference": self.is_reference,
        }


@dataclass(frozen=True, slots=True)
class UserDefinedType:
    """A transit type: POD when ``size > 0`` (members at offsets), dynamic when ``size == 0``."""

    name: str
    size: int
    members: tuple[Member, ...] = ()
    is_reference: bool = False

    @property
    def is_dynamic(self) -> bool:
        """True for size-prefixed types whose body a name-specific reader parses."""
        return self.size == 0

    def member(self, name: str) -> Member | None:
        """Return the member called ``name``, or None when this layout has none."""
        for m in self.members:
            if m.name == name:
                return m
        return None

    def to_cbor_value(self) -> dict[str, Any]:
        """Return the CBOR map Micromegas expects (serde field names)."""
        return {
            "name": self.name,
            "size": self.size,
            "members": [m.to_cbor_value() for m in self.members],
            "is_reference": self.is_reference,
        }


def _field(obj: dict[Any, Any], key: str, kind: type, where: str) -> Any:
    if key not in obj:
        msg = f"{where}: missing {key!r}"
        raise WireFormatError(msg)
    value = obj[key]
    # bool is an int subclass in Python; CBOR true must not pass for an integer.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        msg = f"{where}: {key!r} must be {kind.__name__}, got {type(value).__name__}"
        raise WireFormatError(msg)
    if kind is int and not 0 <= value < 2**32:
        msg = f"{where}: {key!r} out of range: {value}"
        raise WireFormatError(msg)
    return value


def udt_from_value(value: Any) -> UserDefinedType:
    """Build a ``UserDefinedType`` from its decoded CBOR map.

    Raises:
        WireFormatError: when a key is missing or has the wrong type.
    """
    if not isinstance(value, dict):
        msg = f"UDT must be a map, got {type(value).__name__}"
        raise WireFormatError(msg)
    name = _field(value, "name", str, "UDT")
    where = f"UDT {name!r}"
    size = _field(value, "size", int, where)
    raw_members = _field(value, "members", list, where)
    is_reference = bool(_field(value, "is_reference", bool, where)) if "is_reference" in value else False
    members = []
    for raw in raw_members:
        if not isinstance(raw, dict):
            msg = f"{where}: member must be a map"
            raise WireFormatError(msg)
        m_name = _field(raw, "name", str, f"{where} member")
        m_where = f"{where} member {m_name!r}"
        m = Member(
            name=m_name,
            type_name=_field(raw, "type_name", str, m_where),
            offset=_field(raw, "offset", int, m_where),
            size=_field(raw, "size", int, m_where),
            is_reference=bool(_field(raw, "is_reference", bool, m_where)) if "is_reference" in raw else False,
        )
        if size and m.offset + m.size > size:
            msg = f"{m_where}: window {m.offset}+{m.size} exceeds type size {size}"
            raise WireFormatError(msg)
        members.append(m)
    return UserDefinedType(name=name, size=size, members=tuple(members), is_reference=is_reference)


def udts_from_value(value: Any) -> tuple[UserDefinedType, ...]:
    """Build a metadata array from its decoded CBOR value (a list of UDT maps)."""
    if not isinstance(value, list):
        msg = f"UDT metadata must be an array, got {type(value).__name__}"
        raise WireFormatError(msg)
    if len(value) > 256:
        # type indices are one byte: a longer array cannot be addressed and signals garbage.
        msg = f"UDT metadata has {len(value)} types, at most 256 are addressable"
        raise WireFormatError(msg)
    return tuple(udt_from_value(v) for v in value)


def udts_to_value(udts: Iterable[UserDefinedType]) -> list[dict[str, Any]]:
    """Return the CBOR-ready list for a metadata array."""
    return [u.to_cbor_value() for u in udts]


def encode_udts(udts: Sequence[UserDefinedType]) -> bytes:
    """Encode a metadata array as CBOR bytes (the form stored in ``streams.*_metadata``)."""
    return cbor2.dumps(udts_to_value(udts))


def decode_udts(data: bytes) -> tuple[UserDefinedType, ...]:
    """Decode CBOR bytes of a metadata array.

    Raises:
        WireFormatError: when the bytes are not CBOR or not a valid metadata array.
    """
    try:
        value = cbor2.loads(data)
    except Exception as exc:  # cbor2 raises several types (CBORDecodeError, ValueError, …)
        msg = f"UDT metadata is not valid CBOR: {exc}"
        raise WireFormatError(msg) from exc
    return udts_from_value(value)
