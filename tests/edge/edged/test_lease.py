"""The node Lease core: the object kubelet writes, its renewal period, and optimistic concurrency."""

from __future__ import annotations

import datetime

import pytest

from kubeedge.edge.edged import lease


def test_lease_is_kubelets_node_lease() -> None:
    renewer = lease.LeaseRenewer("edge-1", 40)
    assert renewer.interval == 10.0
    now = 1_790_000_000.25
    obj = renewer.next_lease(now)
    assert obj["apiVersion"] == "coordination.k8s.io/v1"
    assert obj["kind"] == "Lease"
    assert obj["metadata"] == {"name": "edge-1", "namespace": "kube-node-lease"}
    assert obj["spec"]["holderIdentity"] == "edge-1"
    assert obj["spec"]["leaseDurationSeconds"] == 40
    renew = datetime.datetime.strptime(obj["spec"]["renewTime"], "%Y-%m-%dT%H:%M:%S.%fZ")
    assert renew.replace(tzinfo=datetime.UTC).timestamp() == pytest.approx(now, abs=1e-6)


def test_resource_version_of_the_last_answer_is_sent_until_a_failure() -> None:
    renewer = lease.LeaseRenewer("edge-1", 8)
    assert renewer.interval == 2.0
    assert renewer.needs_read
    renewer.seen({"metadata": {"name": "edge-1", "resourceVersion": "41"}})
    assert not renewer.needs_read
    assert renewer.next_lease(0)["metadata"]["resourceVersion"] == "41"
    renewer.failed()
    assert renewer.needs_read
    assert "resourceVersion" not in renewer.next_lease(0)["metadata"]
    for odd in (None, "text", {"metadata": []}, {"metadata": {"resourceVersion": 7}}):
        renewer.seen(odd)
        assert renewer.needs_read
        assert "resourceVersion" not in renewer.next_lease(0)["metadata"]


def test_micro_time_and_bad_duration() -> None:
    assert lease.micro_time(0.5) == "1970-01-01T00:00:00.500000Z"
    assert lease.micro_time(1.9999999) == "1970-01-01T00:00:01.999999Z"
    with pytest.raises(ValueError, match="nodeLeaseDurationSeconds must be > 0"):
        lease.LeaseRenewer("n", 0)


def test_lease_is_owned_by_its_node_once_the_uid_is_known() -> None:
    renewer = lease.LeaseRenewer("edge-1", 40)
    assert not renewer.owner_known
    assert "ownerReferences" not in renewer.next_lease(0)["metadata"]
    renewer.owned_by("")
    assert not renewer.owner_known
    renewer.owned_by("5f0c")
    assert renewer.next_lease(0)["metadata"]["ownerReferences"] == [
        {"apiVersion": "v1", "kind": "Node", "name": "edge-1", "uid": "5f0c"}
    ]
    renewer.failed()
    assert renewer.owner_known


def test_owner_is_learned_from_the_stored_lease() -> None:
    renewer = lease.LeaseRenewer("edge-1", 40)
    other = {"apiVersion": "v1", "kind": "Node", "name": "edge-2", "uid": "no"}
    mine = {"apiVersion": "v1", "kind": "Node", "name": "edge-1", "uid": "u-1"}
    renewer.seen({"metadata": {"resourceVersion": "3", "ownerReferences": [other, "junk", mine]}})
    assert renewer.next_lease(0)["metadata"]["ownerReferences"] == [mine]
