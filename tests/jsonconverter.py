"""What Kafka Connect's JsonConverter (schemas enabled) accepts, as a checker for tests.

`conforms(schema, value)` follows JsonConverter.toConnectData: a null needs an optional field (or a
default), a value must be of its field's type, arrays and structs recursively; stricter than the
converter in one way: a struct's payload may not carry a field its schema does not list (the
converter would drop it silently, and cdc-logs' schemas describe every field they write). The real
converter is exercised in tests/integration/test_debezium_schema_block.py (Kafka's FileStreamSink).
"""

from __future__ import annotations

import base64
import json
from typing import Any

_INTS = {"int8", "int16", "int32", "int64"}


def conforms(schema: dict[str, Any], value: Any, path: str = "$") -> None:
    """Raise AssertionError unless JsonConverter.toConnectData would read `value` with `schema`
    (stricter: a struct's payload may not carry a field its schema does not list)."""
    if value is None:
        assert schema.get("optional") or "default" in schema, f"{path}: null for a required field"
        return
    kind = schema["type"]
    if kind in _INTS:
        assert isinstance(value, int) and not isinstance(value, bool), f"{path}: {value!r} is not {kind}"
    elif kind in ("float", "double"):
        # Jackson (and so Kafka's converter and Debezium) writes non-finite floats as these strings
        special = value in ("NaN", "Infinity", "-Infinity")
        assert special or (isinstance(value, int | float) and not isinstance(value, bool)), (
            f"{path}: {value!r}"
        )
    elif kind == "boolean":
        assert isinstance(value, bool), f"{path}: {value!r} is not boolean"
    elif kind == "string":
        assert isinstance(value, str), f"{path}: {value!r} is not a string"
    elif kind == "bytes":
        assert isinstance(value, str), f"{path}: {value!r} is not base64"
        base64.b64decode(value, validate=True)
    elif kind == "array":
        assert isinstance(value, list), f"{path}: {value!r} is not an array"
        for i, item in enumerate(value):
            conforms(schema["items"], item, f"{path}[{i}]")
    elif kind == "struct":
        assert isinstance(value, dict), f"{path}: {value!r} is not a struct"
        fields = {f["field"]: f for f in schema["fields"]}
        assert set(value) <= set(fields), f"{path}: fields {set(value) - set(fields)} not in the schema"
        for name, field in fields.items():
            conforms(field, value.get(name), f"{path}.{name}")
    else:
        raise AssertionError(f"{path}: unexpected type {kind}")


def conforms_record(raw: bytes | None) -> Any:
    """A key or value record in the JsonConverter form, checked; its parsed JSON (None for null)."""
    if raw is None:
        return None
    record = json.loads(raw)
    assert set(record) == {"schema", "payload"}
    conforms(record["schema"], record["payload"])
    return record
