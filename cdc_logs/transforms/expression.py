"""A safe expression language over change events, for `filter`'s `expression` and a route's `when`.

The text is Python expression syntax, parsed with `ast` and compiled into closures by walking a
whitelist of nodes; nothing is ever passed to eval/exec, and anything off the list (calls to other
functions, attribute access on values, lambdas, comprehensions, assignment, `__dunder__` names) is a
config error naming the column where it is.

    op in ('c', 'u') and after.amount >= 100
    source.table == 'orders' and not (after.status == 'draft')
    endswith(lower(after.email), '@example.com')      (functions, never methods)

Names: `op`, `before`, `after`, `key`, `source`, `ts_ms`, `row` (after, or before for a delete), and
`table`, `schema`, `db` (source's). `a.b` and `a['b c']` read a field of a mapping; a missing field
(or a field of null: `after.x` of a delete) is null, never an error. Literals: strings, numbers,
true/false/null (Python's True/False/None too), tuples and lists of literals for `in`. Operators:
== != < <= > >= in, not in, is, is not, and, or, not, unary minus (of anything but a number: null,
never an error at run time). An ordering comparison between
values that do not compare (a number and a text, or null) is false. Functions: lower, upper, len,
startswith, endswith, contains (contains(text, part)).

Limits: at most MAX_LENGTH characters and MAX_DEPTH levels of nesting (operators inside operators),
checked before the text is compiled, so a runaway expression is a quick config error naming the limit
rather than a RecursionError, a MemoryError or a long parse.
"""

from __future__ import annotations

import ast
import operator
import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from cdc_logs.envelope import ChangeEvent, Op

Evaluator = Callable[[ChangeEvent], Any]

MAX_LENGTH = 4096  # characters of an expression
MAX_DEPTH = 64  # nested operators/calls/parentheses; real conditions use a handful


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float | Decimal) and not isinstance(value, bool)


_DECIMAL_TEXT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")


def _decimal(value: Any) -> Decimal | None:
    """A text that is a decimal number as a Decimal; None for any other value (or an exponent past
    what Decimal takes, e.g. "1e99999999999999999999")."""
    if not (isinstance(value, str) and _DECIMAL_TEXT.fullmatch(value)):
        return None
    try:
        return Decimal(value)
    except ArithmeticError:
        return None


def _numbers(a: Any, b: Any) -> tuple[Any, Any]:
    """A number compared with a text that is a decimal number compares as numbers: exact numerics
    (Postgres NUMERIC, MySQL DECIMAL) reach events as text ("500.00", Debezium's
    decimal.handling.mode=string) so that no digit is lost, and `after.amount >= 100` must still
    mean what it says."""
    if _is_number(a) and (number := _decimal(b)) is not None:
        return a, number
    if _is_number(b) and (number := _decimal(a)) is not None:
        return number, b
    return a, b


def _coerced(fn: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    return lambda a, b: fn(*_numbers(a, b))


def _member(a: Any, b: Any) -> bool:
    if isinstance(b, tuple | list):  # a list literal: each item compared as `==` compares
        return any(operator.eq(*_numbers(a, item)) for item in b)
    return b is not None and a in b


_COMPARE: dict[type[ast.cmpop], Callable[[Any, Any], bool]] = {
    ast.Eq: _coerced(operator.eq),
    ast.NotEq: _coerced(operator.ne),
    ast.Lt: _coerced(operator.lt),
    ast.LtE: _coerced(operator.le),
    ast.Gt: _coerced(operator.gt),
    ast.GtE: _coerced(operator.ge),
    ast.In: _member,
    ast.NotIn: lambda a, b: b is None or not _member(a, b),
    ast.Is: operator.is_,
    ast.IsNot: operator.is_not,
}


def _text(value: Any) -> str:
    return "" if value is None else str(value)


_FUNCTIONS: dict[str, tuple[int, Callable[..., Any]]] = {
    "lower": (1, lambda v: None if v is None else str(v).lower()),
    "upper": (1, lambda v: None if v is None else str(v).upper()),
    "len": (1, lambda v: None if v is None else len(v)),
    "startswith": (2, lambda v, p: v is not None and _text(v).startswith(_text(p))),
    "endswith": (2, lambda v, p: v is not None and _text(v).endswith(_text(p))),
    "contains": (2, lambda v, p: v is not None and _text(p) in _text(v)),
}
_LITERAL_NAMES = {"true": True, "false": False, "null": None}


def _negate(value: Any) -> Any:
    """`-x`: null for anything but a number or a decimal number's text (a null field, a delete's
    `after.x`, a name), like a missing field: never a TypeError that would stop the pipeline on one row."""
    if (number := _decimal(value)) is not None:
        return -number  # an exact numeric's text, as in comparisons
    return -value if _is_number(value) else None


def _root(name: str) -> Evaluator:
    roots: dict[str, Evaluator] = {
        "op": lambda e: e.op.value,
        "before": lambda e: e.before,
        "after": lambda e: e.after,
        "key": lambda e: e.key,
        "row": lambda e: e.row,
        "source": lambda e: e.source.to_dict(),
        "ts_ms": lambda e: e.ts_ms,
        "table": lambda e: e.source.table,
        "schema": lambda e: e.source.schema,
        "db": lambda e: e.source.db,
    }
    return roots[name]


ROOTS = ("op", "before", "after", "key", "row", "source", "ts_ms", "table", "schema", "db")


class ExpressionError(ValueError):
    """A bad expression, with the (1-based) column of the offending part."""


def compile_expression(text: str) -> Evaluator:
    """The expression as a function of an event; ExpressionError (a ValueError, so pydantic reports
    it as a config error) for anything outside the language."""
    if not text.strip():
        raise ExpressionError("the expression is empty")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(
            f"the expression is {len(text)} characters long, over the limit of {MAX_LENGTH}; split the "
            "condition (a filter per part) or shorten it"
        )
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        if "too many nested" in str(exc.msg):
            raise ExpressionError(
                f"the expression nests deeper than the limit of {MAX_DEPTH} levels"
            ) from None
        raise ExpressionError(f"syntax error at column {exc.offset or 0}: {exc.msg}") from None
    except (RecursionError, MemoryError):  # the parser's own nesting limit (e.g. thousands of `-`)
        raise ExpressionError(f"the expression nests deeper than the limit of {MAX_DEPTH} levels") from None
    _check_depth(tree.body)
    return _Compiler(text.strip()).node(tree.body)


def _check_depth(root: ast.AST) -> None:
    """Iteratively (the check itself must not recurse): refuse a tree deeper than MAX_DEPTH."""
    stack: list[tuple[ast.AST, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            column = getattr(node, "col_offset", 0) + 1
            raise ExpressionError(
                f"the expression nests deeper than the limit of {MAX_DEPTH} levels (at column {column})"
            )
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))


def matches(evaluator: Evaluator, event: ChangeEvent) -> bool:
    return bool(evaluator(event))


class _Compiler:
    def __init__(self, text: str) -> None:
        self.text = text

    def fail(self, node: ast.AST, what: str) -> ExpressionError:
        column = getattr(node, "col_offset", 0) + 1
        end = getattr(node, "end_col_offset", None)
        part = self.text[column - 1 : end] if end is not None else ""
        return ExpressionError(
            f"{what} at column {column} (`{part}`); allowed: field access like after.amount, literals, "
            "== != < <= > >= in, not in, is, and, or, not, and the functions "
            f"{', '.join(sorted(_FUNCTIONS))}"
        )

    def node(self, node: ast.expr) -> Evaluator:
        method = getattr(self, f"_{type(node).__name__}", None)
        if method is None:
            raise self.fail(node, f"{type(node).__name__} is not allowed")
        result: Evaluator = method(node)
        return result

    def _Constant(self, node: ast.Constant) -> Evaluator:
        value = node.value
        if not (value is None or isinstance(value, str | int | float | bool)):
            raise self.fail(node, f"a {type(value).__name__} literal is not allowed")
        return lambda _e: value

    def _Name(self, node: ast.Name) -> Evaluator:
        if node.id in _LITERAL_NAMES:
            value = _LITERAL_NAMES[node.id]
            return lambda _e: value
        if node.id not in ROOTS:
            raise self.fail(node, f"unknown name {node.id!r} (names: {', '.join(ROOTS)})")
        return _root(node.id)

    def _Attribute(self, node: ast.Attribute) -> Evaluator:
        if node.attr.startswith("__"):
            raise self.fail(node, f"field {node.attr!r} is not allowed")
        return self._field(self.node(node.value), node.attr)

    def _Subscript(self, node: ast.Subscript) -> Evaluator:
        index = node.slice
        if not (isinstance(index, ast.Constant) and isinstance(index.value, str)):
            raise self.fail(node, "only a quoted field name may go in [...]")
        return self._field(self.node(node.value), index.value)

    @staticmethod
    def _field(parent: Evaluator, name: str) -> Evaluator:
        def get(event: ChangeEvent) -> Any:
            value = parent(event)
            return value.get(name) if isinstance(value, Mapping) else None

        return get

    def _Tuple(self, node: ast.Tuple) -> Evaluator:
        items = [self.node(e) for e in node.elts]
        return lambda e: tuple(item(e) for item in items)

    _List = _Tuple

    def _BoolOp(self, node: ast.BoolOp) -> Evaluator:
        parts = [self.node(v) for v in node.values]
        if isinstance(node.op, ast.And):
            return lambda e: all(p(e) for p in parts)
        return lambda e: any(p(e) for p in parts)

    def _UnaryOp(self, node: ast.UnaryOp) -> Evaluator:
        operand = self.node(node.operand)
        if isinstance(node.op, ast.Not):
            return lambda e: not operand(e)
        if isinstance(node.op, ast.USub):
            if isinstance(node.operand, ast.Constant) and not _is_number(node.operand.value):
                raise self.fail(node, "unary minus needs a number")
            return lambda e: _negate(operand(e))
        raise self.fail(node, f"operator {type(node.op).__name__} is not allowed")

    def _Compare(self, node: ast.Compare) -> Evaluator:
        operands = [self.node(node.left), *(self.node(c) for c in node.comparators)]
        ops = []
        for op in node.ops:
            fn = _COMPARE.get(type(op))
            if fn is None:  # pragma: no cover - every cmpop is listed
                raise self.fail(node, f"comparison {type(op).__name__} is not allowed")
            ops.append(fn)

        def compare(event: ChangeEvent) -> bool:
            left = operands[0](event)
            for fn, right_of in zip(ops, operands[1:], strict=True):
                right = right_of(event)
                try:
                    if not fn(left, right):
                        return False
                except TypeError:  # a number against a text, or null in an ordering: not a match
                    return False
                left = right
            return True

        return compare

    def _Call(self, node: ast.Call) -> Evaluator:
        if not isinstance(node.func, ast.Name) or node.func.id not in _FUNCTIONS:
            raise self.fail(node, "calls other than the listed functions are not allowed")
        if node.keywords:
            raise self.fail(node, "keyword arguments are not allowed")
        arity, fn = _FUNCTIONS[node.func.id]
        if len(node.args) != arity:
            raise self.fail(node, f"{node.func.id}() takes {arity} argument(s)")
        args = [self.node(a) for a in node.args]

        def call(event: ChangeEvent) -> Any:
            try:
                return fn(*(a(event) for a in args))
            except TypeError:  # len() of a number: no value
                return None

        return call


def op_of(event: ChangeEvent) -> str:
    """The op a route filters by: the halves of a primary-key change count as the update they are."""
    if event.key_change and event.op in (Op.DELETE, Op.CREATE):
        return Op.UPDATE.value
    return event.op.value
