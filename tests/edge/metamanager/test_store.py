"""MetaStore on real SQLite files: upserts, RV ordering, tombstones, pod UID rule, lookups, bounds, bad files, outbox."""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as hs

from kubeedge.edge.metamanager import store as st
from kubeedge.kit import limits
from kubeedge.proto.message import Message

NOW = 1_700_000_000_000


def pod(name: str, uid: str, rv: str = "1") -> str:
    return json.dumps({"kind": "Pod", "metadata": {"name": name, "uid": uid, "resourceVersion": rv}})


def test_upsert_get_and_reopen(db_path: Path) -> None:
    with st.MetaStore.open(db_path) as s:
        assert (
            s.upsert("default/pod/a", "pod", pod("a", "u1"), resource_version="1", now_ms=NOW)
            == st.Outcome.APPLIED
        )
        assert s.upsert("default/pod/a", "pod", pod("a", "u1", "2"), resource_version="2", now_ms=NOW) == (
            st.Outcome.APPLIED
        )
    with st.MetaStore.open(db_path) as s:
        value = s.get("default/pod/a")
        assert value is not None
        assert json.loads(value)["metadata"]["resourceVersion"] == "2"
        assert s.resource_version("default/pod/a") == ("2", False)
        assert s.get("default/pod/missing") is None


def test_upstream_schema_and_pragmas(store: st.MetaStore, db_path: Path) -> None:
    store.upsert("default/configmap/c", "configmap", "{}", now_ms=NOW)
    assert db_path.stat().st_mode & 0o777 == 0o600  # it holds secrets
    assert Path(f"{db_path}-wal").stat().st_mode & 0o777 == 0o600
    conn = sqlite3.connect(db_path)
    try:
        tables = {r[0] for r in conn.execute("select name from sqlite_master where type='table'")}
        assert {"meta", "meta_v2", "sub_topics", "target_urls"} <= tables
        assert [r[1] for r in conn.execute("pragma table_info(meta)")] == ["key", "type", "value"]
        assert [r[1] for r in conn.execute("pragma table_info(meta_v2)")] == [
            "key",
            "groupversionresource",
            "namespace",
            "name",
            "resourceversion",
            "value",
        ]
        assert conn.execute("pragma journal_mode").fetchone()[0] == "wal"
        assert conn.execute("select key, type, value from meta").fetchall() == [
            ("default/configmap/c", "configmap", "{}")
        ]
    finally:
        conn.close()


def test_idempotent_and_older_rv_never_overwrites(store: st.MetaStore) -> None:
    key = "default/configmap/c"
    assert store.upsert(key, "configmap", '"v10"', resource_version="10", now_ms=NOW) == st.Outcome.APPLIED
    assert store.upsert(key, "configmap", '"v10"', resource_version="10", now_ms=NOW) == st.Outcome.STALE
    # "9" < "10" numerically although it sorts after it as text.
    assert store.upsert(key, "configmap", '"v9"', resource_version="9", now_ms=NOW) == st.Outcome.STALE
    assert store.get(key) == '"v10"'
    assert (
        store.upsert(key, "configmap", '"big"', resource_version=str(2**64 - 1), now_ms=NOW)
        == st.Outcome.APPLIED
    )
    assert store.get(key) == '"big"'


def test_unversioned_write_applies_and_keeps_rv(store: st.MetaStore) -> None:
    key = "default/secret/s"
    store.upsert(key, "secret", '"v5"', resource_version="5", now_ms=NOW)
    assert store.upsert(key, "secret", '"local"', now_ms=NOW) == st.Outcome.APPLIED
    assert store.resource_version(key) == ("5", False)
    assert store.upsert(key, "secret", '"v4"', resource_version="4", now_ms=NOW) == st.Outcome.STALE
    assert store.get(key) == '"local"'


@pytest.mark.parametrize("rv", ["-1", "1.5", "abc", str(2**64), "١٢", " 1"])
def test_invalid_resource_version_rejected(rv: str) -> None:
    with pytest.raises(ValueError, match="resourceVersion"):
        st.Upsert("default/pod/a", "pod", "{}", rv)


def test_tombstone_blocks_late_insert_until_compaction(store: st.MetaStore) -> None:
    key = "default/configmap/c"
    store.upsert(key, "configmap", '"v3"', resource_version="3", now_ms=NOW)
    assert store.delete(key, resource_version="5", now_ms=NOW) == st.Outcome.APPLIED
    assert store.get(key) is None
    assert store.resource_version(key) == ("5", True)
    assert store.upsert(key, "configmap", '"v4"', resource_version="4", now_ms=NOW) == st.Outcome.STALE
    assert store.get(key) is None
    # A delete without RV tombstones at the newest RV seen; a delete with no history still tombstones.
    assert store.delete("default/configmap/never", resource_version="7", now_ms=NOW) == st.Outcome.APPLIED
    assert store.upsert("default/configmap/never", "configmap", "{}", resource_version="6", now_ms=NOW) == (
        st.Outcome.STALE
    )
    assert store.compact_tombstones(older_than_ms=NOW) == 0
    assert store.compact_tombstones(older_than_ms=NOW + 1) == 2
    assert store.upsert(key, "configmap", '"v4"', resource_version="4", now_ms=NOW) == st.Outcome.APPLIED
    assert store.upsert(key, "configmap", '"v6"', resource_version="6", now_ms=NOW) == st.Outcome.APPLIED
    assert store.get(key) == '"v6"'


def test_delete_older_than_stored_is_stale(store: st.MetaStore) -> None:
    key = "default/pod/p"
    store.upsert(key, "pod", pod("p", "u2", "20"), resource_version="20", now_ms=NOW)
    assert store.delete(key, resource_version="15", now_ms=NOW) == st.Outcome.STALE
    assert store.get(key) is not None


def test_pod_delete_requires_uid_and_drops_podpatch(store: st.MetaStore) -> None:
    store.upsert("default/pod/p", "pod", pod("p", "uid-new"), resource_version="3", now_ms=NOW)
    store.upsert("default/podpatch/p", "podpatch", '"{}"', now_ms=NOW)
    res = store.apply([st.Delete("default/pod/p", "", "uid-old", ("default/podpatch/p",))], now_ms=NOW)
    assert res == [st.Outcome.UID_MISMATCH]
    assert store.get("default/pod/p") is not None
    assert store.get("default/podpatch/p") is not None
    res = store.apply([st.Delete("default/pod/p", "", "uid-new", ("default/podpatch/p",))], now_ms=NOW)
    assert res == [st.Outcome.APPLIED]
    assert store.get("default/pod/p") is None
    assert store.get("default/podpatch/p") is None


def test_type_lookup_is_per_namespace(store: st.MetaStore) -> None:
    store.apply(
        [
            st.Upsert("default/pod/a", "pod", '"a"'),
            st.Upsert("default/pod/b", "pod", '"b"'),
            st.Upsert("default/podpatch/a", "podpatch", '"pa"'),
            st.Upsert("default/pods/x", "pods", '"x"'),
            st.Upsert("kube-system/pod/c", "pod", '"c"'),
            st.Upsert("default/configmap/a", "configmap", '"cm"'),
        ],
        now_ms=NOW,
    )
    assert store.list_type("default", "pod") == ['"a"', '"b"']
    assert store.list_type("kube-system", "pod") == ['"c"']
    assert store.list_type("other", "pod") == []


def test_type_lookup_is_bounded(store: st.MetaStore, monkeypatch: pytest.MonkeyPatch) -> None:
    store.apply([st.Upsert(f"default/secret/s{i}", "secret", '"x"') for i in range(4)], now_ms=NOW)
    monkeypatch.setattr(limits, "META_MAX_QUERY_ROWS", 3)
    with pytest.raises(st.StoreError, match="exceeds 3 rows"):
        store.list_type("default", "secret")


def test_group_commit_applies_in_order(store: st.MetaStore) -> None:
    writes: list[st.Write] = [
        st.Upsert("default/configmap/c", "configmap", f'"{i}"', str(i)) for i in (1, 3, 2)
    ]
    writes.append(st.Delete("default/configmap/c", "4"))
    writes.append(st.Upsert("default/configmap/c", "configmap", '"5"', "5"))
    assert store.apply(writes, now_ms=NOW) == [
        st.Outcome.APPLIED,
        st.Outcome.APPLIED,
        st.Outcome.STALE,
        st.Outcome.APPLIED,
        st.Outcome.APPLIED,
    ]
    assert store.get("default/configmap/c") == '"5"'


def test_size_bounds() -> None:
    with pytest.raises(ValueError, match="bytes"):
        st.Upsert("default/configmap/c", "configmap", "x" * (limits.META_MAX_VALUE_BYTES + 1))
    with pytest.raises(ValueError, match="key"):
        st.Upsert("default/configmap/" + "c" * 300, "configmap", "{}")
    with pytest.raises(ValueError, match="type"):
        st.Upsert("default/configmap/c", "t" * 33, "{}")


def test_full_database_names_file_and_keeps_earlier_writes(db_path: Path) -> None:
    with st.MetaStore.open(db_path, max_db_bytes=256 * limits.KiB) as s:
        written = 0
        error: st.StoreFullError | None = None
        for i in range(1000):
            try:
                s.upsert(f"default/configmap/c{i}", "configmap", "x" * 4000, now_ms=NOW)
            except st.StoreFullError as e:
                error = e
                break
            written += 1
        assert error is not None
        assert str(db_path) in str(error)
        assert 0 < written < 1000
        assert s.get(f"default/configmap/c{written - 1}") is not None
        assert s.get(f"default/configmap/c{written}") is None


def test_oversized_file_refused(db_path: Path) -> None:
    with st.MetaStore.open(db_path) as s:
        s.upsert("default/configmap/c", "configmap", "x" * 100_000, now_ms=NOW)
    with pytest.raises(st.StoreError, match="above the"):
        st.MetaStore.open(db_path, max_db_bytes=50_000)


def test_not_sqlite_file(db_path: Path) -> None:
    db_path.write_bytes(b"apiVersion: v1\nkind: Config\n")
    with pytest.raises(st.StoreError, match=rf"{db_path}: not a SQLite database"):
        st.MetaStore.open(db_path)


def test_corrupt_pages(db_path: Path) -> None:
    with st.MetaStore.open(db_path) as s:
        s.apply(
            [st.Upsert(f"default/configmap/c{i}", "configmap", "y" * 2000) for i in range(200)], now_ms=NOW
        )
    data = bytearray(db_path.read_bytes())
    assert len(data) > 8 * 4096
    data[3 * 4096 : 7 * 4096] = b"\x5a" * (4 * 4096)
    db_path.write_bytes(bytes(data))
    with pytest.raises(st.StoreError, match=rf"{db_path}: .*(malformed|corrupt)"):
        st.MetaStore.open(db_path)


def test_foreign_schema(db_path: Path) -> None:
    conn = sqlite3.connect(db_path)
    conn.execute("create table meta(id integer primary key, payload blob)")
    conn.commit()
    conn.close()
    with pytest.raises(st.StoreError, match=rf"{db_path}: foreign schema: table 'meta'"):
        st.MetaStore.open(db_path)


def test_foreign_application_id(db_path: Path) -> None:
    conn = sqlite3.connect(db_path)
    conn.execute("pragma application_id=1234")
    conn.execute("create table t(x)")
    conn.commit()
    conn.close()
    with pytest.raises(st.StoreError, match=rf"{db_path}: foreign SQLite database"):
        st.MetaStore.open(db_path)


def test_directory_is_not_a_database(tmp_path: Path) -> None:
    with pytest.raises(st.StoreError, match="is a directory"):
        st.MetaStore.open(tmp_path)


def test_upstream_created_database_is_accepted(db_path: Path) -> None:
    """A database made by upstream edgecore (its own tables, application_id 0) opens and keeps its rows."""
    conn = sqlite3.connect(db_path)
    conn.execute("create table meta(key varchar(256) primary key, type varchar(32), value text)")
    conn.execute(
        "create table meta_v2(key varchar(256) primary key, groupversionresource varchar(256), "
        "namespace varchar(256), name varchar(256), resourceversion integer, value text)"
    )
    conn.execute("create table device(id varchar(64) primary key, name varchar(64))")
    conn.execute("insert into meta values ('default/pod/a', 'pod', '{}')")
    conn.commit()
    conn.close()
    with st.MetaStore.open(db_path) as s:
        assert s.get("default/pod/a") == "{}"
        assert s.list_type("default", "pod") == ["{}"]


def test_sub_topics_and_target_urls(store: st.MetaStore) -> None:
    store.add_sub_topic("a/b")
    store.add_sub_topic("a/b")
    store.add_target_url("http://127.0.0.1:9000/x")
    assert store.sub_topics() == ["a/b"]
    assert store.target_urls() == ["http://127.0.0.1:9000/x"]
    store.remove_sub_topic("a/b")
    assert store.sub_topics() == []
    with pytest.raises(ValueError, match="sub_topics"):
        store.add_sub_topic("")


def _status(name: str, n: int) -> Message:
    return Message.new(
        source="edged",
        group="meta",
        operation="patch",
        resource=f"default/podpatch/{name}",
        content=f'{{"status":{n}}}',
        now_ms=NOW + n,
    )


def test_outbox_order_supersede_and_reopen(db_path: Path) -> None:
    with st.MetaStore.open(db_path) as s:
        a1, b1, d, a2 = _status("a", 1), _status("b", 2), _status("x", 3), _status("a", 4)
        s.outbox_put(a1, supersede_key="patch:default/podpatch/a", now_ms=NOW)
        s.outbox_put(b1, supersede_key="patch:default/podpatch/b", now_ms=NOW)
        s.outbox_put(d, supersede_key=None, now_ms=NOW)
        s.outbox_put(a2, supersede_key="patch:default/podpatch/a", now_ms=NOW)
    with st.MetaStore.open(db_path) as s:
        entries = s.outbox_peek()
        assert [e.message for e in entries] == [b1, d, a2]
        s.outbox_remove(entries[0].seq)
        assert s.outbox_len() == 2


def test_outbox_is_bounded(store: st.MetaStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "META_OUTBOX_MAX", 3)
    msgs = [_status(f"p{i}", i) for i in range(5)]
    dropped = [store.outbox_put(m, supersede_key=None, now_ms=NOW) for m in msgs]
    assert dropped == [0, 0, 0, 1, 1]
    assert [e.message for e in store.outbox_peek()] == msgs[2:]


def test_message_record_round_trip() -> None:
    msg = Message.new(
        source="edged",
        group="meta",
        operation="update",
        resource="ns/podstatus/p",
        content={"a": [1, None]},
        now_ms=5,
    )
    assert st.message_from_record(st.message_to_record(msg)) == msg
    with pytest.raises(ValueError, match="malformed outbox record"):
        st.message_from_record('{"header": 1}')


# --- RV ordering under any interleaving (Hypothesis) -----------------------------------------------------

_keys = itertools.count()


@pytest.fixture(scope="module")
def hyp_store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[st.MetaStore]:
    """One database for all examples (each example uses its own key), so examples stay fast."""
    s = st.MetaStore.open(tmp_path_factory.mktemp("hyp") / "edgecore.db")
    yield s
    s.close()


_events = hs.lists(
    hs.tuples(hs.sampled_from(["upsert", "delete"]), hs.integers(0, 2**64 - 1)), min_size=1, max_size=8
)


@given(events=_events, data=hs.data())
def test_any_interleaving_ends_with_newest(
    hyp_store: st.MetaStore, events: list[tuple[str, int]], data: hs.DataObject
) -> None:
    """Versions of one key delivered in any order, with resends, end as the newest version says."""
    versions: dict[int, str] = {}
    for kind, rv in events:
        versions.setdefault(rv, kind)  # one event per RV, as in Kubernetes
    history = sorted(versions.items())
    deliveries = data.draw(
        hs.permutations(history + data.draw(hs.lists(hs.sampled_from(history), max_size=4)))
    )
    batched = data.draw(hs.booleans())
    s = hyp_store
    key = f"default/configmap/k{next(_keys)}"
    writes: list[st.Write] = [
        st.Upsert(key, "configmap", json.dumps(str(rv)), str(rv))
        if kind == "upsert"
        else st.Delete(key, str(rv))
        for rv, kind in deliveries
    ]
    if batched:
        s.apply(writes, now_ms=NOW)
    else:
        for w in writes:
            s.apply([w], now_ms=NOW)
    newest_rv, newest_kind = history[-1]
    expected = json.dumps(str(newest_rv)) if newest_kind == "upsert" else None
    assert s.get(key) == expected
    assert s.resource_version(key) == (str(newest_rv), newest_kind == "delete")
