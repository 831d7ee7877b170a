"""The README's first command, as written, in a fresh venv with no extras (the base install users get).

A copy of this checkout (its files, not its .venv, .git or server stack) stands in for a fresh clone;
the command from README.md's Quickstart runs in it, the install part as is and `cdc-logs demo` under a
time limit instead of Ctrl-C (then SIGINT, as Ctrl-C sends). In the same base venv: every `--help`
works, the base install's drivers import, the optional sink clients are absent, and a destination that needs
one fails with exit 2 naming the extra. pip may download from PyPI; its cache is reused.

Select with `pytest -m install`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = [pytest.mark.install, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
IGNORED = (".git", ".venv", ".stack", ".cdc-logs", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis")
EVENT_LINE = re.compile(r"^(INSERT|UPDATE|DELETE)\s+main\.users key=\{\"id\":\d+\}$")
# destination -> (its client's module, its connection fields); each secret in them must never be printed
OPTIONAL = {
    "redis_stream": ("redis", "url: redis://localhost:1/0, password: hunter2"),
    "rabbitmq": ("pika", "url: 'amqp://u:hunter2@localhost:1/', queue: q"),
    "nats": ("nats", "url: nats://localhost:1, password: hunter2"),
    "mqtt": ("paho", "broker: mqtt://localhost:1, password: hunter2"),
    "pulsar": ("pulsar", "service_url: pulsar://localhost:1, topic: t, auth_token: hunter2"),
}
EXTRA = {"redis_stream": "redis", "rabbitmq": "rabbitmq", "nats": "nats", "mqtt": "mqtt", "pulsar": "pulsar"}
CORE_MODULES = (
    "psycopg",
    "pymysql",
    "pymysqlreplication",
    "oracledb",
    "pymongo",
    "confluent_kafka",
    "requests",
    "fastavro",
    "sqlalchemy",
    "structlog",
    "prometheus_client",
    "typer",
)

# Run by the fresh venv's python: every command path of the typer app (nested groups included), each
# through the console script's own entry point with `--help`; prints [path, exit code, saw "Usage"].
WALK = """
import contextlib, io, json, sys, typer.main
from cdc_logs.cli.main import app, main
def walk(cmd, path):
    yield path
    for name, sub in sorted(getattr(cmd, "commands", {}).items()):
        yield from walk(sub, [*path, name])
out = []
for path in walk(typer.main.get_command(app), []):
    sys.argv = ["cdc-logs", *path, "--help"]
    text = io.StringIO()
    with contextlib.redirect_stdout(text), contextlib.redirect_stderr(text):
        try:
            main()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
    out.append([path, code, "Usage" in text.getvalue()])
print(json.dumps(out))
"""


def readme_first_command() -> str:
    """The first line of the Quickstart's first bash block in README.md."""
    quickstart = (REPO / "README.md").read_text().split("## Quickstart", 1)[1]
    match = re.search(r"```bash\n(.*?)```", quickstart, re.S)
    assert match, "README.md's Quickstart has no ```bash block"
    return match.group(1).strip().splitlines()[0]


@dataclass
class Fresh:
    root: Path  # the copied checkout, where the README command ran
    demo: str  # the command's last step
    env: dict[str, str]
    clients_after_install: list[str]  # optional sink clients the base install brought (should be none)

    def run(
        self, *args: str, timeout: float = 120, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.root / ".venv/bin/cdc-logs"), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd or self.root,
            env=self.env,
        )

    def python(self, code: str) -> str:
        result = subprocess.run(
            [str(self.root / ".venv/bin/python"), "-c", code],
            capture_output=True,
            text=True,
            timeout=120,
            env=self.env,
        )
        assert result.returncode == 0, result.stderr
        return result.stdout


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fresh]:
    command = readme_first_command()
    *install, demo = command.split(" && ")
    assert install and demo.endswith("cdc-logs demo"), f"unexpected first command: {command}"
    root = tmp_path_factory.mktemp("fresh") / "cdc-logs"
    shutil.copytree(REPO, root, ignore=shutil.ignore_patterns(*IGNORED), symlinks=True)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    result = subprocess.run(
        ["bash", "-c", " && ".join(install)], cwd=root, env=env, capture_output=True, text=True, timeout=780
    )
    assert result.returncode == 0, f"{' && '.join(install)} failed:\n{result.stdout}\n{result.stderr}"
    fresh = Fresh(root, demo, env, [])
    modules = [extra_module for extra_module, _ in OPTIONAL.values()]
    probe = f"import importlib.util as u; print(','.join(m for m in {modules!r} if u.find_spec(m)))"
    fresh.clients_after_install = [m for m in fresh.python(probe).strip().split(",") if m]
    yield fresh
    shutil.rmtree(root, ignore_errors=True)  # a few hundred MB of venv


def test_readme_first_command_runs_the_demo(fresh: Fresh) -> None:
    proc = subprocess.Popen(
        ["bash", "-c", f"exec {fresh.demo}"],
        cwd=fresh.root,
        env=fresh.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    lines: list[str] = []
    seen = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if sum(bool(EVENT_LINE.match(x)) for x in lines) >= 4:
                seen.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        seen.wait(20)  # the time limit in place of Ctrl-C
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    reader.join(5)
    events = [x.split()[0] for x in lines if EVENT_LINE.match(x)]
    assert len(events) >= 4 and {"INSERT", "UPDATE"} <= set(events), "\n".join(lines) + stderr
    assert proc.returncode == 0, f"Ctrl-C should stop the demo cleanly:\n{stderr}"
    assert "Traceback" not in stderr


def test_every_help_works_in_the_base_venv(fresh: Fresh) -> None:
    root = fresh.run("--help")  # the console script itself
    assert root.returncode == 0 and "Usage" in root.stdout, root.stderr
    results = json.loads(fresh.python(WALK))
    paths = [path for path, _, _ in results]
    assert [] in paths and ["debezium", "connectors", "offsets", "get"] in paths and len(paths) >= 30
    failed = [(" ".join(path), code, usage) for path, code, usage in results if code != 0 or not usage]
    assert not failed, failed


def test_drivers_are_core_and_sink_clients_optional(fresh: Fresh) -> None:
    fresh.python(f"import {', '.join(CORE_MODULES)}")
    assert fresh.clients_after_install == [], "a sink client came in with the base install"


def write_config(directory: Path, type_: str) -> Path:
    config = directory / f"{type_}.yaml"
    config.write_text(
        f"name: needs-{EXTRA[type_]}\nsource: {{type: sqlite, path: app.db, tables: [users]}}\n"
        f"destinations:\n  - {{type: {type_}, {OPTIONAL[type_][1]}}}\n"
    )
    return config


def assert_names_the_extra(result: subprocess.CompletedProcess[str], extra: str) -> str:
    """Exit 2, one line naming cdc-logs[extra] (the fix), no traceback, no secret; returns the fix."""
    assert result.returncode == 2, (extra, result.stdout, result.stderr)
    naming = [line for line in result.stderr.splitlines() if f"cdc-logs[{extra}]" in line]
    assert naming == [f"  fix: pip install 'cdc-logs[{extra}]'"], result.stderr
    assert result.stderr.startswith("error: config: ") and "is not installed" in result.stderr
    assert "Traceback" not in result.stderr and "hunter2" not in result.stderr + result.stdout
    return naming[0].split("fix: ", 1)[1]


def test_run_refuses_a_destination_whose_client_is_missing(fresh: Fresh, tmp_path: Path) -> None:
    assert "redis" not in fresh.clients_after_install
    assert_names_the_extra(
        fresh.run("run", "-c", str(write_config(tmp_path, "redis_stream")), cwd=tmp_path), "redis"
    )
    assert not (tmp_path / "app.db").exists(), "nothing may be touched before the config is refused"


# bus source -> its connection fields (each secret in them must never be printed); before the test
# below, which installs the nats extra into the shared venv
SOURCES = {
    "redis_stream": "url: redis://localhost:1/0, password: hunter2, stream_name: s",
    "rabbitmq": "url: 'amqp://u:hunter2@localhost:1/', queue: q",
    "nats": "url: nats://localhost:1, password: hunter2, stream: S",
    "mqtt": "broker: mqtt://localhost:1, password: hunter2, topics: [t]",
    "pulsar": "service_url: pulsar://localhost:1, topic: t, subscription_name: s, auth_token: hunter2",
}


def test_validate_and_run_name_a_bus_source_whose_client_is_missing(fresh: Fresh, tmp_path: Path) -> None:
    for type_, fields in SOURCES.items():
        config = tmp_path / f"source-{type_}.yaml"
        config.write_text(f"source: {{name: bus, type: {type_}, {fields}}}\ndestination: {{type: stdout}}\n")
        commands = [("config", "validate")] + ([("run",)] if type_ == "redis_stream" else [])
        for command in commands:
            result = fresh.run(*command, "-c", str(config), cwd=tmp_path)
            assert_names_the_extra(result, EXTRA[type_])
            assert f"source 'bus' ({type_}) needs the Python package" in result.stderr, (
                command,
                result.stderr,
            )


def test_validate_names_each_missing_extra_and_its_fix_works(fresh: Fresh, tmp_path: Path) -> None:
    fixes = {}
    for type_ in OPTIONAL:
        result = fresh.run("config", "validate", "-c", str(write_config(tmp_path, type_)), cwd=tmp_path)
        fixes[type_] = assert_names_the_extra(result, EXTRA[type_])
    # The fix line, typed as printed in the venv: afterwards the same config validates.
    env = {**fresh.env, "PATH": f"{fresh.root / '.venv/bin'}{os.pathsep}{fresh.env.get('PATH', '')}"}
    fix = subprocess.run(["bash", "-c", fixes["nats"]], env=env, capture_output=True, text=True, timeout=300)
    assert fix.returncode == 0, fix.stderr
    result = fresh.run("config", "validate", "-c", str(tmp_path / "nats.yaml"), cwd=tmp_path)
    assert result.returncode == 0 and result.stdout.startswith("ok: "), result.stderr
