"""Tests for cdc_logs.config: the seed's YAML shapes, ${VAR} interpolation, and errors naming the field."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from cdc_logs import registry
from cdc_logs.config import PipelineConfig
from cdc_logs.configfile import interpolate, json_schema, load_config
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.readers.polling.config import PollSourceConfig
from cdc_logs.readers.sqlite.config import SqliteSourceConfig
from cdc_logs.sinks.file import FileSinkConfig
from cdc_logs.sinks.stdout import StdoutSinkConfig

MINIMAL = """
source:
  type: sqlite
  path: app.db
  tables: [users]
destination:
  type: stdout
"""


def write(tmp_path: Path, text: str, name: str = "pipeline.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> PipelineConfig:
    return load_config(write(tmp_path, text), env=env if env is not None else {})


def config_error(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> CdcError:
    with pytest.raises(CdcError) as info:
        load(tmp_path, text, env)
    err = info.value
    assert err.kind is ErrorKind.CONFIG
    assert err.exit_code == 2
    assert err.hint
    return err


def with_minimal(extra: str) -> str:
    return MINIMAL + textwrap.dedent(extra)


# ----------------------------------------------------------------------------------- seed shapes
def test_minimal_config_defaults(tmp_path: Path) -> None:
    cfg = load(tmp_path, MINIMAL)
    assert cfg.name == "cdc"
    assert isinstance(cfg.source, SqliteSourceConfig)
    assert cfg.source.tables == ["users"]
    assert isinstance(cfg.destination, StdoutSinkConfig)
    assert cfg.destination.format == "json"
    assert cfg.sync.mode == "continuous"
    assert cfg.offsets.type == "sqlite"
    assert cfg.plugins.all() == []
    assert [s.type for s in cfg.all_sources()] == ["sqlite"]
    assert [d.type for d in cfg.all_sinks()] == ["stdout"]


def test_seed_shape_single_source_destination_plugins_sync(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        name: gdpr_demo
        source:
          type: sqlite
          path: sqlite:///data/app.db
          tables: [users, orders]
        destination:
          type: file
          path: out/changes.jsonl
        plugins:
          middleware:
            middleware:
              - type: gdpr_compliance
                params:
                  pii_fields: ["email", "phone", "address"]
                  anonymization_strategy: "hash"
          transformers:
            transformers:
              - type: data_masking
                params:
                  mask_fields: ["ssn", "credit_card"]
                  mask_pattern: "***-**-****"
        sync:
          mode: cron
          cron_expression: "*/5 * * * *"
          batch_optimization:
            adaptive_batching: true
            min_batch_size: 100
            max_batch_size: 10000
            target_latency_ms: 1000
        """,
    )
    assert cfg.name == "gdpr_demo"
    assert isinstance(cfg.source, SqliteSourceConfig)
    assert cfg.source.path == "data/app.db"  # sqlite:/// URL accepted
    assert isinstance(cfg.destination, FileSinkConfig)
    assert cfg.destination.path == "out/changes.jsonl"
    assert [t.type for t in cfg.plugins.middleware] == ["gdpr_compliance"]
    assert [t.type for t in cfg.plugins.transformers] == ["data_masking"]
    assert [t.type for t in cfg.plugins.all()] == ["gdpr_compliance", "data_masking"]  # middleware first
    assert cfg.plugins.transformers[0].params.pattern == "***-**-****"  # type: ignore[attr-defined]
    assert cfg.sync.mode == "cron"
    assert cfg.sync.cron == "*/5 * * * *"
    assert cfg.sync.batch.max_events == 10000
    assert cfg.sync.batch.max_wait_ms == 1000


def test_plugins_plain_list_form(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        with_minimal(
            """
            plugins:
              transformers:
                - type: filter
                  params: {include_tables: ["public.*"], ops: [c, u]}
                - type: rename
                  params: {columns: {email: mail}}
            """
        ),
    )
    assert [t.type for t in cfg.plugins.transformers] == ["filter", "rename"]
    assert cfg.plugins.middleware == []


def test_sources_and_destinations_lists(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        sources:
          - name: users_db
            type: sqlite
            path: users.db
            tables: [users]
          - name: orders_db
            type: poll
            url: sqlite:///orders.db
            tables:
              - table: orders
                mode: incrementing
                incrementing_column: id
        destinations:
          - name: archive
            type: file
            path: archive.jsonl
          - name: console
            type: stdout
            format: pretty
        """,
    )
    assert cfg.source is None
    assert cfg.destination is None
    assert [(s.name, s.type) for s in cfg.all_sources()] == [("users_db", "sqlite"), ("orders_db", "poll")]
    assert [(d.name, d.type) for d in cfg.all_sinks()] == [("archive", "file"), ("console", "stdout")]
    poll = cfg.all_sources()[1]
    assert isinstance(poll, PollSourceConfig)
    assert poll.tables[0].incrementing_column == "id"


def test_sqlite_source_aliases(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        source: {type: sqlite, dsn: "sqlite:///x.db", table: users}
        destination: {type: stdout}
        """,
    )
    assert isinstance(cfg.source, SqliteSourceConfig)
    assert cfg.source.path == "x.db"
    assert cfg.source.tables == ["users"]


def test_mongo_source_aliases(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        source: {type: mongo, url: "mongodb://h1:27017/?replicaSet=rs0", collection: shop.orders}
        destination: {type: stdout}
        """,
    )
    assert cfg.source.type == "mongo" and cfg.source.collections == ["shop.orders"]  # type: ignore[union-attr]
    assert cfg.source.uri.get_secret_value().startswith("mongodb://h1")  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("watermark_type", "mode", "column_field"),
    [("timestamp", "timestamp", "timestamp_column"), ("integer", "incrementing", "incrementing_column")],
)
def test_poll_seed_shape_table_and_watermark(
    tmp_path: Path, watermark_type: str, mode: str, column_field: str
) -> None:
    cfg = load(
        tmp_path,
        f"""
        source:
          type: poll
          dsn: postgresql+psycopg://u@h/db
          table: events
          watermark: {{column: wm, type: {watermark_type}}}
        destination: {{type: stdout}}
        """,
    )
    assert isinstance(cfg.source, PollSourceConfig)
    assert cfg.source.url == "postgresql+psycopg://u@h/db"
    table = cfg.source.tables[0]
    assert table.table == "events"
    assert table.mode == mode
    assert getattr(table, column_field) == "wm"


@pytest.mark.parametrize("mode", ["one_time", "continuous"])
def test_sync_modes_without_cron(tmp_path: Path, mode: str) -> None:
    assert load(tmp_path, with_minimal(f"sync: {{mode: {mode}}}")).sync.mode == mode


@pytest.mark.parametrize("expr", ["*/5 * * * *", "0 3 * * 1-5", "@daily", "30 2 1 */2 *"])
def test_valid_cron_expressions(tmp_path: Path, expr: str) -> None:
    cfg = load(tmp_path, with_minimal(f'sync: {{mode: cron, cron: "{expr}"}}'))
    assert cfg.sync.cron == expr


@pytest.mark.parametrize("expr", ["not a cron", "61 * * * *", "*/5 * * *", "* * 32 * *"])
def test_invalid_cron_expression_is_rejected(tmp_path: Path, expr: str) -> None:
    err = config_error(tmp_path, with_minimal(f'sync: {{mode: cron, cron: "{expr}"}}'))
    assert "sync" in err.message
    assert f"invalid cron expression {expr!r}" in err.message


def test_cron_mode_needs_an_expression(tmp_path: Path) -> None:
    err = config_error(tmp_path, with_minimal("sync: {mode: cron}"))
    assert "sync: mode cron needs `cron:" in err.message


def test_unknown_sync_mode_names_the_accepted_values(tmp_path: Path) -> None:
    err = config_error(tmp_path, with_minimal("sync: {mode: sometimes}"))
    assert "sync.mode: must be 'one_time', 'continuous' or 'cron', got 'sometimes'" in err.message


def test_batch_optimization_out_of_range_names_the_mapped_field(tmp_path: Path) -> None:
    err = config_error(tmp_path, with_minimal("sync: {batch_optimization: {max_batch_size: 0}}"))
    assert "sync.batch.max_events" in err.message


@pytest.mark.parametrize("value", ["{max_bacth_size: 5}", "yes"], ids=["misspelled-key", "not-a-mapping"])
def test_batch_optimization_rejects_unknown_keys(tmp_path: Path, value: str) -> None:
    err = config_error(tmp_path, with_minimal(f"sync: {{batch_optimization: {value}}}"))
    assert "batch_optimization" in err.message


# --------------------------------------------------------------------------------- interpolation
def test_env_interpolation_forms(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        name: ${NAME}
        source:
          type: poll
          url: postgresql://${DB_USER}:${DB_PASSWORD}@${DB_HOST:-localhost}:${DB_PORT:-5432}/app
          tables:
            - table: t
              mode: incrementing
              incrementing_column: id
              query: "SELECT * FROM t WHERE price > $$5 AND id > :last_id -- $${NOT_A_VAR}"
        destination:
          type: file
          path: ${OUT_DIR:-}/out.jsonl
        """,
        env={"NAME": "p1", "DB_USER": "cdc", "DB_PASSWORD": "s3cr$t", "DB_HOST": "db.internal"},
    )
    assert cfg.name == "p1"
    assert isinstance(cfg.source, PollSourceConfig)
    assert cfg.source.url == "postgresql://cdc:s3cr$t@db.internal:5432/app"
    assert cfg.source.tables[0].query == "SELECT * FROM t WHERE price > $5 AND id > :last_id -- ${NOT_A_VAR}"
    assert isinstance(cfg.destination, FileSinkConfig)
    assert cfg.destination.path == "/out.jsonl"


def test_interpolation_reads_the_process_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CDC_TEST_DB_PATH", "from-env.db")
    cfg = load_config(write(tmp_path, MINIMAL.replace("app.db", "${CDC_TEST_DB_PATH}")))
    assert isinstance(cfg.source, SqliteSourceConfig)
    assert cfg.source.path == "from-env.db"


def test_env_values_are_not_reinterpolated_or_parsed_as_yaml() -> None:
    env = {"A": "${B}", "B": "boom", "C": "x: [1, 2]\ny: 3"}
    assert interpolate({"k": "${A}", "l": "${C}"}, env) == {"k": "${B}", "l": "x: [1, 2]\ny: 3"}


def test_interpolation_leaves_other_values_alone() -> None:
    data = {"n": 5, "b": True, "none": None, "list": ["$", "a$b", "${X}"], "dollar": "cost: 5$"}
    assert interpolate(data, {"X": "x"}) == {
        "n": 5,
        "b": True,
        "none": None,
        "list": ["$", "a$b", "x"],
        "dollar": "cost: 5$",
    }


def test_missing_env_var_names_the_field_path(tmp_path: Path) -> None:
    err = config_error(
        tmp_path,
        """
        source:
          type: sqlite
          path: ${CDC_TEST_UNSET_VAR}
          tables: [t]
        destination: {type: stdout}
        """,
    )
    assert err.message == "source.path: environment variable CDC_TEST_UNSET_VAR is not set"
    assert err.hint is not None and "export CDC_TEST_UNSET_VAR=" in err.hint


def test_missing_env_var_in_a_list_names_the_index(tmp_path: Path) -> None:
    err = config_error(
        tmp_path,
        """
        sources:
          - {type: sqlite, name: a, path: a.db, tables: [t]}
          - {type: sqlite, name: b, path: "${CDC_TEST_UNSET_VAR}", tables: [t]}
        destination: {type: stdout}
        """,
    )
    assert "sources[1].path" in err.message
    assert "CDC_TEST_UNSET_VAR" in err.message


def test_default_applies_to_an_empty_variable(tmp_path: Path) -> None:
    cfg = load(tmp_path, MINIMAL.replace("app.db", "${DB_PATH:-fallback.db}"), env={"DB_PATH": ""})
    assert isinstance(cfg.source, SqliteSourceConfig)
    assert cfg.source.path == "fallback.db"


# --------------------------------------------------------------------------------------- errors
def _accepted(kind: registry.Kind) -> str:
    """Every registered `type:` value, as the error lists them: by component, canonical name first."""
    return ", ".join(t for component in registry.components(kind) for t in component.types)


def test_unknown_source_type_names_field_and_accepted_values(tmp_path: Path) -> None:
    err = config_error(tmp_path, "source: {type: foo}\ndestination: {type: stdout}\n")
    for group in ("mysql, mariadb", "poll, polling, query", "postgresql, postgres, pg", "sqlite"):
        assert group in _accepted("source")  # by component, canonical name first
    assert "pulsar" in _accepted("source").split(", ")
    assert f"source.type: unknown type 'foo'; accepted: {_accepted('source')}" in err.message
    assert "cdc-logs config schema" in (err.hint or "")


def test_unknown_destination_type_names_field_and_accepted_values(tmp_path: Path) -> None:
    err = config_error(tmp_path, MINIMAL.replace("type: stdout", "type: kafak"))
    assert "file, http, webhook, kafka" in _accepted("sink")  # aliases follow their canonical name
    assert f"destination.type: unknown type 'kafak'; accepted: {_accepted('sink')}" in err.message


def test_unknown_type_in_a_list_names_the_index(tmp_path: Path) -> None:
    err = config_error(
        tmp_path,
        """
        sources:
          - {type: sqlite, path: a.db, tables: [t]}
          - {type: mongoose}
        destination: {type: stdout}
        """,
    )
    assert "sources.1.type: unknown type 'mongoose'; accepted:" in err.message


def test_missing_type(tmp_path: Path) -> None:
    err = config_error(tmp_path, "source: {path: a.db}\ndestination: {type: stdout}\n")
    assert "source: missing `type`" in err.message


def test_field_error_drops_the_union_tag_from_the_path(tmp_path: Path) -> None:
    err = config_error(tmp_path, MINIMAL.replace("tables: [users]", "tables: []"))
    assert err.message.startswith("invalid config: source.tables:")
    assert "source.sqlite" not in err.message


@pytest.mark.parametrize(
    ("yaml_text", "path"),
    [
        (with_minimal("bogus: 1"), "bogus"),
        (MINIMAL.replace("tables: [users]", "tables: [users]\n  tabels: [x]"), "source.tabels"),
        (MINIMAL.replace("type: stdout", "type: stdout\n  colour: red"), "destination.colour"),
        (with_minimal("sync: {mode: continuous, parallelsm: {enabled: true}}"), "sync.parallelsm"),
        (with_minimal("offsets: {type: sqlite, dsn2: x}"), "offsets.dsn2"),
        (with_minimal("plugins: {hooks: []}"), "plugins.hooks"),
        (with_minimal("merge_window: 5"), "merge_window"),
    ],
    ids=["top", "source", "destination", "sync", "offsets", "plugins", "merge-typo"],
)
def test_extra_fields_are_rejected_by_path(tmp_path: Path, yaml_text: str, path: str) -> None:
    err = config_error(tmp_path, yaml_text)
    assert f"{path}: unknown field" in err.message


def test_merge_strategy_seed_shape(tmp_path: Path) -> None:
    cfg = load(tmp_path, with_minimal("merge_strategy: timestamp_based\nmerge_window_ms: 2500"))
    assert cfg.merge_strategy == "timestamp_based" and cfg.merge_window_ms == 2500
    assert load(tmp_path, MINIMAL).merge_strategy == "key_based"  # the pipeline's arrival order


def test_merge_strategy_custom_is_refused_with_the_alternatives(tmp_path: Path) -> None:
    err = config_error(tmp_path, with_minimal("merge_strategy: custom"))
    assert "merge_strategy: custom is not supported" in err.message
    assert "use timestamp_based or key_based" in err.message


def test_unknown_transform_type_names_accepted_values(tmp_path: Path) -> None:
    err = config_error(
        tmp_path,
        with_minimal(
            """
            plugins:
              transformers:
                transformers:
                  - type: geo_enrich
            """
        ),
    )
    assert "plugins.transformers.0.type: unknown type 'geo_enrich'; accepted: " in err.message
    # Every registered type is listed (in registry order: middleware modules add theirs).
    accepted = err.message.split("accepted: ", 1)[1].split(", ")
    expected = {
        "event_sourcing",
        "filter",
        "mask",
        "data_masking",
        "gdpr_compliance",
        "rename",
        "iot_aggregation",
        "audit_trail",
        "financial_validation",
        "opentelemetry",
        "prometheus_metrics",
    }
    assert expected <= set(accepted)


def test_transform_params_are_validated_at_load(tmp_path: Path) -> None:
    err = config_error(
        tmp_path,
        with_minimal(
            """
            plugins:
              middleware:
                - type: filter
                  params: {include: ["x"]}
            """
        ),
    )
    assert "plugins.middleware.0.params.include: unknown field" in err.message


def test_retention_period_days_is_accepted(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        with_minimal(
            """
            plugins:
              middleware:
                middleware:
                  - type: gdpr_compliance
                    params:
                      pii_fields: ["email"]
                      anonymization_strategy: delete
                      retention_period_days: 365
            """
        ),
    )
    assert cfg.plugins.middleware[0].params.retention_period_days == 365  # type: ignore[attr-defined]


def test_nested_plugins_with_mismatched_inner_key_are_not_silently_dropped(tmp_path: Path) -> None:
    text = with_minimal(
        """
        plugins:
          middleware:
            transformers:
              - type: mask
                params: {fields: [ssn]}
        """
    )
    try:
        cfg = load(tmp_path, text)
    except CdcError as err:
        assert err.kind is ErrorKind.CONFIG
        assert "plugins.middleware" in err.message
    else:
        assert [t.type for t in cfg.plugins.all()] == ["mask"]


def test_name_pattern(tmp_path: Path) -> None:
    err = config_error(tmp_path, with_minimal("name: has space"))
    assert err.message.startswith("invalid config: name:")


def test_offsets_postgres_needs_dsn(tmp_path: Path) -> None:
    err = config_error(tmp_path, with_minimal("offsets: {type: postgres}"))
    assert "offsets: offsets type postgres needs `dsn`" in err.message


def test_poll_mode_needs_its_column(tmp_path: Path) -> None:
    err = config_error(
        tmp_path,
        """
        source: {type: poll, url: "sqlite:///x.db", tables: [{table: t, mode: timestamp}]}
        destination: {type: stdout}
        """,
    )
    assert "source.tables.0: mode 'timestamp' needs timestamp_column" in err.message


@pytest.mark.parametrize(
    ("yaml_text", "fragment"),
    [
        ("destination: {type: stdout}\n", "exactly one of `source` or `sources`"),
        (
            MINIMAL + "sources: [{type: sqlite, path: b.db, tables: [t]}]\n",
            "exactly one of `source` or `sources`",
        ),
        (
            "source: {type: sqlite, path: a.db, tables: [t]}\n",
            "exactly one of `destination` or `destinations`",
        ),
        (MINIMAL + "destinations: [{type: file, path: o.jsonl}]\n", "exactly one of `destination`"),
    ],
    ids=["no-source", "both-sources", "no-destination", "both-destinations"],
)
def test_exactly_one_of_singular_or_plural(tmp_path: Path, yaml_text: str, fragment: str) -> None:
    assert fragment in config_error(tmp_path, yaml_text).message


def test_duplicate_source_names_rejected(tmp_path: Path) -> None:
    err = config_error(
        tmp_path,
        """
        sources:
          - {type: sqlite, path: a.db, tables: [t]}
          - {type: sqlite, path: b.db, tables: [t]}
        destination: {type: stdout}
        """,
    )
    assert "source names must be unique" in err.message
    assert "set `name:`" in err.message


def test_duplicate_explicit_destination_names_rejected(tmp_path: Path) -> None:
    err = config_error(
        tmp_path,
        """
        source: {type: sqlite, path: a.db, tables: [t]}
        destinations:
          - {name: out, type: file, path: a.jsonl}
          - {name: out, type: stdout}
        """,
    )
    assert "destination names must be unique" in err.message


def test_same_type_with_distinct_names_is_fine(tmp_path: Path) -> None:
    cfg = load(
        tmp_path,
        """
        sources:
          - {name: a, type: sqlite, path: a.db, tables: [t]}
          - {name: b, type: sqlite, path: b.db, tables: [t]}
        destinations:
          - {name: one, type: file, path: 1.jsonl}
          - {name: two, type: file, path: 2.jsonl}
        """,
    )
    assert len(cfg.all_sources()) == 2
    assert len(cfg.all_sinks()) == 2


# ----------------------------------------------------------------------------------- bad files
@pytest.mark.parametrize(
    ("text", "line"),
    [
        ("source:\n  type: sqlite\n    path: x.db\n", 3),
        ("source: {type: sqlite\ndestination: {type: stdout}\n", 2),
        ("source:\n  type: sqlite\n\t path: x\n", 3),
    ],
    ids=["indentation", "unclosed-brace", "tab"],
)
def test_broken_yaml_names_the_line(tmp_path: Path, text: str, line: int) -> None:
    path = write(tmp_path, text)
    with pytest.raises(CdcError) as info:
        load_config(path, env={})
    err = info.value
    assert err.kind is ErrorKind.CONFIG
    assert str(path) in err.message
    assert "is not valid YAML" in err.message
    assert f"line {line}," in err.message


def test_unclosed_quote_names_the_line_where_it_opens(tmp_path: Path) -> None:
    text = 'source:\n  type: sqlite\n  path: "x.db\n  tables: [t]\ndestination:\n  type: stdout\n'
    with pytest.raises(CdcError) as info:
        load_config(write(tmp_path, text), env={})
    assert "line 3" in info.value.message


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just a string\n"], ids=["empty", "list", "scalar"])
def test_config_must_be_a_mapping(tmp_path: Path, text: str) -> None:
    with pytest.raises(CdcError) as info:
        load_config(write(tmp_path, text), env={})
    assert info.value.kind is ErrorKind.CONFIG
    assert "must be a YAML mapping" in info.value.message


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(CdcError) as info:
        load_config(tmp_path / "nope.yaml")
    assert info.value.kind is ErrorKind.CONFIG
    assert "nope.yaml" in info.value.message
    assert info.value.hint == "check the -c path"


# ---------------------------------------------------------------------------------- json schema
def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def _types(node: Any) -> set[str]:
    if isinstance(node, dict):
        own = {node["type"]} if isinstance(node.get("type"), str) else set()
        # `examples` and `default` hold config data (`{"type": "sqlite", ...}`), not schema keywords.
        return own.union(*(_types(v) for k, v in node.items() if k not in ("examples", "default")))
    if isinstance(node, list):
        return set().union(*(_types(v) for v in node))
    return set()


def test_json_schema_is_json_schema_ish() -> None:
    schema = json_schema()
    json.dumps(schema)  # serializable
    assert schema["type"] == "object"
    assert schema["additionalProperties"] is False
    assert {"name", "source", "sources", "destination", "destinations", "plugins", "sync", "offsets"} <= set(
        schema["properties"]
    )
    defs = schema["$defs"]
    for ref in _refs(schema):
        assert ref.startswith("#/$defs/")
        assert ref.removeprefix("#/$defs/") in defs
    assert _types(schema) <= {"object", "array", "string", "integer", "number", "boolean", "null"}


def test_json_schema_lists_source_and_destination_types() -> None:
    schema = json_schema()
    source_union = schema["properties"]["source"]["anyOf"][0]
    assert {"sqlite", "poll", "polling", "query", "mysql", "mariadb"} <= set(
        source_union["discriminator"]["mapping"]
    )
    dest_union = schema["properties"]["destination"]["anyOf"][0]
    assert {"stdout", "file", "kafka", "redis_stream", "redis", "rabbitmq", "postgresql", "webhook"} <= set(
        dest_union["discriminator"]["mapping"]
    )
    sync = schema["$defs"]["SyncConfig"]["properties"]["mode"]
    assert set(sync["enum"]) == {"one_time", "continuous", "cron"}


# -- hostile files: size, encoding, alias bombs ------------------------------------------------------
BILLION_LAUGHS = "".join(
    [
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n',
        *(
            f"{cur}: &{cur} [{','.join([f'*{prev}'] * 9)}]\n"
            for prev, cur in zip("abcdefgh", "bcdefghi", strict=True)
        ),
    ]
)


def test_billion_laughs_is_refused_at_once(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(BILLION_LAUGHS)
    started = time.monotonic()
    with pytest.raises(CdcError) as info:
        load_config(path, env={})
    assert time.monotonic() - started < 1.0
    assert info.value.kind is ErrorKind.CONFIG
    assert "expands to more than 1,000,000 values" in info.value.message


def test_an_alias_inside_its_own_anchor_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CdcError) as info:
        load_config(write(tmp_path, "name: &n [a, *n]\n"), env={})
    assert info.value.kind is ErrorKind.CONFIG
    assert "refers to itself" in info.value.message


def test_aliases_below_the_bound_still_work(tmp_path: Path) -> None:
    text = """
    source: {type: sqlite, path: app.db, tables: &tables [users, orders]}
    destination: {type: stdout}
    plugins:
      transformers:
        - {type: filter, params: {include_tables: *tables}}
    """
    cfg = load_config(write(tmp_path, text), env={})
    assert cfg.plugins.transformers[0].params.include_tables == ["users", "orders"]  # type: ignore[attr-defined]


def test_deep_nesting_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(CdcError) as info:
        load_config(write(tmp_path, "a: " + "[" * 100_000 + "]" * 100_000 + "\n"), env={})
    assert info.value.kind is ErrorKind.CONFIG


def test_a_file_over_the_size_cap_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    with path.open("wb") as fh:
        fh.truncate(50 * 1024 * 1024)  # sparse: 50 MB of NULs, no disk used
    started = time.monotonic()
    with pytest.raises(CdcError) as info:
        load_config(path, env={})
    assert time.monotonic() - started < 1.0
    assert info.value.kind is ErrorKind.CONFIG
    assert "too large (52,428,800 bytes; the limit is 10,485,760)" in info.value.message


def test_a_config_that_is_not_utf8_names_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(MINIMAL.replace("app.db", "caf\u00e9.db").encode("latin-1"))
    with pytest.raises(CdcError) as info:
        load_config(path, env={})
    assert info.value.kind is ErrorKind.CONFIG
    assert "is not UTF-8 text: byte 0xe9 at line 4, column 12" in info.value.message


def test_a_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + MINIMAL.encode())
    assert load_config(path, env={}).all_sources()[0].type == "sqlite"


@pytest.mark.parametrize(
    ("source", "field", "problem"),
    [
        ("{type: pg, dsn: 'host=h port=notaport password=s3cret', tables: [public.t]}", "source.dsn", "port"),
        (
            "{type: pg, dsn: 'postgresql://u:s3cret@h/db?sslmode=bogus', tables: [public.t]}",
            "source.dsn",
            "sslmode",
        ),
        ("{type: poll, url: 'postgresql+psycopg://u:s3cret@h:notaport/db', table: t}", "source.url", "port"),
        (
            "{type: debezium, bootstrap_servers: 'h:notaport', topic_prefix: p}",
            "source.bootstrap_servers",
            "port",
        ),
        (
            "{type: debezium, bootstrap_servers: 'h:9092', topic_prefix: p, "
            "connect_url: 'http://u:s3cret@h:notaport'}",
            "source.connect_url",
            "port",
        ),
        ("{type: oracle, dsn: 'oracle://u:s3cret@h:notaport/FREE', tables: [HR.EMP]}", "source.dsn", "port"),
    ],
    ids=["pg-port", "pg-sslmode", "poll-port", "bootstrap-port", "connect-url-port", "oracle-port"],
)
def test_connection_strings_are_checked_without_echoing_them(
    tmp_path: Path, source: str, field: str, problem: str
) -> None:
    text = f"source: {source}\ndestination: {{type: stdout}}\n"
    with pytest.raises(CdcError) as info:
        load_config(write(tmp_path, text), env={})
    assert info.value.kind is ErrorKind.CONFIG
    assert f"{field}: " in info.value.message and problem in info.value.message
    assert "s3cret" not in str(info.value) and "notaport" not in str(info.value)


def test_offsets_dsn_is_checked_without_echoing_it(tmp_path: Path) -> None:
    text = MINIMAL + "offsets: {type: postgres, dsn: 'host=h port=99999 password=s3cret'}\n"
    with pytest.raises(CdcError) as info:
        load_config(write(tmp_path, text), env={})
    assert "offsets.dsn: the Postgres DSN's port is not valid" in info.value.message
    assert "s3cret" not in str(info.value)


@pytest.mark.parametrize(
    ("written", "read"), [("on", "on"), ("off", "off"), ('"auto"', "auto"), ("true", "on")]
)
def test_postgres_decode_process_takes_yamls_bare_on_and_off(tmp_path: Path, written: str, read: str) -> None:
    text = f"""
    name: p
    source: {{type: pg, dsn: "dbname=x", tables: [public.t], decode_process: {written}}}
    destination: {{type: stdout}}
    """
    assert load(tmp_path, text).source.decode_process == read  # type: ignore[union-attr]
    err = config_error(tmp_path, text.replace(f"decode_process: {written}", "decode_process: sometimes"))
    assert "decode_process" in err.message
