"""table_maps.py: a repeated TABLE_MAP (same bytes, same filters) is not parsed again, and takes the
first one's parsed state with its own packet and time; other bytes or filters are parsed."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from cdc_logs.readers.mysql import table_maps


class _Event:
    """Stands in for TableMapEvent: only what the cache reads and writes."""


def _packet(body: bytes, timestamp: int) -> Any:
    raw = SimpleNamespace(_data=b"HEADER" + body + b"CRC!", _position=6)
    return SimpleNamespace(packet=raw, timestamp=timestamp)


def test_a_repeated_table_map_takes_the_parsed_state_without_parsing() -> None:
    parsed: list[bytes] = []

    def init(
        self: Any, from_packet: Any, size: int, table_map: dict[int, Any], *args: Any, **kw: Any
    ) -> None:
        body = from_packet.packet._data[6 : 6 + size]
        parsed.append(body)
        self.packet, self.timestamp, self._processed = from_packet, from_packet.timestamp, True
        self.table_id, self.columns = 7, [body.decode()]
        self.table_obj = SimpleNamespace(columns=self.columns)
        table_map[7] = self.table_obj

    table_maps._cache.clear()
    init_cached = table_maps.cached(init)
    table_map: dict[int, Any] = {}
    first, second, other, filtered = _Event(), _Event(), _Event(), _Event()
    init_cached(first, _packet(b"shape-1", 100), 7, table_map, only_tables=["t"])
    table_map.clear()
    init_cached(second, _packet(b"shape-1", 200), 7, table_map, only_tables=["t"])
    assert parsed == [b"shape-1"]  # the repeat was not parsed
    assert second.columns is first.columns and table_map[7] is first.table_obj
    assert second.timestamp == 200 and second.packet is not first.packet  # its own
    init_cached(other, _packet(b"shape-2", 300), 7, table_map, only_tables=["t"])  # ALTER TABLE
    init_cached(filtered, _packet(b"shape-1", 400), 7, table_map, only_tables=["u"])  # other filters
    assert parsed == [b"shape-1", b"shape-2", b"shape-1"]
    assert other.columns == ["shape-2"]


def test_an_event_the_library_filtered_out_is_never_cached() -> None:
    calls = []

    def init(
        self: Any, from_packet: Any, size: int, table_map: dict[int, Any], *args: Any, **kw: Any
    ) -> None:
        calls.append(1)
        self._processed = False  # a table the stream does not capture: nothing parsed

    table_maps._cache.clear()
    init_cached = table_maps.cached(init)
    for n in range(3):
        init_cached(_Event(), _packet(b"other-table", n), 11, {})
    assert len(calls) == 3 and not table_maps._cache
