"""File offset store: one JSON document, replaced atomically (write temp, fsync, rename, fsync dir)."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import orjson

from cdc_logs.offsets.base import OffsetStore, StoredOffset, damaged_store
from cdc_logs.position import Position


def _valid_row(key: object, row: object) -> bool:
    return (
        isinstance(key, str)
        and "/" in key
        and isinstance(row, dict)
        and isinstance(row.get("position"), str)
        and isinstance(row.get("server"), str)
        and isinstance(row.get("updated_ms"), int)
    )


class FileOffsetStore(OffsetStore):
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._read()  # a damaged store is refused now, before any source is opened

    def _read(self) -> dict[str, dict[str, object]]:
        """The document; a damaged one (truncated, not JSON, rows without their fields) is
        POSITION_LOST naming the fix, never an empty store that would start over silently."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        if not raw.strip():
            raise damaged_store(self.path, "it is empty")  # written by rename: never empty when whole
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise damaged_store(self.path, f"not valid JSON: {exc}") from exc
        if not isinstance(data, dict) or not all(_valid_row(k, v) for k, v in data.items()):
            raise damaged_store(
                self.path,
                'not an offsets document: expected {"pipeline/source": {"position": "...", '
                '"server": "...", "updated_ms": 0}, ...}',
            )
        return data

    def _write(self, data: dict[str, dict[str, object]]) -> None:
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        dir_fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)  # make the rename itself durable
        finally:
            os.close(dir_fd)

    @staticmethod
    def _key(pipeline: str, source: str) -> str:
        return f"{pipeline}/{source}"

    def load(self, pipeline: str, source: str) -> StoredOffset | None:
        with self._lock:
            row = self._read().get(self._key(pipeline, source))
        return (
            StoredOffset(
                pipeline, source, str(row["position"]), str(row["server"]), int(str(row["updated_ms"]))
            )
            if row
            else None
        )

    def save(self, pipeline: str, source: str, position: Position) -> None:
        with self._lock:
            data = self._read()
            data[self._key(pipeline, source)] = {
                "position": position.encode(),
                "server": position.server,
                "updated_ms": int(time.time() * 1000),
            }
            self._write(data)

    def delete(self, pipeline: str, source: str | None = None) -> int:
        with self._lock:
            data = self._read()
            doomed = [
                k
                for k in data
                if k == self._key(pipeline, source or "") or (source is None and k.startswith(pipeline + "/"))
            ]
            for key in doomed:
                del data[key]
            if doomed:
                self._write(data)
            return len(doomed)

    def list(self, pipeline: str | None = None) -> list[StoredOffset]:
        with self._lock:
            data = self._read()
        out = []
        for key, row in sorted(data.items()):
            pipe, _, source = key.partition("/")
            if pipeline is None or pipe == pipeline:
                out.append(
                    StoredOffset(
                        pipe, source, str(row["position"]), str(row["server"]), int(str(row["updated_ms"]))
                    )
                )
        return out
