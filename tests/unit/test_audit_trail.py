"""audit_trail: the hash-chained, signed log; `cdc-logs audit verify` finds any altered, removed,
inserted or reordered record and names the first bad one; crash recovery logs each change once."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import orjson
import pytest

from cdc_logs.middleware import audit_log
from cdc_logs.middleware.audit_trail import AuditTrailParams, AuditTrailStage
from cdc_logs.stages import StageRunner
from tests.helpers import make_event
from tests.integration.inprocess_cli import cli_here

pytest.importorskip("cryptography")


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return cli_here(*args)  # the real entry point, in this process (quick)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("keys")
    done = _cli("audit", "keygen", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert (out / "audit-private.pem").stat().st_mode & 0o777 == 0o600
    assert "PRIVATE" not in done.stdout
    return out


def _stage(keys: Path | None, **params: object) -> AuditTrailStage:
    if keys is not None:
        params.update(digital_signature=True, private_key_file=str(keys / "audit-private.pem"))
    return AuditTrailStage(AuditTrailParams.model_validate(params))


def _write_log(tmp: Path, keys: Path | None, n: int = 10, **params: object) -> Path:
    """n changes through a stage (segments of 4 records), committed and closed."""
    runner = StageRunner([_stage(keys, max_segment_records=4, **params)], tmp / "state", "p")
    runner.open({"src": None}, None)
    for i in range(1, n + 1, 2):
        runner.process([make_event(i), make_event(i + 1, op="u", key=i)], seq=i + 1)
        runner.before_commit(i + 1, {"src": f"P{i + 1}"})
        runner.after_commit()
    runner.close()
    return tmp / "state" / "audit_trail"


def _verify(path: Path, keys: Path | None) -> subprocess.CompletedProcess[str]:
    extra = ["--public-key", str(keys / "audit-public.pem")] if keys is not None else []
    return _cli("audit", "verify", str(path), *extra)


def _lines(path: Path) -> list[bytes]:
    return path.read_bytes().splitlines(keepends=True)


def _rewrite(path: Path, lines: list[bytes]) -> None:
    os.chmod(path, 0o644)  # an attacker with the owner's rights
    path.write_bytes(b"".join(lines))


def test_a_good_log_verifies_with_its_key_and_is_read_only(tmp_path: Path, keys: Path) -> None:
    directory = _write_log(tmp_path, keys)
    files = audit_log.segments(directory)
    assert len(files) == 3  # 4 + 4 + 2 records, the last sealed when the pipeline stopped
    assert all(p.stat().st_mode & 0o777 == 0o444 for _, p in files)
    done = _verify(directory, keys)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 segments, 10 records" in done.stdout
    records = [orjson.loads(line) for line in _lines(files[0][1])]
    assert records[1]["after"] == {"id": 1, "v": 1} and records[1]["seq"] == 1
    assert records[2]["prev"] == records[1]["hash"]


def test_one_byte_changed_is_named(tmp_path: Path, keys: Path) -> None:
    directory = _write_log(tmp_path, keys)
    path = audit_log.segment_path(directory, 2)
    lines = _lines(path)
    lines[2] = lines[2].replace(b'"after":{"id":5,"v":6}', b'"after":{"id":5,"v":7}')  # record 6
    _rewrite(path, lines)
    done = _verify(directory, keys)
    assert done.returncode == 1
    assert "segment 2, line 3, record 6: altered" in done.stdout


def test_a_removed_record_is_named(tmp_path: Path, keys: Path) -> None:
    directory = _write_log(tmp_path, keys)
    path = audit_log.segment_path(directory, 1)
    lines = _lines(path)
    del lines[2]  # record 2
    _rewrite(path, lines)
    done = _verify(directory, keys)
    assert done.returncode == 1
    assert "segment 1, line 3, record 3: its prev is not the hash of the line before it" in done.stdout


def test_reordered_and_inserted_records_are_named(tmp_path: Path, keys: Path) -> None:
    directory = _write_log(tmp_path / "a", keys)
    path = audit_log.segment_path(directory, 2)
    lines = _lines(path)
    lines[1], lines[2] = lines[2], lines[1]
    _rewrite(path, lines)
    done = _verify(directory, keys)
    assert done.returncode == 1 and "segment 2, line 2, record 6" in done.stdout, done.stdout

    directory = _write_log(tmp_path / "b", keys)
    path = audit_log.segment_path(directory, 1)
    lines = _lines(path)
    # A forged record with a correct hash and prev, inserted after record 1: record 2 then breaks.
    body = orjson.loads(lines[1])
    body.pop("hash")
    body["prev"] = orjson.loads(lines[1])["hash"]
    forged, _ = audit_log.encode_record(body)
    lines.insert(2, forged)
    _rewrite(path, lines)
    done = _verify(directory, keys)
    assert done.returncode == 1 and "segment 1, line 3, record 1: record number 1 where 2" in done.stdout, (
        done.stdout
    )


def test_a_rewritten_chain_fails_the_signature(tmp_path: Path, keys: Path) -> None:
    """Recomputing every hash after a change is caught by the seal's digest and signature."""
    directory = _write_log(tmp_path, keys)
    path = audit_log.segment_path(directory, 3)
    prev, out = None, []
    for line in _lines(path):
        body = orjson.loads(line)
        body.pop("hash")
        if prev is not None:
            body["prev"] = prev
        if body.get("after") == {"id": 9, "v": 10}:
            body["after"] = {"id": 9, "v": 11}
        if body["kind"] == "seal":  # the forger can recompute the digest, not the signature
            body["digest"] = audit_log.sha256(b"".join(out))
        encoded, prev = audit_log.encode_record(body)
        out.append(encoded)
    _rewrite(path, out)
    done = _verify(directory, keys)
    assert done.returncode == 1
    assert "segment 3, line 4: the signature does not verify" in done.stdout
    # Without the key, the checkpointed head still tells (the state is beside the log) ...
    done = _verify(directory, None)
    assert done.returncode == 1 and "record 10: the committed record's hash differs" in done.stdout
    # ... but a copy of the log alone, checked without the key, is only a chain: the key is the proof.
    copy = tmp_path / "copy"
    shutil.copytree(directory, copy)
    assert _verify(copy, None).returncode == 0


def test_keygen_into_a_file_or_an_impossible_directory_is_a_usage_error(tmp_path: Path) -> None:
    afile = tmp_path / "afile"
    afile.write_text("x")
    done = _cli("audit", "keygen", "--out", str(afile))
    assert done.returncode == 2 and "is a file, not a directory" in done.stderr, done.stderr
    done = _cli("audit", "keygen", "--out", str(afile / "sub"))
    assert done.returncode == 2 and "cannot create the directory" in done.stderr, done.stderr
    assert "unexpected" not in done.stderr


def test_config_validate_checks_the_key_and_salt_files_named(tmp_path: Path, keys: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    rsa_pem = tmp_path / "rsa.pem"
    rsa_pem.write_bytes(
        rsa.generate_private_key(public_exponent=65537, key_size=1024).private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )

    def validate(
        audit: dict[str, object], mask: dict[str, object] | None = None
    ) -> subprocess.CompletedProcess[str]:
        plugins: list[dict[str, object]] = [{"type": "audit_trail", "params": audit}]
        if mask is not None:
            plugins.insert(0, {"type": "gdpr_compliance", "params": mask})
        config = {
            "name": "p",
            "source": {"type": "sqlite", "path": str(tmp_path / "x.db"), "tables": ["t"]},
            "destination": {"type": "stdout"},
            "plugins": {"middleware": {"middleware": plugins}},
        }
        path = tmp_path / "p.yaml"
        path.write_bytes(orjson.dumps(config))  # JSON is YAML
        return _cli("config", "validate", "-c", str(path))

    signed = {"digital_signature": True}
    good = validate({**signed, "private_key_file": str(keys / "audit-private.pem")})
    assert good.returncode == 0, good.stderr
    for bad, said in [
        (str(tmp_path / "nope.pem"), "cannot be read"),
        (str(tmp_path), "cannot be read"),  # a directory
        (str(rsa_pem), "is not an Ed25519 key"),
    ]:
        done = validate({**signed, "private_key_file": bad})
        assert done.returncode == 2 and said in done.stderr, done.stderr
        assert "PRIVATE" not in done.stderr + done.stdout
    done = validate({}, {"pii_fields": ["email"], "salt_file": str(tmp_path / "nonexistent")})
    assert done.returncode == 2 and "cannot read the salt file" in done.stderr, done.stderr


def test_a_log_damaged_before_its_end_stops_the_start_as_an_integrity_error(tmp_path: Path) -> None:
    from cdc_logs.errors import CdcError, ErrorKind

    directory = _write_log(tmp_path, None)
    newest = audit_log.segment_path(directory, 3)
    lines = _lines(newest)
    _rewrite(newest, [lines[0], lines[1].replace(b'"op":"c"', b'"op":"d"'), *lines[2:]])
    runner = StageRunner([_stage(None, max_segment_records=4)], tmp_path / "state", "p")
    with pytest.raises(CdcError) as caught:
        runner.open({"src": "P10"}, None)
    assert caught.value.kind is ErrorKind.INTEGRITY and caught.value.exit_code == 3
    assert "audit verify" in (caught.value.hint or "")


def test_verify_on_a_directory_without_segments_is_a_usage_error(tmp_path: Path) -> None:
    done = _cli("audit", "verify", str(tmp_path))
    assert done.returncode == 2 and "holds no audit segments" in done.stderr, done.stderr
    directory = _write_log(tmp_path / "w", None)  # the checkpoint committed records: the log is gone
    for _, path in audit_log.segments(directory):
        path.unlink()
    done = _cli("audit", "verify", str(directory))
    assert done.returncode == 1 and "no audit segments" in done.stdout, done.stdout


def test_segments_deleted_by_hand_from_the_start_fail_verify(tmp_path: Path, keys: Path) -> None:
    """Only a gap retention recorded (retention.json) passes; a hand-deleted start is named."""
    directory = _write_log(tmp_path, keys)
    audit_log.segment_path(directory, 1).unlink()
    done = _verify(directory, keys)
    assert done.returncode == 1, done.stdout
    assert "segment 1 missing" in done.stdout and "retention recorded removing nothing" in done.stdout
    done = _cli("audit", "verify", str(directory), "--allow-pruned")
    assert done.returncode == 0 and "--allow-pruned" in done.stdout, done.stdout


def test_retention_removes_whole_segments_from_the_start(tmp_path: Path, keys: Path) -> None:
    directory = _write_log(tmp_path, keys)
    first = audit_log.segment_path(directory, 1)
    audit_log.record_retention(directory, [first])  # what retention does before it removes (see below)
    first.unlink()
    done = _verify(directory, keys)
    assert done.returncode == 0, done.stdout
    assert "starts at segment 2: retention removed segment 1" in done.stdout
    audit_log.segment_path(directory, 2).unlink()  # beyond what retention recorded
    done = _verify(directory, keys)
    assert done.returncode == 1 and "segments 1-2 missing" in done.stdout, done.stdout
    assert "retention recorded removing segments up to 1" in done.stdout


def test_a_missing_middle_segment_and_a_cut_end_are_named(tmp_path: Path, keys: Path) -> None:
    directory = _write_log(tmp_path, keys)
    audit_log.segment_path(directory, 2).unlink()
    done = _verify(directory, keys)
    assert done.returncode == 1 and "segment 2 is missing" in done.stdout

    directory = _write_log(tmp_path / "b", keys)
    audit_log.segment_path(directory, 3).unlink()  # the newest segment: the checkpoint says record 10
    done = _verify(directory, keys)
    assert done.returncode == 1 and "log ends at record 8" in done.stdout, done.stdout


def test_a_crash_replay_logs_each_change_once(tmp_path: Path) -> None:
    """Records written for a batch whose positions were not committed are kept; their replay is skipped."""
    state = tmp_path / "state"
    runner = StageRunner([_stage(None)], state, "p")
    runner.open({"src": None}, None)
    runner.process([make_event(1), make_event(2)], seq=2)
    runner.before_commit(2, {"src": "P2"})
    runner.process([make_event(3), make_event(4)], seq=4)  # logged, then the process dies
    segment = audit_log.segment_path(state / "audit_trail", 1)
    with open(segment, "ab") as fh:
        fh.write(b'{"kind":"change","seq":5,"pr')  # a torn write of the next batch

    again = StageRunner([_stage(None)], state, "p")
    again.open({"src": "P2"}, None)  # restored at P2: changes 3 and 4 come again, then 5
    again.process([make_event(3)], seq=3)
    again.process([make_event(4), make_event(5)], seq=5)
    again.before_commit(5, {"src": "P5"})
    again.close()
    report = audit_log.verify(state / "audit_trail")
    assert report.ok, report.problems
    logged = [
        orjson.loads(line)["source"]["seq"]
        for _, p in audit_log.segments(state / "audit_trail")
        for line in p.read_bytes().splitlines()
        if b'"kind":"change"' in line
    ]
    assert logged == [1, 2, 3, 4, 5]


def test_levels_changes_and_metadata(tmp_path: Path) -> None:
    for level in ("changes", "metadata"):
        runner = StageRunner([_stage(None, audit_level=level)], tmp_path / level, "p")
        runner.open({"src": None}, None)
        runner.process([make_event(1), make_event(2, op="u", key=1), make_event(3, op="d", key=1)], seq=3)
        runner.close()
        path = audit_log.segment_path(tmp_path / level / "audit_trail", 1)
        records = [orjson.loads(line) for line in path.read_bytes().splitlines()][1:4]
        assert all("after" not in r and "before" not in r for r in records)
        if level == "changes":
            assert records[0]["changes"] == {"id": {"new": 1}, "v": {"new": 1}}
            assert records[1]["changes"] == {"v": {"old": 1, "new": 2}}  # id unchanged: not logged
            assert records[2]["changes"] == {} and records[2]["key"] == {"id": 1}
        else:
            assert all("changes" not in r for r in records) and records[2]["op"] == "d"


def test_a_missing_key_file_names_the_fix(tmp_path: Path) -> None:
    from cdc_logs.errors import CdcError

    with pytest.raises(CdcError) as caught:
        _stage(None, digital_signature=True, private_key_file=str(tmp_path / "nope.pem"))
    assert "cdc-logs audit keygen" in (caught.value.hint or "")
    with pytest.raises(CdcError):
        _stage(None, digital_signature=True)


def test_retention_lists_old_sealed_segments_from_the_start(tmp_path: Path) -> None:
    import datetime as dt

    directory = _write_log(tmp_path, None)
    later = dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
    assert audit_log.expired_segments(directory, dt.datetime(2000, 1, 1, tzinfo=dt.UTC)) == []
    expired = audit_log.expired_segments(directory, later)
    assert [p.name for p in expired] == ["audit-000001.log", "audit-000002.log"]  # never the newest
    for path in expired:
        path.unlink()  # read-only files: deleting needs the directory's permission only
    assert audit_log.verify(directory).ok


def test_a_crash_while_creating_a_segment_leaves_a_log_that_goes_on(tmp_path: Path) -> None:
    state = tmp_path / "state"
    runner = StageRunner([_stage(None, max_segment_records=2)], state, "p")
    runner.open({"src": None}, None)
    runner.process([make_event(1), make_event(2)], seq=2)  # segment 1 sealed when full
    runner.before_commit(2, {"src": "P2"})
    audit_log.segment_path(state / "audit_trail", 2).write_bytes(b"")  # created, header never written
    again = StageRunner([_stage(None, max_segment_records=2)], state, "p")
    again.open({"src": "P2"}, None)
    again.process([make_event(3)], seq=3)
    again.close()
    report = audit_log.verify(state / "audit_trail")
    assert report.ok and report.records == 3, report.problems


def test_a_missing_cryptography_package_names_the_extra(monkeypatch: pytest.MonkeyPatch, keys: Path) -> None:
    from cdc_logs import extras
    from cdc_logs.errors import CdcError

    monkeypatch.setattr(extras, "installed", lambda module: module != "cryptography")
    with pytest.raises(CdcError) as caught:
        _stage(keys)
    assert caught.value.hint == "pip install 'cdc-logs[audit]'"
    assert "PRIVATE" not in str(caught.value)


def test_gdpr_retention_removes_old_audit_segments_and_the_log_still_verifies(tmp_path: Path) -> None:
    """retention_period_days (gdpr_compliance) reaches the audit log through build.retention()."""
    import time

    from cdc_logs.build import build_plugins, retention
    from cdc_logs.configfile import parse_config
    from cdc_logs.observability.metrics import Metrics

    directory = _write_log(tmp_path, None)  # <state_dir>/audit_trail, 3 sealed segments
    cfg = parse_config(
        {
            "name": "p",
            "source": {"type": "sqlite", "path": str(tmp_path / "x.db"), "tables": ["t"]},
            "destination": {"type": "stdout"},
            "sync": {"state_dir": str(tmp_path / "state")},
            "plugins": {
                "middleware": {
                    "middleware": [
                        {"type": "gdpr_compliance", "params": {"pii_fields": ["email"], "salt": "s",
                                                               "retention_period_days": 1}},
                        {"type": "audit_trail", "params": {"max_segment_records": 4}},
                    ]
                }
            },
        }
    )  # fmt: skip
    transforms, _ = build_plugins(cfg)
    kept = retention(cfg, transforms, Metrics("p", enabled=False), None)
    assert kept is not None
    assert kept.run_once().get("audit", 0) == 0  # sealed just now: kept
    kept._clock = lambda: time.time() + 2 * 86_400  # two days later
    assert kept.run_once()["audit"] == 2
    assert [p.name for _, p in audit_log.segments(directory)] == ["audit-000003.log"]
    report = audit_log.verify(directory)
    assert report.ok, report.problems
