"""The configuration reference: every field documented, examples safe and valid, docs/reference current.

The JSON Schema checked here is the one `cdc-logs config schema` prints (configfile.json_schema), so
what an editor shows and what docs/reference/ says come from the same descriptions and examples.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from cdc_logs import registry
from cdc_logs.configfile import json_schema, load_config
from cdc_logs.observability.redact import is_secret_key
from cdc_logs.reference import pages

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO / "docs" / "reference"
ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}")

# Properties deliberately left without `examples`, besides the kinds below, as {JSON path: reason}.
# Kinds exempt by rule (see `_needs_example`), each with its reason:
#   * booleans: true / false is the whole choice, the description says what each does;
#   * a component's `type` (the discriminator of the source / destination / transform unions): its
#     accepted values are the schema's const / enum, and each reference page lists them on its
#     `type:` line;
#   * a nested config model, or a list or union of them (sync.batch, source, tables of a poll
#     source, ...): a mapping has no single example, its own fields carry theirs.
EXEMPT: dict[str, str] = {}


def _properties(schema: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(JSON pointer of the property, the model's pointer, property schema) for every object property."""

    def walk(node: Any, path: str) -> Iterator[tuple[str, str, dict[str, Any]]]:
        if isinstance(node, dict):
            for name, prop in (node.get("properties") or {}).items():
                yield f"{path}/properties/{name}", path, prop
            for key, value in node.items():
                if key != "properties":
                    yield from walk(value, f"{path}/{key}")
            for name, prop in (node.get("properties") or {}).items():
                yield from walk(prop, f"{path}/properties/{name}")
        elif isinstance(node, list):
            for i, item in enumerate(node):
                yield from walk(item, f"{path}/{i}")

    yield from walk(schema, "#")


def _discriminated_models(schema: dict[str, Any]) -> set[str]:
    """$defs pointers of the models that are members of a discriminated union (components)."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            mapping = (node.get("discriminator") or {}).get("mapping") or {}
            found.update(mapping.values())
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(schema)
    return found


def _kinds(node: dict[str, Any]) -> set[str]:
    """What a property holds: JSON types, or `model` for nested config models and unions of them."""
    if "anyOf" in node:
        return set().union(*(_kinds(n) for n in node["anyOf"]))
    if "$ref" in node or "discriminator" in node or "oneOf" in node:
        return {"model"}
    if node.get("type") == "array" and _kinds(node.get("items") or {}) == {"model"}:
        return {"model"}
    kind = node.get("type")
    return {kind} if isinstance(kind, str) else {"any"}


def _needs_example(path: str, model: str, node: dict[str, Any], components: set[str]) -> bool:
    if path in EXEMPT:
        return False
    if path.endswith("/properties/type") and model in components:
        return False  # a component's discriminator (see the comment on EXEMPT)
    return bool(_kinds(node) - {"boolean", "null", "model"})


def test_every_property_has_a_description() -> None:
    missing = [
        path
        for path, _model, node in _properties(json_schema())
        if not str(node.get("description", "")).strip()
    ]
    assert not missing, "config fields without a description (add Field(description=...)):\n" + "\n".join(
        missing
    )


def test_every_value_field_has_an_example() -> None:
    schema = json_schema()
    components = _discriminated_models(schema)
    missing = [
        path
        for path, model, node in _properties(schema)
        if _needs_example(path, model, node, components) and not node.get("examples")
    ]
    assert not missing, (
        "config fields without examples (add Field(examples=[...]), or exempt the path in EXEMPT with the "
        "reason):\n" + "\n".join(missing)
    )


def test_exemptions_name_real_fields() -> None:
    paths = {path for path, _m, _n in _properties(json_schema())}
    assert set(EXEMPT) <= paths, f"stale exemptions: {sorted(set(EXEMPT) - paths)}"


def _is_secret(node: dict[str, Any]) -> bool:
    return bool(node.get("writeOnly")) or any(_is_secret(n) for n in node.get("anyOf", ()))


def _reference_only(text: str) -> bool:
    return bool(ENV_REF.fullmatch(text))


def _credential_problem(value: Any, key: str = "") -> str | None:
    """Why an example value could hold a real credential (a literal password), or None."""
    if isinstance(value, dict):
        for k, v in value.items():
            problem = _credential_problem(v, str(k))
            if problem:
                return problem
        return None
    if isinstance(value, list):
        return next((p for v in value if (p := _credential_problem(v, key))), None)
    if not isinstance(value, str):
        return None
    if "://" in value:
        password = urlsplit(value).password
        if password is not None and not _reference_only(password):
            return f"the URL {value!r} has a literal password; write it as ${{VAR}}"
    if is_secret_key(key) and not ENV_REF.search(value):
        return f"{key}: {value!r} is a literal secret; write it as ${{VAR}}"
    return None


def test_secret_fields_have_env_var_examples() -> None:
    bad = []
    for path, _model, node in _properties(json_schema()):
        if not _is_secret(node):
            continue
        examples = node.get("examples") or []
        if not examples:
            bad.append(f"{path}: no example")
        for example in examples:
            url_ok = isinstance(example, str) and "://" in example and _credential_problem(example) is None
            if not (
                isinstance(example, str)
                and (_reference_only(example) or (url_ok and ENV_REF.search(example)))
            ):
                bad.append(f"{path}: example {example!r} is not a ${{VAR}} reference")
    assert not bad, "secret fields (SecretStr) need ${VAR} examples, never a value:\n" + "\n".join(bad)


def test_no_example_holds_a_literal_credential() -> None:
    def examples(node: Any, path: str) -> Iterator[tuple[str, Any]]:
        if isinstance(node, dict):
            for example in node.get("examples", []) if isinstance(node.get("examples"), list) else []:
                yield path, example
            for key, value in node.items():
                if key != "examples":
                    yield from examples(value, f"{path}/{key}")
        elif isinstance(node, list):
            for i, item in enumerate(node):
                yield from examples(item, f"{path}/{i}")

    bad = [
        f"{path}: {problem}"
        for path, example in examples(json_schema(), "#")
        if (problem := _credential_problem(example))
    ]
    assert not bad, "\n".join(bad)


# -- docs/reference ----------------------------------------------------------------------------------
def test_reference_pages_are_current() -> None:
    stale = [
        name
        for name, text in sorted(pages().items())
        if not (REFERENCE / name).exists() or (REFERENCE / name).read_text(encoding="utf-8") != text
    ]
    extra = sorted(p.name for p in REFERENCE.glob("*.md") if p.name not in pages())
    assert not stale and not extra, (
        f"docs/reference is stale: run scripts/gen_reference (differs: {stale}; not generated: {extra})"
    )


def test_gen_reference_check_passes() -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen_reference"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _yaml_blocks(text: str) -> list[str]:
    return re.findall(r"^```yaml\n(.*?)^```$", text, flags=re.S | re.M)


def test_every_component_has_an_example_on_its_page() -> None:
    generated = pages()
    for kind, page in (("source", "sources.md"), ("sink", "sinks.md"), ("transform", "transforms.md")):
        assert len(_yaml_blocks(generated[page])) == len(registry.components(kind)), page
    assert len(_yaml_blocks(generated["pipeline.md"])) == 1


EXAMPLES = [
    (name, i, block) for name, text in sorted(pages().items()) for i, block in enumerate(_yaml_blocks(text))
]


@pytest.mark.parametrize(("page", "index", "block"), EXAMPLES, ids=[f"{p}-{i}" for p, i, _b in EXAMPLES])
def test_reference_examples_load(page: str, index: int, block: str, tmp_path: Path) -> None:
    """Each example, completed with a minimal other side (a sink's page shows no source), loads
    through the real config loader, `${VAR}` references included."""
    data = yaml.safe_load(block)
    if "source" not in data and "sources" not in data:
        data["source"] = {"type": "sqlite", "path": "app.db", "tables": ["users"]}
    if "destination" not in data and "destinations" not in data:
        data["destination"] = {"type": "stdout"}
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    env = {name: "example-value" for name in ENV_REF.findall(block)}
    config = load_config(path, env=env)
    assert config.all_sources() and config.all_sinks()
