"""Postgres I/O: connections, error mapping, and the walsender stream with its feedback.

Two kinds of connection, both psycopg 3:
  * normal (`connect`): catalog queries, slot and publication admin, snapshots, heartbeats;
  * replication (`ReplicationStream`): `replication="database"`, simple query protocol only (no bind
    parameters: psycopg uses the simple protocol when a query has none), for IDENTIFY_SYSTEM,
    CREATE_REPLICATION_SLOT and START_REPLICATION. After START_REPLICATION the connection is in
    COPY_BOTH: `read()` returns the walsender's CopyData messages (XLogData, keepalives) and the
    client answers with standby status updates.

Every session runs with fixed output settings (`SESSION_OPTIONS`): pgoutput's text values and the
snapshot's text values are both made by the server's output functions, which follow DateStyle,
IntervalStyle, TimeZone, lc_monetary, bytea_output and extra_float_digits; the converters in types.py
expect exactly these.

Feedback: the flush LSN sent to the server is the last position the pipeline committed (`confirm`),
never more, except when nothing is in flight (`idle_confirm`): then the keepalive's WAL end is
confirmed, so an idle or filtered slot does not pin WAL. libpq is not thread-safe per connection, so
every call on the connection holds `_io`; a small thread sends status updates on a timer even while
the reader is paused by backpressure, so wal_sender_timeout never drops a slow pipeline.
"""

from __future__ import annotations

import contextlib
import select
import threading
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import conninfo as pg_conninfo
from psycopg import sql

from cdc_logs.dsn import suggest, url_problem, without_quoted
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.observability.logging import get_logger
from cdc_logs.observability.redact import redact
from cdc_logs.pg_conninfo import check_pg_conninfo, libpq_option, option_message
from cdc_logs.position import format_lsn
from cdc_logs.readers.postgres.walproto import Keepalive, XLogData, parse_copy_data, standby_status_update

log = get_logger(__name__)

SESSION_SETTINGS = {
    "DateStyle": "ISO",
    "IntervalStyle": "postgres",
    "TimeZone": "UTC",
    "client_encoding": "UTF8",
    "lc_monetary": "C",
    "bytea_output": "hex",
    "extra_float_digits": "1",
}
SESSION_OPTIONS = " ".join(f"-c {k}={v}" for k, v in SESSION_SETTINGS.items())


_DSN_HINT = "write it as postgresql://user:password@host:5432/dbname (or key=value pairs)"


def parse_conninfo(dsn: str) -> dict[str, Any]:
    """libpq's view of `dsn`; a DSN it cannot use is a CONFIG error that names the part at fault.

    libpq's own parse errors quote the DSN or the part it chokes on (often the password), so they are
    rewritten, never passed on; so are the cases libpq accepts but misreads (a `/` or `@` in an
    unencoded password becomes a port or part of the host, which the connection error would quote).
    """
    try:
        params = pg_conninfo.conninfo_to_dict(dsn)
    except psycopg.ProgrammingError as exc:
        raise CdcError(ErrorKind.CONFIG, f"postgres: {_dsn_problem(dsn, str(exc))}", _DSN_HINT) from None
    for host in str(params.get("host") or "").split(","):
        if "@" in host or ("/" in host and not host.startswith("/")):
            raise CdcError(
                ErrorKind.CONFIG,
                "postgres: the DSN's host contains '@' or '/': the password has one that is not "
                "percent-encoded (%40, %2F)",
                _DSN_HINT,
            )
    for port in str(params.get("port") or "").split(","):
        if port and not (port.isdigit() and 0 < int(port) <= 65535):
            raise CdcError(
                ErrorKind.CONFIG,
                "postgres: the DSN's port is not a number from 1 to 65535 (if the password contains '/', "
                "percent-encode it as %2F)",
                _DSN_HINT,
            )
    return params


def _dsn_problem(dsn: str, libpq_message: str) -> str:
    """What libpq could not parse, without the value it quoted."""
    if "://" in dsn.split("=", 1)[0]:
        found = url_problem(
            dsn, what="DSN", schemes=("postgresql", "postgres"), strict_escapes=True, database=True
        )
        if found:
            return found
        if "invalid URI query parameter" in libpq_message:
            return "the DSN's query has an unknown parameter" + _suggest_option(libpq_message)
    elif "://" not in dsn and "@" in dsn and "=" not in dsn:
        return "the DSN is neither a postgresql:// URL nor key=value pairs"
    if "unterminated quoted string" in libpq_message:
        return "the DSN has a quoted value without its closing quote"
    if 'missing "="' in libpq_message:
        if "=" not in dsn:
            return "the DSN is neither a postgresql:// URL nor key=value pairs"
        return (
            "the DSN has a word without '=' (key=value pairs are separated by spaces: put a value that "
            "contains spaces in single quotes)"
        )
    if "invalid connection option" in libpq_message:
        return "the DSN names an unknown connection option" + _suggest_option(libpq_message)
    return f"the DSN cannot be parsed: {without_quoted(libpq_message)}"


def _suggest_option(libpq_message: str) -> str:
    """`; did you mean sslmode?` for a misspelt keyword: libpq's keyword is shown, never the input."""
    quoted = libpq_message.rpartition('"')[0].rpartition('"')[2]
    keywords = [o.keyword.decode() for o in psycopg.pq.Conninfo.get_defaults()]
    return suggest(quoted, keywords)


def map_error(exc: BaseException, doing: str, dsn: str | None = None) -> CdcError:
    """A psycopg error as a CdcError whose kind decides retry / operator / stop."""
    if isinstance(exc, CdcError):
        return exc
    state = getattr(exc, "sqlstate", None) or ""
    text = redact(str(exc).strip().replace("\n", " "))
    where = f" ({redact(dsn)})" if dsn else ""
    message = f"postgres: {doing}{where}: {text}"
    option = libpq_option(text) if isinstance(exc, psycopg.OperationalError) and not state else None
    if option is not None:  # libpq refused an option value before connecting: a typo, not an outage
        return CdcError(
            ErrorKind.CONFIG, option_message(option), "fix the DSN (--dsn, or dsn: in the config)"
        )
    if state in ("28P01", "28000") or "password authentication failed" in text:
        return CdcError(ErrorKind.AUTH, message, "check the user and password in the DSN and pg_hba.conf")
    if state == "42501" or "must be superuser or replication role" in text:
        return CdcError(
            ErrorKind.PERMISSION,
            message,
            "grant it: ALTER ROLE <user> REPLICATION (and SELECT on the captured tables); "
            "see readers/postgres/minimal-grants.sql",
        )
    if state == "3D000":
        return CdcError(ErrorKind.CONFIG, message, "the database in the DSN does not exist: fix the DSN")
    if "has been invalidated" in text or "cannot read from logical replication slot" in text:
        return CdcError(
            ErrorKind.SLOT_LOST,
            message,
            "the slot lost WAL it needed (max_slot_wal_keep_size): `cdc-logs slots drop <slot> --dsn URL`, "
            "`cdc-logs offsets reset -c <pipeline.yaml>`, then run again to take a new snapshot",
        )
    if "publication" in text and "does not exist" in text:
        return CdcError(
            ErrorKind.NOT_FOUND,
            message,
            "the publication is missing, or was created after the slot (changes older than a publication "
            "cannot be decoded with it): create publications before slots; to start over, "
            "`cdc-logs slots drop <slot> --dsn URL` and run again",
        )
    if state == "55006":  # object in use: the slot is still held by a previous (dying) connection
        return CdcError(
            ErrorKind.CONNECTION,
            message,
            "another process holds the slot; a killed run's walsender lets go within wal_sender_timeout "
            "(check `cdc-logs slots list`)",
        )
    if state.startswith("53"):  # insufficient resources: retried, as slots and senders free up
        return CdcError(
            ErrorKind.CONNECTION,
            message,
            "raise max_replication_slots / max_wal_senders / max_connections or drop unused slots "
            "(`cdc-logs slots list`)",
        )
    if state.startswith("08") or state.startswith("57P") or isinstance(exc, psycopg.OperationalError):
        return CdcError(
            ErrorKind.CONNECTION, message, "the reader reconnects and resumes from the committed LSN"
        )
    return CdcError(ErrorKind.INTERNAL, message, "report this with the --debug output")


def connect(
    dsn: str, *, replication: bool = False, application_name: str = "cdc-logs", options: str = ""
) -> psycopg.Connection[Any]:
    """An autocommit connection with the session settings the converters need."""
    params = parse_conninfo(dsn)
    check_pg_conninfo(dsn)  # a bad value is a CONFIG error here, not a retried connection failure
    merged = " ".join(o for o in (str(params.get("options") or ""), SESSION_OPTIONS, options) if o)
    kwargs: dict[str, Any] = {"autocommit": True, "options": merged}
    kwargs.setdefault("application_name", params.get("application_name") or application_name)
    if "connect_timeout" not in params:
        kwargs["connect_timeout"] = 10
    if replication:
        kwargs["replication"] = "database"
    try:
        return psycopg.connect(dsn, **kwargs)
    except psycopg.Error as exc:
        raise map_error(exc, "connecting" + (" for replication" if replication else ""), dsn) from exc


def protocol_version(server_version: int) -> int:
    """The highest pgoutput protocol the server speaks (2+ streams in-progress transactions)."""
    if server_version >= 160000:
        return 4
    if server_version >= 150000:
        return 3
    return 2 if server_version >= 140000 else 1


def plugin_options(server_version: int, publication_sql: str, *, binary: bool) -> dict[str, str]:
    """START_REPLICATION options for pgoutput: the highest protocol, streaming when it exists (2+;
    'on', not 'parallel': one stream at a time is all a reader needs), messages (14+: heartbeats)."""
    proto = protocol_version(server_version)
    opts = {"proto_version": str(proto), "publication_names": publication_sql}
    if server_version >= 140000:
        opts["messages"] = "true"
    if proto >= 2:
        opts["streaming"] = "on"
    if binary:
        opts["binary"] = "true"
    return opts


def quote_ident(conn: psycopg.Connection[Any], name: str) -> str:
    return sql.Identifier(name).as_string(conn)


def quote_literal(conn: psycopg.Connection[Any], value: str) -> str:
    return sql.Literal(value).as_string(conn)


@dataclass(frozen=True, slots=True)
class SystemInfo:
    system_id: str
    timeline: int
    xlogpos: int
    dbname: str


@dataclass(frozen=True, slots=True)
class CreatedSlot:
    name: str
    consistent_point: int
    snapshot_name: str | None


def parse_lsn_text(text: str) -> int:
    hi, _, lo = text.partition("/")
    return (int(hi, 16) << 32) | int(lo, 16)


class ReplicationStream:
    """A walsender connection: slot creation, START_REPLICATION, reading, and standby feedback."""

    def __init__(
        self,
        dsn: str,
        *,
        application_name: str = "cdc-logs",
        options: str = "",
        status_interval_s: float = 10.0,
    ) -> None:
        self.dsn = dsn
        self.status_interval_s = status_interval_s
        self.conn = connect(dsn, replication=True, application_name=application_name, options=options)
        self._io = threading.Lock()
        self._streaming = False
        self._flush = 0  # highest LSN the pipeline (or idle confirmation) allows the server to drop
        self._received = 0  # highest WAL end seen (reported as the write position)
        self._sent_flush = -1
        self._last_sent = 0.0
        self._feedback_stop = threading.Event()
        self._feedback_thread: threading.Thread | None = None
        self._feedback_error: CdcError | None = None

    @property
    def server_version(self) -> int:
        return int(self.conn.info.server_version)

    # -- commands (before streaming) -----------------------------------------------------------
    def _command(self, text: str, doing: str) -> list[tuple[Any, ...]]:
        try:
            cur = self.conn.execute(text)  # no parameters: the simple query protocol a walsender needs
            return cur.fetchall() if cur.description else []
        except psycopg.Error as exc:
            raise map_error(exc, doing, self.dsn) from exc

    def identify_system(self) -> SystemInfo:
        row = self._command("IDENTIFY_SYSTEM", "IDENTIFY_SYSTEM")[0]
        return SystemInfo(str(row[0]), int(row[1]), parse_lsn_text(str(row[2])), str(row[3]))

    def create_slot(self, name: str, *, temporary: bool, export_snapshot: bool) -> CreatedSlot:
        """CREATE_REPLICATION_SLOT ... LOGICAL pgoutput; the exported snapshot stays valid until the next
        command on this connection (so read the snapshot before `start`)."""
        temp = " TEMPORARY" if temporary else ""
        if self.server_version >= 150000:
            snap = "(SNAPSHOT 'export')" if export_snapshot else "(SNAPSHOT 'nothing')"
        else:
            snap = "EXPORT_SNAPSHOT" if export_snapshot else "NOEXPORT_SNAPSHOT"
        text = f"CREATE_REPLICATION_SLOT {quote_ident(self.conn, name)}{temp} LOGICAL pgoutput {snap}"
        row = self._command(text, f"creating replication slot {name!r}")[0]
        return CreatedSlot(str(row[0]), parse_lsn_text(str(row[1])), row[2] and str(row[2]))

    def start(self, slot: str, lsn: int, plugin_options: dict[str, str]) -> None:
        opts = ", ".join(
            f"{quote_ident(self.conn, k)} {quote_literal(self.conn, v)}" for k, v in plugin_options.items()
        )
        text = f"START_REPLICATION SLOT {quote_ident(self.conn, slot)} LOGICAL {format_lsn(lsn)} ({opts})"
        self._command(text, f"starting replication from slot {slot!r} at {format_lsn(lsn)}")
        self._streaming = True
        self._flush = max(self._flush, lsn)
        self._received = max(self._received, lsn)
        self._feedback_thread = threading.Thread(target=self._feedback_loop, name="pg-feedback", daemon=True)
        self._feedback_thread.start()

    # -- streaming -----------------------------------------------------------------------------
    @property
    def socket(self) -> int:
        """The connection's socket descriptor, to wait on it together with others."""
        return int(self.conn.pgconn.socket)

    def read(self, timeout: float) -> XLogData | Keepalive | None:
        """The next walsender message, or None when none arrived within `timeout` seconds."""
        if self._feedback_error is not None:
            raise self._feedback_error
        pg = self.conn.pgconn
        try:
            with self._io:
                nbytes, data = pg.get_copy_data(1)
            if nbytes == 0:
                ready, _, _ = select.select([pg.socket], [], [], timeout)
                if not ready:
                    return None
                with self._io:
                    pg.consume_input()
                    nbytes, data = pg.get_copy_data(1)
                if nbytes == 0:
                    return None
        except (psycopg.Error, OSError, ValueError) as exc:
            raise map_error(exc, "reading the replication stream", self.dsn) from exc
        if nbytes < 0:
            raise self._copy_ended()
        msg = parse_copy_data(data)
        if msg.wal_end > self._received:
            self._received = msg.wal_end
        return msg  # a keepalive asking for a reply is answered by the caller, after `idle_confirm`

    def _copy_ended(self) -> CdcError:
        """The server ended COPY_BOTH: find out why (an error result, or a plain end)."""
        detail = "the server ended the replication stream"
        with contextlib.suppress(psycopg.Error), self._io:
            res = self.conn.pgconn.get_result()
            while res is not None:
                raw: bytes | str = res.error_message
                message = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
                if message:
                    detail = message.strip()
                res = self.conn.pgconn.get_result()
        error = map_error(psycopg.OperationalError(detail), "replication stream ended", self.dsn)
        return error

    def confirm(self, lsn: int) -> None:
        """The pipeline holds everything up to `lsn` durably (thread-safe: one int store)."""
        if lsn > self._flush:
            self._flush = lsn

    def idle_confirm(self, keepalive: Keepalive) -> None:
        """Nothing is in flight: confirm the keepalive's WAL end (everything before it was decoded and
        had nothing for us, or was committed). Only keepalives: XLogData's WAL end is the server's
        end of WAL, which may hold transactions not decoded yet."""
        self.confirm(keepalive.wal_end)

    @property
    def flushed(self) -> int:
        return self._flush

    @property
    def received(self) -> int:
        return self._received

    def send_status(self, *, reply: bool = False) -> None:
        """Send a standby status update now: write = flush = apply = the confirmed LSN.

        Write is not the received position on purpose: while write < the walsender's sent position,
        the walsender sends a keepalive each time it catches up, so an idle slot is confirmed promptly
        (`idle_confirm`) instead of at the next wal_sender_timeout ping.
        """
        flush = self._flush
        data = standby_status_update(flush, flush, flush, reply_requested=reply)
        pg = self.conn.pgconn
        try:
            with self._io:
                if pg.put_copy_data(data) == 0:
                    raise psycopg.OperationalError("the send buffer is full")
                deadline = time.monotonic() + 10
                while pg.flush() == 1:
                    if time.monotonic() > deadline:
                        raise psycopg.OperationalError("sending a status update timed out")
                    select.select([], [pg.socket], [], 0.5)
        except (psycopg.Error, OSError, ValueError) as exc:
            raise map_error(exc, "sending a standby status update", self.dsn) from exc
        if flush != self._sent_flush:
            log.debug("postgres flush confirmed", flush=format_lsn(flush))
        self._sent_flush = flush
        self._last_sent = time.monotonic()

    def _feedback_loop(self) -> None:
        # Status updates on a timer, and soon after the confirmed LSN moves, even while the reader
        # thread is paused by backpressure.
        while not self._feedback_stop.wait(0.25):
            since = time.monotonic() - self._last_sent
            moved = self._flush != self._sent_flush
            if since >= self.status_interval_s or (moved and since >= 1.0):
                try:
                    self.send_status()
                except CdcError as exc:
                    self._feedback_error = exc  # the reader raises it on its next read
                    return

    def close(self) -> None:
        self._feedback_stop.set()
        thread, self._feedback_thread = self._feedback_thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2)
        if self._streaming and not self.conn.closed:
            # A last status update, so a clean stop leaves the slot at the committed position.
            with contextlib.suppress(CdcError):
                self.send_status()
        with contextlib.suppress(Exception), self._io:
            self.conn.close()
