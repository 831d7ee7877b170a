"""Preflight checks for a `rabbitmq` source (`cdc-logs doctor -c pipeline.yaml`), each failing one
with its fix. Read-only: passive declares only (each on a throwaway channel, since a failed one closes
its channel); nothing is declared, bound, consumed or acknowledged.

What a run needs: the broker, the login and the virtual host, the queue (or `declare: true`, which
creates it), the exchange it binds to, and the dead-letter exchange poison messages are nacked to.
The arguments of an existing queue are not compared with `queue_arguments`: AMQP shows them only to
a declare that would fail, and the management API may not be enabled.
"""

from __future__ import annotations

import contextlib
from typing import Any

from cdc_logs.position import Position
from cdc_logs.readers.checks import Check, missing_client, warn

_TIMEOUT_S = 5.0


def check_source(cfg: Any, stored: Position | None = None) -> list[Check]:
    """The checks for a configured `rabbitmq` source (the broker holds the resume state: `stored` is
    not checked)."""
    missing = missing_client("pika", "rabbitmq", "the rabbitmq source")
    if missing is not None:
        return [missing]
    import pika.exceptions as pex

    from cdc_logs.readers.rabbitmq.config import DLX_ARGUMENT, parameters

    params, where = parameters(cfg)
    params.client_properties = {"connection_name": "cdc-logs doctor"}
    params.socket_timeout = params.stack_timeout = params.blocked_connection_timeout = _TIMEOUT_S
    params.connection_attempts, params.retry_delay = 1, 0
    try:
        connection = _connect(params)
    except pex.ProbableAuthenticationError:
        return [Check("broker", False, f"RabbitMQ at {where} refused the login", _login_fix(cfg))]
    except pex.ProbableAccessDeniedError:
        return [
            Check(
                "broker",
                False,
                f"RabbitMQ at {where} denied access to virtual host {params.virtual_host!r}",
                "check virtual_host, and the user's permissions on it (rabbitmqctl set_permissions)",
            )
        ]
    except (pex.AMQPError, OSError) as exc:
        return [
            Check(
                "broker",
                False,
                f"cannot connect to RabbitMQ at {where}: {exc!r}",
                "check url / host / port (and ssl) and that the broker is running",
            )
        ]
    try:
        vhost = params.virtual_host
        checks = [Check("broker", True, f"connected to {where}, virtual host {vhost!r}")]
        checks.append(_queue(connection, cfg))
        if cfg.exchange:
            checks.append(_exchange(connection, cfg.exchange, "exchange", declared=cfg.declare))
        if cfg.nacks_poison():
            dlx = cfg.queue_arguments.get(DLX_ARGUMENT)
            if isinstance(dlx, str) and dlx:
                checks.append(_exchange(connection, dlx, "dead-letter exchange", declared=False))
            elif dlx is None:
                checks.append(
                    Check(
                        "dead-letter exchange",
                        True,
                        "given by a policy (dead_letter_exchange: true): not checked, doctor cannot see "
                        "policies",
                    )
                )
        return checks
    finally:
        with contextlib.suppress(pex.AMQPError):
            connection.close()


def _connect(params: Any) -> Any:
    import pika

    return pika.BlockingConnection(params)


def _login_fix(cfg: Any) -> str:
    return "check the url's user and password" if cfg.url else "check username/password"


def _passive(connection: Any, declare: Any) -> tuple[Any, int | None, str]:
    """Run one passive declare on a channel of its own: (its result, the broker's error code, text)."""
    import pika.exceptions as pex

    channel = connection.channel()
    try:
        return declare(channel), None, ""
    except pex.ChannelClosedByBroker as exc:
        return None, exc.reply_code, exc.reply_text
    finally:
        if channel.is_open:
            channel.close()


def _queue(connection: Any, cfg: Any) -> Check:
    name = f"queue {cfg.queue}"
    result, code, text = _passive(connection, lambda ch: ch.queue_declare(cfg.queue, passive=True))
    if code == 404:
        if cfg.declare:
            return warn(
                name,
                "does not exist yet: the run declares it (durable, with queue_arguments)",
                "nothing to do if this is the first run; otherwise check the queue's name",
            )
        return Check(
            name,
            False,
            "does not exist (and declare is false: the source only uses an existing queue)",
            "create the queue (and its binding), fix the source's queue, or set declare: true",
        )
    if code is not None:
        return Check(name, False, f"the broker refused a passive declare: {code} {text}", _permission_fix())
    method = result.method
    return Check(name, True, f"{method.message_count} message(s) ready, {method.consumer_count} consumer(s)")


def _exchange(connection: Any, exchange: str, what: str, *, declared: bool) -> Check:
    name = f"{what} {exchange}"
    _result, code, text = _passive(connection, lambda ch: ch.exchange_declare(exchange, passive=True))
    if code == 404:
        if declared:
            return warn(
                name, "does not exist yet: the run declares it", "nothing to do if this is the first run"
            )
        if what == "dead-letter exchange":
            return Check(
                name,
                False,
                "does not exist: the broker drops the poison messages the source nacks to it",
                f"declare the exchange {exchange!r} and bind a queue to it, or remove "
                "x-dead-letter-exchange from queue_arguments",
            )
        return Check(
            name,
            False,
            "does not exist (and declare is false)",
            "create the exchange, fix the source's exchange, or set declare: true",
        )
    if code is not None:
        return Check(name, False, f"the broker refused a passive declare: {code} {text}", _permission_fix())
    return Check(name, True, "exists")


def _permission_fix() -> str:
    return "give the user configure permission on it (a passive declare needs it), or check the name"
