"""Codec throughput: beehive messages encoded+decoded per second, next to bare json.dumps/json.loads.

Run: ``.venv/bin/python benchmarks/codec.py [--iterations N]``. Prints one JSON line:
for a ~200 B keepalive-sized message and a ~8 KiB pod message, the codec's
encode+decode rate, the bare ``json`` rate on the same dicts in the same run, and
their ratio (codec / bare; 1.0 means the codec adds nothing). Timings are noisy
on shared machines; compare only numbers from one run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from typing import Any

from kubeedge.proto import codec
from kubeedge.proto.message import Header, Message, Route

MAX_SIZE = 12 * 1024 * 1024


def _container(i: int) -> dict[str, Any]:
    return {
        "name": f"app-{i}",
        "image": f"registry.example.com/team/app-{i}:v1.{i}.3",
        "command": ["/bin/app", "--config=/etc/app/config.yaml", f"--shard={i}"],
        "ports": [{"name": "http", "containerPort": 8080 + i, "protocol": "TCP"}],
        "env": [
            {"name": "LOG_LEVEL", "value": "info"},
            {
                "name": "POD_NAME",
                "valueFrom": {"fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.name"}},
            },
            {"name": "DB_PASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "password"}}},
        ],
        "resources": {
            "limits": {"cpu": "500m", "memory": "256Mi"},
            "requests": {"cpu": "100m", "memory": "64Mi"},
        },
        "volumeMounts": [
            {"name": "config", "mountPath": "/etc/app", "readOnly": True},
            {"name": "kube-api-access-x7k2p", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"},
        ],
        "livenessProbe": {
            "httpGet": {"path": "/healthz", "port": 8080 + i, "scheme": "HTTP"},
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
            "timeoutSeconds": 1,
            "successThreshold": 1,
            "failureThreshold": 3,
        },
        "terminationMessagePath": "/dev/termination-log",
        "terminationMessagePolicy": "File",
        "imagePullPolicy": "IfNotPresent",
    }


def pod(containers: int) -> dict[str, Any]:
    """A Pod as EdgeController pushes it (apiVersion/kind set, managedFields stripped)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "edge-app-7d9c5b8f6-x2x4k",
            "generateName": "edge-app-7d9c5b8f6-",
            "namespace": "default",
            "uid": "5f1c2d3e-8a9b-4c7d-9e0f-1a2b3c4d5e6f",
            "resourceVersion": "1234567",
            "creationTimestamp": "2026-11-27T05:00:00Z",
            "labels": {"app": "edge-app", "pod-template-hash": "7d9c5b8f6", "tier": "edge"},
            "annotations": {"kubernetes.io/psp": "restricted", "prometheus.io/scrape": "true"},
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": "ReplicaSet",
                    "name": "edge-app-7d9c5b8f6",
                    "uid": "0a1b2c3d-4e5f-6a7b-8c9d-0e1f2a3b4c5d",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "volumes": [
                {"name": "config", "configMap": {"name": "app-config", "defaultMode": 420}},
                {
                    "name": "kube-api-access-x7k2p",
                    "projected": {
                        "sources": [
                            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                            {
                                "configMap": {
                                    "name": "kube-root-ca.crt",
                                    "items": [{"key": "ca.crt", "path": "ca.crt"}],
                                }
                            },
                        ],
                        "defaultMode": 420,
                    },
                },
            ],
            "containers": [_container(i) for i in range(containers)],
            "restartPolicy": "Always",
            "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst",
            "nodeSelector": {"node-role.kubernetes.io/edge": ""},
            "serviceAccountName": "default",
            "nodeName": "edge-node-01",
            "securityContext": {},
            "schedulerName": "default-scheduler",
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute"},
            ],
            "priority": 0,
            "enableServiceLinks": True,
        },
        "status": {"phase": "Pending", "qosClass": "Burstable"},
    }


def small_message() -> Message:
    """~200 B: an edge ack as it crosses the link."""
    return Message(
        Header("2f4e6a8c-1b3d-4f5a-9c7e-0d2b4f6a8c1e", 1764219600000, parent_msg_id="9a7c5e3b-1d2f-4a6b"),
        Route(source="edged", group="meta", operation="response", resource="default/pod/app"),
        "OK",
    )


def large_message() -> Message:
    """~8 KiB: a pod insert from EdgeController."""
    return Message(
        Header("2f4e6a8c-1b3d-4f5a-9c7e-0d2b4f6a8c1e", 1764219600000, resource_version="1234567"),
        Route(
            source="edgecontroller",
            group="resource",
            operation="insert",
            resource="default/pod/edge-app-7d9c5b8f6-x2x4k",
        ),
        pod(containers=6),
    )


def _rate(fn: Callable[[], object], iterations: int, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(iterations):
            fn()
        best = min(best, time.perf_counter() - start)
    return iterations / best if best > 0 else float("inf")


def measure(msg: Message, iterations: int) -> dict[str, float | int]:
    """Codec and bare-json encode+decode rates for one message."""
    wire = codec.to_wire_dict(msg)
    size = len(codec.encode(msg))

    def with_codec() -> object:
        return codec.decode(codec.encode(msg), max_size=MAX_SIZE)

    def bare() -> object:
        return json.loads(json.dumps(wire, ensure_ascii=False, separators=(",", ":")))

    codec_rate = _rate(with_codec, iterations)
    json_rate = _rate(bare, iterations)
    return {
        "bytes": size,
        "codec_msgs_per_s": round(codec_rate),
        "json_msgs_per_s": round(json_rate),
        "ratio": round(codec_rate / json_rate, 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--iterations", type=int, default=20_000, help="encode+decode rounds of the small message"
    )
    args = parser.parse_args(argv)
    iterations = max(1, args.iterations)
    result = {
        "benchmark": "proto.codec",
        "python": sys.version.split()[0],
        "iterations": iterations,
        "small": measure(small_message(), iterations),
        "pod_8k": measure(large_message(), max(1, iterations // 10)),
    }
    print(json.dumps(result, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
