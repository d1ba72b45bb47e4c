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

APISERVER_WATCH_WINDOW: Final = 10_000
"""Change events the embedded API server keeps for watch resumption; older resourceVersions get 410 Gone.
Sized like a few minutes of a busy small cluster (kube-apiserver keeps a per-resource cache of 100..1000s)."""

APISERVER_DISCARD_MAX_BYTES: Final = 64 * MiB
"""Most of a rejected (413) body the API server reads and drops so a client that sends it all sees the 413."""

APISERVER_MAX_HEADER_BYTES: Final = 64 * KiB
"""Largest request line plus headers (client-go sends well under 4 KiB; bearer JWTs are ~1 KiB)."""

APISERVER_MAX_LIST_LIMIT: Final = 10_000
"""Largest page a chunked list returns even if the client asks for more."""

APISERVER_MAX_CONNECTIONS: Final = 1024
"""Concurrent client connections (every watch holds one); further connections wait in the accept backlog."""

APISERVER_IDLE_TIMEOUT_S: Final = 300.0
"""Seconds a keep-alive connection may sit idle between requests before it is closed."""

APISERVER_MAX_WATCH_TIMEOUT_S: Final = 3600
"""Longest watch a client may ask for with timeoutSeconds; watches without it end after a random 30..60 min."""

# --- edge services -----------------------------------------------------------------------------------
SERVICEBUS_MAX_BODY: Final = 5 * MiB
"""Largest ServiceBus request or response body (upstream 5 MB; CVE-2022-31073 was an unbounded body)."""
