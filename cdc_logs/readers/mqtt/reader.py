"""MqttReader: MQTT topic filters as a cdc-logs source (paho-mqtt 2.x, QoS 1, manual acknowledgements).

Session: the client connects with a stable client id and a persistent session (MQTT 5: clean_start
false with a session expiry; MQTT 3.1.1: clean_session false) and subscribes to every filter at QoS 1.
While the pipeline is down the broker queues the filters' QoS 1 messages for the session, and on the
next connection it first sends again, in their original order, the messages it sent that were not
acknowledged, then the rest: the broker holds the resume state, not the stored position.

Acknowledgements: paho runs with `manual_ack=True`, so no PUBACK goes out when a message arrives. The
pipeline's `commit(position)` (any thread) only records how far is durable; the reader's own thread,
the one that drives the client, sends the PUBACKs of every message up to there, in the order the
messages came (MQTT wants acknowledgements in receipt order). paho is not thread-safe as a whole (its
maintainers say so), so this reader runs no paho network thread: it calls `client.loop()` itself from
`stream()`, and everything that touches the client (connect, subscribe, callbacks, acks, disconnect)
happens on that one thread; `close()` runs after it has ended. The thread drives paho through its
external-loop API (`socket()`, `loop_read()`, `loop_write()`, `loop_misc()`) with its own select(),
which also watches a wake-up socket that `commit()` writes to: the PUBACKs of a durable batch go out
at once, not at the next poll, so a crash right after a commit repeats as little as possible.

Positions (`MqttPosition`): (run, seq), the seq-th message of this run, one lane. A run starts at
every `stream()` call, so messages the broker sends again after a reconnect get new, higher positions:
they are delivered again (at-least-once), and a sink's replay guard does not drop them. Acks still to
send for a previous connection are dropped with it: their packet ids may be reused by the new one, and
the broker sends those messages again anyway.

Messages: each is decoded by `decode_message` (readers/messages.py) with the table its topic maps to
(the `tables` filters, else the topic with / -> _). Every message is a boundary. A message that
carries no row (an empty payload, which is how retained messages are cleared; a Debezium tombstone)
becomes a Heartbeat, so it is acknowledged once the checkpoint passes it; a message on a topic none
of the configured filters match (a subscription left in the session by an earlier config) too, with
a warning. Undecodable messages go to the dead letters with the reason and are then acknowledged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import select
import socket
import ssl
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cdc_logs.envelope import Heartbeat
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.logging import get_logger
from cdc_logs.position import MqttPosition, Position
from cdc_logs.readers.base import Reader, StreamItem
from cdc_logs.readers.messages import Message, MessageMapping, decode_message

log = get_logger(__name__)

# CONNACK reason codes that mean the credentials (3.1.1: 4 bad user name or password, 5 not
# authorised; MQTT 5: 0x86, 0x87) or the client id (0x85, 3.1.1: 2) were refused.
_AUTH_CODES = {0x04, 0x05, 0x86, 0x87, 0x8C}
_CLIENT_ID_CODES = {0x02, 0x85}
_SESSION_TAKEN_OVER = 0x8E
# Unsubscribed (never subscribed) before a clean disconnect: the broker answers packets of a connection
# in order, so its UNSUBACK proves it has processed the PUBACKs sent before. Mosquitto 2.0 otherwise
# drops the last PUBACKs of a connection closed right after them and sends those messages again.
_ACK_BARRIER = "cdc-logs/ack-barrier"


@dataclass(frozen=True)
class MqttSettings:
    """What the reader needs from `MqttSourceConfig` (secrets as plain text, never logged)."""

    broker: str
    topics: tuple[str, ...]
    client_id: str
    tables: tuple[tuple[str, str], ...] = ()
    username: str | None = None
    password: str | None = None
    protocol_version: int = 5
    session_expiry_s: int = 7 * 24 * 3600
    receive_maximum: int = 1000
    keepalive_s: int = 60
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    connect_timeout_s: float = 10.0
    temporary: bool = False  # tail: a throwaway clean session under a random client id


def topic_table(topic: str, tables: tuple[tuple[str, str], ...]) -> str:
    """The table a topic's messages are about: the first matching `tables` filter's, else the topic
    with / replaced by _."""
    from paho.mqtt.client import topic_matches_sub

    for topic_filter, table in tables:
        if topic_matches_sub(topic_filter, topic):
            return table
    return topic.replace("/", "_")


class MqttReader(Reader):
    """Read MQTT messages as change events (module docstring)."""

    connector = "mqtt"

    def __init__(
        self,
        settings: MqttSettings,
        mapping: MessageMapping,
        *,
        pipeline: str,
        idle_tick_s: float = 0.5,
    ) -> None:
        parts = urlsplit(settings.broker if "://" in settings.broker else f"mqtt://{settings.broker}")
        self.settings = settings
        self.tls = parts.scheme in ("mqtts", "ssl")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or (8883 if self.tls else 1883)
        self.mapping = mapping
        self.pipeline = pipeline
        self.idle_tick_s = idle_tick_s
        self.client_id = (
            f"cdc-logs-tail-{uuid.uuid4().hex[:12]}" if settings.temporary else settings.client_id
        )
        self._server = f"mqtt://{self.host}:{self.port}"
        self._client: Any = None
        self._stop = threading.Event()
        self._lock = threading.Condition()  # guards _pending/_acks_done (commit() is another thread's)
        self._pending: MqttPosition | None = None
        self._acks_done: MqttPosition | None = None  # the pending position whose acks went out
        self.commit_wait_s = 1.0
        self._inbox: deque[Any] = deque()  # messages paho handed over, not yet yielded
        self._unacked: deque[tuple[int, int, int]] = deque()  # (seq, mid, qos) in receipt order
        self._run = 0
        self._seq = 0
        self._connack: Any = None
        self._session_present = False
        self._connected = False
        self._disconnect_reason: Any = None
        self._suback: dict[int, list[Any]] = {}
        self._mappings: dict[str, MessageMapping] = {}
        self._stray: set[str] = set()
        self._acks_sent = False
        self._wake_r: socket.socket | None = None  # commit() writes a byte to _wake_w: acks are due
        self._wake_w: socket.socket | None = None

    # -- paho callbacks (always on this reader's thread: it drives client.loop()) -------------------
    def _on_connect(self, _c: Any, _u: Any, flags: Any, reason: Any, _props: Any) -> None:
        self._connack = reason
        self._connected = not reason.is_failure
        self._session_present = bool(getattr(flags, "session_present", False))

    def _on_disconnect(self, _c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        self._connected = False
        self._disconnect_reason = reason

    def _on_subscribe(self, _c: Any, _u: Any, mid: int, reasons: list[Any], _props: Any) -> None:
        self._suback[mid] = list(reasons)

    def _on_unsubscribe(self, _c: Any, _u: Any, mid: int, _reasons: Any, _props: Any) -> None:
        self._suback[mid] = []

    def _on_message(self, _c: Any, _u: Any, message: Any) -> None:
        self._inbox.append(message)

    # -- lifecycle -----------------------------------------------------------------------------------
    def open(self) -> None:
        self._open(subscribe=True)

    def probe(self) -> bool:
        """Connect and disconnect, subscribing to nothing (`cdc-logs doctor`): only for a reader with
        throwaway settings (`temporary`: a clean session under a client id of its own), so the
        pipeline's session is neither taken over nor cleaned. Whether the broker kept a session."""
        if not self.settings.temporary:
            raise CdcError(ErrorKind.INTERNAL, "MqttReader.probe() with the pipeline's session", None)
        self._open(subscribe=False)
        present = self._session_present
        self.close()
        return present

    def _open(self, *, subscribe: bool) -> None:
        import paho.mqtt.client as mqtt

        self._stop.clear()
        self._inbox.clear()
        self._unacked.clear()
        with self._lock:
            self._pending = self._acks_done = None
        self._connack, self._connected, self._disconnect_reason = None, False, None
        self._suback.clear()
        self._acks_sent = False
        if self._wake_r is None:
            self._wake_r, self._wake_w = socket.socketpair()
            self._wake_r.setblocking(False)
            self._wake_w.setblocking(False)
        s = self.settings
        v5 = s.protocol_version == 5
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311,
            clean_session=None if v5 else s.temporary,
            manual_ack=True,
        )
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_unsubscribe = self._on_unsubscribe
        client.on_message = self._on_message
        if s.username:
            client.username_pw_set(s.username, s.password)
        if self.tls:
            client.tls_set(
                ca_certs=s.ca_file, certfile=s.cert_file, keyfile=s.key_file, cert_reqs=ssl.CERT_REQUIRED
            )
        self._client = client
        try:
            self._connect(client, v5)
            if subscribe:
                self._subscribe(client, v5)
        except BaseException:
            self._drop_client()
            raise
        if not subscribe:
            return
        log.info(
            "mqtt session opened",
            broker=self._server,
            client_id=self.client_id,
            session_present=self._session_present,
            topics=list(s.topics),
        )

    def _connect(self, client: Any, v5: bool) -> None:
        s = self.settings
        kwargs: dict[str, Any] = {}
        if v5:
            from paho.mqtt.packettypes import PacketTypes
            from paho.mqtt.properties import Properties

            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = 0 if s.temporary else s.session_expiry_s
            props.ReceiveMaximum = s.receive_maximum
            # clean_start False, not paho's default "clean on the first connect only": the session the
            # broker kept while we were down is the one that holds the unacknowledged messages.
            kwargs = {"clean_start": s.temporary, "properties": props}
        try:
            client.connect(self.host, self.port, keepalive=s.keepalive_s, **kwargs)
        except (OSError, ssl.SSLError) as exc:
            raise CdcError(
                ErrorKind.CONNECTION,
                f"cannot reach the MQTT broker at {self._server}: {exc}",
                "check the source's broker URL and that the broker is running",
            ) from exc
        self._loop_until(lambda: self._connack is not None or self._disconnect_reason is not None, "connect")
        reason = self._connack
        if reason is None or reason.is_failure:
            code = reason.value if reason is not None else None
            if code in _AUTH_CODES:
                raise CdcError(
                    ErrorKind.AUTH,
                    f"the MQTT broker at {self._server} refused the login: {reason}",
                    "check the source's username and password",
                )
            if code in _CLIENT_ID_CODES:
                raise CdcError(
                    ErrorKind.CONFIG,
                    f"the MQTT broker at {self._server} refused client id {self.client_id!r}: {reason}",
                    "set the source's client_id to one the broker accepts",
                )
            raise CdcError(
                ErrorKind.CONNECTION,
                f"the MQTT broker at {self._server} refused the connection: "
                f"{reason or self._disconnect_reason}",
                "check the broker",
            )

    def _subscribe(self, client: Any, v5: bool) -> None:
        s = self.settings
        if v5:
            from paho.mqtt.subscribeoptions import SubscribeOptions

            # retainHandling 1: retained messages only when the subscription is new to the session, so
            # a restart does not deliver every retained message again.
            topics: list[tuple[str, Any]] = [(t, SubscribeOptions(qos=1, retainHandling=1)) for t in s.topics]
        else:
            topics = [(t, 1) for t in s.topics]
        rc, mid = client.subscribe(topics)
        if rc != 0:
            raise CdcError(ErrorKind.CONNECTION, f"subscribing at {self._server} failed (rc={rc})", None)
        self._loop_until(lambda: mid in self._suback or not self._connected, "subscribe")
        if mid not in self._suback:
            raise CdcError(
                ErrorKind.CONNECTION,
                f"the MQTT broker at {self._server} closed the connection on subscribe: "
                f"{self._disconnect_reason}",
                "check the broker's log and its ACLs for these topics",
            )
        for topic_filter, granted in zip(s.topics, self._suback[mid], strict=False):
            if granted.is_failure:
                raise CdcError(
                    ErrorKind.PERMISSION,
                    f"the MQTT broker refused the subscription to {topic_filter!r}: {granted}",
                    "allow this client to subscribe to it (the broker's ACL), or fix the filter",
                )
            if granted.value == 0:
                raise CdcError(
                    ErrorKind.UNSUPPORTED,
                    f"the MQTT broker granted only QoS 0 for {topic_filter!r}",
                    "QoS 0 messages are never sent again after a crash: allow QoS 1 on the broker",
                )

    def _loop_until(self, done: Any, what: str) -> None:
        deadline = time.monotonic() + self.settings.connect_timeout_s
        while not done():
            if time.monotonic() >= deadline:
                raise CdcError(
                    ErrorKind.TIMEOUT,
                    f"the MQTT broker at {self._server} did not answer the {what} within "
                    f"{self.settings.connect_timeout_s:g} s",
                    "check the broker, or raise connect_timeout_s",
                )
            self._step(0.1)

    def _step(self, timeout: float) -> None:
        """One turn of the network loop: wait up to `timeout` for the broker or a commit, then read one
        packet, write what is queued, and keep the connection alive (keep-alive pings)."""
        client = self._client
        sock = client.socket()
        if sock is None:  # closed: on_disconnect has been called
            if self._disconnect_reason is None:
                self._disconnect_reason = "the connection is closed"
            self._connected = False
            return
        pending = bool(getattr(sock, "pending", None) and sock.pending())  # TLS bytes select cannot see
        try:
            readable, writable, _ = select.select(
                [sock, self._wake_r], [sock] if client.want_write() else [], [], 0.0 if pending else timeout
            )
        except (OSError, ValueError):  # the socket was closed under us
            readable, writable = [], []
        if self._wake_r is not None and self._wake_r in readable:
            with contextlib.suppress(OSError):
                self._wake_r.recv(4096)
        if sock in readable or pending:
            client.loop_read()
        if sock in writable and client.socket() is not None:
            client.loop_write()
        if client.socket() is not None:
            client.loop_misc()

    def server_identity(self) -> str:
        return self._server

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            self._lock.notify_all()  # a commit() waiting for acks returns now

    def close(self) -> None:
        self._stop.set()
        if self._client is None:
            return
        try:
            if self._connected:
                self._send_acks()
                if self._acks_sent and _ACK_BARRIER not in self.settings.topics:
                    _rc, mid = self._client.unsubscribe(_ACK_BARRIER)
                    with contextlib.suppress(CdcError):  # no answer: the broker sends those again
                        self._loop_until(lambda: mid in self._suback or not self._connected, "unsubscribe")
                # The session stays: its expiry was set at connect.
                self._client.disconnect()
                deadline = time.monotonic() + 2.0
                while self._connected and time.monotonic() < deadline:
                    self._step(0.05)
        except Exception as exc:
            log.warning("closing the MQTT connection failed", error=str(exc))
        finally:
            self._drop_client()
            for sock in (self._wake_r, self._wake_w):
                if sock is not None:
                    sock.close()
            self._wake_r = self._wake_w = None

    def _drop_client(self) -> None:
        """Forget the client; its socket is closed here if a DISCONNECT did not close it (a refused
        connect, a timeout), so no half-open connection waits for the keep-alive to expire."""
        client, self._client = self._client, None
        self._connected = False
        sock = client.socket() if client is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()

    # -- commits -------------------------------------------------------------------------------------
    def commit(self, position: Position) -> None:
        """Record what is durable, wake the reader's thread, and give it a moment to send the PUBACKs:
        the pipeline writes the next batch after this returns, and a crash before the acks are out
        would repeat both batches. Bounded (`commit_wait_s`): a reader held back by a full queue
        acks later."""
        if not isinstance(position, MqttPosition):
            return
        with self._lock:
            if self._pending is None or self._pending < position:
                self._pending = position
        wake = self._wake_w
        if wake is not None:
            with contextlib.suppress(OSError):  # full (a wake-up is pending anyway) or closed
                wake.send(b"\0")
        with self._lock:
            self._lock.wait_for(
                lambda: (
                    (self._acks_done is not None and self._acks_done >= position)
                    or self._client is None
                    or self._stop.is_set()
                ),
                self.commit_wait_s,
            )

    def _send_acks(self) -> None:
        """PUBACK every message of this connection up to the last durable position (this thread only)."""
        with self._lock:
            pending = self._pending
        if pending is None:
            return
        # A position of a connection that is gone has no acks left to send (they went with it).
        while pending.run == self._run and self._unacked and self._unacked[0][0] <= pending.seq:
            _seq, mid, qos = self._unacked.popleft()
            rc = self._client.ack(mid, qos)
            self._acks_sent = True
            if rc != 0:
                # Not connected any more: the broker sends the message again on the next connection.
                log.debug("mqtt ack not sent", mid=mid, rc=int(rc))
        with self._lock:
            if self._acks_done is None or self._acks_done < pending:
                self._acks_done = pending
                self._lock.notify_all()

    # -- streaming -----------------------------------------------------------------------------------
    def stream(self, start: Position | None) -> Iterator[StreamItem]:
        if self._client is None:
            raise CdcError(ErrorKind.INTERNAL, "MqttReader.stream() before open()", None)
        previous = start.run if isinstance(start, MqttPosition) else 0
        self._run = max(time.time_ns() // 1_000_000, previous + 1, self._run + 1)
        self._seq = 0
        self._unacked.clear()
        if start is None:
            # The pipeline stores where this run begins (informational: the session holds the rest).
            yield Heartbeat(MqttPosition(self._server, run=self._run, seq=0))
        last_yield = time.monotonic()
        while not self._stop.is_set():
            self._send_acks()
            if not self._inbox:
                self._step(min(self.idle_tick_s, 0.1))
                self._check_connection()
            if not self._inbox:
                if time.monotonic() - last_yield >= self.idle_tick_s:
                    last_yield = time.monotonic()
                    yield None
                continue
            message = self._inbox.popleft()
            last_yield = time.monotonic()
            yield self._convert(message)

    def _check_connection(self) -> None:
        if self._connected:
            return
        reason = self._disconnect_reason
        code = getattr(reason, "value", None)
        if code == _SESSION_TAKEN_OVER:
            raise CdcError(
                ErrorKind.CONNECTION,
                f"another client connected to {self._server} with client id {self.client_id!r} and took "
                "over the session",
                "run one pipeline per client_id; give each source its own client_id",
            )
        raise CdcError(
            ErrorKind.CONNECTION,
            f"lost the connection to the MQTT broker at {self._server}: {reason}",
            "the source reconnects; the broker sends the unacknowledged messages again",
        )

    def _convert(self, message: Any) -> StreamItem:
        self._seq += 1
        position = MqttPosition(self._server, run=self._run, seq=self._seq)
        if message.qos > 0:
            self._unacked.append((self._seq, message.mid, message.qos))
        topic = message.topic
        if not any(_matches(f, topic) for f in self.settings.topics):
            if topic not in self._stray:
                self._stray.add(topic)
                log.warning(
                    "mqtt message on a topic no configured filter matches, acknowledged and skipped "
                    "(a subscription an earlier config left in the session)",
                    topic=topic,
                    client_id=self.client_id,
                )
            return Heartbeat(position)
        if not message.payload:
            return Heartbeat(position)  # carries no row: how a retained message is cleared
        msg = Message(
            body=message.payload,
            channel=topic,
            db=f"{self.host}:{self.port}",
            position=position,
            key=_user_property(message, "key"),
            coordinates={
                "topic": topic,
                "qos": message.qos,
                "retain": bool(message.retain),
                "redelivered": bool(message.dup),
            },
        )
        item = decode_message(msg, self._mapping(topic), connector=self.connector, pipeline=self.pipeline)
        return Heartbeat(position) if item is None else item

    def _mapping(self, topic: str) -> MessageMapping:
        mapping = self._mappings.get(topic)
        if mapping is None:
            if self.mapping.table is not None or self.mapping.debezium:
                mapping = self.mapping
            else:
                mapping = dataclasses.replace(self.mapping, table=topic_table(topic, self.settings.tables))
            if len(self._mappings) < 100_000:  # one per topic: bounded against a topic per message
                self._mappings[topic] = mapping
        return mapping


def _matches(topic_filter: str, topic: str) -> bool:
    from paho.mqtt.client import topic_matches_sub

    return bool(topic_matches_sub(topic_filter, topic))


def _user_property(message: Any, name: str) -> bytes | None:
    """An MQTT 5 user property of the message (the cdc-logs MQTT sink sends the event key as `key`)."""
    props = getattr(message, "properties", None)
    for key, value in getattr(props, "UserProperty", None) or ():
        if key == name:
            return str(value).encode()
    return None
