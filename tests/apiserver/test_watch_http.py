"""Watch stream details over raw HTTP: bookmarks, timeoutSeconds, initial events, Table rows; graceful deletes."""

from __future__ import annotations

import json
import ssl
import time
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3
from kubernetes import client

from tests.apiserver.conftest import Cluster


@pytest.fixture(scope="module")
def http(cluster: Cluster) -> Iterator[Any]:
    ctx = ssl.create_default_context(cafile=str(cluster.running.ca_cert))
    pool = urllib3.PoolManager(ssl_context=ctx, timeout=urllib3.Timeout(connect=10, read=20), retries=False)
    yield pool
    pool.clear()


def _stream(
    cluster: Cluster, http: Any, path: str, headers: dict[str, str] | None = None
) -> Iterator[dict[str, Any]]:
    resp = http.request(
        "GET", cluster.running.url + path, preload_content=False,
        headers={"Authorization": f"Bearer {cluster.running.token}", **(headers or {})},
    )  # fmt: skip
    assert resp.status == 200
    buf = b""
    try:
        for chunk in resp.stream(4096):
            buf += chunk
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                yield json.loads(line)
    finally:
        resp.release_conn()


def test_bookmarks_and_timeout(cluster: Cluster, http: Any) -> None:
    start = time.monotonic()
    events = list(
        _stream(
            cluster,
            http,
            "/api/v1/namespaces/default/configmaps?watch=1&allowWatchBookmarks=true"
            "&timeoutSeconds=2&resourceVersion=1",
        )
    )
    assert 1.5 < time.monotonic() - start < 15
    bookmarks = [e for e in events if e["type"] == "BOOKMARK"]
    assert bookmarks
    assert bookmarks[0]["object"]["kind"] == "ConfigMap"
    assert int(bookmarks[-1]["object"]["metadata"]["resourceVersion"]) >= 1


def test_watch_response_says_the_connection_closes(cluster: Cluster, http: Any) -> None:
    # The server closes the connection when a watch ends; a client must not pool it for reuse.
    path = "/api/v1/namespaces/default/configmaps?watch=1&timeoutSeconds=1&resourceVersion=1"
    resp = http.request(
        "GET", cluster.running.url + path, preload_content=False,
        headers={"Authorization": f"Bearer {cluster.running.token}"},
    )  # fmt: skip
    try:
        assert resp.status == 200
        assert resp.headers["Connection"] == "close"
        for _chunk in resp.stream(4096):
            pass
    finally:
        resp.release_conn()
    listing = http.request(
        "GET", cluster.running.url + "/api/v1/namespaces/default/configmaps",
        headers={"Authorization": f"Bearer {cluster.running.token}"},
    )  # fmt: skip
    assert listing.status == 200
    assert listing.headers.get("Connection") != "close"


def test_initial_events_end_bookmark(cluster: Cluster, http: Any) -> None:
    events = []
    for ev in _stream(cluster, http, "/api/v1/namespaces?watch=true&sendInitialEvents=true&allowWatchBookmarks=true"
                                     "&resourceVersionMatch=NotOlderThan&timeoutSeconds=10"):  # fmt: skip
        events.append(ev)
        if ev["type"] == "BOOKMARK":
            break
    names = {e["object"]["metadata"]["name"] for e in events if e["type"] == "ADDED"}
    assert {"default", "kube-system", "kube-node-lease", "kubeedge"} <= names
    assert events[-1]["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}


def test_table_watch_rows(cluster: Cluster, http: Any) -> None:
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    for ev in _stream(cluster, http, "/api/v1/namespaces?watch=true&timeoutSeconds=5", {"Accept": accept}):
        assert ev["object"]["kind"] == "Table"
        assert [c["name"] for c in ev["object"]["columnDefinitions"]] == ["Name", "Status", "Age"]
        assert ev["object"]["rows"][0]["cells"][1] == "Active"
        break


def test_graceful_pod_delete_and_deletecollection(cluster: Cluster) -> None:
    core = client.CoreV1Api(cluster.api_client())
    core.create_node({"metadata": {"name": "grace-node"}})
    core.create_namespaced_pod("default", {"metadata": {"name": "slow"}, "spec": {
        "nodeName": "grace-node", "containers": [{"name": "c", "image": "x:1"}]}})  # fmt: skip
    core.delete_namespaced_pod("slow", "default")
    pod = core.read_namespaced_pod("slow", "default")
    assert pod.metadata.deletion_timestamp is not None
    assert pod.metadata.deletion_grace_period_seconds == 30
    core.delete_namespaced_pod("slow", "default", grace_period_seconds=0)  # what the edge does when stopped
    assert "slow" not in {p.metadata.name for p in core.list_namespaced_pod("default").items}
    for i in range(3):
        core.create_namespaced_config_map(
            "default", {"metadata": {"name": f"dc-{i}", "labels": {"dc": str(i % 2)}}}
        )
    core.delete_collection_namespaced_config_map("default", label_selector="dc=0")
    left = {c.metadata.name for c in core.list_namespaced_config_map("default", label_selector="dc").items}
    assert left == {"dc-1"}
    core.delete_node("grace-node")
