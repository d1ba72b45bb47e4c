"""kit.sqlitefile on real files: the rules both edge stores now share (owner-only, checks, pragmas)."""

from __future__ import annotations

import re
import sqlite3
import stat
from pathlib import Path

import pytest

from kubeedge.edge.devicetwin.store import DeviceStore, DeviceStoreError
from kubeedge.edge.metamanager.store import MetaStore, StoreError
from kubeedge.kit import sqlitefile


class OpenError(Exception):
    pass


def test_created_owner_only_in_wal_with_the_size_bound(tmp_path: Path) -> None:
    db = tmp_path / "sub" / "edgecore.db"
    path, engine, conn = sqlitefile.open_database(db, max_db_bytes=1 << 20, error=OpenError)
    try:
        assert path == db
        assert stat.S_IMODE(db.stat().st_mode) == 0o600
        raw = conn.connection.driver_connection
        assert raw is not None
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert raw.execute("PRAGMA busy_timeout").fetchone()[0] == sqlitefile.BUSY_TIMEOUT_MS
        page = raw.execute("PRAGMA page_size").fetchone()[0]
        assert raw.execute("PRAGMA max_page_count").fetchone()[0] == (1 << 20) // page
    finally:
        conn.close()
        engine.dispose()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"not a database at all, just text", "not a SQLite database (foreign or corrupt file header)"),
        (None, "is a directory"),
    ],
)
def test_bad_files_are_refused_by_both_stores(tmp_path: Path, content: bytes | None, message: str) -> None:
    db = tmp_path / "edgecore.db"
    if content is None:
        db.mkdir()
    else:
        db.write_bytes(content)
    with pytest.raises(StoreError, match=re.escape(message)):
        MetaStore.open(db)
    with pytest.raises(DeviceStoreError, match=re.escape(message)):
        DeviceStore.open(db)


def test_foreign_application_id_and_size_bound(tmp_path: Path) -> None:
    db = tmp_path / "other.db"
    with sqlite3.connect(db) as c:
        c.execute("PRAGMA application_id=1234")
        c.execute("CREATE TABLE t(x)")
    with pytest.raises(DeviceStoreError, match=r"foreign SQLite database \(application_id 0x4d2\)"):
        DeviceStore.open(db)
    with pytest.raises(OpenError, match="above the 100-byte bound"):
        sqlitefile.open_database(db, max_db_bytes=100, error=OpenError)


def test_both_stores_share_one_file(tmp_path: Path) -> None:
    db = tmp_path / "edgecore.db"
    meta = MetaStore.open(db)
    devices = DeviceStore.open(db)
    try:
        with sqlite3.connect(db) as c:
            tables = {row[0] for row in c.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            app_id = c.execute("PRAGMA application_id").fetchone()[0]
        assert {"meta", "device", "device_twin", "device_attr"} <= tables
        assert app_id == sqlitefile.APPLICATION_ID
    finally:
        devices.close()
        meta.close()
