"""Masking of connector-config secrets in everything cdc-logs prints or logs about Kafka Connect.

A connector config is a flat map of strings, and Kafka Connect returns it verbatim (passwords included)
from `GET /connectors/{name}/config`. Plans, status output, errors and logs therefore pass every config
through `mask_config`, and every message that may echo a value through `mask_text`.

Which keys are secret: a key is split on `.`, `_` and `-`; it is secret when a part contains
password/passwd/pwd/secret/token/credential, when a part is `jaas` (`sasl.jaas.config` embeds a
password), or when the LAST part ends in `key` (`ssl.key`, `api.key`, `private.key`,
`aws.secret.access.key`). `key.converter` and `message.key.columns` are not secret: there `key` names
the Kafka record key, not a credential. Values that are Connect config-provider references
(`${file:/path:prop}`, `${env:VAR}`) are shown as they are: they name where a secret lives, not the
secret, and seeing them in a plan is useful.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from cdc_logs.observability.logging import redact

MASK = "***"
_SECRET_PARTS = ("password", "passwd", "pwd", "secret", "token", "credential")
_SPLIT = re.compile(r"[._\-]")
_PROVIDER_REF = re.compile(r"^\$\{[A-Za-z0-9_-]+:[^}]*\}$")
# Short values (a 1-2 character password) would mask unrelated text all over a message.
_MIN_SECRET_LEN = 3


def is_secret_key(key: str) -> bool:
    """True when the config key names a secret (see the module docstring for the rule)."""
    parts = [p for p in _SPLIT.split(key.lower()) if p]
    if not parts:
        return False
    if any(s in part for part in parts for s in _SECRET_PARTS):
        return True
    if "jaas" in parts:
        return True
    return parts[-1].endswith("key")


def is_provider_reference(value: object) -> bool:
    """`${provider:path:key}`: Connect resolves it on the worker; the text itself is no secret."""
    return isinstance(value, str) and bool(_PROVIDER_REF.match(value))


def mask_value(key: str, value: Any) -> Any:
    if value is None or not is_secret_key(key) or is_provider_reference(value):
        return value
    return MASK


def mask_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `config` with the values of secret keys replaced by `***`."""
    return {k: mask_value(k, v) for k, v in config.items()}


def secret_values(configs: Iterable[Mapping[str, Any]]) -> set[str]:
    """Every secret value in `configs` (to scrub from free text such as Connect's error messages)."""
    found: set[str] = set()
    for config in configs:
        for key, value in config.items():
            if value is None or not is_secret_key(key) or is_provider_reference(value):
                continue
            text = str(value)
            if len(text) >= _MIN_SECRET_LEN:
                found.add(text)
    return found


def mask_text(text: str, secrets: Iterable[str]) -> str:
    """Replace every occurrence of each secret in `text` (longest first, so overlaps mask fully)."""
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return redact(text)
