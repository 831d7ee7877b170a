"""financial_validation: exact decimals, the checks and their dead-letter reasons, control totals that
reach the totals file only once their batch is committed, and never twice after a crash."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

from cdc_logs.envelope import ChangeEvent, Op, SourceInfo
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.middleware.financial import (
    TOTALS_FILE,
    FinancialParams,
    FinancialValidationStage,
    as_decimal,
    digits,
    read_totals,
)
from cdc_logs.schema import Column, TableSchema
from cdc_logs.stages import StageRunner
from tests.integration.inprocess_cli import cli_here

SCHEMA = TableSchema(
    "db",
    "public",
    "pay",
    (
        Column("id", "int32", key=True),
        Column("amount", "string", None, "NUMERIC", 20, 2),
        Column("cur", "string"),
    ),
)


def _event(n: int, amount: Any, cur: Any = "EUR", op: str = "c") -> ChangeEvent:
    row = {"id": n, "amount": amount, "cur": cur}
    return ChangeEvent(
        op=Op(op),
        source=SourceInfo("test", "p", "db", "pay", schema="public", extra={"n": n}),
        after=row,
        key={"id": n},
        schema=SCHEMA,
    )


class DeadLetters:
    def __init__(self) -> None:
        self.got: list[tuple[str, int, str]] = []
        self.kinds: set[ErrorKind] = set()

    def __call__(self, name: str, events: Sequence[ChangeEvent], error: CdcError) -> Path:
        self.got.extend((name, e.key["id"] if e.key else -1, error.message) for e in events)
        self.kinds.add(error.kind)
        return Path("x")


def _runner(tmp: Path, dead: DeadLetters | None, committed: str | None = None, **params: Any) -> StageRunner:
    params.setdefault("currency_fields", ["amount"])
    params.setdefault("currency_code_field", "cur")
    stage = FinancialValidationStage(FinancialParams.model_validate(params))
    runner = StageRunner([stage], tmp, "p")
    runner.open({"src": committed}, dead)
    return runner


def test_amounts_are_exact_decimals() -> None:
    assert as_decimal("12345678901234567.89", "a") == Decimal("12345678901234567.89")
    assert digits(Decimal("12345678901234567.89")) == (19, 2)
    assert digits(Decimal("0.05")) == (2, 2)
    for bad in (0.1, True, "1e5", "NaN", Decimal("Infinity"), [1]):
        with pytest.raises(ValueError):
            as_decimal(bad, "a")


def test_invalid_changes_are_dead_lettered_with_their_reason(tmp_path: Path) -> None:
    dead = DeadLetters()
    runner = _runner(tmp_path, dead, regulatory_compliance="SOX")
    batch = [
        _event(1, "10.50"),
        _event(2, "1.234"),  # scale 3 > 2 (the column's NUMERIC(20, 2))
        _event(3, 1.5),  # float
        _event(4, "5.00", "ZZZ"),  # not ISO 4217
        _event(5, None),  # missing amount
        _event(6, "123456789012345678901.00"),  # 21 integer digits > 18
        _event(7, "7.25", "usd"),
    ]
    kept = runner.process(batch, seq=7)
    assert [e.key["id"] for e in kept if e.key] == [1, 7]
    reasons = {n: message for _, n, message in dead.got}
    assert "3 decimal places (trailing zeros not counted); at most 2" in reasons[2] and "SOX" in reasons[2]
    assert "amount is a float: a decimal is required" in reasons[3]
    assert "unknown currency code in cur" in reasons[4]
    assert not any("ZZZ" in m or "1.234" in m for m in reasons.values())  # reasons name no data
    assert "missing amount: amount is null" in reasons[5]
    assert "21 integer digits; at most 18" in reasons[6]
    assert dead.kinds == {ErrorKind.INVALID_DATA}  # a rule the data fails, not undecodable input


def test_max_scale_below_the_columns_scale_counts_significant_places_and_says_why(tmp_path: Path) -> None:
    """numeric(20,4) delivers 1 as 1.0000: that fits max_scale 2; 1.2345 does not, and the reason names
    the column's scale against max_scale."""
    columns = (Column("id", "int32", key=True), Column("amount", "string", None, "NUMERIC", 20, 4))
    wide = TableSchema("db", "public", "pay", columns)
    dead = DeadLetters()
    runner = _runner(tmp_path, dead, max_scale=2, currency_code_field=None)
    batch = [_event(n, amount) for n, amount in enumerate(["1.0000", "2.5000", "0.0000", "1.2345"], 1)]
    for event in batch:
        event.schema = wide
    kept = runner.process(batch, seq=4)
    assert [e.key["id"] for e in kept if e.key] == [1, 2, 3]
    ((_, n, reason),) = dead.got
    assert n == 4 and "4 decimal places (trailing zeros not counted); at most 2 allowed" in reason
    assert "the column is NUMERIC(20, 4): raise max_scale to 4" in reason


def test_a_code_column_for_a_field_that_is_not_a_currency_field_is_refused() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"currency_code_fields names \['nope'\]"):
        FinancialParams.model_validate(
            {"currency_fields": ["amount"], "currency_code_fields": {"nope": "ccy"}}
        )
    FinancialParams.model_validate({"currency_fields": ["amount"], "currency_code_fields": {"amount": "ccy"}})


def test_a_refused_change_is_a_middleware_dead_letter_not_a_sinks(tmp_path: Path) -> None:
    from cdc_logs.deadletter import DeadLetterDir, DeadLetterRecord, Stage

    dead = DeadLetterDir(tmp_path / "dead")
    stage = FinancialValidationStage(FinancialParams.model_validate({"currency_fields": ["amount"]}))
    runner = StageRunner([stage], tmp_path, "p")
    runner.open({"src": None}, dead.write_middleware)  # what the pipeline gives batch middleware
    assert runner.process([_event(1, 1.5)], seq=1) == []
    (line,) = (tmp_path / "dead" / "financial_validation.deadletter.jsonl").read_bytes().splitlines()
    record = DeadLetterRecord.from_json(line)
    assert (record.stage, record.component, record.kind) == (
        Stage.MIDDLEWARE,
        "financial_validation",
        ErrorKind.INVALID_DATA,
    )
    assert record.envelope is not None and record.envelope["after"]["id"] == 1


def test_without_dead_letters_an_invalid_change_stops_the_run(tmp_path: Path) -> None:
    runner = _runner(tmp_path, None)
    with pytest.raises(CdcError) as caught:
        runner.process([_event(1, 2.5)], seq=1)
    assert "sync.dead_letters" in (caught.value.hint or "")
    assert caught.value.kind is ErrorKind.INVALID_DATA and caught.value.exit_code == 1


def test_totals_reach_the_file_once_committed_and_never_twice(tmp_path: Path) -> None:
    dead = DeadLetters()
    runner = _runner(tmp_path, dead)
    runner.process(
        [_event(1, "0.10"), _event(2, "0.20", "USD"), _event(3, "12345678901234567.89", "EUR")], seq=3
    )
    totals = tmp_path / "financial_validation" / TOTALS_FILE
    assert read_totals(totals) == []  # processed, not committed yet
    runner.before_commit(3, {"src": "P3"})
    runner.after_commit()
    (first,) = read_totals(totals)
    assert "sum" not in first["fields"]["amount"]  # EUR + USD: never added together
    assert first["fields"]["amount"]["currencies"]["USD"] == {"count": 1, "sum": "0.20"}
    assert first["fields"]["amount"]["currencies"]["EUR"] == {"count": 2, "sum": "12345678901234567.99"}
    # A batch committed with the positions, then a crash before committed() wrote its totals ...
    runner.process([_event(4, "1.00")], seq=4)
    runner.before_commit(4, {"src": "P4"})
    # ... and one processed but never committed (its changes come again after the restart).
    runner.process([_event(5, "2.00")], seq=5)

    again = _runner(tmp_path, dead, committed="P4")
    assert [t["batch"] for t in read_totals(totals)] == [1, 2]  # batch 2 appended on start, once
    again.process([_event(5, "2.00")], seq=5)
    again.before_commit(5, {"src": "P5"})
    again.after_commit()
    rows = read_totals(totals)
    assert [t["batch"] for t in rows] == [1, 2, 3]
    assert [t["fields"]["amount"]["currencies"]["EUR"]["sum"] for t in rows[1:]] == ["1.00", "2.00"]

    done = cli_here("audit", "totals", str(tmp_path), "--json")
    assert done.returncode == 0, done.stderr
    grand = orjson.loads(done.stdout)["total"]
    assert grand == {  # per code only: EUR and USD are never added together
        "amount:EUR": {"count": 4, "sum": "12345678901234570.99"},
        "amount:USD": {"count": 1, "sum": "0.20"},
    }
    table = cli_here("audit", "totals", str(tmp_path / "financial_validation"))
    assert "12345678901234570.99" in table.stdout and "12345678901234571.19" not in table.stdout


def test_a_torn_totals_line_is_cut_and_its_batch_written_again(tmp_path: Path) -> None:
    runner = _runner(tmp_path, DeadLetters())
    runner.process([_event(1, "1.00")], seq=1)
    runner.before_commit(1, {"src": "P1"})  # committed with the positions; the file append was torn
    totals = tmp_path / "financial_validation" / TOTALS_FILE
    totals.write_bytes(b'{"batch":1,"fie')
    _runner(tmp_path, DeadLetters(), committed="P1")
    assert [t["fields"]["amount"]["currencies"]["EUR"]["sum"] for t in read_totals(totals)] == ["1.00"]


def test_totals_of_a_long_uncommitted_run_are_merged_exactly(tmp_path: Path) -> None:
    """Positions that do not commit for many batches (one huge transaction) keep the state small:
    the oldest batch totals are merged, exactly."""
    from cdc_logs.middleware.financial import MAX_UNCOMMITTED

    runner = _runner(tmp_path, DeadLetters())
    batches = MAX_UNCOMMITTED + 10
    for n in range(1, batches + 1):
        runner.process([_event(n, f"{n}.01", "USD" if n % 2 else "EUR")], seq=n, resumable=False)
    runner.process([_event(0, "0.00")], seq=batches + 1)
    runner.before_commit(batches + 1, {"src": "P"})
    runner.after_commit()
    rows = read_totals(tmp_path / "financial_validation" / TOTALS_FILE)
    assert len(rows) <= MAX_UNCOMMITTED + 1
    assert rows[0]["batch"] == 1 and rows[0]["last_batch"] == 12
    assert all("sum" not in r["fields"]["amount"] for r in rows)  # merged too: per code only
    total = sum(Decimal(v["sum"]) for r in rows for v in r["fields"]["amount"]["currencies"].values())
    assert total == sum(Decimal(f"{n}.01") for n in range(1, batches + 1))
    assert sum(r["fields"]["amount"]["count"] for r in rows) == batches + 1
    usd = sum(
        Decimal(r["fields"]["amount"].get("currencies", {}).get("USD", {}).get("sum", "0")) for r in rows
    )
    assert usd == sum(Decimal(f"{n}.01") for n in range(1, batches + 1, 2))
    table = cli_here("audit", "totals", str(tmp_path))
    assert "1-12" in table.stdout
