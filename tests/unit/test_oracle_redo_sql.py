"""The SQL_REDO parser (cdc_logs/readers/oracle/redo_sql.py): examples in LogMiner's exact shapes, and a
fuzz of 100,000+ inputs.

No Oracle server runs here: the example statements are written as LogMiner writes SQL_REDO (the
shapes of Oracle's documentation and of Debezium's LogMinerDmlParserTest), not captured from a server.

The fuzz is seeded (reproducible) and split into 10 chunks of 10,000 inputs (about half a second
each):
  * generated statements (every value kind, quoted identifiers with spaces and #, '' escapes,
    UNISTR, IS NULL, ROWID terms, optional `;`) must parse back to the very values that generated
    them;
  * mutated statements (bytes deleted, inserted, duplicated, truncated) and random text must parse
    or raise `RedoSqlError`, never anything else.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.readers.oracle.redo_sql import (
    UNSUPPORTED,
    EmptyLob,
    Raw,
    Redo,
    RedoSqlError,
    Temporal,
    Value,
    parse,
    quote_string,
)

# -- examples ---------------------------------------------------------------------------------------


def test_insert_with_every_value_kind() -> None:
    sql = (
        'insert into "DEBEZIUM"."TEST"("ID","NAME","TS","UT","DATE","C1","R","L","U","TZ") values '
        "('1','Acme',TO_TIMESTAMP('2020-02-01 00:00:00.'),Unsupported Type,"
        "TO_DATE('2020-02-01 00:00:00', 'YYYY-MM-DD HH24:MI:SS'),NULL,HEXTORAW('0aFF'),EMPTY_CLOB(),"
        "UNISTR('\\963F\\D83D\\DE00 x'),TO_TIMESTAMP_TZ('2020-02-01 10:00:00.123 +02:00'));"
    )
    redo = parse(sql)
    assert redo.op == "INSERT" and (redo.owner, redo.table) == ("DEBEZIUM", "TEST")
    assert redo.old is None
    assert redo.new == {
        "ID": "1",
        "NAME": "Acme",
        "TS": Temporal("TO_TIMESTAMP", "2020-02-01 00:00:00."),
        "UT": UNSUPPORTED,
        "DATE": Temporal("TO_DATE", "2020-02-01 00:00:00", "YYYY-MM-DD HH24:MI:SS"),
        "C1": None,
        "R": Raw(b"\x0a\xff"),
        "L": EmptyLob("CLOB"),
        "U": "\u963f\U0001f600 x",
        "TZ": Temporal("TO_TIMESTAMP_TZ", "2020-02-01 10:00:00.123 +02:00"),
    }


def test_update_set_and_where_with_is_null_and_escaped_quotes() -> None:
    sql = (
        'update "DEBEZIUM"."TEST" set "COL2" = \'1\', "C" = NULL where "COL1" = \'Bob\'\'s dog\' and '
        '"COL2" = \'0\' and "IS" IS NULL and "N" = NULL;'
    )
    redo = parse(sql)
    assert redo.op == "UPDATE"
    assert redo.new == {"COL2": "1", "C": None}
    assert redo.old == {"COL1": "Bob's dog", "COL2": "0", "IS": None, "N": None}


def test_delete_with_rowid_and_without_delimiter() -> None:
    redo = parse('delete from "HR"."EMP" where "ID" = \'7\' and ROWID = \'AAASt5AAEAAAAFUAAA\'')
    assert redo == Redo("DELETE", "HR", "EMP", old={"ID": "7"}, rowid="AAASt5AAEAAAAFUAAA")


def test_update_without_where_and_delete_without_where_refused() -> None:
    assert parse('update "D"."T" set "A" = \'1\', "B" = NULL;').old == {}
    for sql in ('delete from "HR"."EMP";', 'delete from "HR"."EMP" where ROWID = \'AAAS\''):
        with pytest.raises(RedoSqlError, match="a delete without WHERE terms"):
            parse(sql)


def test_a_quoted_rowid_is_a_column_and_an_unquoted_one_the_row_address() -> None:
    redo = parse('delete from "D"."T" where   "ROWID" = \'5\' and ROWID = \'AAAS\'')
    assert redo.old == {"ROWID": "5"} and redo.rowid == "AAAS"


def test_names_with_spaces_lowercase_and_unquoted() -> None:
    redo = parse('insert into "UNKNOWN"."OBJ# 74858"("COL 1","lower") values (1,-2.5E+3)')
    assert (redo.owner, redo.table) == ("UNKNOWN", "OBJ# 74858")
    assert redo.new == {"COL 1": "1", "lower": "-2.5E+3"}
    assert parse("insert into hr.emp(id) values ('1')").table == "EMP"


def test_parentheses_and_keywords_inside_strings() -> None:
    redo = parse(
        'update "D"."T" set "C2" = \'a) where "X" = \'\'y\'\' and (\' where "C1" = UNISTR(\'\\FF09(\\005C\');'
    )
    assert redo.new == {"C2": "a) where \"X\" = 'y' and ("}
    assert redo.old == {"C1": "\uff09(\\"}


def test_concatenated_pieces() -> None:
    redo = parse("insert into \"D\".\"T\"(\"C\") values ('abc' || UNISTR('\\00e9') || 'd')")
    assert redo.new == {"C": "abcéd"}


@pytest.mark.parametrize(
    "sql",
    [
        "",
        "select 1 from dual",
        'insert into "D"."T"("A","B") values (\'1\')',  # fewer values than columns
        'insert into "D"."T"("A","A") values (\'1\',\'2\')',  # a column twice
        'insert into "D"."T"("A") values (\'1)',  # an unterminated string
        'insert into "D"."T"("A") values (HEXTORAW(\'ABC\'))',  # odd hex digits
        'insert into "D"."T"("A") values (HEXTORAW(\'ZZ\'))',
        'insert into "D"."T"("A") values (UNISTR(\'\\D83D\'))',  # a lone surrogate
        'insert into "D"."T"("A") values (UNISTR(\'\\xyz\'))',  # a bad escape
        'insert into "D"."T"("A") values (TO_DATE(1))',
        'insert into "D"."T"("A") values (SYSDATE)',
        'insert into "D"."T"("A") values (HEXTORAW(\'00\') || \'x\')',
        'insert into ""."T"("A") values (\'1\')',
        'update "D"."T" set "A" = \'1\' where "B" IS NOT NULL',
        'delete from "D"."T" where ROWID = NULL',
        'delete from "D"."T" where "A" = \'1\' garbage',
        'insert into "D"."T"("A") values (\'1\'));',
    ],
)
def test_what_it_cannot_read_is_a_typed_error(sql: str) -> None:
    with pytest.raises(RedoSqlError) as info:
        parse(sql)
    assert isinstance(info.value, CdcError) and info.value.kind is ErrorKind.DECODE
    assert "offset" in info.value.message


def test_errors_never_quote_the_text() -> None:
    secret = "Kq7SecretRowValue"
    for sql in (
        f'insert into "D"."T"("A") values (\'{secret}\',)',
        f'update "D"."T" set "A" = \'{secret}\' where',
        f'insert into "D"."T"("A") values (HEXTORAW(\'{secret}\'))',
    ):
        with pytest.raises(RedoSqlError) as info:
            parse(sql)
        assert secret not in str(info.value)


# -- generation ---------------------------------------------------------------------------------------

_NAME_CHARS = "ABCXYZ_0123456789# $abcé"
_TEXT_CHARS = "abc XYZ'\"(),;=|\\-_.0129é€\u4e2d\U0001f600\n\t"


@dataclass
class Case:
    sql: str
    expected: Redo


def _name(rnd: random.Random) -> str:
    return "".join(rnd.choice(_NAME_CHARS) for _ in range(rnd.randint(1, 8)))


def _text(rnd: random.Random) -> str:
    return "".join(rnd.choice(_TEXT_CHARS) for _ in range(rnd.randint(0, 12)))


def _unistr_literal(text: str) -> str:
    out = []
    for char in text:
        if char == "\\":
            out.append("\\\\")
        elif char.isascii() and char != "'":
            out.append(char)
        else:
            data = char.encode("utf-16-be")
            out.extend(f"\\{data[i]:02X}{data[i + 1]:02X}" for i in range(0, len(data), 2))
    return "UNISTR(" + quote_string("".join(out)) + ")"


def _value(rnd: random.Random) -> tuple[str, Value]:
    """(SQL text, the parsed value it must give)."""
    kind = rnd.randrange(11)
    if kind == 0:
        return "NULL", None
    if kind == 1:
        number = str(rnd.choice([0, -1, 42, 10**20, -3]))
        if rnd.random() < 0.5:
            number += "." + str(rnd.randint(0, 999))
        return (number if rnd.random() < 0.3 else quote_string(number)), number
    if kind == 2:
        date = f"{rnd.randint(1, 9999):04d}-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d} 01:02:03"
        return f"TO_DATE('{date}', 'YYYY-MM-DD HH24:MI:SS')", Temporal(
            "TO_DATE", date, "YYYY-MM-DD HH24:MI:SS"
        )
    if kind == 3:
        stamp = f"2024-02-29 23:59:59.{rnd.randint(0, 999999)}"
        if rnd.random() < 0.5:
            return f"TO_TIMESTAMP('{stamp}')", Temporal("TO_TIMESTAMP", stamp)
        fmt = "YYYY-MM-DD HH24:MI:SS.FF"
        return f"TO_TIMESTAMP('{stamp}', '{fmt}')", Temporal("TO_TIMESTAMP", stamp, fmt)
    if kind == 4:
        zone = rnd.choice(["+02:00", "-11:30", "Europe/Paris", "EUROPE/PARIS", "EUROPE/PARIS CET"])
        stamp = f"2024-01-01 00:00:00.5 {zone}"
        return f"TO_TIMESTAMP_TZ('{stamp}')", Temporal("TO_TIMESTAMP_TZ", stamp)
    if kind == 5:
        data = bytes(rnd.randrange(256) for _ in range(rnd.randint(0, 6)))
        text = data.hex().upper() if rnd.random() < 0.5 else data.hex()
        return f"HEXTORAW('{text}')", Raw(data)
    if kind == 6:
        lob = rnd.choice(["CLOB", "BLOB"])
        return f"EMPTY_{lob}()", EmptyLob(lob)
    if kind == 7:
        return "Unsupported Type", UNSUPPORTED
    if kind == 8:
        text = _text(rnd)
        return _unistr_literal(text), text
    if kind == 9:
        a, b = _text(rnd), _text(rnd)
        return f"{quote_string(a)} || {quote_string(b)}", a + b
    text = _text(rnd)
    return quote_string(text), text


def _ident(name: str) -> str:
    return f'"{name}"'


def generate(rnd: random.Random) -> Case:
    owner, table = _name(rnd), _name(rnd)
    columns = list(dict.fromkeys(_name(rnd) for _ in range(rnd.randint(1, 6))))
    end = ";" if rnd.random() < 0.8 else ""
    head = f"{_ident(owner)}.{_ident(table)}"
    op = rnd.choice(["INSERT", "UPDATE", "DELETE"])
    if op == "INSERT":
        values = [_value(rnd) for _ in columns]
        sep = rnd.choice(["", " "])
        sql = (
            f"insert into {head}{sep}({','.join(map(_ident, columns))}) values "
            f"({','.join(v[0] for v in values)}){end}"
        )
        return Case(
            sql, Redo("INSERT", owner, table, new={c: v[1] for c, v in zip(columns, values, strict=True)})
        )
    # A delete always names its row (one without WHERE terms is refused: no key).
    where_cols = list(dict.fromkeys(_name(rnd) for _ in range(rnd.randint(op == "DELETE", 5))))
    terms, old = [], {}
    for col in where_cols:
        text, value = _value(rnd)
        if value is None and rnd.random() < 0.6:
            terms.append(f"{_ident(col)} IS NULL")
        else:
            terms.append(f"{_ident(col)} = {text}")
        old[col] = value
    rowid = None
    if terms and rnd.random() < 0.2:
        rowid = "AAAS" + "".join(rnd.choice("ABCabc+/0") for _ in range(14))
        terms.append(f"ROWID = '{rowid}'")
    where = (" where " + " and ".join(terms)) if terms else ""
    if op == "DELETE":
        return Case(f"delete from {head}{where}{end}", Redo("DELETE", owner, table, old=old, rowid=rowid))
    values = [_value(rnd) for _ in columns]
    sets = ", ".join(f"{_ident(c)} = {v[0]}" for c, v in zip(columns, values, strict=True))
    new = {c: v[1] for c, v in zip(columns, values, strict=True)}
    return Case(
        f"update {head} set {sets}{where}{end}", Redo("UPDATE", owner, table, new=new, old=old, rowid=rowid)
    )


_HOSTILE = "'\"(),;=\\ |_aZ09.-+\x00\n\u00e9\U0001f600"


def mutate(rnd: random.Random, sql: str) -> str:
    for _ in range(rnd.randint(1, 3)):
        if not sql:
            break
        i = rnd.randrange(len(sql))
        j = min(len(sql), i + rnd.randint(1, 8))
        kind = rnd.randrange(5)
        if kind == 0:
            sql = sql[:i] + sql[j:]
        elif kind == 1:
            sql = sql[:i] + "".join(rnd.choice(_HOSTILE) for _ in range(rnd.randint(1, 3))) + sql[i:]
        elif kind == 2:
            sql = sql[:j] + sql[i:j] + sql[j:]
        elif kind == 3:
            sql = sql[:i]
        else:
            sql = sql[:i] + rnd.choice(_HOSTILE) + sql[i + 1 :]
    return sql


CHUNKS = 10
PER_CHUNK = 10_000  # 100,000 inputs in all
MUTANTS = 4  # each generated statement is checked exactly, then mutated this many times


@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_fuzz(chunk: int) -> None:
    rnd = random.Random(0x0AC1E + chunk)
    parsed = failed = inputs = 0
    while inputs < PER_CHUNK:
        case = generate(rnd)
        assert parse(case.sql) == case.expected, case.sql
        inputs += 1
        for m in range(MUTANTS):
            if m == 0 and inputs % 50 == 1:
                text = "".join(rnd.choice(_HOSTILE) for _ in range(rnd.randint(0, 60)))
            else:
                text = mutate(rnd, case.sql)
            inputs += 1
            try:
                result = parse(text)
            except RedoSqlError:
                failed += 1
                continue
            assert isinstance(result, Redo)
            parsed += 1
    # The mutations do break statements (the fuzz is not vacuous), and some still parse.
    assert failed > PER_CHUNK // 4 and parsed > PER_CHUNK // 20


def test_fuzz_csf_continuations_join_back_to_the_statement() -> None:
    """CSF: LogMiner splits a long SQL_REDO over rows (CSF=1 on all but the last), anywhere (inside a
    string, a name, a UNISTR escape). Generated statements split at random points, their pieces
    interleaved with another transaction's rows, join (rows.Continuations) and parse to the values
    that generated them; 5,000 statements."""
    from cdc_logs.readers.oracle.rows import Continuations, LogRow

    rnd = random.Random(0xC5F)
    joiner = Continuations()
    for n in range(5_000):
        case = generate(rnd)
        cuts = sorted(rnd.sample(range(1, len(case.sql)), min(rnd.randint(1, 4), len(case.sql) - 1)))
        pieces = [case.sql[i:j] for i, j in zip([0, *cuts], [*cuts, len(case.sql)], strict=True)]
        joined = None
        for k, piece in enumerate(pieces):
            other = LogRow(scn=n, xid="OTHER", operation_code=1, sql_redo="x", csf=0)
            assert joiner.feed(other) is other  # another transaction's complete row between pieces
            row = LogRow(scn=n, xid="T", operation_code=2, sql_redo=piece, csf=int(k < len(pieces) - 1))
            joined = joiner.feed(row)
            assert (joined is None) == (k < len(pieces) - 1)
        assert joined is not None and joined.sql_redo == case.sql and joined.csf == 0
        assert parse(joined.sql_redo) == case.expected
    assert len(joiner) == 0
