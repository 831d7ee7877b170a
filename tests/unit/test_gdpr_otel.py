"""Issue 17 parts 4 and 5, the parts that need no server: the seed's shapes of `gdpr_compliance`,
`opentelemetry` and `prometheus_metrics`, their config errors, retention.py's file and record pruning
(with a writer appending meanwhile), and tracing's sampling. The pipeline runs against Postgres are in
tests/integration/test_gdpr_otel_live.py."""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import os
import re
import sys
import threading
import time
from pathlib import Path

import orjson
import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from cdc_logs.build import build_transform, make_pipeline, retention
from cdc_logs.config import transform_config
from cdc_logs.configfile import load_config
from cdc_logs.deadletter import DeadLetterRecord, DeadLetterWriter, refused
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.metrics import Metrics
from cdc_logs.observability.redact import redact
from cdc_logs.observability.status import PipelineStatus
from cdc_logs.observability.tracing import BatchTracer, TracingSettings
from cdc_logs.retention import Retention
from cdc_logs.transforms.mask import MaskTransform
from tests.helpers import make_event

DAY = 86_400


def _load(tmp_path: Path, plugins: str, extra: str = "") -> object:
    path = tmp_path / "p.yaml"
    path.write_text(
        f"""
name: t
source: {{type: sqlite, path: {tmp_path / "a.db"}, tables: [users]}}
destination: {{type: stdout}}
plugins:
  middleware:
    middleware:
{plugins}
{extra}
"""
    )
    return load_config(path)


def _error(tmp_path: Path, plugins: str, extra: str = "") -> str:
    with pytest.raises(CdcError) as info:
        _load(tmp_path, plugins, extra)
    assert info.value.kind is ErrorKind.CONFIG
    return info.value.message


# -- prometheus_metrics ------------------------------------------------------------------------------
SEED_METRICS = """
      - type: prometheus_metrics
        params:
          metrics_port: 9090
          custom_metrics:
            - name: "records_processed_total"
              type: "counter"
            - name: "processing_latency_seconds"
              type: "histogram"
"""


def test_prometheus_metrics_serves_the_endpoint_on_metrics_port(tmp_path: Path) -> None:
    cfg = _load(tmp_path, SEED_METRICS)
    assert cfg.health_checks.enabled and cfg.health_checks.port == 9090  # type: ignore[attr-defined]
    same = _load(tmp_path, SEED_METRICS, "health_checks: {enabled: true, port: 9090}")
    assert same.health_checks.port == 9090  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("plugins", "extra", "fragment"),
    [
        (SEED_METRICS, "health_checks: {enabled: true, port: 8080}",
         "prometheus_metrics.metrics_port 9090 and health_checks.port 8080 differ"),
        (SEED_METRICS, "health_checks: {enabled: false}", "but health_checks.enabled is false"),
        ("      - {type: prometheus_metrics, params: {custom_metrics: [{name: rows_total, type: counter}]}}",
         "",
         "custom metric 'rows_total' is not one cdc-logs has; available: records_processed_total (counter: "
         "cdc_logs_events_total), processing_latency_seconds (histogram: cdc_logs_batch_write_seconds)"),
        ("      - {type: prometheus_metrics, params: {custom_metrics: [{name: records_processed_total, "
         "type: gauge}]}}", "", "custom metric 'records_processed_total' is a counter, not a gauge"),
        ("      - {type: prometheus_metrics}\n      - {type: prometheus_metrics}", "",
         "prometheus_metrics given more than once"),
    ],
)  # fmt: skip
def test_prometheus_metrics_config_errors(tmp_path: Path, plugins: str, extra: str, fragment: str) -> None:
    assert fragment in _error(tmp_path, plugins, extra)


def test_custom_metrics_are_served_as_copies_of_the_cdc_logs_metrics() -> None:
    option = build_transform(
        transform_config(
            {
                "type": "prometheus_metrics",
                "params": {
                    "custom_metrics": [
                        {"name": "records_processed_total", "type": "counter"},
                        {"name": "processing_latency_seconds", "type": "histogram"},
                    ]
                },
            }
        )
    )
    metrics = Metrics("p")
    option.expose(metrics)  # type: ignore[attr-defined]
    option.expose(metrics)  # type: ignore[attr-defined]  # a cron run builds again: registered once
    metrics.events_read({("pg", "public.users", "c"): 7, ("pg", "public.users", "u"): 2})
    metrics.batch_written(9, 0.03)
    text = metrics.render().decode()
    labels = 'op="c",pipeline="p",source="pg",table="public.users"'
    assert f"cdc_logs_events_total{{{labels}}} 7.0" in text
    assert f"records_processed_total{{{labels}}} 7.0" in text
    assert "# TYPE records_processed_total counter" in text
    assert "# TYPE processing_latency_seconds histogram" in text
    assert 'processing_latency_seconds_count{pipeline="p"} 1.0' in text
    assert 'processing_latency_seconds_bucket{le="0.05",pipeline="p"} 1.0' in text


# -- opentelemetry -------------------------------------------------------------------------------------
SEED_TRACING = """
      - type: opentelemetry
        params:
          service_name: "evolvishub-cdc"
          jaeger_endpoint: "http://jaeger:14268/api/traces"
          trace_sampling_rate: 0.1
"""


def test_the_seed_tracing_example_is_accepted_with_its_names(tmp_path: Path) -> None:
    cfg = _load(tmp_path, SEED_TRACING)
    option = build_transform(cfg.plugins.middleware[0])  # type: ignore[attr-defined]
    assert option.settings == TracingSettings(  # type: ignore[attr-defined]
        "evolvishub-cdc", "http://jaeger:14268/api/traces", 0.1
    )
    bare = build_transform(
        transform_config({"type": "opentelemetry", "params": {"endpoint": "http://c:4318/"}})
    )
    assert bare.settings.endpoint == "http://c:4318/v1/traces"  # type: ignore[attr-defined]


def test_jaegers_thrift_endpoint_and_a_missing_salt_are_warned_about(tmp_path: Path) -> None:
    gdpr = "      - {type: gdpr_compliance, params: {pii_fields: [email], retention_period_days: 365}}"
    notes = _load(tmp_path, SEED_TRACING + gdpr).warnings()  # type: ignore[attr-defined]
    assert len(notes) == 2
    assert "Jaeger takes OTLP/HTTP on port 4318 at /v1/traces" in notes[0]
    assert "gdpr_compliance hashes without a salt" in notes[1]
    salted = "      - {type: gdpr_compliance, params: {pii_fields: [email], salt: s3cret-salt-x}}"
    assert _load(tmp_path, salted).warnings() == []  # type: ignore[attr-defined]


def test_a_missing_opentelemetry_library_is_a_config_error_naming_the_pip_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "opentelemetry.sdk.trace", None)  # import fails as if not installed
    with pytest.raises(CdcError) as info:
        build_transform(transform_config({"type": "opentelemetry"}))
    assert info.value.kind is ErrorKind.CONFIG
    assert info.value.hint == "pip install 'cdc-logs[otel]'"
    assert "opentelemetry-sdk and opentelemetry-exporter-otlp-proto-http" in info.value.message


def test_tracing_is_off_without_the_middleware_and_never_in_the_event_path(tmp_path: Path) -> None:
    off = make_pipeline(_load(tmp_path, "      - {type: filter, params: {ops: [c]}}"),  # type: ignore[arg-type]
                        metrics=Metrics.disabled(), stop_when_idle=True)  # fmt: skip
    assert off._tracer is None and off._retention is None
    on = make_pipeline(_load(tmp_path, SEED_TRACING), metrics=Metrics.disabled(), stop_when_idle=True)  # type: ignore[arg-type]
    try:
        assert on._tracer is not None and on.transforms == []  # an option, not a transform
    finally:
        on._tracer.close()  # type: ignore[union-attr]


def test_batches_the_sampler_skips_cost_no_span_work_and_an_absent_collector_is_a_warning() -> None:
    events = [make_event(n) for n in range(1, 4)]
    marks = [(n, "src", e.position, True) for n, e in enumerate(events, 1)]
    never = BatchTracer(TracingSettings("s", "http://127.0.0.1:9/v1/traces", 0.0, 0.2), "p", ["out"])
    always = BatchTracer(TracingSettings("s", "http://127.0.0.1:9/v1/traces", 1.0, 0.2), "p", ["out"])
    with capture_logs() as logs:
        try:
            for tracer in (never, always):
                tracer.batch_started(time.monotonic(), events, marks)
            assert not never._open and len(always._open) == 1
            always.batch_durable(2)
            assert len(always._open) == 1  # not every change of the batch is durable yet
            always.batch_durable(3)
            assert not always._open
        finally:
            never.close()
            always.close()  # exports the one span: nothing listens on port 9
    dropped = [e for e in logs if e["event"].startswith("tracing: the collector did not take the spans")]
    assert len(dropped) == 1 and dropped[0]["spans_dropped_so_far"] == 1, logs


def test_the_sdks_own_log_lines_go_through_cdc_logs_logging_not_bare_stderr(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """An unreachable collector: the OTel SDK's "Transient error ... retrying" / "Failed to export"
    lines must not reach stderr as bare text (outside the JSON log format), nor spell out the endpoint."""
    import logging

    import structlog

    events = [make_event(1)]
    tracer = BatchTracer(TracingSettings("s", "http://127.0.0.1:9/v1/traces", 1.0, 0.5), "p", ["out"])
    assert not logging.getLogger("opentelemetry").propagate  # not to the root / last-resort handler
    wrapper = structlog.get_config()["wrapper_class"]
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG)
    )  # --log-level debug
    try:
        with capture_logs() as logs:
            try:
                tracer.batch_started(time.monotonic(), events, [(1, "src", events[0].position, True)])
            finally:
                tracer.close()
    finally:
        structlog.configure(wrapper_class=wrapper)
    err = capfd.readouterr().err
    assert "spans batch" not in err and "127.0.0.1" not in err, err
    sdk = [e for e in logs if e["event"] == "tracing: opentelemetry sdk"]
    assert sdk and all(e["log_level"] == "debug" for e in sdk), logs
    assert not any("port=9" in e["message"] for e in sdk), sdk


# -- gdpr_compliance -----------------------------------------------------------------------------------
def test_seed_gdpr_example_with_delete_and_drop_as_the_same_strategy(tmp_path: Path) -> None:
    cfg = _load(tmp_path, """
      - type: gdpr_compliance
        params:
          pii_fields: ["email", "phone", "address"]
          anonymization_strategy: "delete"
          retention_period_days: 365
""")  # fmt: skip
    built = build_transform(cfg.plugins.middleware[0])  # type: ignore[attr-defined]
    assert isinstance(built, MaskTransform) and built.retention_days == 365
    params = {"pii_fields": ["email", "phone", "address"], "anonymization_strategy": "drop"}
    drop = build_transform(transform_config({"type": "gdpr_compliance", "params": params}))
    for transform in (built, drop):
        event = make_event(1)
        event.after = {"id": 1, "email": "a@x.org", "phone": "+1 555", "address": "1 Main St", "v": 1}
        result = transform.apply(event)
        assert result is not None and result.after == {"id": 1, "v": 1}


def test_salt_from_a_file_hashes_and_never_reaches_output(tmp_path: Path) -> None:
    salt = "s3cret-salt-from-a-mounted-file"
    (tmp_path / "salt").write_text(salt + "\n")
    params = {"pii_fields": ["v"], "salt_file": str(tmp_path / "salt")}
    transform = build_transform(transform_config({"type": "gdpr_compliance", "params": params}))
    event = transform.apply(make_event(5))
    assert event is not None and event.after is not None
    assert event.after["v"] == hashlib.sha256(f"{salt}5".encode()).hexdigest()
    assert salt not in redact(f"error: the salt is {salt}")
    other = "another-s3cret-salt-from-env"
    config = transform_config({"type": "gdpr_compliance", "params": {"pii_fields": ["v"], "salt": other}})
    assert other not in repr(config) and other not in str(config.model_dump())
    assert other not in redact(f"error: {other}")  # registered when the config is read, before any build


def test_salt_errors(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="give salt or salt_file, not both"):
        transform_config({"type": "mask", "params": {"fields": ["v"], "salt": "x", "salt_file": "/f"}})
    with pytest.raises(CdcError, match=re.escape(f"cannot read the salt file {tmp_path / 'none'}")):
        params = {"fields": ["v"], "salt_file": str(tmp_path / "none")}
        build_transform(transform_config({"type": "mask", "params": params}))


# -- retention.py --------------------------------------------------------------------------------------
def _as_record(n: int, ts_ms: int) -> DeadLetterRecord:
    error = CdcError(ErrorKind.SINK_REJECTED, "refused", "fix")
    return dataclasses.replace(refused("s", make_event(n), error), ts_ms=ts_ms)


def _record(n: int, ts_ms: int) -> bytes:
    return _as_record(n, ts_ms).to_json() + b"\n"


def test_files_older_than_the_retention_go_whole_but_the_newest_and_after_a_hook(tmp_path: Path) -> None:
    now = time.time()
    segments = tmp_path / "audit"
    segments.mkdir()
    ages = {"seg-000001.log": 40, "seg-000002.log": 35, "seg-000003.log": 3, "seg-000004.log": 31}
    for name, days in ages.items():
        path = segments / name
        path.write_text(name)
        os.utime(path, (now - days * DAY, now - days * DAY))
    (segments / "other.txt").write_text("x")
    os.utime(segments / "other.txt", (now - 99 * DAY, now - 99 * DAY))
    seen: list[list[str]] = []
    metrics = Metrics("p")
    retention = Retention(30, metrics=metrics)
    retention.files(
        segments,
        "seg-*.log",
        "audit",
        keep_newest=1,
        before_remove=lambda p: seen.append([x.name for x in p]),
    )
    assert retention.run_once() == {"audit": 3}
    assert seen == [["seg-000001.log", "seg-000002.log", "seg-000004.log"]]
    assert sorted(p.name for p in segments.iterdir()) == ["other.txt", "seg-000003.log"]
    assert (
        'cdc_logs_retention_removed_total{pipeline="p",unit="files",what="audit"} 3.0'
        in metrics.render().decode()
    )
    # the newest is kept even when old (it is the one being appended to)
    os.utime(segments / "seg-000003.log", (now - 50 * DAY, now - 50 * DAY))
    assert retention.run_once() == {"audit": 0}


def test_an_owner_selects_what_is_expired(tmp_path: Path) -> None:
    """The audit log decides itself which segments may go (sealed, contiguous): `expired`."""
    for n in range(4):
        (tmp_path / f"seg{n}").write_text("x")
    asked: list[object] = []

    def select(cutoff: object) -> list[Path]:
        asked.append(cutoff)
        return [tmp_path / "seg0", tmp_path / "seg1"]

    retention = Retention(10, clock=lambda: 1_000 * DAY)
    retention.expired("audit", select)
    assert retention.run_once() == {"audit": 2}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seg2", "seg3"]
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
    assert asked == [epoch + datetime.timedelta(days=990)]  # "now" minus 10 days, as an aware UTC time


def test_a_failing_hook_removes_nothing_and_ready_says_why(tmp_path: Path) -> None:
    old = time.time() - 40 * DAY
    for n in range(3):
        (tmp_path / f"s{n}.log").write_text("x")
        os.utime(tmp_path / f"s{n}.log", (old + n, old + n))

    def refuse(paths: list[Path]) -> None:
        raise OSError("the audit chain could not record the cut")

    status = PipelineStatus()
    retention = Retention(30, status=status)
    retention.files(tmp_path, "s*.log", "audit", before_remove=refuse)
    retention.run_once()
    assert len(list(tmp_path.glob("s*.log"))) == 3
    reasons = status.readiness()[1]
    assert any("retention (pass): the retention pass failed (audit in" in r for r in reasons), reasons


def test_dead_letter_records_are_pruned_while_a_writer_appends(tmp_path: Path) -> None:
    path = tmp_path / "s.deadletter.jsonl"
    now_ms = int(time.time() * 1000)
    old_ms = now_ms - 40 * DAY * 1000
    path.write_bytes(b"".join(_record(n, old_ms) for n in range(200)) + b"not json, cannot be dated\n")
    writer = DeadLetterWriter(path)
    done = threading.Event()

    def append() -> None:
        for n in range(300):
            writer.write([_as_record(1000 + n, now_ms)])
        done.set()

    thread = threading.Thread(target=append)
    retention = Retention(30)
    retention.records(tmp_path, "*.deadletter.jsonl", "dead_letters")
    thread.start()
    removed = 0
    while not done.is_set():
        removed += retention.run_once()["dead_letters"]
    thread.join()
    removed += retention.run_once()["dead_letters"]
    lines = path.read_bytes().splitlines()
    assert removed == 200
    assert b"not json, cannot be dated" in lines
    kept = [orjson.loads(x)["position"] for x in lines if x.startswith(b"{")]
    assert len(kept) == 300 and len({orjson.dumps(k) for k in kept}) == 300  # no append lost


def test_the_pipeline_registers_every_dead_letter_file_and_guards_the_spool(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(f"""
name: shop
sources:
  - {{type: sqlite, name: app, path: {tmp_path / "a.db"}, tables: [users]}}
  - type: kafka
    name: bus
    bootstrap_servers: "localhost:9092"
    topics: [orders]
    dead_letter: {{type: file}}
destinations:
  - {{type: file, name: out, path: {tmp_path / "out.jsonl"}}}
  - type: webhook
    name: hook
    url: "http://127.0.0.1:9/h"
    dead_letter_path: {tmp_path / "hook" / "dl.jsonl"}
sync:
  dead_letters: {{dir: {tmp_path / "dead"}}}
  fanout: {{spool_dir: {tmp_path / "spool"}}}
plugins:
  middleware:
    - type: gdpr_compliance
      params: {{pii_fields: [email], salt: s3cret-salt-x, retention_period_days: 90}}
    - type: gdpr_compliance
      params: {{pii_fields: [phone], salt: s3cret-salt-x, retention_period_days: 30}}
""")  # fmt: skip
    cfg = load_config(path)
    transforms = [build_transform(t) for t in cfg.plugins.all()]
    kept = retention(cfg, transforms, Metrics.disabled(), None)  # type: ignore[arg-type]
    assert kept is not None and kept.days == 30  # the shortest of the entries
    assert sorted(kept.targets) == sorted([
        ("records", tmp_path / "dead", "*.deadletter.jsonl", "dead_letters"),
        ("records", tmp_path / "dead", "*.undecodable.jsonl", "dead_letters"),
        ("records", tmp_path / "hook", "dl.jsonl", "dead_letters"),
        ("records", Path(".cdc-logs"), "shop.bus.dlq.jsonl", "dead_letters"),
        ("guard", tmp_path / "spool" / f"{cfg.name}.spool", "*.pickle", "spool"),
    ])  # fmt: skip
    no_days = "    - {type: gdpr_compliance, params: {pii_fields: [email], salt: s3cret-salt-x}}"
    assert retention(_load(tmp_path, no_days), [], Metrics.disabled(), None) is None  # type: ignore[arg-type]
