"""Tests for cdc_logs.readers.mysql.gtid: examples, malformed input, and model-based properties."""

from __future__ import annotations

from collections.abc import Callable
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.readers.mysql.gtid import (
    MAX_GNO,
    Gtid,
    MariadbGtid,
    MariadbGtidPosition,
    MysqlGtidSet,
    detect_flavor,
    parse_gtid_text,
)

U1 = "3e11fa47-71ca-11e1-9e33-c80aa9429562"
U2 = "88ebc247-06ef-11ef-97ee-0242ac130004"
U3 = "00016745-1111-1111-1111-111111111111"

S = MysqlGtidSet.parse
P = MariadbGtidPosition.parse


def assert_decode_error(fn: Callable[..., object], *args: object) -> CdcError:
    with pytest.raises(CdcError) as info:
        fn(*args)
    err = info.value
    assert err.kind is ErrorKind.DECODE
    assert err.hint and ("e.g." in err.hint or "flavor" in err.hint)
    return err


# ---------------------------------------------------------------- MySQL examples


def test_doc_example_single_gtid_uppercase_is_normalised() -> None:
    g = Gtid.parse("3E11FA47-71CA-11E1-9E33-C80AA9429562:23")
    assert g == Gtid(U1, 23)
    assert str(g) == f"{U1}:23"
    s = S("3E11FA47-71CA-11E1-9E33-C80AA9429562:23")
    assert str(s) == f"{U1}:23" and s.count() == 1 and g in s


def test_doc_example_range_and_multi_source() -> None:
    s = S("3E11FA47-71CA-11E1-9E33-C80AA9429562:1-5")
    assert s.count() == 5 and s.intervals(U1) == ((1, 5),)
    multi = S(f"{U2}:1-3:11:47-49,\n{U1.upper()}:1-5\n")  # as SHOW MASTER STATUS prints it
    assert str(multi) == f"{U1}:1-5,{U2}:1-3:11:47-49"
    assert multi.count() == 5 + 3 + 1 + 3


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        (f"{U1}:1-3:4-5", f"{U1}:1-5"),  # adjacent intervals join
        (f"{U1}:5-9:1-6", f"{U1}:1-9"),  # overlapping, out of order
        (f"{U1}:7-7", f"{U1}:7"),
        (f"{U1}:3:1:2", f"{U1}:1-3"),
        (f"{U1}:1-2,{U1}:3", f"{U1}:1-3"),  # the same uuid twice
        (f"{U1}:1-10:2-3:5", f"{U1}:1-10"),
        (f" {U1} : 1 - 3 : 9 ,", f"{U1}:1-3:9"),  # whitespace and a trailing comma
        (f"{U1}:1,,{U2}:2", f"{U1}:1,{U2}:2"),  # MySQL accepts empty elements
        (f"{U1}:{MAX_GNO}", f"{U1}:{MAX_GNO}"),
    ],
)
def test_normalisation(text: str, canonical: str) -> None:
    assert str(S(text)) == canonical
    assert S(canonical) == S(text)
    assert hash(S(canonical)) == hash(S(text))


def test_tagged_gtids() -> None:
    s = S(f"{U1}:1-5:Tag_B:7:tag_a:1-3:4,{U1}:tag_b:8")
    assert str(s) == f"{U1}:1-5:tag_a:1-4:tag_b:7-8"
    assert Gtid(U1, 2, "tag_a") in s and Gtid(U1, 2) in s and Gtid(U1, 6, "tag_b") not in s
    assert f"{U1}:TAG_A:4" in s
    assert list(s.sources()) == [(U1, None), (U1, "tag_a"), (U1, "tag_b")]
    only_tagged = S(f"{U2}:t1:1,{U1}:_x:2")
    assert str(only_tagged) == f"{U1}:_x:2,{U2}:t1:1"
    g = Gtid.parse(f"{U1.upper()}:MyTag:9")
    assert g == Gtid(U1, 9, "mytag") and str(g) == f"{U1}:mytag:9" and g.key == (U1, "mytag")


@pytest.mark.parametrize("text", ["", "   ", "\n", ",", " , \n,"])
def test_empty_set(text: str) -> None:
    s = S(text)
    assert not s and s.count() == 0 and str(s) == "" and s == MysqlGtidSet()
    assert Gtid(U1, 1) not in s
    assert S(f"{U1}:1").issuperset(s) and s.issubset(S(f"{U1}:1"))


def test_operations_examples() -> None:
    a = S(f"{U1}:1-10:20-30,{U2}:1-5")
    b = S(f"{U1}:5-25,{U3}:1")
    assert str(a | b) == f"{U3}:1,{U1}:1-30,{U2}:1-5"  # uuids sorted
    assert str(a - b) == f"{U1}:1-4:26-30,{U2}:1-5"
    assert str(a & b) == f"{U1}:5-10:20-25"
    assert str(b - a) == f"{U3}:1,{U1}:11-19"
    assert (a | b).issuperset(a) and not a.issuperset(b) and (a & b).issubset(b)
    assert a - a == MysqlGtidSet() and not (a - a)


def test_add_joins_intervals_and_keeps_self_immutable() -> None:
    s = S(f"{U1}:1-3:5-6")
    t = s.add(Gtid(U1, 4))
    assert str(t) == f"{U1}:1-6" and str(s) == f"{U1}:1-3:5-6"
    assert str(t.add(f"{U2}:1").add(f"{U1}:t:1")) == f"{U1}:1-6:t:1,{U2}:1"
    assert s.add(Gtid(U1, 2)) == s
    assert str(MysqlGtidSet().add(Gtid(U1, 7))) == f"{U1}:7"


def test_contains_non_gtid_is_false_and_set_is_hashable() -> None:
    s = S(f"{U1}:1-3")
    assert 2 not in s and None not in s
    assert len({s, S(f"{U1}:1:2:3"), S(f"{U1.upper()}:1-3")}) == 1
    assert s != f"{U1}:1-3"
    assert eval(repr(s), {"MysqlGtidSet": MysqlGtidSet}) == s


def test_constructor_normalises_and_validates() -> None:
    s = MysqlGtidSet({(U1.upper(), None): [(3, 4), (1, 2)], (U2, "T"): [(5, 5)], (U3, None): []})
    assert s == S(f"{U1}:1-4,{U2}:t:5")
    for bad in ({("nope", None): [(1, 1)]}, {(U1, None): [(0, 1)]}, {(U1, None): [(3, 1)]}):
        assert_decode_error(MysqlGtidSet, bad)


BAD_SETS = [
    U1,  # no intervals
    f"{U1}:",
    f"{U1}:0",
    f"{U1}:5-3",
    f"{U1}:1-",
    f"{U1}:-5",
    f"{U1}:1-2-3",
    f"{U1}::1",
    f"{U1}:1 2",
    f"{U1}:+5",
    f"{U1}:1_0",
    f"{U1}:\u0661",  # Arabic-Indic digit one: int() would accept it
    f"{U1}:{MAX_GNO + 1}",
    f"{U1}:tag",  # a tag with no interval
    f"{U1}:tag1:tag2:1",
    f"{U1}:1tag:1",
    f"{U1}:{'t' * 33}:1",  # tags are at most 32 characters
    f"{U1}:t-x:1",
    f"{U1[:-1]}:1",
    f"{U1}0:1",
    f"{{{U1}}}:1",
    f"{U1}:1;{U2}:2",
    "0-1-100",
    ":1",
    "hello",
]


@pytest.mark.parametrize("text", BAD_SETS)
def test_bad_mysql_set_text(text: str) -> None:
    err = assert_decode_error(S, text)
    assert "MySQL GTID set" in err.message


@pytest.mark.parametrize(
    "text", [U1, f"{U1}:0", f"{U1}:1-2", f"{U1}:a:b:1", f"{U1}:", "x:1", "", f"{U1}:1,{U1}:2"]
)
def test_bad_single_gtid_text(text: str) -> None:
    assert_decode_error(Gtid.parse, text)


@pytest.mark.parametrize(
    "args",
    [
        ("x", 1, None),
        (U1, 0, None),
        (U1, MAX_GNO + 1, None),
        (U1, True, None),
        (U1, 1, "no tag"),
        (U1, 1, ""),
    ],
)
def test_bad_gtid_values(args: tuple[object, object, object]) -> None:
    assert_decode_error(Gtid, *args)


@pytest.mark.parametrize("value", [None, 5, b"x"])
def test_non_text_input(value: object) -> None:
    for fn in (S, Gtid.parse, P, MariadbGtid.parse, detect_flavor, parse_gtid_text):
        assert_decode_error(fn, value)


# ---------------------------------------------------------------- MariaDB examples


def test_mariadb_doc_example() -> None:
    pos = P("1-2-5, 0-1-100\n")
    assert str(pos) == "0-1-100,1-2-5"
    assert pos.get(0) == MariadbGtid(0, 1, 100) and pos.get(7) is None and len(pos) == 2
    assert pos.covers("0-1-99") and pos.covers("0-3-100") and not pos.covers("0-1-101")
    assert not pos.covers(MariadbGtid(2, 1, 0))
    assert str(pos.advance("0-3-101")) == "0-3-101,1-2-5"
    assert str(pos.advance("0-1-7")) == "0-1-7,1-2-5"  # advance replaces, even backwards
    assert str(pos.advance(MariadbGtid(5, 1, 1))) == "0-1-100,1-2-5,5-1-1"
    assert str(pos.merge(P("1-2-9,0-4-50,3-1-1"))) == "0-1-100,1-2-9,3-1-1"
    assert P("0-1-5").merge(P("0-2-5")) == P("0-2-5") == P("0-2-5").merge(P("0-1-5"))  # tie: higher server
    assert str(MariadbGtid.parse(" 0 - 1 - 100 ")) == "0-1-100"
    assert {pos, P("0-1-100,1-2-5")} == {pos}
    assert eval(repr(pos), {"MariadbGtidPosition": MariadbGtidPosition}) == pos


def test_mariadb_empty_and_bounds() -> None:
    assert not P("") and not P("  ") and str(P("")) == "" and P("") == MariadbGtidPosition()
    big = f"{2**32 - 1}-{2**32 - 1}-{2**64 - 1}"
    assert str(P(big)) == big
    assert str(P("0-0-0")) == "0-0-0"


@pytest.mark.parametrize(
    "text",
    [
        "0-1",
        "0-1-2-3",
        "a-1-2",
        "0-1-2,",
        ",0-1-2",
        "0-1-2,,1-1-1",
        "0-1-2,0-3-4",  # one entry per domain
        "-1-1-1",
        f"{2**32}-1-1",
        f"0-{2**32}-1",
        f"0-1-{2**64}",
        "0-1-1 2",
        "0-1-+2",
        f"{U1}:1",
    ],
)
def test_bad_mariadb_text(text: str) -> None:
    assert_decode_error(P, text)


@pytest.mark.parametrize("args", [(-1, 1, 1), (0, 2**32, 1), (0, 1, 2**64), (0, 1, True), ("0", 1, 1)])
def test_bad_mariadb_values(args: tuple[object, object, object]) -> None:
    assert_decode_error(MariadbGtid, *args)


def test_flavor_detection_and_dispatch() -> None:
    assert detect_flavor(f"{U1}:1-5") == "mysql"
    assert detect_flavor(f"{U1}:t:1,\n{U2}:2") == "mysql"
    assert detect_flavor("0-1-100,1-2-5") == "mariadb"
    assert detect_flavor(" 0-1-100 ") == "mariadb"
    assert parse_gtid_text(f"{U1}:1-5", "mysql") == S(f"{U1}:1-5")
    assert parse_gtid_text("0-1-100", "mariadb") == P("0-1-100")
    assert parse_gtid_text("0-1-100") == P("0-1-100")
    assert parse_gtid_text(f"{U1}:3") == S(f"{U1}:3")
    assert parse_gtid_text("", "mysql") == MysqlGtidSet() and parse_gtid_text("", "mariadb") == P("")
    for text in ("", "  ", "hello", "0-1", U1):
        assert_decode_error(detect_flavor, text)
    assert_decode_error(parse_gtid_text, "0-1-2", "postgres")
    assert_decode_error(parse_gtid_text, "0-1-2", "mysql")
    assert_decode_error(parse_gtid_text, f"{U1}:1", "mariadb")


# ---------------------------------------------------------------- MySQL properties

KEYS = [(U1, None), (U1, "tag_a"), (U2, None), (U3, "z")]
SMALL = 40  # model tests use numbers in 1..SMALL so the naive set stays tiny

Model = set[tuple[str, str | None, int]]
SetModel = tuple[MysqlGtidSet, Model]

intervals_st = st.lists(
    st.tuples(st.integers(1, SMALL), st.integers(0, 6)).map(lambda t: (t[0], min(SMALL, t[0] + t[1]))),
    max_size=5,
)
spec_st = st.dictionaries(st.sampled_from(KEYS), intervals_st, max_size=4)


def model_of(spec: dict[tuple[str, str | None], list[tuple[int, int]]]) -> Model:
    return {(u, t, n) for (u, t), ivs in spec.items() for s, e in ivs for n in range(s, e + 1)}


def expand(s: MysqlGtidSet) -> Model:
    return {(u, t, n) for u, t in s.sources() for a, b in s.intervals(u, t) for n in range(a, b + 1)}


def text_of(spec: dict[tuple[str, str | None], list[tuple[int, int]]], draw_ws: bool) -> str:
    """Non-canonical text for `spec`: one element per key, uppercase uuids, optional whitespace."""
    ws = " \n" if draw_ws else ""
    parts = []
    for (uuid, tag), ivs in spec.items():
        if not ivs:
            continue
        items = [uuid.upper()] + ([tag.upper()] if tag else [])
        items += [f"{ws}{s}{ws}-{e}" if s != e or draw_ws else f"{s}" for s, e in ivs]
        parts.append(":".join(items))
    return f",{ws}".join(parts)


@st.composite
def gtid_sets(draw: st.DrawFn) -> SetModel:
    spec = draw(spec_st)
    from_text = draw(st.booleans())
    s = MysqlGtidSet.parse(text_of(spec, draw(st.booleans()))) if from_text else MysqlGtidSet(spec)
    return s, model_of(spec)


gtids = st.builds(lambda k, n: Gtid(k[0], n, k[1]), st.sampled_from(KEYS), st.integers(1, SMALL + 1))
big_sets = st.dictionaries(
    st.sampled_from(KEYS),
    st.lists(
        st.tuples(st.integers(1, MAX_GNO), st.integers(1, MAX_GNO)).map(lambda t: (min(t), max(t))),
        max_size=4,
    ),
    max_size=4,
).map(MysqlGtidSet)

FAST = settings(max_examples=150, deadline=None)


def assert_canonical(s: MysqlGtidSet) -> None:
    for key in s.sources():
        ivs = s.intervals(*key)
        assert ivs, "no empty keys"
        assert all(a <= b for a, b in ivs)
        assert all(prev[1] + 1 < nxt[0] for prev, nxt in pairwise(ivs))


@FAST
@given(gtid_sets())
def test_parse_and_build_agree_with_model(sm: SetModel) -> None:
    s, m = sm
    assert expand(s) == m
    assert s.count() == len(m) and bool(s) == bool(m)
    assert_canonical(s)


@FAST
@given(st.one_of(gtid_sets().map(lambda sm: sm[0]), big_sets))
def test_format_round_trip(s: MysqlGtidSet) -> None:
    text = s.format()
    assert MysqlGtidSet.parse(text) == s
    assert str(MysqlGtidSet.parse(text)) == text
    assert MysqlGtidSet.parse(text.replace(",", ",\n").upper()) == s
    assert_canonical(s)


@FAST
@given(gtid_sets(), gtid_sets())
def test_operations_agree_with_model(am: SetModel, bm: SetModel) -> None:
    (a, ma), (b, mb) = am, bm
    assert expand(a | b) == ma | mb
    assert expand(a - b) == ma - mb
    assert expand(a & b) == ma & mb
    assert (a | b).count() == len(ma | mb) and (a - b).count() == len(ma - mb)
    assert a.issuperset(b) == (ma >= mb) and a.issubset(b) == (ma <= mb)
    assert (a == b) == (ma == mb)
    for u, t in KEYS:
        for n in range(1, SMALL + 2):
            assert a.contains(Gtid(u, n, t)) == ((u, t, n) in ma)
    for s in (a | b, a - b, a & b):
        assert_canonical(s)


@FAST
@given(gtid_sets(), gtid_sets(), gtid_sets())
def test_set_algebra_laws(am: SetModel, bm: SetModel, cm: SetModel) -> None:
    a, b, c = am[0], bm[0], cm[0]
    assert a | b == b | a and hash(a | b) == hash(b | a)
    assert (a | b) | c == a | (b | c)
    assert a | a == a and a & a == a
    assert (a | b).issuperset(a) and (a | b).issuperset(b)
    assert not ((a - b) & b)
    assert (a - b) | (a & b) == a
    assert ((a - b) | b).issuperset(a)
    assert a.issuperset(a - b) and a.issuperset(a & b)


@FAST
@given(gtid_sets(), gtids)
def test_add_then_contains(sm: SetModel, g: Gtid) -> None:
    s, m = sm
    t = s.add(g)
    assert t.contains(g) and g in t and str(g) in t
    assert t == s | MysqlGtidSet.parse(str(g))
    assert expand(t) == m | {(g.uuid, g.tag, g.number)}
    assert t.issuperset(s) and t.count() == s.count() + (0 if s.contains(g) else 1)
    assert_canonical(t)


@FAST
@given(st.lists(gtids, max_size=30))
def test_adding_one_by_one_equals_parsing_all(gs: list[Gtid]) -> None:
    s = MysqlGtidSet()
    for g in gs:
        s = s.add(g)
    assert s == MysqlGtidSet.parse(",".join(str(g) for g in gs))
    assert s.count() == len(set(gs))


# ---------------------------------------------------------------- MariaDB properties

mariadb_gtids = st.builds(MariadbGtid, st.integers(0, 4), st.integers(0, 3), st.integers(0, 10))
MModel = dict[int, tuple[int, int]]  # domain -> (server, seq)
PosModel = tuple[MariadbGtidPosition, MModel]


@st.composite
def positions(draw: st.DrawFn) -> PosModel:
    # small seq range so merge sees equal seqs from different servers (the tie-break) often
    model: MModel = draw(st.dictionaries(st.integers(0, 4), st.tuples(st.integers(0, 3), st.integers(0, 8))))
    entries = [f"{d}-{srv}-{seq}" for d, (srv, seq) in model.items()]
    sep = draw(st.sampled_from([",", ", ", ",\n"]))
    return MariadbGtidPosition.parse(sep.join(entries)), model


def mmodel(pos: MariadbGtidPosition) -> MModel:
    return {g.domain: (g.server, g.seq) for g in pos}


@FAST
@given(positions())
def test_mariadb_round_trip(pm: PosModel) -> None:
    pos, model = pm
    assert mmodel(pos) == model and len(pos) == len(model)
    assert MariadbGtidPosition.parse(pos.format()) == pos
    assert [g.domain for g in pos] == sorted(model)
    assert pos.format() == ",".join(f"{d}-{srv}-{seq}" for d, (srv, seq) in sorted(model.items()))


@FAST
@given(positions(), mariadb_gtids)
def test_mariadb_advance_and_covers_agree_with_model(pm: PosModel, g: MariadbGtid) -> None:
    pos, model = pm
    assert pos.covers(g) == (g.domain in model and model[g.domain][1] >= g.seq)
    assert pos.covers(str(g)) == pos.covers(g)
    after = pos.advance(g)
    assert mmodel(after) == {**model, g.domain: (g.server, g.seq)}
    assert after.covers(g) and after.get(g.domain) == g
    assert mmodel(pos) == model  # immutable


@FAST
@given(positions(), positions(), positions())
def test_mariadb_merge_agrees_with_model(am: PosModel, bm: PosModel, cm: PosModel) -> None:
    (a, ma), (b, mb), (c, _) = am, bm, cm
    expected = dict(ma)
    for d, (srv, seq) in mb.items():
        if d not in expected or (seq, srv) > (expected[d][1], expected[d][0]):
            expected[d] = (srv, seq)
    assert mmodel(a.merge(b)) == expected
    assert a.merge(b) == b.merge(a) and hash(a.merge(b)) == hash(b.merge(a))
    assert a.merge(b).merge(c) == a.merge(b.merge(c))
    assert a.merge(a) == a
    for g in [*a, *b]:
        assert a.merge(b).covers(g)


# ---------------------------------------------------------------- nothing but CdcError escapes

fuzz_text = st.one_of(
    st.text(max_size=60),
    st.text(alphabet="0123456789abcdefABCDEF-:, \n_t", max_size=80),
    st.lists(
        st.sampled_from([U1, ":", "-", ",", "1", "5", "0", "tag", " ", "\n", "99999999999999999999"])
    ).map("".join),
)


@settings(max_examples=300, deadline=None)
@given(fuzz_text)
def test_arbitrary_text_only_raises_cdc_error(text: str) -> None:
    for fn in (
        MysqlGtidSet.parse,
        Gtid.parse,
        MariadbGtidPosition.parse,
        MariadbGtid.parse,
        parse_gtid_text,
    ):
        try:
            result = fn(text)
        except CdcError as err:
            assert err.kind is ErrorKind.DECODE and err.hint
        else:
            assert type(result).parse(str(result)) == result  # whatever parses, round-trips
    try:
        assert detect_flavor(text) in ("mysql", "mariadb")
    except CdcError as err:
        assert err.kind is ErrorKind.DECODE and err.hint
