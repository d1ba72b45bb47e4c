"""Volume payloads, the atomic ..data writer and container environments (pure, plus real files in tmp_path)."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest

from kubeedge.edge.edged import envvars, volumes
from kubeedge.edge.edged.envvars import ConfigError, PodContext
from kubeedge.edge.edged.podspec import Pod, parse_pod
from kubeedge.kit import limits

CTX = PodContext(
    node_name="edge-1", host_ip="10.0.0.5", pod_ip="172.17.0.3", node_cpu_millis=4000, node_memory_bytes=2**33
)
OBJECTS: dict[tuple[str, str, str], Any] = {
    ("configmap", "ns", "cm"): {
        "data": {"a.conf": "A", "b.conf": "B"},
        "binaryData": {"bin": base64.b64encode(b"\0\1").decode()},
    },
    ("secret", "ns", "sec"): {
        "data": {"user": base64.b64encode(b"admin").decode(), "pass": base64.b64encode(b"pw").decode()}
    },
    ("serviceaccounttoken", "ns", "default"): {"status": {"token": "tok"}},
}


def pod(volumes_: list[dict[str, Any]] | None = None, **container: Any) -> Pod:
    return parse_pod(
        {
            "metadata": {
                "name": "p",
                "namespace": "ns",
                "uid": "u1",
                "labels": {"app": "web"},
                "annotations": {"x": "1"},
            },
            "spec": {
                "containers": [
                    {"name": "c", "image": "i:1", "resources": {"limits": {"memory": "64Mi"}}, **container}
                ],
                "volumes": volumes_ or [],
            },
        }
    )


def test_configmap_items_and_modes() -> None:
    p = pod(
        [
            {
                "name": "v",
                "configMap": {
                    "name": "cm",
                    "defaultMode": 0o640,
                    "items": [{"key": "a.conf", "path": "sub/a", "mode": 0o600}],
                },
            }
        ]
    )
    assert volumes.volume_payload(p, "v", OBJECTS, CTX) == {"sub/a": (b"A", 0o600)}
    whole = pod([{"name": "v", "configMap": {"name": "cm", "defaultMode": 0o640}}])
    assert volumes.volume_payload(whole, "v", OBJECTS, CTX) == {
        "a.conf": (b"A", 0o640),
        "b.conf": (b"B", 0o640),
        "bin": (b"\0\1", 0o640),
    }


def test_secret_is_decoded_and_missing_objects_are_errors_unless_optional() -> None:
    p = pod([{"name": "v", "secret": {"secretName": "sec"}}])
    assert volumes.volume_payload(p, "v", OBJECTS, CTX) == {"user": (b"admin", 0o644), "pass": (b"pw", 0o644)}
    missing = pod([{"name": "v", "secret": {"secretName": "nope"}}])
    with pytest.raises(ConfigError, match='secret "nope" not found'):
        volumes.volume_payload(missing, "v", OBJECTS, CTX)
    items = pod(
        [
            {
                "name": "v",
                "secret": {
                    "secretName": "sec",
                    "defaultMode": 0o400,
                    "items": [{"key": "pass", "path": "db/pw"}],
                },
            }
        ]
    )
    assert volumes.volume_payload(items, "v", OBJECTS, CTX) == {"db/pw": (b"pw", 0o400)}
    optional = pod([{"name": "v", "configMap": {"name": "nope", "optional": True}}])
    assert volumes.volume_payload(optional, "v", OBJECTS, CTX) == {}
    bad_key = pod([{"name": "v", "configMap": {"name": "cm", "items": [{"key": "zz", "path": "z"}]}}])
    with pytest.raises(ConfigError, match="key 'zz' not found"):
        volumes.volume_payload(bad_key, "v", OBJECTS, CTX)


def test_downward_api_and_projected_volumes() -> None:
    p = pod(
        [
            {
                "name": "v",
                "projected": {
                    "sources": [
                        {"configMap": {"name": "cm", "items": [{"key": "a.conf", "path": "a"}]}},
                        {"secret": {"name": "sec", "items": [{"key": "user", "path": "u"}]}},
                        {
                            "downwardAPI": {
                                "items": [{"path": "ns", "fieldRef": {"fieldPath": "metadata.namespace"}}]
                            }
                        },
                        {"serviceAccountToken": {"path": "token"}},
                    ]
                },
            },
            {
                "name": "d",
                "downwardAPI": {
                    "items": [
                        {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
                        {
                            "path": "mem",
                            "resourceFieldRef": {
                                "containerName": "c",
                                "resource": "limits.memory",
                                "divisor": "1Mi",
                            },
                        },
                        {"path": "cpu", "resourceFieldRef": {"containerName": "c", "resource": "limits.cpu"}},
                    ]
                },
            },
        ]
    )
    projected = volumes.volume_payload(p, "v", OBJECTS, CTX)
    assert projected == {
        "a": (b"A", 0o644),
        "u": (b"admin", 0o644),
        "ns": (b"ns", 0o644),
        "token": (b"tok", 0o644),
    }
    downward = volumes.volume_payload(p, "d", OBJECTS, CTX)
    assert downward == {"labels": (b'app="web"', 0o644), "mem": (b"64", 0o644), "cpu": (b"4", 0o644)}


@pytest.mark.parametrize("path", ["/etc/passwd", "../x", "a/../../x", "..data/x"])
def test_item_paths_may_not_escape(path: str) -> None:
    p = pod([{"name": "v", "configMap": {"name": "cm", "items": [{"key": "a.conf", "path": path}]}}])
    with pytest.raises(ConfigError, match="must be relative"):
        volumes.volume_payload(p, "v", OBJECTS, CTX)


def test_volume_size_is_bounded() -> None:
    big = {("configmap", "ns", "big"): {"data": {"k": "x" * (limits.EDGED_MAX_VOLUME_BYTES + 1)}}}
    p = pod([{"name": "v", "configMap": {"name": "big"}}])
    with pytest.raises(ConfigError, match="exceed"):
        volumes.volume_payload(p, "v", big, CTX)


def test_atomic_writer_swaps_data_and_drops_removed_keys(tmp_path: Path) -> None:
    target = tmp_path / "vol"
    assert volumes.write_atomic(target, {"a": (b"1", 0o644), "dir/b": (b"2", 0o600)})
    assert (target / "a").read_bytes() == b"1"
    assert (target / "dir" / "b").read_bytes() == b"2"
    assert os.readlink(target / "a") == "..data/a"
    first = os.readlink(target / "..data")
    assert not volumes.write_atomic(target, {"a": (b"1", 0o644), "dir/b": (b"2", 0o600)})  # unchanged
    assert volumes.write_atomic(target, {"a": (b"3", 0o644)})
    second = os.readlink(target / "..data")
    assert second != first
    assert (target / "a").read_bytes() == b"3"
    assert not (target / "dir").exists()
    assert not (target / first).exists()
    assert sorted(p.name for p in target.iterdir()) == sorted(["..data", second, "a"])


def test_prepare_volumes_creates_every_kind(tmp_path: Path) -> None:
    host = tmp_path / "host" / "made"
    p = pod(
        [
            {"name": "cm", "configMap": {"name": "cm"}},
            {"name": "scratch", "emptyDir": {}},
            {"name": "mem", "emptyDir": {"medium": "Memory"}},
            {"name": "hp", "hostPath": {"path": str(host), "type": "DirectoryOrCreate"}},
        ],
        volumeMounts=[
            {"name": "cm", "mountPath": "/etc/cm"},
            {"name": "scratch", "mountPath": "/scratch", "subPath": "part"},
            {"name": "mem", "mountPath": "/mem"},
            {"name": "hp", "mountPath": "/host", "readOnly": True},
        ],
    )
    pod_dir = tmp_path / "pods" / "u1"
    assert volumes.prepare_volumes(p, OBJECTS, CTX, pod_dir) == ["cm"]
    assert (pod_dir / "volumes/kubernetes.io~configmap/cm/a.conf").read_text() == "A"
    assert (pod_dir / "volumes/kubernetes.io~empty-dir/scratch").is_dir()
    assert host.is_dir()
    binds = volumes.container_binds(p, p.containers[0], pod_dir)
    assert [(b.target, b.source, b.read_only, b.tmpfs) for b in binds] == [
        ("/etc/cm", str(pod_dir / "volumes/kubernetes.io~configmap/cm"), True, False),
        ("/scratch", str(pod_dir / "volumes/kubernetes.io~empty-dir/scratch/part"), False, False),
        ("/mem", "", False, True),
        ("/host", str(host), True, False),
    ]
    missing = pod([{"name": "hp", "hostPath": {"path": str(tmp_path / "absent"), "type": "Directory"}}])
    with pytest.raises(ConfigError, match="is not a directory"):
        volumes.prepare_volumes(missing, OBJECTS, CTX, pod_dir)


def test_environment_resolution_order_and_expansion() -> None:
    p = pod(
        envFrom=[
            {"configMapRef": {"name": "cm"}, "prefix": "CM_"},
            {"secretRef": {"name": "absent", "optional": True}},
        ],
        env=[
            {"name": "USER", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "user"}}},
            {"name": "GREETING", "value": "hi $(USER) $$(USER) $(UNKNOWN)"},
            {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
            {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
            {"name": "MEM", "valueFrom": {"resourceFieldRef": {"resource": "limits.memory"}}},
            {
                "name": "OPT",
                "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "nope", "optional": True}},
            },
        ],
    )
    env = envvars.container_env(p, p.containers[0], OBJECTS, CTX)
    assert env == {
        "CM_a.conf": "A",
        "CM_b.conf": "B",
        "CM_bin": "\0\1",
        "USER": "admin",
        "GREETING": "hi admin $(USER) $(UNKNOWN)",
        "NODE": "edge-1",
        "IP": "172.17.0.3",
        "APP": "web",
        "MEM": str(64 * 2**20),
    }
    assert envvars.referenced_objects(p) == {
        ("configmap", "ns", "cm"),
        ("secret", "ns", "sec"),
        ("secret", "ns", "absent"),
    }


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "gone", "key": "k"}}}],
            'configmap "gone" not found',
        ),
        (
            [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "k"}}}],
            "couldn't find key k in secret ns/sec",
        ),
        (
            [{"name": "X", "valueFrom": {"fieldRef": {"fieldPath": "spec.bogus"}}}],
            "fieldRef 'spec.bogus' is not supported",
        ),
    ],
)
def test_environment_errors(env: list[dict[str, Any]], message: str) -> None:
    p = pod(env=env)
    with pytest.raises(ConfigError, match=message):
        envvars.container_env(p, p.containers[0], OBJECTS, CTX)
