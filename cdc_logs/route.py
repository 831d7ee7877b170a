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
written). `tables` routes them together anyway (one table); a `when` expression sees each half's
own row (before for the delete, after for the create), as it sees an update's after.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from cdc_logs.envelope import ChangeEvent
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
        description="Take only events for which this expression is true (the filter transform's "
        "language, docs/transforms.md), e.g. `after.region == 'eu'`. Default: no condition.",
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
        self._ops = frozenset(route.ops)

    def takes(self, event: ChangeEvent) -> bool:
        from cdc_logs.transforms.base import table_matches
        from cdc_logs.transforms.expression import op_of

        route = self.route
        if self._ops and op_of(event) not in self._ops:
            return False
        if route.tables and not table_matches(route.tables, event):
            return False
        if route.exclude_tables and table_matches(route.exclude_tables, event):
            return False
        return self._when is None or bool(self._when(event))

    def open(self) -> None:
        self.inner.open()

    def write(self, batch: Sequence[ChangeEvent]) -> None:
        taken = [event for event in batch if self.takes(event)]
        if taken:
            self.inner.write(taken)

    def close(self) -> None:
        self.inner.close()

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)


def routed(sink: Sink, route: RouteConfig | None) -> Sink:
    return sink if route is None else RoutedSink(sink, route)
