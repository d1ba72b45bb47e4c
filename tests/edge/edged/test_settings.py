"""Edged's settings come from the one typed edgecore model; the node's address defaults like upstream's."""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path
from typing import Any

import pytest

from kubeedge.edge import app
from kubeedge.edge.edged import nodestatus, service
from kubeedge.edge.edged.dockerruntime import DockerRuntime
from kubeedge.edge.edged.manager import PodManager
from kubeedge.kit import config as kconfig

EDGE_HEAD = "apiVersion: edgecore.config.kubeedge.io/v1alpha2\nkind: EdgeCore\n"


async def no_objects(kind: str, namespace: str, name: str) -> None:
    return None


def test_upstream_edged_keys_reach_the_pod_manager(docker_client: Any) -> None:
    cfg = kconfig.load_edgecore(
        EDGE_HEAD
        + """modules:
  edged:
    hostnameOverride: n1
    nodeIP: 10.0.0.5
    rootDirectory: /tmp/k
    nodeLabels: {site: a}
    tailoredKubeletConfig:
      staticPodPath: ""
      maxPods: 20
      syncFrequency: 1m30s
      fileCheckFrequency: 500ms
      imageMinimumGCAge: 2m0s
      containerRuntimeEndpoint: unix:///tmp/d.sock
"""
    )
    manager = PodManager(DockerRuntime(docker_client), app.edged_settings(cfg), no_objects)
    assert (manager.node_name, manager.node_ip, manager.pod_dir("abc")) == (
        "n1",
        "10.0.0.5",
        Path("/tmp/k/pods/abc"),
    )
    assert manager.static_dir is None
    kubelet = manager.kubelet
    assert (kubelet.max_pods, kubelet.sync_frequency, kubelet.file_check_frequency) == (20, 90.0, 0.5)
    assert kubelet.image_minimum_gc_age == 120.0
    assert dict(manager.config.node_labels) == {"site": "a"}
    assert service.docker_endpoint(manager.config) == "unix:///tmp/d.sock"


def test_upstream_default_runtime_endpoint_means_the_local_docker_engine() -> None:
    edged = kconfig.load_edgecore(EDGE_HEAD).modules.edged
    assert service.docker_endpoint(edged) is None
    bad = kconfig.load_edgecore(
        EDGE_HEAD
        + "modules: {edged: {tailoredKubeletConfig: {containerRuntimeEndpoint: npipe:////./pipe/x}}}"
    ).modules.edged
    with pytest.raises(ValueError, match=r"containerRuntimeEndpoint: .npipe:////\./pipe/x. is not a unix://"):
        service.docker_endpoint(bad)


def test_unresolved_node_name_or_ip_is_refused(docker_client: Any) -> None:
    edged = kconfig.load_edgecore(EDGE_HEAD + "modules: {edged: {hostnameOverride: n1}}").modules.edged
    with pytest.raises(ValueError, match=r"modules.edged.nodeIP"):
        PodManager(DockerRuntime(docker_client), edged, no_objects)


ROUTES = (
    "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
    "docker0\t000011AC\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0\n"
    "wlan0\t00000000\t0101A8C0\t0003\t0\t0\t600\t00000000\t0\t0\t0\n"
    "eth0\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
    "down0\t00000000\t010200C0\t0002\t0\t0\t1\t00000000\t0\t0\t0\n"
    "bad\tzz\n"
)


def test_default_route_interface_is_the_up_gateway_route_of_lowest_metric() -> None:
    assert nodestatus.default_route_interface(ROUTES) == "eth0"
    assert nodestatus.default_route_interface(ROUTES.split("wlan0")[0]) is None
    assert nodestatus.default_route_interface("") is None


def test_unset_node_ip_is_the_default_route_interface_address() -> None:
    # The reference answer comes from iproute2, not from our own parsing.
    route = subprocess.run(
        ["ip", "-4", "route", "show", "default"], capture_output=True, text=True, check=True
    )
    words = route.stdout.split()
    assert "dev" in words, f"this host has no IPv4 default route: {route.stdout!r}"
    dev = words[words.index("dev") + 1]
    addr = subprocess.run(
        ["ip", "-4", "-o", "addr", "show", "dev", dev], capture_output=True, text=True, check=True
    )
    expected = {line.split()[3].split("/")[0] for line in addr.stdout.splitlines()}
    assert nodestatus.host_ip() in expected
    assert not ipaddress.ip_address(nodestatus.host_ip()).is_loopback
    cfg = kconfig.load_edgecore(EDGE_HEAD + "modules: {edged: {hostnameOverride: n1}}")
    assert app.edged_settings(cfg).node_ip in expected
    assert nodestatus.interface_ipv4("no-such-if0") is None
