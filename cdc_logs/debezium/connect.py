"""Kafka Connect REST client: connectors, tasks, plugins, validation, topics and offsets.

One `requests.Session` per client, with timeouts on every call, basic auth (or credentials in the URL)
and TLS options (CA bundle or `verify=False`, client certificate). Failures become `ConnectError` (a
`CdcError`) whose message is Connect's own `message`, with secrets of the config involved masked and a
hint naming the fix.

Retries are bounded (`retries` attempts, exponential backoff): a refused connection (the request never
reached the worker), and HTTP 409 while the workers rebalance ("Cannot complete request momentarily due
to stale configuration" / "... because of a conflicting operation"), or a 500 saying "Request cannot be
completed because a rebalance is expected" (seen on Connect 4.3 right after a connector was deleted):
Connect refused those requests before applying them. A read timeout is retried only
for idempotent methods: a timed-out POST may have been applied. A 409 saying a connector "already
exists" is a real conflict and is not retried.

Offsets (`GET/PATCH/DELETE /connectors/{name}/offsets`, Kafka 3.6+) may only be changed while the
connector is STOPPED (`PUT /connectors/{name}/stop`, Kafka 3.5+); Connect's 400 then becomes an error
whose hint is the stop command.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from cdc_logs.dsn import url_problem
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.logging import get_logger
from cdc_logs.observability.redact import mask_value, redact, register_connector_configs
from cdc_logs.retry import RetryPolicy

if TYPE_CHECKING:  # imported when a client is made: every CLI command loads this module, few use it
    import requests

log = get_logger(__name__)

_IDEMPOTENT = frozenset({"GET", "PUT", "DELETE", "HEAD"})
_REBALANCE_HINTS = ("rebalance", "stale configuration", "conflicting operation")
_NOT_STOPPED = "STOPPED state"


@dataclass(frozen=True, slots=True)
class ConnectSettings:
    """Where the Connect REST API is and how to talk to it."""

    url: str
    username: str | None = None
    password: str | None = None
    verify: bool | str = True  # True, False, or a CA bundle path
    client_cert: str | None = None
    client_key: str | None = None
    timeout_s: float = 30.0
    retries: int = 5
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0


class ConnectError(CdcError):
    """A failed Connect request: `status` is the HTTP status (None if unreachable), `connect_message`
    Connect's own error text (masked)."""

    def __init__(
        self,
        kind: ErrorKind,
        message: str,
        hint: str | None = None,
        *,
        status: int | None = None,
        connect_message: str | None = None,
    ) -> None:
        super().__init__(kind, message, hint)
        self.status = status
        self.connect_message = connect_message


@dataclass(frozen=True, slots=True)
class FieldError:
    """One config field Connect's validation rejected; `value` is masked when the key is a secret."""

    name: str
    value: str | None
    errors: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Validation:
    connector_class: str
    error_count: int
    fields: tuple[FieldError, ...]  # only the fields with errors

    @property
    def ok(self) -> bool:
        return self.error_count == 0

    def describe(self) -> str:
        return "; ".join(f"{f.name}: {' / '.join(f.errors)}" for f in self.fields) or "no errors"


def _unreachable_reason(exc: Exception) -> str:
    """A short reason for a request that never got an answer (not urllib3's nested repr)."""
    import requests

    text = str(exc)
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "connection timed out"
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return "no answer in time (read timeout)"
    for needle, reason in (
        ("Connection refused", "connection refused (nothing listens there)"),
        ("Name or service not known", "host name not found"),
        ("Temporary failure in name resolution", "host name not found"),
        ("No route to host", "no route to host"),
        ("Network is unreachable", "network unreachable"),
        ("Connection reset", "connection reset"),
        ("RemoteDisconnected", "the server closed the connection"),
    ):
        if needle in text:
            return reason
    return type(exc).__name__


class ConnectClient:
    """A client for one Kafka Connect cluster (any worker of it: requests are forwarded to the leader)."""

    def __init__(
        self,
        settings: ConnectSettings | str,
        *,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.settings = ConnectSettings(settings) if isinstance(settings, str) else settings
        # requests quotes a URL it cannot parse, credentials included: say what is wrong instead.
        # requests quotes a URL it cannot parse, credentials included: say what is wrong instead. A
        # typo is a config error (exit 2), not an unreachable server.
        problem = url_problem(self.settings.url, what="Kafka Connect URL", schemes=("http", "https"))
        if problem:
            raise ConnectError(
                ErrorKind.CONFIG,
                problem,
                "give --connect-url (or CDC_CONNECT_URL, or connect_url in the config) as "
                "http://host:8083 or https://host:8083",
            )
        self.base = self.settings.url.rstrip("/")
        self._sleep = sleep
        if session is None:
            import requests

            session = requests.Session()
        self.session = session
        s = self.settings
        if s.username is not None:
            self.session.auth = (s.username, s.password or "")
        self.session.verify = s.verify
        if s.client_cert:
            self.session.cert = (s.client_cert, s.client_key) if s.client_key else s.client_cert
        self.session.headers.update({"Accept": "application/json"})

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> ConnectClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- transport -------------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | list[tuple[str, str]] | None = None,
        body: Any = None,
        secrets: Iterable[Mapping[str, Any]] = (),
        what: str = "",
    ) -> Any:
        """Send one request with bounded retries; return the decoded JSON body (None when empty).

        `secrets`: configs whose secret values must not appear in an error message (registered with
        the redaction, so Connect's messages quoting them are masked).
        """
        import requests

        url = f"{self.base}{path}"
        register_connector_configs(secrets)
        attempt = 0
        while True:
            attempt += 1
            retry_reason: str | None = None
            unreachable = False
            try:
                resp = self.session.request(
                    method, url, params=params, json=body, timeout=self.settings.timeout_s
                )
            except requests.exceptions.SSLError as exc:
                raise ConnectError(
                    ErrorKind.CONNECTION,
                    f"TLS error talking to Kafka Connect at {redact(self.base)}: {redact(str(exc))}",
                    "check --ca-bundle / --client-cert, or --insecure for a test cluster",
                ) from exc
            except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
                read_timeout = isinstance(exc, requests.exceptions.ReadTimeout)
                if read_timeout and method not in _IDEMPOTENT:
                    raise self._unreachable(exc, applied_maybe=True) from exc
                if attempt > self.settings.retries:
                    raise self._unreachable(exc) from exc
                retry_reason = _unreachable_reason(exc)
                unreachable = True
            except requests.exceptions.RequestException as exc:  # a URL or header requests refuses
                raise ConnectError(
                    ErrorKind.CONFIG,
                    f"cannot send a request to Kafka Connect at {redact(self.base)}: {type(exc).__name__}",
                    "check --connect-url (or CDC_CONNECT_URL) and the auth options",
                ) from None
            else:
                log.debug("connect request", method=method, path=path, status=resp.status_code)
                if resp.status_code < 400:
                    return self._json(resp)
                message = redact(self._message(resp))
                rebalancing = resp.status_code == 409 or (
                    resp.status_code in (500, 503) and any(h in message.lower() for h in _REBALANCE_HINTS)
                )
                if rebalancing and "already exists" not in message and attempt <= self.settings.retries:
                    # Refused before being applied ("a rebalance is expected"): safe to send again.
                    retry_reason = f"{resp.status_code} {message}"
                elif (
                    resp.status_code in (500, 503, 504)
                    and method in _IDEMPOTENT
                    and "timed out" in message.lower()
                    and attempt <= self.settings.retries
                ):
                    retry_reason = f"{resp.status_code} {message}"
                else:
                    raise self._http_error(method, path, resp.status_code, message, what)
            delay = RetryPolicy(0, self.settings.backoff_s, self.settings.max_backoff_s).backoff(attempt)
            # unreachable: the request never reached a worker (down, restarting, or a wrong URL);
            # busy: a worker answered that it cannot serve it right now (a rebalance).
            event = "kafka connect unreachable, retrying" if unreachable else "kafka connect busy, retrying"
            log.info(event, path=path, reason=retry_reason, retry_in_s=delay)
            self._sleep(delay)

    @staticmethod
    def _json(resp: requests.Response) -> Any:
        if resp.status_code == 204 or not resp.content:
            return None
        try:
            return resp.json()
        except ValueError:
            return resp.text

    @staticmethod
    def _message(resp: requests.Response) -> str:
        try:
            data = resp.json()
        except ValueError:
            return redact(resp.text.strip())[:500] or resp.reason
        if isinstance(data, dict) and data.get("message"):
            return str(data["message"])
        return redact(str(data))[:500]

    def _unreachable(self, exc: Exception, applied_maybe: bool = False) -> ConnectError:
        note = " (the request may have been applied: check with `cdc-logs debezium connectors status`)"
        return ConnectError(
            ErrorKind.CONNECTION,
            f"cannot reach Kafka Connect at {redact(self.base)}: {_unreachable_reason(exc)}"
            + (note if applied_maybe else ""),
            "check --connect-url (or CDC_CONNECT_URL) and that the Connect worker is running",
        )

    def _http_error(self, method: str, path: str, status: int, message: str, what: str) -> ConnectError:
        subject = what or f"{method} {path}"
        text = f"Kafka Connect refused {subject} (HTTP {status}): {message}"
        kind, hint = ErrorKind.INTERNAL, "see the Connect worker's log for details"
        if status in (401, 403):
            kind, hint = ErrorKind.AUTH, "pass --user/--password (or CDC_CONNECT_USER/CDC_CONNECT_PASSWORD)"
        elif status == 404:
            kind, hint = ErrorKind.NOT_FOUND, "list what exists with `cdc-logs debezium connectors list`"
        elif status == 409:
            kind, hint = ErrorKind.CONNECTION, "the Connect cluster is rebalancing; try again shortly"
            if "already exists" in message:
                kind, hint = ErrorKind.USAGE, "update it with `cdc-logs debezium connectors apply -f FILE`"
        elif status == 400 and _NOT_STOPPED in message:
            name = path.split("/")[2] if path.startswith("/connectors/") else "NAME"
            kind, hint = ErrorKind.USAGE, f"stop it first: `cdc-logs debezium connectors stop {name}`"
        elif status in (400, 422):
            kind, hint = ErrorKind.CONFIG, "fix the connector config named in the message"
        elif status >= 500:
            kind = ErrorKind.CONNECTION
        return ConnectError(kind, text, hint, status=status, connect_message=message)

    # -- cluster ---------------------------------------------------------------------------------
    def cluster_info(self) -> dict[str, Any]:
        """`{"version", "commit", "kafka_cluster_id"}` of the worker answering."""
        return dict(self.request("GET", "/") or {})

    def plugins(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/connector-plugins") or [])

    def validate(self, config: Mapping[str, Any]) -> Validation:
        """Connect's validation of a config against its plugin; `name` is required by Connect."""
        cls = str(config.get("connector.class", ""))
        if not cls:
            raise CdcError(
                ErrorKind.CONFIG, "connector config has no `connector.class`", "add connector.class"
            )
        data = self.request(
            "PUT",
            f"/connector-plugins/{quote(cls, safe='')}/config/validate",
            body=dict(config),
            secrets=[config],
            what=f"validation of {cls}",
        )
        fields = []
        for item in data.get("configs", []):
            value = item.get("value") or {}
            if value.get("errors"):
                name = str(value.get("name"))
                fields.append(
                    FieldError(
                        name,
                        mask_value(name, value.get("value")),
                        tuple(redact(str(e)) for e in value["errors"]),
                    )
                )
        return Validation(str(data.get("name", cls)), int(data.get("error_count", 0)), tuple(fields))

    # -- connectors ------------------------------------------------------------------------------
    @staticmethod
    def _path(name: str, suffix: str = "") -> str:
        return f"/connectors/{quote(name, safe='')}{suffix}"

    def connector_names(self) -> list[str]:
        return sorted(self.request("GET", "/connectors") or [])

    def connectors(self) -> dict[str, dict[str, Any]]:
        """Every connector with its `status` and `info` (config, tasks, type) in one request."""
        data = self.request("GET", "/connectors", params=[("expand", "status"), ("expand", "info")])
        return dict(data or {})

    def create(
        self, name: str, config: Mapping[str, Any], *, initial_state: str | None = None
    ) -> dict[str, Any]:
        """Create a connector (409 if it exists); `initial_state` RUNNING|PAUSED|STOPPED (Kafka 3.5+)."""
        body: dict[str, Any] = {"name": name, "config": dict(config)}
        if initial_state is not None:
            body["initial_state"] = initial_state
        return dict(self.request("POST", "/connectors", body=body, secrets=[config], what=f"create {name}"))

    def get_config(self, name: str) -> dict[str, str]:
        return dict(self.request("GET", self._path(name, "/config"), what=f"config of {name}"))

    def put_config(self, name: str, config: Mapping[str, Any]) -> dict[str, Any]:
        """Create or update (an upsert): Connect restarts the connector with the new config."""
        return dict(
            self.request(
                "PUT", self._path(name, "/config"), body=dict(config), secrets=[config], what=f"config {name}"
            )
        )

    def status(self, name: str) -> dict[str, Any]:
        return dict(self.request("GET", self._path(name, "/status"), what=f"status of {name}"))

    def info(self, name: str) -> dict[str, Any]:
        return dict(self.request("GET", self._path(name), what=f"connector {name}"))

    def exists(self, name: str) -> bool:
        try:
            self.info(name)
        except ConnectError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def pause(self, name: str) -> None:
        self.request("PUT", self._path(name, "/pause"), what=f"pause {name}")

    def resume(self, name: str) -> None:
        self.request("PUT", self._path(name, "/resume"), what=f"resume {name}")

    def stop(self, name: str) -> None:
        """Stop the connector and its tasks, keeping its config (needed before changing offsets)."""
        self.request("PUT", self._path(name, "/stop"), what=f"stop {name}")

    def restart(self, name: str, *, include_tasks: bool = True, only_failed: bool = False) -> Any:
        """Restart the connector (and its tasks); `only_failed` touches only FAILED instances."""
        params = {"includeTasks": str(include_tasks).lower(), "onlyFailed": str(only_failed).lower()}
        return self.request("POST", self._path(name, "/restart"), params=params, what=f"restart {name}")

    def delete(self, name: str) -> None:
        self.request("DELETE", self._path(name), what=f"delete {name}")

    # -- tasks -----------------------------------------------------------------------------------
    def tasks(self, name: str) -> list[dict[str, Any]]:
        return list(self.request("GET", self._path(name, "/tasks"), what=f"tasks of {name}") or [])

    def restart_task(self, name: str, task: int) -> None:
        self.request("POST", self._path(name, f"/tasks/{task}/restart"), what=f"restart task {name}/{task}")

    # -- topics and offsets ----------------------------------------------------------------------
    def topics(self, name: str) -> list[str]:
        data = self.request("GET", self._path(name, "/topics"), what=f"topics of {name}") or {}
        return sorted((data.get(name) or {}).get("topics", []))

    def offsets(self, name: str) -> list[dict[str, Any]]:
        """`[{"partition": {...}, "offset": {...}}]` as Connect stores them for the connector."""
        data = self.request("GET", self._path(name, "/offsets"), what=f"offsets of {name}") or {}
        return list(data.get("offsets", []))

    def alter_offsets(self, name: str, offsets: list[dict[str, Any]]) -> str:
        """Set offsets (connector must be STOPPED); an `offset: null` removes that partition's offset."""
        data = self.request(
            "PATCH", self._path(name, "/offsets"), body={"offsets": offsets}, what=f"alter offsets of {name}"
        )
        return str((data or {}).get("message", ""))

    def reset_offsets(self, name: str) -> str:
        """Remove every offset of the connector (connector must be STOPPED)."""
        data = self.request("DELETE", self._path(name, "/offsets"), what=f"reset offsets of {name}")
        return str((data or {}).get("message", ""))
