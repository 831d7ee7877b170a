"""OpenSearch sink against a live OpenSearch 2.19 node (scripts/lib/opensearch.sh), read back over REST.

The contract suite runs both modes (tests/contract/sinks/opensearch.py): `mode: append` keeps one
document per event and is checked on the envelopes, `mode: mirror` keeps one document per row and is
checked on the rows. Here: mirror details (partial updates, truncate), mapping conflicts, ids.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests

from cdc_logs.envelope import ChangeEvent, Op, SourceInfo
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.position import Watermark
from cdc_logs.sinks.search import SearchSink, document_id, index_name
from tests.helpers import SERVER, make_event

pytestmark = pytest.mark.integration


def search(url: str, index: str) -> list[dict[str, Any]]:
    """Every document of `index` (refreshed first, so all indexed documents are searchable)."""
    if requests.post(f"{url}/{index}/_refresh", timeout=30).status_code == 404:
        return []
    resp = requests.post(
        f"{url}/{index}/_search", json={"size": 1000, "query": {"match_all": {}}}, timeout=30
    ).json()
    return [dict(hit["_source"], _id=hit["_id"]) for hit in resp["hits"]["hits"]]


def row_event(n: int, op: str, *, after: Any = None, before: Any = None, **kw: Any) -> ChangeEvent:
    row = after or before or {}
    return ChangeEvent(
        op=Op(op),
        source=SourceInfo("test", "p", "db", "users", schema="public", extra={"seq": n}),
        before=before,
        after=after,
        key={"id": row["id"]} if row else None,
        position=Watermark(SERVER, (n,)),
        **kw,
    )


def test_mirror_follows_inserts_updates_deletes(opensearch_url: str, unique_name: str) -> None:
    sink = SearchSink(opensearch_url, prefix=unique_name)
    sink.open()
    sink.write(
        [row_event(1, "c", after={"id": 1, "name": "ann"}), row_event(2, "c", after={"id": 2, "name": "bob"})]
    )
    sink.write([row_event(3, "u", after={"id": 1, "name": "anne"}), row_event(4, "d", before={"id": 2})])
    sink.write(
        [row_event(3, "u", after={"id": 1, "name": "anne"}), row_event(4, "d", before={"id": 2})]
    )  # replay
    sink.close()
    docs = search(opensearch_url, f"{unique_name}.public.users")
    assert docs == [{"_id": "1", "id": 1, "name": "anne"}]


def test_mirror_partial_update_keeps_unchanged_field(opensearch_url: str, unique_name: str) -> None:
    sink = SearchSink(opensearch_url, index=unique_name)
    sink.open()
    sink.write([row_event(1, "c", after={"id": 1, "bio": "long", "n": 1})])
    sink.write([row_event(2, "u", after={"id": 1, "n": 2}, unchanged=("bio",))])
    sink.close()
    assert search(opensearch_url, unique_name) == [{"_id": "1", "id": 1, "bio": "long", "n": 2}]


def test_mirror_truncate_empties_the_index_in_order(opensearch_url: str, unique_name: str) -> None:
    sink = SearchSink(opensearch_url, index=unique_name)
    sink.open()
    sink.write(
        [
            row_event(1, "c", after={"id": 1}),
            ChangeEvent(Op.TRUNCATE, SourceInfo("test", "p", "db", "users", schema="public")),
            row_event(3, "c", after={"id": 3}),
        ]
    )
    sink.close()
    assert [d["_id"] for d in search(opensearch_url, unique_name)] == ["3"]


def test_mapping_conflict_is_rejected(opensearch_url: str, unique_name: str) -> None:
    sink = SearchSink(opensearch_url, index=unique_name)
    sink.open()
    sink.write([row_event(1, "c", after={"id": 1, "n": 5})])
    with pytest.raises(CdcError) as err:
        sink.write([row_event(2, "c", after={"id": 2, "n": {"nested": "object"}})])
    assert err.value.kind is ErrorKind.SINK_REJECTED and "400" in err.value.message
    sink.close()


def test_append_replay_overwrites_instead_of_duplicating(opensearch_url: str, unique_name: str) -> None:
    batch = [make_event(n) for n in range(5)]
    for _ in range(2):
        sink = SearchSink(opensearch_url, index=unique_name, mode="append")
        sink.open()
        sink.write(batch)
        sink.close()
    assert len(search(opensearch_url, unique_name)) == 5


def test_names_and_ids() -> None:
    assert index_name("App.Public/Users") == "app.public_users"
    assert index_name("_x") == "x"
    assert document_id({"id": 7}) == "7"
    assert document_id({"a": 1, "b": "x"}) == '[1,"x"]'


def test_unreachable_is_transient() -> None:
    with pytest.raises(CdcError) as err:
        SearchSink("http://127.0.0.1:1", timeout_s=1).open()
    assert err.value.kind is ErrorKind.SINK_TRANSIENT
