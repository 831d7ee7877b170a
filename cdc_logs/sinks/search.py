"""OpenSearch / Elasticsearch sink: one `_bulk` request per batch over the REST API.

The bulk API is the same NDJSON on both engines, so one sink serves `type: opensearch` and
`type: elasticsearch` (plain HTTP through requests; basic auth and TLS verification as requests
does them).

Modes:
  mirror  (default) the index mirrors the table: c/r/u index the row after the change under
          `_id` = the primary key (one column: its value; several: a JSON array of the values), d
          deletes it (a missing document is fine), t deletes every document of the index. An update
          with unchanged TOAST columns becomes a partial `update` (doc_as_upsert), so those fields
          keep their indexed value.
  append  one document per event (the Debezium envelope), `_id` = the event's stable id
          (dedup.EventIds): a replayed event overwrites itself instead of adding a copy.

Index names come from `index` (default `{prefix}.{schema}.{table}`), lowercased, with the
characters OpenSearch forbids replaced by `_`.

Delivery: `write` returns when `_bulk` has answered and every item succeeded; with the default
`index.translog.durability: request` the engine has fsync'd its translog by then. Item failures of
429 / 5xx fail the batch as SINK_TRANSIENT, other 4xx (a mapping conflict) as SINK_REJECTED.
Order: items of one bulk request that hit the same `_id` go to one shard and apply in request
order, so the last change of a key wins; a replayed batch re-applies states the document already
went through and ends where it was (mirror), or overwrites identical documents (append).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

import orjson
from pydantic import ConfigDict, Field, SecretStr

from cdc_logs import registry
from cdc_logs.configmodel import SinkConfigBase, secret
from cdc_logs.envelope import ChangeEvent, Op, dumps
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.redact import redact
from cdc_logs.sinks.base import Sink
from cdc_logs.sinks.dedup import EventIds
from cdc_logs.sinks.routing import DEBEZIUM_TOPIC, check_template, render, source_label

_BAD_INDEX_CHARS = re.compile(r'[\\/*?"<>| ,#:]')


def index_name(text: str) -> str:
    name = _BAD_INDEX_CHARS.sub("_", text.lower()).lstrip("-_+")
    return name[:255] or "cdc"


def document_id(key: dict[str, Any]) -> str:
    values = list(key.values())
    if len(values) == 1 and isinstance(values[0], str | int):
        return str(values[0])
    return dumps(values).decode()


def _body(row: dict[str, Any] | None, key: dict[str, Any]) -> dict[str, Any] | None:
    """The document body: without a `_id` field when it is the key (MongoDB's `_id`), which OpenSearch
    refuses inside a document ("a metadata field") and holds as the document's `_id` anyway."""
    if row is not None and "_id" in row and list(key) == ["_id"]:
        return {k: v for k, v in row.items() if k != "_id"}
    return row


class SearchSink(Sink):
    def __init__(
        self,
        url: str,
        *,
        index: str = DEBEZIUM_TOPIC,
        prefix: str | None = None,
        mode: str = "mirror",
        username: str | None = None,
        password: str | None = None,
        refresh: bool = False,
        timeout_s: float = 30.0,
        verify_tls: bool = True,
        name: str = "opensearch",
    ) -> None:
        check_template(index, "index")
        if mode not in ("mirror", "append"):
            raise CdcError(ErrorKind.CONFIG, f"search sink mode must be mirror or append, got {mode!r}")
        self.url = url.rstrip("/")
        self.index = index
        self.prefix = prefix
        self.mode = mode
        self.auth = (username, password or "") if username else None
        self.refresh = refresh
        self.timeout_s = timeout_s
        self.verify_tls = verify_tls
        self.name = name
        self._session: Any = None
        self._ids = EventIds()

    def open(self) -> None:
        import requests

        self._session = requests.Session()
        self._session.auth = self.auth
        self._session.verify = self.verify_tls
        self._request("GET", "/", None)  # reachable, credentials accepted

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def index_for(self, event: ChangeEvent) -> str:
        return index_name(render(self.index, event, self.prefix))

    # -- request building --------------------------------------------------------------------------
    def bulk_lines(self, events: Sequence[ChangeEvent], ids: Sequence[str]) -> list[bytes]:
        """The NDJSON lines of a `_bulk` body for `events` (no truncates: they are separate calls)."""
        lines: list[bytes] = []
        for event, event_id in zip(events, ids, strict=True):
            index = self.index_for(event)
            if self.mode == "append":
                lines += [orjson.dumps({"index": {"_index": index, "_id": event_id}}), event.to_json()]
                continue
            if event.op is Op.MESSAGE:
                continue
            if not event.key:
                raise CdcError(
                    ErrorKind.SINK_REJECTED,
                    f"{source_label(event)} has no primary key: a mirrored document needs one for its _id",
                    "give the table a primary key, or use mode: append",
                )
            meta = {"_index": index, "_id": document_id(event.key)}
            if event.op is Op.DELETE:
                lines.append(orjson.dumps({"delete": meta}))
            elif event.unchanged:
                lines += [orjson.dumps({"update": meta}), dumps({"doc": event.after, "doc_as_upsert": True})]
            else:
                lines += [orjson.dumps({"index": meta}), dumps(_body(event.after, event.key))]
        return lines

    # -- writing -----------------------------------------------------------------------------------
    def write(self, batch: Sequence[ChangeEvent]) -> None:
        if not batch:
            return
        if self._session is None:
            self.open()
        ids, state = self._ids.assign(batch)
        start = 0
        # A truncate empties the index: everything before it goes first, everything after it next.
        for i, event in enumerate(batch):
            if event.op is Op.TRUNCATE and self.mode == "mirror":
                self._bulk(batch[start:i], ids[start:i])
                index = self.index_for(event)
                # _delete_by_query sees only searchable documents: refresh so it sees them all.
                self._request("POST", f"/{index}/_refresh", None, ok_missing=True)
                self._request(
                    "POST",
                    f"/{index}/_delete_by_query?conflicts=proceed&refresh=true",
                    orjson.dumps({"query": {"match_all": {}}}),
                    ok_missing=True,
                )
                start = i + 1
        self._bulk(batch[start:], ids[start:])
        self._ids.commit(state)

    def _bulk(self, events: Sequence[ChangeEvent], ids: Sequence[str]) -> None:
        lines = self.bulk_lines(events, ids)
        if not lines:
            return
        path = "/_bulk?refresh=wait_for" if self.refresh else "/_bulk"
        reply = self._request("POST", path, b"\n".join(lines) + b"\n", ndjson=True)
        if not reply.get("errors"):
            return
        failed = []
        for item in reply.get("items", []):
            (action, result), *_ = item.items()
            status = int(result.get("status", 500))
            if status >= 300 and not (action == "delete" and status == 404):
                failed.append((status, result.get("error")))
        if not failed:
            return
        status, error = failed[0]
        retry = all(s == 429 or s >= 500 for s, _e in failed)
        raise CdcError(
            ErrorKind.SINK_TRANSIENT if retry else ErrorKind.SINK_REJECTED,
            f"{len(failed)} of {len(events)} bulk items failed; first: {status} {_short(error)}",
            "the batch is retried" if retry else "fix the index mapping (or the data) for these documents",
        )

    def _request(
        self, method: str, path: str, body: bytes | None, *, ndjson: bool = False, ok_missing: bool = False
    ) -> dict[str, Any]:
        import requests

        headers = {"Content-Type": "application/x-ndjson" if ndjson else "application/json"}
        try:
            resp = self._session.request(
                method, self.url + path, data=body, headers=headers, timeout=self.timeout_s
            )
        except requests.RequestException as exc:
            raise CdcError(
                ErrorKind.SINK_TRANSIENT,
                f"{self.name} at {redact(self.url)} unreachable: {exc}",
                "check destination.url / host / port",
            ) from exc
        if resp.status_code in (401, 403):
            raise CdcError(ErrorKind.AUTH, f"{self.name} refused the credentials ({resp.status_code})")
        if ok_missing and resp.status_code == 404:
            return {}
        if resp.status_code == 429 or resp.status_code >= 500:
            raise CdcError(
                ErrorKind.SINK_TRANSIENT,
                f"{self.name} answered {resp.status_code}: {redact(resp.text)[:300]}",
            )
        if resp.status_code >= 300:
            raise CdcError(
                ErrorKind.SINK_REJECTED,
                f"{self.name} refused {method} {path}: {resp.status_code} {redact(resp.text)[:300]}",
                "check the index name template and the cluster's settings",
            )
        result: dict[str, Any] = resp.json()
        return result


def _short(error: Any) -> str:
    return redact(orjson.dumps(error).decode())[:300]


# -- config ----------------------------------------------------------------------------------------
class SearchSinkConfig(SinkConfigBase):
    """OpenSearch / Elasticsearch bulk indexing, `_id` = the primary key."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"type": "opensearch", "url": "https://search.internal:9200"}]}
    )

    type: Literal["opensearch", "elasticsearch"] = Field(
        description="Selects this destination; `elasticsearch` is the same sink (the same bulk API)."
    )
    url: str | None = Field(
        None,
        description="Base URL of the cluster's REST API; when set, host and port are ignored. TLS "
        "certificates are verified.",
        examples=["https://search.internal:9200"],
    )
    host: str = Field(
        "127.0.0.1", description="Host, when `url` is not set (plain http).", examples=["search.internal"]
    )
    port: int = Field(9200, ge=1, le=65535, description="Port, when `url` is not set.", examples=[9200])
    index: str = Field(
        "{prefix}.{schema}.{table}",
        description="Index per event, from {prefix} {db} {schema} {table} {op} {connector}; lowercased, "
        "characters the engines forbid replaced by _.",
        examples=["cdc-{table}"],
    )
    prefix: str | None = Field(
        None,
        description="{prefix} in `index`. Default: the event's source.name: the pipeline name (native "
        "readers) or the Debezium connector's topic.prefix.",
        examples=["shop"],
    )
    username: str | None = Field(
        None, description="Basic-auth user. Default: no authentication.", examples=["cdc"]
    )
    password: SecretStr | None = Field(
        None,
        description="Basic-auth password of `username`. A secret: never logged.",
        examples=["${SEARCH_PASSWORD}"],
    )
    mode: Literal["mirror", "append"] = Field(
        "mirror",
        description="mirror: one document per row, _id = the primary key (c/r/u index it, d deletes it, t "
        "empties the index; needs a primary key); append: one document per event (the envelope), _id = the "
        "event's stable id.",
        examples=["append"],
    )
    refresh: bool = Field(
        False,
        description="Each bulk request waits until its changes are searchable (refresh=wait_for): for tests; "
        "slows indexing.",
    )
    timeout_s: float = Field(30.0, gt=0, description="Seconds to wait for each request.", examples=[60.0])

    def base_url(self) -> str:
        return self.url or f"http://{self.host}:{self.port}"


@registry.sink(SearchSinkConfig, capabilities={"state", "ordered", "dedup_ids"})
def build(cfg: SearchSinkConfig, ctx: registry.BuildContext) -> SearchSink:
    return SearchSink(
        cfg.base_url(),
        index=cfg.index,
        prefix=cfg.prefix,
        mode=cfg.mode,
        username=cfg.username,
        password=secret(cfg.password),
        refresh=cfg.refresh,
        timeout_s=cfg.timeout_s,
        name=cfg.name or cfg.type,
    )
