"""Preflight checks for a `redis_stream` source (`cdc-logs doctor -c pipeline.yaml`), each failing
one with its fix. Read-only: PING, TYPE, XINFO; no group is created, nothing is read or acknowledged.

What a run needs: the server and the login, the stream key (a missing one is a warning: the run
creates it with the group, XGROUP CREATE ... MKSTREAM), the consumer group (missing: the run creates
it at start_id), and, as information, the entries pending under other consumers of the group that
have been idle (dead processes): the run claims them after claim_min_idle_ms.
"""

from __future__ import annotations

from typing import Any

from cdc_logs.errors import CdcError
from cdc_logs.position import Position
from cdc_logs.readers.checks import Check, missing_client, warn

_TIMEOUT_S = 5.0


def check_source(cfg: Any, stored: Position | None = None, pipeline: str | None = None) -> list[Check]:
    """The checks for a configured `redis_stream` source (the consumer group holds the resume state:
    `stored` is not checked)."""
    missing = missing_client("redis", "redis", "the redis_stream source")
    if missing is not None:
        return [missing]
    import redis

    from cdc_logs.readers.redis_stream.config import connector

    connect, identity = connector(cfg, timeout_s=_TIMEOUT_S)
    try:
        client = connect()
    except CdcError as exc:
        return [Check("server", False, exc.message, exc.hint)]
    try:
        checks = [Check("server", True, f"{identity} answers PING")]
        key = cfg.stream_name
        try:
            kind = _text(client.type(key))
        except redis.RedisError as exc:
            return [*checks, Check(f"stream {key}", False, f"TYPE failed: {exc}", "check the user's ACL")]
        if kind == "none":
            checks.append(
                warn(
                    f"stream {key}",
                    "does not exist yet: the run creates it empty with its consumer group, and reads "
                    "what producers add",
                    "nothing to do if producers have not written yet; otherwise check stream_name",
                )
            )
            return checks
        if kind != "stream":
            checks.append(
                Check(f"stream {key}", False, f"the key holds a {kind}, not a stream", "fix stream_name")
            )
            return checks
        length = client.xlen(key)
        checks.append(Check(f"stream {key}", True, f"{length} entr{'y' if length == 1 else 'ies'}"))
        source = cfg.name or cfg.type
        if cfg.consumer_group is None and pipeline is None:
            checks.append(
                warn(
                    "consumer group",
                    "its default name depends on the pipeline's name, which doctor was not given",
                    "run `cdc-logs doctor -c pipeline.yaml`, or set consumer_group",
                )
            )
            return checks
        group = cfg.consumer_group or f"cdc-logs.{pipeline}.{source}"
        checks += _group(client, cfg, key, group, cfg.consumer_name or pipeline)
        return checks
    finally:
        client.close()


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _group(client: Any, cfg: Any, key: str, group: str, consumer: str | None) -> list[Check]:
    name = f"consumer group {group}"
    groups = {_text(g["name"]): g for g in client.xinfo_groups(key)}
    if group not in groups:
        start = {"0": "0, every entry already in the stream", "$": "$, only entries added from then on"}
        return [
            warn(
                name,
                f"does not exist yet: the run creates it at start_id {start.get(cfg.start_id, cfg.start_id)}",
                "nothing to do if this is the first run; otherwise the group's name changed and the new "
                "group starts over at start_id",
            )
        ]
    info = groups[group]
    lag = info.get("lag")
    detail = f"last delivered {_text(info['last-delivered-id'])}, {info['pending']} pending"
    detail += f", {lag} not yet delivered" if lag is not None else ""
    checks = [Check(name, True, detail)]
    claim = cfg.claim_min_idle_ms
    idle_others = [
        (_text(c["name"]), c["pending"], c["idle"])
        for c in client.xinfo_consumers(key, group)
        if _text(c["name"]) != consumer and c["pending"] and c["idle"] >= (claim or 0)
    ]
    if idle_others:
        listed = ", ".join(f"{n} ({p} pending, idle {i // 1000} s)" for n, p, i in idle_others[:5])
        if claim is None:
            checks.append(
                warn(
                    "pending entries of other consumers",
                    f"{listed}: never claimed (claim_min_idle_ms is null)",
                    "if those consumers are gone, set claim_min_idle_ms so the run takes their entries",
                )
            )
        else:
            checks.append(
                Check(
                    "pending entries of other consumers",
                    True,
                    f"{listed}: the run claims them (XAUTOCLAIM), idle {claim // 1000} s or more",
                )
            )
    return checks
