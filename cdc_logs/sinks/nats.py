"""NATS JetStream sink: every event published to a stream and acknowledged, duplicates dropped by the
server through `Nats-Msg-Id`.

Subject: `subject` rendered per event (default `{prefix}.{schema}.{table}`; NATS tokens are
dot-separated, so the Debezium name is also a natural subject hierarchy). Payload: the Debezium
envelope. Headers: `Nats-Msg-Id` (a stable id derived from the source position and the change, see
dedup.EventIds), `op`, `key` (event key JSON), `position`.

The stream (`stream`, default from the prefix) is created when missing, over `stream_subjects`
(default `<prefix>.>`), with `duplicate_window_s`: JetStream drops a message whose Msg-Id it stored
within that window, so a replay after a crash or a reconnect does not duplicate. A replay older than
the window is stored again (at-least-once).

Delivery: the batch is published with pipelined acks (`publish_async`) and `write` returns when the
server has acknowledged every message (stored per the stream's replication; the file store's own
sync policy applies). Any failed ack fails the batch: no responders / timeouts / a closed connection
as SINK_TRANSIENT, a refusal by the stream (wrong stream, message too large) as SINK_REJECTED.

nats-py is asyncio-only: the client runs on a private event loop in a daemon thread, and `write`
hands it the batch and waits, so the sink keeps the synchronous Sink contract. Order: one
connection publishes in source order; the stream stores in arrival order.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import threading
from collections.abc import Coroutine, Sequence
from typing import Any, Literal, TypeVar

from pydantic import ConfigDict, Field, SecretStr

from cdc_logs import registry
from cdc_logs.configmodel import TOPIC_TEMPLATE, SinkConfigBase, secret
from cdc_logs.envelope import ChangeEvent
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.extras import destination_label, need
from cdc_logs.observability.redact import redact
from cdc_logs.sinks.base import Sink
from cdc_logs.sinks.dedup import EventIds
from cdc_logs.sinks.routing import DEBEZIUM_TOPIC, check_template, position_text, render, template_fields

_T = TypeVar("_T")


class NatsSink(Sink):
    def __init__(
        self,
        url: str,
        *,
        subject: str = DEBEZIUM_TOPIC,
        prefix: str | None = None,
        stream: str | None = None,
        stream_subjects: list[str] | None = None,
        create_stream: bool = True,
        duplicate_window_s: float = 120.0,
        timeout_s: float = 30.0,
        user: str | None = None,
        password: str | None = None,
        token: str | None = None,
        name: str = "nats",
    ) -> None:
        check_template(subject, "subject")
        if stream_subjects is None:
            if prefix:
                stream_subjects = [f"{prefix}.>"]
            elif not template_fields(subject):
                stream_subjects = [subject]
            elif create_stream:
                raise CdcError(
                    ErrorKind.CONFIG,
                    "nats: cannot tell which subjects the stream should hold",
                    "set destination.prefix (the stream takes `<prefix>.>`) or destination.stream_subjects",
                )
        self.url = url
        self.subject = subject
        self.prefix = prefix
        self.stream = stream or re.sub(r"[^A-Za-z0-9_-]", "_", prefix or name).upper()
        self.stream_subjects = stream_subjects or []
        self.create_stream = create_stream
        self.duplicate_window_s = duplicate_window_s
        self.timeout_s = timeout_s
        self._auth = {"user": user, "password": password, "token": token}
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._nc: Any = None
        self._js: Any = None
        self._ids = EventIds()

    # -- the private event loop --------------------------------------------------------------------
    def _run(self, coro: Coroutine[Any, Any, _T], timeout: float) -> _T:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
            self._thread = threading.Thread(
                target=self._loop.run_forever, name=f"nats-{self.name}", daemon=True
            )
            self._thread.start()
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    # -- lifecycle ---------------------------------------------------------------------------------
    def open(self) -> None:
        try:
            self._run(self._connect(), self.timeout_s + 5)
        except CdcError:
            raise
        except Exception as exc:
            raise CdcError(
                ErrorKind.SINK_TRANSIENT,
                f"cannot open NATS JetStream at {redact(self.url)}: {exc!r}",
                "check destination.url and that the server runs with JetStream enabled (-js)",
            ) from exc

    async def _connect(self) -> None:
        import nats
        from nats.js.api import StorageType, StreamConfig
        from nats.js.errors import NotFoundError

        auth = {k: v for k, v in self._auth.items() if v}
        self._nc = await nats.connect(
            self.url, connect_timeout=self.timeout_s, max_reconnect_attempts=2, allow_reconnect=True, **auth
        )
        self._js = self._nc.jetstream(timeout=self.timeout_s)
        try:
            await self._js.stream_info(self.stream)
        except NotFoundError:
            if not self.create_stream:
                raise CdcError(
                    ErrorKind.SINK_REJECTED,
                    f"JetStream stream {self.stream!r} does not exist",
                    "create it, or set destination.create_stream: true",
                ) from None
            await self._js.add_stream(
                StreamConfig(
                    name=self.stream,
                    subjects=self.stream_subjects,
                    duplicate_window=self.duplicate_window_s,
                    storage=StorageType.FILE,
                )
            )

    def close(self) -> None:
        if self._loop is None:
            return
        if self._nc is not None:
            # Closing: every acknowledged message is stored already, nothing is left to deliver.
            with contextlib.suppress(Exception):
                self._run(self._nc.drain(), 10)
            self._nc = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            self._thread.join(5)
        self._loop.close()
        self._loop = self._thread = None

    # -- writing -----------------------------------------------------------------------------------
    def write(self, batch: Sequence[ChangeEvent]) -> None:
        if not batch:
            return
        if self._js is None:
            self.open()
        ids, state = self._ids.assign(batch)
        try:
            errors = self._run(self._publish(batch, ids), self.timeout_s + 5)
        except TimeoutError as exc:
            raise CdcError(
                ErrorKind.SINK_TRANSIENT,
                f"NATS did not acknowledge {len(batch)} messages within {self.timeout_s:g}s",
                "check the server; the batch is retried (duplicates are dropped by Nats-Msg-Id)",
            ) from exc
        if errors:
            raise self._error(errors[0], len(errors), len(batch))
        self._ids.commit(state)

    async def _publish(self, batch: Sequence[ChangeEvent], ids: list[str]) -> list[BaseException]:
        futures = []
        for event, msg_id in zip(batch, ids, strict=True):
            headers = {"Nats-Msg-Id": msg_id, "op": event.op.value}
            key = event.key_json()
            if key is not None:
                headers["key"] = key.decode()
            position = position_text(event)
            if position is not None:
                headers["position"] = position
            subject = render(self.subject, event, self.prefix)
            futures.append(await self._js.publish_async(subject, event.to_json(), headers=headers))
        results = await asyncio.wait_for(asyncio.gather(*futures, return_exceptions=True), self.timeout_s)
        return [r for r in results if isinstance(r, BaseException)]

    def _error(self, exc: BaseException, failed: int, total: int) -> CdcError:
        from nats.js.errors import APIError, NoStreamResponseError

        text = f"{failed} of {total} NATS publishes failed: {exc!r}"
        if isinstance(exc, NoStreamResponseError):
            return CdcError(
                ErrorKind.SINK_REJECTED,
                f"{text}: no stream captures the subject",
                f"make destination.subject render inside the stream's subjects {self.stream_subjects}",
            )
        if isinstance(exc, APIError) and exc.code is not None and 400 <= exc.code < 500:
            return CdcError(
                ErrorKind.SINK_REJECTED,
                text,
                "the stream refuses these messages: check its subjects, max message size and limits",
            )
        return CdcError(
            ErrorKind.SINK_TRANSIENT, text, "the batch is retried; duplicates are dropped by Nats-Msg-Id"
        )


# -- config ----------------------------------------------------------------------------------------
class NatsSinkConfig(SinkConfigBase):
    """NATS JetStream with server-side dedup (Nats-Msg-Id)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"type": "nats", "url": "nats://nats.internal:4222", "prefix": "shop"}]
        }
    )

    type: Literal["nats"] = Field(description="Selects this destination.")
    url: str = Field(
        "nats://127.0.0.1:4222",
        description="NATS server URL; the server must run with JetStream.",
        examples=["nats://nats.internal:4222"],
    )
    subject: str = Field(
        TOPIC_TEMPLATE,
        description="Subject per event, from {prefix} {db} {schema} {table} {op} {connector}; it must fall "
        "inside the stream's subjects.",
        examples=["cdc.{table}.{op}"],
    )
    prefix: str | None = Field(
        None,
        description="{prefix} in `subject`; also names the default stream and its subjects <prefix>.>. "
        "Default: the event's source.name (the pipeline name, or a Debezium connector's topic.prefix), and "
        "then `stream_subjects` must be given when the stream is created.",
        examples=["shop"],
    )
    stream: str | None = Field(
        None,
        description="JetStream stream to publish to. Default: `prefix` (else the sink name) in upper case, "
        "other characters than letters, digits, _ and - replaced by _.",
        examples=["SHOP"],
    )
    stream_subjects: list[str] | None = Field(
        None,
        description="Subjects of the stream when it is created. Default: <prefix>.> with a prefix, else "
        "`subject` when it has no placeholders.",
        examples=[["shop.>"]],
    )
    create_stream: bool = Field(
        True,
        description="Create the stream (file storage) when it does not exist; false: a missing stream "
        "stops the pipeline.",
    )
    duplicate_window_s: float = Field(
        120.0,
        gt=0,
        description="Seconds: the created stream's duplicate window, within which JetStream drops a "
        "replayed message by its Nats-Msg-Id. Not applied to an existing stream.",
        examples=[600.0],
    )
    timeout_s: float = Field(
        30.0,
        gt=0,
        description="Seconds to wait for the connection, and for every acknowledgement of a batch; then "
        "the batch fails and is retried.",
        examples=[60.0],
    )
    user: str | None = Field(None, description="User name to log in with.", examples=["cdc"])
    password: SecretStr | None = Field(
        None, description="Password of `user`. A secret: never logged.", examples=["${NATS_PASSWORD}"]
    )
    token: SecretStr | None = Field(
        None, description="Token to log in with. A secret: never logged.", examples=["${NATS_TOKEN}"]
    )


@registry.sink(NatsSinkConfig, capabilities={"log", "ordered", "dedup_ids"})
def build(cfg: NatsSinkConfig, ctx: registry.BuildContext) -> NatsSink:
    need("nats", "nats", destination_label(cfg.type, cfg.name))
    return NatsSink(
        cfg.url,
        subject=cfg.subject,
        prefix=cfg.prefix,
        stream=cfg.stream,
        stream_subjects=cfg.stream_subjects,
        create_stream=cfg.create_stream,
        duplicate_window_s=cfg.duplicate_window_s,
        timeout_s=cfg.timeout_s,
        user=cfg.user,
        password=secret(cfg.password),
        token=secret(cfg.token),
        name=cfg.name or cfg.type,
    )
