"""The transaction buffer: row changes held per XID until COMMIT, bounded memory, spill to disk.

LogMiner is read without COMMITTED_DATA_ONLY, so the changes of every transaction arrive interleaved,
as the redo holds them; nothing may reach the sinks before its transaction commits. Each change
waits here as one opaque record (bytes) under its transaction's XID:

  * `take(xid)` at COMMIT yields the surviving records in redo order and forgets the transaction;
  * `discard(xid)` at ROLLBACK drops it;
  * `undo(xid, row_id)` applies a partial rollback (a DML row with ROLLBACK=1, e.g. a statement
    that failed on a constraint inside a transaction that goes on): the last change of that
    transaction to the same ROW_ID still held is removed, as Debezium's buffer does.

Memory is bounded by `max_memory_bytes` over all open transactions, as the Postgres reader's
streaming buffer (readers/postgres/txbuffer.py): past it, the largest transaction moves to an
anonymous temporary file (unlinked at creation, so a crash leaves nothing behind) and the rest of it
is appended there. Records in a file are `UInt32 seq, UInt16 key length, UInt32 length, key,
payload` (the key is what `undo` matches: table and ROW_ID); an undone record in a file is skipped
on replay. A transaction in memory keeps its (seq, key) index for undo, counted in `memory_bytes`
with its records; a spilled one keeps no index (its keys are in its file, which `undo` scans: a
partial rollback is rare), so memory stays bounded however large one transaction grows.
Pure: no database I/O, unit-tested in tests/unit/test_oracle_txbuffer.py.
"""

from __future__ import annotations

import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import IO, Final

from cdc_logs.errors import CdcError, ErrorKind

__all__ = ["TxBuffer"]

_RECORD: Final = struct.Struct(">IHI")
_OVERHEAD: Final = 96  # per record: tuple and bytes object headers, roughly
_INDEX_OVERHEAD: Final = 120  # per (seq, ROW_ID) index entry: tuple, int and str headers, list slot
_WRITE_BUFFER: Final = 1 << 20


@dataclass(slots=True)
class _Tx:
    start_scn: int
    memory: list[tuple[int, bytes]] = field(default_factory=list)  # (seq, record)
    memory_bytes: int = 0
    file: IO[bytes] | None = None
    file_bytes: int = 0
    rows: list[tuple[int, str]] = field(default_factory=list)  # (seq, key) of live records in memory
    removed: set[int] = field(default_factory=set)  # seqs undone while in the file
    live: int = 0  # records held (in memory or in the file) and not undone
    next_seq: int = 0


class TxBuffer:
    """Open transactions by XID; see the module docstring."""

    def __init__(self, max_memory_bytes: int = 64 << 20, spill_dir: str | None = None) -> None:
        if max_memory_bytes < 0:
            raise ValueError("max_memory_bytes must be >= 0")
        self.max_memory_bytes = max_memory_bytes
        self.spill_dir = spill_dir
        self._txs: dict[str, _Tx] = {}
        self._memory = 0
        self.spilled_bytes = 0

    # -- state ---------------------------------------------------------------------------------------
    def __contains__(self, xid: str) -> bool:
        return xid in self._txs

    def __len__(self) -> int:
        return len(self._txs)

    @property
    def memory_bytes(self) -> int:
        return self._memory

    def size(self, xid: str) -> int:
        """Live records held for `xid`."""
        tx = self._txs.get(xid)
        return tx.live if tx else 0

    def spilled(self, xid: str) -> bool:
        tx = self._txs.get(xid)
        return tx is not None and tx.file is not None

    def oldest_start(self) -> int | None:
        """The smallest start SCN of the open transactions (the restart SCN), None when none is open."""
        return min((tx.start_scn for tx in self._txs.values()), default=None)

    def start_scn(self, xid: str) -> int | None:
        tx = self._txs.get(xid)
        return tx.start_scn if tx else None

    # -- writing -------------------------------------------------------------------------------------
    def begin(self, xid: str, start_scn: int) -> None:
        """Open `xid` (a START row, or its first change when the START was not seen)."""
        tx = self._txs.get(xid)
        if tx is None:
            self._txs[xid] = _Tx(start_scn)
        elif start_scn < tx.start_scn:
            tx.start_scn = start_scn

    def append(self, xid: str, start_scn: int, row_id: str, record: bytes) -> None:
        """Hold one change of `xid`."""
        self.begin(xid, start_scn)
        tx = self._txs[xid]
        seq = tx.next_seq
        tx.next_seq += 1
        tx.live += 1
        if tx.file is not None:
            self._write(tx, seq, row_id, record)
            return
        tx.rows.append((seq, row_id))
        cost = len(record) + _OVERHEAD + len(row_id) + _INDEX_OVERHEAD
        tx.memory.append((seq, record))
        tx.memory_bytes += cost
        self._memory += cost
        if self._memory > self.max_memory_bytes:
            self._spill_largest()

    def undo(self, xid: str, row_id: str) -> bool:
        """Partial rollback: drop the last live change of `xid` to `row_id`; False when none is held."""
        tx = self._txs.get(xid)
        if tx is None:
            return False
        if tx.file is not None:
            seq = _last_in_file(tx.file, tx.file_bytes, tx.removed, row_id)
            if seq is None:
                return False
            tx.removed.add(seq)  # skipped on replay
            tx.live -= 1
            return True
        for i in range(len(tx.rows) - 1, -1, -1):
            seq, rid = tx.rows[i]
            if rid != row_id:
                continue
            del tx.rows[i]
            for j in range(len(tx.memory) - 1, -1, -1):
                if tx.memory[j][0] == seq:
                    cost = len(tx.memory[j][1]) + _OVERHEAD + len(rid) + _INDEX_OVERHEAD
                    del tx.memory[j]
                    tx.memory_bytes -= cost
                    self._memory -= cost
                    break
            tx.live -= 1
            return True
        return False

    def _spill_largest(self) -> None:
        while self._memory > self.max_memory_bytes:
            victim = max(
                (t for t in self._txs.values() if t.memory_bytes), key=lambda t: t.memory_bytes, default=None
            )
            if victim is None:
                return
            if victim.file is None:
                try:
                    victim.file = tempfile.TemporaryFile(dir=self.spill_dir, buffering=_WRITE_BUFFER)  # noqa: SIM115
                except OSError as exc:
                    raise CdcError(
                        ErrorKind.INTERNAL,
                        f"cannot create a spill file for a large transaction: {exc}",
                        "set TMPDIR (or the source's spill directory) to a writable disk with free space",
                    ) from exc
            keys = dict(victim.rows)
            for seq, record in victim.memory:
                self._write(victim, seq, keys[seq], record)
            self._memory -= victim.memory_bytes
            victim.memory, victim.memory_bytes, victim.rows = [], 0, []

    def _write(self, tx: _Tx, seq: int, key: str, record: bytes) -> None:
        assert tx.file is not None
        encoded = key.encode()[:0xFFFF]
        try:
            tx.file.write(_RECORD.pack(seq, len(encoded), len(record)))
            tx.file.write(encoded)
            tx.file.write(record)
        except OSError as exc:
            raise CdcError(
                ErrorKind.INTERNAL,
                f"cannot spill a large transaction to disk: {exc}",
                "free disk space under TMPDIR or raise max_tx_memory_bytes",
            ) from exc
        size = _RECORD.size + len(encoded) + len(record)
        tx.file_bytes += size
        self.spilled_bytes += size

    # -- ending --------------------------------------------------------------------------------------
    def take(self, xid: str) -> Iterator[bytes]:
        """COMMIT: the surviving records of `xid` in redo order; it leaves the buffer when the iterator
        is exhausted or closed."""
        tx = self._txs.get(xid)
        if tx is None:
            return iter(())
        return self._replay(xid, tx)

    def _replay(self, xid: str, tx: _Tx) -> Iterator[bytes]:
        try:
            if tx.file is not None:
                yield from _read_file(tx.file, tx.file_bytes, tx.removed)
            for _seq, record in tx.memory:
                yield record
        finally:
            self.discard(xid)

    def discard(self, xid: str) -> None:
        """ROLLBACK (or a transaction already emitted before a restart): forget `xid`."""
        tx = self._txs.pop(xid, None)
        if tx is None:
            return
        self._memory -= tx.memory_bytes
        if tx.file is not None:
            tx.file.close()

    def clear(self) -> None:
        for xid in list(self._txs):
            self.discard(xid)


def _entries(file: IO[bytes], size: int, with_payload: bool) -> Iterator[tuple[int, bytes, bytes]]:
    """(seq, key, payload) of each record of a spill file (payload b"" unless asked for)."""
    file.flush()
    file.seek(0)
    read = file.read
    pos = 0
    while pos < size:
        header = read(_RECORD.size)
        if len(header) != _RECORD.size:
            raise _truncated(pos, size)
        seq, key_length, length = _RECORD.unpack(header)
        key = read(key_length)
        if with_payload:
            record = read(length)
        else:
            file.seek(length, 1)
            record = b""
        if len(key) != key_length or (with_payload and len(record) != length):
            raise _truncated(pos, size)
        pos += _RECORD.size + key_length + length
        yield seq, key, record


def _read_file(file: IO[bytes], size: int, removed: set[int]) -> Iterator[bytes]:
    for seq, _key, record in _entries(file, size, True):
        if seq not in removed:
            yield record


def _last_in_file(file: IO[bytes], size: int, removed: set[int], key: str) -> int | None:
    """The seq of the last live record of `key` in a spill file (then back to appending at its end)."""
    wanted = key.encode()[:0xFFFF]
    found = None
    try:
        for seq, entry_key, _ in _entries(file, size, False):
            if entry_key == wanted and seq not in removed:
                found = seq
    finally:
        file.seek(0, 2)
    return found


def _truncated(pos: int, size: int) -> CdcError:
    return CdcError(
        ErrorKind.INTERNAL,
        f"spill file of a large transaction is truncated at byte {pos} of {size}",
        "the temporary directory lost data (disk full?); restart: the transaction is mined again",
    )
