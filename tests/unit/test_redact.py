"""Tests for cdc_logs.observability.redact: secret shapes, known values, configs, idempotence, speed."""

from __future__ import annotations

import time

import orjson
import pytest
from pydantic import SecretStr

from cdc_logs.observability.redact import (
    MASK,
    is_secret_key,
    mask_config,
    mask_value,
    redact,
    redact_value,
    register,
    register_config,
    register_text,
)

JAAS = 'org.apache.kafka.common.security.plain.PlainLoginModule required username="u" password="S3cretpw";'


# -- shapes ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://u:S3cretpw@h/db", "postgresql://u:***@h/db"),
        (
            "postgresql+psycopg://cdc:S3cretpw@db.internal:5432/app?sslmode=require",
            "postgresql+psycopg://cdc:***@db.internal:5432/app?sslmode=require",
        ),
        ("mysql+pymysql://root:S3cretpw@h/db", "mysql+pymysql://root:***@h/db"),
        ("amqp://guest:S3cretpw@rabbit:5672/%2F", "amqp://guest:***@rabbit:5672/%2F"),
        ("redis://:S3cretpw@cache:6379/0", "redis://:***@cache:6379/0"),
        ("mongodb://u:S3cretpw@h1:27017,h2:27017/db?rs=0", "mongodb://u:***@h1:27017,h2:27017/db?rs=0"),
        ("postgresql://u:pa/ss:S3cretpw@h/db", "postgresql://u:***@h/db"),
        (
            "from postgresql://a:S3cretpw@h1/x to mysql://b:S3cretpw@h2/y",
            "from postgresql://a:***@h1/x to mysql://b:***@h2/y",
        ),
        # JDBC URLs, the three ways they carry a password
        ("jdbc:postgresql://u:S3cretpw@h/x", "jdbc:postgresql://u:***@h/x"),
        ("jdbc:postgresql://h/x?user=u&password=S3cretpw", "jdbc:postgresql://h/x?user=u&password=***"),
        ("jdbc:sqlserver://h;user=u;password=S3cretpw;db=x", "jdbc:sqlserver://h;user=u;password=***;db=x"),
        ("jdbc:oracle:thin:u/S3cretpw@h:1521/x", "jdbc:oracle:thin:u/***@h:1521/x"),
        # key=value pairs, quoted or not, and what JSON / Python print
        ("host=h user=u password=S3cretpw dbname=d", "host=h user=u password=*** dbname=d"),
        ("host=h password='my S3cretpw' dbname=d", "host=h password='***' dbname=d"),
        ("PGPASSWORD=S3cretpw sslpassword=S3cretpw", "PGPASSWORD=*** sslpassword=***"),
        ("https://h/x?api_key=S3cretpw&token=S3cretpw&a=1", "https://h/x?api_key=***&token=***&a=1"),
        (JAAS, JAAS.replace("S3cretpw", "***")),
        ('{"database.password": "S3cretpw", "n": 1}', '{"database.password": "***", "n": 1}'),
        ("{'sasl_password': 'S3cretpw'}", "{'sasl_password': '***'}"),
        ("Authorization: Bearer S3cretpw", "Authorization: Bearer ***"),
    ],
)
def test_secret_shapes_are_masked(text: str, expected: str) -> None:
    assert redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "postgresql://u@h/db",
        "postgresql://h:5432/db",
        "http://example.com/a:b",
        "user@example.com wrote http://x.y/z",
        "key.converter=org.apache.kafka.connect.json.JsonConverter message.key.columns=a",
        "sslmode=require application_name=cdc-logs",
        # cdc-logs' own hints keep their placeholders
        "write it as postgresql://user:password@host:5432/dbname (or key=value pairs)",
        "e.g. mysql://u:p@host:3306/db",
        "ssl.key.password=${file:/secrets.properties:pw}",  # a Connect provider reference: no secret
        "plain text, user:pass",
    ],
)
def test_text_without_secrets_is_left_alone(text: str) -> None:
    assert redact(text) == text


def test_masking_is_idempotent_and_keeps_json_valid() -> None:
    record = {"event": f"failed: {JAAS} at postgresql://u:S3cretpw@h/db?password=S3cretpw", "token": "x"}
    once = redact(orjson.dumps(record).decode())
    assert "S3cretpw" not in once
    assert redact(once) == once
    assert orjson.loads(once)["event"].startswith("failed: ")


# -- keys --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("key", "secret"),
    [
        ("database.password", True),
        ("sasl.jaas.config", True),
        ("ssl.key", True),
        ("aws.secret.access.key", True),
        ("api_key", True),
        ("auth_token", True),
        ("Authorization", True),
        ("credentials", True),
        ("key.converter", False),
        ("message.key.columns", False),
        ("database.user", False),
        ("event", False),
    ],
)
def test_secret_keys(key: str, secret: bool) -> None:
    assert is_secret_key(key) is secret


def test_mask_value_masks_by_key_and_by_content() -> None:
    assert mask_value("database.password", "S3cretpw") == MASK
    assert mask_value("database.password", "${file:/s:k}") == "${file:/s:k}"
    assert (
        mask_value("database.url", "jdbc:postgresql://h/x?password=S3cretpw")
        == "jdbc:postgresql://h/x?password=***"
    )
    assert mask_value("producer.override.login", JAAS) == JAAS.replace("S3cretpw", "***")
    assert mask_config({"a": "b", "x.password": "S3cretpw", "n": 3}) == {"a": "b", "x.password": MASK, "n": 3}


def test_redact_value_walks_structures() -> None:
    value = {"password": None, "urls": ["mysql://u:S3cretpw@h/db"], "nested": {"token": 7, "ok": ("a",)}}
    assert redact_value(value) == {
        "password": MASK,
        "urls": ["mysql://u:***@h/db"],
        "nested": {"token": MASK, "ok": ("a",)},
    }


# -- known values ------------------------------------------------------------------------------------
def test_registered_values_are_masked_wherever_they_appear() -> None:
    register("Zq9pass!word")
    assert (
        redact('invalid percent-encoded token: "Zq9pass!word%ZZ"')
        == 'invalid percent-encoded token: "***%ZZ"'
    )
    assert redact("Zq9pass%21word") == MASK  # its percent-encoded form too


def test_register_text_finds_the_secrets_a_dsn_embeds() -> None:
    register_text("postgresql://cdc:Zq9pw%ZZ@127.0.0.1:5432/db")  # libpq would echo the raw token
    register_text("postgresql://cdc:Zq9at@x@127.0.0.1/db")  # an unencoded '@': split both ways
    register_text("host=h password='Zq9quoted")  # an unterminated quote
    register_text(JAAS.replace("S3cretpw", "Zq9jaas1"))
    register_text("cdc:Zq9noscheme@127.0.0.1/db")  # a DSN missing its scheme
    for fragment in ("Zq9pw%ZZ", "Zq9at@x", "Zq9quoted", "Zq9jaas1", "Zq9noscheme"):
        assert redact(f"driver: {fragment!r}") == f"driver: {MASK!r}", fragment


def test_register_config_walks_dicts_lists_and_secret_strings() -> None:
    register_config(
        {
            "source": {"dsn": SecretStr("postgresql://u:Zq9one11@h/db"), "password": "Zq9two22"},
            "destinations": [{"headers": {"Authorization": "Bearer Zq9three3"}}, {"url": "sqlite:///x.db"}],
        }
    )
    text = redact("Zq9one11 Zq9two22 Zq9three3 sqlite:///x.db")
    assert text == "*** *** *** sqlite:///x.db"  # a URL without a password is no secret


def test_short_and_common_values_are_masked_by_position_only() -> None:
    register("cdc")
    register("postgres")
    assert redact("cdc-logs connects to postgres") == "cdc-logs connects to postgres"
    assert redact("postgresql://cdc:cdc@h/db") == "postgresql://cdc:***@h/db"


# -- cost ---------------------------------------------------------------------------------------------
def test_text_without_secrets_is_cheap() -> None:
    register("Zq9cost-secret")
    line = "2026-01-01T00:00:00Z [info] batch written events=500 sink=kafka seconds=0.012 lag_ms=40"
    start = time.perf_counter()
    for _ in range(20_000):
        redact(line)
    per_call = (time.perf_counter() - start) / 20_000
    assert per_call < 50e-6, f"{per_call * 1e6:.1f} µs per log line"  # ~5 µs: a few substring tests
