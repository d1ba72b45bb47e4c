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

MAX_RESOURCE_CHARS: Final = 1024
"""Longest ``route.resource`` accepted: ``node/<253>/device/<63>/<253>/twin/edge_updated`` is ~600; the rest is slack.
Mirrored by ``proto.resource.MAX_RESOURCE_CHARS`` (proto cannot import kit; a test keeps them equal)."""

CERT_HTTP_MAX_BODY: Final = 1 * MiB
"""Largest request body of the certificate service (upstream's 1 MiB)."""

EDGE_INBOUND_QUEUE: Final = 100
"""Cloud messages buffered in EdgeHub before the oldest is dropped (upstream's FIFO of 100)."""

NODE_SEND_QUEUE: Final = 2048
"""Per-node cloud-to-edge queue slots (acked and no-ack queues each)."""

CLOUDHUB_PENDING_HANDSHAKES: Final = 256
"""Connections CloudHub handshakes at once. A P-256 mTLS handshake costs ~2 ms of CPU, so 256 in flight is
~0.5 s of work queued: enough to keep one core busy, small enough that a flood of silent clients holds at most
256 descriptors for ``handshake_timeout`` while the kernel backlog absorbs the rest."""

NODE_ACKED_VERSIONS: Final = 2048
"""UIDs per session whose last acknowledged resourceVersion CloudHub remembers, so an older version arriving
after an ack is not re-sent (ObjectSync is the durable record; this covers the gap). ~100 B each: ~200 KiB per node at worst, and a node rarely holds more than a few hundred objects."""

# --- module runtime ----------------------------------------------------------------------------------
MODULE_QUEUE: Final = 1024
"""Slots of a module's inbox (upstream beehive's 1024-slot channel)."""

MODULE_SEND_WAIT: Final = 20.0
"""Longest a send waits for room in a full module inbox before it fails. Upstream can block a producer forever
behind a stuck consumer; a bound turns that into an error the producer sees and logs. 20 s is far above any
healthy consumer's drain time of 1024 messages."""

SYNC_TIMEOUT: Final = 30.0
"""Default wait of a synchronous request for its reply (upstream beehive's SendSync default)."""

# --- config and local files --------------------------------------------------------------------------
MAX_CONFIG_BYTES: Final = 1 * MiB
"""Largest cloudcore.yaml / edgecore.yaml accepted."""

# --- embedded API server -----------------------------------------------------------------------------
APISERVER_MAX_BODY: Final = 3 * MiB
"""Default request body limit of the embedded API server (etcd's request limit)."""

# --- edge services -----------------------------------------------------------------------------------
SERVICEBUS_MAX_BODY: Final = 5 * MiB
"""Largest ServiceBus request or response body (upstream 5 MB; CVE-2022-31073 was an unbounded body)."""
