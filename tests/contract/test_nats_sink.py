"""NATS JetStream sink against the stack's nats-server (JetStream on), read back with nats-py."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import nats
import pytest

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.sinks.nats import NatsSink
from tests.helpers import make_event

pytestmark = pytest.mark.integration


async def _stored(url: str, stream: str) -> list[Any]:
    nc = await nats.connect(url)
    try:
        js = nc.jetstream()
        info = await js.stream_info(stream)
        if info.state.messages == 0:
            return []
        return [await js.get_msg(stream, seq) for seq in range(info.state.first_seq, info.state.last_seq + 1)]
    finally:
        await nc.close()


def stored(url: str, stream: str) -> list[Any]:
    return asyncio.run(_stored(url, stream))


async def _delete(url: str, stream: str) -> None:
    nc = await nats.connect(url)
    try:
        await nc.jetstream().delete_stream(stream)
    except nats.js.errors.NotFoundError:
        pass
    finally:
        await nc.close()


@pytest.fixture
def stream(nats_url: str, unique_name: str) -> Iterator[str]:
    name = unique_name.upper()
    yield name
    asyncio.run(_delete(nats_url, name))


def test_subjects_headers_and_server_side_dedup(nats_url: str, unique_name: str, stream: str) -> None:
    batch = [make_event(1, table="a"), make_event(2, table="b", op="d")]
    sink = NatsSink(nats_url, prefix=unique_name, stream=stream)
    sink.open()
    sink.write(batch)
    sink.close()
    # A new process replays the batch: JetStream drops it by Nats-Msg-Id.
    again = NatsSink(nats_url, prefix=unique_name, stream=stream)
    again.open()
    again.write(batch)
    again.write([make_event(3, table="a")])
    again.close()
    msgs = stored(nats_url, stream)
    assert [m.subject for m in msgs] == [
        f"{unique_name}.main.a",
        f"{unique_name}.main.b",
        f"{unique_name}.main.a",
    ]
    assert [json.loads(m.data)["source"]["seq"] for m in msgs] == [1, 2, 3]
    headers = msgs[0].headers
    assert headers["op"] == "c" and json.loads(headers["key"]) == {"id": 1}
    assert json.loads(headers["position"])["values"] == [1] and headers["Nats-Msg-Id"]


def test_missing_stream_without_create_is_rejected(nats_url: str, unique_name: str) -> None:
    sink = NatsSink(nats_url, prefix=unique_name, stream=unique_name.upper(), create_stream=False)
    with pytest.raises(CdcError) as err:
        sink.open()
    assert err.value.kind is ErrorKind.SINK_REJECTED
    sink.close()


def test_subject_outside_the_stream_fails_the_batch(nats_url: str, unique_name: str, stream: str) -> None:
    sink = NatsSink(
        nats_url, subject="elsewhere." + unique_name, stream=stream, stream_subjects=[f"{unique_name}.>"]
    )
    sink.open()
    with pytest.raises(CdcError) as err:
        sink.write([make_event(1)])
    assert err.value.kind is ErrorKind.SINK_REJECTED and "no stream captures" in err.value.message
    sink.close()


def test_needs_subjects_for_a_new_stream() -> None:
    with pytest.raises(CdcError) as err:
        NatsSink("nats://127.0.0.1:4222")
    assert err.value.kind is ErrorKind.CONFIG
