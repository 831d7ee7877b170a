"""Compression for the file and HTTP destinations (`sync.compression`, or a destination's own
`compression`): gzip, zstd, lz4 and snappy, each as a self-contained frame per write.

Every `compress` call returns a complete frame (a gzip member, a zstd frame, an lz4 frame, a snappy
framing-format stream), and frames concatenated are a valid file of that format, read by the
standard tools: `gzip -t` / `zcat`, `zstd -t` / `zstdcat`, `lz4 -t` / `lz4cat`, and for snappy the
python-snappy library (`python -m snappy -d`). The file sink writes one frame per batch, so a crash
can only tear the last frame; `complete_prefix` finds where the last complete frame ends, and the
sink cuts the file back there when it opens (the torn batch was never acknowledged: it is replayed).

gzip comes with Python; zstd, lz4 and snappy need `pip install 'cdc-logs[compression]'` (zstandard,
lz4, python-snappy), and a missing one is a config error naming that command.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO, Literal

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.extras import installed

Algorithm = Literal["gzip", "zstd", "lz4", "snappy"]
ALGORITHMS: tuple[str, ...] = ("gzip", "zstd", "lz4", "snappy")
# Content codings registered for HTTP (RFC 9110 gzip, RFC 8878 zstd); lz4 and snappy have none, so
# a receiver could not know what it got.
HTTP_ENCODINGS = frozenset({"gzip", "zstd"})

_MODULES = {"zstd": ("zstandard", "zstandard"), "lz4": ("lz4", "lz4"), "snappy": ("snappy", "python-snappy")}


@dataclass(frozen=True)
class Codec:
    name: str
    suffix: str  # file name suffix the standard tools expect
    compress: Callable[[bytes], bytes]  # one complete frame
    _decompressor: Callable[[], Any]  # an object with decompress(), eof and unused_data

    def complete_prefix(self, data: bytes) -> int:
        """The length of the longest prefix of `data` made of complete frames."""
        offset = 0
        while offset < len(data):
            dec = self._decompressor()
            try:
                dec.decompress(data[offset:])
            except Exception:
                return offset  # a torn (or garbled) frame: keep what is before it
            if not dec.eof:
                return offset
            offset = len(data) - len(dec.unused_data or b"")
        return offset

    def complete_prefix_of(self, fh: BinaryIO, chunk: int = 1 << 20) -> int:
        """`complete_prefix` of a file read in chunks (the active file may be hundreds of MB): the
        decompressed output is thrown away as it comes."""
        if self.name == "snappy":  # its reader here takes whole streams
            return self.complete_prefix(fh.read())
        start = 0  # file offset where the current frame starts
        fetched = 0  # file offset just past the bytes read so far
        dec = self._decompressor()
        data = b""
        while True:
            if not data:
                data = fh.read(chunk)
                if not data:
                    return start  # the end of the file: a frame not finished there is torn
                fetched += len(data)
            try:
                dec.decompress(data)
            except Exception:
                return start  # a torn (or garbled) frame: keep what is before it
            if dec.eof:  # the frame ended; what follows it starts the next one
                rest = dec.unused_data or b""
                start = fetched - len(rest)
                dec, data = self._decompressor(), rest
            else:
                data = b""

    def decompress(self, data: bytes) -> bytes:
        """Every frame of `data`, decompressed (for tests and tools)."""
        out, offset = [], 0
        while offset < len(data):
            dec = self._decompressor()
            out.append(dec.decompress(data[offset:]))
            if not dec.eof:
                raise ValueError(f"{self.name}: truncated frame at byte {offset}")
            offset = len(data) - len(dec.unused_data or b"")
        return b"".join(out)


class _Snappy:
    """python-snappy's framing-format decompressor with the eof/unused_data of the others (one
    stream: its identifier chunk, then data chunks until the next identifier or the end)."""

    def __init__(self) -> None:
        import snappy

        self._dec = snappy.StreamDecompressor()
        self.eof = False
        self.unused_data = b""

    def decompress(self, data: bytes) -> bytes:
        # Chunks are type (1 byte) + length (3 bytes, little endian) + body. Walk to the next stream
        # identifier (type 0xff) after the first, or a chunk past the end (torn).
        pos, end = 0, len(data)
        while pos + 4 <= end:
            if pos and data[pos] == 0xFF:
                break
            length = int.from_bytes(data[pos + 1 : pos + 4], "little")
            if pos + 4 + length > end:
                raise ValueError("snappy: torn chunk")
            pos += 4 + length
        if pos != end and pos + 4 > end:
            raise ValueError("snappy: torn chunk header")
        out: bytes = self._dec.decompress(data[:pos])
        self._dec.flush()
        self.eof, self.unused_data = True, data[pos:]
        return out


def _gzip_frame(level: int) -> Callable[[bytes], bytes]:
    def compress(data: bytes) -> bytes:
        c = zlib.compressobj(level, zlib.DEFLATED, 31)  # wbits 31: a gzip member
        return c.compress(data) + c.flush()

    return compress


def codec(name: str, level: int | None = None) -> Codec:
    """The codec for `name`, or a CONFIG error naming what to install or choose."""
    if name not in ALGORITHMS:
        raise CdcError(
            ErrorKind.CONFIG,
            f"compression algorithm {name!r} is not supported",
            f"use one of {', '.join(ALGORITHMS)}",
        )
    if name in _MODULES:
        module, package = _MODULES[name]
        if not installed(module):
            raise CdcError(
                ErrorKind.CONFIG,
                f"compression {name} needs the {package} package, which is not installed",
                f"pip install 'cdc-logs[compression]' (or pip install {package}), or use gzip",
            )
    if name == "gzip":
        return Codec(
            "gzip", ".gz", _gzip_frame(6 if level is None else level), lambda: zlib.decompressobj(31)
        )
    if name == "zstd":
        import zstandard

        compressor = zstandard.ZstdCompressor(level=3 if level is None else level, write_content_size=True)
        return Codec(
            "zstd", ".zst", compressor.compress, lambda: zstandard.ZstdDecompressor().decompressobj()
        )
    if name == "lz4":
        import lz4.frame

        lz4_level = 0 if level is None else level
        return Codec(
            "lz4",
            ".lz4",
            lambda data: lz4.frame.compress(data, compression_level=lz4_level, store_size=True),
            lz4.frame.LZ4FrameDecompressor,
        )
    import snappy

    return Codec("snappy", ".sz", lambda data: snappy.StreamCompressor().add_chunk(data), _Snappy)


def takes_compression(destination: Any) -> bool:
    """Whether a destination config has its own `compression` (the file and HTTP sinks)."""
    return "compression" in type(destination).model_fields


def check_sync_compression(enabled: bool, algorithm: str, destinations: list[Any]) -> None:
    """sync.compression against the pipeline's destinations (ValueError for the config): it must
    reach one, and suit every destination that takes it from there."""
    if not enabled:
        return
    takers = [d for d in destinations if takes_compression(d)]
    if not takers:
        raise ValueError(
            "sync.compression applies to file and http destinations, and this pipeline has none; remove "
            "it (Kafka and the other clients compress with their own settings)"
        )
    for d in takers:
        if d.compression is None and d.type in ("http", "webhook") and algorithm not in HTTP_ENCODINGS:
            raise ValueError(
                f"sync.compression {algorithm} cannot be used for the http destination "
                f"{d.name or d.type!r}: HTTP knows gzip and zstd only; set its own `compression: gzip` "
                "(or none)"
            )
