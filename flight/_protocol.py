"""FlightSQL protocol messages, defined by us (no generated code, no dependency on a client package).

The messages are the subset of Apache Arrow's ``format/FlightSql.proto`` that Sirius serves, with
the same package (``arrow.flight.protocol.sql``), names, field numbers and proto3 ``optional``
presence, so ``Any`` type URLs and wire bytes are identical to what every FlightSQL client sends.
They are built at import time from a ``FileDescriptorProto`` written below and registered in a
**private** descriptor pool: a process that also imports another copy of ``FlightSql.proto``
(the ``micromegas`` client ships one) sees no duplicate-symbol conflict.

``tests/flight/test_protocol.py`` checks every field against the client's generated classes.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError, Message

__all__ = [
    "PACKAGE",
    "ActionClosePreparedStatementRequest",
    "ActionCreatePreparedStatementRequest",
    "ActionCreatePreparedStatementResult",
    "CommandGetCatalogs",
    "CommandGetCrossReference",
    "CommandGetDbSchemas",
    "CommandGetExportedKeys",
    "CommandGetImportedKeys",
    "CommandGetPrimaryKeys",
    "CommandGetSqlInfo",
    "CommandGetTableTypes",
    "CommandGetTables",
    "CommandGetXdbcTypeInfo",
    "CommandPreparedStatementQuery",
    "CommandPreparedStatementUpdate",
    "CommandStatementIngest",
    "CommandStatementQuery",
    "CommandStatementUpdate",
    "DoPutPreparedStatementResult",
    "DoPutUpdateResult",
    "TicketStatementQuery",
    "pack",
    "type_name",
    "unpack_any",
]

PACKAGE = "arrow.flight.protocol.sql"

_F = descriptor_pb2.FieldDescriptorProto
_STRING, _BYTES, _BOOL = _F.TYPE_STRING, _F.TYPE_BYTES, _F.TYPE_BOOL
_UINT32, _INT32, _INT64 = _F.TYPE_UINT32, _F.TYPE_INT32, _F.TYPE_INT64
_OPTIONAL = "optional"  # proto3 explicit presence (synthetic oneof "_<name>")
_REPEATED = "repeated"
_PLAIN = "plain"

# message name -> [(field name, number, type, presence)]
_MESSAGES: dict[str, list[tuple[str, int, int, str]]] = {
    "CommandGetSqlInfo": [("info", 1, _UINT32, _REPEATED)],
    "CommandGetXdbcTypeInfo": [("data_type", 1, _INT32, _OPTIONAL)],
    "CommandGetCatalogs": [],
    "CommandGetDbSchemas": [
        ("catalog", 1, _STRING, _OPTIONAL),
        ("db_schema_filter_pattern", 2, _STRING, _OPTIONAL),
    ],
    "CommandGetTables": [
        ("catalog", 1, _STRING, _OPTIONAL),
        ("db_schema_filter_pattern", 2, _STRING, _OPTIONAL),
        ("table_name_filter_pattern", 3, _STRING, _OPTIONAL),
        ("table_types", 4, _STRING, _REPEATED),
        ("include_schema", 5, _BOOL, _PLAIN),
    ],
    "CommandGetTableTypes": [],
    "CommandGetPrimaryKeys": [
        ("catalog", 1, _STRING, _OPTIONAL),
        ("db_schema", 2, _STRING, _OPTIONAL),
        ("table", 3, _STRING, _PLAIN),
    ],
    "CommandGetExportedKeys": [
        ("catalog", 1, _STRING, _OPTIONAL),
        ("db_schema", 2, _STRING, _OPTIONAL),
        ("table", 3, _STRING, _PLAIN),
    ],
    "CommandGetImportedKeys": [
        ("catalog", 1, _STRING, _OPTIONAL),
        ("db_schema", 2, _STRING, _OPTIONAL),
        ("table", 3, _STRING, _PLAIN),
    ],
    "CommandGetCrossReference": [
        ("pk_catalog", 1, _STRING, _OPTIONAL),
        ("pk_db_schema", 2, _STRING, _OPTIONAL),
        ("pk_table", 3, _STRING, _PLAIN),
        ("fk_catalog", 4, _STRING, _OPTIONAL),
        ("fk_db_schema", 5, _STRING, _OPTIONAL),
        ("fk_table", 6, _STRING, _PLAIN),
    ],
    "ActionCreatePreparedStatementRequest": [
        ("query", 1, _STRING, _PLAIN),
        ("transaction_id", 2, _BYTES, _OPTIONAL),
    ],
    "ActionCreatePreparedStatementResult": [
        ("prepared_statement_handle", 1, _BYTES, _PLAIN),
        ("dataset_schema", 2, _BYTES, _PLAIN),
        ("parameter_schema", 3, _BYTES, _PLAIN),
    ],
    "ActionClosePreparedStatementRequest": [("prepared_statement_handle", 1, _BYTES, _PLAIN)],
    "CommandStatementQuery": [
        ("query", 1, _STRING, _PLAIN),
        ("transaction_id", 2, _BYTES, _OPTIONAL),
    ],
    "TicketStatementQuery": [("statement_handle", 1, _BYTES, _PLAIN)],
    "CommandPreparedStatementQuery": [("prepared_statement_handle", 1, _BYTES, _PLAIN)],
    "CommandStatementUpdate": [
        ("query", 1, _STRING, _PLAIN),
        ("transaction_id", 2, _BYTES, _OPTIONAL),
    ],
    "CommandPreparedStatementUpdate": [("prepared_statement_handle", 1, _BYTES, _PLAIN)],
    # Only the fields Sirius reads; the table-definition options (field 1) are skipped on parse.
    "CommandStatementIngest": [
        ("table", 2, _STRING, _PLAIN),
        ("schema", 3, _STRING, _OPTIONAL),
        ("catalog", 4, _STRING, _OPTIONAL),
        ("temporary", 5, _BOOL, _PLAIN),
        ("transaction_id", 6, _BYTES, _OPTIONAL),
    ],
    "DoPutUpdateResult": [("record_count", 1, _INT64, _PLAIN)],
    "DoPutPreparedStatementResult": [("prepared_statement_handle", 1, _BYTES, _OPTIONAL)],
}


def _file_descriptor() -> descriptor_pb2.FileDescriptorProto:
    proto = descriptor_pb2.FileDescriptorProto(name="sirius/FlightSql.proto", package=PACKAGE, syntax="proto3")
    for name, fields in _MESSAGES.items():
        message = proto.message_type.add(name=name)
        for field_name, number, field_type, presence in fields:
            field = message.field.add(name=field_name, number=number, type=field_type)
            if presence == _REPEATED:
                field.label = _F.LABEL_REPEATED
                continue
            field.label = _F.LABEL_OPTIONAL
            if presence == _OPTIONAL:
                field.proto3_optional = True
                field.oneof_index = len(message.oneof_decl)
                message.oneof_decl.add(name=f"_{field_name}")
    return proto


_POOL = descriptor_pool.DescriptorPool()
_POOL.Add(_file_descriptor())


def _message_class(name: str) -> Any:
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(f"{PACKAGE}.{name}"))


CommandGetSqlInfo = _message_class("CommandGetSqlInfo")
CommandGetXdbcTypeInfo = _message_class("CommandGetXdbcTypeInfo")
CommandGetCatalogs = _message_class("CommandGetCatalogs")
CommandGetDbSchemas = _message_class("CommandGetDbSchemas")
CommandGetTables = _message_class("CommandGetTables")
CommandGetTableTypes = _message_class("CommandGetTableTypes")
CommandGetPrimaryKeys = _message_class("CommandGetPrimaryKeys")
CommandGetExportedKeys = _message_class("CommandGetExportedKeys")
CommandGetImportedKeys = _message_class("CommandGetImportedKeys")
CommandGetCrossReference = _message_class("CommandGetCrossReference")
ActionCreatePreparedStatementRequest = _message_class("ActionCreatePreparedStatementRequest")
ActionCreatePreparedStatementResult = _message_class("ActionCreatePreparedStatementResult")
ActionClosePreparedStatementRequest = _message_class("ActionClosePreparedStatementRequest")
CommandStatementQuery = _message_class("CommandStatementQuery")
TicketStatementQuery = _message_class("TicketStatementQuery")
CommandPreparedStatementQuery = _message_class("CommandPreparedStatementQuery")
CommandStatementUpdate = _message_class("CommandStatementUpdate")
CommandPreparedStatementUpdate = _message_class("CommandPreparedStatementUpdate")
CommandStatementIngest = _message_class("CommandStatementIngest")
DoPutUpdateResult = _message_class("DoPutUpdateResult")
DoPutPreparedStatementResult = _message_class("DoPutPreparedStatementResult")

_BY_TYPE_NAME: dict[str, Any] = {f"{PACKAGE}.{name}": _message_class(name) for name in _MESSAGES}


def type_name(message: Message) -> str:
    """Full protobuf name of ``message`` (``arrow.flight.protocol.sql.CommandGetTables``)."""
    return message.DESCRIPTOR.full_name


def pack(message: Message) -> bytes:
    """Serialise ``message`` wrapped in ``google.protobuf.Any`` (how FlightSQL commands travel)."""
    wrapper = any_pb2.Any()
    wrapper.Pack(message)
    return wrapper.SerializeToString()


def unpack_any(data: bytes) -> Message | None:
    """Decode an ``Any``-wrapped FlightSQL message; None when ``data`` is not one we know.

    Returns the decoded message, or None when the bytes are not an ``Any`` or carry a type
    outside this module (the caller decides whether that is an error or a raw ticket).

    >>> unpack_any(pack(CommandStatementQuery(query="select 1"))).query
    'select 1'
    """
    wrapper = any_pb2.Any()
    try:
        wrapper.ParseFromString(data)
    except DecodeError:
        return None
    if not wrapper.type_url:
        return None
    cls = _BY_TYPE_NAME.get(wrapper.type_url.rsplit("/", 1)[-1])
    if cls is None:
        return None
    message = cls()
    try:
        message.ParseFromString(wrapper.value)
    except DecodeError:
        return None
    return message


def any_type_name(data: bytes) -> str | None:
    """The message type named by an ``Any`` (known or not), or None when ``data`` is not an ``Any``."""
    wrapper = any_pb2.Any()
    try:
        wrapper.ParseFromString(data)
    except DecodeError:
        return None
    return wrapper.type_url.rsplit("/", 1)[-1] or None
