"""`event_sourcing`: read an event-store table (the seed's "Event Sourcing Pattern") as a stream of
domain events.

Each row of an event store is one domain event: an aggregate id, an event type, its data and the
aggregate's version. The transform:

- checks that every row carries the four columns named in `params` (a missing one stops the run
  with a CONFIG error naming the table and column: a misnamed field would otherwise pass events on
  without their identity);
- keys the event by (aggregate, version), the event store's identity: a sink that upserts by key (SQL
  apply, Redis) keeps every event instead of collapsing an aggregate's history into its last event,
  and a replayed poll rewrites the same record. For Kafka partitions per aggregate (each aggregate's
  events in order), set the Kafka destination's `key_field` to the aggregate column;
- checks, per aggregate, that versions increase within a run: a version not above the last one seen
  (a duplicate or a reordering in the store or the query) stops the run with a DECODE error naming
  the aggregate and both versions, since a consumer rebuilding the aggregate would apply it wrongly;
- warns once per table about updates and deletes, which an append-only event store should not have
  (they are passed on unchanged: nothing is dropped).

Nothing else is changed: the row's values (event_data included) reach the sinks as stored.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Literal

from pydantic import ConfigDict, Field

from cdc_logs import registry
from cdc_logs.configmodel import ConfigModel
from cdc_logs.envelope import ChangeEvent
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.logging import get_logger
from cdc_logs.transforms.base import Transform

log = get_logger(__name__)

#: Aggregates whose last version is remembered (the oldest are forgotten past it: memory stays bounded).
MAX_AGGREGATES = 100_000


class EventSourcingTransform(Transform):
    def __init__(
        self, *, aggregate_field: str, event_type_field: str, event_data_field: str, version_field: str
    ):
        self.aggregate_field = aggregate_field
        self.version_field = version_field
        self.fields = (aggregate_field, event_type_field, event_data_field, version_field)
        self._versions: OrderedDict[tuple[str, Any], Any] = OrderedDict()
        self._warned: set[str] = set()

    def apply(self, event: ChangeEvent) -> ChangeEvent | None:
        table = event.source.qualified_table
        if event.op in ("u", "d") and table not in self._warned:
            self._warned.add(table)
            log.warning(
                "event_sourcing: an event store is append-only, but %s has %s: passed on unchanged",
                table,
                "updates" if event.op == "u" else "deletes",
            )
        row = event.after if event.after is not None else event.before
        if row is None:  # a truncate or a message: no stored event in it
            return event
        missing = [f for f in self.fields if f not in row]
        if missing:
            raise CdcError(
                ErrorKind.CONFIG,
                f"event_sourcing: {table} has no column {missing[0]!r} (its columns: {sorted(row)})",
                "fix the event_sourcing params (aggregate_field, event_type_field, event_data_field, "
                "version_field) to name the event store's columns",
            )
        aggregate, version = row[self.aggregate_field], row[self.version_field]
        if event.op in ("c", "r"):
            self._check_order(table, aggregate, version)
        event.key = {self.aggregate_field: aggregate, self.version_field: version}
        return event

    def _check_order(self, table: str, aggregate: Any, version: Any) -> None:
        slot = (table, aggregate)
        last = self._versions.get(slot)
        try:
            regressed = last is not None and not version > last
        except TypeError:  # versions of different types (the column changed type): not comparable
            regressed = False
        if regressed:
            raise CdcError(
                ErrorKind.DECODE,
                f"event_sourcing: {table} aggregate {aggregate!r} has version {version!r} after {last!r}: "
                "a duplicate or out-of-order event",
                "order the event store query by the aggregate's version (ORDER BY created_at, "
                "event_version), and check the store for a duplicate version",
            )
        self._versions[slot] = version
        self._versions.move_to_end(slot)
        if len(self._versions) > MAX_AGGREGATES:
            self._versions.popitem(last=False)


class EventSourcingParams(ConfigModel):
    """The event store's columns."""

    aggregate_field: str = Field(
        description="Column holding the aggregate (entity) id the event belongs to.",
        examples=["aggregate_id"],
    )
    event_type_field: str = Field(
        description="Column holding the event's type; checked present.", examples=["event_type"]
    )
    event_data_field: str = Field(
        description="Column holding the event's data (passed on as stored); checked present.",
        examples=["event_data"],
    )
    version_field: str = Field(
        description="Column holding the aggregate's version, increasing per aggregate; a version not above "
        "the last one seen for its aggregate in this run stops the run (a decode error).",
        examples=["event_version"],
    )


class EventSourcingTransformConfig(ConfigModel):
    """Read an event-store table as domain events: key (aggregate, version), per-aggregate order checked."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "event_sourcing",
                    "params": {
                        "aggregate_field": "aggregate_id",
                        "event_type_field": "event_type",
                        "event_data_field": "event_data",
                        "version_field": "event_version",
                    },
                }
            ]
        }
    )

    type: Literal["event_sourcing"] = Field(description="Selects this transform.")
    params: EventSourcingParams = Field(description="Which columns of the event store hold what.")


@registry.transform(EventSourcingTransformConfig)
def build(cfg: EventSourcingTransformConfig) -> EventSourcingTransform:
    return EventSourcingTransform(**cfg.params.model_dump())
