"""Change-stream documents -> stream items in log order, with transactions grouped (sans-IO).

A change stream hands over one document per change. Changes of a multi-document transaction carry
the session id and transaction number (`lsid`, `txnNumber`) and arrive contiguously, all at the
transaction's commit clusterTime (each with its own resume token), but nothing marks the last one.
A transaction ends when a change of another transaction (or none) follows, or when the stream has
nothing more to give right now: mongod makes a transaction's oplog entries visible at once, at commit,
so an empty getMore after a change of a transaction means that transaction is complete.

So the assembler holds back the latest change of an open transaction until it knows whether it is
the last one. Events get (docs/event-contract.md):
  * a change outside a transaction: its own token, a boundary (event 0);
  * a transaction's changes: their own token with event 1 (not resume points), the last one event 0
    and a boundary; the transaction block numbers them 1, 2, 3 (and per collection).

Control events (drop, rename, dropDatabase, invalidate) and others (DDL shown with
showExpandedEvents) are returned as `Control` for the reader to act on; the reader decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cdc_logs.envelope import ChangeEvent, Heartbeat, Transaction, Undecodable
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.position import MongoResumeToken
from cdc_logs.readers.mongo.convert import DATA_OPS, EventFactory, extended_json, position_of

Item = ChangeEvent | Heartbeat | Undecodable


@dataclass(slots=True)
class Control:
    """A change that is not a document change: drop, rename, dropDatabase, invalidate, DDL..."""

    kind: str
    position: MongoResumeToken
    namespace: str
    target: str = ""  # rename: the new namespace
    token: Mapping[str, Any] | None = None  # the event's resume token document (for startAfter)


@dataclass(slots=True)
class _Held:
    change: Mapping[str, Any]
    position: MongoResumeToken
    transaction: Transaction


class ChangeAssembler:
    """Feed change documents in stream order; get events, heartbeats and control items back."""

    def __init__(self, factory: EventFactory) -> None:
        self.factory = factory
        self._held: _Held | None = None
        self._tx_id: str | None = None
        self._tx_total = 0
        self._tx_per_collection: dict[str, int] = {}

    @property
    def in_transaction(self) -> bool:
        return self._held is not None

    def feed(self, change: Mapping[str, Any]) -> list[Item | Control]:
        out: list[Item | Control] = []
        try:
            position = position_of(self.factory.server, change)
        except CdcError:
            raise
        kind = str(change.get("operationType"))
        tx_id = _transaction_id(change) if kind in DATA_OPS else None
        if self._held is not None and tx_id != self._tx_id:
            out.append(self._release(last=True))
        if kind not in DATA_OPS:
            out.append(_control(kind, change, position, self.factory.namespace(change)))
            return out
        if tx_id is None:
            out.append(self._event(change, position, True, None))
            return out
        if self._held is not None:  # the same transaction goes on: the held change was not its last
            out.append(self._release(last=False))
        else:
            self._tx_id, self._tx_total, self._tx_per_collection = tx_id, 0, {}
        collection = ".".join(self.factory.namespace(change))
        self._tx_total += 1
        self._tx_per_collection[collection] = self._tx_per_collection.get(collection, 0) + 1
        block = Transaction(tx_id, self._tx_total, self._tx_per_collection[collection])
        self._held = _Held(change, position, block)
        return out

    def idle(self) -> list[Item | Control]:
        """The stream has nothing more right now: an open transaction is complete."""
        if self._held is None:
            return []
        return [self._release(last=True)]

    def _release(self, *, last: bool) -> Item:
        held, self._held = self._held, None
        assert held is not None
        if last:
            self._tx_id = None
        position = held.position if last else held.position.at_event(1)
        assert isinstance(position, MongoResumeToken)
        return self._event(held.change, position, last, held.transaction)

    def _event(
        self, change: Mapping[str, Any], position: MongoResumeToken, boundary: bool, tx: Transaction | None
    ) -> Item:
        try:
            return self.factory.change(change, position, boundary, tx)
        except CdcError as exc:
            if exc.kind is not ErrorKind.DECODE:
                raise
            return Undecodable(
                position,
                ".".join(self.factory.namespace(change)),
                f"change {position.token}: {exc.message}",
                boundary=boundary,
                raw=extended_json(change).encode(),
            )


def _transaction_id(change: Mapping[str, Any]) -> str | None:
    """`<lsid.id>:<txnNumber>` for a change made in a multi-document transaction, else None."""
    lsid = change.get("lsid")
    number = change.get("txnNumber")
    if lsid is None or number is None:
        return None
    session = lsid.get("id") if isinstance(lsid, Mapping) else lsid
    as_uuid = getattr(session, "as_uuid", None)
    text = str(as_uuid()) if callable(as_uuid) else str(session)
    return f"{text}:{int(number)}"


def _control(
    kind: str, change: Mapping[str, Any], position: MongoResumeToken, ns: tuple[str, str]
) -> Control:
    namespace = ".".join(p for p in ns if p)
    to = change.get("to") or {}
    target = ".".join(str(p) for p in (to.get("db"), to.get("coll")) if p)
    token = change.get("_id")
    return Control(kind, position, namespace, target, token if isinstance(token, Mapping) else None)
