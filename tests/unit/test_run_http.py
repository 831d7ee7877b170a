"""`cdc-logs run --http-port`: a port it cannot use is a config error (exit 2), and the health
thresholds come from `health_checks`."""

from __future__ import annotations

import socket
from pathlib import Path

from cdc_logs.cli.run_cmd import health_thresholds
from cdc_logs.configfile import parse_config
from cdc_logs.observability.status import HealthThresholds
from tests.unit.test_cli import _pipeline, cli


def test_run_with_a_port_in_use_exits_2_naming_the_fix(tmp_path: Path) -> None:
    config = _pipeline(tmp_path, mode="continuous")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = cli("run", "-c", str(config), "--http-port", str(port), timeout=60)
    assert result.returncode == 2, result.stderr
    assert f"cannot serve HTTP on 127.0.0.1:{port}: the port is in use" in result.stderr
    assert "fix:" in result.stderr and "Traceback" not in result.stderr


def test_run_with_a_port_out_of_range_exits_2(tmp_path: Path) -> None:
    result = cli("run", "-c", str(_pipeline(tmp_path, mode="continuous")), "--http-port", "70000")
    assert result.returncode == 2, result.stderr
    assert "HTTP port 70000 is out of range" in result.stderr and "Traceback" not in result.stderr


def test_thresholds_come_from_health_checks() -> None:
    base = {"source": {"type": "sqlite", "path": "x.db", "tables": ["t"]}, "destination": {"type": "stdout"}}
    assert health_thresholds(parse_config(base).health_checks) == HealthThresholds(60, 300, 60, 300)
    cfg = parse_config(
        {
            **base,
            "health_checks": {
                "enabled": True,
                "sink_stall_ms": 5000,
                "dead_letter_window_ms": 0,
                "source_stall_ms": 20000,
                "stuck_after_ms": 90000,
            },
        }
    )
    assert health_thresholds(cfg.health_checks) == HealthThresholds(5, 0, 20, 90)
