"""Kafka Connect schema (JsonConverter's JSON form) -> Avro schema and Avro datum, as AvroData does it.

Debezium's Avro output is Confluent's `AvroData` applied to the connector's Connect schemas, and the
Connect schema of an event is what cdc_logs.connect_schema builds (the `schema` block of
JsonConverter's `schemas.enable=true` form). So this module takes that JSON and applies AvroData's
rules with its defaults (`connect.meta.data=true`, `enhanced.avro.schema.support=false`):

  int8 / int16            int, with "connect.type": "int8" / "int16"
  int32 / int64           int / long
  float / double          float / double      (JsonConverter's names for float32 / float64)
  boolean, string, bytes  the same
  array                   array of the element's type (an optional element is ["null", T])
  map, string keys        map of the value's type
  map, other keys         array of record io.confluent.connect.avro.MapEntry {key, value}
  struct                  record named by the Connect name (namespace = everything before the last
                          dot); an unnamed one is io.confluent.connect.avro.ConnectDefault (then
                          ConnectDefault2, ...)
  optional                union ["null", T], field default null; with a default: [T, "null"] and
                          that default
  name / version / doc /  "connect.name" / "connect.version" / "connect.doc" / "connect.parameters" /
  parameters / default    "connect.default" properties of the (non-union) type
  ...connect.data.Decimal bytes, logicalType decimal, precision = parameter connect.decimal.precision
                          (64 without it), scale = parameter scale
  ...connect.data.Date    int, logicalType date;  Time: int, time-millis;  Timestamp: long,
                          timestamp-millis

A named type is written in full once, then referred to by name (before/after share `<...>.Value`),
and a nested record in its parent's namespace omits `namespace`: the JSON Avro's Java `Schema.toString`
prints. tests/fixtures/avro/avrodata_expected.json holds what AvroData itself gave for schema blocks
recorded from Debezium 3.6.1; the unit tests compare with it.

Names: Avro allows [A-Za-z_][A-Za-z0-9_]* per name component. Debezium's
`schema.name.adjustment.mode=avro` replaces any other character with `_` and puts `_` before a leading
digit; the same is applied here to each component of a record name and to field names (Debezium's
`field.name.adjustment.mode=avro`), so any table and column name gives a legal schema; a record's
"connect.name" is the adjusted name, as with Debezium's adjustment. Legal names pass unchanged.

`avro_datum` turns an event's row (the envelope's values, docs/envelope.md: Decimals as text or
`Decimal`, bytes as base64 text or `bytes`, times as integers) into the datum fastavro writes for
that schema.
"""

from __future__ import annotations

import base64
import decimal
import re
from collections.abc import Mapping
from typing import Any

from cdc_logs.envelope import encode_value
from cdc_logs.errors import CdcError, ErrorKind

DECIMAL = "org.apache.kafka.connect.data.Decimal"
DATE = "org.apache.kafka.connect.data.Date"
TIME = "org.apache.kafka.connect.data.Time"
TIMESTAMP = "org.apache.kafka.connect.data.Timestamp"
VARIABLE_SCALE_DECIMAL = "io.debezium.data.VariableScaleDecimal"  # struct {scale: int32, value: bytes}
DECIMAL_PRECISION = "connect.decimal.precision"  # the parameter Debezium sets on numeric(p, s)
DEFAULT_PRECISION = 64  # AvroData's precision for a Decimal without that parameter
DEFAULT_NAMESPACE = "io.confluent.connect.avro"

_PRIMITIVE = {
    "int8": "int",
    "int16": "int",
    "int32": "int",
    "int64": "long",
    "float": "float",
    "float32": "float",
    "double": "double",
    "float64": "double",
    "boolean": "boolean",
    "string": "string",
    "bytes": "bytes",
}
_LOGICAL = {DATE: "date", TIME: "time-millis", TIMESTAMP: "timestamp-millis"}
_INVALID = re.compile(r"[^A-Za-z0-9_]")
_JSON_NATIVE = (bool, int, float, str, list, dict)


def avro_name(text: str) -> str:
    """One legal Avro name component: other characters become _, a leading digit gets a _ before it."""
    name = _INVALID.sub("_", text) or "_"
    return f"_{name}" if name[0].isdigit() else name


def avro_fullname(text: str) -> str:
    """A legal Avro full name: each dot-separated component made legal (avro_name)."""
    return ".".join(avro_name(part) for part in text.split("."))


def connect_to_avro(schema: Mapping[str, Any]) -> Any:
    """The Avro schema (JSON-ready) AvroData makes of a Connect schema in JsonConverter's JSON form."""
    return _ToAvro().convert(schema, namespace=None)


class _ToAvro:
    """One conversion: remembers the named types already written and the unnamed structs counted."""

    def __init__(self) -> None:
        self.defined: set[str] = set()
        self.unnamed = 0

    def convert(self, schema: Mapping[str, Any], namespace: str | None) -> Any:
        base = self.base(schema, namespace)
        if not schema.get("optional", False):
            return base
        # AvroData puts a default's branch first: Avro takes a union field's default from branch 0.
        return [base, "null"] if schema.get("default") is not None else ["null", base]

    def base(self, schema: Mapping[str, Any], namespace: str | None) -> Any:
        kind = schema["type"]
        name = schema.get("name")
        if kind == "struct":
            return self.record(schema, namespace)
        out: dict[str, Any]
        if kind == "array":
            out = {"type": "array", "items": self.convert(schema["items"], namespace)}
        elif kind == "map":
            keys, values = schema["keys"], schema["values"]
            if keys["type"] == "string" and not keys.get("optional", False):
                out = {"type": "map", "values": self.convert(values, namespace)}
            else:
                out = {"type": "array", "items": self.map_entry(keys, values, namespace)}
        elif kind in _PRIMITIVE:
            out = {"type": _PRIMITIVE[kind]}
            if name == DECIMAL and kind == "bytes":
                params = schema.get("parameters") or {}
                out["scale"] = int(params.get("scale", 0))
                out["precision"] = int(params.get(DECIMAL_PRECISION, DEFAULT_PRECISION))
        else:
            raise ValueError(f"not a Kafka Connect schema type: {kind!r}")
        self.connect_props(out, schema)
        if kind in ("int8", "int16"):
            out["connect.type"] = kind
        if name == DECIMAL and kind == "bytes":
            out["logicalType"] = "decimal"
        elif name in _LOGICAL:
            out["logicalType"] = _LOGICAL[name]
        # A primitive with no property is written as its bare name, as Avro prints it.
        return out["type"] if len(out) == 1 and kind in _PRIMITIVE else out

    def record(self, schema: Mapping[str, Any], namespace: str | None) -> Any:
        if schema.get("name"):
            full = avro_fullname(schema["name"])
        else:
            self.unnamed += 1
            suffix = str(self.unnamed) if self.unnamed > 1 else ""
            full = f"{DEFAULT_NAMESPACE}.ConnectDefault{suffix}"
        space, _, short = full.rpartition(".")
        if full in self.defined:
            return short if space == (namespace or "") else full
        self.defined.add(full)
        out: dict[str, Any] = {"type": "record", "name": short}
        if space != (namespace or ""):
            out["namespace"] = space
        fields: list[dict[str, Any]] = []
        seen: dict[str, str] = {}
        for field in schema.get("fields", []):
            fname = avro_name(field["field"])
            if fname in seen:
                raise CdcError(
                    ErrorKind.SINK_REJECTED,
                    f"columns {seen[fname]!r} and {field['field']!r} of {full} both become the Avro "
                    f"field {fname!r}",
                    "rename one of them, or exclude one with a transform",
                )
            seen[fname] = field["field"]
            fields.append(self.field(fname, field, space or None))
        out["fields"] = fields
        self.connect_props(out, schema)
        if "connect.name" in out:
            out["connect.name"] = full  # Debezium's avro adjustment renames the Connect schema itself
        return out

    def field(self, name: str, schema: Mapping[str, Any], namespace: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {"name": name, "type": self.convert(schema, namespace)}
        if schema.get("default") is not None:
            out["default"] = default_value(schema, schema["default"])
        elif schema.get("optional", False):
            out["default"] = None
        return out

    def map_entry(self, keys: Mapping[str, Any], values: Mapping[str, Any], namespace: str | None) -> Any:
        entry = {
            "type": "struct",
            "name": f"{DEFAULT_NAMESPACE}.MapEntry",
            "fields": [{**keys, "field": "key"}, {**values, "field": "value"}],
        }
        out = self.record(entry, namespace)
        if isinstance(out, dict):
            del out["connect.name"]  # AvroData names the entry record but marks it as no Connect type
        return out

    @staticmethod
    def connect_props(out: dict[str, Any], schema: Mapping[str, Any]) -> None:
        if schema.get("doc") is not None:
            out["connect.doc"] = schema["doc"]
        if schema.get("version") is not None:
            out["connect.version"] = int(schema["version"])
        if schema.get("parameters"):
            out["connect.parameters"] = {k: str(v) for k, v in schema["parameters"].items()}
        if schema.get("default") is not None:
            out["connect.default"] = default_value(schema, schema["default"])
        if schema.get("name"):
            out["connect.name"] = schema["name"]


def default_value(schema: Mapping[str, Any], value: Any) -> Any:
    """A Connect default (as JsonConverter writes it) as an Avro default (bytes: ISO-8859-1 text)."""
    if value is None:
        return None
    kind = schema["type"]
    if kind == "bytes" and schema.get("name") == DECIMAL:
        # Defaults come in the envelope's encoding (decimal text); AvroData writes the unscaled bytes.
        scale = int((schema.get("parameters") or {}).get("scale", 0))
        try:
            unscaled = _unscaled_bytes(int(decimal.Decimal(str(value)).scaleb(scale)))
        except decimal.InvalidOperation:  # JsonConverter's own form: base64 of the unscaled bytes
            unscaled = base64.b64decode(value)
        return unscaled.decode("latin-1")
    if kind == "bytes":
        raw = base64.b64decode(value) if isinstance(value, str) else bytes(value)
        return raw.decode("latin-1")
    if kind == "struct":
        return {
            avro_name(f["field"]): default_value(f, value.get(f["field"], f.get("default")))
            for f in schema.get("fields", [])
        }
    if kind == "array":
        return [default_value(schema["items"], v) for v in value]
    if kind == "map" and schema["keys"]["type"] == "string":
        return {k: default_value(schema["values"], v) for k, v in value.items()}
    return value


# -- values ----------------------------------------------------------------------------------------
def avro_datum(schema: Mapping[str, Any], value: Any, path: str = "") -> Any:
    """The datum for fastavro of `value` (an envelope value, docs/envelope.md) under Connect `schema`."""
    if value is None:
        if "default" in schema and schema["default"] is not None:
            return avro_datum(schema, schema["default"], path)
        if schema.get("optional", False):
            return None
        raise _bad(path, "is null but the schema says it is required")
    kind = schema["type"]
    name = schema.get("name")
    if kind == "struct":
        if name == VARIABLE_SCALE_DECIMAL and not isinstance(value, Mapping):
            return _variable_scale(value, path, schema)
        if not isinstance(value, Mapping):
            raise _bad(path, f"is {type(value).__name__}, the schema says struct")
        return {
            avro_name(f["field"]): avro_datum(f, value.get(f["field"]), f"{path}.{f['field']}")
            for f in schema.get("fields", [])
        }
    if kind == "bytes":
        if name == DECIMAL:
            return _decimal_bytes(value, path, schema)
        if isinstance(value, str):
            return base64.b64decode(value)
        return bytes(value)
    if not isinstance(value, _JSON_NATIVE):
        value = encode_value(value)  # datetime, Decimal, UUID...: the envelope's own encoding
    if kind == "array":
        return [avro_datum(schema["items"], v, f"{path}[]") for v in value]
    if kind == "map":
        if schema["keys"]["type"] == "string" and not schema["keys"].get("optional", False):
            return {str(k): avro_datum(schema["values"], v, f"{path}{{}}") for k, v in value.items()}
        return [
            {"key": avro_datum(schema["keys"], k, path), "value": avro_datum(schema["values"], v, path)}
            for k, v in value.items()
        ]
    if kind in ("float", "double", "float32", "float64"):
        return float(value)
    if kind == "string" and not isinstance(value, str):
        from cdc_logs.envelope import dumps

        return dumps(value).decode()  # a JSON value in a string column: its JSON text
    return value


def _variable_scale(value: Any, path: str, schema: Mapping[str, Any]) -> dict[str, Any] | None:
    """Decimal text (the envelope's form) as Debezium's VariableScaleDecimal: the scale and the unscaled
    value, big-endian two's complement."""
    number = _decimal(value, path, schema)
    if number is None:
        return None
    _sign, _digits, exponent = number.as_tuple()
    scale = max(-int(exponent), 0)
    unscaled = int(number.scaleb(scale))
    return {"scale": scale, "value": _unscaled_bytes(unscaled)}


def _unscaled_bytes(unscaled: int) -> bytes:
    """Big-endian two's complement in as few bytes as Java's BigInteger.toByteArray writes."""
    length = (unscaled if unscaled >= 0 else ~unscaled).bit_length() // 8 + 1
    return unscaled.to_bytes(length, "big", signed=True)


def _decimal_bytes(value: Any, path: str, schema: Mapping[str, Any]) -> bytes | None:
    """A Connect Decimal's Avro bytes, written here rather than by fastavro so that they are AvroData's
    to the byte (fastavro pads some negative numbers with a redundant 0xff)."""
    number = _decimal(value, path, schema)
    if number is None:
        return None
    scale = int((schema.get("parameters") or {}).get("scale", 0))
    exponent = number.as_tuple().exponent
    if isinstance(exponent, int) and -exponent > scale:
        raise _bad(path, f"{value} has more than the column's {scale} decimal places")
    return _unscaled_bytes(int(number.scaleb(scale)))


def _decimal(value: Any, path: str, schema: Mapping[str, Any]) -> decimal.Decimal | None:
    try:
        number = value if isinstance(value, decimal.Decimal) else decimal.Decimal(str(value))
    except decimal.InvalidOperation as exc:
        raise _bad(path, f"{value!r} is not a decimal number") from exc
    if number.is_finite():
        return number
    # Avro's decimal has no NaN or infinity: null where the column allows it.
    if schema.get("optional", False):
        return None
    raise _bad(path, f"{value} has no Avro decimal form and the column is required")


def _bad(path: str, text: str) -> CdcError:
    return CdcError(
        ErrorKind.SINK_REJECTED,
        f"Avro: the value of {path.lstrip('.') or 'the record'} {text}",
        "the table schema and the event disagree: report it with the table's definition",
    )
