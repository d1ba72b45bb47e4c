"""Opening edgecore's SQLite database file the one way every edge store does.

Owns the file's rules, shared by MetaManager's store, DeviceTwin's store and ServiceBus (they open the same
``database.dataSource``): checked before opening (a directory, a non-SQLite header or a file above
``max_db_bytes`` is refused), created owner-only from the first byte (it holds Secrets and tokens; SQLite
gives its ``-wal`` and ``-shm`` files the database file's mode), and opened as one SQLAlchemy connection
with ``busy_timeout`` 5 s, ``BEGIN IMMEDIATE`` transactions, ``PRAGMA quick_check``, an application id of
0 (upstream's) or :data:`APPLICATION_ID`, WAL journal, ``synchronous=FULL`` and ``max_page_count`` for the
size bound.

Failures raise the caller's error type with a message naming the file and what was wrong; nothing is
left open after a failure. Schema (tables, columns) stays with each store.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.pool import StaticPool

APPLICATION_ID: Final = 0x4B45_4D4D
"""``PRAGMA application_id`` stamped on databases we create ("KEMM"); 0 (upstream's) is accepted too."""

SQLITE_MAGIC: Final = b"SQLite format 3\x00"
"""The first 16 bytes of every SQLite 3 database file."""

BUSY_TIMEOUT_MS: Final = 5000
"""How long a statement waits for another connection's lock (the stores share one file)."""


def reason(e: exc.DBAPIError | sqlite3.DatabaseError) -> str:
    """The driver's message of a database error (SQLAlchemy wraps it)."""
    return str(getattr(e, "orig", None) or e)


def precheck_file(path: Path, max_db_bytes: int, error: type[Exception]) -> None:
    """Refuse, before SQLite touches it, a path that is a directory, not SQLite, or too large."""
    if path.is_dir():
        raise error(f"{path}: is a directory, expected a SQLite database file")
    if not path.exists():
        return
    try:
        size = path.stat().st_size
        with path.open("rb") as f:
            head = f.read(len(SQLITE_MAGIC))
    except OSError as e:
        raise error(f"{path}: cannot read database file ({e.strerror})") from e
    if size == 0:
        return
    if head != SQLITE_MAGIC:
        raise error(f"{path}: not a SQLite database (foreign or corrupt file header)")
    if size > max_db_bytes:
        raise error(f"{path}: database is {size} bytes, above the {max_db_bytes}-byte bound")


def create_private(path: Path, error: type[Exception]) -> None:
    """Create ``path`` (and its folder) owner-only if it does not exist yet."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        return
    try:
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        pass
    except OSError as e:
        raise error(f"{path}: cannot create database file ({e.strerror})") from e


def _pragma(conn: sa.Connection, sql: str) -> Any:
    # On the driver connection: SQLAlchemy would wrap the pragma in our BEGIN IMMEDIATE, and
    # journal_mode cannot change inside a transaction.
    raw = conn.connection.driver_connection
    assert raw is not None
    cur = raw.cursor()
    try:
        row = cur.execute(sql).fetchone()
        return None if row is None else row[0]
    finally:
        cur.close()


def _configure(conn: sa.Connection, path: Path, max_db_bytes: int, error: type[Exception]) -> None:
    check = _pragma(conn, "PRAGMA quick_check")
    if check != "ok":
        raise error(f"{path}: database is corrupt (quick_check: {check})")
    app_id = _pragma(conn, "PRAGMA application_id")
    if app_id not in (0, APPLICATION_ID):
        raise error(f"{path}: foreign SQLite database (application_id {app_id:#x}), not edgecore's")
    mode = _pragma(conn, "PRAGMA journal_mode=WAL")
    if str(mode).lower() != "wal":
        raise error(f"{path}: cannot switch to WAL journal (got {mode})")
    _pragma(conn, "PRAGMA synchronous=FULL")
    page_size = int(_pragma(conn, "PRAGMA page_size") or 4096)
    _pragma(conn, f"PRAGMA max_page_count={max(1, max_db_bytes // page_size)}")


def stamp_application_id(conn: sa.Connection) -> None:
    """Mark a database we created as edgecore's (call inside the transaction that creates its tables)."""
    conn.exec_driver_sql(f"PRAGMA application_id={APPLICATION_ID}")


def open_database(
    path: str | Path, *, max_db_bytes: int, error: type[Exception]
) -> tuple[Path, sa.Engine, sa.Connection]:
    """Check, create and open the database file; returns ``(path, engine, connection)``.

    The connection is meant to be used from one thread at a time (the stores serialise with a lock)
    and is not bound to the thread that opened it. Raises ``error`` naming the file.
    """
    path = Path(path)
    precheck_file(path, max_db_bytes, error)
    create_private(path, error)
    engine = sa.create_engine(
        f"sqlite+pysqlite:///{path}",
        # One connection, used from trio's worker threads one at a time (serialised by the store's lock).
        connect_args={"check_same_thread": False, "isolation_level": None},
        poolclass=StaticPool,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        # IMMEDIATE takes the write lock up front so a batch never fails half-way on lock upgrade.
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    try:
        conn = engine.connect()
        try:
            _configure(conn, path, max_db_bytes, error)
        except BaseException:
            conn.close()
            raise
    except (exc.DBAPIError, sqlite3.DatabaseError) as e:
        engine.dispose()
        raise error(f"{path}: not a usable SQLite database ({reason(e)})") from e
    except BaseException:
        engine.dispose()
        raise
    return path, engine, conn
