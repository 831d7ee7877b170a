"""Preflight checks for a `nats` source (`cdc-logs doctor -c pipeline.yaml`), each failing one with
its fix. Read-only: stream and consumer info requests only; no consumer is created, nothing is
fetched or acknowledged.

What a run needs: the server (with the configured auth) with JetStream, the stream, a subject filter
that matches the stream's subjects, a durable consumer it can use (or none yet: the run creates it),
and for a resume the stored position's messages still in the stream.
"""

from __future__ import annotations

import asyncio
from typing import Any

from cdc_logs.position import NatsSequence, Position
from cdc_logs.readers.checks import Check, missing_client, warn

_TIMEOUT_S = 5.0


def check_source(cfg: Any, stored: Position | None = None, pipeline: str | None = None) -> list[Check]:
    """The checks for a configured `nats` source (`stored`: its committed position, if any)."""
    missing = missing_client("nats", "nats", "the nats source")
    if missing is not None:
        return [missing]
    from cdc_logs.readers.nats.config import settings

    s = settings(cfg, pipeline or "?")
    timeout = min(s.connect_timeout_s, _TIMEOUT_S)
    return asyncio.run(
        _checks(s, durable=cfg.durable or (s.durable if pipeline else None), stored=stored, timeout=timeout)
    )


async def _checks(s: Any, *, durable: str | None, stored: Position | None, timeout: float) -> list[Check]:
    from nats.js.errors import NotFoundError

    from cdc_logs.readers.nats.reader import _hosts, connect

    where = _hosts(s.url)
    try:
        # Each server tried twice, 0.2 s apart (nats-py: 0 attempts means forever), the whole bounded.
        options = {"allow_reconnect": False, "max_reconnect_attempts": 1, "reconnect_time_wait": 0.2}
        nc = await asyncio.wait_for(
            connect(s, "cdc-logs doctor", connect_timeout=timeout, **options), 2 * timeout + 1
        )
    except Exception as exc:
        return [
            Check(
                "server",
                False,
                f"cannot connect to NATS at {where}: {_reason(exc)}",
                "check url, user/password or token, and that the server is running",
            )
        ]
    try:
        checks = [Check("server", True, f"connected to {where}")]
        js = nc.jetstream(timeout=timeout)
        try:
            info = await js.stream_info(s.stream)
        except NotFoundError:
            checks.append(
                Check(
                    f"stream {s.stream}",
                    False,
                    "does not exist",
                    "create it (nats stream add), or fix the source's stream",
                )
            )
            return checks
        except Exception as exc:
            checks.append(
                Check(
                    f"stream {s.stream}",
                    False,
                    f"stream info failed: {_reason(exc)}",
                    "run the server with JetStream enabled (-js), and give the user access to the stream",
                )
            )
            return checks
        state = info.state
        checks.append(
            Check(
                f"stream {s.stream}",
                True,
                f"{state.messages} message(s), sequences {state.first_seq}..{state.last_seq}, subjects "
                f"{', '.join(info.config.subjects or []) or '(none of its own)'}",
            )
        )
        if s.subject is not None:
            checks.append(_subject(s.subject, list(info.config.subjects or [])))
        if durable is None:
            checks.append(
                warn(
                    "consumer",
                    "its default name depends on the pipeline's name, which doctor was not given",
                    "run `cdc-logs doctor -c pipeline.yaml`, or set the source's durable",
                )
            )
        else:
            checks.append(await _consumer(js, s, durable))
        if isinstance(stored, NatsSequence):
            checks.append(_resume(stored, s.stream, state.first_seq, str(info.config.retention)))
        return checks
    finally:
        await nc.close()


def _reason(exc: Exception) -> str:
    return str(exc) or type(exc).__name__


def _collide(a: str, b: str) -> bool:
    """Whether subject filters `a` and `b` can match a common subject (NATS' own overlap rule)."""
    x, y = a.split("."), b.split(".")
    for i in range(max(len(x), len(y))):
        if i >= len(x) or i >= len(y):
            return False
        if ">" in (x[i], y[i]):
            return True
        if x[i] != y[i] and "*" not in (x[i], y[i]):
            return False
    return True


def _subject(subject: str, subjects: list[str]) -> Check:
    name = f"subject {subject}"
    if not subjects:
        return Check(name, True, "the stream has no subjects of its own (mirror or sources): not checked")
    if any(_collide(subject, own) for own in subjects):
        return Check(name, True, "matches the stream's subjects")
    return Check(
        name,
        False,
        f"matches none of the stream's subjects ({', '.join(subjects)}): no message would ever arrive",
        "fix the source's subject, or add the subject to the stream",
    )


async def _consumer(js: Any, s: Any, durable: str) -> Check:
    from nats.js.api import AckPolicy
    from nats.js.errors import NotFoundError

    name = f"consumer {durable}"
    try:
        info = await js.consumer_info(s.stream, durable)
    except NotFoundError:
        start = s.deliver_policy + (
            f" {s.start_sequence or s.start_time}" if s.start_sequence or s.start_time else ""
        )
        return warn(
            name,
            f"does not exist yet: the first run creates it (a durable pull consumer, deliver_policy {start})",
            "nothing to do if this is the first run; otherwise the durable name changed and the new "
            "consumer starts over by deliver_policy",
        )
    config = info.config
    if config.deliver_subject:
        return Check(
            name,
            False,
            "is a push consumer",
            "give the source a pull consumer's name (durable), or a new name to create one",
        )
    if config.ack_policy != AckPolicy.EXPLICIT:
        return Check(
            name,
            False,
            f"acknowledges with policy {config.ack_policy}, not explicit",
            "cdc-logs acks each message once it is durable: use a consumer with ack_policy explicit",
        )
    if (config.filter_subject or None) != s.subject:
        return Check(
            name,
            False,
            f"filters subject {config.filter_subject!r}, the source {s.subject!r}",
            "use the consumer's filter, or a new durable name for the new subject",
        )
    floor = info.ack_floor.stream_seq if info.ack_floor else 0
    return Check(
        name,
        True,
        f"pull, explicit acks; acknowledged up to sequence {floor}, {info.num_pending} message(s) to read, "
        f"{info.num_ack_pending} waiting for an ack",
    )


def _resume(stored: NatsSequence, stream: str, first_seq: int, retention: str) -> Check:
    if stored.stream and stored.stream != stream:
        return Check(
            "stored position",
            False,
            f"it is for stream {stored.stream}, the source reads {stream}",
            "point the source at the stream the position is from, or `cdc-logs offsets reset`",
        )
    if first_seq > stored.seq + 1 and stored.seq > 0:
        detail = (
            f"messages {stored.seq + 1}..{first_seq - 1} after it are no longer in the stream "
            f"(it starts at {first_seq}, retention {retention})"
        )
        if "limits" in retention.lower():  # removed by max_age / max_msgs / max_bytes, not by our acks
            return Check(
                "stored position",
                False,
                detail,
                "raise the stream's limits (max_age, max_msgs, max_bytes); to go on, accept the gap "
                "with `cdc-logs offsets reset`",
            )
        return warn("stored position", detail, "check that no other consumer acknowledges this stream")
    return Check("stored position", True, f"resumes after stream sequence {stored.seq}")
