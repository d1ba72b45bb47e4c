"""DeviceTwin's durable state: upstream's ``device``, ``device_attr``, ``device_twin`` tables, plus ``twin_outbox``.

The tables live in edgecore's database file (``database.dataSource``, shared with MetaManager, which
owns the file's creation rules; this module only creates its own tables if missing). Column names are
upstream's, so an upstream edgecore.db opens. ``twin_outbox`` is ours: edge-to-cloud twin and state
reports that the cloud has not confirmed yet, resent until it does (they survive a restart).

Invariants:

- A twin change and the report it causes are written in one transaction: after a crash either both
  are on disk or neither (WAL, ``synchronous=FULL``).
- Rows are bounded: at most :data:`~kubeedge.kit.limits.TWIN_MAX_DEVICES` devices,
  :data:`~kubeedge.kit.limits.TWIN_MAX_PROPERTIES` twins per device,
  :data:`~kubeedge.kit.limits.TWIN_OUTBOX_MAX` outbox rows (the oldest are dropped, logged).

Synchronous and serialised by a lock; the trio layer calls it through ``trio.to_thread.run_sync``.
Database failures raise :class:`DeviceStoreError` naming the file.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import sqlalchemy as sa
from sqlalchemy import event, exc
from sqlalchemy.pool import StaticPool

from kubeedge.edge.devicetwin.twins import Twin, Version
from kubeedge.kit import limits, log

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

    return Twin(
        name=row.name,
        expected=row.expected,
        actual=row.actual,
        expected_ts=ts(row.expected_meta),
        actual_ts=ts(row.actual_meta),
        expected_version=version(row.expected_version),
        actual_version=version(row.actual_version),
        optional=bool(row.optional) if row.optional is not None else True,
        attr_type=row.attr_type or "string",
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
        """Open ``path`` (created owner-only if absent), switch it to WAL, create missing tables."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            try:
                os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            except FileExistsError:
                pass
            except OSError as e:
                raise DeviceStoreError(f"{path}: cannot create database file ({e.strerror})") from e
        engine = sa.create_engine(
            f"sqlite+pysqlite:///{path}",
            connect_args={"check_same_thread": False, "isolation_level": None},
            poolclass=StaticPool,
        )

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA busy_timeout=5000")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: sa.Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

        try:
            conn = engine.connect()
            with conn.begin():
                _md.create_all(conn, checkfirst=True)
        except (exc.DBAPIError, sqlite3.DatabaseError) as e:
            engine.dispose()
            raise DeviceStoreError(
                f"{path}: not a usable SQLite database ({e.__class__.__name__}: {e})"
            ) from e
        return cls(path, engine, conn)

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._conn.close()
            self._engine.dispose()

    @contextmanager
    def _tx(self) -> Iterator[sa.Connection]:
        with self._lock:
            try:
                with self._conn.begin():
                    yield self._conn
            except (exc.DBAPIError, sqlite3.DatabaseError) as e:
                raise DeviceStoreError(f"{self.path}: {e.__class__.__name__}: {e}") from e

    # --- devices --------------------------------------------------------------------------------------
    def devices(self) -> list[Device]:
        """Every device, by id."""
        with self._tx() as conn:
            rows = conn.execute(sa.select(device_table).order_by(device_table.c.id)).all()
        return [
            Device(r.id, r.name or "", r.description or "", r.state or "unknown", r.last_online or "")
            for r in rows
        ]

    def device(self, device_id: str) -> Device | None:
        """One device, or ``None``."""
        with self._tx() as conn:
            r = conn.execute(sa.select(device_table).where(device_table.c.id == device_id)).first()
        if r is None:
            return None
        return Device(r.id, r.name or "", r.description or "", r.state or "unknown", r.last_online or "")

    def put_device(self, device: Device) -> bool:
        """Insert or update the device's name/description (state kept); ``False`` if the table is full."""
        with self._tx() as conn:
            exists = conn.execute(sa.select(device_table.c.id).where(device_table.c.id == device.id)).first()
            if exists is not None:
                conn.execute(
                    device_table.update()
                    .where(device_table.c.id == device.id)
                    .values(name=device.name, description=device.description)
                )
                return True
            count = conn.execute(sa.select(sa.func.count()).select_from(device_table)).scalar_one()
            if count >= limits.TWIN_MAX_DEVICES:
                return False
            conn.execute(
                device_table.insert().values(
                    id=device.id,
                    name=device.name,
                    description=device.description,
                    state=device.state,
                    last_online=device.last_online,
                )
            )
            return True

    def remove_device(self, device_id: str) -> bool:
        """Delete the device with its attributes and twins; ``False`` if it did not exist."""
        with self._tx() as conn:
            gone = conn.execute(device_table.delete().where(device_table.c.id == device_id)).rowcount
            conn.execute(device_twin_table.delete().where(device_twin_table.c.deviceid == device_id))
            conn.execute(device_attr_table.delete().where(device_attr_table.c.deviceid == device_id))
        return bool(gone)

    def set_state(self, device_id: str, state: str, last_online: str | None, report: Report | None) -> None:
        """Store the device state (and ``last_online`` unless ``None``) and queue ``report``, atomically."""
        values: dict[str, str] = {"state": state}
        if last_online is not None:
            values["last_online"] = last_online
        with self._tx() as conn:
            conn.execute(device_table.update().where(device_table.c.id == device_id).values(**values))
            if report is not None:
                self._queue(conn, report)

    # --- twins ----------------------------------------------------------------------------------------
    def twins(self, device_id: str) -> dict[str, Twin]:
        """The device's twins by name."""
        with self._tx() as conn:
            rows = conn.execute(
                sa.select(device_twin_table).where(device_twin_table.c.deviceid == device_id)
            ).all()
        return {r.name: _twin_from_row(r) for r in rows}

    def write_twins(
        self, device_id: str, changed: Mapping[str, Twin | None], report: Report | None = None
    ) -> None:
        """Replace the changed twins (``None`` deletes) and queue ``report``, in one transaction."""
        with self._tx() as conn:
            if changed:
                conn.execute(
                    device_twin_table.delete().where(
                        device_twin_table.c.deviceid == device_id,
                        device_twin_table.c.name.in_(list(changed)),
                    )
                )
                rows = [_twin_row(device_id, t) for t in changed.values() if t is not None]
                if rows:
                    conn.execute(device_twin_table.insert(), rows)
            if report is not None:
                self._queue(conn, report)

    # --- outbox ---------------------------------------------------------------------------------------
    def _queue(self, conn: sa.Connection, report: Report) -> None:
        conn.execute(
            outbox_table.insert().values(
                msg_id=report.msg_id,
                resource=report.resource,
                operation=report.operation,
                content=json.dumps(report.content, separators=(",", ":")),
                created_ms=report.created_ms,
                sent_ms=report.sent_ms,
            )
        )
        count = conn.execute(sa.select(sa.func.count()).select_from(outbox_table)).scalar_one()
        if count > limits.TWIN_OUTBOX_MAX:
            oldest = (
                sa.select(outbox_table.c.seq)
                .order_by(outbox_table.c.seq)
                .limit(count - limits.TWIN_OUTBOX_MAX)
            )
            conn.execute(outbox_table.delete().where(outbox_table.c.seq.in_(oldest)))
            _log.warning(
                "twin outbox full: dropped oldest unconfirmed reports", dropped=count - limits.TWIN_OUTBOX_MAX
            )

    def pending(self, *, sent_before_ms: int, limit: int = 256) -> list[Report]:
        """Unconfirmed reports last sent before ``sent_before_ms`` (never-sent ones have 0), oldest first."""
        with self._tx() as conn:
            rows = conn.execute(
                sa.select(outbox_table)
                .where(outbox_table.c.sent_ms < sent_before_ms)
                .order_by(outbox_table.c.seq)
                .limit(limit)
            ).all()
        return [
            Report(r.msg_id, r.resource, r.operation, json.loads(r.content), r.created_ms, r.sent_ms)
            for r in rows
        ]

    def mark_sent(self, msg_ids: Sequence[str], now_ms: int) -> None:
        """Record that these reports were (re)sent at ``now_ms``."""
        if not msg_ids:
            return
        with self._tx() as conn:
            conn.execute(
                outbox_table.update().where(outbox_table.c.msg_id.in_(list(msg_ids))).values(sent_ms=now_ms)
            )

    def confirm(self, msg_id: str) -> bool:
        """Forget a report the cloud confirmed; ``False`` if it was not pending."""
        with self._tx() as conn:
            return bool(conn.execute(outbox_table.delete().where(outbox_table.c.msg_id == msg_id)).rowcount)

    def outbox_len(self) -> int:
        """How many reports wait for confirmation."""
        with self._tx() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(outbox_table)).scalar_one())
