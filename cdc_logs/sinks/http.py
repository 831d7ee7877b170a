"""HTTP webhook sink: batched POSTs of envelopes, signed, retried with backoff, dead-lettered on 4xx.

A batch is sent as one request (or several of at most `max_events_per_request`, in order): a JSON
array of Debezium envelopes (`format: json`) or one envelope per line (`format: ndjson`). Headers:
  X-CDC-Signature   `sha256=<hex HMAC-SHA256 of the raw body>` with `secret` (when set). Verify it
                    over the exact bytes received, with a constant-time compare.
  Content-Encoding  gzip or zstd with `compression` (the signature covers the compressed body).
  Idempotency-Key   a digest of the events' stable ids (dedup.EventIds): a replayed request carries
                    the same key, so a receiver can drop it even though `ts_ms` fields differ.

Responses: 2xx delivered. 5xx, 408, 429, timeouts and connection errors are retried in place with
exponential backoff (honouring a numeric Retry-After, capped), `max_attempts` times; then the batch
fails as SINK_TRANSIENT and the pipeline retries it later (requests already accepted are sent again:
at-least-once). Any other 4xx means the receiver refuses this data: after `rejected_attempts` tries
the request's events go to `dead_letter_path` (deadletter.py's records: the reason, the envelope,
and in `origin` the status and the response's start), fsync'd, and the sink carries on; without a
dead-letter path it fails as SINK_REJECTED so an operator looks.

Ordering: requests are sent one at a time in source order. A dead-lettered request leaves a gap in
its keys' history at the receiver; the dead-letter file keeps those events, in order.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import ConfigDict, Field, SecretStr

from cdc_logs import registry
from cdc_logs.compression import HTTP_ENCODINGS, codec
from cdc_logs.configmodel import SinkConfigBase, secret
from cdc_logs.deadletter import DeadLetterWriter, refused
from cdc_logs.envelope import ChangeEvent
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.logging import get_logger
from cdc_logs.observability.redact import redact
from cdc_logs.retry import RetryPolicy
from cdc_logs.sinks.base import Sink
from cdc_logs.sinks.dedup import EventIds

log = get_logger(__name__)

_RETRY_STATUS = frozenset({408, 429})


class HttpSink(Sink):
    def __init__(
        self,
        url: str,
        *,
        method: str = "POST",
        body_format: str = "json",
        headers: Mapping[str, str] | None = None,
        secret: str | None = None,
        signature_header: str = "X-CDC-Signature",
        timeout_s: float = 10.0,
        max_attempts: int = 5,
        initial_backoff_s: float = 0.5,
        max_backoff_s: float = 10.0,
        max_events_per_request: int | None = None,
        rejected_attempts: int = 1,
        dead_letter_path: str | Path | None = None,
        name: str = "http",
        compression: str | None = None,
    ) -> None:
        if body_format not in ("json", "ndjson"):
            raise CdcError(ErrorKind.CONFIG, f"http format must be json or ndjson, got {body_format!r}")
        self.url = url
        self.method = method.upper()
        self.format = body_format
        self.headers = dict(headers or {})
        self._secret = secret.encode() if secret else None
        self.signature_header = signature_header
        self.timeout_s = timeout_s
        self.max_attempts = max(1, max_attempts)
        self.initial_backoff_s = initial_backoff_s
        self.max_backoff_s = max_backoff_s
        self.max_events_per_request = max_events_per_request
        self.rejected_attempts = max(1, rejected_attempts)
        self.dead_letter_path = Path(dead_letter_path) if dead_letter_path else None
        self._dead_letters = DeadLetterWriter(self.dead_letter_path) if self.dead_letter_path else None
        self.name = name
        if compression is not None and compression not in HTTP_ENCODINGS:
            raise CdcError(
                ErrorKind.CONFIG,
                f"http compression {compression} has no HTTP content coding a receiver would know",
                "use gzip or zstd",
            )
        self._codec = codec(compression) if compression else None
        self._session: Any = None
        self._ids = EventIds()

    def open(self) -> None:
        import requests

        self._session = requests.Session()
        if self.dead_letter_path is not None:
            self.dead_letter_path.parent.mkdir(parents=True, exist_ok=True)

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def body(self, events: Sequence[ChangeEvent]) -> bytes:
        if self.format == "ndjson":
            return b"".join(e.to_json() + b"\n" for e in events)
        return b"[" + b",".join(e.to_json() for e in events) + b"]"

    def sign(self, body: bytes) -> str | None:
        if self._secret is None:
            return None
        return "sha256=" + hmac.new(self._secret, body, hashlib.sha256).hexdigest()

    def write(self, batch: Sequence[ChangeEvent]) -> None:
        if not batch:
            return
        if self._session is None:
            self.open()
        ids, state = self._ids.assign(batch)
        size = self.max_events_per_request or len(batch)
        for start in range(0, len(batch), size):
            chunk, chunk_ids = batch[start : start + size], ids[start : start + size]
            self._send(chunk, hashlib.sha256("\n".join(chunk_ids).encode()).hexdigest())
        self._ids.commit(state)

    def _send(self, events: Sequence[ChangeEvent], idempotency_key: str) -> None:
        import requests

        body = self.body(events)
        if self._codec is not None:
            body = self._codec.compress(body)
        headers = {
            "Content-Type": "application/x-ndjson" if self.format == "ndjson" else "application/json",
            "Idempotency-Key": idempotency_key,
            **self.headers,
        }
        if self._codec is not None:
            headers["Content-Encoding"] = self._codec.name
        signature = self.sign(body)
        if signature is not None:
            headers[self.signature_header] = signature
        rejected = 0
        problem = ""
        for attempt in range(1, self.max_attempts + 1):
            wait = self._backoff(attempt)
            try:
                resp = self._session.request(
                    self.method, self.url, data=body, headers=headers, timeout=self.timeout_s
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                problem = f"{type(exc).__name__}: {redact(str(exc))[:300]}"
            else:
                if resp.status_code < 300:
                    return
                problem = f"HTTP {resp.status_code}: {redact(resp.text)[:300]}"
                if resp.status_code >= 500 or resp.status_code in _RETRY_STATUS:
                    wait = _retry_after(resp.headers.get("Retry-After"), wait, self.max_backoff_s)
                else:
                    rejected += 1
                    if rejected >= self.rejected_attempts:
                        self._reject(events, resp.status_code, resp.text)
                        return
            if attempt < self.max_attempts:
                log.warning(
                    "webhook request failed; retrying", sink=self.name, attempt=attempt, problem=problem
                )
                time.sleep(wait)
        raise CdcError(
            ErrorKind.SINK_TRANSIENT,
            f"webhook {redact(self.url)} failed {self.max_attempts} times: {problem}",
            "the batch is retried later; check the receiver",
        )

    def _backoff(self, attempt: int) -> float:
        return RetryPolicy(self.max_attempts, self.initial_backoff_s, self.max_backoff_s).backoff(attempt)

    def _reject(self, events: Sequence[ChangeEvent], status: int, text: str) -> None:
        reason = f"HTTP {status} from {redact(self.url)}"
        if self._dead_letters is None:
            raise CdcError(
                ErrorKind.SINK_REJECTED,
                f"webhook refused {len(events)} events: {reason}: {redact(text)[:300]}",
                "fix the receiver or the payload, or set destination.dead_letter_path to park refused events",
            )
        error = CdcError(
            ErrorKind.SINK_REJECTED, reason, "fix the receiver or the payload, then send the envelope again"
        )
        origin = {"status": status, "response": redact(text)[:1000]}
        try:
            self._dead_letters.write(refused(self.name, e, error, origin) for e in events)
        except OSError as exc:
            raise CdcError(
                ErrorKind.SINK_TRANSIENT,
                f"cannot write the dead-letter file {self.dead_letter_path}: {exc.strerror}",
                "free disk space or fix permissions; the batch is retried",
            ) from exc
        log.error("webhook refused events; dead-lettered", sink=self.name, events=len(events), reason=reason)


def _retry_after(value: str | None, default: float, cap: float) -> float:
    """A numeric Retry-After (seconds), capped; dates and garbage fall back to the backoff."""
    try:
        return min(cap, max(0.0, float(value))) if value else default
    except ValueError:
        return default


# -- config ----------------------------------------------------------------------------------------
class HttpSinkConfig(SinkConfigBase):
    """Webhook: batched, signed POSTs with retries and a dead-letter file."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"type": "webhook", "url": "https://hooks.example.com/cdc"}]}
    )

    type: Literal["http", "webhook"] = Field(description="Selects this destination; `http` is an alias.")
    url: str = Field(
        description="Endpoint the batches are sent to (http or https).",
        examples=["https://hooks.example.com/cdc"],
    )
    method: Literal["POST", "PUT"] = Field(
        "POST", description="HTTP method of each request.", examples=["PUT"]
    )
    body_format: Literal["json", "ndjson"] = Field(
        "json",
        alias="format",
        description="json: a JSON array of envelopes (application/json); ndjson: one envelope per line "
        "(application/x-ndjson).",
        examples=["ndjson"],
    )
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Extra request headers (they may replace Content-Type and Idempotency-Key, not the "
        "signature). Write tokens as ${VAR}: an Authorization header is masked in output.",
        examples=[{"Authorization": "Bearer ${WEBHOOK_TOKEN}"}],
    )
    secret: SecretStr | None = Field(
        None,
        description="HMAC-SHA256 key: each request carries sha256=<hex digest of the raw body> in "
        "`signature_header`. A secret: never logged. Default: requests are not signed.",
        examples=["${WEBHOOK_SECRET}"],
    )
    signature_header: str = Field(
        "X-CDC-Signature", description="Header that carries the signature.", examples=["X-Hub-Signature-256"]
    )
    timeout_s: float = Field(
        10.0, gt=0, description="Seconds to wait for the connection and for the response.", examples=[30.0]
    )
    max_attempts: int = Field(
        5,
        ge=1,
        description="Tries per request on 5xx, 408, 429, timeouts and connection errors, with exponential "
        "backoff (a numeric Retry-After is honoured); then the batch fails and the pipeline retries it.",
        examples=[8],
    )
    initial_backoff_ms: int = Field(
        500, ge=1, description="Milliseconds before the second try; doubled per try.", examples=[1000]
    )
    max_backoff_ms: int = Field(
        10_000,
        ge=1,
        description="Milliseconds: the cap of the backoff and of a Retry-After wait.",
        examples=[60_000],
    )
    max_events_per_request: int | None = Field(
        None,
        ge=1,
        description="Split a batch into requests of at most this many events, sent in order. Default: one "
        "request per batch (sync.batch.max_events).",
        examples=[500],
    )
    rejected_attempts: int = Field(
        1,
        ge=1,
        description="Tries on any other 4xx (the receiver refuses the data) before the request's events "
        "are dead-lettered.",
        examples=[3],
    )
    compression: Literal["gzip", "zstd", "none"] | None = Field(
        None,
        description="Compress each request body and say so in Content-Encoding (gzip, or zstd: the HTTP "
        "content codings a receiver knows); the signature covers the compressed bytes sent. Default: "
        "sync.compression's algorithm when it is enabled, else none; `none` sends plain bodies.",
        examples=["gzip"],
    )
    dead_letter_path: str | None = Field(
        None,
        description="JSON-lines file of the events the receiver refused, after which delivery goes on: "
        "cdc-logs dead-letter records (docs/configuration.md#dead-letters) with the reason, the envelope "
        "and, in `origin`, the HTTP status and the response's start. Default: none, and a refusal stops "
        "the pipeline.",
        examples=["/var/lib/cdc/webhook.dead.jsonl"],
    )


@registry.sink(HttpSinkConfig, capabilities={"log", "ordered", "dedup_ids"})
def build(cfg: HttpSinkConfig, ctx: registry.BuildContext) -> HttpSink:
    return HttpSink(
        cfg.url,
        method=cfg.method,
        body_format=cfg.body_format,
        headers=cfg.headers,
        secret=secret(cfg.secret),
        signature_header=cfg.signature_header,
        timeout_s=cfg.timeout_s,
        max_attempts=cfg.max_attempts,
        initial_backoff_s=cfg.initial_backoff_ms / 1000,
        max_backoff_s=cfg.max_backoff_ms / 1000,
        max_events_per_request=cfg.max_events_per_request,
        rejected_attempts=cfg.rejected_attempts,
        dead_letter_path=cfg.dead_letter_path,
        name=cfg.name or cfg.type,
        compression=None if cfg.compression in (None, "none") else cfg.compression,
    )
