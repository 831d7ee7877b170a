"""MySQL/MariaDB I/O: DSNs, control connections, error mapping, and the binlog stream thread.

python-mysql-replication's `BinLogStreamReader` blocks in a socket read and, on a lost connection
(2013/2006), silently reconnects from the position it was *created* with, replaying everything since.
So it never runs on the pipeline's thread and never reconnects by itself here:

* `BinlogStream` runs it with `blocking=True` on a dedicated thread that feeds a bounded queue (the
  reader polls the queue with a timeout, so `stop()` is seen within one tick);
* its connections are our `_Connection` subclass, which turns a lost connection into `StreamLost`
  instead of the error the library would swallow; `stop()` shuts the sockets down to wake the read;
* reconnects are ours: bounded, with backoff, from the GTID position of the last complete transaction
  (the converter knows it and skips the rows of a half-read transaction that it already emitted);
* server errors become typed `CdcError`s: 1236 (GTID/binlog purged or diverged) POSITION_LOST,
  4052 (another client took our server_id) CONFIG, 1045 AUTH, privileges PERMISSION.

A read timeout of a few heartbeat periods detects a server that vanished without closing the socket
(the server sends heartbeat events while idle, so silence means the connection is gone).
"""

from __future__ import annotations

import contextlib
import queue
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import pymysql
import pymysql.connections

from cdc_logs.dsn import url_problem
from cdc_logs.errors import CdcError, ErrorKind
from cdc_logs.handoff import Handoff
from cdc_logs.observability.logging import get_logger
from cdc_logs.observability.redact import redact
from cdc_logs.retry import RetryPolicy

log = get_logger(__name__)
_RECONNECT = RetryPolicy(0, 0.5, 10.0)  # the binlog's own reconnects (bounded by max_reconnects)

RECOVER_HINT = (
    "the binlog no longer holds this position: reset the offsets and take a new snapshot "
    "(`cdc-logs offsets reset -c <pipeline.yaml>`, with `snapshot: true` on the source)"
)
_LOST = (2006, 2013, 2055)  # server gone away, lost connection, lost connection (SSL/timeout)
_UNREACHABLE = (2002, 2003, 2005)  # socket, TCP refused, unknown host
_PERMISSION = (1044, 1142, 1143, 1227, 1370)
_AUTH = (1045, 1698, 1251)


@dataclass(frozen=True)
class MysqlSettings:
    """Where and how to connect. The password never appears in repr or `describe()`."""

    host: str = "127.0.0.1"
    port: int = 3306
    user: str = "root"
    password: str = field(default="", repr=False)
    database: str | None = None
    connect_timeout: float = 10.0

    def kwargs(self, *, database: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "password": self.password,
            "charset": "utf8mb4",
            "connect_timeout": self.connect_timeout,
        }
        if database and self.database:
            out["database"] = self.database
        return out

    def describe(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"


def parse_dsn(dsn: str) -> MysqlSettings:
    """`mysql://user:pw@host:port/db` (also `mariadb://`, `mysql+pymysql://`) -> settings.

    A DSN that does not parse is a CONFIG error naming the part at fault; nothing of it is quoted (a
    `/` in an unencoded password would otherwise surface as the "port").
    """
    problem = url_problem(dsn, what="DSN", schemes=("mysql", "mariadb"), database=True)
    if problem is None:
        try:
            parts = urlsplit(dsn)
            port = parts.port or 3306
        except ValueError:  # urllib quotes the part it rejects: say what is wrong instead
            problem = "the DSN cannot be parsed (check its host and port)"
        else:
            if not parts.hostname:
                problem = "the DSN has no host"
    if problem is not None:
        raise CdcError(ErrorKind.CONFIG, problem, "write it as mysql://user:password@host:3306/database")
    assert parts.hostname is not None
    return MysqlSettings(
        host=parts.hostname,
        port=port,
        user=unquote(parts.username or "root"),
        password=unquote(parts.password or ""),
        database=unquote(parts.path.lstrip("/")) or None,
    )


def classify(exc: BaseException, what: str) -> CdcError:
    """Map a PyMySQL (or socket) error to a typed CdcError; `what` says what we were doing."""
    if isinstance(exc, CdcError):
        return exc
    code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
    text = str(exc.args[1]) if len(exc.args) > 1 else str(exc)
    text = redact(text)
    message = f"{what}: {text}" + (f" (error {code})" if code else "")
    if code == 4052 or (code == 1236 and "same server" in text):
        return CdcError(
            ErrorKind.CONFIG,
            f"{what}: another binlog client connected with our server_id and the server dropped us ({text})",
            "give every binlog consumer (each pipeline, each replica) its own `server_id` in the source",
        )
    if code == 1236:
        return CdcError(ErrorKind.POSITION_LOST, message, RECOVER_HINT)
    if code in _AUTH:
        return CdcError(ErrorKind.AUTH, message, "check the user and password in the DSN")
    if code in _PERMISSION:
        return CdcError(
            ErrorKind.PERMISSION,
            message,
            "GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT ON *.* TO the CDC user "
            "(see readers/mariadb/setup.sql); `cdc-logs doctor` lists what is missing",
        )
    if code in (1049, 1146):
        return CdcError(ErrorKind.NOT_FOUND, message, "check the database and table names")
    if code in _LOST or code in _UNREACHABLE or isinstance(exc, OSError | StreamLost):
        return CdcError(ErrorKind.CONNECTION, message, "is the server up and reachable? it is retried")
    if isinstance(exc, pymysql.err.OperationalError):
        return CdcError(ErrorKind.CONNECTION, message, "it is retried")
    return CdcError(ErrorKind.INTERNAL, message, "rerun with --debug and report it")


def connect(settings: MysqlSettings, *, autocommit: bool = True) -> pymysql.connections.Connection:
    """A control connection (queries, snapshot), with errors mapped. Session time zone is UTC, so
    TIMESTAMP values read as UTC wall time."""
    try:
        conn = pymysql.connect(
            **settings.kwargs(), autocommit=autocommit, init_command="SET time_zone = '+00:00'"
        )
    except pymysql.MySQLError as exc:
        raise classify(exc, f"connecting to {settings.describe()}") from exc
    return conn


def binlog_end(conn: pymysql.connections.Connection) -> tuple[str, int]:
    """The binlog's end now: (file, position); ("", 0) when the server reports none."""
    with conn.cursor() as cur:
        try:
            cur.execute("SHOW BINARY LOG STATUS")  # MySQL 8.4 removed SHOW MASTER STATUS
        except pymysql.err.ProgrammingError:
            cur.execute("SHOW MASTER STATUS")
        row = cur.fetchone()
    return (str(row[0]), int(row[1])) if row else ("", 0)


def query_one(conn: pymysql.connections.Connection, sql: str, args: Sequence[Any] = ()) -> tuple[Any, ...]:
    with conn.cursor() as cur:
        cur.execute(sql, args)
        row = cur.fetchone()
    return tuple(row) if row is not None else ()


class StreamLost(Exception):
    """The binlog connection dropped (or was shut down by `stop()`); not a PyMySQL error on purpose:
    the library would catch that and reconnect from a stale position."""


class _Connection(pymysql.connections.Connection):
    def _read_packet(self, packet_type: Any = pymysql.connections.MysqlPacket) -> Any:
        try:
            return super()._read_packet(packet_type)
        except pymysql.err.OperationalError as exc:
            if exc.args and exc.args[0] in _LOST:
                raise StreamLost(str(exc.args[-1])) from exc
            raise


class StreamHandler(Protocol):
    """What the stream needs from the converter (convert.BinlogConverter)."""

    only_events: list[type]

    def resume_gtid(self) -> str: ...

    def restart(self) -> None: ...

    def handle(self, event: Any) -> list[Any]: ...


@dataclass(slots=True)
class _Failure:
    error: CdcError


class BinlogStream:
    """The binlog, read on its own thread into a bounded queue of item lists."""

    def __init__(
        self,
        settings: MysqlSettings,
        handler: StreamHandler,
        *,
        server_id: int,
        flavor: str,
        only_schemas: list[str] | None = None,
        only_tables: list[str] | None = None,
        heartbeat_s: float = 5.0,
        max_reconnects: int = 5,
        queue_size: int = 64,
    ) -> None:
        self.settings = settings
        self.handler = handler
        self.server_id = server_id
        self.flavor = flavor
        self.only_schemas = only_schemas
        self.only_tables = only_tables
        self.heartbeat_s = heartbeat_s
        self.max_reconnects = max_reconnects
        # One producer (the binlog thread), one consumer (the reader's generator): cdc_logs.handoff's
        # deque wakes a side only when it waits, where queue.Queue took a lock and notified a condition
        # per row event (~7% of the reader in the profile, docs/benchmarks.md).
        self._queue: Handoff[list[Any] | _Failure] = Handoff(queue_size)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conns: list[pymysql.connections.Connection] = []
        self._lock = threading.Lock()

    # -- consumer side ---------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="binlog-stream", daemon=True)
        self._thread.start()

    def poll(self, timeout: float) -> list[Any] | None:
        """The next list of items, or None after `timeout`; raises the thread's CdcError."""
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        if isinstance(item, _Failure):
            raise item.error
        return item

    def stop(self) -> None:
        """Wake the blocked read and end the thread (safe from any thread)."""
        self._stop.set()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            sock = getattr(conn, "_sock", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def close(self, timeout: float = 5.0) -> None:
        self.stop()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    # -- worker side -----------------------------------------------------------------------------
    def _wrap(self, **kwargs: Any) -> pymysql.connections.Connection:
        if "db" in kwargs:  # the library still passes PyMySQL's deprecated alias
            kwargs["database"] = kwargs.pop("db")
        conn = _Connection(**kwargs)
        with self._lock:
            self._conns = [c for c in self._conns if c.open] + [conn]
        if self._stop.is_set():  # stop() ran while we were connecting: do not block in a read
            conn.close()
            raise StreamLost("stopping")
        return conn

    def _put(self, item: list[Any] | _Failure) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.2)
                return True
            except queue.Full:
                continue
        return False

    def _reader(self, gtid: str) -> Any:
        from pymysqlreplication import BinLogStreamReader

        conn = self.settings.kwargs(database=False)
        # Several heartbeat periods of silence mean the connection is dead (see the module doc).
        conn["read_timeout"] = max(10.0, self.heartbeat_s * 3)
        return BinLogStreamReader(
            connection_settings=conn,
            server_id=self.server_id,
            blocking=True,
            auto_position=gtid,
            is_mariadb=self.flavor == "mariadb",
            only_events=self.handler.only_events,
            only_schemas=self.only_schemas,
            only_tables=self.only_tables,
            slave_heartbeat=self.heartbeat_s,
            pymysql_wrapper=self._wrap,
            enable_logging=False,
        )

    def _run(self) -> None:
        attempt = 0
        while not self._stop.is_set():
            gtid = self.handler.resume_gtid()
            self.handler.restart()
            reader = self._reader(gtid)
            connected = time.monotonic()
            try:
                for event in reader:
                    items = self.handler.handle(event)
                    # The library's event and its packet wrapper refer to each other: a reference cycle
                    # per binlog event, left to the cyclic GC (~3 us per row in young collections that
                    # scan them). Handled, the event is done with its packet: reference counting frees both.
                    event.packet = None
                    if items and not self._put(items):
                        return
                    if self._stop.is_set():
                        return
                error: CdcError = classify(StreamLost("the server ended the binlog stream"), "binlog")
            except (StreamLost, OSError) as exc:
                error = classify(exc, f"binlog connection to {self.settings.describe()}")
            except pymysql.MySQLError as exc:
                error = classify(exc, f"binlog stream from {self.settings.describe()} at GTID {gtid!r}")
            except CdcError as exc:
                error = exc
            except Exception as exc:  # a decode bug must surface, not kill the thread silently
                error = CdcError(
                    ErrorKind.DECODE,
                    f"cannot decode a binlog event: {type(exc).__name__}: {exc}",
                    "rerun with --debug and report it with the server version",
                )
            finally:
                with contextlib.suppress(Exception):
                    reader.close()
            if self._stop.is_set():
                return
            if not error.retryable:
                self._put(_Failure(error))
                return
            # A connection that lived a while was healthy: start counting afresh.
            attempt = 1 if time.monotonic() - connected > 30 else attempt + 1
            if attempt > self.max_reconnects:
                self._put(_Failure(error))
                return
            delay = _RECONNECT.backoff(attempt)
            log.warning(
                "binlog connection lost, reconnecting", attempt=attempt, retry_in_s=delay, error=error.message
            )
            if self._stop.wait(delay):
                return


def settings_of(cfg: Any) -> MysqlSettings:
    """A `mysql`/`mariadb` source config's connection settings, from `dsn` or host/port/user/password
    (the password stays a secret). Here, not in config.py, so the doctor needs no config import."""
    import getpass
    from dataclasses import replace

    if cfg.dsn is not None:
        settings = parse_dsn(cfg.dsn.get_secret_value())
        return settings if settings.database or not cfg.database else replace(settings, database=cfg.database)
    return MysqlSettings(
        host=cfg.host,
        port=cfg.port,
        user=cfg.user or getpass.getuser(),
        password=cfg.password.get_secret_value() if cfg.password else "",
        database=cfg.database,
    )
