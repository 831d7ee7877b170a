"""Tests for cdc_logs.observability.logging: secrets never reach a log line."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
import structlog

from cdc_logs.observability.logging import _redact_processor, configure, get_logger, redact


@pytest.fixture(autouse=True)
def _reset_structlog() -> Iterator[None]:
    yield
    structlog.reset_defaults()


# ---------------------------------------------------------------------------------------- redact
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://u:secret@h/db", "postgresql://u:***@h/db"),
        (
            "postgresql+psycopg://cdc:secret@db.internal:5432/app?sslmode=require",
            "postgresql+psycopg://cdc:***@db.internal:5432/app?sslmode=require",
        ),
        ("mysql://root:secret@localhost:3306/shop", "mysql://root:***@localhost:3306/shop"),
        ("mysql+pymysql://root:secret@h/db", "mysql+pymysql://root:***@h/db"),
        ("amqp://guest:secret@rabbit:5672/%2F", "amqp://guest:***@rabbit:5672/%2F"),
        ("redis://:secret@cache:6379/0", "redis://:***@cache:6379/0"),
        (
            "mongodb://u:secret@h1:27017,h2:27017/db?replicaSet=rs0",
            "mongodb://u:***@h1:27017,h2:27017/db?replicaSet=rs0",
        ),
        ("postgresql://u:pa/ss:word@h/db", "postgresql://u:***@h/db"),
        (
            "from postgresql://a:secret@h1/x to mysql://b:secret@h2/y",
            "from postgresql://a:***@h1/x to mysql://b:***@h2/y",
        ),
    ],
)
def test_redact_url_passwords(text: str, expected: str) -> None:
    assert redact(text) == expected
    assert "secret" not in redact(text)


@pytest.mark.parametrize(
    "text",
    ["postgresql://u@h/db", "postgresql://h:5432/db", "http://example.com/a:b", "plain text", "user:pass"],
)
def test_redact_leaves_text_without_secrets_alone(text: str) -> None:
    assert redact(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("host=h user=u password=secret dbname=d", "host=h user=u password=*** dbname=d"),
        ("PASSWORD=secret&x=1", "PASSWORD=***&x=1"),
        ("passwd=secret", "passwd=***"),
        ("pwd=secret;", "pwd=***"),
        ("secret=abc token=def", "secret=*** token=***"),
        ("api_key=k1 api-key=k2 apikey=k3", "api_key=*** api-key=*** apikey=***"),
        ("https://h/x?user=u&password=secret&db=d", "https://h/x?user=u&password=***&db=d"),
    ],
)
def test_redact_key_value_secrets(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize("text", ["PGPASSWORD=secret", "db_password=secret", "sasl_password=secret"])
def test_redact_prefixed_secret_names(text: str) -> None:
    assert "secret" not in redact(text)


def test_redact_quoted_libpq_password() -> None:
    assert "secret" not in redact("host=h password='my secret' dbname=d")


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
        {"event": "connect to mysql://u:secret@h/db", "dsn": "postgresql://u:secret@h/db", "n": 3},
    )
    assert out == {"event": "connect to mysql://u:***@h/db", "dsn": "postgresql://u:***@h/db", "n": 3}


def test_processor_redacts_nested_values() -> None:
    out = _redact_processor(
        None, "info", {"event": "cfg", "source": {"password": "secret", "urls": ["mysql://u:secret@h/db"]}}
    )
    assert "secret" not in repr(out)


# --------------------------------------------------------------------------------- captured logs
def _emit(log: Any) -> None:
    log.info(
        "connecting",
        dsn="postgresql://cdc:secret@db:5432/app",
        password="secret",
        url="amqp://guest:secret@rabbit/",
    )
    log.warning("retrying %s", "mysql://root:secret@h/db")
    log.error("failed: password=secret")


def test_console_log_line_never_contains_the_secret(capsys: pytest.CaptureFixture[str]) -> None:
    configure("info", "console")
    _emit(get_logger("test"))
    out, err = capsys.readouterr()
    assert out == ""  # stdout belongs to --format json envelopes
    assert "connecting" in err
    assert "retrying mysql://root:***@h/db" in err
    assert "postgresql://cdc:***@db:5432/app" in err
    assert err.count("\n") == 3
    assert "secret" not in err


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
    assert "secret" not in err


def test_bound_context_is_redacted_too(capsys: pytest.CaptureFixture[str]) -> None:
    configure("info", "json")
    get_logger("test").bind(dsn="mysql://u:secret@h/db", token="secret").info("bound")
    err = capsys.readouterr().err
    assert "secret" not in err
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
        raise RuntimeError("cannot connect to postgresql://u:secret@h/db")
    except RuntimeError:
        get_logger("test").exception("connect failed")
    err = capsys.readouterr().err
    assert "connect failed" in err
    assert "secret" not in err


def test_exception_is_kept_and_redacted_in_json_logs(capsys: pytest.CaptureFixture[str]) -> None:
    configure("info", "json")
    try:
        raise RuntimeError("cannot connect to postgresql://u:secret@h/db")
    except RuntimeError:
        get_logger("test").exception("connect failed")
    err = capsys.readouterr().err
    assert "RuntimeError" in err
    assert "postgresql://u:***@h/db" in err
    assert "secret" not in err
