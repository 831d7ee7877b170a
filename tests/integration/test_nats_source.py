"""The `nats` source against the stack's NATS 2.9 with JetStream: `cdc-logs run` delivers a stream's
messages to a file sink and the SQL apply sink, survives SIGKILLs (the durable consumer is re-created
at its ack floor, so the unacknowledged messages come again first and in order), parks a poison
message in the dead letters; and the reader-level facts the docs state (acks only after commit, the
consumer the source creates, consumers it refuses).

Each test creates its own stream (and so its own consumers) and deletes it at the end.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cdc_logs.envelope import ChangeEvent, Heartbeat
from cdc_logs.errors import CdcError
from cdc_logs.readers.contract import ContractChecker
from cdc_logs.readers.messages import MessageFormatConfig
from cdc_logs.readers.nats.reader import NatsReader, NatsSettings
from tests.integration.bus_support import (
    POISON,
    Target,
    body,
    check_delivery,
    check_poison,
    file_ids,
    write_pipeline,
)

pytestmark = pytest.mark.integration

N = 1500


class Stream:
    def __init__(self, url: str) -> None:
        self.url = url
        self.uid = uuid.uuid4().hex[:10]
        self.name = f"CDCTEST_{self.uid}"
        self.subject = f"cdctest.{self.uid}"

    async def _call(self, what: str, *args: Any, **kw: Any) -> Any:
        import nats

        nc = await nats.connect(self.url)
        try:
            return await getattr(nc.jetstream(), what)(*args, **kw)
        finally:
            await nc.close()

    def call(self, what: str, *args: Any, **kw: Any) -> Any:
        return asyncio.run(self._call(what, *args, **kw))

    def publish(self, messages: list[tuple[str, bytes]], pause_s: float = 0.0) -> None:
        async def go() -> None:
            import nats

            nc = await nats.connect(self.url)
            js = nc.jetstream()
            for subject, payload in messages:
                await js.publish(subject, payload)
                if pause_s:
                    await asyncio.sleep(pause_s)
            await nc.close()

        asyncio.run(go())


@pytest.fixture
def stream(nats_url: str) -> Iterator[Stream]:
    s = Stream(nats_url)
    s.call("add_stream", name=s.name, subjects=[f"{s.subject}.>"])
    try:
        yield s
    finally:
        s.call("delete_stream", s.name)


def test_run_delivers_to_file_and_sql_across_sigkills_and_dead_letters_a_poison_message(
    stream: Stream, tmp_path: Path
) -> None:
    target = Target(tmp_path / "target.db")
    source = {
        "type": "nats",
        "url": stream.url,
        "stream": stream.name,
        "subject": f"{stream.subject}.sensors.>",
        "durable": f"cdc-logs-test-{stream.uid}",
        "table": Target.TABLE,
        "key_fields": ["id"],
        "ack_wait_s": 5,
    }
    runs = write_pipeline(tmp_path, f"nats-{stream.uid}", source, target)
    messages = [(f"{stream.subject}.sensors.dev{i % 3}", body(i)) for i in range(N)]
    messages.insert(N // 2, (f"{stream.subject}.sensors.dev9", POISON))
    messages.insert(N // 3, (f"{stream.subject}.other", body(10**6)))  # outside the filter: never read
    out = tmp_path / "out.jsonl"
    publisher = threading.Thread(target=stream.publish, args=(messages,), kwargs={"pause_s": 0.002})
    try:
        publisher.start()
        runs.start()
        at_kill: list[int] = []
        for share in (4, 2):  # kill while messages are published, and while the backlog drains
            runs.wait(f"1/{share} was delivered", lambda s=share: len(file_ids(out)) >= N // s, 60)
            runs.kill()
            at_kill.append(len(file_ids(out)))
            assert at_kill[-1] < N, "the kill came after everything was delivered: nothing was tested"
            runs.start()
        publisher.join(60)
        runs.wait("every message was delivered", lambda: len(set(file_ids(out))) >= N, 60)
        runs.stop()
        lines = len(file_ids(out))
        runs.start()  # a clean stop acknowledged everything it delivered: nothing comes again
        runs.wait("the consumer is bound", lambda: "nats consumer bound" in runs.log_text(), 30)
        time.sleep(1.5)
        runs.stop()
        assert len(file_ids(out)) == lines, "a cleanly stopped run left delivered messages unacknowledged"
    finally:
        runs.close()
    facts = check_delivery(tmp_path, target, N, at_kill=at_kill)
    print(f"killed at {at_kill} lines; {facts}")
    # A repeat has its first delivery's position: SQL apply's replay guard skips it, every row once.
    assert facts["sql_writes"] == N, f"SQL apply wrote {facts['sql_writes']} rows for {N} messages"
    check_poison(tmp_path, len(at_kill), subject=f"{stream.subject}.sensors.dev9")
    position = runs.committed_position()
    assert position is not None and position["type"] == "nats" and position["stream"] == stream.name


# -- the reader on its own ----------------------------------------------------------------------------
def _reader(stream: Stream, durable: str, **kw: Any) -> NatsReader:
    settings = NatsSettings(url=stream.url, stream=stream.name, durable=durable, **kw)
    reader = NatsReader(settings, MessageFormatConfig().mapping(), pipeline="p", idle_tick_s=0.2)
    reader.commit_wait_s = 0.0  # the test drives the reader itself: no other thread sends the acks
    return reader


def _read(reader: NatsReader, count: int, timeout: float = 5) -> list[Any]:
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    for item in reader.stream(None):
        if isinstance(item, ChangeEvent):
            out.append(item)
        if len(out) >= count or time.monotonic() > deadline:
            break
    return out


def test_only_committed_messages_are_acknowledged_and_the_rest_come_again_in_order(stream: Stream) -> None:
    stream.publish([(f"{stream.subject}.a", f'{{"i": {i}}}'.encode()) for i in range(10)])
    reader = _reader(stream, "acks", ack_wait_s=30)
    reader.open()
    first = _read(reader, 10)
    assert [e.after["i"] for e in first] == list(range(10))
    assert [e.position.seq for e in first] == list(range(1, 11))
    reader.commit(first[3].position)
    reader.close()
    # ack_wait is 30 s: without the re-creation at the ack floor nothing would come for 30 s.
    reader.open()
    again = _read(reader, 6)
    reader.close()
    assert [e.after["i"] for e in again] == [4, 5, 6, 7, 8, 9]
    assert [e.position for e in again] == [e.position for e in first[4:]], "a repeat keeps its position"
    assert ContractChecker().check_all(first) == [] and ContractChecker().check_all(again) == []
    info = stream.call("consumer_info", stream.name, "acks")
    assert info.config.ack_policy == "explicit" and info.config.ack_wait == 30


def test_the_start_heartbeat_and_empty_messages(stream: Stream) -> None:
    stream.publish([(f"{stream.subject}.a", b""), (f"{stream.subject}.a", b'{"i": 1}')])
    reader = _reader(stream, "empty")
    reader.open()
    items = []
    for item in reader.stream(None):
        if item is not None:
            items.append(item)
        if len(items) == 3:
            break
    reader.close()
    assert [type(i).__name__ for i in items] == ["Heartbeat", "Heartbeat", "ChangeEvent"]
    assert isinstance(items[1], Heartbeat) and items[1].position.seq == 1


def test_consumers_it_cannot_use_are_refused(stream: Stream) -> None:
    from nats.js.api import AckPolicy, ConsumerConfig

    stream.call("add_consumer", stream.name, ConsumerConfig(durable_name="ackall", ack_policy=AckPolicy.ALL))
    reader = _reader(stream, "ackall")
    with pytest.raises(CdcError, match="not explicit"):
        reader.open()
    reader.close()
    missing = NatsReader(
        NatsSettings(url=stream.url, stream=stream.name + "_NOPE", durable="x"),
        MessageFormatConfig().mapping(),
        pipeline="p",
    )
    with pytest.raises(CdcError, match="does not exist"):
        missing.open()
    missing.close()


def test_a_redelivery_while_the_first_delivery_waits_is_not_handed_on_twice(stream: Stream) -> None:
    stream.publish([(f"{stream.subject}.a", f'{{"i": {i}}}'.encode()) for i in range(3)])
    reader = _reader(stream, "slow", ack_wait_s=1)
    reader.open()
    items = reader.stream(None)
    got = []
    for item in items:
        if isinstance(item, ChangeEvent):
            got.append(item)
        if len(got) == 3:
            break
    time.sleep(2.5)  # the reader is held (no in-progress notices): the server sends the 3 again
    later = []
    deadline = time.monotonic() + 3
    for item in items:
        if isinstance(item, ChangeEvent):
            later.append(item)
        if time.monotonic() > deadline:
            break
    assert later == [], "a message was handed on twice within one connection"
    info = stream.call("consumer_info", stream.name, "slow")
    assert info.num_redelivered >= 1, "the server did not redeliver: the test proves nothing"
    reader.commit(got[-1].position)
    reader.close()
    info = stream.call("consumer_info", stream.name, "slow")
    assert info.num_ack_pending == 0 and info.ack_floor.stream_seq == 3


def test_a_consumer_the_user_made_is_never_deleted_to_restart_in_order(stream: Stream) -> None:
    from nats.js.api import AckPolicy, ConsumerConfig

    stream.publish([(f"{stream.subject}.a", f'{{"i": {i}}}'.encode()) for i in range(6)])
    user_config = ConsumerConfig(
        durable_name="theirs", ack_policy=AckPolicy.EXPLICIT, ack_wait=2, description="the billing team's"
    )
    created = stream.call("add_consumer", stream.name, user_config).created
    reader = _reader(stream, "theirs")
    reader.open()
    first = _read(reader, 6)
    reader.commit(first[1].position)
    reader.close()
    reader.open()  # two left unacknowledged by a "killed" run: the consumer stays as the user made it
    again = _read(reader, 4, timeout=10)  # after its ack_wait (2 s)
    reader.close()
    info = stream.call("consumer_info", stream.name, "theirs")
    assert info.created == created and info.config.description == "the billing team's"
    assert sorted(e.after["i"] for e in again) == [2, 3, 4, 5]
