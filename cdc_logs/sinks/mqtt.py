"""MQTT sink (paho-mqtt 2.x): QoS 1 publishes, `write` returns when every PUBACK is in.

Topic: rendered per event from `topic` (default `{prefix}/{schema}/{table}`: MQTT levels are
`/`-separated; `+` and `#` cannot appear in a topic name and are replaced by `_`). Payload: the
Debezium envelope. With MQTT 5 (the default; `protocol_version: 311` for old brokers) each message
carries user properties `op`, `key` (event key JSON) and `position`, and content type
application/json; a PUBACK with a failure reason code (not authorised, quota, payload format) fails
the batch as SINK_REJECTED.

Delivery: QoS 1 is at-least-once by the protocol; the batch is published with up to `max_inflight`
messages awaiting PUBACK at once and `write` waits for all of them, so a return means the broker
has taken responsibility for every message. A timeout or a lost connection fails the batch as
SINK_TRANSIENT and the pipeline re-sends it (duplicates possible: consumers may dedup on
`position`). What the broker keeps for subscribers that are offline depends on their sessions
(persistent session + QoS 1 subscription) and on the broker's persistence settings, not on us.

Order: MQTT brokers deliver QoS 1 messages of one topic from one publisher in publish order.
"""

from __future__ import annotations

import re
import ssl
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import ConfigDict, Field, SecretStr

from cdc_logs import registry
from cdc_logs.configmodel import SinkConfigBase, secret
from cdc_logs.envelope import ChangeEvent
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.extras import destination_label, need
from cdc_logs.observability.redact import redact
from cdc_logs.sinks.base import Sink
from cdc_logs.sinks.routing import check_template, position_text, render

DEFAULT_TOPIC = "{prefix}/{schema}/{table}"
_WILDCARDS = re.compile(r"[+#\x00]")


class MqttSink(Sink):
    def __init__(
        self,
        url: str,
        *,
        topic: str = DEFAULT_TOPIC,
        prefix: str | None = None,
        qos: int = 1,
        retain: bool = False,
        protocol_version: int = 5,
        client_id: str | None = None,
        username: str | None = None,
        password: str | None = None,
        max_inflight: int = 1000,
        timeout_s: float = 30.0,
        name: str = "mqtt",
    ) -> None:
        check_template(topic, "topic")
        if qos not in (1, 2):
            raise CdcError(
                ErrorKind.CONFIG,
                f"mqtt qos must be 1 or 2, got {qos}",
                "QoS 0 has no acknowledgement, so a batch could never be known durable",
            )
        parts = urlsplit(url if "://" in url else f"mqtt://{url}")
        self.url = url
        self.host = parts.hostname or "127.0.0.1"
        self.tls = parts.scheme in ("mqtts", "ssl")
        self.port = parts.port or (8883 if self.tls else 1883)
        self.username = username or parts.username
        self.password = password or parts.password
        self.topic = topic
        self.prefix = prefix
        self.qos = qos
        self.retain = retain
        self.protocol_version = protocol_version
        self.client_id = client_id or f"cdc-logs-{name}-{uuid.uuid4().hex[:8]}"
        self.max_inflight = max_inflight
        self.timeout_s = timeout_s
        self.name = name
        self._client: Any = None
        self._cond = threading.Condition()
        self._acked: dict[int, Any] = {}  # mid -> reason code of its PUBACK
        self._connected = False
        self._connect_rc: Any = None

    # -- paho callbacks (network thread) -----------------------------------------------------------
    def _on_connect(self, _c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        with self._cond:
            self._connect_rc = reason
            self._connected = not reason.is_failure
            self._cond.notify_all()

    def _on_disconnect(self, _c: Any, _u: Any, _flags: Any, _reason: Any, _props: Any) -> None:
        with self._cond:
            self._connected = False
            self._cond.notify_all()

    def _on_publish(self, _c: Any, _u: Any, mid: int, reason: Any, _props: Any) -> None:
        with self._cond:
            self._acked[mid] = reason
            self._cond.notify_all()

    # -- lifecycle ---------------------------------------------------------------------------------
    def open(self) -> None:
        import paho.mqtt.client as mqtt

        protocol = mqtt.MQTTv5 if self.protocol_version == 5 else mqtt.MQTTv311
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=protocol)
        if self.username:
            client.username_pw_set(self.username, self.password)
        if self.tls:
            client.tls_set(cert_reqs=ssl.CERT_REQUIRED)
        client.max_inflight_messages_set(self.max_inflight)
        client.max_queued_messages_set(0)
        client.on_connect, client.on_disconnect, client.on_publish = (
            self._on_connect,
            self._on_disconnect,
            self._on_publish,
        )
        self._connect_rc, self._connected = None, False
        try:
            client.connect(self.host, self.port, keepalive=30)
        except OSError as exc:
            raise CdcError(
                ErrorKind.SINK_TRANSIENT,
                f"cannot reach the MQTT broker at {redact(self.url)}: {exc}",
                "check destination.url and that the broker is running",
            ) from exc
        client.loop_start()
        with self._cond:
            self._cond.wait_for(lambda: self._connect_rc is not None, self.timeout_s)
        rc = self._connect_rc
        if rc is None or rc.is_failure:
            client.loop_stop()
            client.disconnect()
            auth = rc is not None and rc.value in (0x04, 0x05, 0x86, 0x87)
            raise CdcError(
                ErrorKind.AUTH if auth else ErrorKind.SINK_TRANSIENT,
                f"MQTT broker at {redact(self.url)} refused the connection: {rc}",
                "check destination.username / password" if auth else "check the broker",
            )
        self._client = client

    def close(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client.loop_stop()
            self._client = None

    # -- writing -----------------------------------------------------------------------------------
    def topic_for(self, event: ChangeEvent) -> str:
        return _WILDCARDS.sub("_", render(self.topic, event, self.prefix))

    def _properties(self, event: ChangeEvent) -> Any:
        if self.protocol_version != 5:
            return None
        from paho.mqtt.packettypes import PacketTypes
        from paho.mqtt.properties import Properties

        props = Properties(PacketTypes.PUBLISH)
        props.ContentType = "application/json"
        user = [("op", event.op.value)]
        key = event.key_json()
        if key is not None:
            user.append(("key", key.decode()))
        position = position_text(event)
        if position is not None:
            user.append(("position", position))
        props.UserProperty = user
        return props

    def write(self, batch: Sequence[ChangeEvent]) -> None:
        if not batch:
            return
        if self._client is None:
            self.open()
        mids: list[int] = []
        for event in batch:
            info = self._client.publish(
                self.topic_for(event),
                event.to_json(),
                qos=self.qos,
                retain=self.retain,
                properties=self._properties(event),
            )
            # Not connected right now: paho queues QoS>0 messages and sends them on reconnect.
            if info.rc not in (0, 4):  # MQTT_ERR_SUCCESS, MQTT_ERR_NO_CONN
                raise CdcError(ErrorKind.SINK_TRANSIENT, f"MQTT publish failed locally (rc={info.rc})")
            mids.append(info.mid)
        deadline = time.monotonic() + self.timeout_s
        with self._cond:
            done = self._cond.wait_for(
                lambda: all(m in self._acked for m in mids), max(0.0, deadline - time.monotonic())
            )
            reasons = [self._acked.pop(m) for m in mids if m in self._acked]
        if not done:
            # Start over with a new client: a late PUBACK must not settle a future message whose
            # 16-bit message id wrapped around to the same value.
            self.close()
            with self._cond:
                self._acked.clear()
            raise CdcError(
                ErrorKind.SINK_TRANSIENT,
                f"the MQTT broker acknowledged {len(reasons)} of {len(batch)} in {self.timeout_s:g}s",
                "check the broker and the connection; the batch is retried",
            )
        failed = [r for r in reasons if getattr(r, "is_failure", False)]
        if failed:
            raise CdcError(
                ErrorKind.SINK_REJECTED,
                f"the MQTT broker refused {len(failed)} of {len(batch)} messages: {failed[0]}",
                "check the broker's ACLs for these topics and its message size and quota limits",
            )


# -- config ----------------------------------------------------------------------------------------
class MqttSinkConfig(SinkConfigBase):
    """MQTT, QoS 1 (or 2), every PUBACK awaited."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"type": "mqtt", "broker": "mqtt://broker.internal:1883"}]}
    )

    type: Literal["mqtt"] = Field(description="Selects this destination.")
    url: str = Field(
        "mqtt://127.0.0.1:1883",
        alias="broker",
        description="Broker URL: mqtt://host[:port] (default port 1883) or mqtts:// / ssl:// for TLS "
        "(default port 8883, the server's certificate is verified). user:password in it are used when "
        "username/password are not set.",
        examples=["mqtts://broker.internal:8883"],
    )
    topic: str = Field(
        "{prefix}/{schema}/{table}",
        description="Topic per event, from {prefix} {db} {schema} {table} {op} {connector} (MQTT levels are "
        "/-separated); + and # in the result become _.",
        examples=["cdc/{table}/{op}"],
    )
    prefix: str | None = Field(
        None,
        description="{prefix} in `topic`. Default: the event's source.name: the pipeline name (native "
        "readers) or the Debezium connector's topic.prefix.",
        examples=["shop"],
    )
    qos: Literal[1, 2] = Field(
        1,
        description="QoS of every publish; each is awaited (PUBACK / PUBCOMP). QoS 0 is refused: nothing "
        "would confirm delivery.",
        examples=[2],
    )
    retain: bool = Field(
        False, description="Publish with the retain flag: the broker keeps each topic's last message."
    )
    protocol_version: Literal[5, 311] = Field(
        5,
        description="5: MQTT 5, each message with user properties op, key and position and content type "
        "application/json; 311: MQTT 3.1.1 for old brokers (no properties).",
        examples=[311],
    )
    client_id: str | None = Field(
        None,
        description="MQTT client id. Default: cdc-logs-<sink name>-<random>, new on every start.",
        examples=["cdc-logs-shop"],
    )
    username: str | None = Field(None, description="User name to log in with.", examples=["cdc"])
    password: SecretStr | None = Field(
        None, description="Password to log in with. A secret: never logged.", examples=["${MQTT_PASSWORD}"]
    )
    max_inflight: int = Field(
        1000,
        ge=1,
        description="Messages published and not yet acknowledged at once (the client's in-flight window).",
        examples=[100],
    )
    timeout_s: float = Field(
        30.0,
        gt=0,
        description="Seconds to wait for the connection, and for every acknowledgement of a batch; then "
        "the batch fails and is retried.",
        examples=[60.0],
    )


@registry.sink(MqttSinkConfig, capabilities={"log"})
def build(cfg: MqttSinkConfig, ctx: registry.BuildContext) -> MqttSink:
    need("paho", "mqtt", destination_label(cfg.type, cfg.name))
    return MqttSink(
        cfg.url,
        topic=cfg.topic,
        prefix=cfg.prefix,
        qos=cfg.qos,
        retain=cfg.retain,
        protocol_version=cfg.protocol_version,
        client_id=cfg.client_id,
        username=cfg.username,
        password=secret(cfg.password),
        max_inflight=cfg.max_inflight,
        timeout_s=cfg.timeout_s,
        name=cfg.name or cfg.type,
    )
