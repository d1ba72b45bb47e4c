"""DeviceTwin's durable state: upstream's ``device``, ``device_attr``, ``device_twin`` tables, plus ``twin_outbox``.

The tables live in edgecore's database file (``database.dataSource``, shared with MetaManager; the
file's opening rules are :mod:`kubeedge.kit.sqlitefile`'s; this module only creates its own tables if
missing). Column names are
upstream's, so an upstream edgecore.db opens. ``twin_outbox`` is ours: edge-to-cloud twin and state
reports that the cloud has not confirmed yet, resent until it does (they survive a restart).

Invariants:

- A twin change and the report it causes are written in one transaction: after a crash either both
  are on disk or neither (WAL, ``synchronous=FULL``). :meth:`DeviceStore.apply` commits many such
  changes at once (group commit: one fsync for a burst of mapper updates).
- Rows are bounded: at most :data:`~kubeedge.kit.limits.TWIN_MAX_DEVICES` devices,
  :data:`~kubeedge.kit.limits.TWIN_MAX_PROPERTIES` twins per device,
  :data:`~kubeedge.kit.limits.TWIN_OUTBOX_MAX` outbox rows (the oldest are dropped, logged).

Synchronous and serialised by a lock; the trio layer calls it through ``trio.to_thread.run_sync``.
Database failures raise :class:`DeviceStoreError` naming the file.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import exc

from kubeedge.edge.devicetwin.twins import Twin, Version
from kubeedge.kit import limits, log, sqlitefile

_log = log.get(__name__)

_md = sa.MetaData()

device_table: Final = sa.Table(
    "device",
    _md,
    sa.Column("id", sa.String(512), primary_key=True),
    sa.Column("name", sa.String(256)),
    sa.Column("description", sa.String(1024)),
    sa.Column("state", sa.String(64)),
    sa.Column("last_online", sa.String(64)),
)
device_attr_table: Final = sa.Table(
    "device_attr",
    _md,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("deviceid", sa.String(512), index=True),
    sa.Column("name", sa.String(128)),
    sa.Column("description", sa.String(1024)),
    sa.Column("value", sa.String(512)),
    sa.Column("optional", sa.Boolean),
    sa.Column("attr_type", sa.String(32)),
    sa.Column("metadata", sa.Text),
)
device_twin_table: Final = sa.Table(
    "device_twin",
    _md,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("deviceid", sa.String(512), index=True),
    sa.Column("name", sa.String(128)),
    sa.Column("description", sa.String(1024)),
    sa.Column("expected", sa.String(512)),
    sa.Column("actual", sa.String(512)),
    sa.Column("expected_meta", sa.Text),
    sa.Column("actual_meta", sa.Text),
    sa.Column("expected_version", sa.Text),
    sa.Column("actual_version", sa.Text),
    sa.Column("optional", sa.Boolean),
    sa.Column("attr_type", sa.String(32)),
    sa.Column("metadata", sa.Text),
)
outbox_table: Final = sa.Table(
    "twin_outbox",
    _md,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("msg_id", sa.String(64), unique=True, nullable=False),
    sa.Column("resource", sa.String(limits.MAX_RESOURCE_CHARS), nullable=False),
    sa.Column("operation", sa.String(32), nullable=False),
    sa.Column("content", sa.Text, nullable=False),
    sa.Column("created_ms", sa.BigInteger, nullable=False),
    sa.Column("sent_ms", sa.BigInteger, nullable=False),
)


class DeviceStoreError(Exception):
    """The database could not be read or written; names the file."""


@dataclass(frozen=True, slots=True)
class Device:
    """One ``device`` row."""

    id: str
    name: str
    description: str = ""
    state: str = "unknown"
    last_online: str = ""


@dataclass(frozen=True, slots=True)
class Report:
    """One unconfirmed edge-to-cloud report (``content`` is the JSON value to send)."""

    msg_id: str
    resource: str
    operation: str
    content: Any
    created_ms: int
    sent_ms: int = 0


_DEVICE_COLS: Final = "id, name, description, state, last_online"
_TWIN_COLS: Final = "name, expected, actual, expected_meta, actual_meta, expected_version, actual_version, optional, attr_type"
_SQL_INSERT_TWIN: Final = (
    "INSERT INTO device_twin (deviceid, name, description, expected, actual, expected_meta, actual_meta, "
    "expected_version, actual_version, optional, attr_type, metadata) VALUES (:deviceid, :name, :description, "
    ":expected, :actual, :expected_meta, :actual_meta, :expected_version, :actual_version, :optional, "
    ":attr_type, :metadata)"
)


def _device(r: Any) -> Device:
    return Device(r[0], r[1] or "", r[2] or "", r[3] or "unknown", r[4] or "")


@dataclass
class Batch:
    """Writes committed together by :meth:`DeviceStore.apply`, in this order."""

    twins: list[tuple[str, Mapping[str, Twin | None], Report | None]] = field(default_factory=list)
    """``(device_id, {name: twin or None to delete}, report to queue)``."""
    states: list[tuple[str, str, str | None, Report]] = field(default_factory=list)
    """``(device_id, state, last_online or None to keep, report to queue)``."""
    confirms: list[str] = field(default_factory=list)
    """Report ids the cloud confirmed."""

    def __bool__(self) -> bool:
        return bool(self.twins or self.states or self.confirms)


def _twin_from_row(row: Any) -> Twin:
    def version(text: str | None) -> Version:
        try:
            return Version.from_json(json.loads(text), "stored") or Version() if text else Version()
        except (ValueError, TypeError):
            return Version()

    def ts(text: str | None) -> int:
        try:
            return int(json.loads(text).get("timestamp", 0)) if text else 0
        except (ValueError, TypeError, AttributeError):
            return 0

    (
        name,
        expected,
        actual,
        expected_meta,
        actual_meta,
        expected_version,
        actual_version,
        optional,
        attr_type,
    ) = row
    return Twin(
        name=name,
        expected=expected,
        actual=actual,
        expected_ts=ts(expected_meta),
        actual_ts=ts(actual_meta),
        expected_version=version(expected_version),
        actual_version=version(actual_version),
        optional=bool(optional) if optional is not None else True,
        attr_type=attr_type or "string",
    )


def _twin_row(device_id: str, t: Twin) -> dict[str, Any]:
    return {
        "deviceid": device_id,
        "name": t.name,
        "description": "",
        "expected": t.expected,
        "actual": t.actual,
        "expected_meta": json.dumps({"timestamp": t.expected_ts}),
        "actual_meta": json.dumps({"timestamp": t.actual_ts}),
        "expected_version": json.dumps(t.expected_version.to_json()),
        "actual_version": json.dumps(t.actual_version.to_json()),
        "optional": t.optional,
        "attr_type": t.attr_type,
        "metadata": json.dumps({"type": t.attr_type}),
    }


class DeviceStore:
    """The device tables of edgecore.db. Synchronous; one connection guarded by a lock."""

    def __init__(self, path: Path, engine: sa.Engine, conn: sa.Connection) -> None:
        self.path = path
        """The database file."""
        self._engine = engine
        self._conn = conn
        self._lock = threading.Lock()

    @classmethod
    def open(cls, path: str | Path) -> DeviceStore:
        """Open ``path`` as :mod:`kubeedge.kit.sqlitefile` does (owner-only, WAL, checks), create missing tables."""
        path, engine, conn = sqlitefile.open_database(
            path, max_db_bytes=limits.META_MAX_DB_BYTES, error=DeviceStoreError
        )
        try:
            with conn.begin():
                _md.create_all(conn, checkfirst=True)
        except (exc.DBAPIError, sqlite3.DatabaseError) as e:
            conn.close()
            engine.dispose()
            raise DeviceStoreError(f"{path}: not a usable SQLite database ({sqlitefile.reason(e)})") from e
        return cls(path, engine, conn)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()
            self._engine.dispose()

    # Statements run as plain SQL on the driver connection: building Core statements costs more than
    # the row work, and reads must not take the write lock (SQLAlchemy would wrap them in BEGIN IMMEDIATE).
    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """A write transaction (BEGIN IMMEDIATE ... COMMIT, rolled back on error)."""
        with self._lock:
            raw = self._raw()
            try:
                raw.execute("BEGIN IMMEDIATE")
                try:
                    yield raw
                except BaseException:
                    raw.execute("ROLLBACK")
                    raise
                raw.execute("COMMIT")
            except sqlite3.DatabaseError as e:
                raise DeviceStoreError(f"{self.path}: {e.__class__.__name__}: {e}") from e

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        with self._lock:
            try:
                return self._raw().execute(sql, params).fetchall()
            except sqlite3.DatabaseError as e:
                raise DeviceStoreError(f"{self.path}: {e.__class__.__name__}: {e}") from e

    def _raw(self) -> sqlite3.Connection:
        raw = self._conn.connection.driver_connection
        assert isinstance(raw, sqlite3.Connection)
        return raw

    # --- devices --------------------------------------------------------------------------------------
    def devices(self) -> list[Device]:
        """Every device, by id."""
        return [_device(r) for r in self._read(f"SELECT {_DEVICE_COLS} FROM device ORDER BY id")]

    def device(self, device_id: str) -> Device | None:
        """One device, or ``None``."""
        rows = self._read(f"SELECT {_DEVICE_COLS} FROM device WHERE id = ?", (device_id,))
        return _device(rows[0]) if rows else None

    def put_device(self, device: Device) -> bool:
        """Insert or update the device's name/description (state kept); ``False`` if the table is full."""
        with self._tx() as conn:
            if conn.execute("SELECT 1 FROM device WHERE id = ?", (device.id,)).fetchone() is not None:
                conn.execute(
                    "UPDATE device SET name = ?, description = ? WHERE id = ?",
                    (device.name, device.description, device.id),
                )
                return True
            if conn.execute("SELECT count(*) FROM device").fetchone()[0] >= limits.TWIN_MAX_DEVICES:
                return False
            conn.execute(
                f"INSERT INTO device ({_DEVICE_COLS}) VALUES (?, ?, ?, ?, ?)",
                (device.id, device.name, device.description, device.state, device.last_online),
            )
            return True

    def remove_device(self, device_id: str) -> bool:
        """Delete the device with its attributes and twins; ``False`` if it did not exist."""
        with self._tx() as conn:
            gone = conn.execute("DELETE FROM device WHERE id = ?", (device_id,)).rowcount
            conn.execute("DELETE FROM device_twin WHERE deviceid = ?", (device_id,))
            conn.execute("DELETE FROM device_attr WHERE deviceid = ?", (device_id,))
        return bool(gone)

    # --- twins ----------------------------------------------------------------------------------------
    def twins(self, device_id: str) -> dict[str, Twin]:
        """The device's twins by name."""
        rows = self._read(f"SELECT {_TWIN_COLS} FROM device_twin WHERE deviceid = ?", (device_id,))
        return {r[0]: _twin_from_row(r) for r in rows}

    def apply(self, batch: Batch) -> int:
        """Apply a whole :class:`Batch` in one transaction (group commit); returns how many reports it confirmed."""
        with self._tx() as conn:
            for device_id, changed, report in batch.twins:
                for name, t in changed.items():
                    conn.execute("DELETE FROM device_twin WHERE deviceid = ? AND name = ?", (device_id, name))
                    if t is not None:
                        conn.execute(_SQL_INSERT_TWIN, _twin_row(device_id, t))
                if report is not None:
                    self._queue(conn, report)
            for device_id, state, last_online, report in batch.states:
                conn.execute(
                    "UPDATE device SET state = ?, last_online = coalesce(?, last_online) WHERE id = ?",
                    (state, last_online, device_id),
                )
                self._queue(conn, report)
            confirmed = 0
            for msg_id in batch.confirms:
                confirmed += conn.execute("DELETE FROM twin_outbox WHERE msg_id = ?", (msg_id,)).rowcount
            return confirmed

    # --- outbox ---------------------------------------------------------------------------------------
    def _queue(self, conn: sqlite3.Connection, report: Report) -> None:
        conn.execute(
            "INSERT INTO twin_outbox (msg_id, resource, operation, content, created_ms, sent_ms) VALUES (?, ?, ?, ?, ?, ?)",
            (
                report.msg_id,
                report.resource,
                report.operation,
                json.dumps(report.content, separators=(",", ":")),
                report.created_ms,
                report.sent_ms,
            ),
        )
        count = conn.execute("SELECT count(*) FROM twin_outbox").fetchone()[0]
        if count > limits.TWIN_OUTBOX_MAX:
            extra = count - limits.TWIN_OUTBOX_MAX
            conn.execute(
                "DELETE FROM twin_outbox WHERE seq IN (SELECT seq FROM twin_outbox ORDER BY seq LIMIT ?)",
                (extra,),
            )
            _log.warning("twin outbox full: dropped oldest unconfirmed reports", dropped=extra)

    def pending(self, *, sent_before_ms: int, limit: int = 256) -> list[Report]:
        """Unconfirmed reports last sent before ``sent_before_ms`` (never-sent ones have 0), oldest first."""
        rows = self._read(
            "SELECT msg_id, resource, operation, content, created_ms, sent_ms FROM twin_outbox "
            "WHERE sent_ms < ? ORDER BY seq LIMIT ?",
            (sent_before_ms, limit),
        )
        return [Report(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5]) for r in rows]

    def mark_sent(self, msg_ids: Sequence[str], now_ms: int) -> None:
        """Record that these reports were (re)sent at ``now_ms``."""
        if not msg_ids:
            return
        with self._tx() as conn:
            conn.executemany(
                "UPDATE twin_outbox SET sent_ms = ? WHERE msg_id = ?", [(now_ms, m) for m in msg_ids]
            )

    def outbox_len(self) -> int:
        """How many reports wait for confirmation."""
        return int(self._read("SELECT count(*) FROM twin_outbox")[0][0])
