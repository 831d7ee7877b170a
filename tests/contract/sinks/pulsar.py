"""The Pulsar sink: no broker can run on these machines, so it has no live configuration here.

Why (docs/sinks.md, "pulsar"): no Pulsar server is packaged in Debian, and from Maven Central
`org.apache.pulsar:pulsar-broker` resolves but its own modules `pulsar-websocket` and
`pulsar-cli-utils` are not served, so a standalone broker cannot be assembled. What is tested
instead, without a server: tests/unit/test_pulsar_sink.py (message building, the error mapping, the
real client failing against an unreachable service URL as a transient error).
"""

from __future__ import annotations

from tests.contract.sink_contract import SinkFixture


class Pulsar(SinkFixture):
    sink = "pulsar"
    cannot_run = {
        "pulsar": 'no Pulsar broker can run on these machines (docs/sinks.md, "pulsar"); tested without '
        "a server in tests/unit/test_pulsar_sink.py",
    }
    not_in_matrix = "no Pulsar broker can run on these machines (docs/sinks.md); its encoding is unit-tested"
    examples = {"pulsar": {"service_url": "pulsar://localhost:6650", "topic": "t"}}
