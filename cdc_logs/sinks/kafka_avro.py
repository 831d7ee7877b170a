"""Avro for the Kafka sink: Debezium's Avro schemas from the source's table schema, registered in a
schema registry over its REST API, and the Confluent wire format (magic byte 0, 4-byte big-endian
schema id, Avro binary body), so Confluent's and Apicurio's deserializers read the records.

Typed (every event that carries a TableSchema, i.e. every native reader's): the record's Kafka
Connect schema comes from cdc_logs.connect_schema (the JsonConverter schema block Debezium writes:
`<base>.Key`, `<base>.Envelope` with `before`/`after` of `<base>.Value`, the connector's `Source`
struct, `event.block`), and cdc_logs.sinks.avro_schema turns it into Avro with AvroData's rules, so
the Avro equals what Debezium + Kafka Connect's AvroConverter registers for the same table. A new
table schema version (after DDL) gives a new Avro schema, registered as a new version of the
subject: an added nullable column is an optional field with default null, a backward-compatible
change under the registry's default rule; a change the rule refuses fails the batch as SINK_REJECTED.
The Connect schema may have per-event variants (connect_schema: a null in a NOT NULL column makes it
optional, a multidimensional Postgres array nests its items): each is another version of the subject;
a nested array is not BACKWARD-compatible with the flat one, so the registry refuses it and the batch
is rejected explicitly, never written with a schema that misdescribes it.

Fallback (events without a TableSchema: a `debezium` source reading a topic written without schemas):
field types are inferred from values (long / double / boolean / string; nested values and JSON as JSON
text), every column nullable with default null. A column first seen as null is typed string; when a
column's values change type a new version is registered (long widens to double, any other clash
makes it a string).

Registry: `POST <url>/subjects/<subject>/versions` (Confluent API; Apicurio serves it under
/apis/ccompat/v7), subjects `<topic>-key` / `<topic>-value` (TopicNameStrategy) unless `value_subject`
is set. Ids are cached per (subject, schema), so a steady stream registers nothing.
"""

from __future__ import annotations

import io
import struct
from collections.abc import Mapping
from typing import Any

import orjson

from cdc_logs.envelope import ChangeEvent, Op, dumps
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.redact import redact
from cdc_logs.sinks.avro_schema import avro_datum, avro_name, connect_to_avro

_MAGIC = b"\x00"
__all__ = ["AvroEncoder", "SchemaRegistry", "avro_name", "decode_wire", "namespace"]


def namespace(topic: str) -> str:
    return ".".join(avro_name(part) for part in topic.split("."))


def _avro_type(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "long"
    if isinstance(value, float):
        return "double"
    return "string"  # str, and dict/list written as JSON text


def _avro_value(value: Any, avro_type: str) -> Any:
    if value is None:
        return None
    if avro_type == "string" and not isinstance(value, str):
        return dumps(value).decode()
    if avro_type == "double" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _nullable(name: str, avro_type: Any) -> dict[str, Any]:
    return {"name": avro_name(name), "type": ["null", avro_type], "default": None}


class SchemaRegistry:
    """Minimal client of the Confluent Schema Registry REST API: register a schema, get its id."""

    def __init__(self, url: str, *, username: str | None = None, password: str | None = None) -> None:
        import requests

        self.url = url.rstrip("/")
        self._session = requests.Session()
        if username:
            self._session.auth = (username, password or "")
        self._ids: dict[tuple[str, str], int] = {}

    def register(self, subject: str, schema: Mapping[str, Any], *, text: str | None = None) -> int:
        """The id of `schema` under `subject` (registered if new). `text`: its JSON, if known."""
        if text is None:
            text = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS).decode()
        cached = self._ids.get((subject, text))
        if cached is not None:
            return cached
        import requests

        try:
            resp = self._session.post(
                f"{self.url}/subjects/{subject}/versions",
                data=orjson.dumps({"schema": text}),
                headers={"Content-Type": "application/vnd.schemaregistry.v1+json"},
                timeout=30,
            )
        except requests.RequestException as exc:
            raise CdcError(
                ErrorKind.SINK_TRANSIENT,
                f"schema registry {redact(self.url)} unreachable: {exc}",
                "check destination.schema_registry_url",
            ) from exc
        if resp.status_code in (401, 403):
            raise CdcError(ErrorKind.AUTH, f"schema registry refused the credentials ({resp.status_code})")
        if resp.status_code in (409, 422):
            raise CdcError(
                ErrorKind.SINK_REJECTED,
                f"schema registry refused a new schema for {subject}: {redact(resp.text)[:300]}",
                "the table changed incompatibly with the subject's compatibility rule: relax it or "
                "register the schema by hand",
            )
        if resp.status_code >= 300:
            raise CdcError(
                ErrorKind.SINK_TRANSIENT,
                f"schema registry answered {resp.status_code}: {redact(resp.text)[:300]}",
            )
        schema_id = int(resp.json()["id"])
        self._ids[(subject, text)] = schema_id
        return schema_id

    def close(self) -> None:
        self._session.close()


class _Prepared:
    """An Avro schema ready to write with: its JSON text (the registry's cache key) and fastavro's
    parsed form."""

    __slots__ = ("avro", "parsed", "text")

    def __init__(self, avro: Any) -> None:
        import fastavro

        self.avro = avro
        self.text = orjson.dumps(avro, option=orjson.OPT_SORT_KEYS).decode()
        self.parsed = fastavro.parse_schema(avro)


class AvroEncoder:
    """Kafka sink encoder: (event, topic, key JSON) -> (Avro key, Avro value) in the wire format.

    `prefix` is the Kafka sink's {prefix}: Debezium's schema names start with it (default: the
    event's source.name, as for topics)."""

    def __init__(
        self, registry: SchemaRegistry, *, value_subject: str | None = None, prefix: str | None = None
    ) -> None:
        self.registry = registry
        self.value_subject = value_subject
        self.prefix = prefix
        self._types: dict[tuple[str, str], dict[str, str]] = {}  # (topic, record) -> column -> type
        # id(Connect schema) -> (that schema, its Avro): connect_schema hands out one dict per table
        # version, so a steady stream converts each schema once; holding the dict keeps its id unique.
        self._typed: dict[int, tuple[Mapping[str, Any], _Prepared]] = {}
        self._inferred: dict[str, _Prepared] = {}  # fallback schemas by their JSON text

    def __call__(
        self, event: ChangeEvent, topic: str, key: bytes | None
    ) -> tuple[bytes | None, bytes | None]:
        typed = event.schema is not None or event.op is Op.MESSAGE
        out_value: bytes | None
        if event.flat is not None and event.op is not Op.MESSAGE:
            out_value = self._flat_value(event, topic)
        else:
            if typed:
                value_schema, value = self.typed_value(event)
            else:
                value_schema, value = self._fallback(*self.value_record(event, topic))
            out_value = self._frame(self.value_subject or f"{topic}-value", value_schema, value)
        if key is None:
            return None, out_value
        key_payload = orjson.loads(key)
        if typed:
            key_schema, key_datum = self.typed_key(event, key_payload)
        else:
            key_schema, key_datum = self._fallback(*self.key_record(key_payload, topic))
        return self._frame(f"{topic}-key", key_schema, key_datum), out_value

    def _flat_value(self, event: ChangeEvent, topic: str) -> bytes | None:
        """An unwrapped event (transforms/unwrap.py): the flattened row under its Connect schema
        (connect_schema.flat_schema) converted as AvroData converts it; a null value (both tombstone
        modes) is a null record, as the AvroConverter writes no bytes for one."""
        from cdc_logs import connect_schema

        if event.schema is None:
            raise CdcError(
                ErrorKind.CONFIG,
                f"an unwrapped {event.source.qualified_table} event carries no table schema, so its Avro "
                "schema is unknown",
                "write this destination with JSON (drop `format: avro`), or make the source carry schemas",
            )
        row = event.flat.value(event)
        if row is None:
            return None
        connect = connect_schema.flat_schema(event, self.prefix)
        return self._frame(
            self.value_subject or f"{topic}-value", self._converted(connect), avro_datum(connect, row)
        )

    # -- typed: from the event's table schema ------------------------------------------------------
    def typed_value(self, event: ChangeEvent) -> tuple[_Prepared, Any]:
        """The envelope's Avro schema (from its Connect schema) and datum."""
        from cdc_logs import connect_schema

        connect = connect_schema.envelope_schema(event, self.prefix)
        return self._converted(connect), avro_datum(connect, event.to_dict())

    def typed_key(self, event: ChangeEvent, key: Mapping[str, Any]) -> tuple[_Prepared, Any]:
        """The key's Avro schema and datum, over the key's columns (primary key or key_field)."""
        from cdc_logs import connect_schema

        connect = connect_schema.key_schema(event, self.prefix, tuple(key))
        if connect is None:  # pragma: no cover - key_schema gives None only for a null key
            raise CdcError(ErrorKind.INTERNAL, "a Kafka key without a Connect schema")
        return self._converted(connect), avro_datum(connect, key)

    def _converted(self, connect: Mapping[str, Any]) -> _Prepared:
        cached = self._typed.get(id(connect))
        if cached is None or cached[0] is not connect:
            if len(self._typed) >= 4096:  # many tables or versions: start again rather than grow
                self._typed.clear()
            cached = self._typed[id(connect)] = (connect, _Prepared(connect_to_avro(connect)))
        return cached[1]

    # -- fallback: inferred from values (events without a table schema) ----------------------------
    def _fallback(self, schema: dict[str, Any], datum: Any) -> tuple[_Prepared, Any]:
        text = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS).decode()
        prepared = self._inferred.get(text)
        if prepared is None:
            prepared = self._inferred[text] = _Prepared(schema)
        return prepared, datum

    def _columns(self, topic: str, record: str, rows: list[Mapping[str, Any] | None]) -> dict[str, str]:
        known = self._types.setdefault((topic, record), {})
        for row in rows:
            for column, value in (row or {}).items():
                old, seen = known.get(column), _avro_type(value)
                if old is None:
                    known[column] = seen or "string"
                elif seen is not None and seen != old:
                    # long widens to double (Avro promotes it on read); any other clash becomes text.
                    known[column] = "double" if {old, seen} == {"long", "double"} else "string"
        return {c: known[c] for c in _ordered(rows) if c in known}

    def value_record(self, event: ChangeEvent, topic: str) -> tuple[dict[str, Any], dict[str, Any]]:
        ns = namespace(topic)
        columns = self._columns(topic, "Value", [event.before, event.after])
        source = event.source.to_dict()
        source_types = self._columns(topic, "Source", [source])
        row_schema: dict[str, Any] = {
            "type": "record",
            "name": "Value",
            "namespace": ns,
            "fields": [_nullable(c, t) for c, t in columns.items()],
        }
        schema = {
            "type": "record",
            "name": "Envelope",
            "namespace": ns,
            "connect.name": f"{ns}.Envelope",
            "fields": [
                {"name": "before", "type": ["null", row_schema], "default": None},
                {"name": "after", "type": ["null", f"{ns}.Value"], "default": None},
                {
                    "name": "source",
                    "type": {
                        "type": "record",
                        "name": "Source",
                        "namespace": ns,
                        "fields": [_nullable(c, t) for c, t in source_types.items()],
                    },
                },
                {"name": "op", "type": "string"},
                {"name": "ts_ms", "type": ["null", "long"], "default": None},
                {
                    "name": "transaction",
                    "type": [
                        "null",
                        {
                            "type": "record",
                            "name": "block",
                            "namespace": "event",
                            "connect.name": "event.block",
                            "connect.version": 1,
                            "fields": [
                                {"name": "id", "type": "string"},
                                {"name": "total_order", "type": "long"},
                                {"name": "data_collection_order", "type": "long"},
                            ],
                        },
                    ],
                    "default": None,
                },
            ],
        }
        record = {
            "before": _row(event.before, columns),
            "after": _row(event.after, columns),
            "source": _row(source, source_types),
            "op": event.op.value,
            "ts_ms": event.ts_ms,
            "transaction": event.transaction.to_dict() if event.transaction else None,
        }
        return schema, record

    def key_record(self, key: Mapping[str, Any], topic: str) -> tuple[dict[str, Any], dict[str, Any]]:
        ns = namespace(topic)
        columns = self._columns(topic, "Key", [key])
        schema = {
            "type": "record",
            "name": "Key",
            "namespace": ns,
            "fields": [_nullable(c, t) for c, t in columns.items()],
        }
        return schema, _row(key, columns) or {}

    # -- wire format -------------------------------------------------------------------------------
    def _frame(self, subject: str, schema: _Prepared, datum: Any) -> bytes:
        import fastavro

        schema_id = self.registry.register(subject, schema.avro, text=schema.text)
        buf = io.BytesIO()
        buf.write(_MAGIC + struct.pack(">I", schema_id))
        try:
            fastavro.schemaless_writer(buf, schema.parsed, datum)
        except (ValueError, TypeError, OverflowError) as exc:
            raise CdcError(
                ErrorKind.SINK_REJECTED,
                f"a value does not fit its Avro schema ({subject}): {exc}",
                "the table schema and the event disagree: report it with the table's definition",
            ) from exc
        return buf.getvalue()


def decode_wire(data: bytes, schema: Mapping[str, Any]) -> tuple[int, Any]:
    """(schema id, record) of a Confluent-framed Avro message; for tests and tools."""
    import fastavro

    if len(data) < 5 or data[:1] != _MAGIC:
        raise ValueError("not a Confluent Avro message (magic byte 0 + 4-byte schema id)")
    (schema_id,) = struct.unpack(">I", data[1:5])
    return schema_id, fastavro.schemaless_reader(io.BytesIO(data[5:]), fastavro.parse_schema(dict(schema)))


def _ordered(rows: list[Mapping[str, Any] | None]) -> list[str]:
    return list(dict.fromkeys(c for row in rows for c in (row or {})))


def _row(row: Mapping[str, Any] | None, columns: Mapping[str, str]) -> dict[str, Any] | None:
    if row is None:
        return None
    return {avro_name(c): _avro_value(row.get(c), t) for c, t in columns.items()}
