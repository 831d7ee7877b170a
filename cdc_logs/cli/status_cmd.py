"""`cdc-logs status -c pipeline.yaml`: one table per source: position, lag, snapshot progress, the
destinations' backlog and the last error.

From the running service's `/status` endpoint (observability/health.py) when it answers: at `--url`;
else at the address the running `cdc-logs run` recorded in the pipeline lock file (any `--http-port`;
sqlite/file offset stores), then at `health_checks.host:port` of the config when `enabled`. Otherwise
from the offset store: the committed positions and when they were committed, and it says so; for sources
that can tell (Postgres slot, MariaDB/MySQL binlog) the lag in bytes is measured from the server as the
running service would (the reader's `lag_probe`, on a short-lived connection). No backlog or errors:
those live in the running process. Everything printed goes through `redact`: names are free text, and
errors can quote what a server said.

Exit status: 0 when something was read (the live view, or the offset store's view, which says plainly
that the service is not running); 1 when nothing could be read: the service does not answer and no
source has a committed position (the view is still printed, and stderr says why).
"""

from __future__ import annotations

import datetime as dt
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from cdc_logs.build import build_offsets, build_reader, offsets_path, source_name
from cdc_logs.config import PipelineConfig
from cdc_logs.configfile import load_config
from cdc_logs.configmodel import SourceConfigBase
from cdc_logs.errors import CdcError
from cdc_logs.observability.lag import format_bytes
from cdc_logs.observability.redact import redact
from cdc_logs.position import Position

TIMEOUT_S = 3.0


def recorded_http(cfg: Any, pipeline: str) -> str | None:
    """The `host:port` a running `cdc-logs run` of this pipeline recorded in its lock file (None with
    a Postgres offset store, or when none is recorded). A hint: the run may have died since."""
    from cdc_logs.offsets.lock import FileLock

    if cfg.type == "postgres":
        return None
    http = FileLock.recorded(FileLock.path_for(offsets_path(cfg, pipeline), pipeline)).get("http")
    return http if isinstance(http, str) and http else None


def status(
    config: Path = typer.Option(..., "-c", "--config", help="Pipeline YAML file."),
    url: str | None = typer.Option(
        None,
        "--url",
        help="Base URL of the running service's HTTP endpoints (default: the address the running "
        "service recorded in its pipeline lock, else health_checks of the config when enabled), e.g. "
        "http://127.0.0.1:9000.",
    ),
    as_json: bool = typer.Option(False, "--json", help="JSON for scripts."),
) -> None:
    """Show each source's position, lag, snapshot progress, the destinations' backlog and the last error."""
    cfg = load_config(config)
    body: dict[str, Any] | None = None
    problem = "no --url given, no running service recorded its address, and health_checks is not enabled"
    problems = []
    for base in [url] if url else candidate_urls(cfg):
        body, problem = fetch_status(base)
        if body is not None:
            break
        problems.append(problem)
    if body is None and problems:
        problem = "; ".join(problems)
    if body is None:
        body = offline_status(cfg, problem)
    if as_json:
        print(redact(orjson.dumps(body).decode()))
    else:
        console = Console() if sys.stdout.isatty() else Console(width=200)
        for renderable in render(body):
            console.print(renderable)
    if nothing_known(body):
        print(
            f"status: nothing could be read: {redact(problem)}, and no source of pipeline "
            f"{redact(str(body.get('pipeline')))} has a committed position in the offset store (never run, "
            "or another offsets store?)",
            file=sys.stderr,
        )
        raise typer.Exit(1)


def nothing_known(body: dict[str, Any]) -> bool:
    """The offset store's view with no committed position at all: the command read nothing."""
    sources = body.get("sources") or {}
    return body.get("origin") != "service" and not any(s.get("position") for s in sources.values())


def default_url(cfg: PipelineConfig) -> str | None:
    health = cfg.health_checks
    if not health.enabled:
        return None
    host = "127.0.0.1" if health.host in ("0.0.0.0", "::", "") else health.host
    return f"http://{host}:{health.port}"


def candidate_urls(cfg: PipelineConfig) -> list[str]:
    """Where a running service may answer, without --url: the address `run` recorded in the pipeline
    lock (it knows its `--http-port`; a hint, the run may have died), then the config's health_checks."""
    urls = []
    recorded = recorded_http(cfg.offsets, cfg.name)
    if recorded:
        host, _, port = recorded.rpartition(":")
        host = "127.0.0.1" if host in ("0.0.0.0", "[::]", "") else host  # listening on every interface
        urls.append(f"http://{host}:{port}")
    configured = default_url(cfg)
    if configured and configured not in urls:
        urls.append(configured)
    return urls


def fetch_status(base: str) -> tuple[dict[str, Any] | None, str]:
    """(the /status body, "") from a running service, or (None, why not)."""
    target = base.rstrip("/") + "/status"
    try:
        with urllib.request.urlopen(target, timeout=TIMEOUT_S) as resp:
            body = orjson.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return None, f"{redact(target)} answered HTTP {exc.code}"
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return None, f"the service does not answer at {redact(target)} ({redact(str(reason))})"
    if not isinstance(body, dict) or "sources" not in body:
        return None, f"{redact(target)} did not answer with a cdc-logs status"
    body["origin"] = "service"
    body["url"] = target
    return body, ""


def offline_status(cfg: PipelineConfig, problem: str) -> dict[str, Any]:
    """What the offset store knows: per source, the committed position and when it was committed."""
    store = build_offsets(cfg.offsets, cfg.name)
    try:
        stored = {r.source: r for r in store.list(cfg.name)}
    finally:
        store.close()
    now = time.time()
    sources: dict[str, Any] = {}
    for src in cfg.all_sources():
        name = source_name(src)
        row = stored.get(name)
        position: str | None = None
        decoded: Position | None = None
        if row is not None:
            try:
                decoded = row.decoded()
                position = decoded.describe()
            except CdcError as exc:
                position = f"unreadable: {exc.message}"
        lag: dict[str, Any] = {"max_lag": src.max_lag, "on_max_lag": src.on_max_lag} if src.max_lag else {}
        lag.update(_measure(src, cfg.name, decoded))
        sources[name] = {
            "position": position,
            "last_commit_at": None if row is None else row.updated_ms / 1000,
            "last_commit_age_s": None if row is None else round(now - row.updated_ms / 1000, 1),
            "lag": lag or None,
            "snapshot": [],
            "last_error": None,
        }
    return {
        "origin": "offsets",
        "pipeline": cfg.name,
        "note": problem,
        "state": "not running (or not reachable): showing the offset store",
        "sinks": {(d.name or d.type): {} for d in cfg.all_sinks()},
        "sources": sources,
    }


def _measure(src: SourceConfigBase, pipeline: str, committed: Position | None) -> dict[str, Any]:
    """The source's lag in bytes as its server reports it now ({} when it cannot tell)."""
    try:
        probe = build_reader(src, pipeline).lag_probe()
    except Exception:  # a source whose client is not installed, say: no measure, still a status
        return {}
    if probe is None:
        return {}
    try:
        measured = probe.measure(committed)
    except CdcError as exc:
        return {"probe_error": exc.message}
    finally:
        probe.close()
    if measured.lag_bytes is None and measured.retained_bytes is None:
        return {}
    return {"lag_bytes": measured.lag_bytes, "retained_bytes": measured.retained_bytes, "slot": measured.slot}


# -- rendering (pure: unit-tested) -----------------------------------------------------------------
def _age(seconds: Any) -> str:
    if seconds is None:
        return "-"
    s = float(seconds)
    if s < 120:
        return f"{s:.0f} s ago"
    if s < 7200:
        return f"{s / 60:.0f} min ago"
    return f"{s / 3600:.1f} h ago"


def _when(epoch: Any) -> str:
    if epoch is None:
        return "never"
    return dt.datetime.fromtimestamp(float(epoch), dt.UTC).isoformat(timespec="seconds")


def _lag(lag: dict[str, Any] | None, live: bool) -> str:
    parts = []
    if lag and lag.get("lag_bytes") is not None:
        parts.append(format_bytes(lag["lag_bytes"]))
    if lag and lag.get("lag_seconds") is not None:
        parts.append(f"{float(lag['lag_seconds']):.0f} s")
    if not live:
        text = "unknown: the service is not running (or not reachable)"
        if parts:
            text = f"{', '.join(parts)} of log not consumed (measured now; the service is not running)"
        if lag and lag.get("probe_error"):
            text += f" (measuring it failed: {lag['probe_error']})"
        return text
    if not lag:
        return "-"
    text = ", ".join(parts) or "not measured yet"
    if lag.get("probe_error"):
        text += f" (last measurement failed: {lag['probe_error']})"
    return text


def _max_lag(lag: dict[str, Any] | None) -> str | None:
    if not lag or not lag.get("max_lag"):
        return None
    text = f"{lag['max_lag']} (on_max_lag: {lag.get('on_max_lag')})"
    if lag.get("exceeded"):
        text = f"[bold red]EXCEEDED[/bold red]: {lag['exceeded']}; {text}"
    return text


def _capture(info: dict[str, Any] | None) -> str | None:
    """`capture: poll | auto` sources: the mode, what auto chose and why, what polling cannot see."""
    if not info:
        return None
    mode, chosen = info.get("mode"), info.get("chosen")
    text = (
        f"{mode}: chose {chosen}"
        if mode == "auto" and chosen
        else f"{mode}: not chosen yet"
        if mode == "auto"
        else str(mode)
    )
    because = info.get("because") or []
    if mode == "auto" and because:
        text += f" ({'; '.join(str(b) for b in because)})"
    cannot = info.get("cannot_see") or []
    if cannot and (chosen or mode) == "poll":
        text += "\ncannot see: " + "; ".join(str(c) for c in cannot)
    return text


def _snapshot(progress: list[dict[str, Any]]) -> str:
    if not progress:
        return "none running"
    parts = []
    for p in progress:
        if p.get("done"):
            parts.append(f"{p['table']}: done, {p['rows']} rows")
        elif p.get("estimate"):
            share = min(100.0, 100.0 * p["rows"] / max(1, p["estimate"]))
            parts.append(f"{p['table']}: {p['rows']} of ~{p['estimate']} rows ({share:.0f}%)")
        else:
            parts.append(f"{p['table']}: {p['rows']} rows")
    return "\n".join(parts)


def _sink(sink: dict[str, Any]) -> str:
    if not sink:
        return "unknown (service not running)"
    text = f"{sink.get('backlog', 0)} waiting"
    text += f", last write {_age(sink.get('last_write_age_s'))}"
    if sink.get("failing"):
        text += f", [red]failing[/red] ({sink.get('consecutive_failures', 0)}x)"
    if sink.get("dead_lettered_events"):
        text += f", {sink['dead_lettered_events']} dead-lettered"
    return text


def render(body: dict[str, Any]) -> list[Any]:
    """The header line and one table per source, every text redacted."""
    live = body.get("origin") == "service"
    out: list[Any] = []
    head = f"pipeline [bold]{redact(str(body.get('pipeline', '?')))}[/bold]: {redact(str(body.get('state')))}"
    if live:
        head += ", ready" if body.get("ready") else ", [bold red]NOT READY[/bold red]"
        head += f" (from {redact(str(body.get('url')))})"
    else:
        head += f"\n[yellow]from the offset store[/yellow]: {redact(str(body.get('note', '')))}"
    if body.get("batch_size"):  # adaptive batching's current size (adaptive.py)
        head += f"\nadaptive batch size: {int(body['batch_size'])} changes"
    out.append(head)
    for reason in body.get("reasons") or []:
        out.append(f"  [red]-[/red] {redact(str(reason))}")
    sinks: dict[str, Any] = body.get("sinks") or {}
    for name, src in (body.get("sources") or {}).items():
        table = Table(title=f"source {redact(str(name))}", show_header=False, title_justify="left")
        table.add_column("what", style="bold")
        table.add_column("value")
        lag = src.get("lag")
        rows: list[tuple[str, str | None]] = [
            ("position", src.get("position") or "none committed yet"),
            ("last commit", f"{_when(src.get('last_commit_at'))} ({_age(src.get('last_commit_age_s'))})"),
            ("lag", _lag(lag, live)),
            ("max_lag", _max_lag(lag)),
            ("slot retained WAL", format_bytes(lag["retained_bytes"]) if lag and lag.get("slot") else None),
            ("capture", _capture(src.get("capture"))),
            ("heartbeat", None if src.get("heartbeat_age_s") is None else _age(src["heartbeat_age_s"])),
            ("snapshot", _snapshot(src.get("snapshot") or [])),
        ]
        rows += [(f"sink {sink}", _sink(state)) for sink, state in sinks.items()]
        errors = [src.get("last_error") or src.get("recent_error")] + [
            f"sink {n}: {s.get('last_error') or s.get('recent_error')}"
            for n, s in sinks.items()
            if s and (s.get("last_error") or s.get("recent_error"))
        ]
        shown = [e for e in errors if e]
        rows.append(("last error", "\n".join(shown) if shown else "none" if live else "unknown"))
        for what, value in rows:
            if value is not None:
                table.add_row(redact(what), redact(str(value)))
        out.append(table)
    return out
