"""File sink: JSON lines, fsync'd before `write` returns, rotated by size, optionally compressed.

The active file is `path`; when it would grow past `max_bytes` it is renamed to `path.NNNNNN` (a
monotonically increasing segment number, so `ls` orders segments by age) and a new one is started.
Each line is one Debezium JSON envelope; a line torn by a crash is cut off on the next open.
A replayed batch (after a crash) is appended again: readers of the files dedup by the envelope's
source position if they need exactly-once. With `schemas: true` each line is the JsonConverter form
`{"schema": ..., "payload": <envelope>}` (cdc_logs.connect_schema, docs/schemas.md).
With `compression`, each batch is one compressed frame (cdc_logs/compression.py) appended to
`path` + .gz/.zst/.lz4/.sz; a frame torn by a crash is cut off on the next open.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Literal

from pydantic import ConfigDict, Field

from cdc_logs import connect_schema, registry
from cdc_logs.compression import codec
from cdc_logs.configmodel import SinkConfigBase
from cdc_logs.envelope import ChangeEvent
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.sinks.base import Sink


class FileSink(Sink):
    def __init__(
        self,
        path: str | Path,
        *,
        max_bytes: int = 256 * 1024 * 1024,
        max_files: int | None = None,
        fsync: bool = True,
        schemas: bool = False,
        name: str = "file",
        compression: str | None = None,
    ) -> None:
        self.path = Path(path)
        # One compressed frame per batch (compression.py): a crash tears at most the last frame.
        self._codec = codec(compression) if compression else None
        if self._codec is not None and not self.path.name.endswith(self._codec.suffix):
            self.path = self.path.with_name(self.path.name + self._codec.suffix)
        self.schemas = schemas
        self.max_bytes = max_bytes
        self.max_files = max_files
        self.fsync = fsync
        self.name = name
        self._fh: IO[bytes] | None = None
        self._size = 0

    def open(self) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "ab")  # noqa: SIM115 - held open across batches
        except OSError as exc:
            raise CdcError(
                ErrorKind.SINK_REJECTED,
                f"cannot open {self.path}: {exc.strerror}",
                "check destination.path and that the directory is writable",
            ) from exc
        self._size = self._fh.tell()
        self._drop_torn_tail()

    def _drop_torn_tail(self) -> None:
        """A crash mid-write can leave half a line; that batch was never committed, so it is replayed.

        Cut the file back to its last complete line so every line stays one valid envelope.
        """
        assert self._fh is not None
        if self._size == 0:
            return
        if self._codec is not None:  # cut back to the end of the last complete frame
            with open(self.path, "rb") as reader:
                end = self._codec.complete_prefix_of(reader)
            if end < self._size:
                self._fh.truncate(end)
                self._fh.seek(end)
                self._size = end
            return
        with open(self.path, "rb") as reader:
            reader.seek(max(0, self._size - 1))
            if reader.read(1) == b"\n":
                return
            block = 64 * 1024
            end = self._size
            while end > 0:
                start = max(0, end - block)
                reader.seek(start)
                chunk = reader.read(end - start)
                cut = chunk.rfind(b"\n")
                if cut >= 0:
                    end = start + cut + 1
                    break
                end = start
        self._fh.truncate(end)
        self._fh.seek(end)
        self._size = end

    def write(self, batch: Sequence[ChangeEvent]) -> None:
        if self._fh is None:
            self.open()
        if self.schemas:
            data = b"".join(connect_schema.envelope_record(event) + b"\n" for event in batch)
        else:
            data = b"".join(event.to_json() + b"\n" for event in batch)
        if self._codec is not None:
            data = self._codec.compress(data)
        if self._size and self._size + len(data) > self.max_bytes:
            self._rotate()
        fh = self._fh
        assert fh is not None
        try:
            fh.write(data)
            fh.flush()
            if self.fsync:
                os.fsync(fh.fileno())
        except OSError as exc:
            self._undo_partial_write()
            raise CdcError(
                ErrorKind.SINK_TRANSIENT,
                f"write to {self.path} failed: {exc.strerror}",
                "free disk space or fix permissions; the batch is retried",
            ) from exc
        self._size += len(data)

    def _undo_partial_write(self) -> None:
        """A failed write (a full disk) may have put part of the batch in the file: cut the file back
        to the last complete batch, so the retry does not leave half a line in the middle."""
        fh, self._fh = self._fh, None
        if fh is not None:
            with contextlib.suppress(OSError):
                fh.close()  # its buffer may still fail to flush: what it held is cut below
        with contextlib.suppress(OSError):
            os.truncate(self.path, self._size)

    def segments(self) -> list[Path]:
        """Rotated segments, oldest first."""
        pattern = re.compile(re.escape(self.path.name) + r"\.(\d{6,})$")
        found = [(int(m.group(1)), p) for p in self.path.parent.iterdir() if (m := pattern.match(p.name))]
        return [p for _, p in sorted(found)]

    def _rotate(self) -> None:
        assert self._fh is not None
        self._fh.close()
        existing = self.segments()
        last = int(existing[-1].name.rsplit(".", 1)[1]) if existing else 0
        os.replace(self.path, self.path.with_name(f"{self.path.name}.{last + 1:06d}"))
        if self.max_files is not None:
            for old in self.segments()[: -self.max_files] if self.max_files > 0 else self.segments():
                old.unlink()
        self._fh = open(self.path, "ab")  # noqa: SIM115
        self._size = 0
        if self.fsync:
            dir_fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


# -- config ----------------------------------------------------------------------------------------
class FileSinkConfig(SinkConfigBase):
    """JSON lines, one Debezium envelope per line, fsync'd before each write returns, rotated by size."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"type": "file", "path": "/var/lib/cdc/changes.jsonl"}]}
    )

    type: Literal["file"] = Field(description="Selects this destination.")
    path: str = Field(
        description="The active file (its directory is created); rotated segments are path.000001, "
        ".000002, ... (oldest first).",
        examples=["/var/lib/cdc/changes.jsonl"],
    )
    max_bytes: int = Field(
        256 * 1024 * 1024,
        ge=1024,
        description="Bytes: when the next batch would take the file past this size, it is renamed to the "
        "next segment first (a single batch is never split).",
        examples=[1_073_741_824],
    )
    max_files: int | None = Field(
        None,
        ge=0,
        description="Rotated segments to keep; older ones are deleted at rotation (0 keeps none). Default: "
        "all of them.",
        examples=[10],
    )
    fsync: bool = Field(
        True,
        description="fsync each batch (and the directory at rotation) before the write returns; false "
        "trades durability on a machine crash for speed.",
    )
    compression: Literal["gzip", "zstd", "lz4", "snappy", "none"] | None = Field(
        None,
        description="Compress each batch as one frame (gzip member, zstd or lz4 frame, snappy stream), "
        "so the files are read by zcat, zstdcat, lz4cat (snappy: python-snappy) and a crash can only tear "
        "the last batch, which is cut off when the sink opens. The file name gets .gz/.zst/.lz4/.sz "
        "unless `path` ends so. Default: sync.compression's algorithm when it is enabled, else none; "
        "`none` keeps this file plain.",
        examples=["gzip"],
    )
    schemas: bool = Field(
        False,
        description="Each line as Kafka Connect's JsonConverter form "
        '{"schema": ..., "payload": <envelope>}, the schema built from the catalog of the source '
        "(docs/schemas.md); needs events with a table schema.",
        examples=[True],
    )


@registry.sink(FileSinkConfig, capabilities={"log", "ordered"})
def build(cfg: FileSinkConfig, ctx: registry.BuildContext) -> FileSink:
    name = cfg.name or cfg.type
    return FileSink(
        cfg.path,
        max_bytes=cfg.max_bytes,
        max_files=cfg.max_files,
        fsync=cfg.fsync,
        schemas=cfg.schemas,
        name=name,
        compression=None if cfg.compression in (None, "none") else cfg.compression,
    )
