"""Reading a pipeline config: YAML within limits, `${VAR}` interpolation, errors that name the field.

A file is refused before it is parsed when it is too big, not UTF-8, or its YAML aliases expand past
a bound (a billion laughs); `${VAR}` and `${VAR:-default}` in any string are replaced from the
environment after parsing (so a value cannot inject YAML); secrets found in it are registered with
the redaction before validation, so no message can show them. Every error names the field path and,
for `type`, the accepted values; none quotes the offending text.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from cdc_logs import registry
from cdc_logs.config import PipelineConfig
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.redact import register_config

# -- loading ---------------------------------------------------------------------------------------
_ENV = re.compile(r"\$(\$|\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\})")


def interpolate(value: Any, env: Mapping[str, str] | None = None, path: str = "") -> Any:
    """Replace ${VAR} / ${VAR:-default} in every string; `$$` is a literal `$`."""
    environ: Mapping[str, str] = os.environ if env is None else env
    if isinstance(value, dict):
        return {k: interpolate(v, environ, f"{path}.{k}" if path else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [interpolate(v, environ, f"{path}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def repl(match: re.Match[str]) -> str:
        if match.group(1) == "$":
            return "$"
        name, default = match.group(2), match.group(3)
        value = environ.get(name)
        if default is not None and not value:
            return default  # as in the shell: ${VAR:-x} also applies when VAR is set but empty
        if value is not None:
            return value
        raise CdcError(
            ErrorKind.CONFIG,
            f"{path or 'config'}: environment variable {name} is not set",
            f"export {name}=... or write ${{{name}:-default}}",
        )

    return _ENV.sub(repl, value)


def _tags() -> set[str]:
    return {t for kind in ("source", "sink", "transform") for c in registry.components(kind) for t in c.types}


def format_validation_error(exc: ValidationError) -> str:
    lines = []
    tags = _tags()
    for err in exc.errors():
        parts = [str(p) for p in err["loc"]]
        # pydantic puts the union member's tag in the path (source.sqlite.tables): drop it.
        loc = ".".join(
            p
            for i, p in enumerate(parts)
            if not (p in tags and i < len(parts) - 1) and not p.startswith("function-")
        )
        if err["type"] == "union_tag_invalid":
            ctx = err.get("ctx", {})
            accepted = str(ctx.get("expected_tags", "")).replace("'", "")
            msg = f"unknown type {ctx.get('tag')!r}; accepted: {accepted}"
            loc = f"{loc}.type" if loc else "type"
        elif err["type"] == "union_tag_not_found":
            msg = "missing `type`"
        elif err["type"] == "extra_forbidden":
            msg = "unknown field (check the spelling; see `cdc-logs config schema`)"
        elif err["type"] == "literal_error":
            msg = f"{err['msg'].replace('Input should be', 'must be')}, got {err.get('input')!r}"
        else:
            msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(lines)


def parse_config(data: Any, env: dict[str, str] | None = None) -> PipelineConfig:
    if not isinstance(data, dict):
        raise CdcError(
            ErrorKind.CONFIG,
            "the config must be a YAML mapping (source:, destination:, ...)",
            "see docs/configuration.md for a complete example",
        )
    data = interpolate(data, env)
    # Before validation, so an error message that quotes a value cannot show a secret of this config.
    register_config(data)
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as exc:
        raise CdcError(
            ErrorKind.CONFIG,
            f"invalid config: {format_validation_error(exc)}",
            "fix the field named above; `cdc-logs config schema` prints every accepted field",
        ) from None  # pydantic's own message (in a --debug traceback) quotes every rejected value


MAX_CONFIG_BYTES = 10 * 1024 * 1024  # a pipeline config is kilobytes; this refuses a runaway file at once
MAX_CONFIG_VALUES = 1_000_000  # values after expanding YAML aliases (a billion laughs is 10**9)

try:  # libyaml: the same YAML, several times faster on a large file
    _YAML_LOADER: Any = yaml.CSafeLoader
except AttributeError:  # pragma: no cover - PyYAML built without libyaml
    _YAML_LOADER = yaml.SafeLoader


def _read_text(path: Path, option: str) -> str:
    """The file's text: at most MAX_CONFIG_BYTES, UTF-8 (a BOM is allowed), else a CONFIG error."""
    try:
        with path.open("rb") as fh:
            data = fh.read(MAX_CONFIG_BYTES + 1)
            if len(data) > MAX_CONFIG_BYTES:
                size = os.fstat(fh.fileno()).st_size
                raise CdcError(
                    ErrorKind.CONFIG,
                    f"config {path} is too large ({max(size, len(data)):,} bytes; "
                    f"the limit is {MAX_CONFIG_BYTES:,})",
                    f"check the {option} path: a pipeline config is a few kilobytes of YAML",
                )
    except OSError as exc:
        raise CdcError(
            ErrorKind.CONFIG, f"cannot read config {path}: {exc.strerror}", f"check the {option} path"
        ) from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
        raise CdcError(
            ErrorKind.CONFIG,
            f"config {path} is not UTF-8 text: byte 0x{data[exc.start]:02x} at line {line}, column {column}",
            "save the file as UTF-8 (e.g. `iconv -f latin1 -t utf-8`)",
        ) from exc


def _check_size(data: Any, path: Path) -> None:
    """Refuse a document that expands (through YAML aliases) to more than MAX_CONFIG_VALUES values,
    or refers to itself; linear in the parsed graph, so a billion laughs is refused in milliseconds."""
    sizes: dict[int, int] = {}
    open_ids: set[int] = set()

    def size(node: Any) -> int:
        if not isinstance(node, dict | list):
            return 1
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_ids:
            raise CdcError(
                ErrorKind.CONFIG,
                f"config {path} refers to itself: a YAML alias (*name) inside the block it names (&name)",
                "replace the recursive alias by the values it should hold",
            )
        open_ids.add(key)
        children = [*node.keys(), *node.values()] if isinstance(node, dict) else node
        total = 1
        for child in children:
            total += size(child)
            if total > MAX_CONFIG_VALUES:
                raise CdcError(
                    ErrorKind.CONFIG,
                    f"config {path} expands to more than {MAX_CONFIG_VALUES:,} values "
                    "(YAML aliases *name repeat the block anchored as &name, each time in full)",
                    "write the values out, or use fewer nested aliases",
                )
        open_ids.discard(key)
        sizes[key] = total
        return total

    size(data)


def read_yaml(path: str | Path, option: str = "-c") -> Any:
    """A YAML file as data, within the limits above (size, UTF-8, alias expansion); every failure is
    a CONFIG error naming the file (`option`: the flag that named it, for the hint)."""
    path = Path(path)
    text = _read_text(path, option)
    try:
        data = yaml.load(text, Loader=_YAML_LOADER)  # a safe loader: CSafeLoader or SafeLoader
    except yaml.YAMLError as exc:
        raise CdcError(
            ErrorKind.CONFIG,
            yaml_error_message(path, exc),
            "fix the YAML syntax (indentation, quotes, colons)",
        ) from None  # PyYAML's message quotes the offending line (a password, maybe)
    except RecursionError:  # the pure-Python loader: nesting deeper than the interpreter's stack
        raise CdcError(
            ErrorKind.CONFIG, f"{path} is nested too deeply", "a pipeline config has a few levels"
        ) from None
    try:
        _check_size(data, path)
    except RecursionError:
        raise CdcError(
            ErrorKind.CONFIG, f"{path} is nested too deeply", "a pipeline config has a few levels"
        ) from None
    return data


def load_config(path: str | Path, env: dict[str, str] | None = None) -> PipelineConfig:
    return parse_config(read_yaml(path), env)


def yaml_error_message(path: str | Path, exc: yaml.YAMLError) -> str:
    """Where the YAML is broken and what is wrong, but not the text there: PyYAML's own message quotes
    the offending line, which may hold a password."""
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    context, opened = getattr(exc, "context", None), getattr(exc, "context_mark", None)
    if context and opened:  # e.g. an unclosed quote: say where it opened, not only where the file ends
        where += f" ({context} at line {opened.line + 1}, column {opened.column + 1})"
    return f"{path} is not valid YAML{where}: {getattr(exc, 'problem', None) or 'cannot be parsed'}"


def json_schema() -> dict[str, Any]:
    return PipelineConfig.model_json_schema()
