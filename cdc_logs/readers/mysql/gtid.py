"""GTID arithmetic for MySQL GTID sets and MariaDB GTID positions, as pure values (no I/O).

MySQL: a GTID set is, per source (server uuid, optional MySQL 8.4 tag), a set of transaction numbers
written as intervals: `3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7,<uuid>:tag:1-3`. A binlog reader
`add()`s each committed GTID and resumes by sending the whole set.

MariaDB: a GTID position keeps only the last GTID per replication domain, `0-1-100,1-2-5`
(domain-server-seq). Sequence numbers are monotonic per domain (gtid_strict_mode), so "already seen"
is a comparison of seq numbers.

Every parse failure raises `CdcError(ErrorKind.DECODE, ...)` with a hint showing the accepted format.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Literal

from cdc_logs.errors import CdcError, ErrorKind

Flavor = Literal["mysql", "mariadb"]
Interval = tuple[int, int]  # inclusive [start, end]
SourceKey = tuple[str, str | None]  # (uuid, tag)

MAX_GNO = (1 << 63) - 1  # MySQL's GNO is a signed 64-bit counter starting at 1
_U32, _U64 = (1 << 32) - 1, (1 << 64) - 1
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_TAG = re.compile(r"[a-z_][a-z0-9_]{0,31}")  # MySQL 8.4 tags are case-insensitive, stored lowercase
_NUM = re.compile(r"[0-9]+")  # ASCII only: int() would also accept "+5", "1_0" and other digit scripts
_MARIADB_GTID = re.compile(r"\s*[0-9]+\s*-\s*[0-9]+\s*-\s*[0-9]+\s*")

MYSQL_HINT = (
    "write a MySQL GTID set as uuid:1-5:7[,uuid:tag:1-3], e.g. 3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5"
)
MYSQL_GTID_HINT = "write a MySQL GTID as uuid:N or uuid:tag:N, e.g. 3e11fa47-71ca-11e1-9e33-c80aa9429562:23"
MARIADB_HINT = "write a MariaDB GTID position as domain-server-seq[,...], e.g. 0-1-100,1-2-5"


def _fail(what: str, text: object, hint: str, detail: str = "") -> CdcError:
    extra = f" ({detail})" if detail else ""
    return CdcError(ErrorKind.DECODE, f"not a {what}: {str(text)[:200]!r}{extra}", hint)


def _text(text: object, what: str, hint: str) -> str:
    if not isinstance(text, str):
        raise _fail(what, text, hint, f"expected text, got {type(text).__name__}")
    return text


def _int(token: str, lo: int, hi: int, what: str, text: str, hint: str) -> int:
    token = token.strip()
    if not _NUM.fullmatch(token):
        raise _fail(what, text, hint, f"{token!r} is not a number")
    value = int(token)
    if not lo <= value <= hi:
        raise _fail(what, text, hint, f"{value} is outside {lo}..{hi}")
    return value


def _uuid(token: str, what: str, text: str, hint: str) -> str:
    uuid = token.strip().lower()
    if not _UUID.fullmatch(uuid):
        raise _fail(what, text, hint, f"{token.strip()!r} is not a server uuid")
    return uuid


def _normalise(intervals: Iterable[Interval]) -> tuple[Interval, ...]:
    """Sort and merge overlapping and adjacent intervals (1-3 and 4-5 become 1-5)."""
    out: list[Interval] = []
    for start, end in sorted(intervals):
        if out and start <= out[-1][1] + 1:
            if end > out[-1][1]:
                out[-1] = (out[-1][0], end)
        else:
            out.append((start, end))
    return tuple(out)


def _subtract(a: tuple[Interval, ...], b: tuple[Interval, ...]) -> tuple[Interval, ...]:
    out: list[Interval] = []
    j = 0
    for start, end in a:
        while j < len(b) and b[j][1] < start:  # b intervals wholly before this one can't matter again
            j += 1
        k, cur = j, start
        while k < len(b) and b[k][0] <= end:
            if b[k][0] > cur:
                out.append((cur, b[k][0] - 1))
            cur = max(cur, b[k][1] + 1)
            k += 1
        if cur <= end:
            out.append((cur, end))
    return tuple(out)


def _intersect(a: tuple[Interval, ...], b: tuple[Interval, ...]) -> tuple[Interval, ...]:
    out: list[Interval] = []
    i = j = 0
    while i < len(a) and j < len(b):
        start, end = max(a[i][0], b[j][0]), min(a[i][1], b[j][1])
        if start <= end:
            out.append((start, end))
        if a[i][1] < b[j][1]:
            i += 1
        else:
            j += 1
    return tuple(out)


@dataclass(frozen=True)
class Gtid:
    """One MySQL transaction id: `uuid:N`, or `uuid:tag:N` (MySQL 8.4)."""

    uuid: str
    number: int
    tag: str | None = None

    def __post_init__(self) -> None:
        text = str(self)
        if not isinstance(self.uuid, str) or not isinstance(self.tag, str | None):
            raise _fail("MySQL GTID", text, MYSQL_GTID_HINT, "uuid and tag must be text")
        uuid = _uuid(self.uuid, "MySQL GTID", text, MYSQL_GTID_HINT)
        tag = None if self.tag is None else self.tag.strip().lower()
        if tag is not None and not _TAG.fullmatch(tag):
            raise _fail("MySQL GTID", text, MYSQL_GTID_HINT, f"bad tag {self.tag!r}")
        if type(self.number) is not int or not 1 <= self.number <= MAX_GNO:  # type(): rejects bool
            raise _fail("MySQL GTID", text, MYSQL_GTID_HINT, f"number must be 1..{MAX_GNO}")
        object.__setattr__(self, "uuid", uuid)  # frozen: normalise once, here
        object.__setattr__(self, "tag", tag)

    @classmethod
    def parse(cls, text: str) -> Gtid:
        text = _text(text, "MySQL GTID", MYSQL_GTID_HINT)
        parts = text.strip().split(":")
        if len(parts) not in (2, 3):
            raise _fail("MySQL GTID", text, MYSQL_GTID_HINT)
        number = _int(parts[-1], 1, MAX_GNO, "MySQL GTID", text, MYSQL_GTID_HINT)
        tag = parts[1].strip() if len(parts) == 3 else None
        return cls(parts[0].strip(), number, tag)

    @property
    def key(self) -> SourceKey:
        return (self.uuid, self.tag)

    def __str__(self) -> str:
        return f"{self.uuid}:{self.tag}:{self.number}" if self.tag else f"{self.uuid}:{self.number}"


class MysqlGtidSet:
    """An immutable MySQL GTID set: per (uuid, tag), sorted disjoint non-adjacent intervals."""

    __slots__ = ("_hash", "_map")
    _map: dict[SourceKey, tuple[Interval, ...]]

    def __init__(self, intervals: Mapping[SourceKey, Iterable[Interval]] | None = None) -> None:
        built: dict[SourceKey, tuple[Interval, ...]] = {}
        for (uuid, tag), ivs in (intervals or {}).items():
            checked = []
            for start, end in ivs:
                for bound in (start, end):
                    Gtid(uuid, bound, tag)  # validates uuid, tag and bound
                if start > end:
                    raise _fail("MySQL GTID set", f"{uuid}:{start}-{end}", MYSQL_HINT, "interval ends first")
                checked.append((start, end))
            key = Gtid(uuid, 1, tag).key
            merged = _normalise([*built.get(key, ()), *checked])
            if merged:  # keeping empty keys would make equal sets compare unequal
                built[key] = merged
        self._set(built)

    def _set(self, built: dict[SourceKey, tuple[Interval, ...]]) -> None:
        # Sorted order makes iteration, format() and equality canonical; untagged sorts first per uuid.
        self._map = dict(sorted(built.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")))
        self._hash: int | None = None

    @classmethod
    def _from_normalised(cls, built: dict[SourceKey, tuple[Interval, ...]]) -> MysqlGtidSet:
        new = cls.__new__(cls)  # skip re-validation: operands were already valid
        new._set({k: v for k, v in built.items() if v})
        return new

    @classmethod
    def parse(cls, text: str) -> MysqlGtidSet:
        """Parse MySQL's text form; whitespace and newlines are ignored, empty text is the empty set."""
        text = _text(text, "MySQL GTID set", MYSQL_HINT)
        found: dict[SourceKey, list[Interval]] = {}
        for element in text.split(","):
            if not element.strip():  # MySQL accepts empty elements ("a,,b", trailing comma)
                continue
            uuid_text, *items = element.split(":")
            uuid = _uuid(uuid_text, "MySQL GTID set", text, MYSQL_HINT)
            if not items:
                raise _fail("MySQL GTID set", text, MYSQL_HINT, f"{uuid} has no intervals")
            tag: str | None = None
            pending_tag = False  # a tag must be followed by at least one interval
            for item in items:
                item = item.strip()
                if _TAG.fullmatch(item.lower()):
                    if pending_tag:
                        raise _fail("MySQL GTID set", text, MYSQL_HINT, f"tag {tag!r} has no intervals")
                    tag, pending_tag = item.lower(), True
                    continue
                lo, sep, hi = item.partition("-")
                start = _int(lo, 1, MAX_GNO, "MySQL GTID set", text, MYSQL_HINT)
                end = _int(hi, 1, MAX_GNO, "MySQL GTID set", text, MYSQL_HINT) if sep else start
                if start > end:
                    raise _fail("MySQL GTID set", text, MYSQL_HINT, f"{item!r} ends before it starts")
                found.setdefault((uuid, tag), []).append((start, end))
                pending_tag = False
            if pending_tag:
                raise _fail("MySQL GTID set", text, MYSQL_HINT, f"tag {tag!r} has no intervals")
        return cls._from_normalised({k: _normalise(v) for k, v in found.items()})

    def format(self) -> str:
        """Canonical MySQL text: uuids sorted, untagged intervals before tags, `7` rather than `7-7`."""
        per_uuid: dict[str, list[str]] = {}
        for (uuid, tag), ivs in self._map.items():
            parts = per_uuid.setdefault(uuid, [uuid])
            if tag:
                parts.append(tag)
            parts.extend(f"{s}" if s == e else f"{s}-{e}" for s, e in ivs)
        return ",".join(":".join(parts) for parts in per_uuid.values())

    __str__ = format

    def __repr__(self) -> str:
        return f"MysqlGtidSet.parse({self.format()!r})"

    def intervals(self, uuid: str, tag: str | None = None) -> tuple[Interval, ...]:
        return self._map.get((uuid.lower(), tag.lower() if tag else None), ())

    def sources(self) -> Iterator[SourceKey]:
        """The (uuid, tag) pairs with at least one transaction, in canonical order."""
        return iter(self._map)

    def count(self) -> int:
        """Number of transactions in the set."""
        return sum(e - s + 1 for ivs in self._map.values() for s, e in ivs)

    def __bool__(self) -> bool:
        return bool(self._map)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MysqlGtidSet) and self._map == other._map

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(tuple(self._map.items()))
        return self._hash

    def contains(self, gtid: Gtid | str) -> bool:
        g = Gtid.parse(gtid) if isinstance(gtid, str) else gtid
        ivs = self._map.get(g.key, ())
        i = bisect_right(ivs, (g.number, MAX_GNO)) - 1  # last interval starting at or before number
        return i >= 0 and ivs[i][1] >= g.number

    def __contains__(self, gtid: object) -> bool:
        if not isinstance(gtid, Gtid | str):
            return False
        return self.contains(gtid)

    def union(self, other: MysqlGtidSet) -> MysqlGtidSet:
        built = dict(self._map)
        for key, ivs in other._map.items():
            built[key] = _normalise([*built.get(key, ()), *ivs])
        return self._from_normalised(built)

    def intersection(self, other: MysqlGtidSet) -> MysqlGtidSet:
        return self._from_normalised(
            {k: _intersect(ivs, other._map[k]) for k, ivs in self._map.items() if k in other._map}
        )

    def subtract(self, other: MysqlGtidSet) -> MysqlGtidSet:
        theirs = other._map
        return self._from_normalised({k: _subtract(ivs, theirs.get(k, ())) for k, ivs in self._map.items()})

    def issuperset(self, other: MysqlGtidSet) -> bool:
        return not other.subtract(self)

    def issubset(self, other: MysqlGtidSet) -> bool:
        return other.issuperset(self)

    def add(self, gtid: Gtid | str) -> MysqlGtidSet:
        """A new set with one more transaction: what a binlog reader does after each commit."""
        g = Gtid.parse(gtid) if isinstance(gtid, str) else gtid
        if self.contains(g):
            return self
        built = dict(self._map)
        built[g.key] = _normalise([*built.get(g.key, ()), (g.number, g.number)])
        return self._from_normalised(built)

    __or__ = union
    __and__ = intersection
    __sub__ = subtract


@dataclass(frozen=True)
class MariadbGtid:
    """One MariaDB transaction id: `domain-server-seq`."""

    domain: int
    server: int
    seq: int

    def __post_init__(self) -> None:
        for name, hi in (("domain", _U32), ("server", _U32), ("seq", _U64)):
            value = getattr(self, name)
            if type(value) is not int or not 0 <= value <= hi:  # type(): rejects bool
                raise _fail("MariaDB GTID", str(self), MARIADB_HINT, f"{name} must be 0..{hi}")

    @classmethod
    def parse(cls, text: str) -> MariadbGtid:
        text = _text(text, "MariaDB GTID", MARIADB_HINT)
        parts = text.strip().split("-")
        if len(parts) != 3:
            raise _fail("MariaDB GTID", text, MARIADB_HINT)
        domain, server = (_int(p, 0, _U32, "MariaDB GTID", text, MARIADB_HINT) for p in parts[:2])
        return cls(domain, server, _int(parts[2], 0, _U64, "MariaDB GTID", text, MARIADB_HINT))

    def __str__(self) -> str:
        return f"{self.domain}-{self.server}-{self.seq}"


class MariadbGtidPosition:
    """An immutable MariaDB GTID position: the last GTID applied in each replication domain."""

    __slots__ = ("_by_domain",)
    _by_domain: dict[int, MariadbGtid]

    def __init__(self, gtids: Iterable[MariadbGtid] = ()) -> None:
        by_domain: dict[int, MariadbGtid] = {}
        for g in gtids:
            if g.domain in by_domain:  # MariaDB itself rejects two GTIDs for one domain in a position
                raise _fail("MariaDB GTID position", g, MARIADB_HINT, f"domain {g.domain} appears twice")
            by_domain[g.domain] = g
        self._by_domain = dict(sorted(by_domain.items()))

    @classmethod
    def parse(cls, text: str) -> MariadbGtidPosition:
        text = _text(text, "MariaDB GTID position", MARIADB_HINT)
        if not text.strip():
            return cls()
        entries = text.split(",")
        if any(not e.strip() for e in entries):
            raise _fail("MariaDB GTID position", text, MARIADB_HINT, "empty entry")
        return cls(MariadbGtid.parse(e) for e in entries)

    def format(self) -> str:
        return ",".join(str(g) for g in self._by_domain.values())

    __str__ = format

    def __repr__(self) -> str:
        return f"MariadbGtidPosition.parse({self.format()!r})"

    def get(self, domain: int) -> MariadbGtid | None:
        return self._by_domain.get(domain)

    def __iter__(self) -> Iterator[MariadbGtid]:
        return iter(self._by_domain.values())

    def __len__(self) -> int:
        return len(self._by_domain)

    def __bool__(self) -> bool:
        return bool(self._by_domain)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MariadbGtidPosition) and self._by_domain == other._by_domain

    def __hash__(self) -> int:
        return hash(tuple(self._by_domain.values()))

    def advance(self, gtid: MariadbGtid | str) -> MariadbGtidPosition:
        """The position after applying `gtid`: it replaces its domain's entry, whatever the seq."""
        g = MariadbGtid.parse(gtid) if isinstance(gtid, str) else gtid
        return MariadbGtidPosition([*(x for x in self if x.domain != g.domain), g])

    def covers(self, gtid: MariadbGtid | str) -> bool:
        """Whether `gtid` was already applied (seq numbers only grow within a domain in strict mode)."""
        g = MariadbGtid.parse(gtid) if isinstance(gtid, str) else gtid
        mine = self._by_domain.get(g.domain)
        return mine is not None and mine.seq >= g.seq

    def merge(self, other: MariadbGtidPosition) -> MariadbGtidPosition:
        """The furthest entry per domain; equal seqs tie-break on server id so merge is commutative."""
        best = dict(self._by_domain)
        for domain, g in other._by_domain.items():
            if domain not in best or (g.seq, g.server) > (best[domain].seq, best[domain].server):
                best[domain] = g
        return MariadbGtidPosition(best.values())


def detect_flavor(text: str) -> Flavor:
    """Guess the flavor from syntax: any ':' means MySQL, only `n-n-n` entries mean MariaDB.

    Empty text has no flavor and raises: an empty resume position needs the flavor from the config.
    """
    text = _text(text, "GTID text", MYSQL_HINT)
    if ":" in text:
        return "mysql"
    entries = [e for e in text.split(",") if e.strip()]
    if entries and all(_MARIADB_GTID.fullmatch(e) for e in entries):
        return "mariadb"
    raise _fail("MySQL GTID set or MariaDB GTID position", text, f"{MYSQL_HINT}; or {MARIADB_HINT}")


def parse_gtid_text(text: str, flavor: str | None = None) -> MysqlGtidSet | MariadbGtidPosition:
    """Parse GTID text for `flavor` ("mysql" or "mariadb"); None guesses it from the text."""
    if flavor is None:
        flavor = detect_flavor(text)
    if flavor == "mysql":
        return MysqlGtidSet.parse(text)
    if flavor == "mariadb":
        return MariadbGtidPosition.parse(text)
    raise CdcError(ErrorKind.DECODE, f"unknown GTID flavor {flavor!r}", 'use flavor "mysql" or "mariadb"')
