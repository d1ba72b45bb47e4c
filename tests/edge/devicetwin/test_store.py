"""DeviceStore on a real SQLite file: shared with MetaManager, group commit, outbox bound, bad files."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubeedge.edge.devicetwin import store as storemod
from kubeedge.edge.devicetwin.twins import Twin, Version
from kubeedge.edge.metamanager.store import MetaStore
from kubeedge.kit import limits


def report(i: int) -> storemod.Report:
    return storemod.Report(f"id-{i}", "device/ns/d/twin/edge_updated", "update", {"n": i}, created_ms=i)


def test_shares_the_metamanager_file_and_commits_batches(tmp_path: Path) -> None:
    db = tmp_path / "edgecore.db"
    with MetaStore.open(db) as meta:
        meta.add_target_url("http://x")
        store = storemod.DeviceStore.open(db)
        try:
            assert store.put_device(storemod.Device("ns/d", "d", "desc"))
            twin = Twin("t", actual="1", actual_version=Version(0, 1), attr_type="int")
            batch = storemod.Batch(
                twins=[("ns/d", {"t": twin}, report(1))],
                states=[("ns/d", "online", "2026-01-01T00:00:00Z", report(2))],
            )
            assert store.apply(batch) == 0
            assert store.twins("ns/d") == {"t": twin}
            assert store.device("ns/d") == storemod.Device(
                "ns/d", "d", "desc", "online", "2026-01-01T00:00:00Z"
            )
            assert [r.msg_id for r in store.pending(sent_before_ms=1)] == ["id-1", "id-2"]
            assert (
                store.apply(
                    storemod.Batch(states=[("ns/d", "offline", None, report(3))], confirms=["id-1", "nope"])
                )
                == 1
            )
            assert store.device("ns/d") == storemod.Device(
                "ns/d", "d", "desc", "offline", "2026-01-01T00:00:00Z"
            )
            store.mark_sent(["id-2"], 50)
            assert [r.msg_id for r in store.pending(sent_before_ms=50)] == ["id-3"]
            assert store.remove_device("ns/d")
            assert store.twins("ns/d") == {}
            assert not store.remove_device("ns/d")
        finally:
            store.close()
        assert meta.target_urls() == ["http://x"]  # MetaManager's tables untouched


def test_outbox_keeps_the_newest_reports(tmp_path: Path) -> None:
    store = storemod.DeviceStore.open(tmp_path / "edgecore.db")
    try:
        n = limits.TWIN_OUTBOX_MAX + 5
        store.apply(storemod.Batch(twins=[("ns/d", {}, report(i)) for i in range(n)]))
        assert store.outbox_len() == limits.TWIN_OUTBOX_MAX
        oldest = store.pending(sent_before_ms=1, limit=1)
        assert oldest[0].msg_id == "id-5"
    finally:
        store.close()


def test_not_a_database(tmp_path: Path) -> None:
    bad = tmp_path / "edgecore.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(storemod.DeviceStoreError, match=r"edgecore\.db"):
        storemod.DeviceStore.open(bad)
