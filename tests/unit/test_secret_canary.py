"""The secret canary: no command ever shows a credential it was given, whatever goes wrong.

Every command of the CLI (found by walking the typer app, so a new command is covered or fails here)
runs with a canary password in every credential position it accepts (options, their environment
variables, pipeline and connectors files: every source, destination and offset-store type), with valid
values (unreachable servers; a hostile HTTP server that echoes the credentials it receives; the
stack's servers with a wrong password, when `scripts/stack env` is exported) and malformed ones
(unparseable DSN, bad port, bad scheme, unencoded `/` or `@` in the password, unterminated quotes),
in both log formats, with and without `--debug`. The canary must never appear on stdout, on stderr,
in a file the command wrote (dead letters, offsets, spool), or in an HTTP response of `run`.

The invocations are listed in canary_cases.py; canary_runner.py runs them (forked from one process
that imported cdc_logs once, so well over a thousand invocations take well under a minute), and a
sample also runs as real `python -m cdc_logs` processes to show the forked runs behave the same.
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.unit import canary_cases as cc
from tests.unit.canary_cases import CANARY, MODE_PAIRS, MODES, Case

REPO = Path(__file__).resolve().parents[2]
RUNNER = Path(__file__).with_name("canary_runner.py")
_LOG_LINE = re.compile(r'^(\d{4}-\d\d-\d\d[T ]|\{")')


# -- the hostile server ----------------------------------------------------------------------------
class Hostile(BaseHTTPRequestHandler):
    """Kafka Connect, a webhook receiver and OpenSearch at once, all of them hostile: every answer
    quotes the credentials of the request, and the connector configs it serves hold secrets."""

    def _credentials(self) -> str:
        auth = self.headers.get("Authorization", "")
        if auth.lower().startswith("basic "):
            return base64.b64decode(auth[6:]).decode(errors="replace")
        return auth

    def _send(self, status: int, body: Any) -> None:
        data = orjson.dumps(body)
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode(errors="replace") if length else ""
        echo = f"credentials {self._credentials()!r} for {self.path}; you sent {body[:500]}"
        path = self.path.split("?")[0]
        config = {**cc.CONNECTOR_CONFIG, "sasl.jaas.config": cc.JAAS, "name": "inventory"}
        trace = f"org.postgresql.util.PSQLException: FATAL at jdbc:postgresql://cdc:{CANARY}@db:5432/x {echo}"
        status = {
            "name": "inventory",
            "connector": {"state": "FAILED", "worker_id": "w", "trace": trace},
            "tasks": [{"id": 0, "state": "FAILED", "worker_id": "w", "trace": trace}],
        }
        if self.command == "GET" and path == "/connectors":
            self._send(200, {"inventory": {"status": status, "info": {"config": config}}})
        elif self.command == "GET" and path == "/connectors/inventory/status":
            self._send(200, status)
        elif self.command == "GET" and path == "/connectors/inventory/config":
            self._send(200, config)
        elif self.command == "PUT" and path.endswith("/config/validate"):
            errors = [f"Invalid value {CANARY} for configuration database.password: {echo}"]
            value = {"name": "database.password", "value": CANARY, "errors": errors}
            self._send(200, {"name": "x", "error_count": 1, "configs": [{"value": value}]})
        elif self.command == "GET" and path == "/connectors/inventory/offsets":
            self._send(200, {"offsets": [{"partition": {"server": "canary"}, "offset": {"note": echo}}]})
        elif path in ("/", "/connector-plugins"):
            self._send(200, [{"class": echo, "type": "source", "version": "1"}] if "plugins" in path else {})
        else:  # everything else is refused, quoting what was sent (the webhook, OpenSearch, writes)
            self._send(400 if path == "/hook" else 401, {"error_code": 401, "message": echo, "error": echo})

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _answer

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture(scope="module")
def hostile() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hostile)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


# -- running ---------------------------------------------------------------------------------------
def _source_db(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        conn.executemany("INSERT INTO t (id, v) VALUES (?, ?)", [(1, "a"), (2, "b")])


def _jobs(
    cases: list[Case], workdir: Path, template_db: Path, modes: tuple[str, ...] = ()
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    jobs, index = [], {}
    for n, case in enumerate(cases):
        for mode in modes or MODE_PAIRS[n % 2]:
            options = MODES[mode]
            job_id = f"{n}-{mode}"
            cwd = workdir / job_id
            cwd.mkdir(parents=True)
            for name, content in case.files.items():
                (cwd / name).write_text(content)
            shutil.copy(template_db, cwd / "source.db")
            env = {"COLUMNS": "300", "NO_COLOR": "1", "CDC_LOG_LEVEL": "debug" if "debug" in mode else None}
            for var in (
                "CDC_DSN",
                "CDC_CONNECT_URL",
                "CDC_CONNECT_USER",
                "CDC_CONNECT_PASSWORD",
                "CDC_KAFKA_BOOTSTRAP",
            ):
                env[var] = None
            env.update(case.env)
            jobs.append(
                {
                    "id": job_id,
                    "argv": [*options, *case.argv],
                    "env": env,
                    "cwd": str(cwd),
                    "timeout": case.timeout,
                }
            )
            index[job_id] = (case, mode, cwd)
    return jobs, index


def run_forked(jobs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, str(RUNNER)],
        input=orjson.dumps(jobs),
        capture_output=True,
        cwd=REPO,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    results = [orjson.loads(line) for line in proc.stdout.splitlines()]
    return {r["id"]: r for r in results}


def leaks(text: str) -> bool:
    """The canary in `text`, also when a renderer wrapped it across lines or boxed it."""
    squashed = re.sub(r"[\s│┃|╭╮╰╯─]+", "", text)
    return CANARY in text or CANARY in squashed


def _written(cwd: Path, inputs: set[str]) -> Iterator[tuple[str, bytes]]:
    """The files a run wrote (dead letters, logs, its output), but not the offset store: it keys
    positions by the source's name, which must stay exact to resume (a name is not a credential field;
    the named-after-a-DSN case checks every printed name instead)."""
    for path in sorted(cwd.rglob("*")):
        rel = str(path.relative_to(cwd))
        if path.is_file() and rel not in inputs and ".offsets." not in path.name:
            yield rel, path.read_bytes()


def _all_cases(ctx: cc.Context) -> list[Case]:
    return [case for path in sorted(cc.command_paths()) for case in cc.BUILDERS[path](ctx)]


# -- the tests -------------------------------------------------------------------------------------
def test_every_command_and_credential_position_has_invocations(hostile: str) -> None:
    ctx = cc.Context(hostile)
    commands = cc.command_paths()
    assert ("debezium", "connectors", "offsets", "get") in commands  # nested groups are walked
    missing = sorted(" ".join(p) for p in commands if p not in cc.BUILDERS)
    assert not missing, f"commands without canary invocations (add them to canary_cases.py): {missing}"
    for path, positions in commands.items():
        covered = {pos for case in cc.BUILDERS[path](ctx) for pos in case.covers}
        assert positions <= covered, f"{' '.join(path)}: uncovered credential positions {positions - covered}"
    assert not set(cc.BUILDERS) - set(commands), "builders for commands that no longer exist"


def test_every_config_type_and_credential_field_has_configs(hostile: str) -> None:
    names = {name.split("-")[0] for name, _ in cc.config_cases(cc.Context(hostile))}
    for key, model in cc.config_models().items():
        for field_name in cc.credential_fields(model):
            assert f"{key}.{field_name}" in names, f"{key}.{field_name} has no canary config"
    assert {"postgresql.dsn", "mysql.password", "kafka.sasl_password", "http.secret", "offsets.dsn"} <= names


def test_leak_detection_sees_wrapped_and_boxed_text() -> None:
    assert leaks(f"x {CANARY} y")
    assert leaks(f"│ ... password={CANARY[:5]}\n│ {CANARY[5:]} │")
    assert not leaks("password=*** and Kq7 Canary")


def test_the_canary_never_leaks(hostile: str, tmp_path: Path) -> None:
    ctx = cc.Context(hostile)
    cases = _all_cases(ctx)
    template_db = tmp_path / "template.db"
    _source_db(template_db)
    jobs, index = _jobs(cases, tmp_path / "jobs", template_db)
    started = time.monotonic()
    results = run_forked(jobs)
    elapsed = time.monotonic() - started
    assert set(results) == set(index)
    found = []
    for job_id, result in sorted(results.items()):
        case, mode, cwd = index[job_id]
        where = [name for name in ("stdout", "stderr") if leaks(result[name])]
        inputs = {*case.files, "source.db"}
        where += [rel for rel, data in _written(cwd, inputs) if CANARY.encode() in data]
        if where:
            text = result["stderr"] if "stderr" in where else result["stdout"]
            excerpt = text[max(0, text.find(CANARY[:6]) - 300) :][:600]
            found.append(f"{case.name} [{mode}] rc={result['rc']} in {where}: {excerpt!r}")
        assert "Traceback" not in result["stderr"] or "debug" in mode, (
            case.name,
            mode,
            result["stderr"][-2000:],
        )
    assert not found, f"{len(found)} of {len(results)} runs leaked the canary:\n" + "\n".join(found[:40])
    print(f"\n{len(cases)} invocations, {len(results)} runs in {elapsed:.1f} s")


def test_forked_runs_match_real_processes(hostile: str, tmp_path: Path) -> None:
    """A sample of the same invocations as real `python -m cdc_logs` processes: same exit code, same
    stderr, no canary (so the forked runner hides nothing)."""
    ctx = cc.Context(hostile)
    by_command: dict[str, Case] = {}  # the first case of each command group, one that ends by itself
    for case in _all_cases(ctx):
        if case.timeout >= 8 and case.argv[0] != "demo":  # demo's output depends on timing
            by_command.setdefault(" ".join(case.argv[:2]), case)
    sample = list(by_command.values())[:12]
    assert len(sample) >= 10
    template_db = tmp_path / "template.db"
    _source_db(template_db)
    jobs, _ = _jobs(sample, tmp_path / "jobs", template_db, modes=("console-debug",))
    forked = run_forked(jobs)

    def real(job: dict[str, Any]) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in {**os.environ, **job["env"]}.items() if v is not None}
        return subprocess.run(
            [sys.executable, "-m", "cdc_logs", *job["argv"]],
            capture_output=True,
            text=True,
            cwd=job["cwd"],
            env={**env, "PYTHONPATH": str(REPO)},
            timeout=job["timeout"] + 20,
        )

    with ThreadPoolExecutor(max_workers=4) as pool:
        reals = list(pool.map(real, jobs))
    for job, result in zip(jobs, reals, strict=True):
        assert not leaks(result.stdout + result.stderr), (job["argv"], result.stderr)
        ours = forked[job["id"]]
        if not ours["timed_out"]:
            assert result.returncode == ours["rc"], (job["argv"], result.stderr, ours["stderr"])
            assert _stable(result.stderr) == _stable(ours["stderr"]), job["argv"]


def _stable(text: str) -> str:
    """Output without what differs between two runs: log lines (how many retries fit in the time
    depends on the load), timestamps, random names, numbers."""
    text = "".join(line for line in text.splitlines(keepends=True) if not _LOG_LINE.match(line))
    text = re.sub(r"\d{4}-\d\d-\d\dT[\d:.]+Z?", "T", text)
    text = re.sub(r"[0-9a-f]{16,}", "H", text)  # random ids (a temporary database's identity)
    text = re.sub(r"\d+(\.\d+)?", "N", text)
    return re.sub(r'File "<frozen runpy>".*\n.*\n', "", text)


def test_metrics_and_health_responses_never_show_a_secret(tmp_path: Path) -> None:
    """`run --http-port`: metric labels come from configured names; a name may be a URL with a password."""
    _source_db(tmp_path / "source.db")
    name = f"redis://:{CANARY}@cache:6379/0"
    config = {
        "name": "canary",
        "source": {**cc.SQLITE_SOURCE, "name": name},
        "destination": {"type": "file", "path": "out.jsonl", "name": f"https://u:{CANARY}@hook/x"},
        "sync": {"mode": "continuous"},
    }
    (tmp_path / "p.yaml").write_text(cc.config_yaml(config))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "cdc_logs",
            "--log-format",
            "json",
            "run",
            "-c",
            "p.yaml",
            "--http-port",
            str(port),
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    bodies = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (tmp_path / "out.jsonl").exists():
            time.sleep(0.1)
        time.sleep(0.5)
        for path in ("/metrics", "/health", "/ready", "/nope"):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
                    bodies.append(resp.read().decode())
            except urllib.error.HTTPError as exc:
                bodies.append(exc.read().decode())
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert "cdc_logs_events_total" in bodies[0]
    assert 'source="redis://:***@cache:6379/0"' in bodies[0]
    for text in (*bodies, out, err):
        assert not leaks(text), text[-2000:]
