"""Per-destination routes: which events a destination takes (`route:` on any destination).

    destinations:
      - name: orders_topic
        type: kafka
        route: {tables: [public.orders], ops: [c, u, d]}
      - name: big_orders
        type: sql
        route: {tables: [public.orders], when: "after.amount >= 1000"}

The destination's sink is wrapped (`RoutedSink`): each batch it is handed is narrowed to the events
its route takes before the real sink writes them, and the batch is acknowledged whole as usual. So
an event one destination does not take never holds back or skips the checkpoint: the source position
moves once every destination has written (or declined) everything up to it, exactly as without
routes, in a single-sink pipeline and through fan-out alike.

The two halves of a primary-key change (the delete of the old key and the create of the new one,
as the Postgres and SQLite readers and Debezium emit it, `ChangeEvent.key_change`) count as the
update they are for `ops`: a route taking `u` gets both, one without `u` neither, so a destination
never holds the new key without the old one gone (or the old one deleted and the new never
written). `tables` routes them together anyway (one table).

`when` decides which rows belong to the destination, so it is evaluated against the row the event is
about: `after` (and `row`) is the new row for c/r/u and the deleted row for d. A destination that
holds state (a SQL table, a cache) must see a row leave as well as arrive:
* a delete is taken when the deleted row matched; when the delete carries only the key (Postgres'
  default replica identity, a key change's delete half) whether it matched is unknown, and it is
  taken: deleting a row the destination never had is a no-op, missing one leaves a stale row;
* an update whose new row does not match is delivered as a delete of that row when its old row did
  match, or when the old row is unknown (no `before`: default replica identity), for the same reason;
  an update whose old and new rows both fail is not taken.
This holds for a `when` that reads `after` or `row`; one on `op`, `table`, `source`... only is
evaluated on the event as written (filter ops with `ops`). Sequin's filters behave so for deletes;
Debezium's filter SMT sees the raw envelope instead: write `before.x` / `op` in a `filter` transform
for that.
"""

from __future__ import annotations

import ast
import dataclasses
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cdc_logs.envelope import ChangeEvent, Op
from cdc_logs.sinks.base import Sink


class RouteConfig(BaseModel):
    """Which events a destination takes; an event must pass every condition given."""

    model_config = ConfigDict(extra="forbid")

    tables: list[str] = Field(
        default_factory=list,
        description="Take only events of these tables: glob patterns on schema.table, db.table or the bare "
        "table name (after renames). Default: every table.",
        examples=[["public.orders", "public.order_*"]],
    )
    exclude_tables: list[str] = Field(
        default_factory=list,
        description="Take no events of these tables (glob patterns, as in tables).",
        examples=[["*.audit_*"]],
    )
    ops: list[Literal["c", "u", "d", "r", "t", "m"]] = Field(
        default_factory=list,
        description="Take only these ops. Both halves of a primary-key change (delete + create) count as "
        "`u`, so they go together. Default: all.",
        examples=[["c", "u"]],
    )
    when: str | None = Field(
        None,
        description="Take only rows for which this expression is true (the filter transform's "
        "language, docs/transforms.md), e.g. `after.region == 'eu'`. `after` is the row the event is "
        "about: the deleted row for a delete; an update that leaves the condition arrives as a delete "
        "(docs/transforms.md#per-destination-routes). Default: no condition.",
        examples=["after.amount >= 1000"],
    )

    @field_validator("when")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        from cdc_logs.transforms.expression import compile_expression

        if value is not None:
            compile_expression(value)
        return value


class RoutedSink(Sink):
    """A sink that writes only the events its route takes (see the module docstring)."""

    def __init__(self, inner: Sink, route: RouteConfig) -> None:
        from cdc_logs.transforms.expression import compile_expression

        self.inner = inner
        self.name = inner.name
        self.route = route
        self._when = compile_expression(route.when) if route.when else None
        # Only a condition on the row (`after`/`row`) gets the row semantics below; one on op, table,
        # source... is evaluated as written.
        self._on_row = route.when is not None and bool(
            {"after", "row"}
            & {n.id for n in ast.walk(ast.parse(route.when.strip(), mode="eval")) if isinstance(n, ast.Name)}
        )
        self._ops = frozenset(route.ops)

    def takes(self, event: ChangeEvent) -> bool:
        return self.route_event(event) is not None

    def route_event(self, event: ChangeEvent) -> ChangeEvent | None:
        """The event as this destination gets it: itself, a delete (an update leaving `when`), or None."""
        from cdc_logs.transforms.base import table_matches
        from cdc_logs.transforms.expression import op_of

        route = self.route
        if self._ops and op_of(event) not in self._ops:
            return None
        if route.tables and not table_matches(route.tables, event):
            return None
        if route.exclude_tables and table_matches(route.exclude_tables, event):
            return None
        if self._when is None:
            return event
        if not self._on_row:
            return event if self._when(event) else None
        if event.op is Op.DELETE:
            return event if _key_only(event.before, event.key) or self._matches(event.before, event) else None
        if self._when(event):
            return event
        if event.op is not Op.UPDATE or _drops_deletes(event):
            return None
        if event.before is None or _key_only(event.before, event.key) or self._matches(event.before, event):
            return _as_delete(event)  # the row left the route's condition (or may have): remove it
        return None

    def _matches(self, row: dict[str, Any] | None, event: ChangeEvent) -> bool:
        assert self._when is not None
        return bool(self._when(dataclasses.replace(event, after=row, encoded=None)))

    def open(self) -> None:
        self.inner.open()

    def write(self, batch: Sequence[ChangeEvent]) -> None:
        taken = [routed for event in batch if (routed := self.route_event(event)) is not None]
        if taken:
            self.inner.write(taken)

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def _key_only(row: dict[str, Any] | None, key: dict[str, Any] | None) -> bool:
    """A row image that holds nothing but the key (or nothing): the other columns are unknown."""
    return not row or (key is not None and set(row) <= set(key))


def _drops_deletes(event: ChangeEvent) -> bool:
    """unwrap with `delete.handling.mode: drop` ran: deletes are not wanted downstream."""
    return getattr(event.flat, "mode", None) == "drop"


def _as_delete(event: ChangeEvent) -> ChangeEvent:
    before = event.before if event.before else dict(event.key or {})
    return dataclasses.replace(event, op=Op.DELETE, before=before, after=None, encoded=None, unchanged=())


def routed(sink: Sink, route: RouteConfig | None) -> Sink:
    return sink if route is None else RoutedSink(sink, route)
