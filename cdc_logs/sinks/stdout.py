"""Stdout sink: one Debezium JSON envelope per line (`json`), or a readable rendering (`pretty`).

With `json`, stdout carries nothing else (logs go to stderr), so `cdc-logs tail ... | jq` works.
Durable here means flushed to the pipe.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import IO, Any, Literal

import orjson
from pydantic import ConfigDict, Field

from cdc_logs import registry
from cdc_logs.configmodel import SinkConfigBase
from cdc_logs.envelope import ChangeEvent
from cdc_logs.sinks.base import Sink

_OP_STYLE = {
    "c": ("INSERT", "green"),
    "u": ("UPDATE", "yellow"),
    "d": ("DELETE", "red"),
    "r": ("READ", "cyan"),
    "t": ("TRUNCATE", "magenta"),
    "m": ("MESSAGE", "blue"),
}


class StdoutSink(Sink):
    def __init__(self, format: str = "json", stream: IO[bytes] | None = None, name: str = "stdout") -> None:
        if format not in ("json", "pretty"):
            raise ValueError(f"unknown format {format!r}")
        self.format = format
        self.name = name
        self._stream = stream
        self._console: Any = None

    @property
    def console(self) -> Any:
        """The rich console of `pretty` output (None for json), shared by the snapshot progress bar."""
        return self._console

    def open(self) -> None:
        if self._stream is None:
            self._stream = sys.stdout.buffer
        if self.format == "pretty":
            from rich.console import Console

            self._console = Console(file=sys.stdout, highlight=False, soft_wrap=True)

    def write(self, batch: Sequence[ChangeEvent]) -> None:
        if self.format == "pretty":
            for event in batch:
                self._console.print(render_pretty(event))
            sys.stdout.flush()
            return
        stream = self._stream
        assert stream is not None, "open() first"
        stream.write(b"".join(event.to_json() + b"\n" for event in batch))
        stream.flush()


def render_pretty(event: ChangeEvent) -> str:
    """One or two lines of rich markup describing a change."""
    label, color = _OP_STYLE.get(event.op.value, (event.op.value, "white"))
    where = event.source.qualified_table
    tx = f" tx={event.transaction.id}" if event.transaction else ""
    head = f"[bold {color}]{label:<8}[/] [bold]{where}[/]{tx}"
    if event.key:
        head += f" key={_compact(event.key)}"
    lines = [head]
    if event.op.value == "u" and event.before is not None and event.after is not None:
        changed = {
            k: f"{_compact(event.before.get(k))} -> {_compact(v)}"
            for k, v in event.after.items()
            if event.before.get(k) != v
        }
        lines.append(
            "    " + ", ".join(f"{k}: {v}" for k, v in changed.items())
            if changed
            else "    (no column changed)"
        )
    elif event.row is not None:
        lines.append("    " + _compact(event.row))
    if event.unchanged:
        lines.append(f"    [dim]unchanged (not sent by the source): {', '.join(event.unchanged)}[/]")
    return "\n".join(lines).replace("[[", "\\[[")


def _compact(value: Any) -> str:
    from cdc_logs.envelope import dumps

    text = dumps(value).decode() if not isinstance(value, str) else orjson.dumps(value).decode()
    return text.replace("[", "\\[")


# -- config ----------------------------------------------------------------------------------------
class StdoutSinkConfig(SinkConfigBase):
    """Standard output: one Debezium JSON envelope per line, or a readable rendering; durable means
    flushed to the pipe."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"type": "stdout", "format": "json"}]})

    type: Literal["stdout"] = Field(description="Selects this destination.")
    format: Literal["json", "pretty"] = Field(
        "json",
        description="json: one envelope per line and nothing else on stdout (logs go to stderr), for "
        "`| jq`; pretty: a short colored summary per change, for people.",
        examples=["pretty"],
    )


@registry.sink(StdoutSinkConfig, capabilities={"log", "ordered"})
def build(cfg: StdoutSinkConfig, ctx: registry.BuildContext) -> StdoutSink:
    return StdoutSink(cfg.format, name=cfg.name or cfg.type)
