"""The one redaction: every message, log line, traceback, plan and metric cdc-logs emits goes through it.

Two mechanisms, both applied by `redact(text)`:

* Known values. The secrets the process was given are registered when it starts (`register`,
  `register_text`, `register_config`): `--dsn`, `--password`, `--connect-url` and their environment
  variables, every secret field of a pipeline config, the secrets of connector configs. Output that
  contains one verbatim is masked wherever it sits, also inside a driver's message quoting a fragment
  of a malformed DSN (`invalid percent-encoded token: "S3cret%ZZ"`).
* Shapes. A secret in a recognisable position is masked even when it was never registered: URL userinfo
  (`scheme://user:***@host`, JDBC URLs too), Oracle's `jdbc:oracle:thin:user/***@host`, `key=value`
  pairs whose key names a secret (`password=`, `sslpassword=`, `api_key=`, JAAS `password="..."`),
  JSON and Python-repr members (`"password": "***"`) and `Authorization:` headers.

Whether a key names a secret is decided by `is_secret_key`, for log fields and connector configs alike.
Values that are Kafka Connect config-provider references (`${file:/path:key}`) are kept: they say where
a secret lives, not what it is.

Redacting twice changes nothing, and masking keeps JSON valid (a bare value stops at quotes and
backslashes), so a rendered JSON log line can safely be redacted again on its way to stderr. Text with
no secret costs a few substring checks: the regular expressions run only when a cheap test says one of
their shapes may be present.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, unquote

MASK = "***"

# A key is secret when a part (split on . _ -) contains one of these, when a part is `jaas` (its value
# embeds a password), or when the last part ends in `key` (ssl.key, api_key, aws.secret.access.key) --
# but not `key.converter` or `message.key.columns`, where `key` is the Kafka record key.
_SECRET_PARTS = ("password", "passwd", "pwd", "secret", "token", "credential", "authorization")
_SPLIT = re.compile(r"[._\-\s]")
_PROVIDER_REF = re.compile(r"^\$\{[A-Za-z0-9_-]+:[^}]*\}$")

# Registered values shorter than this, or well-known defaults that are also words cdc-logs prints, are
# masked by position only: masking "cdc" or "postgres" everywhere would garble every message.
_MIN_KNOWN_LEN = 6
_NOT_KNOWN = frozenset(
    {"postgres", "postgresql", "password", "mariadb", "debezium", "changeme", "connect", "secret", "default"}
)

# Shapes. A bare value never swallows quotes or backslashes, so JSON text stays valid when masked.
_URL_USERINFO = re.compile(
    r"(?P<pre>[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s\"'\\<>]*:)(?P<secret>[^@\s\"'\\<>]*)(?P<post>@)"
)
_ORACLE = re.compile(r"(?i)(?P<pre>jdbc:oracle:\w+:[^/\s@\"'\\]*/)(?P<secret>[^@\s\"'\\]*)(?P<post>@)")
# A value: a Connect provider reference, quoted (also with JSON-escaped quotes, as in a JSON log line
# carrying a JAAS config), or bare up to a separator.
_KEY_VALUE = re.compile(
    r"""(?P<key>[A-Za-z0-9_.-]+)(?P<eq>\s*=\s*)"""
    r"""(?P<secret>\$\{[^}\s]*\}|\\"(?:[^"\\]|\\[^"])*\\"|"(?:[^"\\]|\\.)*"|'[^']*'|[^\s&"'\\;,)}\]>]+)"""
)
_MEMBER = re.compile(
    r"""(?P<q>["'])(?P<key>[^"'\\]{1,100})(?P=q)(?P<colon>\s*:\s*)(?P<secret>"(?:[^"\\]|\\.)*"|'[^']*')"""
)
# Registering is more liberal than masking: an unterminated quote still yields the value after it.
_LIBERAL_PAIR = re.compile(r"""(?P<key>[A-Za-z0-9_.-]+)\s*[=:]\s*["']?(?P<secret>[^\s"'&;,]+)""")
_AUTH_VALUE = re.compile(r"(?i)^\s*(?:basic|bearer|token|digest)\s+(?P<secret>\S+)\s*$")
_AUTH_HEADER = re.compile(
    r"(?i)(?P<pre>\b(?:proxy-)?authorization\s*[:=]\s*(?:(?:basic|bearer|token|digest)\s+)?)"
    r"(?P<secret>[^\s\"'\\,;]+)"
)
# The words cdc-logs' own hints put where a secret goes (`postgresql://user:password@host`,
# `mysql://u:p@host`, `key=value`): left as they are, since masking them would only garble the hint.
_PLACEHOLDERS = frozenset({"password", "pw", "p", "value", MASK})
# Cheap pre-tests: a shape can only be present when one of these is.
_SECRET_WORD = re.compile(r"(?i)pass|pwd|secret|token|key|credential|jaas|authorization")

_lock = threading.Lock()
_known: tuple[str, ...] = ()  # longest first, so a secret containing another one is masked whole


def is_secret_key(key: object) -> bool:
    """True when a config key or log field names a secret (see the module docstring for the rule)."""
    if not isinstance(key, str):
        return False
    parts = [p for p in _SPLIT.split(key.lower()) if p]
    if not parts:
        return False
    if any(s in part for part in parts for s in _SECRET_PARTS) or "jaas" in parts:
        return True
    return parts[-1].endswith("key")


def is_provider_reference(value: object) -> bool:
    """`${provider:path:key}`: Kafka Connect resolves it on the worker; the text itself is no secret."""
    return isinstance(value, str) and bool(_PROVIDER_REF.match(value))


# -- the registry of known values ------------------------------------------------------------------
def register(value: object) -> None:
    """Remember a secret value (and its percent-encoded and -decoded forms) so output never shows it."""
    if not isinstance(value, str):
        value = getattr(value, "get_secret_value", lambda: None)()
        if not isinstance(value, str):
            return
    forms = {value, value.strip(), unquote(value), quote(value, safe="")}
    fresh = {f for f in forms if len(f) >= _MIN_KNOWN_LEN and f.lower() not in _NOT_KNOWN and MASK not in f}
    global _known
    with _lock:
        if fresh - set(_known):
            _known = tuple(sorted(set(_known) | fresh, key=len, reverse=True))


def known() -> tuple[str, ...]:
    """The secret values registered so far (for a helper process to mask the same ones)."""
    return _known


def register_text(text: object) -> None:
    """Register the secrets embedded in a DSN, URL, JDBC URL, JAAS config or `key=value` string.

    URL userinfo is split both where a URL parser splits it (the last `@`) and where libpq does (the
    first), so a password with an unencoded `@` is known whole and as the part a driver may echo.
    """
    if not isinstance(text, str) or not text:
        return
    for match in _shapes(text):
        register(_unquote_value(match))
    auth = _AUTH_VALUE.match(text)
    if auth:
        register(auth["secret"])
    # Without a scheme (`user:pw@host/db`, a DSN missing its `postgresql://`) the userinfo is the start.
    rest = text.partition("://")[2] if "://" in text else text
    if "@" in rest:
        for userinfo in (rest.rpartition("@")[0], rest.partition("@")[0]):
            _, colon, password = userinfo.partition(":")
            if colon:
                register(password)


def register_config(data: Any, key: str = "") -> None:
    """Walk a config (dicts, lists, pydantic models): register secret-named values and embedded secrets."""
    if data is None:
        return
    if hasattr(data, "get_secret_value"):  # SecretStr
        secret = data.get_secret_value()
        # A `password` is secret whole; a `url` or `dsn` (sqlite:///x.db) only for what it embeds.
        if is_secret_key(key):
            register(secret)
        register_text(secret)
    elif hasattr(data, "model_fields") and not isinstance(data, type):  # a pydantic model
        for name in type(data).model_fields:
            register_config(getattr(data, name, None), name)
    elif isinstance(data, Mapping):
        for k, v in data.items():
            register_config(v, str(k))
    elif isinstance(data, list | tuple | set):
        for item in data:
            register_config(item, key)
    elif isinstance(data, str):
        if is_secret_key(key) and not is_provider_reference(data):
            register(data)
        register_text(data)


def forget_all() -> None:
    """Clear the registry (tests)."""
    global _known
    with _lock:
        _known = ()


# -- masking ---------------------------------------------------------------------------------------
def redact(text: str) -> str:
    """`text` with every registered secret and every secret-shaped value replaced by `***`."""
    if not text:
        return text
    for secret in _known:
        if secret in text:
            text = text.replace(secret, MASK)
    if "@" in text:
        if "://" in text:
            text = _URL_USERINFO.sub(_keep_mask, text)
        if ":" in text:
            text = _ORACLE.sub(_keep_mask, text)
    if ("=" in text or ":" in text) and _SECRET_WORD.search(text):
        if "=" in text:
            text = _KEY_VALUE.sub(_mask_pair, text)
        text = _MEMBER.sub(_mask_pair, text)
        text = _AUTH_HEADER.sub(_keep_mask, text)
    return text


def redact_value(value: Any, key: str = "") -> Any:
    """Redact strings anywhere inside dicts, lists and tuples; values under secret keys become `***`."""
    if is_secret_key(key) and not is_provider_reference(value):
        return MASK
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_value(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(redact_value(v) for v in value)
    if isinstance(value, BaseException):
        return redact(str(value))
    return value


def mask_value(key: str, value: Any) -> Any:
    """One config entry for display: `***` for a secret key, else the value with embedded secrets masked."""
    if value is None or is_provider_reference(value):
        return value
    if is_secret_key(key):
        return MASK
    return redact(value) if isinstance(value, str) else value


def mask_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a flat config (a Kafka Connect connector's) fit to print."""
    return {k: mask_value(k, v) for k, v in config.items()}


def register_connector_configs(configs: Iterable[Mapping[str, Any]]) -> None:
    """Register the secrets of connector configs (flat maps of strings)."""
    for config in configs:
        register_config(dict(config))


# -- helpers ---------------------------------------------------------------------------------------
def _shapes(text: str) -> Iterable[str]:
    """The secret values found in `text` by shape (for registering them)."""
    for pattern in (_URL_USERINFO, _ORACLE):
        for m in pattern.finditer(text):
            yield m["secret"]
    for pattern in (_KEY_VALUE, _MEMBER, _LIBERAL_PAIR):
        for m in pattern.finditer(text):
            if is_secret_key(m["key"]):
                yield m["secret"]


def _quote_of(value: str) -> str:
    """The quote a value opens with: `"`, `'`, a JSON-escaped `\\"`, or none."""
    if value.startswith('\\"') and value.endswith('\\"') and len(value) >= 4:
        return '\\"'
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[0]
    return ""


def _unquote_value(value: str) -> str:
    quote_ = _quote_of(value)
    if quote_:
        return value[len(quote_) : -len(quote_)].replace("\\'", "'").replace('\\"', '"')
    return value


def _keep_mask(m: re.Match[str]) -> str:
    if m["secret"].lower() in _PLACEHOLDERS:
        return m.group(0)
    return f"{m['pre']}{MASK}{m.groupdict().get('post') or ''}"


def _mask_pair(m: re.Match[str]) -> str:
    key, value = m["key"], _unquote_value(m["secret"])
    if not is_secret_key(key) or is_provider_reference(value) or value.lower() in _PLACEHOLDERS:
        return m.group(0)
    quote_ = _quote_of(m["secret"])
    masked = f"{quote_}{MASK}{quote_}"
    sep = m.groupdict().get("eq") or m.groupdict().get("colon") or ""
    if "q" in m.groupdict() and m["q"]:
        return f"{m['q']}{key}{m['q']}{sep}{masked}"
    return f"{key}{sep}{masked}"
