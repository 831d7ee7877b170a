"""Tests for cdc_logs.observability.logging: secrets never reach a log line, nor stderr."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import structlog

from cdc_logs.observability.logging import RedactingStream, _redact_processor, configure, get_logger
from cdc_logs.observability.redact import register


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


# ------------------------------------------------------------------------------------- processor
@pytest.mark.parametrize(
    "key",
    ["password", "db_password", "Token", "sasl_password", "api_key", "apikey", "credentials", "secret_ref"],
)
def test_processor_masks_keys_named_like_secrets_whatever_the_value(key: str) -> None:
    for value in ("hunter2", 12345, {"x": 1}, None):
        out = _redact_processor(None, "info", {"event": "e", key: value})
        assert out[key] == "***"


def test_processor_redacts_strings_under_other_keys_and_keeps_the_rest() -> None:
    out = _redact_processor(
        None,
        "info",
        {"event": "connect to mysql://u:hunter2x@h/db", "dsn": "postgresql://u:hunter2x@h/db", "n": 3},
    )
    assert out == {"event": "connect to mysql://u:***@h/db", "dsn": "postgresql://u:***@h/db", "n": 3}


def test_processor_redacts_nested_values() -> None:
    out = _redact_processor(
        None,
        "info",
        {"event": "cfg", "source": {"password": "hunter2x", "urls": ["mysql://u:hunter2x@h/db"]}},
    )
    assert "hunter2x" not in repr(out)


# --------------------------------------------------------------------------------- captured logs
def _emit(log: Any) -> None:
    log.info(
        "connecting",
        dsn="postgresql://cdc:hunter2x@db:5432/app",
        password="hunter2x",
        url="amqp://guest:hunter2x@rabbit/",
    )
    log.warning("retrying %s", "mysql://root:hunter2x@h/db")
    log.error("failed: password=hunter2x")


def test_console_log_line_never_contains_the_secret(capsys: pytest.CaptureFixture[str]) -> None:
    configure("info", "console")
    _emit(get_logger("test"))
    out, err = capsys.readouterr()
    assert out == ""  # stdout belongs to --format json envelopes
    assert "connecting" in err
    assert "retrying mysql://root:***@h/db" in err
    assert "postgresql://cdc:***@db:5432/app" in err
    assert err.count("\n") == 3
    assert "hunter2x" not in err


def test_json_log_lines_never_contain_the_secret(capsys: pytest.CaptureFixture[str]) -> None:
    configure("info", "json")
    _emit(get_logger("test"))
    out, err = capsys.readouterr()
    assert out == ""
    lines = [orjson.loads(line) for line in err.splitlines()]
    assert [line["event"] for line in lines] == [
        "connecting",
        "retrying mysql://root:***@h/db",
        "failed: password=***",
    ]
    assert lines[0]["dsn"] == "postgresql://cdc:***@db:5432/app"
    assert lines[0]["password"] == "***"
    assert lines[0]["level"] == "info"
    assert "timestamp" in lines[0]
    assert "hunter2x" not in err


def test_bound_context_is_redacted_too(capsys: pytest.CaptureFixture[str]) -> None:
    configure("info", "json")
    get_logger("test").bind(dsn="mysql://u:hunter2x@h/db", token="hunter2x").info("bound")
    err = capsys.readouterr().err
    assert "hunter2x" not in err
    assert orjson.loads(err)["dsn"] == "mysql://u:***@h/db"


def test_level_filters(capsys: pytest.CaptureFixture[str]) -> None:
    configure("warning", "json")
    log = get_logger("test")
    log.info("hidden")
    log.warning("shown")
    err = capsys.readouterr().err
    assert "hidden" not in err
    assert "shown" in err


def test_exception_text_is_redacted_in_console_logs(capsys: pytest.CaptureFixture[str]) -> None:
    configure("info", "console")
    try:
        raise RuntimeError("cannot connect to postgresql://u:hunter2x@h/db")
    except RuntimeError:
        get_logger("test").exception("connect failed")
    err = capsys.readouterr().err
    assert "connect failed" in err
    assert "hunter2x" not in err


def test_exception_is_kept_and_redacted_in_json_logs(capsys: pytest.CaptureFixture[str]) -> None:
    configure("info", "json")
    try:
        raise RuntimeError("cannot connect to postgresql://u:hunter2x@h/db")
    except RuntimeError:
        get_logger("test").exception("connect failed")
    err = capsys.readouterr().err
    assert "RuntimeError" in err
    assert "postgresql://u:***@h/db" in err
    assert "hunter2x" not in err


# ------------------------------------------------------------------------------------------ stderr
def test_registered_secrets_are_masked_in_any_log_value(capsys: pytest.CaptureFixture[str]) -> None:
    register("Zq9-registered")
    configure("info", "json")
    get_logger("test").info("driver said: bad token 'Zq9-registered%ZZ'", detail=["Zq9-registered"])
    err = capsys.readouterr().err
    assert "Zq9-registered" not in err
    assert orjson.loads(err)["detail"] == ["***"]


def test_redacting_stream_masks_stray_writes_and_keeps_json_valid() -> None:
    import io

    register("Zq9-registered")
    raw = io.StringIO()
    stream = RedactingStream(raw)  # type: ignore[arg-type]
    line = orjson.dumps({"event": "failed: password=***", "dsn": "postgresql://u:***@h/db"}).decode()
    stream.write(line + "\n")  # already redacted by the processor: unchanged, still JSON
    stream.write("warning: Zq9-registered rejected\n")
    assert raw.getvalue().splitlines()[0] == line
    assert orjson.loads(raw.getvalue().splitlines()[0])["event"] == "failed: password=***"
    assert "Zq9-registered" not in raw.getvalue()
    assert stream.isatty() is False  # everything else is the wrapped stream's
