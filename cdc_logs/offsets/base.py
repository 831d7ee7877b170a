"""The OffsetStore contract: durable, per (pipeline, source) committed positions.

`save` returns only when the position is durable (fsync'd / committed). The server identity is stored
beside the position so a resume against another server is refused before anything is read.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import orjson

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.position import Position, decode, kinds


@dataclass(frozen=True, slots=True)
class StoredOffset:
    pipeline: str
    source: str
    position: str  # Position.encode()
    server: str
    updated_ms: int

    def decoded(self) -> Position:
        """The position; a stored text that is not one (a damaged or hand-edited store) is
        POSITION_LOST naming the fix, never a silent start from the beginning."""
        try:
            return decode(self.position)
        except CdcError as exc:
            raise CdcError(
                ErrorKind.POSITION_LOST,
                f"the committed position of {self.pipeline}/{self.source} is unreadable: "
                f"{decode_problem(exc, self.position)}",
                f"set a valid one with `cdc-logs offsets set -c <pipeline.yaml> --source {self.source} "
                "--position JSON`, or start over with `cdc-logs offsets reset -c <pipeline.yaml> "
                f"--source {self.source}`",
            ) from exc


def decode_problem(exc: CdcError, text: str) -> str:
    """What is wrong with a position `text` that `decode` refused (`exc`), in a few words."""
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError:
        return "not JSON"
    if not isinstance(data, dict):
        return "not a JSON object"
    if "type" not in data:
        return "no position type"
    if data["type"] not in kinds():
        return f"unknown position type {data['type']!r} (known: {', '.join(kinds())})"
    cause = exc.__cause__
    if isinstance(cause, KeyError) and cause.args:
        return f"missing field {cause.args[0]!r}"
    if isinstance(cause, TypeError | ValueError | AttributeError):
        return re.sub(r"^\w+\.__init__\(\) ", "", str(cause))
    return exc.message


def damaged_store(path: Path, problem: str) -> CdcError:
    """A sqlite/file offset store that cannot be read: the operator restores or removes it."""
    return CdcError(
        ErrorKind.POSITION_LOST,
        f"the offset store {path} is damaged ({problem}); the committed positions cannot be read",
        f"restore {path} from a backup; or, to start over (a new snapshot, or the log's current end), "
        "move it away and run again",
    )


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
