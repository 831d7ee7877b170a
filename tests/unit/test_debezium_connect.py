"""The Kafka Connect REST client against a scripted session: retries, typed errors, masking, options."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import requests

from cdc_logs.debezium.connect import ConnectClient, ConnectError, ConnectSettings
from cdc_logs.errors import ErrorKind


def _response(status: int, body: Any = None) -> requests.Response:
    resp = requests.Response()
    resp.status_code = status
    resp._content = b"" if body is None else orjson.dumps(body)
    return resp


class ScriptedSession(requests.Session):
    """Answers requests from a list of responses (or exceptions) and records them."""

    def __init__(self, *answers: requests.Response | Exception) -> None:
        super().__init__()
        self.answers = list(answers)
        self.sent: list[tuple[str, str, Any, Any]] = []

    def request(self, method: str, url: str, params: Any = None, json: Any = None, **_kw: Any) -> Any:  # type: ignore[override]
        self.sent.append((method, url, params, json))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def _client(
    *answers: requests.Response | Exception, **settings: Any
) -> tuple[ConnectClient, ScriptedSession]:
    session = ScriptedSession(*answers)
    sleeps: list[float] = []
    client = ConnectClient(
        ConnectSettings("http://connect:8083/", **settings), session=session, sleep=sleeps.append
    )
    return client, session


REBALANCE = {"error_code": 409, "message": "Cannot complete request momentarily due to stale configuration"}


def test_409_rebalance_is_retried_with_backoff() -> None:
    client, session = _client(_response(409, REBALANCE), _response(409, REBALANCE), _response(200, ["a"]))
    assert client.connector_names() == ["a"]
    assert len(session.sent) == 3


def test_500_rebalance_expected_is_retried() -> None:
    expected = {"error_code": 500, "message": "Request cannot be completed because a rebalance is expected"}
    client, session = _client(_response(500, expected), _response(200, {"name": "a"}))
    assert client.put_config("a", {"connector.class": "X"}) == {"name": "a"}
    assert len(session.sent) == 2


def test_409_already_exists_is_a_real_conflict() -> None:
    client, session = _client(_response(409, {"error_code": 409, "message": "Connector a already exists"}))
    with pytest.raises(ConnectError) as info:
        client.create("a", {"connector.class": "X"})
    assert info.value.kind is ErrorKind.USAGE and "already exists" in info.value.message
    assert len(session.sent) == 1


def test_retries_are_bounded() -> None:
    client, session = _client(*[_response(409, REBALANCE)] * 3, retries=2)
    with pytest.raises(ConnectError) as info:
        client.connector_names()
    assert info.value.kind is ErrorKind.CONNECTION and len(session.sent) == 3


def test_unreachable_worker_is_retried_then_a_connection_error() -> None:
    refused = requests.exceptions.ConnectionError("Connection refused")
    client, _session = _client(refused, refused, retries=1)
    with pytest.raises(ConnectError) as info:
        client.cluster_info()
    assert info.value.kind is ErrorKind.CONNECTION
    assert "cannot reach Kafka Connect at http://connect:8083" in info.value.message
    assert "CDC_CONNECT_URL" in (info.value.hint or "")


def test_a_timed_out_post_is_not_retried() -> None:
    client, session = _client(requests.exceptions.ReadTimeout("read timed out"))
    with pytest.raises(ConnectError, match="may have been applied"):
        client.restart("a")
    assert len(session.sent) == 1


def test_not_found_carries_connects_message() -> None:
    client, _ = _client(_response(404, {"error_code": 404, "message": "No status found for connector x"}))
    with pytest.raises(ConnectError) as info:
        client.status("x")
    assert info.value.kind is ErrorKind.NOT_FOUND and info.value.status == 404
    assert info.value.connect_message == "No status found for connector x"


def test_offsets_of_a_running_connector_hint_at_stop() -> None:
    message = (
        "Connectors must be in the STOPPED state before their offsets can be modified. This can be done "
        "for the specified connector by issuing a 'PUT' request to the '/connectors/pg/stop' endpoint"
    )
    client, _ = _client(_response(400, {"error_code": 400, "message": message}))
    with pytest.raises(ConnectError) as info:
        client.reset_offsets("pg")
    assert info.value.hint == "stop it first: `cdc-logs debezium connectors stop pg`"
    assert "STOPPED state" in info.value.message


def test_secrets_of_the_config_never_reach_the_error() -> None:
    body = {"error_code": 400, "message": "Invalid value hunter2-pw for configuration x"}
    client, _ = _client(_response(400, body))
    with pytest.raises(ConnectError) as info:
        client.put_config("a", {"connector.class": "X", "database.password": "hunter2-pw"})
    assert "hunter2-pw" not in str(info.value) and "Invalid value *** for" in str(info.value)
    assert info.value.kind is ErrorKind.CONFIG


def test_validation_surfaces_each_fields_errors_masked() -> None:
    body = {
        "name": "io.debezium.connector.postgresql.PostgresConnector",
        "error_count": 2,
        "configs": [
            {
                "value": {
                    "name": "database.hostname",
                    "value": "nohost",
                    "errors": ["Unable to connect: nohost"],
                }
            },
            {"value": {"name": "database.password", "value": "pw-123", "errors": ["bad password pw-123"]}},
            {"value": {"name": "topic.prefix", "value": "p", "errors": []}},
        ],
    }
    client, session = _client(_response(200, body))
    config = {
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "database.password": "pw-123",
    }
    result = client.validate(config)
    assert not result.ok and result.error_count == 2
    assert [f.name for f in result.fields] == ["database.hostname", "database.password"]
    assert result.fields[1].value == "***" and result.fields[1].errors == ("bad password ***",)
    method, url, _params, _json = session.sent[0]
    assert method == "PUT"
    assert url.endswith(
        "/connector-plugins/io.debezium.connector.postgresql.PostgresConnector/config/validate"
    )


def test_request_shapes() -> None:
    client, session = _client(
        _response(200, {"a": {"status": {}, "info": {}}}),
        _response(202, {"name": "a", "connector": {"state": "RUNNING"}, "tasks": []}),
        _response(204),
        _response(200, {"a": {"topics": ["t2", "t1"]}}),
        _response(200, {"offsets": [{"partition": {"server": "p"}, "offset": {"lsn": 1}}]}),
        _response(200, {"message": "altered"}),
    )
    client.connectors()
    client.restart("a", only_failed=True)
    client.stop("a/b")
    assert client.topics("a") == ["t1", "t2"]
    assert client.offsets("a") == [{"partition": {"server": "p"}, "offset": {"lsn": 1}}]
    assert client.alter_offsets("a", [{"partition": {"server": "p"}, "offset": None}]) == "altered"
    sent = [(m, u.removeprefix("http://connect:8083"), p, j) for m, u, p, j in session.sent]
    assert sent[0] == ("GET", "/connectors", [("expand", "status"), ("expand", "info")], None)
    assert sent[1] == ("POST", "/connectors/a/restart", {"includeTasks": "true", "onlyFailed": "true"}, None)
    assert sent[2][:2] == ("PUT", "/connectors/a%2Fb/stop")
    assert sent[5] == (
        "PATCH",
        "/connectors/a/offsets",
        None,
        {"offsets": [{"partition": {"server": "p"}, "offset": None}]},
    )


def test_auth_and_tls_options_reach_the_session() -> None:
    _unused, session = _client(
        username="u", password="p", verify="/etc/ca.pem", client_cert="/c.pem", client_key="/k.pem"
    )
    assert session.auth == ("u", "p")
    assert session.verify == "/etc/ca.pem"
    assert session.cert == ("/c.pem", "/k.pem")
    _insecure, s2 = _client(verify=False)
    assert s2.verify is False and s2.auth is None


def test_auth_failure_names_the_options() -> None:
    client, _ = _client(_response(401, {"error_code": 401, "message": "Unauthorized"}))
    with pytest.raises(ConnectError) as info:
        client.plugins()
    assert info.value.kind is ErrorKind.AUTH and "--user" in (info.value.hint or "")


class _Log:
    def __init__(self) -> None:
        self.events: list[str] = []

    def info(self, event: str, **_kw: Any) -> None:
        self.events.append(event)

    def debug(self, event: str, **_kw: Any) -> None:
        pass


def test_an_unreachable_worker_is_logged_as_unreachable_not_busy(monkeypatch: pytest.MonkeyPatch) -> None:
    import cdc_logs.debezium.connect as connect_module

    logged = _Log()
    monkeypatch.setattr(connect_module, "log", logged)
    refused = requests.exceptions.ConnectionError(
        "HTTPConnectionPool(host='connect', port=8083): Max retries exceeded with url: /connectors "
        "(Caused by NewConnectionError(...: [Errno 111] Connection refused'))"
    )
    client, _session = _client(refused, refused, retries=1)
    with pytest.raises(ConnectError) as info:
        client.connector_names()
    assert logged.events == ["kafka connect unreachable, retrying"]
    assert info.value.message == (
        "cannot reach Kafka Connect at http://connect:8083: connection refused (nothing listens there)"
    )


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("connect:8083", " is not a URL: it has no scheme://"),
        ("http://connect:notaport", "'s port is not a number from 1 to 65535"),
        ("http://u:s3cret@connect:99999", "'s port is not a number from 1 to 65535"),
        ("http://:8083", " has no host"),
        ("ftp://connect:8083", "'s scheme 'ftp' is not one of: http://, https://"),
    ],
)
def test_a_malformed_url_is_a_config_error_without_the_url(url: str, problem: str) -> None:
    with pytest.raises(ConnectError) as info:
        ConnectClient(url)
    assert info.value.kind is ErrorKind.CONFIG and info.value.exit_code == 2
    assert info.value.message.startswith(f"the Kafka Connect URL{problem}")
    assert "s3cret" not in info.value.message
