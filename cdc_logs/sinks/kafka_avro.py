"""Avro for the Kafka sink: Debezium-like schemas derived from the envelope, registered in a schema
registry over its REST API, and the Confluent wire format (magic byte 0, 4-byte big-endian schema
id, Avro binary body), so Confluent's and Apicurio's deserializers read the records.

Schemas, as Debezium's Avro converter shapes them:
  value  record `<topic>.Envelope`: before / after (`["null", <topic>.Value]`), source (record
         `<topic>.Source` from the source block's fields), op, ts_ms, transaction (nullable record)
  key    record `<topic>.Key` over the key columns
The envelope carries no column types, so field types are inferred from values (long / double /
boolean / string; nested values and JSON as JSON text; Debezium's encodings already made dates and
decimals ints and strings). Every column is nullable with default null, so adding one is a
backward-compatible change. A column first seen as null is typed string. When a column's values
change type, a new schema version is registered: long widens to double, any other clash makes the
column a string (the registry's compatibility rule decides whether it accepts that; a refusal
fails the batch as SINK_REJECTED).

Registry: `POST <url>/subjects/<subject>/versions` (Confluent API; Apicurio serves it under
/apis/ccompat/v7), subjects `<topic>-key` / `<topic>-value` (TopicNameStrategy) unless `value_subject`
is set. Ids are cached per (subject, schema), so a steady stream registers nothing.
"""

from __future__ import annotations

import io
import re
import struct
from collections.abc import Mapping
from typing import Any

import orjson

from cdc_logs.envelope import ChangeEvent, dumps
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.redact import redact

_NAME = re.compile(r"[^A-Za-z0-9_]")
_MAGIC = b"\x00"


def avro_name(text: str) -> str:
    """A legal Avro name component (letters, digits, _; not starting with a digit)."""
    name = _NAME.sub("_", text) or "_"
    return f"_{name}" if name[0].isdigit() else name


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

    def register(self, subject: str, schema: Mapping[str, Any]) -> int:
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


class AvroEncoder:
    """Kafka sink encoder: (event, topic, key JSON) -> (Avro key, Avro value) in the wire format."""

    def __init__(self, registry: SchemaRegistry, *, value_subject: str | None = None) -> None:
        self.registry = registry
        self.value_subject = value_subject
        self._types: dict[tuple[str, str], dict[str, str]] = {}  # (topic, record) -> column -> type
        self._parsed: dict[str, Any] = {}

    def __call__(self, event: ChangeEvent, topic: str, key: bytes | None) -> tuple[bytes | None, bytes]:
        value_schema, value = self.value_record(event, topic)
        value_subject = self.value_subject or f"{topic}-value"
        out_value = self._frame(self.registry.register(value_subject, value_schema), value_schema, value)
        if event.key is None:
            return None, out_value
        key_schema, key_record = self.key_record(event, topic)
        return self._frame(
            self.registry.register(f"{topic}-key", key_schema), key_schema, key_record
        ), out_value

    # -- schemas -----------------------------------------------------------------------------------
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
                            "name": "ConnectDefault",
                            "namespace": "io.confluent.connect.avro",
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

    def key_record(self, event: ChangeEvent, topic: str) -> tuple[dict[str, Any], dict[str, Any]]:
        ns = namespace(topic)
        columns = self._columns(topic, "Key", [event.key])
        schema = {
            "type": "record",
            "name": "Key",
            "namespace": ns,
            "fields": [_nullable(c, t) for c, t in columns.items()],
        }
        return schema, _row(event.key, columns) or {}

    # -- wire format -------------------------------------------------------------------------------
    def _frame(self, schema_id: int, schema: dict[str, Any], record: dict[str, Any]) -> bytes:
        import fastavro

        text = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS).decode()
        parsed = self._parsed.get(text)
        if parsed is None:
            parsed = self._parsed[text] = fastavro.parse_schema(schema)
        buf = io.BytesIO()
        buf.write(_MAGIC + struct.pack(">I", schema_id))
        fastavro.schemaless_writer(buf, parsed, record)
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
