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

# --- devices (DeviceTwin, DeviceController, ServiceBus) ---------------------------------------------------

TWIN_MAX_PAYLOAD: Final = 256 * KiB
"""Largest MQTT payload DeviceTwin parses: twin documents are small; a bigger one is a broken mapper."""

TWIN_MAX_PROPERTIES: Final = 1024
"""Most twin properties per device (and per update): bounds the rows one message can write."""

TWIN_MAX_DEVICES: Final = 100_000
"""Most devices one edge node keeps: bounds the device table and membership messages."""

TWIN_OUTBOX_MAX: Final = 4096
"""Unconfirmed twin reports kept for resend; past it the oldest are dropped (the newest state wins)."""

TWIN_RESEND_INTERVAL: Final = 60.0
"""Seconds an unconfirmed twin report waits before it is sent again (upstream's confirm map: 60 s)."""

SERVICEBUS_APP_TIMEOUT: Final = 10.0
"""Seconds a cloud-to-edge call to a local app may take (upstream's HTTP client timeout: 10 s)."""

SERVICEBUS_MAX_HEADER_BYTES: Final = 64 * KiB
"""Largest request/response head ServiceBus reads (h11's own default is 16 KiB; apps send cookies)."""

SERVICEBUS_MAX_CONNECTIONS: Final = 256
"""Concurrent HTTP connections ServiceBus serves; extra ones wait in the listen backlog."""

DEVICECONTROLLER_WATCH_TIMEOUT_S: Final = 30
"""Server-side timeout of one watch request; the watcher then re-lists from its resourceVersion."""

# --- cloud controllers (Kubernetes client) -------------------------------------------------------------
KUBE_CLIENT_THREADS: Final = 16
"""Worker threads running blocking Kubernetes requests at once. Requests are mostly waiting on the network; 16
keeps a 2-core machine busy without thousands of threads, and the qps/burst token bucket is the real rate bound."""

KUBE_MAX_WATCHES: Final = 16
"""Watch streams (each a thread) at once: cloudcore watches nodes, pods, configmaps, secrets and two sync kinds."""

KUBE_REQUEST_TIMEOUT: Final = 60.0
"""Seconds one non-watch request may take before it counts as failed (client-go's default has none; a hung
connection must not pin a worker thread forever)."""

KUBE_MAX_BODY: Final = 64 * MiB
"""Largest response body or watch line read from the API server: well above etcd's 3 MiB object limit, so only a
large LIST reaches it; a bigger answer is refused rather than buffered."""

KUBE_WATCH_TIMEOUT_S: Final = 600
"""Longest watch asked for (timeoutSeconds; a random value from half of it): client-go's reflector uses 5-10 min so
that dead connections are replaced and watches spread over API server instances."""

CONTROLLER_MAX_QUERY_WORKERS: Final = 64
"""Upstream requests from edges handled at once by EdgeController (upstream runs nodeLimit workers per kind; here
the Kubernetes client's threads and token bucket bound the real concurrency, this bounds the tasks waiting on them)."""

CONTROLLER_NODE_OUTBOX: Final = 128
"""Downstream messages queued per edge node inside EdgeController while its sender writes the ObjectSync and
hands the message to CloudHub; about maxPods (110) so a node's initial fan-out rarely waits, small enough that
1,000 nodes hold at most ~128k queued object references."""

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
"""Docker SDK calls running at once in worker threads; each holds one HTTP connection to dockerd (see
:data:`EDGED_DOCKER_CONNECTIONS`)."""

EDGED_EXEC_THREADS: Final = 4
"""Exec probes waiting on dockerd at once. They run outside :data:`EDGED_DOCKER_THREADS` and are abandoned
when the probe times out (the command may hang for as long as it likes): hung probes must never starve the
relists, kills and removals every pod depends on. A thread abandoned this way keeps its slot until dockerd
answers, so this also bounds the threads hung probes can pile up."""

EDGED_DOCKER_CONNECTIONS: Final = EDGED_DOCKER_THREADS + EDGED_EXEC_THREADS + 1
"""HTTP connections edged keeps to dockerd: one per worker thread plus the event stream."""

EDGED_DELETED_PODS_REMEMBERED: Final = 1024
"""Gracefully deleted pods edged remembers after reporting them gone, so a late echo of the deletion (the
cloud keeps sending the pod until the final delete lands) does not send a second final delete: far more than
the deletions in flight on one node."""

EDGED_PROBE_OUTPUT_BYTES: Final = 10 * KiB
"""Probe output kept for the status message (kubelet keeps 10 KiB of exec output)."""

EDGED_HTTP_PROBE_BYTES: Final = 10 * KiB
"""Bytes of an httpGet probe response read before deciding (kubelet reads at most 10 KiB)."""

# --- MQTT (EventBus, edge broker) --------------------------------------------------------------------
MQTT_MAX_TOPIC_BYTES: Final = 1024
"""Longest MQTT topic name or filter; mirrors ``proto.mqtt.MAX_TOPIC_BYTES`` (a test keeps them equal). KubeEdge's
longest device topic is about 350 bytes."""

MQTT_MAX_CLIENT_ID_BYTES: Final = 256
"""Longest MQTT client id; mirrors ``proto.mqtt.MAX_CLIENT_ID_BYTES``."""

MQTT_MAX_PACKET_BYTES: Final = 1 * MiB
"""Largest MQTT packet the broker and EventBus's client accept. Twin documents are a few KiB; upstream's gomqtt
broker has no bound at all, which lets one client make the broker hold 256 MiB."""

MQTT_MAX_CLIENTS: Final = 1000
"""Connections the edge broker serves at once; mappers and apps on one node are a handful. Past it a new
connection is closed at once so the ones already served keep working."""

MQTT_MAX_SUBSCRIPTIONS: Final = 1024
"""Subscriptions one client may hold; a mapper subscribes a few topics per device."""

MQTT_MAX_RETAINED: Final = 10_000
"""Retained messages the edge broker keeps; past it, new retained topics are published but not retained."""

MQTT_MAX_INFLIGHT: Final = 20
"""Unacknowledged QoS 1 messages towards one client (mosquitto's max_inflight_messages default)."""

MQTT_CONNECT_TIMEOUT: Final = 10.0
"""Seconds a new connection has to send CONNECT before it is closed (a silent socket must not hold a slot)."""

MQTT_MAX_SESSION_QUEUE: Final = 100_000
"""Largest mqttSessionQueueSize accepted; each slot may hold a message of up to MQTT_MAX_PACKET_BYTES."""

EVENTBUS_PUBLISH_QUEUE: Final = 100
"""Messages EventBus holds for a broker it is not connected to (upstream holds none: it drops them). The oldest
is dropped first."""

MQTT_SEND_TIMEOUT: Final = 30.0
"""Seconds an MQTT peer may take to accept one write before it is dropped: a client that stops reading must
not hold its broker task (and the memory of its queue) forever."""

MQTT_ACK_TIMEOUT: Final = 10.0
"""Seconds EventBus's client waits for CONNACK/SUBACK/UNSUBACK before it gives the connection up."""

MAX_TLS_FILE_BYTES: Final = 1 * MiB
"""Largest PEM file (CA bundle, certificate, key) read from config paths; a system CA bundle is ~220 KiB."""

# --- on-device status API ----------------------------------------------------------------------------
STATUS_MAX_PODS: Final = 256
"""Pods listed by the status API: above maxPods (110) plus static pods, so a healthy node is never cut."""

STATUS_MAX_CONTAINERS: Final = 32
"""Containers (init + app) listed per pod; real pods have a handful, so more means a broken spec."""

STATUS_MAX_DEVICES: Final = 512
"""Devices listed by the status API; edge nodes with mappers typically carry tens of devices."""

STATUS_MAX_TWINS: Final = 64
"""Twin properties listed per device; a device model with more is unreadable on a terminal anyway."""

STATUS_MAX_CONDITIONS: Final = 16
"""Node conditions listed (kubelet sets five) and probe results per container (three kinds)."""

STATUS_EVENTS: Final = 200
"""Slots of the recent-events ring buffer; older events are overwritten, so a noisy module costs fixed memory."""

STATUS_MAX_STRING: Final = 512
"""Longest string value in a status response; longer ones (error texts, twin values) end in an ellipsis."""

STATUS_MAX_RESPONSE_BYTES: Final = 1 * MiB
"""Largest status response body: list tails are dropped (and named in ``truncated``) until it fits. A full node
(256 pods, 200 events) renders to ~400 KiB."""

STATUS_MAX_REQUEST_BYTES: Final = 8 * KiB
"""Largest request line + headers the status server reads; its requests are one GET and a few headers."""

STATUS_MAX_CONNECTIONS: Final = 16
"""Concurrent status-API connections; a handful of TUIs and scripts read it, more are refused at once."""

STATUS_REQUEST_TIMEOUT: Final = 5.0
"""Seconds a client has to send its request and take its response before the connection is closed."""

TWIN_COMMIT_BATCH: Final = 256
"""Most twin requests committed in one transaction (and queued while one commits): one fsync per burst."""

# --- cloud Router -----------------------------------------------------------------------------------------

ROUTER_MAX_BODY: Final = 12 * MiB
"""Largest REST request body the Router reads (upstream's MaxMessageBytes: 12 MiB)."""

ROUTER_MAX_HEADER_BYTES: Final = 64 * KiB
"""Largest REST request head the Router reads (as ServiceBus: h11's 16 KiB default is short for cookies)."""

ROUTER_MAX_CONNECTIONS: Final = 256
"""Concurrent REST connections (each holds at most one call waiting for an edge); more wait in the backlog."""

ROUTER_MAX_RULES: Final = 10_000
"""Most Rules (and, separately, RuleEndpoints) the Router keeps; beyond it new ones are refused with a log."""

ROUTER_HEAD_TIMEOUT_S: Final = 30.0
"""Seconds a REST client has to send its request (head and body) before the connection is dropped."""

ROUTER_RULE_ERRORS: Final = 10
"""Most recent failure messages kept in a Rule's ``status.errors`` (upstream appends without bound)."""

ROUTER_STATUS_FLUSH_S: Final = 2.0
"""Seconds the Router gathers rule counts before writing them to Rule status: one PATCH per rule per period,
not one per request."""
