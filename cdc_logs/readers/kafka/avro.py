"""Avro records in the Confluent wire format, read with the writer's schema from a schema registry.

Wire format: magic byte 0, the schema id (4 bytes, big-endian), the Avro binary body. The writer schema
is fetched by id with the Confluent REST API, `GET <url>/schemas/ids/<id>` (Apicurio serves the same
API under /apis/ccompat/v7), once per id: an id names one schema forever, so the cache never expires.

What a record becomes:
- a record whose schema is a Debezium envelope (a record named `...Envelope` with before, after, source
  and op fields: Debezium's AvroConverter, cdc-logs' own Avro Kafka sink) is read as that envelope;
- any other record is the row (then op_field, key_fields, watermark apply as for JSON).
Values are made JSON-friendly, as Debezium's JSON converter shows them: bytes as base64 text, decimals
as their exact text, dates and times as ISO-8601 text, UUIDs as text.

Poison, not a crash (the consumer dead-letters it and goes on): a wrong magic byte, a body shorter than
the header, an id the registry does not have (404), a schema that is not Avro (PROTOBUF, JSON), a body
that does not match its schema. A registry that cannot be reached or refuses the credentials is not
the record's fault: that is a CdcError (CONNECTION, AUTH), and `run` retries with backoff.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import io
import struct
import uuid
from typing import Any

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.redact import redact

MAGIC = 0
WIRE_HINT = (
    "produce Confluent-framed Avro (magic byte 0, 4-byte schema id, Avro body) with a serializer that "
    "registers its schema in schema_registry_url, or set message_format: json"
)


class Poison(Exception):
    """The record cannot be read (its reason is the message); the consumer dead-letters it."""


class SchemaRegistryClient:
    """Reads writer schemas by id (Confluent REST API), cached per id; basic auth optional."""

    def __init__(
        self, url: str, *, username: str | None = None, password: str | None = None, timeout_s: float = 10.0
    ) -> None:
        import requests

        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._session = requests.Session()
        if username:
            self._session.auth = (username, password or "")
        self._parsed: dict[int, Any] = {}
        self._raw: dict[int, Any] = {}

    def schema(self, schema_id: int) -> Any:
        """The parsed (fastavro) writer schema of `schema_id`; Poison if the registry has no such id."""
        cached = self._parsed.get(schema_id)
        if cached is not None:
            return cached
        import fastavro
        import orjson
        import requests

        where = f"schema registry {redact(self.url)}"
        try:
            resp = self._session.get(f"{self.url}/schemas/ids/{schema_id}", timeout=self.timeout_s)
        except requests.RequestException as exc:
            raise CdcError(
                ErrorKind.CONNECTION,
                f"{where} unreachable: {redact(str(exc))}",
                "check schema_registry_url; the source resumes from its last commit once it answers",
            ) from exc
        if resp.status_code in (401, 403):
            raise CdcError(
                ErrorKind.AUTH,
                f"{where} refused the credentials ({resp.status_code})",
                "check schema_registry_username / schema_registry_password",
            )
        if resp.status_code == 404:
            raise Poison(f"the schema registry has no schema id {schema_id}")
        if resp.status_code >= 300:
            raise CdcError(
                ErrorKind.CONNECTION, f"{where} answered {resp.status_code}: {redact(resp.text)[:300]}"
            )
        try:
            body = resp.json()
            kind = str(body.get("schemaType") or "AVRO")
            text = body["schema"]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise CdcError(
                ErrorKind.CONNECTION, f"{where} answered something that is not a schema: {exc}"
            ) from exc
        if kind != "AVRO":
            raise Poison(f"schema id {schema_id} is a {kind} schema, not Avro")
        try:
            raw = orjson.loads(text)
            parsed = fastavro.parse_schema(raw)
        except Exception as exc:
            raise Poison(f"schema id {schema_id} is not a valid Avro schema: {exc}") from exc
        self._raw[schema_id], self._parsed[schema_id] = raw, parsed
        return parsed

    def raw(self, schema_id: int) -> Any:
        """The schema as the registry gave it (JSON), once `schema()` has fetched it."""
        return self._raw[schema_id]

    def close(self) -> None:
        self._session.close()


def is_framed(data: bytes | None) -> bool:
    """Whether `data` starts like a Confluent-framed record (magic byte 0 and a 4-byte id)."""
    return data is not None and len(data) >= 5 and data[0] == MAGIC


def decode(data: bytes | None, registry: SchemaRegistryClient) -> tuple[Any, Any]:
    """(the JSON-friendly value, the writer schema as JSON) of a framed record; Poison if unreadable."""
    import fastavro

    if data is None:
        raise Poison("the message has no value")
    if len(data) < 5:
        raise Poison(f"{len(data)} bytes: shorter than the Confluent header (magic byte + 4-byte id)")
    if data[0] != MAGIC:
        raise Poison(f"magic byte {data[0]} is not 0: not the Confluent Avro wire format")
    (schema_id,) = struct.unpack(">I", data[1:5])
    schema = registry.schema(schema_id)
    body = io.BytesIO(data[5:])
    try:
        value = fastavro.schemaless_reader(body, schema)
    except Exception as exc:
        raise Poison(
            f"the Avro body does not match schema id {schema_id}: {type(exc).__name__}: {exc}"
        ) from exc
    left = len(data) - 5 - body.tell()
    if left:
        raise Poison(f"the Avro body is longer than schema id {schema_id} reads ({left} bytes left)")
    return jsonable(value), registry.raw(schema_id)


def is_envelope(schema: Any) -> bool:
    """A Debezium envelope's value schema: a record named ...Envelope with before/after/source/op."""
    if not isinstance(schema, dict) or schema.get("type") != "record":
        return False
    fields = {f.get("name") for f in schema.get("fields", ()) if isinstance(f, dict)}
    return str(schema.get("name", "")).endswith("Envelope") and {"before", "after", "source", "op"} <= fields


def jsonable(value: Any) -> Any:
    """`value` as Debezium's JSON converter would show it (see the module docstring)."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [jsonable(v) for v in value]
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    return value
