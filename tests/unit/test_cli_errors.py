"""Bad input at the command line: the exit code and the first line of stderr, one case per input.

`CASES` is the table of docs/errors.md (`test_the_doc_table_is_this_case_list` keeps the two equal).
Each case runs `python -m cdc_logs ...` as a user would; in the expected message `…` stands for any
text (a temporary path, a pid). Every case also checks that stderr holds one error (no traceback, no
raw driver lines) and never a password given on the command line or in the config. Cases marked with
a server variable need that server (skipped without it, a failure under CI).

The cases run two at a time (the Connect case waits out its retries, ~15 s), so the module takes
about as long as its slowest case.
"""

from __future__ import annotations

import os
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.integration.conftest import _unavailable, reachable

SECRET = "s3cret-pw"
DOC = Path(__file__).resolve().parents[2] / "docs" / "errors.md"
Setup = Callable[[Path], list[str]]


@dataclass(frozen=True)
class Case:
    id: str
    input: str  # the doc's "bad input" column (Markdown)
    exit: int
    message: str  # the first line of stderr; "…" matches any text
    setup: Setup  # writes what the case needs into a fresh directory, returns the CLI arguments
    needs: str | None = None  # environment variable of a live server
    within_s: float = 20.0  # fail fast: far below any retry loop, above a loaded start-up
    background: bool = False  # setup starts a `run` that holds the pipeline lock (killed afterwards)
    extra: tuple[str, ...] = field(default=())  # more text stderr must contain


def _write(directory: Path, name: str, text: str | bytes) -> str:
    path = directory / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return str(path)


def _sqlite_pipeline(directory: Path, offsets: str = "sqlite", name: str = "p") -> str:
    db = directory / "app.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY, name TEXT)")
    store = directory / ("offsets.db" if offsets == "sqlite" else "offsets.json")
    return _write(
        directory,
        "p.yaml",
        f"name: {name}\n"
        f"source: {{type: sqlite, path: {db}, tables: [users]}}\n"
        f"destination: {{type: file, path: {directory / 'out.jsonl'}}}\n"
        f"sync: {{mode: one_time}}\n"
        f"offsets: {{type: {offsets}, path: {store}}}\n",
    )


def _billion_laughs(directory: Path) -> list[str]:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    lines += [f"{c}: &{c} [{','.join([f'*{p}'] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi", strict=True)]
    return ["config", "validate", "-c", _write(directory, "bomb.yaml", "\n".join(lines) + "\n")]


def _huge(directory: Path) -> list[str]:
    path = directory / "huge.yaml"
    with path.open("wb") as fh:
        fh.truncate(50 * 1024 * 1024)  # sparse
    return ["config", "validate", "-c", str(path)]


def _config(text: str) -> Setup:
    return lambda d: ["config", "validate", "-c", _write(d, "p.yaml", text)]


def _damaged_sqlite_store(directory: Path) -> list[str]:
    config = _sqlite_pipeline(directory)
    _write(directory, "offsets.db", b"garbage\n" * 200)
    return ["run", "-c", config]


def _truncated_file_store(directory: Path) -> list[str]:
    config = _sqlite_pipeline(directory, offsets="file")
    _write(directory, "offsets.json", b'{\n  "p/sqlite": {\n    "position": "{\\"type\\":\\"wat')
    return ["run", "-c", config]


def _second_run(directory: Path) -> list[str]:
    config = _sqlite_pipeline(directory)
    Path(config).write_text(Path(config).read_text().replace("mode: one_time", "mode: continuous"))
    first = subprocess.Popen(
        [sys.executable, "-m", "cdc_logs", "run", "-c", config],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=_ENV,
    )
    _BACKGROUND.append(first)
    lock = directory / "offsets.db.p.lock"
    deadline = time.monotonic() + 30
    while not (lock.exists() and lock.read_bytes()):
        assert first.poll() is None and time.monotonic() < deadline, (
            first.stderr.read() if first.stderr else ""
        )
        time.sleep(0.05)
    return ["run", "-c", config]


def _poll_wrong_password(_directory: Path) -> list[str]:
    dsn = os.environ["CDC_PG_DSN"]  # postgresql://user:password@host:port/db
    url = re.sub(r"^postgresql://([^:@/]+)(:[^@]*)?@", rf"postgresql+psycopg://\1:{SECRET}@", dsn)
    return ["tail", "--source", "poll", "--dsn", url, *_POLL]


_BACKGROUND: list[subprocess.Popen[str]] = []
# Other test modules may export a log level (test_postgres_reader sets CDC_LOG_LEVEL=warning): the
# cases see the CLI's defaults.
_ENV = {**os.environ, "COLUMNS": "200", "CDC_LOG_LEVEL": "info", "CDC_LOG_FORMAT": "console"}
_PG_SOURCE = "source: {{type: pg, dsn: '{dsn}', tables: [public.t]}}\ndestination: {{type: stdout}}\n"
_POLL = ["--table", "t", "--timestamp-column", "u", "--incrementing-column", "id"]

CASES = [
    Case(
        "log-level",
        "`cdc-logs --log-level bogus ...` (or `CDC_LOG_LEVEL=bogus`)",
        2,
        "error: usage: --log-level (or CDC_LOG_LEVEL) must be one of debug, info, warning, error; "
        "got 'bogus'",
        lambda d: ["--log-level", "bogus", "config", "schema"],
    ),
    Case(
        "log-format",
        "`cdc-logs --log-format xml ...`",
        2,
        "error: usage: --log-format (or CDC_LOG_FORMAT) must be console or json; got 'xml'",
        lambda d: ["--log-format", "xml", "config", "schema"],
    ),
    Case(
        "config-not-utf8",
        "a config saved as Latin-1",
        2,
        "error: config: config … is not UTF-8 text: byte 0xe9 at line 1, column 10",
        lambda d: ["config", "validate", "-c", _write(d, "p.yaml", "name: caf\u00e9\n".encode("latin-1"))],
    ),
    Case(
        "config-alias-bomb",
        "a YAML alias bomb (billion laughs)",
        2,
        "error: config: config … expands to more than 1,000,000 values "
        "(YAML aliases *name repeat the block anchored as &name, each time in full)",
        _billion_laughs,
        # Python startup included, on a busy 2-core machine (the full suite's load); the check itself
        # takes milliseconds, an unguarded bomb would run out of memory long after this.
        within_s=20,
    ),
    Case(
        "connectors-alias-bomb",
        "`debezium connectors plan -f` with an alias bomb",
        2,
        "error: config: config … expands to more than 1,000,000 values "
        "(YAML aliases *name repeat the block anchored as &name, each time in full)",
        lambda d: [
            "debezium",
            "connectors",
            "plan",
            "--connect-url",
            "http://127.0.0.1:1",
            "-f",
            _billion_laughs(d)[-1],
        ],
        within_s=20,
    ),
    Case(
        "config-recursive-alias",
        "a YAML alias inside its own anchor",
        2,
        "error: config: config … refers to itself: a YAML alias (*name) inside the block it names (&name)",
        _config("name: &n [a, *n]\n"),
    ),
    Case(
        "config-huge",
        "a 50 MB config",
        2,
        "error: config: config … is too large (52,428,800 bytes; the limit is 10,485,760)",
        _huge,  # the default bound: parsing 50 MB of YAML would take minutes, a loaded start-up 12 s
    ),
    Case(
        "pg-port-notaport",
        "`tail --source pg --dsn 'host=... port=notaport'`",
        2,
        "error: usage: --dsn: the Postgres DSN's port is not valid: "
        "it must be a number from 1 to 65535 (one per host, comma-separated)",
        lambda d: [
            "tail",
            "--source",
            "pg",
            "--table",
            "public.t",
            "--dsn",
            f"host=127.0.0.1 port=notaport password={SECRET}",
        ],
    ),
    Case(
        "pg-sslmode-bogus",
        "`slots list --dsn 'postgresql://...?sslmode=bogus'`",
        2,
        "error: config: the Postgres DSN's sslmode is not valid: "
        "it must be one of disable, allow, prefer, require, verify-ca, verify-full",
        lambda d: ["slots", "list", "--dsn", f"postgresql://u:{SECRET}@127.0.0.1:5432/db?sslmode=bogus"],
    ),
    Case(
        "pg-port-out-of-range",
        "`source.dsn` with port 99999 (`config validate`)",
        2,
        "error: config: invalid config: source.dsn: the Postgres DSN's port is not valid: "
        "it must be a number from 1 to 65535 (one per host, comma-separated)",
        _config(_PG_SOURCE.format(dsn=f"postgresql://u:{SECRET}@127.0.0.1:99999/db")),
    ),
    Case(
        "pg-not-a-dsn",
        "`tail --source pg --dsn 'postgresql//u:pw@host/db'` (no colon)",
        2,
        "error: usage: --dsn: not a Postgres DSN; write it as "
        "postgresql://user:password@host:5432/dbname (or key=value pairs)",
        lambda d: [
            "tail",
            "--source",
            "pg",
            "--table",
            "public.t",
            "--dsn",
            f"postgresql//u:{SECRET}@127.0.0.1/db",
        ],
    ),
    Case(
        "offsets-dsn-bogus",
        "`offsets: {type: postgres, dsn: '... sslmode=bogus'}`",
        2,
        "error: config: invalid config: offsets.dsn: the Postgres DSN's sslmode is not valid: "
        "it must be one of disable, allow, prefer, require, verify-ca, verify-full",
        _config(
            "source: {type: sqlite, path: a.db, tables: [t]}\ndestination: {type: stdout}\n"
            f"offsets: {{type: postgres, dsn: 'host=127.0.0.1 password={SECRET} sslmode=bogus'}}\n"
        ),
    ),
    Case(
        "poll-port-notaport",
        "`tail --source poll --dsn 'postgresql+psycopg://u:pw@host:notaport/db'`",
        2,
        "error: usage: --dsn: the URL's port must be a number from 1 to 65535",
        lambda d: [
            "tail",
            "--source",
            "poll",
            "--dsn",
            f"postgresql+psycopg://u:{SECRET}@127.0.0.1:notaport/db",
            *_POLL,
        ],
    ),
    Case(
        "poll-sslmode-bogus",
        "`tail --source poll --dsn 'postgresql+psycopg://...?sslmode=bogus'`",
        2,
        "error: config: the poll source URL's sslmode is not valid: "
        "it must be one of disable, allow, prefer, require, verify-ca, verify-full",
        lambda d: [
            "tail",
            "--source",
            "poll",
            "--dsn",
            f"postgresql+psycopg://u:{SECRET}@127.0.0.1:1/db?sslmode=bogus",
            *_POLL,
        ],
    ),
    Case(
        "poll-wrong-password",
        "`tail --source poll` with a wrong password (Postgres)",
        3,
        "error: auth: cannot connect (…): …password authentication failed for user …",
        _poll_wrong_password,
        needs="CDC_PG_DSN",
    ),
    Case(
        "debezium-dead-bootstrap",
        "`tail --source debezium --bootstrap 127.0.0.1:1` (nothing listens)",
        1,
        "error: connection: cannot reach Kafka at 127.0.0.1:1: "
        "127.0.0.1:1/bootstrap: Connect to ipv4#127.0.0.1:1 failed: Connection refused",
        lambda d: ["tail", "--source", "debezium", "--bootstrap", "127.0.0.1:1", "--topic-prefix", "x"],
        within_s=8,  # librdkafka's own metadata timeout would be 10 s
    ),
    Case(
        "debezium-bootstrap-port",
        "`tail --source debezium --bootstrap 127.0.0.1:notaport`",
        2,
        "error: usage: --bootstrap: each entry is host:port with a port from 1 to 65535",
        lambda d: [
            "tail",
            "--source",
            "debezium",
            "--bootstrap",
            "127.0.0.1:notaport",
            "--topic-prefix",
            "x",
        ],
    ),
    Case(
        "connect-unreachable",
        "`debezium connectors list --connect-url http://127.0.0.1:1` (nothing listens)",
        1,
        "error: connection: cannot reach Kafka Connect at http://127.0.0.1:1: "
        "connection refused (nothing listens there)",
        lambda d: ["debezium", "connectors", "list", "--connect-url", "http://127.0.0.1:1"],
        within_s=40,
        extra=("kafka connect unreachable, retrying",),
    ),
    Case(
        "connect-url-port",
        "`debezium connectors list --connect-url http://host:notaport`",
        2,
        "error: config: the Kafka Connect URL's port is not a number from 1 to 65535 (if the password "
        "contains '/', '?' or '#': percent-encode '/', '?', '#', '@' and ':' in the user and password "
        "(%2F, %3F, %23, %40, %3A))",
        lambda d: [
            "debezium",
            "connectors",
            "list",
            "--connect-url",
            f"http://u:{SECRET}@127.0.0.1:notaport",
        ],
    ),
    Case(
        "connect-url-scheme",
        "`debezium connectors list --connect-url connect:8083`",
        2,
        "error: config: the Kafka Connect URL is not a URL: it has no scheme://",
        lambda d: ["debezium", "connectors", "list", "--connect-url", "127.0.0.1:8083"],
    ),
    Case(
        "offsets-set-garbage",
        "`offsets set --position garbage`",
        2,
        'error: usage: --position is not JSON: give a position object ({"type": ..., "server": ..., ...}), '
        "a record of `offsets show --json` …",
        lambda d: [
            "offsets",
            "set",
            "-c",
            _sqlite_pipeline(d),
            "--source",
            "sqlite",
            "--position",
            "garbage",
        ],
    ),
    Case(
        "offsets-set-wrong-type",
        '`offsets set --position \'{"type": "pg_lsn", ...}\'` on a sqlite source',
        2,
        "error: usage: --position has the wrong type 'pg_lsn': a sqlite source stores watermark",
        lambda d: [
            "offsets",
            "set",
            "-c",
            _sqlite_pipeline(d),
            "--source",
            "sqlite",
            "--position",
            '{"type": "pg_lsn", "server": "1", "lsn": 5}',
        ],
    ),
    Case(
        "offsets-sqlite-damaged",
        "`run` with a sqlite offset store that is not a database",
        3,
        "error: position_lost: the offset store … is damaged (file is not a database); "
        "the committed positions cannot be read",
        _damaged_sqlite_store,
    ),
    Case(
        "offsets-file-truncated",
        "`run` with a truncated file offset store",
        3,
        "error: position_lost: the offset store … is damaged (not valid JSON: …); "
        "the committed positions cannot be read",
        _truncated_file_store,
    ),
    Case(
        "second-run",
        "a second `run` of a running pipeline",
        3,
        "error: locked: pipeline 'p' is already running: pid … on … (started …) holds ….lock",
        _second_run,
        background=True,
    ),
]


@dataclass
class Result:
    returncode: int | None = None
    stderr: str = ""
    elapsed: float = 0.0
    skipped: str | None = None


def _run(case: Case, directory: Path) -> Result:
    argv = case.setup(directory)
    started = time.monotonic()
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "cdc_logs", *argv],
            capture_output=True,
            text=True,
            timeout=case.within_s + 20,
            cwd=directory,
            env=_ENV,
        )
    except subprocess.TimeoutExpired as exc:  # killed: e.g. an alias bomb that never finishes
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
        return Result(None, stderr, time.monotonic() - started)
    return Result(proc.returncode, proc.stderr, time.monotonic() - started)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Result]]:
    out: dict[str, Result] = {}
    runnable = []
    for case in CASES:
        if case.needs and not (os.environ.get(case.needs) and reachable(os.environ[case.needs]) is None):
            out[case.id] = Result(skipped=f"{case.needs} is not set or its server is not reachable")
        else:
            runnable.append(case)
    slow_first = sorted(runnable, key=lambda c: -c.within_s)
    try:
        with ThreadPoolExecutor(max_workers=2) as pool:
            futures = {c.id: pool.submit(_run, c, tmp_path_factory.mktemp(c.id)) for c in slow_first}
            out.update({name: future.result() for name, future in futures.items()})
        yield out
    finally:
        for proc in _BACKGROUND:
            proc.kill()
            proc.wait()


_LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z \[\w+ *\] ")


def _pattern(message: str) -> re.Pattern[str]:
    return re.compile("".join(".*" if part == "…" else re.escape(part) for part in re.split("(…)", message)))


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(case: Case, results: dict[str, Result]) -> None:
    result = results[case.id]
    if result.skipped:
        _unavailable(result.skipped)
    lines = result.stderr.splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    assert result.returncode == case.exit, result.stderr
    assert _pattern(case.message).fullmatch(errors[0]), f"{errors[0]!r} does not match {case.message!r}"
    assert "Traceback" not in result.stderr and "%3|" not in result.stderr, result.stderr
    assert SECRET not in result.stderr
    for text in case.extra:
        assert text in result.stderr
    # Nothing but the error, its fix, and cdc-logs' own log lines (no raw driver output).
    others = [line for line in lines if line not in errors and not line.startswith("  fix: ")]
    assert all(_LOG_LINE.match(line) for line in others), result.stderr
    assert result.elapsed < case.within_s, f"took {result.elapsed:.1f} s"


def _doc_rows() -> list[tuple[str, str, str]]:
    text = DOC.read_text()
    table = text.split("<!-- cases:begin -->", 1)[1].split("<!-- cases:end -->", 1)[0]
    rows = []
    for line in table.strip().splitlines()[2:]:  # after the header and the |---| line
        bad_input, code, message = (cell.strip() for cell in line.strip().strip("|").split(" | "))
        rows.append((bad_input, code, _unquote(message)))
    return rows


def _unquote(cell: str) -> str:
    if cell.startswith("`` ") and cell.endswith(" ``"):
        return cell[3:-3]
    return cell.strip("`")


def test_the_doc_table_is_this_case_list() -> None:
    assert _doc_rows() == [(c.input, str(c.exit), c.message) for c in CASES]


def doc_table() -> str:
    """The table for docs/errors.md (`python -c 'from tests.unit.test_cli_errors import doc_table;
    print(doc_table())'`)."""
    rows = ["| bad input | exit | first line on stderr |", "|---|---|---|"]
    rows += [f"| {c.input} | {c.exit} | {_quote(c.message)} |" for c in CASES]
    return "\n".join(rows)


def _quote(text: str) -> str:
    return f"`` {text} ``" if "`" in text else f"`{text}`"


def test_run_retries_a_dead_bootstrap_with_backoff(tmp_path: Path) -> None:
    """The same dead broker that `tail` reports at once is retried by `run` (CONNECTION), each
    attempt one log line, no raw librdkafka output; the last attempt's error is the exit."""
    config = _write(
        tmp_path,
        "p.yaml",
        "name: dbz\nsource: {type: debezium, bootstrap_servers: '127.0.0.1:1', topic_prefix: x}\n"
        "destination: {type: stdout}\n"
        "sync: {retry: {max_attempts: 3, initial_backoff_ms: 100, max_backoff_ms: 200}}\n"
        f"offsets: {{type: sqlite, path: {tmp_path / 'o.db'}}}\n",
    )
    proc = subprocess.run(
        [sys.executable, "-m", "cdc_logs", "run", "-c", config],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        env=_ENV,
    )
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.splitlines()
    assert sum("source unavailable, retrying" in line for line in lines) == 2, proc.stderr
    assert lines[-2].startswith("error: connection: cannot reach Kafka at 127.0.0.1:1: "), proc.stderr
    assert all(_LOG_LINE.match(line) for line in lines[:-2]), proc.stderr
