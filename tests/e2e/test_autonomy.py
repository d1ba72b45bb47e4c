"""Offline autonomy on real processes: the edge keeps its pods with no cloud, across an edgecore restart.

cloudcore is stopped (SIGTERM) while a pod runs; edgecore is restarted (SIGTERM, started again) and brings
the pod's containers back from its local store with no cloud; cloudcore is started again and the node
and the pod's status converge in the API.
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import EdgeCluster, containers_of, wait_until
from tests.e2e.test_pods import running_ready, sleeper

pytestmark = [pytest.mark.slow, pytest.mark.docker]


def test_offline_autonomy_edge_restart_without_cloud_then_converges(edge_cluster: EdgeCluster) -> None:
    c = edge_cluster
    logs = (c.edge_log, c.cloud_log)
    pod = c.create(sleeper("autonomous"))
    uid = pod.metadata.uid
    wait_until("pod autonomous Running and Ready", lambda: running_ready(c.pod("autonomous")), 60, *logs)
    before = containers_of(uid)
    assert set(before) == {"POD", "main"}

    assert c.stop("cloudcore") == 0
    assert c.stop("edgecore") == 0
    c.start_edge()
    # With no cloud, the restarted edgecore serves the pod from its local store: the containers run.
    wait_until(
        "the pod's containers running after an edgecore restart with no cloud",
        lambda: c.alive("edgecore") and set(containers_of(uid)) == {"POD", "main"} and containers_of(uid),
        60,
        *logs,
    )
    assert "connected to cloud" not in c.edge_log.read_text().rsplit("===== start edgecore =====", 1)[1]

    c.start_cloud()
    c.wait_reconnected()
    c.wait_node_ready()
    wait_until(
        "pod autonomous Running and Ready after the cloud is back",
        lambda: running_ready(c.pod("autonomous")),
        60,
        *logs,
    )
    running = containers_of(uid)
    api = c.pod("autonomous")
    assert {s.container_id.removeprefix("docker://") for s in api.status.container_statuses} == {
        running["main"]
    }
