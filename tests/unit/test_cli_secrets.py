"""Tests for cdc_logs.cli.secrets: credentials on the command line are known before anything runs,
and usage errors never quote the value they reject."""

from __future__ import annotations

import subprocess
import sys

import pytest
import typer

from cdc_logs.cli.secrets import register_cli_secrets, usage_message
from cdc_logs.observability.redact import redact


def test_credential_options_and_variables_are_registered() -> None:
    register_cli_secrets(
        [
            "debezium",
            "--password",
            "Zq9-option",
            "connectors",
            "list",
            "--connect-url=http://admin:Zq9-url11@h:8083",
            "--dsn",  # the last token: no value to take
        ],
        {"CDC_DSN": "host=h password=Zq9-env111", "CDC_LOG_FORMAT": "Zq9-not-a-secret"},
    )
    assert redact("Zq9-option Zq9-url11 Zq9-env111") == "*** *** ***"
    assert redact("Zq9-not-a-secret") == "Zq9-not-a-secret"


def test_a_port_option_is_not_taken_for_a_credential() -> None:
    register_cli_secrets(["run", "--http-port", "Zq9-8080x", "--security-protocol", "Zq9-proto"], {})
    assert redact("Zq9-8080x Zq9-proto") == "Zq9-8080x Zq9-proto"


@pytest.mark.parametrize(
    "message",
    [
        "'Zq9-pasted' is not a valid integer.",
        "Zq9-pasted is not in the range 1<=x<=65535.",
        "'Zq9-pasted' is not one of 'a', 'b'.",
    ],
)
def test_usage_errors_drop_the_rejected_value(message: str) -> None:
    error = typer.BadParameter(message, param_hint="'--http-port'")
    text = usage_message(error)
    assert "Zq9-pasted" not in text
    assert text.startswith("Invalid value for '--http-port': the value is not")


def test_warnings_and_stdlib_logging_reach_stderr_redacted() -> None:
    code = (
        "import logging, warnings\n"
        "from cdc_logs.observability import logging as cdc_logging\n"
        "cdc_logging.install_stderr()\n"
        "warnings.warn('retrying postgresql://u:Zq9-warned@h/db')\n"
        "logging.getLogger('pika').error('cannot open amqp://guest:Zq9-logged@h/')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "postgresql://u:***@h/db" in result.stderr and "amqp://guest:***@h/" in result.stderr
    assert "Zq9-" not in result.stderr


def test_debug_traceback_and_catch_all_are_redacted() -> None:
    url = "http://admin:Zq9-tb-secret@127.0.0.1:99999"
    for extra in ([], ["--debug"]):
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "cdc_logs",
                *extra,
                "debezium",
                "connectors",
                "list",
                "--connect-url",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 2, result.stderr
        assert "port is not a number from 1 to 65535" in result.stderr
        assert "Zq9-tb-secret" not in result.stdout + result.stderr
    assert "Traceback" in result.stderr  # --debug still shows where it failed
