"""The README's first command, as written, in a fresh venv with no extras (design §6).

A copy of this checkout (its files, not its .venv, .git or server stack) stands in for a fresh clone;
the command from README.md's Quickstart runs in it, the install part as is and `cdc-logs demo` under a
time limit instead of Ctrl-C (then SIGINT, as Ctrl-C sends). In the same base venv: every `--help`
works, the design's drivers import, the optional sink clients are absent, and a destination that needs
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
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = [pytest.mark.install, pytest.mark.timeout(900)]

REPO = Path(__file__).resolve().parents[2]
IGNORED = (".git", ".venv", ".stack", ".cdc-logs", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis")
EVENT_LINE = re.compile(r"^(INSERT|UPDATE|DELETE)\s+main\.users key=\{\"id\":\d+\}$")
# destination -> (its extra, its connection fields); every password is a secret that must not be printed
OPTIONAL = {
    "redis_stream": ("redis", "url: redis://localhost:1/0, password: hunter2"),
    "rabbitmq": ("rabbitmq", "url: 'amqp://u:hunter2@localhost:1/', queue: q"),
    "nats": ("nats", "url: nats://localhost:1, password: hunter2"),
    "mqtt": ("mqtt", "broker: mqtt://localhost:1, password: hunter2"),
    "pulsar": ("pulsar", "service_url: pulsar://localhost:1, topic: t, auth_token: hunter2"),
}
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
    install_s: float

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
def fresh(tmp_path_factory: pytest.TempPathFactory) -> Fresh:
    command = readme_first_command()
    *install, demo = command.split(" && ")
    assert install and demo.endswith("cdc-logs demo"), f"unexpected first command: {command}"
    root = tmp_path_factory.mktemp("fresh") / "cdc-logs"
    shutil.copytree(REPO, root, ignore=shutil.ignore_patterns(*IGNORED), symlinks=True)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}
    started = time.monotonic()
    result = subprocess.run(
        ["bash", "-c", " && ".join(install)], cwd=root, env=env, capture_output=True, text=True, timeout=780
    )
    assert result.returncode == 0, f"{' && '.join(install)} failed:\n{result.stdout}\n{result.stderr}"
    return Fresh(root, demo, env, time.monotonic() - started)


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
    clients = ("redis", "pika", "nats", "paho", "pulsar")
    probe = f"import importlib.util as u; print([m for m in {clients!r} if u.find_spec(m)])"
    assert fresh.python(probe).strip() == "[]", "a sink client came in with the base install"


@pytest.mark.parametrize("command", ["config validate", "run"])
def test_missing_sink_client_is_one_line_naming_the_extra(fresh: Fresh, command: str, tmp_path: Path) -> None:
    types = list(OPTIONAL) if command == "config validate" else ["redis_stream"]
    for type_ in types:
        extra, fields = OPTIONAL[type_]
        config = tmp_path / f"{type_}.yaml"
        config.write_text(
            f"name: needs-{extra}\nsource: {{type: sqlite, path: app.db, tables: [users]}}\n"
            f"destinations:\n  - {{type: {type_}, {fields}}}\n"
        )
        result = fresh.run(*command.split(), "-c", str(config), cwd=tmp_path)
        assert result.returncode == 2, (type_, result.stdout, result.stderr)
        naming = [line for line in result.stderr.splitlines() if f"cdc-logs[{extra}]" in line]
        assert naming == [f"  fix: pip install 'cdc-logs[{extra}]'"], result.stderr
        assert result.stderr.startswith("error: config: ") and "is not installed" in result.stderr
        assert "Traceback" not in result.stderr and "hunter2" not in result.stderr + result.stdout
        assert not (tmp_path / "app.db").exists(), "nothing may be touched before the config is refused"
