"""Tests for cdc_logs.transforms (filter, mask, rename, chains) and build_transform's seed aliases."""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
import pytest
from pydantic import ValidationError

from cdc_logs.build import build_transform
from cdc_logs.config import transform_config
from cdc_logs.envelope import ChangeEvent, Op, SourceInfo
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.transforms.base import Transform, apply_all, table_matches
from cdc_logs.transforms.filter import FilterTransform
from cdc_logs.transforms.mask import MaskTransform
from cdc_logs.transforms.rename import RenameTransform


def make_event(
    op: Op = Op.CREATE,
    *,
    table: str = "users",
    schema: str | None = "public",
    db: str = "app",
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    key: dict[str, Any] | None = None,
    unchanged: tuple[str, ...] = (),
) -> ChangeEvent:
    if after is None and before is None and op is not Op.DELETE:
        after = {"id": 1, "email": "a@x.org", "name": "Ann"}
    return ChangeEvent(
        op=op,
        source=SourceInfo(connector="postgresql", name="p", db=db, schema=schema, table=table),
        before=before,
        after=after,
        key=key if key is not None else {"id": 1},
        unchanged=unchanged,
    )


def sha(value: str, salt: str = "") -> str:
    return hashlib.sha256((salt + value).encode()).hexdigest()


def transform(type_: str, **params: Any) -> Transform:
    return build_transform(transform_config({"type": type_, "params": params}))


# -------------------------------------------------------------------------------- table matching
@pytest.mark.parametrize(
    ("pattern", "schema", "matches"),
    [
        ("public.users", "public", True),
        ("public.*", "public", True),
        ("app.users", "public", True),  # db.table
        ("app.*", None, True),
        ("users", "public", True),  # bare table
        ("user?", None, True),
        ("*", None, True),
        ("other.users", "public", False),
        ("public.orders", "public", False),
        ("Users", "public", False),  # case-sensitive
        ("public.users", None, False),
        ("users.*", "public", False),
    ],
)
def test_table_matches(pattern: str, schema: str | None, matches: bool) -> None:
    assert table_matches([pattern], make_event(schema=schema)) is matches


# ---------------------------------------------------------------------------------------- filter
def test_filter_without_options_keeps_everything() -> None:
    event = make_event()
    assert FilterTransform().apply(event) is event


def test_filter_include_tables() -> None:
    f = FilterTransform(include_tables=["public.user*", "app.orders"])
    assert f.apply(make_event(table="users")) is not None
    assert f.apply(make_event(table="user_roles")) is not None
    assert f.apply(make_event(table="orders", schema=None)) is not None
    assert f.apply(make_event(table="payments")) is None


def test_filter_exclude_tables_wins_over_include() -> None:
    f = FilterTransform(include_tables=["public.*"], exclude_tables=["*_audit", "public.secrets"])
    assert f.apply(make_event(table="users")) is not None
    assert f.apply(make_event(table="users_audit")) is None
    assert f.apply(make_event(table="secrets")) is None


def test_filter_ops() -> None:
    f = FilterTransform(ops=["c", "d"])
    assert f.apply(make_event(Op.CREATE)) is not None
    assert f.apply(make_event(Op.DELETE, before={"id": 1})) is not None
    assert f.apply(make_event(Op.UPDATE, before={"id": 1}, after={"id": 1})) is None
    assert f.apply(make_event(Op.READ)) is None


def test_filter_where_uses_after_or_before_for_deletes() -> None:
    f = FilterTransform(where={"status": "active", "tier": 2})
    assert f.apply(make_event(after={"id": 1, "status": "active", "tier": 2})) is not None
    assert f.apply(make_event(after={"id": 1, "status": "active", "tier": 3})) is None
    assert f.apply(make_event(after={"id": 1, "status": "active"})) is None
    assert f.apply(make_event(Op.DELETE, before={"id": 1, "status": "active", "tier": 2})) is not None
    assert f.apply(make_event(Op.DELETE, before={"id": 1, "status": "gone", "tier": 2})) is None


def test_filter_where_on_truncate_without_row_drops() -> None:
    event = ChangeEvent(op=Op.TRUNCATE, source=make_event().source)
    assert FilterTransform(where={"status": "active"}).apply(event) is None


# ------------------------------------------------------------------------------------------ mask
def test_mask_hash_is_salted_sha256_in_before_after_and_key() -> None:
    m = MaskTransform(fields=["email"], strategy="hash", salt="pepper")
    event = m.apply(
        make_event(
            Op.UPDATE,
            before={"id": 1, "email": "old@x.org", "name": "Ann"},
            after={"id": 1, "email": "new@x.org", "name": "Ann"},
            key={"email": "new@x.org"},
        )
    )
    assert event is not None
    assert event.before == {"id": 1, "email": sha("old@x.org", "pepper"), "name": "Ann"}
    assert event.after == {"id": 1, "email": sha("new@x.org", "pepper"), "name": "Ann"}
    assert event.key == {"email": sha("new@x.org", "pepper")}
    assert b"x.org" not in event.to_json()


def test_mask_hash_is_deterministic_and_salt_changes_it() -> None:
    plain = MaskTransform(fields=["email"]).apply(make_event())
    again = MaskTransform(fields=["email"]).apply(make_event())
    salted = MaskTransform(fields=["email"], salt="s").apply(make_event())
    assert plain is not None and again is not None and salted is not None
    assert plain.after is not None and again.after is not None and salted.after is not None
    assert plain.after["email"] == again.after["email"] == sha("a@x.org")
    assert salted.after["email"] == sha("a@x.org", "s") != plain.after["email"]


def test_mask_hashes_non_string_values_by_their_text_and_keeps_null() -> None:
    event = MaskTransform(fields=["ssn", "phone"]).apply(
        make_event(after={"id": 1, "ssn": 123, "phone": None})
    )
    assert event is not None and event.after is not None
    assert event.after == {"id": 1, "ssn": sha("123"), "phone": None}


def test_mask_pattern_strategy() -> None:
    m = MaskTransform(fields=["ssn", "card"], strategy="mask", pattern="***-**-****")
    event = m.apply(make_event(after={"id": 1, "ssn": "123-45-6789", "card": "4111", "name": "Ann"}))
    assert event is not None
    assert event.after == {"id": 1, "ssn": "***-**-****", "card": "***-**-****", "name": "Ann"}


def test_mask_default_pattern() -> None:
    event = MaskTransform(fields=["email"], strategy="mask").apply(make_event())
    assert event is not None and event.after is not None
    assert event.after["email"] == "****"


def test_mask_delete_strategy_removes_the_columns() -> None:
    m = MaskTransform(fields=["email", "phone"], strategy="delete")
    event = m.apply(
        make_event(
            Op.UPDATE,
            before={"id": 1, "email": "a@x.org", "phone": "1"},
            after={"id": 1, "email": "b@x.org", "phone": "2", "name": "Ann"},
        )
    )
    assert event is not None
    assert event.before == {"id": 1}
    assert event.after == {"id": 1, "name": "Ann"}


def test_mask_leaves_rows_without_the_fields_untouched() -> None:
    event = make_event(after={"id": 1, "name": "Ann"})
    row = event.after
    result = MaskTransform(fields=["email"]).apply(event)
    assert result is not None
    assert result.after is row
    assert result.key == {"id": 1}


def test_mask_only_on_listed_tables() -> None:
    m = MaskTransform(fields=["email"], tables=["public.customers"])
    untouched = m.apply(make_event(table="users"))
    masked = m.apply(make_event(table="customers"))
    assert untouched is not None and untouched.after is not None
    assert masked is not None and masked.after is not None
    assert untouched.after["email"] == "a@x.org"
    assert masked.after["email"] == sha("a@x.org")


def test_mask_unknown_strategy_lists_the_accepted_ones() -> None:
    with pytest.raises(ValueError, match="accepted: hash, mask, delete"):
        MaskTransform(fields=["email"], strategy="rot13")


@pytest.mark.parametrize("strategy", ["mask", "delete"])
def test_masked_keys_stay_distinct(strategy: str) -> None:
    m = MaskTransform(fields=["email"], strategy=strategy)
    one = m.apply(make_event(after={"email": "a@x.org"}, key={"email": "a@x.org"}))
    two = m.apply(make_event(after={"email": "b@x.org"}, key={"email": "b@x.org"}))
    assert one is not None and two is not None
    assert one.key != two.key
    assert b"x.org" not in (one.key_json() or b"")


# ---------------------------------------------------------------------------------------- rename
def test_rename_table_by_qualified_name() -> None:
    r = RenameTransform(tables={"public.users": "customers"})
    event = r.apply(make_event())
    assert event is not None
    assert event.source.table == "customers"
    assert orjson.loads(event.to_json())["source"]["table"] == "customers"
    other = r.apply(make_event(schema="sales"))
    assert other is not None and other.source.table == "users"


def test_rename_table_by_db_name_when_no_schema_and_by_bare_name() -> None:
    by_db = RenameTransform(tables={"app.users": "people"}).apply(make_event(schema=None))
    bare = RenameTransform(tables={"users": "people"}).apply(make_event(schema="any"))
    assert by_db is not None and by_db.source.table == "people"
    assert bare is not None and bare.source.table == "people"


def test_rename_columns_everywhere_including_unchanged() -> None:
    r = RenameTransform(columns={"email": "mail", "bio": "about"})
    event = r.apply(
        make_event(
            Op.UPDATE,
            before={"id": 1, "email": "a@x.org"},
            after={"id": 1, "email": "b@x.org"},
            key={"email": "b@x.org"},
            unchanged=("bio", "photo"),
        )
    )
    assert event is not None
    assert event.before == {"id": 1, "mail": "a@x.org"}
    assert event.after == {"id": 1, "mail": "b@x.org"}
    assert event.key == {"mail": "b@x.org"}
    assert event.unchanged == ("about", "photo")
    assert orjson.loads(event.to_json())["unchanged"] == ["about", "photo"]


def test_rename_keeps_column_order() -> None:
    event = RenameTransform(columns={"b": "x"}).apply(make_event(after={"a": 1, "b": 2, "c": 3}))
    assert event is not None and event.after is not None
    assert list(event.after) == ["a", "x", "c"]


def test_rename_without_mapping_is_identity() -> None:
    event = make_event()
    after = event.after
    result = RenameTransform().apply(event)
    assert result is not None
    assert result.after is after
    assert result.source.table == "users"


# ---------------------------------------------------------------------------------------- chains
def test_apply_all_runs_in_order_and_stops_on_drop() -> None:
    chain: list[Transform] = [
        RenameTransform(columns={"email": "mail"}),
        MaskTransform(fields=["mail"], strategy="mask"),
    ]
    event = apply_all(chain, make_event())
    assert event is not None and event.after is not None
    assert event.after["mail"] == "****"
    # masking the old name after the rename does nothing: order matters
    reversed_chain: list[Transform] = [MaskTransform(fields=["mail"], strategy="mask"), chain[0]]
    event = apply_all(reversed_chain, make_event())
    assert event is not None and event.after is not None
    assert event.after["mail"] == "a@x.org"
    dropped = apply_all([FilterTransform(ops=["d"]), *chain], make_event())
    assert dropped is None


def test_apply_all_empty_chain() -> None:
    event = make_event()
    assert apply_all([], event) is event


# ------------------------------------------------------------------------------- build_transform
def test_build_filter_and_rename() -> None:
    f = transform("filter", include_tables=["public.*"], ops=["c"])
    assert isinstance(f, FilterTransform)
    assert f.apply(make_event()) is not None
    r = transform("rename", tables={"users": "people"})
    assert isinstance(r, RenameTransform)


@pytest.mark.parametrize("type_", ["mask", "data_masking", "gdpr_compliance"])
def test_mask_type_aliases(type_: str) -> None:
    assert isinstance(transform(type_, fields=["email"]), MaskTransform)


def test_seed_gdpr_compliance_params() -> None:
    m = transform("gdpr_compliance", pii_fields=["email", "phone"], anonymization_strategy="delete")
    event = m.apply(make_event(after={"id": 1, "email": "a@x.org", "phone": "1"}))
    assert event is not None
    assert event.after == {"id": 1}


def test_seed_data_masking_params() -> None:
    m = transform("data_masking", mask_fields=["ssn"], mask_pattern="***-**-****", strategy="mask")
    event = m.apply(make_event(after={"id": 1, "ssn": "123-45-6789"}))
    assert event is not None and event.after is not None
    assert event.after["ssn"] == "***-**-****"


def test_seed_mask_fields_default_to_hash() -> None:
    m = transform("data_masking", mask_fields=["ssn"])
    event = m.apply(make_event(after={"id": 1, "ssn": "123-45-6789"}))
    assert event is not None and event.after is not None
    assert event.after["ssn"] == sha("123-45-6789")


def test_retention_period_days_must_be_positive() -> None:
    with pytest.raises(ValidationError, match="retention_period_days\n  Input should be greater than 0"):
        transform_config(
            {"type": "gdpr_compliance", "params": {"pii_fields": ["e"], "retention_period_days": 0}}
        )


@pytest.mark.parametrize(
    ("type_", "params", "fragment"),
    [
        ("filter", {"include": ["x"]}, "params.include\n  Extra inputs are not permitted"),
        ("rename", {"table": {"a": "b"}}, "params.table\n  Extra inputs are not permitted"),
        ("mask", {}, "params.fields\n  Field required"),
        ("data_masking", {"fields": ["a"], "strategy": "nope"}, "params.strategy\n  Input should be 'hash'"),
    ],
)
def test_bad_params_are_refused_naming_the_field(type_: Any, params: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError) as info:
        transform_config({"type": type_, "params": params})
    assert fragment in str(info.value)


def test_two_field_lists_are_both_masked_or_rejected() -> None:
    m = transform("gdpr_compliance", pii_fields=["email"], mask_fields=["ssn"])
    event = m.apply(make_event(after={"id": 1, "email": "a@x.org", "ssn": "123"}))
    assert event is not None and event.after is not None
    assert event.after["email"] != "a@x.org"
    assert event.after["ssn"] != "123"


# -- the table schema follows the rows ------------------------------------------------------------
def _typed(event: ChangeEvent) -> ChangeEvent:
    from cdc_logs.schema import Column, Semantic, TableSchema

    event.schema = TableSchema(
        "app",
        "public",
        "users",
        (
            Column("id", "int32", None, "INTEGER", optional=False, key=True),
            Column("email", "string", None, "VARCHAR", 80, optional=False),
            Column("seen", "int64", Semantic.MICRO_TIMESTAMP, "TIMESTAMP", 6),
        ),
    )
    return event


def test_rename_renames_the_schema_too_so_sinks_still_know_the_types() -> None:
    from cdc_logs.connect_schema import envelope_schema

    transform = RenameTransform(tables={"users": "customers"}, columns={"seen": "seen_at"})
    first = transform.apply(_typed(make_event(after={"id": 1, "email": "a", "seen": 5})))
    second = transform.apply(_typed(make_event(after={"id": 2, "email": "b", "seen": 6})))
    assert first is not None and second is not None and first.schema is not None
    assert first.schema is second.schema  # one object per table version: encoders cache by it
    assert first.schema.table == "customers"
    assert [c.name for c in first.schema.columns] == ["id", "email", "seen_at"]
    column = first.schema.column("seen_at")
    assert column is not None and column.semantic == "io.debezium.time.MicroTimestamp"
    fields = envelope_schema(first, "p")["fields"][1]["fields"]  # `after`, the Value struct
    assert [f["field"] for f in fields] == ["id", "email", "seen_at"]


@pytest.mark.parametrize("strategy", ["hash", "mask", "delete"])
def test_mask_retypes_or_drops_the_masked_columns_in_the_schema(strategy: str) -> None:
    transform = MaskTransform(fields=["email", "seen", "id"], strategy=strategy)
    event = transform.apply(_typed(make_event(after={"id": 1, "email": "a", "seen": 5})))
    assert event is not None and event.schema is not None
    by_name = {c.name: c for c in event.schema.columns}
    assert by_name["id"].type == "string" and by_name["id"].key  # a key column is hashed, kept
    if strategy == "delete":
        assert set(by_name) == {"id"} and event.after == {}
    else:
        assert by_name["email"].type == "string" and by_name["seen"].type == "string"
        assert by_name["seen"].semantic is None and not by_name["email"].optional


def test_a_rename_onto_an_existing_column_stops_with_the_table_and_both_columns() -> None:
    transform = RenameTransform(columns={"email": "name"})
    # without a table schema: from the row
    with pytest.raises(CdcError) as err:
        transform.apply(make_event(after={"id": 1, "email": "a@x.org", "name": "Ann"}))
    assert err.value.kind is ErrorKind.CONFIG
    assert "'email' of public.users would become 'name', a name the table already has" in str(err.value)
    assert "rename 'name' too" in (err.value.hint or "")
    # with a table schema: from its columns, even when the row carries only the key
    onto_seen = RenameTransform(tables={"users": "people"}, columns={"email": "seen"})
    with pytest.raises(CdcError, match=r"'email' of public\.users would become 'seen'"):
        onto_seen.apply(_typed(make_event(Op.DELETE, before={"id": 1})))
    # two columns onto one name
    with pytest.raises(CdcError, match="a name column 'seen' also gets"):
        RenameTransform(columns={"email": "x", "seen": "x"}).apply(_typed(make_event()))
    # a table without the clashing column is fine, and so is a swap
    other = RenameTransform(columns={"email": "name"}).apply(make_event(after={"id": 1, "email": "a"}))
    assert other is not None and other.after == {"id": 1, "name": "a"}
    swap = RenameTransform(columns={"email": "seen", "seen": "email"}).apply(
        _typed(make_event(after={"id": 1, "email": "a", "seen": 5}))
    )
    assert swap is not None and swap.after == {"id": 1, "seen": "a", "email": 5}
    assert swap.schema is not None and [c.name for c in swap.schema.columns] == ["id", "seen", "email"]
