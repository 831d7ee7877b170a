"""`financial_validation` middleware: exact decimal amounts, precision/scale and currency-code checks,
dead letters for invalid changes, and a control total per batch recorded with the checkpoint.

Values stay exact: readers deliver NUMERIC/DECIMAL columns as decimal strings (Postgres,
decimal.handling.mode=string) or `Decimal`, the envelope writes a Decimal as its string, and this
stage never converts an amount to float: it parses with `Decimal(str)` and sums in a context wide
enough that addition is exact. A float where a decimal is required is refused, not rounded.

Control totals. Per batch: the count and the exact sum of each currency field over the changes with an
`after` image the stage passed on (inserts, updates, snapshot rows), per currency code when a code
field is set (then only per code: amounts in different currencies are never added together). They are
the stage's checkpointed state (`snapshot()`), so they are saved with exactly the
positions of the batches they count, and appended to `totals.jsonl` in the stage's directory when the
batches are committed (`committed()`); after a crash, the batches the restored state holds that the file
lacks are appended on start. A replayed batch is never counted twice.
"""

from __future__ import annotations

import datetime as dt
import decimal
import os
import re
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import orjson
from pydantic import ConfigDict, Field, model_validator

from cdc_logs import registry
from cdc_logs.configmodel import ConfigModel
from cdc_logs.envelope import ChangeEvent, Op
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.middleware.iso4217 import CODES
from cdc_logs.observability.logging import get_logger
from cdc_logs.stages import BatchStage, StageContext
from cdc_logs.transforms.base import table_matches

log = get_logger(__name__)

TOTALS_FILE = "totals.jsonl"
MAX_UNCOMMITTED = 32  # batch totals kept apart while not committed (then merged)
_DECIMAL_TEXT = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)$")
# Addition of finite decimals is exact in this context (and Inexact traps if it ever were not).
EXACT = decimal.Context(prec=decimal.MAX_PREC, Emax=decimal.MAX_EMAX, Emin=decimal.MIN_EMIN,
                         traps=[decimal.Inexact, decimal.InvalidOperation])  # fmt: skip


class Invalid(ValueError):
    """A change that fails a check; the message is the dead letter's reason."""


def as_decimal(value: Any, name: str) -> Decimal:
    """The exact decimal of an amount, or Invalid saying why it is not one."""
    if isinstance(value, bool):
        raise Invalid(f"{name} is a boolean, not an amount")
    if isinstance(value, float):
        raise Invalid(f"{name} is a float: a decimal is required (floats are not exact)")
    if isinstance(value, int):
        return Decimal(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise Invalid(f"{name} is not a finite amount (NaN or infinity)")
        return value
    if isinstance(value, str):
        if not _DECIMAL_TEXT.match(value.strip()):
            raise Invalid(f"{name} is text that is not a decimal number")
        return Decimal(value.strip())
    raise Invalid(f"{name} is a {type(value).__name__}, not an amount")


def digits(value: Decimal) -> tuple[int, int]:
    """(precision, scale) of a decimal as a NUMERIC(p, s) column needs it: integer digits + scale."""
    _, numerals, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    scale = max(0, -exponent)
    integer = len(numerals) + exponent if len(numerals) + exponent > 0 else 0
    if value == 0:
        integer = 0
    return integer + scale, scale


class FinancialValidationStage(BatchStage):
    stateful = True

    def __init__(self, params: FinancialParams) -> None:
        self.params = params
        self.name = "financial_validation"
        self.allowed = (
            frozenset(c.upper() for c in params.allowed_currencies) if params.allowed_currencies else CODES
        )
        self.code_fields = dict(params.currency_code_fields)
        if params.currency_code_field:
            for name in params.currency_fields:
                self.code_fields.setdefault(name, params.currency_code_field)
        self.directory: Path | None = None
        self.dead_letter: Any = None
        self.next_batch = 1
        self.uncommitted: list[dict[str, Any]] = []  # totals of batches processed, not yet in the file

    # -- start -----------------------------------------------------------------------------------
    def open(self, context: StageContext) -> None:
        self.directory = context.directory
        self.dead_letter = context.dead_letter
        _cut_torn_line(self.directory / TOTALS_FILE)
        written = read_totals(self.directory / TOTALS_FILE)
        last = max((last_batch(t) for t in written), default=0)
        state = context.state
        if state:
            self.next_batch = int(state["next_batch"])
            # Committed with the positions, but the crash came before committed() wrote them.
            late = [t for t in state.get("uncommitted", []) if int(t["batch"]) > last]
            if late:
                self._append(late)
        else:
            self.next_batch = last + 1
            if last:
                log.warning(
                    "financial_validation: no saved state matches the committed positions (offsets reset?): "
                    "control totals go on from the file; replayed changes are counted again",
                    totals=str(self.directory / TOTALS_FILE),
                )

    # -- per batch -------------------------------------------------------------------------------
    def process(self, batch: list[ChangeEvent]) -> list[ChangeEvent]:
        kept: list[ChangeEvent] = []
        fields: dict[str, dict[str, Any]] = {}
        rejected = 0
        for event in batch:
            try:
                amounts = self._check(event)
            except Invalid as exc:
                rejected += 1
                self._refuse(event, str(exc))
                continue
            kept.append(event)
            for name, code, amount in amounts:
                entry = fields.setdefault(name, {"count": 0, "sum": Decimal(0), "currencies": {}})
                entry["count"] += 1
                entry["sum"] = EXACT.add(entry["sum"], amount)
                if code is not None:
                    per = entry["currencies"].setdefault(code, {"count": 0, "sum": Decimal(0)})
                    per["count"] += 1
                    per["sum"] = EXACT.add(per["sum"], amount)
        if fields or rejected:
            self.uncommitted.append(
                {
                    "batch": self.next_batch,
                    "recorded_at": dt.datetime.now(dt.UTC)
                    .isoformat(timespec="milliseconds")
                    .replace("+00:00", "Z"),
                    "regulatory_compliance": self.params.regulatory_compliance,
                    "events": len(kept),
                    "rejected": rejected,
                    "fields": {name: _encode(entry) for name, entry in fields.items()},
                }
            )
            self.next_batch += 1
            if len(self.uncommitted) > MAX_UNCOMMITTED:
                # Positions have not committed for a while (one huge source transaction): every
                # snapshot copies this list, so keep it short by merging the two oldest entries.
                first, second = self.uncommitted[0], self.uncommitted.pop(1)
                self.uncommitted[0] = merge_totals(first, second)
        return kept

    def _check(self, event: ChangeEvent) -> list[tuple[str, str | None, Decimal]]:
        """(field, currency code, amount) of each currency field of the change; Invalid if a check fails."""
        if event.op not in (Op.CREATE, Op.UPDATE, Op.READ) or event.after is None:
            return []  # a delete carries no new amount; truncates and messages none at all
        if self.params.tables and not table_matches(self.params.tables, event):
            return []
        row = event.after
        schema = event.schema
        present = [
            f
            for f in self.params.currency_fields
            if (schema is not None and schema.column(f) is not None) or (schema is None and f in row)
        ]
        out: list[tuple[str, str | None, Decimal]] = []
        for name in present:
            if name not in row and name in event.unchanged:
                continue  # not sent by the source (unchanged): nothing new to check or count
            value = row.get(name)
            if value is None:
                raise Invalid(f"missing amount: {name} is null")
            amount = as_decimal(value, name)
            if self.params.precision_check:
                self._check_digits(name, amount, event)
            code = self._code(name, row)
            out.append((name, code, amount))
        return out

    def _check_digits(self, name: str, amount: Decimal, event: ChangeEvent) -> None:
        precision, scale = self.params.max_precision, self.params.max_scale
        column = event.schema.column(name) if event.schema is not None else None
        if column is not None and column.source_type in ("NUMERIC", "DECIMAL"):
            precision = precision if precision is not None else column.length
            scale = scale if scale is not None else column.scale
        # Trailing zeros carry no value: 1.0000 from a NUMERIC(20, 4) column is 1 and fits max_scale 2
        # (nothing would be lost storing it with 2 places); 1.2345 does not.
        got_precision, got_scale = digits(amount.normalize(EXACT) if amount else Decimal(0))
        if scale is not None and got_scale > scale:
            why = ""
            if column is not None and column.scale is not None and column.scale > scale:
                why = (
                    f" (max_scale {scale}; the column is {column.source_type}({column.length}, "
                    f"{column.scale}): raise max_scale to {column.scale} to accept what it can hold)"
                )
            raise Invalid(
                f"{name} has {got_scale} decimal places (trailing zeros not counted); at most {scale} "
                f"allowed{why}"
            )
        if precision is not None:
            allowed_integer = precision - (scale or 0)
            if got_precision - got_scale > allowed_integer:
                raise Invalid(
                    f"{name} has {got_precision - got_scale} integer digits; at most "
                    f"{allowed_integer} allowed (precision {precision}, scale {scale or 0})"
                )

    def _code(self, name: str, row: dict[str, Any]) -> str | None:
        field = self.code_fields.get(name)
        if field is None:
            return None
        code = row.get(field)
        if code is None or code == "":
            raise Invalid(f"missing currency code: {field} is empty for {name}")
        if not isinstance(code, str) or code.strip().upper() not in self.allowed:
            raise Invalid(f"unknown currency code in {field} (not one of the allowed ISO 4217 codes)")
        return code.strip().upper()

    def _refuse(self, event: ChangeEvent, reason: str) -> None:
        table = event.source.qualified_table
        error = CdcError(
            ErrorKind.INVALID_DATA,
            f"financial_validation ({self.params.regulatory_compliance or 'no regulation tag'}): {reason}",
            "correct the row at the source; the change is in the dead-letter file with this reason",
        )
        if self.dead_letter is None:
            raise CdcError(
                ErrorKind.INVALID_DATA,
                f"financial_validation: a change of {table} is invalid: {reason}",
                "correct the row at the source, or park invalid changes and go on: set sync.dead_letters",
            )
        self.dead_letter(self.name, [event], error)
        log.warning("financial_validation: change dead-lettered", table=table, reason=reason)

    # -- checkpoint ------------------------------------------------------------------------------
    def snapshot(self) -> Any:
        return {"next_batch": self.next_batch, "uncommitted": list(self.uncommitted)}

    def committed(self) -> None:
        if self.uncommitted:
            self._append(self.uncommitted)
            self.uncommitted = []

    def _append(self, totals: Sequence[dict[str, Any]]) -> None:
        assert self.directory is not None
        path = self.directory / TOTALS_FILE
        with open(path, "ab") as fh:
            fh.write(b"".join(orjson.dumps(t) + b"\n" for t in totals))
            fh.flush()
            os.fsync(fh.fileno())


def last_batch(totals: dict[str, Any]) -> int:
    return int(totals.get("last_batch", totals["batch"]))


def merge_totals(first: dict[str, Any], second: dict[str, Any]) -> dict[str, Any]:
    """One entry for consecutive batches `first` (oldest) and `second`: counts and exact sums added,
    `batch` the first one's number, `last_batch` the second's."""
    fields: dict[str, Any] = {}
    for source in (first, second):
        for name, entry in source["fields"].items():
            into = fields.setdefault(name, {"count": 0, "sum": "0", "currencies": {}})
            into["count"] += entry["count"]
            into["sum"] = str(EXACT.add(Decimal(into["sum"]), Decimal(entry.get("sum", "0"))))
            for code, value in entry.get("currencies", {}).items():
                per = into["currencies"].setdefault(code, {"count": 0, "sum": "0"})
                per["count"] += value["count"]
                per["sum"] = str(EXACT.add(Decimal(per["sum"]), Decimal(value["sum"])))
    for entry in fields.values():
        if entry["currencies"]:
            del entry["sum"]  # amounts in different currencies: per code only
        else:
            del entry["currencies"]
    return {
        **first,
        "last_batch": last_batch(second),
        "events": first["events"] + second["events"],
        "rejected": first["rejected"] + second["rejected"],
        "fields": fields,
    }


def _encode(entry: dict[str, Any]) -> dict[str, Any]:
    """A field's batch total; with currency codes its sum is per code only (no cross-currency sum)."""
    out: dict[str, Any] = {"count": entry["count"]}
    if not entry["currencies"]:
        out["sum"] = str(entry["sum"])
    else:
        out["currencies"] = {
            c: {"count": v["count"], "sum": str(v["sum"])} for c, v in sorted(entry["currencies"].items())
        }
    return out


def _cut_torn_line(path: Path) -> None:
    """Cut a last line a crash left incomplete, so the next append starts on a line of its own (its
    batch is in the restored state and is appended again)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return
    if data and not data.endswith(b"\n"):
        with open(path, "r+b") as fh:
            fh.truncate(data.rfind(b"\n") + 1)
            fh.flush()
            os.fsync(fh.fileno())


def read_totals(path: Path) -> list[dict[str, Any]]:
    """The batch totals of a totals file, in order (a torn last line from a crash is ignored: its
    batch is still in the checkpointed state and appended again on start)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_bytes().splitlines():
        try:
            out.append(orjson.loads(line))
        except orjson.JSONDecodeError:
            continue
    return out


class FinancialParams(ConfigModel):
    """Which columns hold amounts, how they are checked, and the regulation they serve (the seed's names)."""

    currency_fields: list[str] = Field(
        min_length=1,
        description="Columns holding amounts. A change of a table that has one of them must carry an exact "
        "decimal there (a decimal string, integer or Decimal; never a float), not null.",
        examples=[["amount", "balance"]],
    )
    precision_check: bool = Field(
        True,
        description="Check precision and scale: max_precision/max_scale when set, else the column's own "
        "NUMERIC(p, s) from the table schema when the source describes it.",
        examples=[True],
    )
    regulatory_compliance: str | None = Field(
        None,
        description="The regulation these checks serve (e.g. SOX, MiFID II): written in every control total "
        "and dead-letter reason, so an auditor sees why a record was refused.",
        examples=["SOX"],
    )
    currency_code_field: str | None = Field(
        None,
        description="Column holding the ISO 4217 code of every currency field (the totals are then also per "
        "code). Default: no code checked.",
        examples=["currency"],
    )
    currency_code_fields: dict[str, str] = Field(
        default_factory=dict,
        description="Per currency field, the column holding its code (overrides currency_code_field).",
        examples=[{"amount": "currency", "fee": "fee_currency"}],
    )
    allowed_currencies: list[str] = Field(
        default_factory=list,
        description="Accepted currency codes. Default: every ISO 4217 code in use.",
        examples=[["EUR", "USD", "GBP"]],
    )
    max_precision: int | None = Field(
        None, ge=1, description="Most significant digits an amount may have.", examples=[18]
    )
    max_scale: int | None = Field(
        None,
        ge=0,
        description="Most decimal places an amount may have; trailing zeros are not counted (1.0000 has "
        "none, 1.2300 two).",
        examples=[2],
    )
    tables: list[str] = Field(
        default_factory=list,
        description="Only changes of these tables are checked (glob patterns). Default: every table that "
        "has a currency field.",
        examples=[["public.payments"]],
    )

    @model_validator(mode="after")
    def _codes(self) -> FinancialParams:
        bad = [c for c in self.allowed_currencies if not re.fullmatch(r"[A-Za-z]{3}", c)]
        if bad:
            raise ValueError(f"allowed_currencies must be 3-letter codes, got {bad}")
        if (
            self.max_precision is not None
            and self.max_scale is not None
            and self.max_scale > self.max_precision
        ):
            raise ValueError("max_scale cannot exceed max_precision")
        unknown = sorted(set(self.currency_code_fields) - set(self.currency_fields))
        if unknown:
            raise ValueError(
                f"currency_code_fields names {unknown}, which are not in currency_fields "
                f"{self.currency_fields}: its keys are currency fields, its values their code columns"
            )
        return self


class FinancialValidationConfig(ConfigModel):
    """Exact-decimal, precision/scale and currency-code checks with dead letters, and control totals per
    batch saved with the checkpoint (`cdc-logs audit totals`; docs/audit.md)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "financial_validation",
                    "params": {
                        "currency_fields": ["amount", "balance"],
                        "precision_check": True,
                        "regulatory_compliance": "SOX",
                        "currency_code_field": "currency",
                    },
                }
            ]
        }
    )

    type: Literal["financial_validation"] = Field(description="Selects the financial validation middleware.")
    params: FinancialParams = Field(description="Which columns, which checks.")


@registry.transform(FinancialValidationConfig)
def build(cfg: FinancialValidationConfig) -> FinancialValidationStage:
    return FinancialValidationStage(cfg.params)
