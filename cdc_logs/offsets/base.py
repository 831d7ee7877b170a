"""The OffsetStore contract: durable, per (pipeline, source) committed positions.

`save` returns only when the position is durable (fsync'd / committed). The server identity is stored
beside the position so a resume against another server is refused before anything is read.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.position import Position, decode


@dataclass(frozen=True, slots=True)
class StoredOffset:
    pipeline: str
    source: str
    position: str  # Position.encode()
    server: str
    updated_ms: int

    def decoded(self) -> Position:
        return decode(self.position)


class OffsetStore(ABC):
    @abstractmethod
    def load(self, pipeline: str, source: str) -> StoredOffset | None: ...

    @abstractmethod
    def save(self, pipeline: str, source: str, position: Position) -> None: ...

    @abstractmethod
    def delete(self, pipeline: str, source: str | None = None) -> int: ...

    @abstractmethod
    def list(self, pipeline: str | None = None) -> list[StoredOffset]: ...

    def close(self) -> None:  # noqa: B027 - optional hook
        pass

    def resume_position(self, pipeline: str, source: str, server: str) -> Position | None:
        """The stored position, refusing one taken on another server."""
        stored = self.load(pipeline, source)
        if stored is None:
            return None
        if stored.server != server:
            raise CdcError(
                ErrorKind.SERVER_MISMATCH,
                f"offset of {pipeline}/{source} was taken on server {stored.server}, "
                f"but the source is now server {server}",
                "if this is intended, start over with "
                f"`cdc-logs offsets reset -c <pipeline.yaml> --source {source}`",
            )
        return stored.decoded()
