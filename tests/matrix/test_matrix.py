"""Every reader's real output through every sink: the reader x sink matrix (docs/event-contract.md).

For each source, one `cdc-logs run` (as a user starts it, a subprocess with a YAML file) fans out to
every destination at once. The workload (workload.py) runs while it streams: snapshot rows, multi-row
transactions, an update that changes the primary key, deletes, a rolled-back transaction, a
10,000-row transaction, a row of NULLs and every common type. A sentinel row is written last; once the
file sink holds it, the run is stopped with SIGTERM, which drains every sink before it exits.

Judged per cell, after the drain:
  * the destination's state (a mirror) or the state rebuilt from its log equals the source table,
    compared typed (canon.py: a timestamp is a timestamp whatever its encoding);
  * for log destinations of log-based readers, each key's changes are exactly the workload's, in
    order: nothing lost, nothing duplicated, a primary-key change is a delete then a create.

Every registered source and destination type is in the matrix, or listed in NOT_HERE with the
reason (a sink: or its contract fixture, tests/contract/sinks/<sink>.py, says why in `not_in_matrix`);
`test_every_registered_type_is_in_the_matrix` fails for a new type without a case.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest
import yaml

from cdc_logs import registry
from tests.contract.sink_contract import fixtures as contract_fixtures
from tests.matrix import targets, workload
from tests.matrix.canon import canon_row
from tests.matrix.oracle_redo import OracleReplayCase
from tests.matrix.sources import (
    DebeziumCase,
    MariadbCase,
    MongoCase,
    PollCase,
    PostgresCase,
    Run,
    SourceCase,
    SqliteCase,
    make_source,
)

# postgres_decode / mariadb_decode: the same readers with decode_process: on (a second process).
SOURCES = (
    "sqlite",
    "poll",
    "postgres",
    "postgres_decode",
    "mariadb",
    "mariadb_decode",
    "debezium",
    "oracle",
    "mongo",
)
SINKS = (
    "sql_postgres",
    "sql_mariadb",
    "sql_sqlite",
    "redis_stream",
    "redis_cache",
    "kafka",
    "file",
    "stdout",
    "opensearch",
    "nats",
    "rabbitmq",
    "mqtt",
    "http",
)
NOT_HERE = {
    "mysql": "no MySQL 8 server can run here; MariaDB (the same reader and SQL dialect) is in the matrix",
    "pulsar": "no Pulsar broker can run here (docs/sources/pulsar.md); tested without one in "
    "tests/unit/test_pulsar_source.py",
    "kafka": "an event bus, not a database with the matrix's tables: tests/integration/test_kafka_source.py "
    "runs it into the file and SQL sinks through a SIGKILL; its consumer is the debezium case's",
    "redis_stream": "an event bus, not a database with the matrix's tables: "
    "tests/integration/test_redis_stream_source.py runs it into the file and SQL sinks, with kills",
    "rabbitmq": "an event bus, not a database with the matrix's tables: "
    "tests/integration/test_rabbitmq_source.py runs it into the file and SQL sinks, with kills",
    # Event buses carry messages, not a database's row changes: the matrix workload cannot be replayed
    # through them. Their own tests run `cdc-logs run` into file + SQL apply sinks with SIGKILLs.
    "mqtt": "a message bus: tests/integration/test_mqtt_source.py (file + SQL apply, SIGKILL)",
    "nats": "a message bus: tests/integration/test_nats_source.py (file + SQL apply, SIGKILL)",
}


@dataclass
class Outcome:
    case: SourceCase
    run: Run
    source_state: dict[int, dict[str, Any]]
    model: workload.Model
    readbacks: dict[str, targets.Readback] = field(default_factory=dict)
    log: str = ""


def _sink_cases(servers: dict[str, str]) -> dict[str, Callable[[], targets.SinkCase]]:
    return {
        "sql_postgres": lambda: targets.SqlPostgres(servers["pg"]),
        "sql_mariadb": lambda: targets.SqlMariadb(servers["mariadb"]),
        "sql_sqlite": targets.SqlSqlite,
        "redis_stream": lambda: targets.RedisStream(servers["redis"]),
        "redis_cache": lambda: targets.RedisCache(servers["redis"]),
        "kafka": lambda: targets.Kafka(servers["kafka"]),
        "file": targets.File,
        "stdout": targets.Stdout,
        "opensearch": lambda: targets.OpenSearch(servers["opensearch"]),
        "nats": lambda: targets.Nats(servers["nats"]),
        "rabbitmq": lambda: targets.RabbitMQ(servers["rabbitmq"]),
        "mqtt": lambda: targets.Mqtt(servers["mqtt"]),
        "http": targets.Http,
    }


def _wait(
    check: Callable[[], bool], proc: subprocess.Popen[bytes], log: Any, what: str, limit: float
) -> None:
    deadline = time.monotonic() + limit
    while not check():
        if proc.poll() is not None:
            pytest.fail(f"cdc-logs run exited ({proc.returncode}) while waiting for {what}:\n{log()[-4000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}:\n{log()[-4000:]}")
        time.sleep(0.2)


def _file_ids(run: Run) -> set[int]:
    path = run.tmp / "out" / "changes.jsonl"
    if not path.exists():
        return set()
    ids = set()
    for line in path.read_bytes().split(b"\n")[:-1]:  # the last piece may be a line being written
        row = orjson.loads(line)["after"] or {}
        if "id" in row:
            ids.add(row["id"])
    return ids


def run_matrix(name: str, servers: dict[str, str], tmp: Any) -> Outcome:
    run = Run(uuid.uuid4().hex[:8], tmp)
    case = make_source(name, servers, run)
    sinks = {key: make() for key, make in _sink_cases(servers).items()}
    case.prepare(run)
    outcome = Outcome(case, run, {}, workload.expected(deletes=case.deletes, moves=case.moves))
    try:
        for sink in sinks.values():
            sink.prepare(run)
        config = {
            "name": f"mx-{name}-{run.id}",
            "source": case.config(run),
            "destinations": [s.destination(run) for s in sinks.values()],
            "offsets": {"type": "sqlite", "path": str(run.tmp / "offsets.db")},
            "sync": {
                "batch": {"max_events": 500, "max_wait_ms": 100},
                "retry": {"max_attempts": 0, "initial_backoff_ms": 200, "max_backoff_ms": 2000},
                "fanout": {"spool_dir": str(run.tmp / "spool")},
            },
        }
        path = run.tmp / "pipeline.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        log_path = run.tmp / "run.log"
        with open(run.tmp / "stdout.jsonl", "wb") as out, open(log_path, "wb") as err:
            # The Oracle case has no server: its own launcher replays LogMiner rows (oracle_redo.py).
            command = getattr(case, "command", None)
            argv = command(path) if command else [sys.executable, "-m", "cdc_logs", "run", "-c", str(path)]
            proc = subprocess.Popen(
                argv,
                cwd=run.tmp,
                stdout=out,
                stderr=err,
            )

        def log() -> str:
            return log_path.read_text(errors="replace")

        try:
            snapshot = set(workload.SNAPSHOT_IDS)
            _wait(lambda: snapshot <= _file_ids(run), proc, log, "the snapshot rows", 180)
            for tx in workload.transactions(deletes=case.deletes, moves=case.moves):
                case.execute(run, tx)
            case.execute(run, workload.sentinel())
            _wait(lambda: workload.SENTINEL in _file_ids(run), proc, log, "the sentinel row", 300)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        outcome.log = log()
        assert proc.returncode == 0, f"cdc-logs run did not stop cleanly:\n{outcome.log[-4000:]}"
        outcome.source_state = case.state(run)
        for key, sink in sinks.items():
            outcome.readbacks[key] = sink.read(run, run.table)
        return outcome
    finally:
        for sink in sinks.values():
            try:
                sink.cleanup(run)
            except Exception as exc:  # cleanup must not hide the result
                print(f"cleanup of {sink.name} failed: {exc}")
        try:
            case.cleanup(run)
        except Exception as exc:
            print(f"cleanup of {case.name} failed: {exc}")


@pytest.fixture(scope="module")
def outcomes(
    servers: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[str], Outcome]]:
    cache: dict[str, Outcome | BaseException] = {}

    def get(name: str) -> Outcome:
        if name not in cache:
            try:
                cache[name] = run_matrix(name, servers, tmp_path_factory.mktemp(f"mx-{name}"))
            except BaseException as exc:  # every cell of this source reports the run's failure
                cache[name] = exc
        result = cache[name]
        if isinstance(result, BaseException):
            raise result
        return result

    yield get


def _canon_state(outcome: Outcome, rows: dict[int, dict[str, Any]], *, envelope: bool) -> dict[int, Any]:
    case = outcome.case
    return {k: canon_row(r, case.kinds, envelope=envelope, decimal=case.decimal) for k, r in rows.items()}


def _replay(log: list[dict[str, Any]], table: str) -> tuple[dict[int, dict[str, Any]], dict[int, list[str]]]:
    """The state a log leaves behind, and each key's changes in order."""
    state: dict[int, dict[str, Any]] = {}
    changes: dict[int, list[str]] = {}
    for envelope in log:
        if envelope["source"].get("table") != table:
            continue
        op = envelope["op"]
        row = envelope["after"] if op != "d" else envelope["before"]
        key = int(row["id"] if "id" in row else row["_id"])  # a MongoDB delete's before: its key
        changes.setdefault(key, []).append(op)
        if op == "d":
            state.pop(key, None)
        else:
            state[key] = envelope["after"]
    return state, changes


def _diff(expected: dict[int, Any], got: dict[int, Any]) -> str:
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    changed = [k for k in sorted(set(expected) & set(got)) if expected[k] != got[k]]
    lines = [f"{len(missing)} missing {missing[:10]}", f"{len(extra)} extra {extra[:10]}"]
    for key in changed[:3]:
        cols = {c for c in expected[key] if expected[key][c] != got[key].get(c)}
        lines.append(
            f"key {key}: "
            + ", ".join(f"{c}: {expected[key][c]!r} != {got[key].get(c)!r}" for c in sorted(cols))
        )
    lines.append(f"{len(changed)} rows differ")
    return "\n".join(lines)


CELLS = [(source, sink) for source in SOURCES for sink in SINKS]


@pytest.mark.parametrize(("source", "sink"), CELLS, ids=[f"{a}-{b}" for a, b in CELLS])
def test_cell(source: str, sink: str, outcomes: Callable[[str], Outcome]) -> None:
    outcome = outcomes(source)
    marker = getattr(outcome.case, "log_marker", None)
    assert marker is None or marker in outcome.log, f"no {marker!r} in the run's log"
    expected = _canon_state(outcome, outcome.source_state, envelope=False)
    model = _canon_state(outcome, outcome.model.state, envelope=False)
    assert expected == model, "the workload did not leave the source as modelled:\n" + _diff(model, expected)
    back = outcome.readbacks[sink]
    if back.state is not None:
        got = _canon_state(outcome, back.state, envelope=back.envelope)
        assert got == expected, f"{sink} does not mirror the source table:\n{_diff(expected, got)}"
        return
    assert back.log is not None
    state, changes = _replay(back.log, outcome.run.table)
    got = _canon_state(outcome, state, envelope=True)
    assert got == expected, (
        f"replaying {sink}'s log does not rebuild the source table:\n{_diff(expected, got)}"
    )
    if outcome.case.log_based:
        wrong = {k: (v, changes.get(k)) for k, v in outcome.model.changes.items() if changes.get(k) != v}
        extra = set(changes) - set(outcome.model.changes)
        assert not wrong and not extra, (
            f"{sink}: changes per key differ from the workload's (expected, got): "
            f"{dict(list(wrong.items())[:5])} (and {len(wrong)} keys in all); "
            f"unexpected keys {sorted(extra)[:5]}"
        )


def test_every_registered_type_is_in_the_matrix() -> None:
    """A new source or destination type fails here until it has a matrix case (or a reason it can't)."""
    source_types = {t for c in registry.components("source") for t in c.types}
    sink_types = {t for c in registry.components("sink") for t in c.types}
    covered_sources = {
        t
        for case in (
            SqliteCase,
            PollCase,
            PostgresCase,
            MariadbCase,
            DebeziumCase,
            OracleReplayCase,
            MongoCase,
        )
        for t in _source_aliases(case.config_type)
    }
    cases = targets.SinkCase.__subclasses__()
    assert {case.name for case in cases} <= set(SINKS), "a sink case the matrix does not run"
    covered_sinks = {t for case in cases for t in case.config_types}
    # Sinks whose contract fixture (tests/contract/sinks/) says why they have no matrix case.
    exempt = {
        name: set(registry.find("sink", name).types)
        for name, fixture in contract_fixtures().items()
        if fixture.not_in_matrix
    }
    both = sorted(name for name, types in exempt.items() if types & covered_sinks)
    assert not both, f"in the matrix, yet their contract fixture says why they are not: {both}"
    exempt_types = set().union(*exempt.values())
    missing = sorted(
        ((source_types - covered_sources) | (sink_types - covered_sinks - exempt_types)) - set(NOT_HERE)
    )
    assert not missing, (
        f"registered types without a matrix case: {missing} (add one to tests/matrix, or say why not: "
        "`not_in_matrix` in the sink's contract fixture)"
    )


def _source_aliases(config_type: str) -> set[str]:
    aliases = {
        "postgresql": {"postgresql", "postgres", "pg"},
        "poll": {"poll", "polling", "query"},
        "mariadb": {"mariadb"},
        "sqlite": {"sqlite"},
        "debezium": {"debezium"},
        "oracle": {"oracle"},
        "mongodb": {"mongodb", "mongo"},
    }
    return aliases[config_type]
