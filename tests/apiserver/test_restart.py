"""A restarted server keeps every object, and resourceVersions keep increasing."""

from __future__ import annotations

from pathlib import Path

from kubernetes import client

from tests.apiserver.conftest import start_cluster


def test_restart_keeps_objects_and_versions(tmp_path: Path) -> None:
    first = start_cluster(tmp_path, scheduler=False)
    try:
        core = client.CoreV1Api(first.api_client())
        core.create_namespace({"metadata": {"name": "keep"}})
        for i in range(5):
            core.create_namespaced_config_map(
                "keep", {"metadata": {"name": f"cm-{i}"}, "data": {"i": str(i)}}
            )
        core.delete_namespaced_config_map("cm-4", "keep")
        before = core.list_namespaced_config_map("keep")
        last_rv = int(before.metadata.resource_version)
        uids = {i.metadata.name: i.metadata.uid for i in before.items}
    finally:
        first.thread.stop()
    second = start_cluster(tmp_path, scheduler=False)
    try:
        core = client.CoreV1Api(second.api_client())
        after = core.list_namespaced_config_map("keep")
        assert {i.metadata.name: i.metadata.uid for i in after.items} == uids
        assert int(after.metadata.resource_version) >= last_rv
        assert core.read_namespaced_config_map("cm-2", "keep").data == {"i": "2"}
        new = core.create_namespaced_config_map("keep", {"metadata": {"name": "cm-new"}})
        assert int(new.metadata.resource_version) > last_rv
        assert second.running.ca_cert == first.running.ca_cert
        assert second.running.token == first.running.token
    finally:
        second.thread.stop()
