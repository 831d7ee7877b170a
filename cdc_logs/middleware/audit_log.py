"""The audit log's file format: hash-chained JSON lines in signed segments, and its verification.

A log is a directory of segments `audit-000001.log`, `audit-000002.log`, ... Every line is one JSON
record whose last field is `"hash"`: the SHA-256 (hex) of the line's bytes without that field, i.e.
the canonical JSON of the record's other fields (keys sorted, no spaces, UTF-8). Every record carries
`prev`, the hash of the record before it, so the lines form one chain across all segments:

    {"kind":"segment", "segment":N, "prev":<last hash of segment N-1, or 64 zeros>, ...}   header
    {"kind":"change", "seq":S, "prev":..., "change":<change id>, "op":..., ...}           changes
    {"kind":"seal", "segment":N, "records":R, "digest":..., "signature":..., ...}          seal

A sealed segment is closed: its seal carries the SHA-256 of every byte before it (`digest`) and an
Ed25519 signature (base64) over `SEAL_DOMAIN` + the canonical JSON of {segment, anchor, last,
records, digest}, where anchor is the header's `prev` (the previous segment's last hash) and last the
hash of the last record before the seal. Changing, removing, inserting or reordering any record breaks
the chain at the first record after the change; rewriting the whole chain is caught by the signature
(the signer's private key is needed to make a new one).

Retention removes whole sealed segments from the start: the first remaining segment's header still
carries the hash of the removed segment's last record (`prev`) as its anchor, so verification starts
there. Before it removes any, retention writes `retention.json` in the log directory (the last removed
segment number and the anchor the next one must carry), so `verify` can tell a gap retention made from
segments deleted by hand: a log that starts after segment 1 without such a record fails verification
(unless `allow_pruned`). Segment numbers must be contiguous from the first one present.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from cdc_logs.envelope import encode_value

FORMAT = 1
GENESIS = "0" * 64
SEAL_DOMAIN = b"cdc-logs audit segment v1\n"
RETENTION_FILE = "retention.json"  # what retention removed: {"removed_through", "anchor", ...}
SEGMENT_RE = re.compile(r"^audit-(\d{6,})\.log$")
_HASH_TAIL = re.compile(rb',"hash":"([0-9a-f]{64})"}$')
_OPTS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME


def canonical(obj: Any) -> bytes:
    """Canonical JSON: keys sorted, compact, UTF-8, values in the change envelope's encoding."""
    return orjson.dumps(obj, default=encode_value, option=_OPTS)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def encode_record(body: dict[str, Any]) -> tuple[bytes, str]:
    """(line with its newline, hash) of a record (without its `hash`)."""
    data = canonical(body)
    digest = sha256(data)
    return data[:-1] + b',"hash":"' + digest.encode() + b'"}\n', digest


def decode_line(line: bytes) -> tuple[dict[str, Any], str]:
    """(record, hash) of one line (without its newline); ValueError says what is wrong."""
    match = _HASH_TAIL.search(line)
    if match is None:
        raise ValueError("not a record (no trailing hash field)")
    body = line[: match.start()] + b"}"
    digest = match.group(1).decode()
    if sha256(body) != digest:
        raise ValueError("altered: its hash does not match its content")
    try:
        record = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc})") from None
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    return record, digest


def seal_message(segment: int, anchor: str, last: str, records: int, digest: str) -> bytes:
    fields = {"segment": segment, "anchor": anchor, "last": last, "records": records, "digest": digest}
    return SEAL_DOMAIN + canonical(fields)


def key_id(public_raw: bytes) -> str:
    """A short name of a public key (first 16 hex digits of the SHA-256 of its raw 32 bytes)."""
    return sha256(public_raw)[:16]


def segment_path(directory: Path, number: int) -> Path:
    return directory / f"audit-{number:06d}.log"


def segments(directory: Path) -> list[tuple[int, Path]]:
    """The segment files of a log directory, by number."""
    found = []
    for path in directory.iterdir() if directory.is_dir() else ():
        match = SEGMENT_RE.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def lines(data: bytes) -> Iterator[tuple[int, bytes, bool]]:
    """(byte offset, line without newline, complete) of each line of a segment."""
    offset = 0
    while offset < len(data):
        end = data.find(b"\n", offset)
        if end < 0:
            yield offset, data[offset:], False
            return
        yield offset, data[offset:end], True
        offset = end + 1


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


# -- verification ------------------------------------------------------------------------------------
@dataclass
class Problem:
    segment: int | None
    line: int | None  # 1-based line in the segment
    seq: int | None  # the change record's number, when known
    what: str

    def __str__(self) -> str:
        where = []
        if self.segment is not None:
            where.append(f"segment {self.segment}")
        if self.line is not None:
            where.append(f"line {self.line}")
        if self.seq is not None:
            where.append(f"record {self.seq}")
        return (", ".join(where) + ": " if where else "") + self.what


@dataclass
class Report:
    """What `verify` found: problems (the first one is the first bad record) and a summary."""

    problems: list[Problem] = field(default_factory=list)
    segments: list[int] = field(default_factory=list)
    records: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    last_hash: str = GENESIS
    signed: int = 0
    open_segment: int | None = None
    notes: list[str] = field(default_factory=list)
    watch_seq: int | None = None  # the committed record to look for (verify's `committed`)
    watched_hash: str | None = None
    empty: bool = False  # no segment at all: nothing was checked (the CLI's usage error)

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(
    path: Path,
    public_key: Any | None = None,
    committed: tuple[int, str] | None = None,
    allow_pruned: bool = False,
) -> Report:
    """Check a log directory (or one segment file): the chain, each seal's digest and signature
    (with `public_key`, an Ed25519 public key object), segment continuity, that a log starting after
    segment 1 lost its first segments to retention (its `retention.json`; `allow_pruned` accepts an
    unrecorded gap), and, with `committed` (seq, hash) from the checkpointed state, that the log still
    holds the committed head. Stops at the first problem: everything after a broken link is
    unverifiable."""
    report = Report(watch_seq=committed[0] if committed else None)
    if path.is_dir():
        found = segments(path)
        if not found:
            report.problems.append(
                Problem(None, None, None, f"no audit segments (audit-NNNNNN.log) in {path}")
            )
            report.empty = True
            return report
    else:
        match = SEGMENT_RE.match(path.name)
        if match is None:
            report.problems.append(Problem(None, None, None, f"{path.name} is not an audit segment name"))
            return report
        found = [(int(match.group(1)), path)]
    prev_hash: str | None = None
    expected_seq: int | None = None
    for index, (number, file) in enumerate(found):
        if index and number != found[index - 1][0] + 1:
            report.problems.append(
                Problem(
                    number, None, None, f"segment {found[index - 1][0] + 1} is missing (segments removed)"
                )
            )
            return report
        last = index == len(found) - 1
        result = _verify_segment(number, file.read_bytes(), prev_hash, expected_seq, public_key, report, last)
        if result is None:
            return report
        prev_hash, expected_seq = result
        report.segments.append(number)
    if not path.is_dir():
        report.notes.append(f"segment {found[0][0]} checked alone: its header's prev is taken as the anchor")
    elif found[0][0] != 1:
        problem = _check_pruned(path, found[0][0], found[0][1], allow_pruned, report)
        if problem is not None:
            report.problems.append(problem)
            return report
    if committed is not None and committed[0] > 0:
        seq, head = committed
        if report.last_seq is None or report.last_seq < seq:
            report.problems.append(
                Problem(
                    None,
                    None,
                    seq,
                    f"the checkpoint says record {seq} was committed, but the log ends at record "
                    f"{report.last_seq} (records removed from the end)",
                )
            )
        elif report.watched_hash is not None and report.watched_hash != head:
            report.problems.append(
                Problem(None, None, seq, "the committed record's hash differs from the checkpointed head")
            )
    return report


def _verify_segment(
    number: int,
    data: bytes,
    prev_hash: str | None,
    expected_seq: int | None,
    public_key: Any | None,
    report: Report,
    last_segment: bool,
) -> tuple[str, int | None] | None:
    """Check one segment; (its last hash, next seq) or None after recording a problem."""

    def bad(line_no: int | None, seq: int | None, what: str) -> None:
        report.problems.append(Problem(number, line_no, seq, what))

    header: dict[str, Any] | None = None
    records = 0
    sealed = False
    current = prev_hash
    for line_no, (offset, raw, complete) in enumerate(lines(data), start=1):
        if sealed:
            bad(line_no, None, "a record after the segment's seal (inserted)")
            return None
        if not complete:
            bad(line_no, None, "incomplete last line (a crash while writing, or bytes removed)")
            return None
        try:
            record, digest = decode_line(raw)
        except ValueError as exc:
            seq_guess = _seq_of(raw)
            bad(line_no, seq_guess, str(exc))
            return None
        kind = record.get("kind")
        if line_no == 1:
            if kind != "segment":
                bad(1, record.get("seq"), "the segment does not start with its header (header removed)")
                return None
            if record.get("segment") != number:
                bad(1, None, f"the header names segment {record.get('segment')} (segment files renamed)")
                return None
            if current is None:
                if number == 1 and record.get("prev") != GENESIS:
                    bad(1, None, "the first segment's header does not start the chain")
                    return None
            elif record.get("prev") != current:
                bad(
                    1,
                    None,
                    "the header's prev is not the previous segment's last hash "
                    "(segments swapped or replaced)",
                )
                return None
            if expected_seq is not None and record.get("first_seq") != expected_seq:
                bad(
                    1,
                    None,
                    f"the header says the segment starts at record {record.get('first_seq')}, "
                    f"not {expected_seq}",
                )
                return None
            header = record
            expected_seq = int(record.get("first_seq", 1))
            current = digest
            continue
        assert header is not None
        if record.get("prev") != current:
            seq = record.get("seq")
            bad(
                line_no,
                seq if isinstance(seq, int) else None,
                "its prev is not the hash of the line before it: a record before it was removed, or this "
                "one was inserted or moved",
            )
            return None
        if kind == "change":
            seq = record.get("seq")
            if seq != expected_seq:
                bad(
                    line_no,
                    seq if isinstance(seq, int) else None,
                    f"record number {seq} where {expected_seq} was expected",
                )
                return None
            assert isinstance(seq, int)
            records += 1
            report.records += 1
            report.first_seq = seq if report.first_seq is None else report.first_seq
            report.last_seq = seq
            if seq == report.watch_seq:
                report.watched_hash = digest
            expected_seq = seq + 1
        elif kind == "seal":
            problem = _check_seal(
                record, number, header, current or GENESIS, records, sha256(data[:offset]), public_key
            )
            if problem:
                bad(line_no, None, problem)
                return None
            sealed = True
            if record.get("signature"):
                report.signed += 1
        else:
            bad(line_no, None, f"unknown record kind {kind!r}")
            return None
        current = digest
    if header is None:
        bad(None, None, "empty segment file")
        return None
    if not sealed:
        if not last_segment:
            bad(None, None, "not sealed, but a later segment exists (its seal was removed)")
            return None
        report.open_segment = number
        if public_key is not None:
            report.notes.append(
                f"segment {number} is the open one: its {records} records are chained but not yet signed "
                "(signed when it rotates or the pipeline stops)"
            )
    report.last_hash = current or GENESIS
    return current or GENESIS, expected_seq


def _check_pruned(
    directory: Path, first: int, first_path: Path, allow_pruned: bool, report: Report
) -> Problem | None:
    """A log that starts at segment `first` > 1: retention must have recorded removing the segments
    before it (and the anchor the first one carries); otherwise they were deleted by someone else."""
    recorded = read_retention(directory)
    gap = f"segments 1-{first - 1}" if first > 2 else "segment 1"
    if recorded is None or recorded["removed_through"] < first - 1:
        if allow_pruned:
            report.notes.append(
                f"the log starts at segment {first}; {gap} are gone and retention did not record removing "
                "them (accepted by --allow-pruned); its header's prev is taken as the anchor"
            )
            return None
        through = "nothing" if recorded is None else f"segments up to {recorded['removed_through']}"
        return Problem(
            first,
            None,
            None,
            f"{gap} missing: the log starts at segment {first}, but retention recorded removing {through} "
            f"({RETENTION_FILE}); segments were deleted by hand or lost (pass --allow-pruned to accept "
            "a gap you made on purpose)",
        )
    if recorded["removed_through"] == first - 1:
        header, _ = decode_line(first_path.read_bytes().split(b"\n", 1)[0])
        if header.get("prev") != recorded["anchor"]:
            return Problem(
                first,
                1,
                None,
                f"the header's prev is not the anchor retention recorded when it removed {gap} "
                "(segment replaced)",
            )
    report.notes.append(
        f"the log starts at segment {first}: retention removed {gap}; the anchor it recorded is checked"
    )
    return None


def read_retention(directory: Path) -> dict[str, Any] | None:
    """What retention recorded removing from a log directory ({"removed_through": N, "anchor": hash}),
    None when it removed nothing (or the record is unreadable: then a gap is not explained)."""
    try:
        data = orjson.loads((directory / RETENTION_FILE).read_bytes())
        return {"removed_through": int(data["removed_through"]), "anchor": str(data["anchor"])}
    except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        return None


def record_retention(directory: Path, removed: list[Path]) -> None:
    """Before retention removes `removed` (the oldest segments, contiguous): write down the last one
    and the anchor the next segment carries (fsync'd, atomically), so verify accepts that gap only."""
    if not removed:
        return
    numbers = {number: path for number, path in segments(directory)}
    last = max(int(SEGMENT_RE.match(p.name).group(1)) for p in removed)  # type: ignore[union-attr]
    following = numbers.get(last + 1)
    if following is None:  # never happens: the newest segment is never removed
        raise ValueError(f"segment {last + 1} of {directory} is missing; nothing removed")
    header, _ = decode_line(following.read_bytes().split(b"\n", 1)[0])
    body = {
        "removed_through": last,
        "anchor": header.get("prev"),
        "first_seq": header.get("first_seq"),
        "recorded": dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
    path = directory / RETENTION_FILE
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        fh.write(orjson.dumps(body))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(directory)


def _check_seal(
    seal: dict[str, Any],
    number: int,
    header: dict[str, Any],
    last: str,
    records: int,
    digest: str,
    public_key: Any | None,
) -> str | None:
    if seal.get("segment") != number:
        return f"the seal names segment {seal.get('segment')}"
    if seal.get("records") != records:
        return (
            f"the seal counts {seal.get('records')} records, the segment holds {records} "
            "(records removed or inserted)"
        )
    if seal.get("digest") != digest:
        return "the segment's content does not match its seal's digest"
    signature = seal.get("signature")
    if public_key is None:
        return None
    if not signature:
        return "the segment is not signed, but a public key was given"
    from cryptography.exceptions import InvalidSignature

    message = seal_message(number, str(header.get("prev")), last, records, digest)
    try:
        public_key.verify(base64.b64decode(signature), message)
    except (InvalidSignature, ValueError):
        return (
            "the signature does not verify with the given public key (the segment was re-written, or "
            "another key signed it)"
        )
    return None


def _seq_of(raw: bytes) -> int | None:
    match = re.search(rb'"seq":(\d+)', raw)
    return int(match.group(1)) if match else None


# -- retention -------------------------------------------------------------------------------------
def expired_segments(directory: Path, cutoff: dt.datetime) -> list[Path]:
    """The segments retention may delete: sealed ones whose seal is older than `cutoff`, from the
    oldest on and contiguous (a segment is never removed while an older one stays, so the log always
    starts at its first remaining segment, whose header's `prev` is the anchor `verify` starts from).
    The newest segment is never one of them (open or not: the writer continues the chain from it).
    Read-only (0444) files are deleted like others: removal
    needs write permission on the directory, not on the file. What it returns is recorded first
    (`record_retention`): the caller removes these paths, and verify must know the gap is retention's."""
    out: list[Path] = []
    for _, path in segments(directory)[:-1]:
        sealed = _seal_time(path)
        if sealed is None or sealed >= cutoff:
            break
        out.append(path)
    record_retention(directory, out)
    return out


def _seal_time(path: Path) -> dt.datetime | None:
    """When a segment was sealed (None: still open, or unreadable)."""
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 4096))
            tail = fh.read().rstrip(b"\n").rsplit(b"\n", 1)[-1]
        record, _ = decode_line(tail)
    except (OSError, ValueError):
        return None
    if record.get("kind") != "seal":
        return None
    return dt.datetime.fromisoformat(str(record["sealed"]).replace("Z", "+00:00"))
