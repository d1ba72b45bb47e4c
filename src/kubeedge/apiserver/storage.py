"""Object storage on SQLite (SQLAlchemy 2 Core, WAL) with a global resourceVersion and a watch window.

Owns the database file and the in-memory window of recent change events.
Invariants: every write happens in one transaction that also advances the
single ``resourceVersion`` counter, so versions are strictly increasing across
restarts and each object's stored JSON carries the version it was written
at; the window holds events in version order and everything after
``window_floor`` (older requests get :class:`Expired`). The store is
synchronous and not thread-safe: it belongs to the trio thread of the server,
whose statements are single-row or single-range and take well under a
millisecond except whole-kind lists. Failing writes roll back and leave the
database as it was.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from kubeedge.kit import limits

_META = sa.MetaData()
_OBJECTS = sa.Table(
    "objects",
    _META,
    sa.Column("resource", sa.String, primary_key=True),
    sa.Column("namespace", sa.String, primary_key=True),
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("rv", sa.Integer, nullable=False),
    sa.Column("data", sa.Text, nullable=False),
)
_COUNTERS = sa.Table(
    "counters",
    _META,
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("value", sa.Integer, nullable=False),
)
sa.Index("objects_by_namespace", _OBJECTS.c.namespace, _OBJECTS.c.resource)


class EventType(StrEnum):
    """Watch event types."""

    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


class Expired(Exception):
    """The requested resourceVersion fell out of the watch window."""


@dataclass(frozen=True)
class Event:
    """One stored change; ``obj`` and ``old`` are never mutated after creation."""

    rv: int
    resource: str
    namespace: str
    type: EventType
    obj: dict[str, Any]
    old: dict[str, Any] | None = None
    _encoded: dict[str, bytes] = field(default_factory=dict, compare=False, repr=False)

    def encoded_line(self) -> bytes:
        """The watch stream line for this event in plain JSON (cached: many watchers share it)."""
        line = self._encoded.get("json")
        if line is None:
            line = (
                json.dumps({"type": self.type.value, "object": self.obj}, separators=(",", ":")).encode()
                + b"\n"
            )
            self._encoded["json"] = line
        return line


def dumps(obj: Any) -> str:
    """Compact JSON, the on-disk and on-wire form."""
    return json.dumps(obj, separators=(",", ":"))


class Store:
    """Objects keyed by (resource key, namespace, name); cluster-scoped objects use namespace ``""``."""

    def __init__(self, path: Path, *, window: int = limits.APISERVER_WATCH_WINDOW) -> None:
        self._engine = sa.create_engine(f"sqlite:///{path}")
        sa.event.listen(self._engine, "connect", _pragmas)
        _META.create_all(self._engine)
        self._conn = self._engine.connect()
        row = self._conn.execute(sa.select(_COUNTERS.c.value).where(_COUNTERS.c.name == "rv")).first()
        self._conn.commit()
        self.rv: int = int(row[0]) if row else 1
        """The current (latest written) resourceVersion."""
        self.window_floor = self.rv
        """Events after this version are all in the window."""
        self._window: list[Event] = []
        self._window_max = window
        self.listeners: list[Callable[[Event], None]] = []
        """Called after each committed change, in the store's thread."""

    def close(self) -> None:
        """Close the database connection."""
        self._conn.close()
        self._engine.dispose()

    # --- reads -----------------------------------------------------------------------------------
    def get(self, resource: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The decoded object, or None."""
        row = self._conn.execute(
            sa.select(_OBJECTS.c.data).where(
                _OBJECTS.c.resource == resource, _OBJECTS.c.namespace == namespace, _OBJECTS.c.name == name
            )
        ).first()
        self._conn.rollback()
        return json.loads(row[0]) if row else None

    def scan(
        self, resource: str, namespace: str | None, *, after: tuple[str, str] | None = None, batch: int = 500
    ) -> Iterator[tuple[str, str, str]]:
        """``(namespace, name, json)`` rows of ``resource`` in key order, starting after ``after``."""
        cursor = after
        while True:
            q = sa.select(_OBJECTS.c.namespace, _OBJECTS.c.name, _OBJECTS.c.data).where(
                _OBJECTS.c.resource == resource
            )
            if namespace is not None:
                q = q.where(_OBJECTS.c.namespace == namespace)
            if cursor is not None:
                q = q.where(sa.tuple_(_OBJECTS.c.namespace, _OBJECTS.c.name) > sa.tuple_(*cursor))
            q = q.order_by(_OBJECTS.c.namespace, _OBJECTS.c.name).limit(batch)
            rows = [(str(r[0]), str(r[1]), str(r[2])) for r in self._conn.execute(q)]
            self._conn.rollback()
            yield from rows
            if len(rows) < batch:
                return
            cursor = (rows[-1][0], rows[-1][1])

    def namespace_contents(self, namespace: str) -> list[tuple[str, str]]:
        """``(resource, name)`` of every object stored in ``namespace``."""
        rows = self._conn.execute(
            sa.select(_OBJECTS.c.resource, _OBJECTS.c.name).where(_OBJECTS.c.namespace == namespace)
        ).all()
        self._conn.rollback()
        return [(str(r[0]), str(r[1])) for r in rows]

    def count(self, resource: str) -> int:
        """How many objects of ``resource`` are stored."""
        n = self._conn.execute(
            sa.select(sa.func.count()).select_from(_OBJECTS).where(_OBJECTS.c.resource == resource)
        ).scalar_one()
        self._conn.rollback()
        return int(n)

    # --- writes ----------------------------------------------------------------------------------
    def create(self, resource: str, namespace: str, name: str, obj: dict[str, Any]) -> dict[str, Any] | None:
        """Insert ``obj`` at a new version; None if the key exists. ``obj`` gets its resourceVersion set."""
        rv = self.rv + 1
        obj["metadata"]["resourceVersion"] = str(rv)
        try:
            with self._conn.begin():
                self._conn.execute(
                    sa.insert(_OBJECTS).values(
                        resource=resource, namespace=namespace, name=name, rv=rv, data=dumps(obj)
                    )
                )
                self._bump(rv)
        except sa.exc.IntegrityError:
            return None
        self._emit(Event(rv, resource, namespace, EventType.ADDED, obj))
        return obj

    def update(
        self, resource: str, namespace: str, name: str, obj: dict[str, Any], old: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Replace the object whose stored version equals ``old``'s; None if it changed meanwhile."""
        rv = self.rv + 1
        obj["metadata"]["resourceVersion"] = str(rv)
        with self._conn.begin():
            res = self._conn.execute(
                sa.update(_OBJECTS)
                .where(
                    _OBJECTS.c.resource == resource,
                    _OBJECTS.c.namespace == namespace,
                    _OBJECTS.c.name == name,
                    _OBJECTS.c.rv == int(old["metadata"]["resourceVersion"]),
                )
                .values(rv=rv, data=dumps(obj))
            )
            if res.rowcount != 1:
                self._conn.rollback()
                return None
            self._bump(rv)
        self._emit(Event(rv, resource, namespace, EventType.MODIFIED, obj, old))
        return obj

    def delete(self, resource: str, namespace: str, name: str, old: dict[str, Any]) -> dict[str, Any] | None:
        """Remove the object if still at ``old``'s version; returns it carrying the deletion's version."""
        rv = self.rv + 1
        with self._conn.begin():
            res = self._conn.execute(
                sa.delete(_OBJECTS).where(
                    _OBJECTS.c.resource == resource,
                    _OBJECTS.c.namespace == namespace,
                    _OBJECTS.c.name == name,
                    _OBJECTS.c.rv == int(old["metadata"]["resourceVersion"]),
                )
            )
            if res.rowcount != 1:
                self._conn.rollback()
                return None
            self._bump(rv)
        gone = dict(old)
        gone["metadata"] = {**old["metadata"], "resourceVersion": str(rv)}
        self._emit(Event(rv, resource, namespace, EventType.DELETED, gone, old))
        return gone

    def _bump(self, rv: int) -> None:
        stmt = sa.update(_COUNTERS).where(_COUNTERS.c.name == "rv").values(value=rv)
        if self._conn.execute(stmt).rowcount == 0:
            self._conn.execute(sa.insert(_COUNTERS).values(name="rv", value=rv))
        self.rv = rv

    def _emit(self, event: Event) -> None:
        self._window.append(event)
        if len(self._window) > 2 * self._window_max:
            # Trim in halves so the cost is amortised; the floor moves to the last dropped event.
            drop = len(self._window) - self._window_max
            self.window_floor = self._window[drop - 1].rv
            del self._window[:drop]
        for listener in list(self.listeners):
            listener(event)

    # --- watch window ----------------------------------------------------------------------------
    def events_after(self, rv: int) -> list[Event]:
        """Events with version greater than ``rv``; raises :class:`Expired` if some were dropped."""
        if rv < self.window_floor:
            raise Expired(f"too old resource version: {rv} ({self.window_floor})")
        lo, hi = 0, len(self._window)
        while lo < hi:
            mid = (lo + hi) // 2
            if self._window[mid].rv <= rv:
                lo = mid + 1
            else:
                hi = mid
        return self._window[lo:]


def _pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode loses at most the last commits on power loss, never consistency (SQLite docs).
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.close()
