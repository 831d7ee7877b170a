"""Run many `cdc-logs` invocations fast: import cdc_logs once, then fork one child per invocation.

Used by test_secret_canary.py, which needs well over a thousand invocations (every command x every
credential position x valid/malformed x log format x --debug). A fresh `python -m cdc_logs` spends
~0.4 s importing; a forked child of a process that imported everything starts in milliseconds. Each
child does what `python -m cdc_logs` does: it runs the `cdc_logs.__main__` module with `sys.argv` set,
its stdout and stderr on files, its own environment and working directory. test_secret_canary.py
also runs a sample of the same jobs as real `python -m cdc_logs` processes and checks the outcomes
agree.

Protocol: a JSON list of jobs on stdin ({"id", "argv", "env", "cwd", "timeout"}; `env` values of
null unset a variable), one JSON object per job on stdout ({"id", "rc", "stdout", "stderr",
"timed_out", "seconds", "cpu"}). A job over its timeout gets SIGTERM (as Ctrl-C would, so the shutdown path
runs too), then SIGKILL 3 s later.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import os
import pkgutil
import signal
import sys
import tempfile
import time
from typing import Any

PARALLEL = int(os.environ.get("CANARY_PARALLEL", "24"))


def preload() -> None:
    """Import every cdc_logs module (the commands import theirs lazily) so children start warm."""
    import cdc_logs

    for info in pkgutil.walk_packages(cdc_logs.__path__, "cdc_logs."):
        if info.name.endswith("__main__"):
            continue  # importing it would run the CLI
        with contextlib.suppress(ImportError):  # an optional client that is not installed
            importlib.import_module(info.name)


def child(job: dict[str, Any], out_path: str, err_path: str) -> None:
    """In the forked child: become `python -m cdc_logs <argv>` and never return."""
    code = 1
    try:
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        out = os.open(out_path, os.O_WRONLY | os.O_TRUNC)
        err = os.open(err_path, os.O_WRONLY | os.O_TRUNC)
        os.dup2(out, 1)
        os.dup2(err, 2)
        os.setpgid(0, 0)
        for key, value in job["env"].items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        os.chdir(job["cwd"])
        sys.argv = ["cdc-logs", *job["argv"]]
        import runpy

        try:
            runpy.run_module("cdc_logs", run_name="__main__", alter_sys=True)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def run(jobs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    pending = list(reversed(jobs))
    running: dict[int, list[Any]] = {}  # pid -> [job, out_path, err_path, started, terminated]
    results: list[dict[str, Any]] = []
    tmp = tempfile.mkdtemp(prefix="canary-out-")
    while pending or running:
        while pending and len(running) < PARALLEL:
            job = pending.pop()
            out_path = os.path.join(tmp, f"{job['id']}.out")
            err_path = os.path.join(tmp, f"{job['id']}.err")
            for path in (out_path, err_path):
                open(path, "wb").close()
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                child(job, out_path, err_path)
            with contextlib.suppress(OSError):
                os.setpgid(pid, pid)  # also done by the child: whichever runs first
            running[pid] = [job, out_path, err_path, time.monotonic(), False]
        reaped = False
        while running:
            pid, status, usage = os.wait4(-1, os.WNOHANG)
            if pid == 0:
                break
            reaped = True
            job, out_path, err_path, started, terminated = running.pop(pid)
            results.append(_result(job, out_path, err_path, started, terminated, status, usage))
        now = time.monotonic()
        for pid, entry in running.items():
            job, _, _, started, terminated = entry
            if now - started > job["timeout"] + 3:
                _signal(pid, signal.SIGKILL)
            elif now - started > job["timeout"] and not terminated:
                _signal(pid, signal.SIGTERM)
                entry[4] = True
        if not reaped:
            time.sleep(0.01)
    os.rmdir(tmp)
    return results


def _result(
    job: dict[str, Any],
    out_path: str,
    err_path: str,
    started: float,
    terminated: bool,
    status: int,
    usage: Any,
) -> dict[str, Any]:
    with open(out_path, encoding="utf-8", errors="replace") as fh:
        stdout = fh.read()
    with open(err_path, encoding="utf-8", errors="replace") as fh:
        stderr = fh.read()
    os.unlink(out_path)
    os.unlink(err_path)
    return {
        "id": job["id"],
        "rc": os.waitstatus_to_exitcode(status),
        "stdout": stdout,
        "stderr": stderr,
        "timed_out": terminated,
        "seconds": round(time.monotonic() - started, 2),
        "cpu": round(usage.ru_utime + usage.ru_stime, 3),
    }


def _signal(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except OSError:
        with contextlib.suppress(OSError):
            os.kill(pid, sig)


def main() -> None:
    jobs = json.load(sys.stdin)
    preload()
    # Children share the parent's memory copy-on-write; the collector touching every object would copy
    # it all into each child, so the preloaded objects are moved out of its sight.
    gc.collect()
    gc.freeze()
    for result in run(jobs):
        sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
