"""iot_aggregation and anomaly_detection (cdc_logs/middleware/): event-time windows, watermark, late
data, percentiles, exact decimals, state restore, and the streaming detectors. Expected values are
computed here independently (brute force over the readings, numpy, statistics)."""

from __future__ import annotations

import random
import statistics
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy
import orjson
import pytest
from structlog.testing import capture_logs

from cdc_logs.build import build_plugins
from cdc_logs.config import PipelineConfig
from cdc_logs.envelope import ChangeEvent, Op, SourceInfo
from cdc_logs.errors import CdcError
from cdc_logs.middleware.anomaly import AnomalyConfig, AnomalyStage
from cdc_logs.middleware.anomaly import build as build_anomaly
from cdc_logs.middleware.iot_aggregation import IotAggregationConfig, IotAggregationStage
from cdc_logs.middleware.iot_aggregation import build as build_agg
from cdc_logs.middleware.windows import percentile, window_starts
from cdc_logs.observability.metrics import Metrics
from cdc_logs.schema import Column, TableSchema
from cdc_logs.stages import StageContext

NUMERIC_SCHEMA = TableSchema(
    "db",
    "public",
    "readings",
    (
        Column("id", "int64", None, "BIGINT", key=True, optional=False),
        Column("sensor", "string", None, "TEXT"),
        Column("t", "int64", None, "BIGINT"),
        Column("v", "string", None, "NUMERIC", 10, 2),
    ),
)


def reading(
    n: int, sensor: str, t: int, v: Any, *, schema: TableSchema | None = None, op: str = "c"
) -> ChangeEvent:
    return ChangeEvent(
        op=Op(op),
        source=SourceInfo("postgresql", "p", "db", "readings", "public", ts_ms=t + 7),
        after={"id": n, "sensor": sensor, "t": t, "v": v},
        key={"id": n},
        ts_ms=t + 9,
        schema=schema,
    )


def agg(
    tmp: Path | None = None,
    state: Any = None,
    dead: Any = None,
    metrics: Metrics | None = None,
    **params: Any,
) -> IotAggregationStage:
    params.setdefault("time_window", "10s")
    params.setdefault("group_by", ["sensor"])
    params.setdefault("fields", ["v"])
    params.setdefault("event_time_field", "t")
    stage = build_agg(IotAggregationConfig(type="iot_aggregation", params=params))
    stage.name = "iot_aggregation"
    stage.open(StageContext("p", state, tmp or Path("."), dead, {"metrics": metrics} if metrics else {}))
    return stage


def rows(events: list[ChangeEvent], table: str = "readings_agg") -> list[dict[str, Any]]:
    return [e.after for e in events if e.source.table == table and e.after is not None]


def stream(seed: int, n: int = 300, sensors: int = 3, disorder: int = 4000) -> list[ChangeEvent]:
    """Readings 1 s apart per step, with bounded disorder (each event up to `disorder` ms early/late)."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        t = 1_000_000 + i * 1000 + rng.randint(-disorder, disorder)
        out.append(reading(i, f"s{rng.randrange(sensors)}", t, round(rng.uniform(-20, 40), 3)))
    return out


def expected_windows(
    events: list[ChangeEvent], size: int, slide: int, lateness: int
) -> tuple[dict[tuple[str, int], list[float]], int]:
    """Brute force: per (sensor, start) the values of the readings not late when they came, and how many
    (reading, window) pairs were late. A window [s, s+size) is closed once max(t) - lateness >= s+size."""
    windows: dict[tuple[str, int], list[float]] = {}
    top: int | None = None
    late = 0
    for e in events:
        row = e.after
        assert row is not None
        t = row["t"]
        late_here = False
        s = (t // slide) * slide
        while s > t - size:
            if top is not None and s + size <= top - lateness:
                late_here = True
            else:
                windows.setdefault((row["sensor"], s), []).append(row["v"])
            s -= slide
        late += late_here
        top = t if top is None else max(top, t)
    assert top is not None
    closed = {k: v for k, v in windows.items() if k[1] + size <= top - lateness}
    return closed, late


@pytest.mark.parametrize(("size", "slide"), [(10_000, 10_000), (10_000, 2_500)])
def test_windows_match_a_brute_force_computation(size: int, slide: int) -> None:
    events = stream(1)
    stage = agg(
        time_window=f"{size}ms",
        slide=f"{slide}ms",
        allowed_lateness="3s",
        aggregation_functions=["avg", "min", "max", "sum", "count", "p50", "p95", "percentile_99"],
    )
    out = stage.process(list(events))
    expected, late = expected_windows(events, size, slide, 3000)
    got = {(r["sensor"], r["window_start"]): r for r in rows(out)}
    assert set(got) == set(expected)
    assert stage.late == late and late > 0  # the disorder (4 s) is beyond the lateness (3 s)
    for k, values in expected.items():
        r = got[k]
        assert r["window_end"] == k[1] + size and r["count"] == len(values)
        assert r["v_min"] == min(values) and r["v_max"] == max(values)
        assert r["v_sum"] == pytest.approx(sum(values)) and r["v_avg"] == pytest.approx(
            statistics.fmean(values)
        )
        for name, p in (("v_p50", 50), ("v_p95", 95), ("v_p99", 99)):
            assert r[name] == pytest.approx(float(numpy.percentile(values, p)))
    assert [e.op for e in out if e.source.table == "readings_agg"] == [Op.CREATE] * len(expected)
    # Raw readings pass through, each aggregate right after the reading that closed its window.
    assert [e for e in out if e.source.table == "readings"] == events


def test_output_does_not_depend_on_batch_boundaries_and_survives_restore(tmp_path: Path) -> None:
    events = stream(2, n=200)
    params: dict[str, Any] = {
        "slide": "5s",
        "allowed_lateness": "2s",
        "aggregation_functions": ["avg", "p95"],
    }
    whole = [e.to_dict() for e in agg(**params).process(list(events))]
    for cut in (1, 7, 64):
        stage, out, i = agg(**params), [], 0
        while i < len(events):
            out += stage.process(events[i : i + cut])
            i += cut
            if i % (cut * 3) == 0:  # restart from the JSON snapshot, as after a crash
                stage = agg(state=orjson.loads(orjson.dumps(stage.snapshot())), **params)
        assert [e.to_dict() for e in out] == whole


@pytest.mark.parametrize("model", [IotAggregationConfig, AnomalyConfig])
def test_output_table_is_checked_when_the_config_is_read(model: Any) -> None:
    kind = "iot_aggregation" if model is IotAggregationConfig else "anomaly_detection"
    base = {"time_window": "5m"} if model is IotAggregationConfig else {}
    for template, message in (
        ("{table}", "source table itself"),
        ("{schema}.{table}", "source table itself"),
        (
            "{tabel}_x",
            r"unknown placeholder\(s\) \['tabel'\]; the allowed ones are \{table\} \{schema\} \{db\}",
        ),
        ("{table", "allowed|write"),
    ):
        with pytest.raises(ValueError, match=message):
            model(type=kind, params={**base, "output_table": template})
    assert model(type=kind, params={**base, "output_table": "{db}_{table}_x"})


def test_absurd_settings_are_refused() -> None:
    for bad, message in (
        ({"time_window": "99999999999999999999d"}, "longer than a year"),
        ({"time_window": "5m", "allowed_lateness": "400d"}, "longer than a year"),
        ({"time_window": "1d", "slide": "1s"}, "86400"),
        ({"time_window": "5m", "update_horizon": "10m"}, "late_data: update"),
    ):
        with pytest.raises(ValueError, match=message):
            IotAggregationConfig(type="iot_aggregation", params=bad)
    assert IotAggregationConfig(type="iot_aggregation", params={"time_window": "1d", "slide": "1m"})
    for bad, message in (
        ({"algorithm": "zscore", "alpha": 0.2}, "alpha is a setting of algorithm ewma"),
        (
            {"algorithm": "ewma", "retrain_every": 5},
            "retrain_every is a setting of algorithm isolation_forest",
        ),
        ({"algorithm": "ewma", "window_size": 5}, "window_size"),
        ({"threshold": float("inf")}, "finite"),
        ({"threshold": float("nan")}, "finite"),
    ):
        with pytest.raises(ValueError, match=message):
            AnomalyConfig(type="anomaly_detection", params=bad)


def test_late_data_policies() -> None:
    on_time = [reading(1, "a", 1_000, 1.0), reading(2, "a", 5_000, 3.0), reading(3, "a", 12_000, 10.0)]
    late = reading(4, "a", 2_000, 100.0)  # window [0, 10s) closed when 12 s arrived (lateness 1 s)
    metrics = Metrics("p")
    dropped = agg(allowed_lateness="1s", metrics=metrics)
    out = dropped.process([*on_time, late])
    assert rows(out) == [
        {
            "sensor": "a",
            "window_start": 0,
            "window_end": 10_000,
            "count": 2,
            "v_avg": 2.0,
            "v_min": 1.0,
            "v_max": 3.0,
        }
    ]
    assert dropped.late == 1 and out[-1] is late  # counted; the reading itself still passes through
    labels = {"pipeline": "p", "middleware": "iot_aggregation", "action": "dropped"}
    assert metrics.registry.get_sample_value("cdc_logs_middleware_late_events_total", labels) == 1

    parked: list[tuple[str, list[ChangeEvent], CdcError]] = []
    dead = agg(
        allowed_lateness="1s", late_data="dead_letter", dead=lambda n, e, err: parked.append((n, e, err))
    )
    dead.process([*on_time, late])
    assert [(n, e) for n, e, _ in parked] == [("iot_aggregation", [late])]
    assert "already closed" in parked[0][2].message
    with pytest.raises(CdcError, match="dead letters"):
        agg(late_data="dead_letter")  # no dead-letter destination: refused at start

    updated = agg(allowed_lateness="1s", late_data="update", update_horizon="10s")
    out = updated.process([*on_time, late])
    final = [e for e in out if e.source.table == "readings_agg"]
    assert [e.op for e in final] == [Op.CREATE, Op.UPDATE]
    assert final[1].before == final[0].after and final[1].after is not None
    assert final[1].after["count"] == 3 and final[1].after["v_max"] == 100.0
    # Past the horizon (the watermark 11 s beyond the window's end): dropped and counted.
    updated.process([reading(5, "a", 32_000, 1.0), reading(6, "a", 3_000, 5.0)])
    assert updated.late == 1


def test_late_update_emits_the_windows_of_a_group_that_was_quiet() -> None:
    # Sensor b uploads its buffer after a's readings moved the table's watermark past b's windows.
    stage = agg(allowed_lateness="1s", late_data="update", update_horizon="30s")
    out = stage.process([reading(1, "a", 1_000, 1.0), reading(2, "a", 25_000, 2.0)])
    assert [r["sensor"] for r in rows(out)] == ["a"]
    buffered = [reading(3, "b", 2_000, 5.0), reading(4, "b", 3_000, 7.0), reading(5, "b", 12_000, 9.0)]
    late = stage.process(buffered)
    got = [
        (e.op, e.after["sensor"], e.after["window_start"], e.after["count"])
        for e in late
        if e.after and e.source.table == "readings_agg"
    ]
    assert got == [
        (Op.CREATE, "b", 0, 1),
        (Op.UPDATE, "b", 0, 2),
        (Op.CREATE, "b", 10_000, 1),
    ]
    assert stage.late == 0


def test_decimals_stay_exact_and_are_typed() -> None:
    values = ["0.10", "0.20", "0.35", "1.05"]
    events = [reading(i, "a", 1000 * i, v, schema=NUMERIC_SCHEMA) for i, v in enumerate(values)]
    events.append(reading(9, "a", 20_000, "0.01", schema=NUMERIC_SCHEMA))
    out = agg(aggregation_functions=["sum", "avg", "min", "max", "p50"]).process(events)
    (event,) = [e for e in out if e.source.table == "readings_agg"]
    assert event.after == {
        "sensor": "a",
        "window_start": 0,
        "window_end": 10_000,
        "count": 4,
        "v_sum": "1.70",
        "v_avg": "0.425",
        "v_min": "0.10",
        "v_max": "1.05",
        "v_p50": "0.275",
    }
    assert event.key == {"sensor": "a", "window_start": 0, "window_end": 10_000}
    assert event.schema is not None
    types = {c.name: (c.type, c.semantic, c.source_type, c.key) for c in event.schema.columns}
    assert types["v_sum"] == ("string", None, "NUMERIC", False)
    assert types["window_start"] == ("int64", "io.debezium.time.Timestamp", "TIMESTAMP", True)
    assert types["sensor"][3] is True and types["count"][0] == "int64"


def test_sums_do_not_overflow_and_infinite_floats_are_null() -> None:
    big = TableSchema(
        "db",
        "public",
        "readings",
        (
            Column("id", "int64", None, "BIGINT", key=True, optional=False),
            Column("sensor", "string", None, "TEXT"),
            Column("t", "int64", None, "BIGINT"),
            Column("v", "int64", None, "BIGINT"),
        ),
    )
    top = 2**63 - 1
    events = [reading(i, "a", i, top, schema=big) for i in range(3)] + [
        reading(9, "a", 20_000, 1, schema=big)
    ]
    (event,) = [
        e
        for e in agg(aggregation_functions=["sum", "max"]).process(events)
        if e.source.table == "readings_agg"
    ]
    assert event.after is not None and event.after["v_sum"] == str(3 * top) and event.after["v_max"] == top
    assert event.schema is not None
    assert {c.name: c.source_type for c in event.schema.columns}["v_sum"] == "NUMERIC"
    floats = [reading(1, "a", 1, 1e308), reading(2, "a", 2, 1e308), reading(3, "a", 20_000, 1.0)]
    with capture_logs() as logs:
        out = agg(aggregation_functions=["sum", "avg", "max"]).process(floats)
    (row,) = rows(out)
    assert row["v_sum"] is None and row["v_avg"] is None and row["v_max"] == 1e308
    assert [e["event"] for e in logs] == [
        "v_sum overflowed a double: emitted as NULL",
        "v_avg overflowed a double: emitted as NULL",
    ]


def test_percentile_is_linear_interpolation() -> None:
    rng = random.Random(5)
    for n in (1, 2, 3, 10, 101):
        data = [rng.uniform(0, 100) for _ in range(n)]
        for p in (0, 50, 95, 99, 100):
            assert percentile(data, Decimal(p)) == pytest.approx(float(numpy.percentile(data, p)))
    assert percentile([Decimal("1"), Decimal("2")], Decimal("99.9")) == Decimal("1.999")


def test_window_starts() -> None:
    assert window_starts(12_345, 10_000, 10_000) == [10_000]
    assert window_starts(12_345, 10_000, 5_000) == [5_000, 10_000]
    assert window_starts(-1, 10_000, 10_000) == [-10_000]


def test_topic_segment_groups_mqtt_readings_and_default_fields() -> None:
    def mqtt(device: str, t: int, temp: float) -> ChangeEvent:
        topic = f"sensors/{device}/temperature"
        return ChangeEvent(
            op=Op.CREATE,
            source=SourceInfo(
                "mqtt", "p", "broker:1883", topic.replace("/", "_"), ts_ms=t, extra={"topic": topic}
            ),
            # `ts`: the source's watermark column (watermark: {column: ts}), the event's source.ts_ms.
            after={"temperature": temp, "unit": "C", "ok": True, "ts": t},
        )

    stage = agg(fields=[], group_by=["$topic.1"], event_time_field=None, time_window="5m")
    out = stage.process([mqtt("d1", 1_000, 20.0), mqtt("d1", 2_000, 22.0), mqtt("d1", 400_000, 1.0)])
    assert rows(out, "sensors_d1_temperature_agg") == [
        {
            "topic_1": "d1",
            "window_start": 0,
            "window_end": 300_000,
            "count": 2,
            "temperature_avg": 21.0,
            "temperature_min": 20.0,
            "temperature_max": 22.0,
        }
    ]
    scorer = detect(fields=[], group_by=["$topic.1"], event_time_field=None)
    scorer.process([mqtt("d1", 1_000, 20.0)])
    assert scorer.kinds == {"broker:1883.sensors_d1_temperature": {"temperature": "float"}}


def test_bad_readings_are_dead_lettered_or_stop() -> None:
    with pytest.raises(CdcError, match="no value in event-time field"):
        agg().process(
            [ChangeEvent(Op.CREATE, SourceInfo("x", "p", "db", "readings"), after={"sensor": "a", "v": 1})]
        )
    parked: list[Any] = []
    stage = agg(dead=lambda n, e, err: parked.append(err.message))
    good, bad = reading(1, "a", 1, 2.0), reading(2, "a", 1, "hot")
    assert stage.process([good, bad]) == [good, bad]  # delivered; only its aggregation is parked
    assert len(parked) == 1 and "not a number" in parked[0] and "itself was delivered" in parked[0]


def test_nan_and_infinity_are_named_as_not_finite() -> None:
    parked: list[str] = []
    stage = agg(dead=lambda n, e, err: parked.append(err.message))
    scorer = detect()
    scorer._dead_letter = lambda n, e, err: parked.append(err.message)
    float_schema = TableSchema(
        "db",
        "public",
        "readings",
        tuple(
            Column(c.name, "float64", None, "DOUBLE PRECISION") if c.name == "v" else c
            for c in NUMERIC_SCHEMA.columns
        ),
    )
    values = ["NaN", "Infinity", "-Infinity", float("nan"), float("inf")]
    events = [reading(i, "a", i, v, schema=float_schema) for i, v in enumerate(values)]
    stage.process(list(events))
    scorer.process(list(events))
    assert len(parked) == 10
    assert all("NaN/Infinity is not a finite number" in m for m in parked), parked


def test_a_null_group_is_a_dead_letter_with_its_reason() -> None:
    parked: list[Any] = []
    events = [reading(1, "a", 1, 2.0), reading(2, None, 2, 3.0), reading(3, "a", 20_000, 1.0)]  # type: ignore[arg-type]
    out = agg(dead=lambda n, e, err: parked.append((e, err.message))).process(list(events))
    assert [r["sensor"] for r in rows(out)] == ["a"] and out[:3] == events
    assert len(parked) == 1 and parked[0][0] == [events[1]]
    assert "group-by field 'sensor' is NULL" in parked[0][1]
    scorer = detect()
    scorer._dead_letter = lambda n, e, err: parked.append((e, err.message))
    assert scorer.process(list(events)) == events and "is NULL" in parked[1][1]


def test_a_misspelled_field_keeps_the_readings_and_logs_the_dead_letters() -> None:
    for bad in ({"group_by": ["$topc.1"]}, {"fields": ["$v"]}, {"event_time_field": "$ts"}):
        with pytest.raises(ValueError, match=r"\$"):
            IotAggregationConfig(type="iot_aggregation", params={"time_window": "5m", **bad})
        with pytest.raises(ValueError, match=r"\$"):
            AnomalyConfig(type="anomaly_detection", params=bad)
    parked: list[Any] = []
    events = [reading(i, "a", i * 1000, 1.0) for i in range(3)]
    with capture_logs() as logs:
        stage = agg(fields=["temprature"], dead=lambda n, e, err: parked.append(err.message))
        assert stage.process(list(events)) == events  # the replica keeps every row
        assert len(parked) == 3 and "no value field 'temprature'" in parked[0]
        scorer = detect(fields=["temprature"])
        scorer._dead_letter = lambda n, e, err: parked.append(err.message)
        assert scorer.process(list(events)) == events
        assert len(parked) == 6
    said = [(entry["event"], entry["total"]) for entry in logs if "total" in entry]
    assert said == [
        ("readings not aggregated, dead-lettered", 1),
        ("readings not aggregated, dead-lettered", 2),
        ("readings not scored, dead-lettered", 1),
        ("readings not scored, dead-lettered", 2),
    ]


def test_the_seed_shape_validates_and_builds(tmp_path: Path) -> None:
    cfg = PipelineConfig.model_validate(
        {
            "source": {
                "type": "mqtt",
                "broker": "mqtt://localhost:1883",
                "topics": ["sensors/+/temperature"],
                "qos": 1,
            },
            "destination": {"type": "stdout"},
            "plugins": {
                "transformers": {
                    "transformers": [
                        {
                            "type": "iot_aggregation",
                            "params": {"time_window": "5m", "aggregation_functions": ["avg", "min", "max"]},
                        },
                        {
                            "type": "anomaly_detection",
                            "params": {"algorithm": "isolation_forest", "threshold": 0.1},
                        },
                    ]
                }
            },
        }
    )
    transforms, stages = build_plugins(cfg)
    assert transforms == [] and [s.name for s in stages] == ["iot_aggregation", "anomaly_detection"]
    for bad in (
        {"time_window": "5 minutes"},
        {"time_window": "5m", "slide": "2m"},
        {"time_window": "5m", "aggregation_functions": ["mode"]},
    ):
        with pytest.raises(ValueError):
            IotAggregationConfig(type="iot_aggregation", params=bad)


# -- anomaly detection ---------------------------------------------------------------------------


def detect(state: Any = None, **params: Any) -> AnomalyStage:
    params.setdefault("fields", ["v"])
    params.setdefault("group_by", ["sensor"])
    params.setdefault("event_time_field", "t")
    stage = build_anomaly(AnomalyConfig(type="anomaly_detection", params=params))
    stage.name = "anomaly_detection"
    stage.open(StageContext("p", state, Path("."), None))
    return stage


def noisy(seed: int, n: int, spikes: dict[int, float]) -> list[ChangeEvent]:
    rng = random.Random(seed)
    return [reading(i, "a", i * 1000, spikes.get(i, 20 + rng.gauss(0, 1))) for i in range(n)]


@pytest.mark.parametrize("algorithm", ["zscore", "ewma", "isolation_forest"])
def test_detectors_find_the_spikes_and_restore_exactly(algorithm: str) -> None:
    events = noisy(3, 160, {60: 45.0, 120: -10.0})
    params: dict[str, Any] = {"algorithm": algorithm, "min_samples": 30}
    forest = algorithm == "isolation_forest"
    if algorithm != "ewma":
        params["window_size"] = 50
    if forest:
        params.update(threshold=0.05, retrain_every=40)
    whole = detect(**params).process(list(events))
    found = [e.after for e in whole if e.source.table == "readings_anomalies" and e.after]
    assert {r["event_time"] for r in found} >= {60_000, 120_000}
    # The spikes, and a few of the gaussian noise's tails (the forest, trained on 50 values with a
    # 5% contamination, calls about that share of normal values anomalous).
    assert len(found) <= (16 if forest else 6)
    assert all(r["method"] == algorithm and r["field"] == "v" and r["sensor"] == "a" for r in found)
    first = detect(**params)
    out = first.process(events[:90])
    second = detect(state=orjson.loads(orjson.dumps(first.snapshot())), **params)
    out += second.process(events[90:])
    assert [e.to_dict() for e in out] == [e.to_dict() for e in whole]


def test_anomalies_of_one_transaction_have_distinct_keys() -> None:
    # One transaction: every row has the same source.ts_ms, the default event time.
    events = [reading(i, "a", 0, 20.0 + (i % 2) * 0.1) for i in range(10)]
    events += [reading(10, "a", 0, 90.0), reading(11, "a", 0, 95.0)]
    out = detect(event_time_field=None, min_samples=10, window_size=20).process(events)
    keys = [orjson.dumps(e.key).decode() for e in out if e.source.table == "readings_anomalies"]
    assert len(keys) == 2 and len(set(keys)) == 2
    assert keys[0].endswith('"source_key":"{\\"id\\":10}"}')


def test_zscore_score_is_the_robust_z_of_the_window() -> None:
    events = noisy(4, 41, {40: 30.0})
    out = detect(algorithm="zscore", window_size=40, min_samples=40).process(events)
    (anomaly,) = [e.after for e in out if e.source.table == "readings_anomalies" and e.after]
    window = [e.after["v"] for e in events[:40] if e.after]
    median = statistics.median(window)
    mad = statistics.median(abs(v - median) for v in window)
    assert anomaly["score"] == pytest.approx(0.6745 * (30.0 - median) / mad)
    assert anomaly["value"] == 30.0 and anomaly["threshold"] == 3.5


def test_ewma_score_against_an_independent_recurrence() -> None:
    values = [10.0, 12.0, 11.0, 13.0, 12.5, 30.0]
    out = detect(algorithm="ewma", alpha=0.5, min_samples=5, threshold=2).process(
        [reading(i, "a", i, v) for i, v in enumerate(values)]
    )
    mean, var = values[0], 0.0
    for v in values[1:5]:
        diff = v - mean
        mean, var = mean + 0.5 * diff, 0.5 * (var + diff * 0.5 * diff)
    (anomaly,) = [e.after for e in out if e.source.table == "readings_anomalies" and e.after]
    assert anomaly["score"] == pytest.approx((30.0 - mean) / var**0.5)


def test_flag_field_marks_readings_and_their_schema() -> None:
    events = [reading(i, "a", i, v, schema=NUMERIC_SCHEMA) for i, v in enumerate(["1.00"] * 12 + ["9.00"])]
    for event in events:
        event.to_json()  # the pipeline sizes batches before the stages run: the cache must not survive
    out = detect(min_samples=10, flag_field="is_anomaly").process(events)
    assert orjson.loads(events[-1].to_json())["after"]["is_anomaly"] is True
    flags = [e.after["is_anomaly"] for e in out if e.source.table == "readings" and e.after]
    assert flags == [False] * 12 + [True]
    assert events[0].schema is not None and events[0].schema.column("is_anomaly") is not None
    (anomaly,) = [e for e in out if e.source.table == "readings_anomalies"]
    assert anomaly.after is not None and anomaly.after["value"] == "9.00" and anomaly.after["score"] is None


def test_flag_field_naming_a_column_is_refused() -> None:
    with pytest.raises(ValueError, match="flag_field"):
        AnomalyConfig(type="anomaly_detection", params={"fields": ["v"], "flag_field": "v"})
    with pytest.raises(CdcError, match="overwrite") as caught:
        detect(flag_field="id").process([reading(1, "a", 1, 2.0)])
    assert caught.value.kind.value == "config"


def test_derived_events_are_not_readings_unless_their_tables_are_named() -> None:
    events = [reading(i, "a", i * 1000, float(i % 3)) for i in range(25)]
    aggregated = agg(time_window="5s").process(events)
    assert all(e.source.extra["middleware"] == "iot_aggregation" for e in aggregated if e not in events)
    scored = detect(min_samples=3, window_size=3)
    out = scored.process(list(aggregated))  # aggregates lack the readings' `t`: taken, they would fail
    assert [e for e in out if e.source.table != "readings_anomalies"] == aggregated
    named = detect(tables=["readings_agg"], fields=["v_avg"], group_by=[], event_time_field="window_start")
    named.process(list(aggregated))
    assert list(named.detectors) == ['["public.readings_agg",[],"v_avg"]']


def test_isolation_forest_without_scikit_learn_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sklearn", None)
    with pytest.raises(CdcError, match=r"cdc-logs\[iot\]"):
        detect(algorithm="isolation_forest")


def test_config_validate_names_the_missing_scikit_learn(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from cdc_logs.cli.config_cmd import validate

    config = tmp_path / "iot.yaml"
    config.write_text(
        "source: {type: sqlite, path: x.db, tables: [t]}\ndestination: {type: stdout}\n"
        "plugins: {transformers: {transformers: [{type: anomaly_detection, params: "
        "{algorithm: isolation_forest}}]}}\n"
    )
    validate(config=config)  # scikit-learn is installed here: ok
    monkeypatch.setitem(sys.modules, "sklearn", None)
    with pytest.raises(CdcError, match=r"cdc-logs\[iot\]"):
        validate(config=config)


def test_aggregates_carry_a_schema_kafka_connect_and_avro_type() -> None:
    import io

    import fastavro

    from cdc_logs.connect_schema import envelope_schema
    from cdc_logs.sinks.avro_schema import avro_datum, connect_to_avro

    events = [reading(i, "a", 1000 * i, v, schema=NUMERIC_SCHEMA) for i, v in enumerate(["1.10", "2.25"])]
    events.append(reading(9, "a", 20_000, "0.01", schema=NUMERIC_SCHEMA))
    out = agg(aggregation_functions=["sum", "avg", "p95"]).process(events)
    (event,) = [e for e in out if e.source.table == "readings_agg"]
    schema = envelope_schema(event)
    after = next(f for f in schema["fields"] if f["field"] == "after")
    fields = {f["field"]: f for f in after["fields"]}
    assert (
        fields["window_start"]["name"] == "io.debezium.time.Timestamp"
        and not fields["window_start"]["optional"]
    )
    assert fields["v_sum"]["type"] == "string" and fields["count"]["type"] == "int64"
    avro = fastavro.parse_schema(connect_to_avro(schema))
    payload = orjson.loads(event.to_json())
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, avro, avro_datum(schema, payload))
    buffer.seek(0)
    decoded = fastavro.schemaless_reader(buffer, avro)
    assert decoded["after"]["v_sum"] == "3.35" and decoded["after"]["window_start"] == 0
