"""Every size, count and queue bound in one place.

Most upstream KubeEdge CVEs were missing bounds, so nothing that reads from a
network, a file or a peer may do so without one of these (or a config value
that is validated against them). Add new maximums here, with a comment saying
why the number is what it is; never inline a bound elsewhere.
"""

from __future__ import annotations

from typing import Final

KiB: Final = 1024
MiB: Final = 1024 * KiB

# --- cloud-edge link -------------------------------------------------------------------------------
MAX_FRAME_BYTES: Final = 12 * MiB
"""Largest websocket message either hub accepts. Upstream sets none; we match the router's 12 MiB REST bound,
which is above etcd's 1.5 MiB object limit plus JSON framing."""

MAX_JSON_DEPTH: Final = 64
"""Deepest JSON nesting the codec accepts; Kubernetes objects stay far below (pods reach ~12)."""

CERT_HTTP_MAX_BODY: Final = 1 * MiB
"""Largest request body of the certificate service (upstream's 1 MiB)."""

EDGE_INBOUND_QUEUE: Final = 100
"""Cloud messages buffered in EdgeHub before the oldest is dropped (upstream's FIFO of 100)."""

NODE_SEND_QUEUE: Final = 2048
"""Per-node cloud-to-edge queue slots (acked and no-ack queues each)."""

# --- module runtime ----------------------------------------------------------------------------------
MODULE_QUEUE: Final = 1024
"""Slots of a module's inbox (upstream beehive's 1024-slot channel)."""

# --- config and local files --------------------------------------------------------------------------
MAX_CONFIG_BYTES: Final = 1 * MiB
"""Largest cloudcore.yaml / edgecore.yaml accepted."""

# --- embedded API server -----------------------------------------------------------------------------
APISERVER_MAX_BODY: Final = 3 * MiB
"""Default request body limit of the embedded API server (etcd's request limit)."""

# --- edge services -----------------------------------------------------------------------------------
SERVICEBUS_MAX_BODY: Final = 5 * MiB
"""Largest ServiceBus request or response body (upstream 5 MB; CVE-2022-31073 was an unbounded body)."""

# --- edged -------------------------------------------------------------------------------------------
EDGED_MAX_MANIFEST_BYTES: Final = 1 * MiB
"""Largest static pod manifest read from ``staticPodPath`` (a pod object is far below etcd's 1.5 MiB)."""

EDGED_MAX_MANIFESTS: Final = 256
"""Static pod manifest files read per scan; more than ``maxPods`` (110) is already a misconfiguration."""

EDGED_MAX_VOLUME_BYTES: Final = 4 * MiB
"""Total bytes one configMap/secret/projected/downwardAPI volume may write (configmaps cap at 1 MiB each;
a projected volume may combine a few)."""

EDGED_MAX_VOLUME_FILES: Final = 1024
"""Files one such volume may write: bounds the ..data directory a hostile configmap could fan out."""

EDGED_DOCKER_THREADS: Final = 8
"""Docker SDK calls running at once in worker threads; each holds one HTTP connection to dockerd (the SDK's
pool holds 10 per client, so we stay below it)."""

EDGED_PROBE_OUTPUT_BYTES: Final = 10 * KiB
"""Probe output kept for the status message (kubelet keeps 10 KiB of exec output)."""

EDGED_HTTP_PROBE_BYTES: Final = 10 * KiB
"""Bytes of an httpGet probe response read before deciding (kubelet reads at most 10 KiB)."""
