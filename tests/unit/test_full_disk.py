"""A full disk under the file sink and under the fan-out spool, on a real tiny filesystem (tmpfs):
nothing torn, nothing lost, a clear error or back-pressure (issue: hostile input, bad-input suite)."""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.sinks.file import FileSink
from cdc_logs.spool import Spool
from tests.helpers import make_event
from tests.integration.conftest import stack_required


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 64 KiB tmpfs (root can mount one on these machines; CI runs as root)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        reason = f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}"
        if stack_required():
            pytest.fail(reason + " (CI must run this test)")
        pytest.skip(reason)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _fill(disk: Path) -> Path:
    """Fill the filesystem up to its last few bytes; returns the filler (delete it to free space)."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for size in (4096, 512, 64, 8, 1):  # down to the very last bytes
            try:
                while True:
                    os.write(fd, b"\0" * size)
            except OSError:
                continue
    finally:
        os.close(fd)
    return filler


def test_a_full_disk_fails_the_batch_cleanly_and_the_retry_leaves_no_torn_line(small_disk: Path) -> None:
    sink = FileSink(small_disk / "out.jsonl", name="file")
    sink.open()
    sink.write([make_event(n) for n in range(1, 11)])
    filler = _fill(small_disk)
    batch = [make_event(n) for n in range(11, 211)]
    with pytest.raises(CdcError) as err:
        sink.write(batch)
    assert err.value.kind is ErrorKind.SINK_TRANSIENT and "No space left" in err.value.message
    filler.unlink()
    sink.write(batch)  # the pipeline's retry, once space is back
    sink.close()
    lines = (small_disk / "out.jsonl").read_bytes().splitlines()
    seqs = [orjson.loads(line)["source"]["seq"] for line in lines]  # every line is whole JSON
    assert seqs == list(range(1, 211)), "the failed write was cut back: no half line, no duplicate"


def test_a_spool_that_cannot_spill_makes_the_source_wait_and_loses_nothing(small_disk: Path) -> None:
    spool = Spool(small_disk / "spool", ["slow"], max_bytes=1 << 30, max_memory_bytes=4096)
    stop = threading.Event()
    assert spool.append([make_event(1)], 1, 4096, stop)  # fills memory
    _fill(small_disk)
    blocked = threading.Thread(
        target=lambda: spool.append([make_event(n) for n in range(2, 50)], 2, 4096, stop)
    )
    blocked.start()
    time.sleep(0.5)
    assert blocked.is_alive(), "the disk refused the spill: the append waits instead of losing data"
    first = spool.read("slow", 1000, 0.1)
    spool.release()
    blocked.join(5)
    assert not blocked.is_alive()
    rest = spool.read("slow", 1000, 1.0)
    got = [e.source.extra["seq"] for e in first.events + rest.events]
    assert got == list(range(1, 50)) and rest.ack == 2
    spool.close()


def test_a_damaged_spill_file_is_a_clear_error_not_a_crash(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool", ["a"], max_memory_bytes=1)
    stop = threading.Event()
    spool.append([make_event(1)], 1, 10, stop)
    spool.append([make_event(2)], 2, 10, stop)  # memory full: spilled
    (spilled,) = list((tmp_path / "spool").iterdir())
    os.truncate(spilled, spilled.stat().st_size // 2)  # cut mid-record
    spool.read("a", 1, 0.1)
    with pytest.raises(CdcError) as err:
        spool.read("a", 1, 0.1)
    assert err.value.kind is ErrorKind.DECODE and "damaged" in err.value.message
    assert "checkpoint" in (err.value.hint or "")
    spool.close()
