"""MetaManager's durable store: edgecore.db through SQLAlchemy Core on SQLite.

Owns the upstream tables ``meta(key, type, value)``, ``meta_v2``, ``sub_topics`` and
``target_urls`` (created compatible with an upstream edgecore.db), plus two of our own:
``meta_version`` (the resourceVersion last applied per key, and delete tombstones) and
``outbox`` (edge-to-cloud messages waiting for the link).

Invariants:

- Durability: WAL with ``synchronous=FULL``; :meth:`MetaStore.apply` runs a whole batch in
  one ``BEGIN IMMEDIATE`` transaction, so when it returns every write in it is on disk and
  the caller may ack all of them (group commit).
- Ordering: an upsert whose resourceVersion (decimal, compared as uint64) is not newer than
  the stored one is discarded (:attr:`Outcome.STALE`); a delete leaves a tombstone carrying
  the newest RV seen, so a late older insert cannot resurrect the object until
  :meth:`MetaStore.compact_tombstones` forgets it. Unversioned writes always apply.
- A pod delete removes the stored pod only when its value contains the pod UID.
- Bounds from :mod:`kubeedge.kit.limits`: key/type/value sizes (checked when an op is built),
  file size (SQLite ``max_page_count``), rows and bytes per type lookup, outbox length.

The file's opening rules (size and header checks, owner-only creation, pragmas) are
:mod:`kubeedge.kit.sqlitefile`'s, shared with DeviceTwin's store.

The class is synchronous and thread-confined by a lock; the trio layer calls it through
``trio.to_thread.run_sync``. Failures raise :class:`StoreError` (always naming the file):
not a SQLite file, corrupt pages, a foreign schema, a full database.
"""

from __future__ import annotations

import enum
import json
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import sqlalchemy as sa
from sqlalchemy import exc
from sqlalchemy.dialects import sqlite

from kubeedge.kit import limits, sqlitefile
from kubeedge.proto.message import Header, Message, Route

DEFAULT_DATA_SOURCE: Final = "/var/lib/kubeedge/edgecore.db"
"""Upstream ``database.dataSource`` default."""

APPLICATION_ID: Final = sqlitefile.APPLICATION_ID
"""``PRAGMA application_id`` we stamp on databases we create ("KEMM"); 0 (upstream's) is accepted too."""

_UINT64_MAX: Final = 2**64 - 1

_md = sa.MetaData()

meta_table: Final = sa.Table(
    "meta",
    _md,
    sa.Column("key", sa.String(limits.META_MAX_KEY_CHARS), primary_key=True),
    sa.Column("type", sa.String(limits.META_MAX_TYPE_CHARS), nullable=False),
    sa.Column("value", sa.Text, nullable=False),
)
meta_v2_table: Final = sa.Table(
    "meta_v2",
    _md,
    sa.Column("key", sa.String(limits.META_MAX_KEY_CHARS), primary_key=True),
    # Upstream's column names (beego ORM: no underscores), so an upstream edgecore.db opens as is.
    sa.Column("groupversionresource", sa.String(256)),
    sa.Column("namespace", sa.String(256)),
    sa.Column("name", sa.String(256)),
    sa.Column("resourceversion", sa.BigInteger),
    sa.Column("value", sa.Text),
)
sub_topics_table: Final = sa.Table("sub_topics", _md, sa.Column("topic", sa.String(256), primary_key=True))
target_urls_table: Final = sa.Table("target_urls", _md, sa.Column("url", sa.String(2048), primary_key=True))
meta_version_table: Final = sa.Table(
    "meta_version",
    _md,
    sa.Column("key", sa.String(limits.META_MAX_KEY_CHARS), primary_key=True),
    sa.Column("resource_version", sa.String(20), nullable=False),
    sa.Column("tombstone", sa.Boolean, nullable=False),
    sa.Column("updated_ms", sa.BigInteger, nullable=False),
)
outbox_table: Final = sa.Table(
    "outbox",
    _md,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("supersede_key", sa.String(300), unique=True, nullable=True),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("queued_ms", sa.BigInteger, nullable=False),
)

_SQL_GET_VERSION: Final = "SELECT resource_version FROM meta_version WHERE key = ?"
_SQL_SET_VERSION: Final = (
    "INSERT INTO meta_version (resource_version, tombstone, updated_ms, key) VALUES (?, ?, ?, ?) "
    "ON CONFLICT (key) DO UPDATE SET resource_version = excluded.resource_version, "
    "tombstone = excluded.tombstone, updated_ms = excluded.updated_ms"
)
_SQL_UPSERT_META: Final = (
    "INSERT INTO meta (key, type, value) VALUES (?, ?, ?) "
    "ON CONFLICT (key) DO UPDATE SET type = excluded.type, value = excluded.value"
)
_SQL_UPSERT_V2: Final = (
    "INSERT INTO meta_v2 (key, groupversionresource, namespace, name, resourceversion, value) "
    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (key) DO UPDATE SET groupversionresource = excluded.groupversionresource, "
    "namespace = excluded.namespace, name = excluded.name, resourceversion = excluded.resourceversion, "
    "value = excluded.value"
)
_SQL_DELETE_V2: Final = "DELETE FROM meta_v2 WHERE key = ?"
_SQL_GET_VALUE: Final = "SELECT value FROM meta WHERE key = ?"
_SQL_DELETE_META: Final = "DELETE FROM meta WHERE key = ?"

_EXPECTED_COLUMNS: Final = {t.name: {c.name for c in t.columns} for t in _md.sorted_tables}


class StoreError(Exception):
    """The database file cannot be used: the message names the file and what is wrong with it."""


class StoreFullError(StoreError):
    """The database reached its size bound (:data:`~kubeedge.kit.limits.META_MAX_DB_BYTES`) or the disk is full."""


class Outcome(enum.StrEnum):
    """What a write did."""

    APPLIED = "applied"
    """Stored (or deleted) as asked."""
    STALE = "stale"
    """Discarded: the store holds the same or a newer resourceVersion (or a newer tombstone)."""
    UID_MISMATCH = "uid-mismatch"
    """Pod delete skipped: the stored pod has a different UID (the name was reused)."""


def parse_rv(rv: str) -> int:
    """A resourceVersion as an integer: decimal digits within uint64, else :class:`ValueError`."""
    if not rv or len(rv) > 20 or not rv.isascii() or not rv.isdecimal():
        raise ValueError(f"resourceVersion {rv[:40]!r} is not a decimal uint64")
    value = int(rv)
    if value > _UINT64_MAX:
        raise ValueError(f"resourceVersion {rv!r} exceeds uint64")
    return value


def _check_key(key: str, what: str = "key") -> None:
    if not key or len(key) > limits.META_MAX_KEY_CHARS:
        raise ValueError(f"meta {what} must be 1..{limits.META_MAX_KEY_CHARS} characters, got {len(key)}")


@dataclass(frozen=True, slots=True)
class MetaV2Ref:
    """Where an object also lives in upstream's ``meta_v2`` table (read by MetaServer)."""

    key: str
    """``/<group>/<version>/<resource>/<namespace>/<name>`` (group ``core`` for the core API)."""
    group_version_resource: str
    """Go's ``GroupVersionResource.String()``, e.g. ``/v1, Resource=pods``."""
    namespace: str
    name: str


@dataclass(frozen=True, slots=True)
class Upsert:
    """Insert or replace ``key`` unless the store holds a newer resourceVersion."""

    key: str
    type: str
    value: str
    resource_version: str = ""
    """Decimal uint64 RV, or empty for an unversioned write (always applies)."""
    v2: MetaV2Ref | None = None
    """Also mirror the object into ``meta_v2`` when applied."""

    def __post_init__(self) -> None:
        _check_key(self.key)
        if not self.type or len(self.type) > limits.META_MAX_TYPE_CHARS:
            raise ValueError(
                f"meta type must be 1..{limits.META_MAX_TYPE_CHARS} characters: {self.type[:40]!r}"
            )
        if len(self.value) > limits.META_MAX_VALUE_BYTES or (
            len(self.value.encode()) > limits.META_MAX_VALUE_BYTES
        ):
            raise ValueError(f"value of {self.key!r} exceeds {limits.META_MAX_VALUE_BYTES} bytes")
        if self.resource_version:
            parse_rv(self.resource_version)


@dataclass(frozen=True, slots=True)
class Delete:
    """Delete ``key`` (and ``also_delete`` keys), leaving a tombstone with the newest RV seen."""

    key: str
    resource_version: str = ""
    """RV of the delete; a delete older than the stored object is discarded."""
    uid: str = ""
    """For pods: delete only when the stored value contains this UID (empty: no check)."""
    also_delete: tuple[str, ...] = ()
    """Keys removed together with ``key`` when it is deleted (the pod's ``podpatch`` key)."""
    v2: MetaV2Ref | None = None
    """Also remove the object's ``meta_v2`` row when applied."""

    def __post_init__(self) -> None:
        _check_key(self.key)
        for extra in self.also_delete:
            _check_key(extra, "also_delete key")
        if self.resource_version:
            parse_rv(self.resource_version)


Write = Upsert | Delete


def message_to_record(msg: Message) -> str:
    """The outbox's own JSON record of a message (all header fields kept; not the wire codec)."""
    h, r = msg.header, msg.route
    return json.dumps(
        {
            "header": {
                "msg_id": h.msg_id,
                "timestamp": h.timestamp,
                "parent_msg_id": h.parent_msg_id,
                "resourceversion": h.resource_version,
                "sync": h.sync,
                "type": h.message_type,
            },
            "route": {
                "source": r.source,
                "group": r.group,
                "operation": r.operation,
                "resource": r.resource,
                "destination": r.destination,
            },
            "content": msg.content,
        },
        separators=(",", ":"),
    )


def message_from_record(record: str) -> Message:
    """Inverse of :func:`message_to_record`; :class:`ValueError` on a malformed record."""
    try:
        data = json.loads(record)
        h, r = data["header"], data["route"]
        return Message(
            Header(
                msg_id=str(h["msg_id"]),
                timestamp=int(h["timestamp"]),
                parent_msg_id=str(h.get("parent_msg_id", "")),
                resource_version=str(h.get("resourceversion", "")),
                sync=bool(h.get("sync", False)),
                message_type=str(h.get("type", "")),
            ),
            Route(
                **{k: str(r.get(k, "")) for k in ("source", "group", "operation", "resource", "destination")}
            ),
            data.get("content"),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise ValueError(f"malformed outbox record: {e}") from e


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """One queued edge-to-cloud message; ``seq`` orders the drain."""

    seq: int
    message: Message


class MetaStore:
    """edgecore.db: idempotent, RV-ordered upserts and deletes, lookups, outbox. Synchronous; one connection."""

    def __init__(self, path: Path, engine: sa.Engine, conn: sa.Connection) -> None:
        self.path = path
        """The database file."""
        self._engine = engine
        self._conn = conn
        self._lock = threading.Lock()

    # --- opening ------------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, *, max_db_bytes: int = limits.META_MAX_DB_BYTES) -> MetaStore:
        """Open (creating if absent) the database at ``path`` and check that it is ours and healthy.

        Raises :class:`StoreError` naming ``path`` when the file is not SQLite, fails
        ``PRAGMA quick_check``, carries a foreign application id or tables with other columns, or
        is larger than ``max_db_bytes``.
        """
        path, engine, conn = sqlitefile.open_database(path, max_db_bytes=max_db_bytes, error=StoreError)
        try:
            store = cls(path, engine, conn)
            store._setup()
        except (exc.DBAPIError, sqlite3.DatabaseError) as e:
            conn.close()
            engine.dispose()
            raise StoreError(f"{path}: not a usable SQLite database ({sqlitefile.reason(e)})") from e
        except BaseException:
            conn.close()
            engine.dispose()
            raise
        return store

    def _setup(self) -> None:
        with self._conn.begin():
            inspector = sa.inspect(self._conn)
            existing = set(inspector.get_table_names())
            for name, expected in _EXPECTED_COLUMNS.items():
                if name in existing:
                    have = {col["name"] for col in inspector.get_columns(name)}
                    if not expected <= have:
                        raise StoreError(
                            f"{self.path}: foreign schema: table {name!r} has columns {sorted(have)}, "
                            f"expected {sorted(expected)}"
                        )
            if not existing:
                sqlitefile.stamp_application_id(self._conn)
            _md.create_all(self._conn, checkfirst=True)

    def close(self) -> None:
        """Close the connection (a checkpoint happens when the last connection closes)."""
        with self._lock:
            self._conn.close()
            self._engine.dispose()

    def __enter__(self) -> MetaStore:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- writes ---------------------------------------------------------------------------------------
    def apply(self, writes: Sequence[Write], *, now_ms: int) -> list[Outcome]:
        """Apply ``writes`` in order in one transaction; when this returns they are durable.

        Returns one :class:`Outcome` per write. On any database failure nothing is applied and
        :class:`StoreError` is raised (the caller must not ack any of them).
        """
        with self._lock, self._translate(), self._conn.begin():
            return [self._apply_one(w, now_ms) for w in writes]

    def upsert(self, key: str, type_: str, value: str, *, resource_version: str = "", now_ms: int) -> Outcome:
        """One :class:`Upsert` in its own transaction."""
        return self.apply([Upsert(key, type_, value, resource_version)], now_ms=now_ms)[0]

    def delete(self, key: str, *, resource_version: str = "", uid: str = "", now_ms: int) -> Outcome:
        """One :class:`Delete` in its own transaction."""
        return self.apply([Delete(key, resource_version, uid)], now_ms=now_ms)[0]

    # The per-write statements below run through exec_driver_sql: building and cache-keying Core
    # statements costs ~0.5 ms each, more than the row work itself, and this is the ack path.
    def _version(self, key: str) -> int | None:
        row = self._conn.exec_driver_sql(_SQL_GET_VERSION, (key,)).first()
        return parse_rv(row[0]) if row is not None and row[0] else None

    def _set_version(self, key: str, rv: int | None, tombstone: bool, now_ms: int) -> None:
        self._conn.exec_driver_sql(
            _SQL_SET_VERSION, ("" if rv is None else str(rv), int(tombstone), now_ms, key)
        )

    def _apply_one(self, w: Write, now_ms: int) -> Outcome:
        stored_rv = self._version(w.key)
        incoming = parse_rv(w.resource_version) if w.resource_version else None
        if isinstance(w, Upsert):
            if incoming is not None and stored_rv is not None and incoming <= stored_rv:
                return Outcome.STALE
            self._conn.exec_driver_sql(_SQL_UPSERT_META, (w.key, w.type, w.value))
            if w.v2 is not None:
                r = w.v2
                # meta_v2.resourceversion is an integer column; a uint64 beyond int64 is kept as text.
                v2_rv: int | str = (
                    incoming if incoming is not None and incoming < 2**63 else w.resource_version
                )
                self._conn.exec_driver_sql(
                    _SQL_UPSERT_V2,
                    (r.key, r.group_version_resource, r.namespace, r.name, v2_rv or 0, w.value),
                )
            # An unversioned write keeps the RV it replaces, so older versioned messages still lose.
            self._set_version(w.key, incoming if incoming is not None else stored_rv, False, now_ms)
            return Outcome.APPLIED
        if incoming is not None and stored_rv is not None and incoming < stored_rv:
            return Outcome.STALE
        if w.uid:
            row = self._conn.exec_driver_sql(_SQL_GET_VALUE, (w.key,)).first()
            if row is not None and w.uid not in row[0]:
                return Outcome.UID_MISMATCH
        for key in (w.key, *w.also_delete):
            self._conn.exec_driver_sql(_SQL_DELETE_META, (key,))
        if w.v2 is not None:
            self._conn.exec_driver_sql(_SQL_DELETE_V2, (w.v2.key,))
        known = [x for x in (incoming, stored_rv) if x is not None]
        self._set_version(w.key, max(known) if known else None, True, now_ms)
        return Outcome.APPLIED

    def compact_tombstones(self, *, older_than_ms: int) -> int:
        """Forget tombstones written before ``older_than_ms``; returns how many were dropped."""
        with self._lock, self._translate(), self._conn.begin():
            res = self._conn.execute(
                sa.delete(meta_version_table).where(
                    meta_version_table.c.tombstone.is_(True), meta_version_table.c.updated_ms < older_than_ms
                )
            )
            return int(res.rowcount)

    # --- reads ----------------------------------------------------------------------------------------
    def get(self, key: str) -> str | None:
        """The stored value of ``key`` (content JSON), or None."""
        with self._lock, self._translate(), self._conn.begin():
            return self._conn.execute(sa.select(meta_table.c.value).where(meta_table.c.key == key)).scalar()

    def resource_version(self, key: str) -> tuple[str, bool]:
        """``(rv, tombstone)`` recorded for ``key``; ``("", False)`` when nothing is known."""
        with self._lock, self._translate(), self._conn.begin():
            row = self._conn.execute(
                sa.select(meta_version_table.c.resource_version, meta_version_table.c.tombstone).where(
                    meta_version_table.c.key == key
                )
            ).first()
            return ("", False) if row is None else (str(row[0]), bool(row[1]))

    def list_type(self, namespace: str, type_: str) -> list[str]:
        """Values of every ``<namespace>/<type_>/<name>`` key, ordered by key.

        Raises :class:`StoreError` past :data:`~kubeedge.kit.limits.META_MAX_QUERY_ROWS` rows or
        :data:`~kubeedge.kit.limits.META_MAX_QUERY_BYTES` bytes.
        """
        prefix = f"{namespace}/{type_}/"
        # '/' + 1 == '0': the half-open key range is exactly the prefix, and uses the primary key index.
        upper = f"{namespace}/{type_}0"
        q = (
            sa.select(meta_table.c.value)
            .where(meta_table.c.key >= prefix, meta_table.c.key < upper, meta_table.c.type == type_)
            .order_by(meta_table.c.key)
            .limit(limits.META_MAX_QUERY_ROWS + 1)
        )
        with self._lock, self._translate(), self._conn.begin():
            values = list(self._conn.execute(q).scalars())
        if len(values) > limits.META_MAX_QUERY_ROWS:
            raise StoreError(f"{self.path}: lookup {prefix}* exceeds {limits.META_MAX_QUERY_ROWS} rows")
        if sum(len(v) for v in values) > limits.META_MAX_QUERY_BYTES:
            raise StoreError(f"{self.path}: lookup {prefix}* exceeds {limits.META_MAX_QUERY_BYTES} bytes")
        return values

    def get_v2(self, v2_key: str) -> tuple[str, str] | None:
        """``(groupversionresource, value)`` of a ``meta_v2`` row, or None."""
        with self._lock, self._translate(), self._conn.begin():
            row = self._conn.execute(
                sa.select(meta_v2_table.c.groupversionresource, meta_v2_table.c.value).where(
                    meta_v2_table.c.key == v2_key
                )
            ).first()
            return None if row is None else (str(row[0]), str(row[1]))

    def keys(self) -> list[str]:
        """Every key in ``meta`` (diagnostics and tests; bounded by the database size)."""
        with self._lock, self._translate(), self._conn.begin():
            return list(self._conn.execute(sa.select(meta_table.c.key).order_by(meta_table.c.key)).scalars())

    # --- outbox ---------------------------------------------------------------------------------------
    def outbox_put(self, msg: Message, *, supersede_key: str | None, now_ms: int) -> int:
        """Queue ``msg`` for the cloud; returns how many old entries were dropped to stay bounded.

        With a ``supersede_key`` (e.g. the pod's status resource) an older queued message with the
        same key is replaced, and the new one moves to the end of the drain order.
        """
        record = message_to_record(msg)
        if len(record.encode()) > limits.META_MAX_VALUE_BYTES:
            raise ValueError(f"outbox message {msg.msg_id} exceeds {limits.META_MAX_VALUE_BYTES} bytes")
        with self._lock, self._translate(), self._conn.begin():
            if supersede_key is not None:
                self._conn.execute(
                    sa.delete(outbox_table).where(outbox_table.c.supersede_key == supersede_key)
                )
            self._conn.execute(
                sa.insert(outbox_table).values(supersede_key=supersede_key, message=record, queued_ms=now_ms)
            )
            count = int(
                self._conn.execute(sa.select(sa.func.count()).select_from(outbox_table)).scalar() or 0
            )
            excess = count - limits.META_OUTBOX_MAX
            if excess > 0:
                oldest = (
                    sa.select(outbox_table.c.seq).order_by(outbox_table.c.seq).limit(excess).scalar_subquery()
                )
                self._conn.execute(sa.delete(outbox_table).where(outbox_table.c.seq.in_(oldest)))
                return excess
            return 0

    def outbox_peek(self, limit: int = 64) -> list[OutboxEntry]:
        """The oldest ``limit`` queued messages, drain order first. Undecodable rows are dropped."""
        with self._lock, self._translate(), self._conn.begin():
            rows = self._conn.execute(
                sa.select(outbox_table.c.seq, outbox_table.c.message)
                .order_by(outbox_table.c.seq)
                .limit(limit)
            ).all()
            out: list[OutboxEntry] = []
            for seq, record in rows:
                try:
                    out.append(OutboxEntry(int(seq), message_from_record(record)))
                except ValueError:
                    self._conn.execute(sa.delete(outbox_table).where(outbox_table.c.seq == seq))
            return out

    def outbox_remove(self, seq: int) -> None:
        """Drop one entry after it was handed to the link."""
        with self._lock, self._translate(), self._conn.begin():
            self._conn.execute(sa.delete(outbox_table).where(outbox_table.c.seq == seq))

    def outbox_len(self) -> int:
        """Entries waiting."""
        with self._lock, self._translate(), self._conn.begin():
            return int(self._conn.execute(sa.select(sa.func.count()).select_from(outbox_table)).scalar() or 0)

    # --- eventbus / servicebus tables -----------------------------------------------------------------
    def add_sub_topic(self, topic: str) -> None:
        """Remember an MQTT topic EventBus subscribes to (idempotent)."""
        self._add_unique(sub_topics_table, "topic", topic, 256)

    def remove_sub_topic(self, topic: str) -> None:
        """Forget a subscribed topic."""
        self._remove(sub_topics_table, "topic", topic)

    def sub_topics(self) -> list[str]:
        """Remembered topics."""
        return self._all(sub_topics_table, "topic")

    def add_target_url(self, url: str) -> None:
        """Remember a ServiceBus target URL (idempotent)."""
        self._add_unique(target_urls_table, "url", url, 2048)

    def remove_target_url(self, url: str) -> None:
        """Forget a target URL."""
        self._remove(target_urls_table, "url", url)

    def target_urls(self) -> list[str]:
        """Remembered target URLs."""
        return self._all(target_urls_table, "url")

    def _add_unique(self, table: sa.Table, col: str, value: str, max_len: int) -> None:
        if not value or len(value) > max_len:
            raise ValueError(f"{table.name}.{col} must be 1..{max_len} characters")
        with self._lock, self._translate(), self._conn.begin():
            self._conn.execute(sqlite.insert(table).values({col: value}).on_conflict_do_nothing())

    def _remove(self, table: sa.Table, col: str, value: str) -> None:
        with self._lock, self._translate(), self._conn.begin():
            self._conn.execute(sa.delete(table).where(table.c[col] == value))

    def _all(self, table: sa.Table, col: str) -> list[str]:
        with self._lock, self._translate(), self._conn.begin():
            return list(self._conn.execute(sa.select(table.c[col]).order_by(table.c[col])).scalars())

    # --- errors ---------------------------------------------------------------------------------------
    def _translate(self) -> _Translate:
        return _Translate(self.path)


class _Translate:
    """Turns SQLAlchemy database errors into :class:`StoreError` naming the file."""

    __slots__ = ("path",)

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> None:
        return None

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, _tb: object) -> None:
        if isinstance(e, exc.OperationalError) and "full" in str(e.orig):
            raise StoreFullError(f"{self.path}: database is full ({sqlitefile.reason(e)})") from e
        if isinstance(e, exc.DBAPIError):
            raise StoreError(f"{self.path}: database error ({sqlitefile.reason(e)})") from e
