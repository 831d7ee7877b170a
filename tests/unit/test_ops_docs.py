"""docs/operations.md, the example alert rules and the Grafana dashboard name only metrics cdc-logs
exports, and the reference describes every metric it exports (names from the Metrics registry)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import promql_parser
import yaml

from cdc_logs.observability.metrics import Metrics

DOCS = Path(__file__).resolve().parents[2] / "docs"
METRIC = re.compile(r"\bcdc_logs_[a-z0-9_]+")


def exported() -> set[str]:
    return Metrics("p").names()


def families() -> set[str]:
    """The names a reader looks up: counters with _total, histograms by their base name."""
    names = exported()
    return {n for n in names if not n.endswith(("_bucket", "_sum", "_count"))} | {
        n[: -len("_bucket")] for n in names if n.endswith("_bucket")
    }


def _check(expr: str, where: str, promql: bool = True) -> None:
    if promql:
        # Grafana's variables stand for a range and a regex: substituted so the parser sees plain PromQL.
        plain = expr.replace("$__rate_interval", "5m").replace("$pipeline", ".*")
        try:
            promql_parser.parse(plain)
        except ValueError as exc:
            raise AssertionError(f"{where}: {expr!r} is not valid PromQL: {exc}") from exc
    found = METRIC.findall(expr)
    assert found, f"{where}: no cdc_logs_* metric in {expr!r}"
    unknown = set(found) - exported()
    assert not unknown, f"{where}: {sorted(unknown)} are not exported (known: {sorted(exported())})"


def test_every_exported_metric_is_prefixed_and_named_by_prometheus_conventions() -> None:
    for name in families():
        assert name.startswith("cdc_logs_"), name
        assert not name.endswith(("_ms", "_millis")), f"{name}: use base units (seconds, bytes)"
    counters = [f.name for f in Metrics("p").registry.collect() if f.type == "counter"]
    assert counters and all((c + "_total") in exported() for c in counters)


def test_the_alert_rules_use_exported_metrics_and_link_the_runbook() -> None:
    rules = yaml.safe_load((DOCS / "ops" / "alerts.yaml").read_text())
    seen = 0
    anchors = _anchors()
    for group in rules["groups"]:
        for rule in group["rules"]:
            _check(rule["expr"], f"alert {rule['alert']}")
            link = rule["annotations"]["runbook"]
            assert link.startswith("docs/operations.md#") and link.split("#")[1] in anchors, link
            seen += 1
    covered = {m for g in rules["groups"] for r in g["rules"] for m in METRIC.findall(r["expr"])}
    for needed in ("cdc_logs_source_lag_seconds", "cdc_logs_heartbeat_age_seconds",
                   "cdc_logs_sink_backlog_events", "cdc_logs_checkpoint_age_seconds"):  # fmt: skip
        assert needed in covered, f"no example alert on {needed}"
    assert seen >= 4


def test_every_grafana_panel_queries_exported_metrics() -> None:
    dashboard: dict[str, Any] = orjson.loads((DOCS / "ops" / "grafana-dashboard.json").read_bytes())
    panels = dashboard["panels"]
    assert panels
    for panel in panels:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            _check(target["expr"], f"panel {panel['title']!r}")
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            _check(variable["definition"], f"variable {variable['name']}", promql=False)  # label_values()


def test_operations_md_describes_every_exported_metric() -> None:
    text = (DOCS / "operations.md").read_text()
    rows = set(re.findall(r"^\| `(cdc_logs_[a-z0-9_]+)` \|", text, re.M))
    assert rows == families(), (sorted(families() - rows), sorted(rows - families()))
    for name in set(METRIC.findall(text)):
        assert name in exported() or name in families(), f"operations.md names {name}, not exported"


def _anchors() -> set[str]:
    text = (DOCS / "operations.md").read_text()
    heads = re.findall(r"^#+ (.+)$", text, re.M)
    return {re.sub(r"[^a-z0-9 _-]", "", h.lower()).replace(" ", "-") for h in heads}


def test_the_docs_link_the_operations_page() -> None:
    root = DOCS.parent
    assert "docs/operations.md" in (root / "README.md").read_text()
    assert "(operations.md)" in (DOCS / "README.md").read_text()
