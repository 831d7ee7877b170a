"""Stdout sink: JSON lines on a byte stream, and the pretty renderer."""

from __future__ import annotations

import io

import orjson

from cdc_logs.sinks.stdout import StdoutSink, render_pretty
from tests.helpers import make_event


def test_json_is_one_envelope_per_line() -> None:
    out = io.BytesIO()
    sink = StdoutSink("json", stream=out)
    sink.open()
    sink.write([make_event(1), make_event(2, op="u"), make_event(3, op="d")])
    lines = out.getvalue().splitlines()
    assert [orjson.loads(line)["op"] for line in lines] == ["c", "u", "d"]


def test_pretty_render_names_op_table_and_changes() -> None:
    text = render_pretty(make_event(5, op="u"))
    assert "UPDATE" in text and "main.t" in text and "v: 4 -> 5" in text
    assert "DELETE" in render_pretty(make_event(6, op="d"))
