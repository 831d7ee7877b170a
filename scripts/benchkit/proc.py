"""`cdc-logs run` (and `cdc-logs tail`) as a subprocess, as users start them: a YAML file, JSON logs on
stderr, the exit status; the peak RSS (VmHWM) and the current RSS (VmRSS) from /proc.

Not wait4's ru_maxrss: Linux carries the high-water mark of the memory a process had before exec into
it, and Python starts children with vfork, so a child's ru_maxrss is at least the RSS of the bench
process that started it (checked here: a child whose own VmHWM was 11 MB reported 311 MB after its
parent had touched 300 MB). That made the big transaction's peak read ~290 MB whenever earlier cases
had grown the bench process. VmHWM belongs to the process's own memory after exec; it is sampled
every 20 ms while the process lives, and never decreases, so the last sample is the peak up to then.
A child process of the run (the Postgres reader's decode process) counts too: its own peak is added.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from benchkit.cleanup import Cleanup
from benchkit.stack import child_pids

ROOT = Path(__file__).resolve().parents[2]


def child_env(**extra: str) -> dict[str, str]:
    """The bench's environment (the stack's variables), cdc_logs imported from this checkout, JSON logs."""
    path = os.environ.get("PYTHONPATH", "")
    return {
        **os.environ,
        "PYTHONPATH": f"{ROOT}{os.pathsep}{path}" if path else str(ROOT),
        "CDC_LOG_FORMAT": "json",
        "CDC_LOG_LEVEL": "info",
        **extra,
    }


@dataclass
class Finished:
    returncode: int
    spawned_at: float  # Unix time just before the process was started
    ended_at: float
    peak_rss_mb: float
    logs: list[dict[str, Any]] = field(default_factory=list)

    def log(self, event: str) -> dict[str, Any] | None:
        return next((entry for entry in self.logs if entry.get("event") == event), None)


class CdcRun:
    """`python -m cdc_logs run -c <dir>/pipeline.yaml [--limit N]`, started in `workdir` (its .cdc-logs/
    state, spool and offsets land there and go with it)."""

    def __init__(
        self, cleanup: Cleanup, workdir: Path, config: dict[str, Any], limit: int | None = None
    ) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "pipeline.yaml"
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        cmd = [sys.executable, "-m", "cdc_logs", "run", "-c", str(self.config_path)]
        if limit:
            cmd += ["--limit", str(limit)]
        self.logs: list[dict[str, Any]] = []
        self._stderr_tail: list[str] = []
        self.spawned_at = time.time()
        self.proc = subprocess.Popen(
            cmd, cwd=workdir, env=child_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        self._reader = threading.Thread(target=self._read_logs, daemon=True)
        self._reader.start()
        self._hwm_kb = 0
        self._sampler = threading.Thread(target=self._sample_hwm, daemon=True)
        self._sampler.start()
        self._done: Finished | None = None
        cleanup.add(f"cdc-logs run pid {self.proc.pid}", self.kill)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read_logs(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            try:
                self.logs.append(json.loads(line))
            except ValueError:
                self._stderr_tail = [*self._stderr_tail[-40:], line.rstrip()]

    def _sample_hwm(self) -> None:
        # The run's peak plus its children's (the Postgres decode process): each one's own VmHWM, summed,
        # an upper bound of what the two held at once.
        children: dict[int, int] = {}
        while self.proc.returncode is None:
            own = _hwm_kb(self.proc.pid)
            if own is None:
                return  # exited: a zombie has no memory left to report
            for child in child_pids(self.proc.pid):
                children[child] = max(children.get(child, 0), _hwm_kb(child) or 0)
            self._hwm_kb = max(self._hwm_kb, own + sum(children.values()))
            time.sleep(0.02)

    def alive(self) -> None:
        """Raises when the process has ended (for a run that should keep going)."""
        if self._done is None and self.proc.poll() is not None:
            self._done = Finished(self.proc.returncode, self.spawned_at, time.time(), 0.0, self.logs)
            raise RuntimeError(f"cdc-logs run ended early with {self.proc.returncode}: {self.errors()}")

    def errors(self) -> list[Any]:
        return [e for e in self.logs if e.get("level") in ("error", "critical", "warning")][
            -5:
        ] + self._stderr_tail[-10:]

    def stop(self) -> None:
        """SIGTERM: a graceful stop (the batch in flight is written and committed)."""
        # os.kill, not Popen.send_signal: that polls, and a poll may reap the child before wait4
        # gets its rusage.
        if self._done is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)

    def wait(self, timeout: float) -> Finished:
        """Wait for the exit (killing it after `timeout`), with the peak RSS the kernel recorded."""
        if self._done:
            return self._done
        deadline = time.monotonic() + timeout
        status, usage = 0, None
        while True:
            pid, status, usage = os.wait4(self.proc.pid, os.WNOHANG)  # WNOHANG: (0, 0, zeroed rusage)
            if pid:
                break
            if time.monotonic() > deadline:
                os.kill(self.proc.pid, signal.SIGKILL)
                _pid, status, usage = os.wait4(self.proc.pid, 0)
                break
            time.sleep(0.02)
        ended = time.time()
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        self._reader.join(5)
        self._sampler.join(5)
        del usage  # its ru_maxrss includes this process's own memory (see the module docstring)
        self._done = Finished(self.proc.returncode, self.spawned_at, ended, self._hwm_kb / 1024, self.logs)
        return self._done

    def check(self, finished: Finished, what: str) -> Finished:
        if finished.returncode != 0:
            errors = [e for e in finished.logs if e.get("level") in ("error", "critical")]
            raise RuntimeError(
                f"{what}: cdc-logs run exited {finished.returncode}: {errors[-3:]} {self._stderr_tail[-10:]}"
            )
        return finished

    def kill(self) -> None:
        if self._done is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)
            self.wait(10)


def _hwm_kb(pid: int) -> int | None:
    """A process's VmHWM in kB; None once it has ended."""
    try:
        with open(f"/proc/{pid}/status") as status:
            text = status.read()
    except OSError:
        return None  # ended (or reaped)
    if "Z (zombie)" in text or "VmHWM:" not in text:
        return None
    return int(text.split("VmHWM:")[1].split()[0])


class FirstWrite:
    """Polls a file every 5 ms from this process and keeps the Unix time it first held data: when a
    file sink's first batch landed. (Its last write is the file's mtime once the run ended.)"""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.at: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                if self.path.stat().st_size > 0:
                    self.at = time.time()
                    return
            except FileNotFoundError:
                pass
            time.sleep(0.005)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
