"""Appends records to the audit log (audit_log.py has the format): segments that rotate by size and
count and are sealed (and signed) when they rotate or the pipeline stops, fsync'd per batch, and
recovered on start against the checkpointed head.

Recovery after a crash. The stage's checkpointed state names the last record committed with the
positions (seq and hash). Records after it were written for batches whose positions were not committed:
the source sends those changes again. They are kept (the log is append-only), their change ids become
`pending`, and the stage skips each replayed change whose id is pending instead of logging it again.
So the log holds each change once, in the order it was first read, and stays one valid chain. A torn
last line (a crash in the middle of a write, never fsync'd as complete, so never committed) is cut off.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import os
from collections import Counter
from pathlib import Path
from typing import IO, Any

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.middleware import audit_log as fmt
from cdc_logs.observability.logging import get_logger

log = get_logger(__name__)


class AuditWriter:
    """The writing end of one audit log directory."""

    def __init__(
        self,
        directory: Path,
        *,
        private_key: Any | None,
        immutable: bool,
        max_records: int,
        max_bytes: int,
        pipeline: str,
    ) -> None:
        self.directory = directory
        self.private_key = private_key
        self.key_id = None
        if private_key is not None:
            from cryptography.hazmat.primitives import serialization

            raw = private_key.public_key().public_bytes(
                serialization.Encoding.Raw, serialization.PublicFormat.Raw
            )
            self.key_id = fmt.key_id(raw)
        self.immutable = immutable
        self.max_records = max_records
        self.max_bytes = max_bytes
        self.pipeline = pipeline
        self.seq = 0  # the last change record's number
        self.head = fmt.GENESIS  # the last change record's hash
        self.last_hash = fmt.GENESIS  # the last line's hash (a header or seal too)
        self.segment = 0
        self._fh: IO[bytes] | None = None
        self._anchor = fmt.GENESIS
        self._records = 0  # change records in the open segment
        self._bytes = 0
        self._digest = hashlib.sha256()

    # -- start ----------------------------------------------------------------------------------------
    def recover(self, committed: tuple[int, str] | None) -> Counter[str]:
        """Open the log for appending. `committed`: (seq, hash) of the last record committed with the
        positions, or None when unknown. Returns the change ids written after it (pending replays)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        found = fmt.segments(self.directory)
        if not found:
            if committed is not None and committed[0] > 0:
                raise CdcError(
                    ErrorKind.INTEGRITY,
                    f"the audit log in {self.directory} is gone, but the checkpoint committed record "
                    f"{committed[0]}",
                    "restore the audit directory from its backup (never delete an audit log by hand; "
                    "retention removes old segments only)",
                )
            return Counter()
        self._repair_tail(found[-1][1])
        found = fmt.segments(self.directory)
        if not found:
            return Counter()
        pending: Counter[str] = Counter()
        target = committed[0] if committed is not None else 0
        # From the newest segment back to the one holding the record after the committed one.
        for index in range(len(found) - 1, -1, -1):
            number, path = found[index]
            data = path.read_bytes()
            header, changes, sealed_hash, last_hash = _parse(path, data)
            if index == len(found) - 1:
                self.segment = number
                self._anchor = str(header["prev"])
                self.last_hash = sealed_hash or last_hash
                self.seq = changes[-1][0] if changes else int(header.get("first_seq", 1)) - 1
                self.head = changes[-1][2] if changes else str(header.get("prev_change", fmt.GENESIS))
                if sealed_hash is not None and self.immutable:
                    os.chmod(path, 0o444)  # sealed just before a crash that came before its chmod
                if sealed_hash is None:
                    self._records = len(changes)
                    self._bytes = len(data)
                    self._digest = hashlib.sha256(data)
                    self._fh = open(path, "ab")  # noqa: SIM115 - kept open while the segment is
            for seq, change_id, digest in reversed(changes):
                if seq <= target:
                    if seq == target and committed is not None and digest != committed[1]:
                        raise self._mismatch(path, seq)
                    break
                pending[change_id] += 1
            first = int(header.get("first_seq", 1))
            if first <= target + 1:
                starts_after = first == target + 1 and committed is not None and target > 0
                if starts_after and committed is not None and header.get("prev_change") != committed[1]:
                    raise self._mismatch(path, target)
                break
        if committed is not None and committed[0] > self.seq:
            raise CdcError(
                ErrorKind.INTEGRITY,
                f"the audit log in {self.directory} ends at record {self.seq}, but the checkpoint committed "
                f"record {committed[0]}: records were removed",
                f"run `cdc-logs audit verify {self.directory}` and restore the log from its backup",
            )
        if pending:
            log.info(
                "audit log: records written for uncommitted changes are kept; their replays are not "
                "logged again",
                records=sum(pending.values()),
            )
        return pending

    def _mismatch(self, path: Path, seq: int) -> CdcError:
        return CdcError(
            ErrorKind.INTEGRITY,
            f"audit record {seq} (at {path.name}) is not the one committed with the positions (its hash "
            "differs): the log was altered or replaced",
            f"run `cdc-logs audit verify {self.directory}` and restore the log from its backup",
        )

    def _repair_tail(self, path: Path) -> None:
        """Cut an incomplete or unreadable last line (a crash mid-write): it was never complete on
        disk, so never committed, and its change comes again."""
        data = path.read_bytes()
        if not data:  # created, then the crash came before its header was written
            path.unlink()
            return
        good = 0
        for offset, raw, complete in fmt.lines(data):
            try:
                if not complete:
                    raise ValueError("incomplete")
                fmt.decode_line(raw)
            except ValueError:
                if offset + len(raw) + (1 if complete else 0) < len(data):
                    return  # damage before the end is not a torn write: verify reports it, never cut
                break
            good = offset + len(raw) + 1
        else:
            return
        log.warning("audit log: cutting an incomplete last line left by a crash", path=str(path), at=good)
        if good == 0:
            path.unlink()
            return
        with open(path, "r+b") as fh:
            fh.truncate(good)
            fh.flush()
            os.fsync(fh.fileno())

    # -- writing -------------------------------------------------------------------------------------
    def write(self, bodies: list[dict[str, Any]]) -> None:
        """Append change records and make them durable (fsync) before returning."""
        if not bodies:
            return
        for body in bodies:
            if self._fh is None:
                self._start_segment()
            body["kind"] = "change"
            body["seq"] = self.seq + 1
            body["prev"] = self.last_hash
            line, digest = fmt.encode_record(body)
            self._append(line)
            self.seq, self.head, self.last_hash = self.seq + 1, digest, digest
            self._records += 1
            if self._records >= self.max_records or self._bytes >= self.max_bytes:
                self.seal()
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())

    def _append(self, line: bytes) -> None:
        assert self._fh is not None
        self._fh.write(line)
        self._digest.update(line)
        self._bytes += len(line)

    def _start_segment(self) -> None:
        self.segment += 1
        path = fmt.segment_path(self.directory, self.segment)
        self._fh = open(path, "xb")  # noqa: SIM115 - a segment is never overwritten
        self._anchor = self.last_hash
        self._records, self._bytes, self._digest = 0, 0, hashlib.sha256()
        header = {
            "kind": "segment",
            "format": fmt.FORMAT,
            "segment": self.segment,
            "prev": self.last_hash,
            "prev_change": self.head,
            "first_seq": self.seq + 1,
            "created": _now(),
            "pipeline": self.pipeline,
            "key_id": self.key_id,
        }
        line, digest = fmt.encode_record(header)
        self._append(line)
        self.last_hash = digest
        self._fh.flush()
        os.fsync(self._fh.fileno())
        fmt.fsync_dir(self.directory)

    def seal(self) -> None:
        """Close the open segment with its seal (and signature); read-only when immutable."""
        if self._fh is None:
            return
        digest = self._digest.hexdigest()
        signature = None
        if self.private_key is not None:
            message = fmt.seal_message(self.segment, self._anchor, self.last_hash, self._records, digest)
            signature = base64.b64encode(self.private_key.sign(message)).decode()
        seal = {
            "kind": "seal",
            "segment": self.segment,
            "prev": self.last_hash,
            "records": self._records,
            "last_seq": self.seq,
            "digest": digest,
            "signature": signature,
            "key_id": self.key_id,
            "sealed": _now(),
        }
        line, hashed = fmt.encode_record(seal)
        self._fh.write(line)
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self._fh.close()
        self._fh = None
        self.last_hash = hashed
        if self.immutable:
            os.chmod(fmt.segment_path(self.directory, self.segment), 0o444)

    def close(self) -> None:
        """Seal the open segment (the pipeline stops)."""
        with contextlib.suppress(OSError):
            self.seal()


def _parse(path: Path, data: bytes) -> tuple[dict[str, Any], list[tuple[int, str, str]], str | None, str]:
    """(header, [(seq, change id, hash)], the seal's hash or None, the last line's hash) of a segment
    the writer recovers from (verify checks it thoroughly; this only needs it readable)."""
    header: dict[str, Any] | None = None
    changes: list[tuple[int, str, str]] = []
    sealed: str | None = None
    last = fmt.GENESIS
    for _, raw, _ in fmt.lines(data):
        try:
            record, digest = fmt.decode_line(raw)
        except ValueError as exc:
            raise CdcError(
                ErrorKind.INTEGRITY,
                f"the audit log segment {path} is damaged: {exc}",
                f"run `cdc-logs audit verify {path.parent}`; restore the segment from its backup",
            ) from None
        kind = record.get("kind")
        if header is None:
            header = record
        elif kind == "change":
            changes.append((int(record["seq"]), str(record.get("change", "")), digest))
        elif kind == "seal":
            sealed = digest
        last = digest
    if header is None or header.get("kind") != "segment":
        raise CdcError(
            ErrorKind.INTEGRITY,
            f"the audit log segment {path} has no header",
            f"run `cdc-logs audit verify {path.parent}`",
        )
    return header, changes, sealed, last


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
