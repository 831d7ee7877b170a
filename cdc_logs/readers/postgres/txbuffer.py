"""Buffers for streamed (in-progress) transactions: bounded memory, spill to disk, subtransaction aborts.

With pgoutput protocol 2+ and `streaming 'on'`, the server sends a large transaction in blocks while
it is still running (Stream Start ... Stream Stop, interleaved with other transactions), then Stream
Commit or Stream Abort. Nothing of it may reach the sinks before the commit, so its messages wait
here, per top-level xid, as the raw pgoutput payloads (decoding happens once, at commit).

Memory is bounded by `max_memory_bytes` over all open transactions: past it, the largest buffered
transaction moves to an anonymous temporary file (unlinked at creation, so a crash leaves nothing on
disk) and the rest of it is appended there. A file holds length-prefixed records:

    Int64 LSN, UInt32 subxid, UInt32 length, then `length` payload bytes

Stream Abort (xid, subxid) drops the whole transaction when subxid == xid; otherwise only the messages
tagged with that subtransaction's xid (inside a stream block each DML / Relation / Type / Message
carries the xid of the subtransaction that made it). In memory those messages are dropped at once; in
a file they are skipped on replay. Pure: no database I/O, unit-tested in tests/unit/test_pg_txbuffer.py.
"""

from __future__ import annotations

import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Final

from cdc_logs.errors import CdcError, ErrorKind

__all__ = ["StreamBuffers", "subxid_of"]

_RECORD: Final = struct.Struct(">QII")
_XID: Final = struct.Struct(">I").unpack_from
_WITH_XID: Final = frozenset(b"RYIUDTM")  # in a stream block these carry the (sub)transaction xid
_OVERHEAD: Final = 96  # per buffered message: tuple + bytes object headers, roughly
_WRITE_BUFFER: Final = 1 << 20


def subxid_of(payload: bytes, top_xid: int) -> int:
    """The xid a streamed pgoutput message is tagged with (its top-level xid for untagged kinds)."""
    if len(payload) >= 5 and payload[0] in _WITH_XID:
        return int(_XID(payload, 1)[0])
    return top_xid


@dataclass(slots=True)
class _Tx:
    memory: list[tuple[int, int, bytes]] = field(default_factory=list)  # (lsn, subxid, payload)
    memory_bytes: int = 0
    file: IO[bytes] | None = None
    file_bytes: int = 0
    messages: int = 0
    aborted: set[int] = field(default_factory=set)


class StreamBuffers:
    """Open streamed transactions by top-level xid; see the module docstring."""

    def __init__(self, max_memory_bytes: int = 32 << 20, spill_dir: str | None = None) -> None:
        if max_memory_bytes < 0:
            raise ValueError("max_memory_bytes must be >= 0")
        self.max_memory_bytes = max_memory_bytes
        self.spill_dir = spill_dir
        self._txs: dict[int, _Tx] = {}
        self._memory = 0
        self.spilled_bytes = 0  # total written to files since creation (for logs and metrics)

    # -- state -------------------------------------------------------------------------------------
    def __contains__(self, xid: int) -> bool:
        return xid in self._txs

    def __len__(self) -> int:
        return len(self._txs)

    @property
    def memory_bytes(self) -> int:
        return self._memory

    def size(self, xid: int) -> int:
        """Messages buffered for `xid` (including those of aborted subtransactions still in a file)."""
        tx = self._txs.get(xid)
        return tx.messages if tx else 0

    def spilled(self, xid: int) -> bool:
        tx = self._txs.get(xid)
        return tx is not None and tx.file is not None

    # -- writing -----------------------------------------------------------------------------------
    def append(self, xid: int, lsn: int, payload: bytes) -> None:
        """Buffer one message of a stream block of top-level transaction `xid`."""
        tx = self._txs.get(xid)
        if tx is None:
            tx = self._txs[xid] = _Tx()
        subxid = subxid_of(payload, xid)
        tx.messages += 1
        if tx.file is not None:
            self._write(tx, lsn, subxid, payload)
            return
        tx.memory.append((lsn, subxid, payload))
        cost = len(payload) + _OVERHEAD
        tx.memory_bytes += cost
        self._memory += cost
        if self._memory > self.max_memory_bytes:
            self._spill_largest()

    def _spill_largest(self) -> None:
        while self._memory > self.max_memory_bytes:
            victim = max(
                (t for t in self._txs.values() if t.memory_bytes), key=lambda t: t.memory_bytes, default=None
            )
            if victim is None:
                return
            try:
                victim.file = tempfile.TemporaryFile(dir=self.spill_dir, buffering=_WRITE_BUFFER)  # noqa: SIM115
            except OSError as exc:
                raise CdcError(
                    ErrorKind.INTERNAL,
                    f"cannot create a spill file for a large transaction: {exc}",
                    "set TMPDIR (or the source's spill directory) to a writable disk with free space",
                ) from exc
            for lsn, subxid, payload in victim.memory:
                self._write(victim, lsn, subxid, payload)
            self._memory -= victim.memory_bytes
            victim.memory, victim.memory_bytes = [], 0

    def _write(self, tx: _Tx, lsn: int, subxid: int, payload: bytes) -> None:
        assert tx.file is not None
        try:
            tx.file.write(_RECORD.pack(lsn, subxid, len(payload)))
            tx.file.write(payload)
        except OSError as exc:
            raise CdcError(
                ErrorKind.INTERNAL,
                f"cannot spill a large transaction to disk: {exc}",
                "free disk space under TMPDIR or raise max_tx_memory_bytes",
            ) from exc
        size = _RECORD.size + len(payload)
        tx.file_bytes += size
        self.spilled_bytes += size

    # -- ending ------------------------------------------------------------------------------------
    def abort(self, xid: int, subxid: int) -> None:
        """Stream Abort: the whole transaction (subxid == xid) or one subtransaction's messages."""
        tx = self._txs.get(xid)
        if tx is None:
            return  # nothing of it was buffered (e.g. all its changes were in other tables)
        if subxid == xid:
            self._discard(xid)
            return
        tx.aborted.add(subxid)
        if tx.memory:
            kept = [m for m in tx.memory if m[1] != subxid]
            if len(kept) != len(tx.memory):
                freed = sum(len(m[2]) + _OVERHEAD for m in tx.memory if m[1] == subxid)
                tx.memory, tx.memory_bytes = kept, tx.memory_bytes - freed
                self._memory -= freed

    def take(self, xid: int) -> Iterator[tuple[int, bytes]]:
        """Stream Commit: (lsn, payload) of every surviving message of `xid`, in arrival order.

        The transaction leaves the buffers when the iterator is exhausted or closed.
        """
        tx = self._txs.get(xid)
        if tx is None:
            return iter(())
        return self._replay(xid, tx)

    def _replay(self, xid: int, tx: _Tx) -> Iterator[tuple[int, bytes]]:
        try:
            aborted = tx.aborted
            if tx.file is not None:
                yield from _read_file(tx.file, tx.file_bytes, aborted)
            for lsn, subxid, payload in tx.memory:
                if subxid not in aborted:
                    yield lsn, payload
        finally:
            self._discard(xid)

    def _discard(self, xid: int) -> None:
        tx = self._txs.pop(xid, None)
        if tx is None:
            return
        self._memory -= tx.memory_bytes
        if tx.file is not None:
            tx.file.close()

    def clear(self) -> None:
        """Drop every open transaction (reconnect: the server sends them again from the start)."""
        for xid in list(self._txs):
            self._discard(xid)


def _read_file(file: IO[bytes], size: int, aborted: set[int]) -> Iterator[tuple[int, bytes]]:
    file.flush()
    file.seek(0)
    read = file.read  # the file is buffered (BufferedRandom): small reads are cheap
    head = _RECORD.size
    unpack = _RECORD.unpack
    pos = 0
    while pos < size:
        header = read(head)
        if len(header) != head:
            raise _truncated(pos, size)
        lsn, subxid, length = unpack(header)
        payload = read(length)
        if len(payload) != length:
            raise _truncated(pos, size)
        pos += head + length
        if subxid not in aborted:
            yield lsn, payload


def _truncated(pos: int, size: int) -> CdcError:
    return CdcError(
        ErrorKind.INTERNAL,
        f"spill file of a large transaction is truncated at byte {pos} of {size}",
        "the temporary directory lost data (disk full?); restart: the transaction is sent again",
    )
