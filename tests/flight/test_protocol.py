"""Our FlightSQL messages are wire-identical to Apache Arrow's FlightSql.proto (as the client ships it)."""

from __future__ import annotations

import pytest
from google.protobuf import any_pb2
from micromegas.flightsql import FlightSql_pb2

from sirius.flight import _protocol as proto
from sirius.flight._exceptions import InvalidQueryError, UnsupportedCommandError
from sirius.flight._server import _decode_ticket


@pytest.mark.parametrize("name", sorted(proto._MESSAGES))
def test_messages_match_flightsql_proto(name: str) -> None:
    ours = getattr(proto, name).DESCRIPTOR
    theirs = getattr(FlightSql_pb2, name).DESCRIPTOR
    assert ours.full_name == theirs.full_name
    for field in ours.fields:
        other = theirs.fields_by_name[field.name]
        assert (field.number, field.type, field.label, field.has_presence) == (
            other.number,
            other.type,
            other.label,
            other.has_presence,
        ), field.name


def test_any_round_trip_with_the_clients_classes() -> None:
    wrapper = any_pb2.Any()
    wrapper.Pack(FlightSql_pb2.CommandGetTables(table_types=["table"], include_schema=True, catalog=""))
    message = proto.unpack_any(wrapper.SerializeToString())
    assert isinstance(message, proto.CommandGetTables)
    assert list(message.table_types) == ["table"]
    assert message.include_schema
    assert message.HasField("catalog")
    assert not message.HasField("table_name_filter_pattern")
    parsed = any_pb2.Any()
    parsed.ParseFromString(proto.pack(proto.TicketStatementQuery(statement_handle=b"SELECT 1")))
    out = FlightSql_pb2.TicketStatementQuery()
    assert parsed.Unpack(out)
    assert out.statement_handle == b"SELECT 1"


def test_ticket_forms() -> None:
    sql = "SELECT 'x/y' AS a"
    assert _decode_ticket(proto.pack(proto.TicketStatementQuery(statement_handle=sql.encode()))) == sql
    assert _decode_ticket(proto.TicketStatementQuery(statement_handle=sql.encode()).SerializeToString()) == sql
    assert (
        _decode_ticket(proto.pack(proto.CommandPreparedStatementQuery(prepared_statement_handle=b"SELECT 2")))
        == "SELECT 2"
    )
    assert isinstance(_decode_ticket(proto.pack(proto.CommandGetCatalogs())), proto.CommandGetCatalogs)
    with pytest.raises(InvalidQueryError, match="invalid ticket"):
        _decode_ticket(b"\x00\x01\x02")
    with pytest.raises(InvalidQueryError, match="not UTF-8"):
        _decode_ticket(proto.pack(proto.TicketStatementQuery(statement_handle=b"\xff\xfe")))
    wrapper = any_pb2.Any()
    wrapper.Pack(FlightSql_pb2.ActionBeginTransactionRequest())
    with pytest.raises(UnsupportedCommandError, match="ActionBeginTransactionRequest"):
        _decode_ticket(wrapper.SerializeToString())


def test_doctests() -> None:
    import doctest

    from sirius.flight import _headers, _query_client
    from sirius.lakehouse import _sql_jsonb, _sql_table_functions, _sql_text

    for module in (proto, _headers, _query_client, _sql_jsonb, _sql_table_functions, _sql_text):
        assert doctest.testmod(module).failed == 0, module.__name__
