"""A parse cache for the binlog's TABLE_MAP events.

The server writes a TABLE_MAP event before the row events of every transaction, for every table the
transaction touches: the same bytes again and again while the table keeps its shape. Parsing one
(python-mysql-replication's `TableMapEvent.__init__`, plus binlog_values.py's corrections) was ~15% of
the binlog stream's CPU on small transactions (docs/benchmarks.md, Profile). Here an event whose body
bytes, and the stream's filter settings, equal an earlier one's takes that one's parsed state instead:
the parse is a function of exactly those, so the result is the same. A table whose shape changed
(ALTER TABLE) sends different bytes, and is parsed again.

Only events the library kept (a table it filters out is never cached), at most `MAX_ENTRIES` of them
(cleared when full: shapes change rarely, so the cache refills at once).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

MAX_ENTRIES = 1024
_FILTERS = (
    "only_tables",
    "ignored_tables",
    "only_schemas",
    "ignored_schemas",
    "freeze_schema",
    "optional_meta_data",
)
_cache: dict[tuple[Any, ...], dict[str, Any]] = {}


def _body(from_packet: Any, size: int) -> bytes | None:
    """The event's bytes after its header, not consumed; None when the packet is not pymysql's."""
    packet = getattr(from_packet, "packet", None)
    data, at = getattr(packet, "_data", None), getattr(packet, "_position", None)
    if not isinstance(data, bytes | bytearray) or not isinstance(at, int):
        return None
    return bytes(data[at : at + int(size)])


def _filters(kwargs: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(tuple(v) if isinstance(v, list) else v for v in (kwargs.get(k) for k in _FILTERS))


def cached(init: Callable[..., None]) -> Callable[..., None]:
    """`TableMapEvent.__init__` (with its post-processing), answered from the cache on a repeat."""

    def _table_map_init(
        self: Any, from_packet: Any, event_size: int, table_map: Any, *args: Any, **kwargs: Any
    ) -> None:
        body = _body(from_packet, event_size)
        key = None if body is None else (body, _filters(kwargs))
        state = None if key is None else _cache.get(key)
        if state is not None:
            self.__dict__.update(state)
            self.packet, self.timestamp = from_packet, from_packet.timestamp  # this event's own
            table_map[self.table_id] = self.table_obj  # what parsing would have recorded
            return
        init(self, from_packet, event_size, table_map, *args, **kwargs)
        if key is not None and self._processed and getattr(self, "columns", None):
            if len(_cache) >= MAX_ENTRIES:
                _cache.clear()
            _cache[key] = dict(self.__dict__)

    _table_map_init.__wrapped__ = init  # type: ignore[attr-defined]
    return _table_map_init
