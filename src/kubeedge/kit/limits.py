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

CERT_HTTP_MAX_HEADER: Final = 16 * KiB
"""Largest request line + headers of the certificate service; its requests carry four short headers."""

CERT_HTTP_MAX_CONNECTIONS: Final = 512
"""Concurrent connections the certificate service serves; more are closed at once so a flood of joins or a
slowloris cannot exhaust file descriptors needed by the websocket hub."""

CERT_HTTP_MAX_RESPONSE: Final = 1 * MiB
"""Largest certificate-service response a client (keadm, EdgeHub) reads: a DER certificate is ~1 KiB."""

PKI_MAX_FILE_BYTES: Final = 64 * KiB
"""Largest PEM certificate or key file read; a P-256 key or certificate chain is a few KiB at most."""

TOKEN_MAX_BYTES: Final = 4 * KiB
"""Largest join token accepted (file, flag or bearer header); a real one is ~190 bytes."""

EDGE_INBOUND_QUEUE: Final = 100
"""Cloud messages buffered in EdgeHub before the oldest is dropped (upstream's FIFO of 100)."""

NODE_SEND_QUEUE: Final = 2048
"""Per-node cloud-to-edge queue slots (acked and no-ack queues each)."""

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

MAX_CONFIG_NODES: Final = 100_000
"""Most values a parsed config may hold, counting every alias use: YAML aliases let a tiny file expand into an
exponential tree (billion laughs). Upstream's default edgecore.yaml has about 250."""

MAX_CONFIG_DEPTH: Final = 32
"""Deepest nesting of a parsed config; upstream's files reach 7 levels."""

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

# --- edge MetaManager store --------------------------------------------------------------------------
META_MAX_DB_BYTES: Final = 512 * MiB
"""Largest edgecore.db (enforced with SQLite's max_page_count). A node holds at most maxPods (110) pods plus the
configmaps/secrets they mount, each under etcd's 1.5 MiB object limit; 512 MiB leaves room for hundreds of large
objects while keeping a runaway writer from filling the edge disk."""

META_MAX_KEY_CHARS: Final = 256
"""Longest meta key (upstream's ``meta.key`` is varchar(256))."""

META_MAX_TYPE_CHARS: Final = 32
"""Longest meta type (upstream's ``meta.type`` is varchar(32))."""

META_MAX_VALUE_BYTES: Final = 3 * MiB
"""Largest stored value: etcd's 3 MiB request limit bounds any object the cloud can send us."""

META_MAX_QUERY_ROWS: Final = 10_000
"""Most rows one type lookup returns; far above maxPods (110) and typical configmaps per namespace."""

META_MAX_QUERY_BYTES: Final = 64 * MiB
"""Most value bytes one type lookup returns, so a lookup cannot balloon edgecore's memory."""

META_GROUP_COMMIT_MAX: Final = 256
"""Most cloud messages written in one transaction (one fsync) before their acks go out. Bounds the ack delay
of the first message in a group and the work lost to a failed transaction; past ~100 the fsync is amortised."""

META_OUTBOX_MAX: Final = 2048
"""Edge-to-cloud messages kept while offline. Statuses supersede per object, so a node needs about
2 x maxPods (110) plus node status; the oldest entries are dropped beyond this."""

META_MAX_REMOTE_QUERIES: Final = 64
"""Remote queries (and remote inserts) in flight at once; more wait, which backpressures edged."""
