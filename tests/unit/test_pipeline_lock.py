"""One running pipeline per (offset store, pipeline name): a second `run` is refused naming the pid of
the first; a lock left by `kill -9` is taken over (the kernel released it)."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from cdc_logs.build import lock_pipeline
from cdc_logs.config import OffsetsConfig
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.offsets.lock import FileLock


def test_a_second_holder_is_refused_naming_the_first(tmp_path: Path) -> None:
    cfg = OffsetsConfig(type="sqlite", path=str(tmp_path / "o.db"))
    with lock_pipeline(cfg, "shop"):
        with pytest.raises(CdcError) as info:
            lock_pipeline(cfg, "shop")  # another open file description: flock refuses it too
        err = info.value
        assert err.kind is ErrorKind.LOCKED and err.exit_code == 3
        assert f"pipeline 'shop' is already running: pid {os.getpid()} on " in err.message
        assert "stop it first" in (err.hint or "")
        with lock_pipeline(cfg, "other"):  # another pipeline name on the same store is independent
            pass
    with lock_pipeline(cfg, "shop"):  # released on exit
        pass


def test_the_lock_file_sits_next_to_the_store_and_is_cleared_on_release(tmp_path: Path) -> None:
    cfg = OffsetsConfig(type="file", path=str(tmp_path / "state" / "o.json"))
    path = tmp_path / "state" / "o.json.shop.lock"
    with lock_pipeline(cfg, "shop"):
        holder = orjson.loads(path.read_bytes())
        assert holder["pid"] == os.getpid() and holder["host"] and holder["started"]
    assert path.read_bytes() == b""


def test_a_stale_record_is_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "o.db.shop.lock"
    path.write_bytes(orjson.dumps({"pid": 999_999_999, "host": "gone", "started": "2020-01-01T00:00:00"}))
    lock = FileLock(path, "shop").acquire()  # nobody holds the flock: the record is stale
    try:
        assert orjson.loads(path.read_bytes())["pid"] == os.getpid()
    finally:
        lock.release()


# -- the CLI: two processes ------------------------------------------------------------------------
def _config(tmp_path: Path, name: str = "locked") -> Path:
    db = tmp_path / "app.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT)")
    path = tmp_path / f"{name}.yaml"
    path.write_text(
        f"name: {name}\n"
        f"source: {{type: sqlite, path: {db}, tables: [users]}}\n"
        f"destination: {{type: file, path: {tmp_path / 'out.jsonl'}}}\n"
        f"offsets: {{type: sqlite, path: {tmp_path / 'offsets.db'}}}\n"
    )
    return path


# Other test modules may export a log level; these runs log at the CLI's default (info).
_ENV = {**os.environ, "CDC_LOG_LEVEL": "info", "CDC_LOG_FORMAT": "console"}


def _start(config: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "cdc_logs", "run", "-c", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_ENV,
    )


def _holds(lock: Path, proc: subprocess.Popen[str], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        raw = lock.read_bytes() if lock.exists() else b""
        if raw and orjson.loads(raw)["pid"] == proc.pid:
            return
        time.sleep(0.05)
    raise AssertionError(f"pid {proc.pid} never took {lock}")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cdc_logs", *args], capture_output=True, text=True, timeout=60, env=_ENV
    )


def test_two_runs_of_one_pipeline_and_a_takeover_after_kill_9(tmp_path: Path) -> None:
    config = _config(tmp_path)
    lock = tmp_path / "offsets.db.locked.lock"
    first = _start(config)
    try:
        _holds(lock, first)
        second = _cli("run", "-c", str(config))
        assert second.returncode == 3, second.stderr
        assert second.stderr.startswith(
            f"error: locked: pipeline 'locked' is already running: pid {first.pid} "
        )
        reset = _cli("offsets", "reset", "-y", "-c", str(config))  # would be overwritten by the run
        assert reset.returncode == 3 and f"pid {first.pid}" in reset.stderr
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        third = _start(config)  # the kernel released the dead run's lock
        try:
            _holds(lock, third)
            third.send_signal(signal.SIGTERM)
            _, err = third.communicate(timeout=30)
            assert third.returncode == 0, err
            assert "took over the pipeline lock of a run that did not exit cleanly" in err
            assert f"pid {first.pid}" in err
        finally:
            if third.poll() is None:
                third.kill()
                third.wait()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
