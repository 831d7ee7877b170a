"""Compression (cdc_logs/compression.py) in the file and HTTP sinks: files read back by the standard
tools (gzip -t / zcat, zstd, lz4; snappy by its library), a crash's torn frame cut off on the next
open, and request bodies decoded by a real HTTP server by their Content-Encoding. The Postgres run is
tests/integration/test_compression_pipeline.py."""

from __future__ import annotations

import gzip
import hashlib
import hmac
import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError

from cdc_logs.compression import codec
from cdc_logs.config import PipelineConfig
from cdc_logs.errors import CdcError
from cdc_logs.sinks.file import FileSink
from cdc_logs.sinks.http import HttpSink
from tests.contract.test_http_sink import serve_receiver
from tests.helpers import make_event

TOOLS = {"gzip": ["gzip", "-dc"], "zstd": ["zstd", "-dcq"], "lz4": ["lz4", "-dcq"]}


def read_back(name: str, path: Path) -> bytes:
    """The file decompressed by the standard tool (snappy: python-snappy's stream reader)."""
    if name == "snappy":
        import snappy

        out = io.BytesIO()
        with path.open("rb") as fh:
            snappy.stream_decompress(fh, out)
        return out.getvalue()
    tool = TOOLS[name]
    if shutil.which(tool[0]) is None:
        pytest.skip(f"{tool[0]} is not installed")
    return subprocess.run([*tool, str(path)], check=True, capture_output=True).stdout


@pytest.mark.parametrize("name", ["gzip", "zstd", "lz4", "snappy"])
def test_file_frames_per_batch_read_by_the_standard_tool(tmp_path: Path, name: str) -> None:
    sink = FileSink(tmp_path / "changes.jsonl", compression=name)
    assert sink.path.name == "changes.jsonl" + codec(name).suffix
    sink.open()
    batches = [[make_event(n) for n in range(b * 10, b * 10 + 10)] for b in range(3)]
    for batch in batches:
        sink.write(batch)
    sink.close()
    lines = read_back(name, sink.path).splitlines()
    assert [json.loads(line)["source"]["seq"] for line in lines] == list(range(30))

    # A crash in the middle of a write: half of the next frame on disk. The next open cuts it off,
    # and the replayed batch is appended after the last complete one.
    frame = codec(name).compress(b"".join(e.to_json() + b"\n" for e in batches[0]))
    with sink.path.open("ab") as fh:
        fh.write(frame[: len(frame) // 2])
    again = FileSink(tmp_path / "changes.jsonl", compression=name)
    again.open()
    again.write([make_event(99)])
    again.close()
    lines = read_back(name, sink.path).splitlines()
    assert [json.loads(line)["source"]["seq"] for line in lines] == [*range(30), 99]


def test_gzip_file_passes_gzip_t_and_python_gzip(tmp_path: Path) -> None:
    sink = FileSink(tmp_path / "c.jsonl.gz", compression="gzip")
    assert sink.path.name == "c.jsonl.gz"  # the suffix is not doubled
    sink.open()
    sink.write([make_event(n) for n in range(5)])
    sink.write([make_event(n) for n in range(5, 8)])
    sink.close()
    subprocess.run(["gzip", "-t", str(sink.path)], check=True)
    assert len(gzip.decompress(sink.path.read_bytes()).splitlines()) == 8


@pytest.mark.parametrize("name", ["gzip", "zstd"])
def test_http_body_compressed_with_content_encoding(name: str) -> None:
    with serve_receiver() as (state, url):
        sink = HttpSink(url, secret="k", compression=name)
        sink.open()
        sink.write([make_event(n) for n in range(20)])
        sink.close()
    ((headers, body),) = state.requests
    assert headers["Content-Encoding"] == name
    expected = "sha256=" + hmac.new(b"k", body, hashlib.sha256).hexdigest()
    assert headers["X-CDC-Signature"] == expected  # over the bytes on the wire
    envelopes = json.loads(codec(name).decompress(body))
    assert [e["source"]["seq"] for e in envelopes] == list(range(20))
    assert len(body) < len(json.dumps(envelopes))


def test_http_refuses_codings_receivers_do_not_know() -> None:
    with pytest.raises(CdcError, match="gzip or zstd"):
        HttpSink("http://127.0.0.1:9/x", compression="lz4")


def pipeline(**sync: object) -> dict[str, object]:
    return {
        "source": {"type": "sqlite", "path": "app.db", "tables": ["users"]},
        "destinations": [
            {"name": "f", "type": "file", "path": "out.jsonl"},
            {"name": "h", "type": "webhook", "url": "http://127.0.0.1:9/x"},
        ],
        "sync": sync,
    }


def test_sync_compression_config() -> None:
    from cdc_logs.build import build_destination

    cfg = PipelineConfig.model_validate(pipeline(compression={"enabled": True, "algorithm": "zstd"}))
    file_sink, http_sink = (build_destination(d, cfg) for d in cfg.all_sinks())
    assert isinstance(file_sink, FileSink) and file_sink.path.name == "out.jsonl.zst"
    assert isinstance(http_sink, HttpSink) and http_sink._codec is not None
    with pytest.raises(ValidationError, match="HTTP knows gzip and zstd only"):
        PipelineConfig.model_validate(pipeline(compression={"enabled": True, "algorithm": "lz4"}))
    data = pipeline(compression={"enabled": True, "algorithm": "gzip"})
    data["destinations"] = [{"type": "stdout"}]
    with pytest.raises(ValidationError, match="applies to file and http destinations"):
        PipelineConfig.model_validate(data)
    with pytest.raises(ValidationError):
        PipelineConfig.model_validate(pipeline(compression={"enabled": True, "algorithm": "brotli"}))
    on = PipelineConfig.model_validate(pipeline(compression={"algorithm": "zstd"}))
    assert on.sync.compression.enabled  # an algorithm given means compression is wanted
    assert not PipelineConfig.model_validate(pipeline()).sync.compression.enabled


def test_missing_library_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import cdc_logs.compression as compression

    monkeypatch.setattr(compression, "installed", lambda module: False)
    with pytest.raises(CdcError) as caught:
        compression.codec("zstd")
    assert "pip install 'cdc-logs[compression]'" in (caught.value.hint or "")


@pytest.mark.parametrize("name", ["gzip", "zstd", "lz4", "snappy"])
def test_the_torn_frame_is_found_reading_in_small_chunks(name: str) -> None:
    """The sink scans the active file in chunks; frames crossing chunk edges are found the same."""
    c = codec(name)
    frames = [c.compress(b"%d" % i + b"x" * (i * 500)) for i in range(40)]
    data = b"".join(frames)
    for chunk in (5, 333, 1 << 20):
        assert c.complete_prefix_of(io.BytesIO(data), chunk) == len(data)
        assert c.complete_prefix_of(io.BytesIO(data + frames[7][:-3]), chunk) == len(data)
        assert c.complete_prefix_of(io.BytesIO(frames[0][:4]), chunk) == 0


def test_rotated_compressed_segments_stay_readable(tmp_path: Path) -> None:
    sink = FileSink(tmp_path / "c.jsonl", compression="gzip", max_bytes=1024)
    sink.open()
    for start in range(0, 200, 20):
        sink.write([make_event(n) for n in range(start, start + 20)])
    sink.close()
    segments = sink.segments()
    assert segments and segments[0].name == "c.jsonl.gz.000001"
    seen: list[int] = []
    for path in [*segments, sink.path]:
        subprocess.run(["gzip", "-t", str(path)], check=True)
        seen += [json.loads(line)["source"]["seq"] for line in read_back("gzip", path).splitlines()]
    assert seen == list(range(200))
