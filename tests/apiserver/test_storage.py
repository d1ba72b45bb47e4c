"""SQLite storage: versions, optimistic writes, the watch window, persistence across reopen."""

from __future__ import annotations

from pathlib import Path

import pytest

from kubeedge.apiserver.storage import EventType, Expired, Store


def test_versions_increase_and_survive_reopen(tmp_path: Path) -> None:
    store = Store(tmp_path / "db", window=5)
    a = store.create("pods", "ns", "a", {"metadata": {"name": "a"}})
    assert a is not None
    assert store.create("pods", "ns", "a", {"metadata": {"name": "a"}}) is None
    b = store.update("pods", "ns", "a", {"metadata": {"name": "a", "labels": {"x": "1"}}}, a)
    assert b is not None
    assert int(b["metadata"]["resourceVersion"]) > int(a["metadata"]["resourceVersion"])
    assert store.update("pods", "ns", "a", {"metadata": {"name": "a"}}, a) is None  # stale version
    gone = store.delete("pods", "ns", "a", b)
    assert gone is not None
    last = store.rv
    store.close()
    again = Store(tmp_path / "db", window=5)
    assert again.rv == last
    assert again.get("pods", "ns", "a") is None
    c = again.create("pods", "ns", "c", {"metadata": {"name": "c"}})
    assert c is not None
    assert int(c["metadata"]["resourceVersion"]) == last + 1
    with pytest.raises(Expired):
        again.events_after(last - 1)  # history before the restart is gone
    again.close()


def test_watch_window_trims_and_expires(tmp_path: Path) -> None:
    store = Store(tmp_path / "db", window=3)
    start = store.rv
    for i in range(5):
        store.create("cm", "", f"o{i}", {"metadata": {"name": f"o{i}"}})
    events = store.events_after(start)
    assert [e.type for e in events] == [EventType.ADDED] * 5
    assert [e.rv for e in store.events_after(events[2].rv)] == [events[3].rv, events[4].rv]
    for i in range(5, 8):
        store.create("cm", "", f"o{i}", {"metadata": {"name": f"o{i}"}})
    with pytest.raises(Expired):
        store.events_after(start)
    assert len(store.events_after(store.window_floor)) <= 6
    store.close()


def test_scan_pages_in_key_order(tmp_path: Path) -> None:
    store = Store(tmp_path / "db")
    for ns in ("b", "a"):
        for name in ("y", "x"):
            store.create("cm", ns, name, {"metadata": {"name": name}})
    assert [(n, m) for n, m, _ in store.scan("cm", None, batch=3)] == [
        ("a", "x"),
        ("a", "y"),
        ("b", "x"),
        ("b", "y"),
    ]
    assert [m for _, m, _ in store.scan("cm", "b", after=("b", "x"))] == ["y"]
    assert store.count("cm") == 4
    assert sorted(store.namespace_contents("a")) == [("cm", "x"), ("cm", "y")]
    store.close()
