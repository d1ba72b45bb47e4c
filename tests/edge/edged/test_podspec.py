"""Pod parsing and quantities: good pods become typed values, bad ones name the field that is wrong."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from kubeedge.edge.edged import quantity
from kubeedge.edge.edged.podspec import PodSpecError, ProbeKind, PullPolicy, RestartPolicy, parse_pod


def pod(containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "p", "namespace": "ns", "uid": "u-1"},
        "spec": {"containers": containers, **spec},
    }


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("100m", Decimal("0.1")),
        ("2", Decimal(2)),
        ("128Mi", Decimal(128 * 2**20)),
        ("1G", Decimal(10**9)),
        ("1e3", Decimal(1000)),
        ("1.5Gi", Decimal(3 * 2**29)),
    ],
)
def test_quantities(text: str, value: Decimal) -> None:
    assert quantity.parse(text) == value


def test_quantity_helpers_round_up() -> None:
    assert quantity.millicores("0.0001") == 1
    assert quantity.millicores("250m") == 250
    assert quantity.to_bytes("1Ki") == 1024


@pytest.mark.parametrize("text", ["", "abc", "1Qi", "--1", "1 Gi", "x" * 100])
def test_bad_quantities_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="quantity"):
        quantity.parse(text)


def test_full_container_is_parsed_with_defaults() -> None:
    parsed = parse_pod(
        pod(
            [
                {
                    "name": "web",
                    "image": "nginx:1.25",
                    "command": ["nginx"],
                    "args": ["-g", "daemon off;"],
                    "ports": [{"containerPort": 80, "name": "http", "hostPort": 8080}],
                    "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}},
                    "readinessProbe": {"httpGet": {"port": "http", "path": "/healthz"}},
                    "livenessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 3, "failureThreshold": 2},
                    "startupProbe": {"exec": {"command": ["true"]}},
                }
            ],
            restartPolicy="OnFailure",
            terminationGracePeriodSeconds=5,
        )
    )
    [web] = parsed.containers
    assert parsed.restart_policy is RestartPolicy.ON_FAILURE
    assert parsed.grace_seconds == 5
    assert web.pull_policy is PullPolicy.IF_NOT_PRESENT
    assert (web.cpu_limit_millis, web.cpu_request_millis, web.memory_limit_bytes) == (500, 500, 256 * 2**20)
    assert web.readiness is not None
    assert web.readiness.kind is ProbeKind.HTTP
    assert (
        web.readiness.port,
        web.readiness.path,
        web.readiness.period,
        web.readiness.failure_threshold,
    ) == ("http", "/healthz", 10.0, 3)
    assert web.liveness is not None
    assert (web.liveness.kind, web.liveness.period, web.liveness.failure_threshold) == (ProbeKind.TCP, 3.0, 2)
    assert web.startup is not None
    assert web.startup.command == ("true",)
    assert web.ports[0].host_port == 8080


def test_latest_or_untagged_images_default_to_always_pull() -> None:
    parsed = parse_pod(
        pod([{"name": "a", "image": "busybox"}, {"name": "b", "image": "reg:5000/busybox:latest"}])
    )
    assert [c.pull_policy for c in parsed.containers] == [PullPolicy.ALWAYS, PullPolicy.ALWAYS]


def test_spec_hash_changes_with_the_container_only() -> None:
    one = parse_pod(pod([{"name": "a", "image": "x:1"}, {"name": "b", "image": "y:1"}]))
    two = parse_pod(pod([{"name": "a", "image": "x:2"}, {"name": "b", "image": "y:1"}]))
    assert one.containers[0].spec_hash != two.containers[0].spec_hash
    assert one.containers[1].spec_hash == two.containers[1].spec_hash


def test_deletion_grace_overrides_spec_grace() -> None:
    raw = pod([{"name": "a", "image": "x:1"}], terminationGracePeriodSeconds=30)
    raw["metadata"]["deletionGracePeriodSeconds"] = 0
    raw["metadata"]["deletionTimestamp"] = "2024-01-01T00:00:00Z"
    parsed = parse_pod(raw)
    assert parsed.grace_seconds == 0
    assert parsed.deletion_requested


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (pod([{"name": "a"}]), r"spec.containers\[0\]\[a\].image: required"),
        (
            pod([{"name": "a", "image": "x:1", "livenessProbe": {"periodSeconds": 1}}]),
            r"livenessProbe: needs exactly one of",
        ),
        (
            pod([{"name": "a", "image": "x:1", "readinessProbe": {"exec": {"command": []}}}]),
            r"readinessProbe.exec.command: must not be empty",
        ),
        (
            pod([{"name": "a", "image": "x:1", "livenessProbe": {"grpc": {"port": 1}}}]),
            "grpc probes are not supported",
        ),
        (
            pod([{"name": "a", "image": "x:1", "livenessProbe": {"tcpSocket": {"port": 0}}}]),
            "is not a port number",
        ),
        (
            pod(
                [
                    {
                        "name": "a",
                        "image": "x:1",
                        "livenessProbe": {"exec": {"command": ["x"]}, "periodSeconds": 0},
                    }
                ]
            ),
            "periodSeconds: must be an integer >= 1",
        ),
        (
            pod([{"name": "a", "image": "x:1"}], volumes=[{"name": "v", "nfs": {}}]),
            "volume type 'nfs' is not supported",
        ),
        (
            pod([{"name": "a", "image": "x:1", "volumeMounts": [{"name": "nope", "mountPath": "/x"}]}]),
            "no volume named 'nope'",
        ),
        (
            pod(
                [
                    {
                        "name": "a",
                        "image": "x:1",
                        "volumeMounts": [{"name": "v", "mountPath": "/x", "subPath": "../etc"}],
                    }
                ],
                volumes=[{"name": "v", "emptyDir": {}}],
            ),
            "subPath",
        ),
        (pod([{"name": "a", "image": "x:1"}], restartPolicy="Sometimes"), "restartPolicy: 'Sometimes'"),
        (
            pod([{"name": "a", "image": "x:1", "resources": {"limits": {"memory": "lots"}}}]),
            "resources: quantity 'lots'",
        ),
        (pod([{"name": "A_B", "image": "x:1"}]), "is not a DNS label"),
        (pod([{"name": "a", "image": "x:1"}, {"name": "a", "image": "x:1"}]), "names must be unique"),
        (pod([]), "at least one container"),
        ({"metadata": {"name": "p"}, "spec": {}}, "metadata.uid: required"),
        ({"metadata": {"name": "p", "uid": "u"}}, "spec: required"),
    ],
)
def test_bad_specs_name_the_field(raw: dict[str, Any], message: str) -> None:
    with pytest.raises(PodSpecError, match=message):
        parse_pod(raw)
