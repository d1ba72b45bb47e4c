"""The typed model of ``edgecore.yaml`` (``edgecore.config.kubeedge.io/v1alpha2``, kind ``EdgeCore``).

Owns every edgecore default: each field below carries the upstream default it mirrors (upstream's
``NewDefaultEdgeCoreConfig``), and :data:`KUBELET_PASSTHROUGH` holds the defaults of the inlined kubelet keys
kubeedge-py keeps but does not interpret. No other module repeats a default.

Host-dependent upstream defaults (the cloud address in ``edgeHub``, ``edged.hostnameOverride``) are empty here;
:func:`kubeedge.kit.config.default_edgecore` fills them from :class:`~kubeedge.kit.config.HostFacts`.

kubeedge-py extension: ``modules.statusServer`` (not in upstream) configures the read-only on-device status API
on a unix socket; see :class:`StatusServer`.

Invariants: an :class:`EdgeCoreConfig` returned by the loaders has passed :func:`check`. Failure: invalid input
raises :class:`~kubeedge.kit.config.ConfigError` naming the key path.
"""

# setting()/section()/extras() return dataclasses.field() specifiers, which ruff cannot see through.
# ruff: noqa: RUF009

from __future__ import annotations

import dataclasses
from typing import Any, Final

from kubeedge.kit.config._schema import ConfigError, extras, port_number, positive, section, setting

API_VERSION: Final = "edgecore.config.kubeedge.io/v1alpha2"
KIND: Final = "EdgeCore"
PROJECT_ID: Final = "e632aba927ea4ac2b575ec1603d56f10"
"""Upstream's fixed ``edgeHub.projectID``."""

CLOUDHUB_WEBSOCKET_PORT: Final = 10000
CLOUDHUB_QUIC_PORT: Final = 10001
CLOUDHUB_HTTPS_PORT: Final = 10002

MIN_PATHS: Final = (
    "apiVersion",
    "kind",
    "database.dataSource",
    "edgecoreVersion",
    "modules.deviceTwin.dmiSockPath",
    "modules.deviceTwin.enable",
    "modules.edgeHub.enable",
    "modules.edgeHub.heartbeat",
    "modules.edgeHub.httpServer",
    "modules.edgeHub.tlsCaFile",
    "modules.edgeHub.tlsCertFile",
    "modules.edgeHub.tlsPrivateKeyFile",
    "modules.edgeHub.token",
    "modules.edgeHub.websocket",
    "modules.edged",
    "modules.eventBus.enable",
    "modules.eventBus.mqttMode",
    "modules.eventBus.mqttPassword",
    "modules.eventBus.mqttPubClientID",
    "modules.eventBus.mqttQOS",
    "modules.eventBus.mqttRetain",
    "modules.eventBus.mqttServerExternal",
    "modules.eventBus.mqttServerInternal",
    "modules.eventBus.mqttSubClientID",
    "modules.eventBus.mqttUsername",
)
"""The keys of upstream's ``edgecore --minconfig``."""


# --- database ------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Database:
    """The local metadata store."""

    alias_name: str = setting("default", "database alias (upstream: default)")
    data_source: str = setting(
        "/var/lib/kubeedge/edgecore.db", "SQLite file (upstream: /var/lib/kubeedge/edgecore.db)"
    )
    driver_name: str = setting(
        "sqlite3", "database driver; only sqlite3 (upstream: sqlite3)", choices=("sqlite3",)
    )


# --- edgeHub -------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class EdgeHubWebSocket:
    """The websocket link to CloudHub."""

    enable: bool = setting(True, "connect to CloudHub over websocket (upstream: true)")
    handshake_timeout: int = positive(30, "seconds the websocket handshake may take (upstream: 30)")
    read_deadline: int = positive(15, "read deadline in seconds (upstream: 15)")
    server: str = setting("", "CloudHub websocket host:port (upstream: <cloud IP>:10000)", hostport=True)
    write_deadline: int = positive(15, "write deadline in seconds (upstream: 15)")


@dataclasses.dataclass(frozen=True)
class EdgeHubQUIC:
    """The QUIC link to CloudHub (accepted for compatibility; kubeedge-py uses websocket only)."""

    enable: bool = setting(False, "connect over QUIC (upstream: false; not implemented here)")
    handshake_timeout: int = positive(30, "seconds the QUIC handshake may take (upstream: 30)")
    read_deadline: int = positive(15, "read deadline in seconds (upstream: 15)")
    server: str = setting("", "CloudHub QUIC host:port (upstream: <cloud IP>:10001)", hostport=True)
    write_deadline: int = positive(15, "write deadline in seconds (upstream: 15)")


@dataclasses.dataclass(frozen=True)
class EdgeHub:
    """EdgeHub: the cloud-facing hub."""

    enable: bool = setting(True, "run EdgeHub (upstream: true)")
    heartbeat: int = positive(15, "seconds between keepalive pings to CloudHub (upstream: 15)")
    http_server: str = setting("", "CloudHub certificate service URL (upstream: https://<cloud IP>:10002)")
    message_burst: int = positive(60, "burst of messages sent to the cloud (upstream: 60)")
    message_qps: int = positive(30, "messages per second sent to the cloud (upstream: 30)", key="messageQPS")
    project_id: str = setting(
        PROJECT_ID, "project id in the connect URL (upstream: fixed value)", key="projectID"
    )
    quic: EdgeHubQUIC = section(EdgeHubQUIC, "QUIC link")
    rotate_certificates: bool = setting(True, "renew the edge certificate before it expires (upstream: true)")
    tls_ca_file: str = setting(
        "/etc/kubeedge/ca/rootCA.crt", "CA certificate (upstream: /etc/kubeedge/ca/rootCA.crt)"
    )
    tls_cert_file: str = setting(
        "/etc/kubeedge/certs/server.crt", "edge certificate (upstream: /etc/kubeedge/certs/server.crt)"
    )
    tls_private_key_file: str = setting(
        "/etc/kubeedge/certs/server.key", "edge private key (upstream: /etc/kubeedge/certs/server.key)"
    )
    token: str = setting("", "join token from keadm gettoken (upstream: empty)")
    websocket: EdgeHubWebSocket = section(EdgeHubWebSocket, "websocket link")


# --- edgeStream ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class EdgeStream:
    """EdgeStream: the edge end of the ``kubectl logs/exec`` tunnel."""

    enable: bool = setting(False, "run EdgeStream (upstream: false)")
    handshake_timeout: int = positive(30, "seconds the tunnel handshake may take (upstream: 30)")
    read_deadline: int = positive(15, "read deadline in seconds (upstream: 15)")
    server: str = setting(
        "127.0.0.1:10004", "CloudStream tunnel host:port (upstream: 127.0.0.1:10004)", hostport=True
    )
    tls_tunnel_ca_file: str = setting(
        "/etc/kubeedge/ca/rootCA.crt",
        "tunnel CA (upstream: /etc/kubeedge/ca/rootCA.crt)",
        key="tlsTunnelCAFile",
    )
    tls_tunnel_cert_file: str = setting(
        "/etc/kubeedge/certs/server.crt", "tunnel certificate (upstream: /etc/kubeedge/certs/server.crt)"
    )
    tls_tunnel_private_key_file: str = setting(
        "/etc/kubeedge/certs/server.key", "tunnel private key (upstream: /etc/kubeedge/certs/server.key)"
    )
    write_deadline: int = positive(15, "write deadline in seconds (upstream: 15)")


# --- edged ---------------------------------------------------------------------------------------------------

KUBELET_PASSTHROUGH: Final[dict[str, Any]] = {
    # Upstream KubeletConfiguration keys edgecore's defaults set; kubeedge-py keeps them, does not interpret them.
    "cgroupsPerQOS": True,
    "configMapAndSecretChangeDetectionStrategy": "Get",
    "containerLogMaxFiles": 5,
    "containerLogMaxSize": "10Mi",
    "containerLogMaxWorkers": 1,
    "containerLogMonitorInterval": "10s",
    "contentType": "application/json",
    "cpuCFSQuota": True,
    "cpuCFSQuotaPeriod": "100ms",
    "cpuManagerPolicy": "none",
    "cpuManagerReconcilePeriod": "10s",
    "crashLoopBackOff": {},
    "enableControllerAttachDetach": True,
    "enableDebugFlagsHandler": True,
    "enableDebuggingHandlers": True,
    "enableProfilingHandler": True,
    "enableSystemLogHandler": True,
    "enforceNodeAllocatable": ["pods"],
    "eventBurst": 100,
    "eventRecordQPS": 50,
    "evictionPressureTransitionPeriod": "5m0s",
    "failCgroupV1": False,
    "failSwapOn": False,
    "hairpinMode": "promiscuous-bridge",
    "iptablesDropBit": 15,
    "iptablesMasqueradeBit": 14,
    "localStorageCapacityIsolation": True,
    "logging": {
        "flushFrequency": "5s",
        "format": "text",
        "options": {"json": {"infoBufferSize": "0"}, "text": {"infoBufferSize": "0"}},
        "verbosity": 0,
    },
    "makeIPTablesUtilChains": True,
    "maxOpenFiles": 1000000,
    "memoryManagerPolicy": "None",
    "memorySwap": {},
    "memoryThrottlingFactor": 0.9,
    "nodeStatusMaxImages": 0,
    "oomScoreAdj": -999,
    "podPidsLimit": -1,
    "registryBurst": 10,
    "registryPullQPS": 5,
    "seccompDefault": False,
    "shutdownGracePeriod": "0s",
    "shutdownGracePeriodCriticalPods": "0s",
    "streamingConnectionIdleTimeout": "4h0m0s",
    "topologyManagerPolicy": "none",
    "topologyManagerScope": "container",
    "volumePluginDir": "/usr/libexec/kubernetes/kubelet-plugins/volume/exec/",
}
"""Defaults of the kubelet keys kept as-is (upstream edgecore's tailored kubelet defaults)."""

KUBELET_KNOWN_UNSET: Final = (
    # Further upstream KubeletConfiguration keys users set in edgecore.yaml; accepted and kept, no default.
    "allowedUnsafeSysctls",
    "cgroupRoot",
    "cpuManagerPolicyOptions",
    "enableServer",
    "evictionMaxPodGracePeriod",
    "evictionMinimumReclaim",
    "evictionSoft",
    "evictionSoftGracePeriod",
    "featureGates",
    "imagePullCredentialsVerificationPolicy",
    "kubeReserved",
    "kubeReservedCgroup",
    "kubeletCgroups",
    "memoryManagerPolicyOptions",
    "podCIDR",
    "podsPerCore",
    "providerID",
    "registerWithTaints",
    "reservedMemory",
    "reservedSystemCPUs",
    "runtimeCgroups",
    "shutdownGracePeriodByPodPriority",
    "systemCgroups",
    "systemReserved",
    "systemReservedCgroup",
    "topologyManagerPolicyOptions",
)


@dataclasses.dataclass(frozen=True)
class TailoredKubeletConfig:
    """The kubelet settings upstream inlines into ``edged`` (a subset of KubeletConfiguration).

    Keys kubeedge-py uses are typed fields; the other known upstream keys are kept in ``extras`` unread.
    """

    address: str = setting(
        "127.0.0.1", "address of edged's local read-only endpoint (upstream: 127.0.0.1)", ip=True
    )
    cgroup_driver: str = setting(
        "cgroupfs",
        "cgroup driver of the container runtime (upstream: cgroupfs)",
        choices=("cgroupfs", "systemd"),
    )
    cluster_dns: tuple[str, ...] = setting(
        (), "DNS servers given to pods (upstream: unset)", key="clusterDNS", ip=True
    )
    cluster_domain: str = setting("cluster.local", "cluster DNS domain (upstream: cluster.local)")
    container_runtime_endpoint: str = setting(
        "unix:///run/containerd/containerd.sock",
        "container runtime socket; kubeedge-py runs pods on a Docker engine, so a unix:// or tcp:// Docker "
        "endpoint here is used, and the upstream default (containerd's socket) means DOCKER_HOST or "
        "unix:///var/run/docker.sock (upstream: containerd's socket)",
    )
    eviction_hard: dict[str, str] = setting(
        {
            "imagefs.available": "15%",
            "imagefs.inodesFree": "5%",
            "memory.available": "100Mi",
            "nodefs.available": "10%",
            "nodefs.inodesFree": "5%",
        },
        "hard eviction thresholds (upstream: kubelet's defaults)",
    )
    file_check_frequency: float = setting(
        20.0, "how often static pod manifests are re-read (upstream: 20s)", duration=True, gt=0
    )
    image_gc_high_threshold_percent: int = setting(
        85,
        "disk usage % that starts image GC (upstream: 85)",
        key="imageGCHighThresholdPercent",
        ge=0,
        le=100,
    )
    image_gc_low_threshold_percent: int = setting(
        80,
        "disk usage % image GC frees down to (upstream: 80)",
        key="imageGCLowThresholdPercent",
        ge=0,
        le=100,
    )
    image_maximum_gc_age: float = setting(
        0.0,
        "unused images older than this are removed; 0s = never (upstream: 0s)",
        key="imageMaximumGCAge",
        duration=True,
        ge=0,
    )
    image_minimum_gc_age: float = setting(
        120.0,
        "unused images younger than this are kept (upstream: 2m0s)",
        key="imageMinimumGCAge",
        duration=True,
        ge=0,
    )
    image_service_endpoint: str = setting(
        "unix:///run/containerd/containerd.sock", "CRI image service socket (upstream: containerd's socket)"
    )
    max_pods: int = positive(110, "most pods on this node (upstream: 110)")
    node_lease_duration_seconds: int = positive(40, "node lease duration in seconds (upstream: 40)")
    node_status_report_frequency: float = setting(
        300.0, "longest gap between node status reports (upstream: 5m0s)", duration=True, gt=0
    )
    node_status_update_frequency: float = setting(
        10.0, "how often node status is computed (upstream: 10s)", duration=True, gt=0
    )
    pod_logs_dir: str = setting("/var/log/pods", "pod log directory (upstream: /var/log/pods)")
    read_only_port: int = setting(
        10350, "edged's read-only port; 0 disables (upstream: 10350)", ge=0, le=65535
    )
    register_node: bool = setting(True, "register the node with the cloud (upstream: true)")
    resolv_conf: str = setting(
        "/etc/resolv.conf", "resolver config given to pods (upstream: /etc/resolv.conf)"
    )
    runtime_request_timeout: float = setting(
        120.0, "timeout of CRI requests except long-running ones (upstream: 2m0s)", duration=True, gt=0
    )
    serialize_image_pulls: bool = setting(True, "pull one image at a time (upstream: true)")
    static_pod_path: str = setting(
        "/etc/kubeedge/manifests", "static pod manifests (upstream: /etc/kubeedge/manifests)"
    )
    sync_frequency: float = setting(
        60.0, "max period between pod syncs (upstream: 1m0s)", duration=True, gt=0
    )
    volume_stats_agg_period: float = setting(
        60.0, "how often volume usage is computed (upstream: 1m0s)", duration=True, ge=0
    )
    extras: dict[str, Any] = extras(
        KUBELET_PASSTHROUGH,
        "upstream KubeletConfiguration key; kept but not interpreted by kubeedge-py",
        also_known=KUBELET_KNOWN_UNSET,
    )


EDGED_KNOWN_UNSET: Final = (
    # Further upstream edged flags (TailoredKubeletFlag); accepted and kept, no default.
    "cniBinDir",
    "cniCacheDir",
    "cniConfDir",
    "containerRuntime",
    "customInterfaceName",
    "dockerEndpoint",
    "dockershimRootDirectory",
    "experimentalCheckNodeCapabilitiesBeforeMount",
    "experimentalMounterPath",
    "experimentalNodeAllocatableIgnoreEvictionThreshold",
    "imagePullProgressDeadline",
    "keepTerminatedPodVolumes",
    "masterServiceNamespace",
    "networkPluginMTU",
    "networkPluginName",
    "nonMasqueradeCidr",
    "registerNode",
    "registerWithTaints",
    "remoteImageEndpoint",
    "remoteRuntimeEndpoint",
    "runtimeCgroups",
    "seccompDefault",
    "seccompProfileRoot",
    "windowsPriorityClass",
    "windowsService",
)


@dataclasses.dataclass(frozen=True)
class Edged:
    """Edged: the lightweight kubelet."""

    enable: bool = setting(True, "run Edged (upstream: true)")
    hostname_override: str = setting(
        "", "node name; empty = the lowercased hostname (upstream: the hostname)"
    )
    node_ip: str = setting(
        "",
        "node IP reported to the cloud; empty = the host's first IP (upstream: unset)",
        key="nodeIP",
        ip=True,
    )
    node_labels: dict[str, str] = setting({}, "extra labels set on the node object (upstream: unset)")
    max_container_count: int = setting(-1, "most dead containers kept; -1 = no limit (upstream: -1)", ge=-1)
    max_per_pod_container_count: int = setting(1, "dead containers kept per pod (upstream: 1)", ge=0)
    minimum_gc_age: float = setting(
        0.0,
        "dead containers younger than this are kept (upstream: 0s)",
        key="minimumGCAge",
        duration=True,
        ge=0,
    )
    pod_sandbox_image: str = setting(
        "kubeedge/pause:3.6", "pause image of pods (upstream: kubeedge/pause:3.6)"
    )
    register_node_namespace: str = setting("default", "namespace the node registers in (upstream: default)")
    register_schedulable: bool = setting(True, "register the node as schedulable (upstream: true)")
    report_event: bool = setting(False, "report pod events to the cloud (upstream: false)")
    root_directory: str = setting("/var/lib/kubelet", "edged's state directory (upstream: /var/lib/kubelet)")
    tailored_kubelet_config: TailoredKubeletConfig = section(
        TailoredKubeletConfig, "kubelet settings inlined by upstream"
    )
    extras: dict[str, Any] = extras(
        {}, "upstream edged flag; kept but not interpreted by kubeedge-py", also_known=EDGED_KNOWN_UNSET
    )


# --- eventBus / metaManager / serviceBus / deviceTwin --------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class EventBusTLS:
    """TLS towards an external MQTT broker."""

    enable: bool = setting(False, "use TLS to the broker (upstream: false)")
    tls_mqtt_ca_file: str = setting(
        "/etc/kubeedge/ca/rootCA.crt",
        "broker CA (upstream: /etc/kubeedge/ca/rootCA.crt)",
        key="tlsMqttCAFile",
    )
    tls_mqtt_cert_file: str = setting(
        "/etc/kubeedge/certs/server.crt", "client certificate (upstream: /etc/kubeedge/certs/server.crt)"
    )
    tls_mqtt_private_key_file: str = setting(
        "/etc/kubeedge/certs/server.key", "client private key (upstream: /etc/kubeedge/certs/server.key)"
    )


@dataclasses.dataclass(frozen=True)
class EventBus:
    """EventBus: bridges MQTT devices and apps with the beehive bus."""

    enable: bool = setting(True, "run EventBus (upstream: true)")
    event_bus_tls: EventBusTLS = section(EventBusTLS, "broker TLS", key="eventBusTLS")
    mqtt_mode: int = setting(
        2, "0 internal broker, 1 both, 2 external broker (upstream: 2)", choices=(0, 1, 2)
    )
    mqtt_password: str = setting("", "broker password (upstream: empty)")
    mqtt_pub_client_id: str = setting("", "publisher client id (upstream: empty)", key="mqttPubClientID")
    mqtt_qos: int = setting(0, "QoS of published messages (upstream: 0)", key="mqttQOS", choices=(0, 1, 2))
    mqtt_retain: bool = setting(False, "publish with the retain flag (upstream: false)")
    mqtt_server_external: str = setting(
        "tcp://127.0.0.1:1883", "external broker URL (upstream: tcp://127.0.0.1:1883)"
    )
    mqtt_server_internal: str = setting(
        "tcp://127.0.0.1:1884", "internal broker URL (upstream: tcp://127.0.0.1:1884)"
    )
    mqtt_session_queue_size: int = positive(100, "internal broker session queue (upstream: 100)")
    mqtt_sub_client_id: str = setting("", "subscriber client id (upstream: empty)", key="mqttSubClientID")
    mqtt_username: str = setting("", "broker user name (upstream: empty)")


@dataclasses.dataclass(frozen=True)
class MetaServer:
    """MetaServer: the local list/watch endpoint for edge apps."""

    enable: bool = setting(False, "run MetaServer (upstream: false)")
    server: str = setting("127.0.0.1:10550", "listen host:port (upstream: 127.0.0.1:10550)", hostport=True)
    dummy_server: str = setting(
        "169.254.30.10:10550", "link-local alias address (upstream: 169.254.30.10:10550)", hostport=True
    )
    api_audiences: tuple[str, ...] = setting((), "accepted token audiences (upstream: null)")
    service_account_issuers: tuple[str, ...] = setting(
        ("https://kubernetes.default.svc.cluster.local",),
        "accepted token issuers (upstream: the in-cluster issuer)",
    )
    service_account_key_files: tuple[str, ...] = setting((), "token verification keys (upstream: null)")
    tls_ca_file: str = setting(
        "/etc/kubeedge/ca/rootCA.crt", "CA certificate (upstream: /etc/kubeedge/ca/rootCA.crt)"
    )
    tls_cert_file: str = setting(
        "/etc/kubeedge/certs/server.crt", "server certificate (upstream: /etc/kubeedge/certs/server.crt)"
    )
    tls_private_key_file: str = setting(
        "/etc/kubeedge/certs/server.key", "server private key (upstream: /etc/kubeedge/certs/server.key)"
    )


@dataclasses.dataclass(frozen=True)
class MetaManager:
    """MetaManager: the local metadata cache and its sync with the cloud."""

    enable: bool = setting(True, "run MetaManager (upstream: true)")
    context_send_group: str = setting("hub", "group metadata is sent to (upstream: hub)")
    context_send_module: str = setting("websocket", "module metadata is sent to (upstream: websocket)")
    remote_query_timeout: int = positive(60, "seconds to wait for a cloud answer (upstream: 60)")
    meta_server: MetaServer = section(MetaServer, "local list/watch endpoint")


@dataclasses.dataclass(frozen=True)
class ServiceBus:
    """ServiceBus: HTTP calls from the cloud to edge apps."""

    enable: bool = setting(False, "run ServiceBus (upstream: false)")
    port: int = port_number(9060, "listen port (upstream: 9060)")
    server: str = setting("127.0.0.1", "listen address (upstream: 127.0.0.1)")
    timeout: int = positive(60, "seconds an edge app call may take (upstream: 60)")


@dataclasses.dataclass(frozen=True)
class DeviceTwin:
    """DeviceTwin: device state and desired/reported twins."""

    enable: bool = setting(True, "run DeviceTwin (upstream: true)")
    dmi_sock_path: str = setting("/etc/kubeedge/", "directory of the DMI socket (upstream: /etc/kubeedge/)")


DEFAULT_STATUS_SOCKET: Final = "/var/run/kubeedge/edgecore-status.sock"
"""Where edgecore serves its status API unless ``modules.statusServer.socketPath`` says otherwise."""


@dataclasses.dataclass(frozen=True)
class StatusServer:
    """kubeedge-py extension (not in upstream): the read-only status API that ``edgecore tui`` reads.

    Served as HTTP/JSON on a unix socket, mode 0660, owned by root and ``group``; there is no TCP port.
    """

    enable: bool = setting(True, "serve the status API (kubeedge-py extension; default: true)")
    socket_path: str = setting(
        DEFAULT_STATUS_SOCKET, f"unix socket of the status API (default: {DEFAULT_STATUS_SOCKET})"
    )
    group: str = setting("root", "group (name or numeric id) allowed to read the socket (default: root)")


@dataclasses.dataclass(frozen=True)
class Disabled:
    """A module configured only by whether it runs, off by default."""

    enable: bool = setting(False, "run this module (upstream: false)")


@dataclasses.dataclass(frozen=True)
class EdgeModules:
    """The edge modules."""

    db_test: Disabled = section(Disabled, "DBTest: upstream's database self-test module")
    device_twin: DeviceTwin = section(DeviceTwin, "DeviceTwin: device twins")
    edge_hub: EdgeHub = section(EdgeHub, "EdgeHub: link to CloudHub")
    edge_stream: EdgeStream = section(EdgeStream, "EdgeStream: kubectl logs/exec tunnel")
    edged: Edged = section(Edged, "Edged: the lightweight kubelet")
    event_bus: EventBus = section(EventBus, "EventBus: MQTT bridge")
    meta_manager: MetaManager = section(MetaManager, "MetaManager: local metadata store")
    service_bus: ServiceBus = section(ServiceBus, "ServiceBus: cloud-to-app HTTP calls")
    status_server: StatusServer = section(
        StatusServer, "kubeedge-py extension: read-only status API on a unix socket", key="statusServer"
    )
    task_manager: Disabled = section(Disabled, "TaskManager: node jobs (upstream: off)")


# --- the file ------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class EdgeCoreConfig:
    """The whole ``edgecore.yaml``."""

    api_version: str = setting(API_VERSION, "config schema version", choices=(API_VERSION,))
    kind: str = setting(KIND, "config kind", choices=(KIND,))
    database: Database = section(Database, "local metadata store")
    edgecore_version: str = setting("", "edgecore version this file was written for (upstream: empty)")
    modules: EdgeModules = section(EdgeModules, "the edge modules")


def check(cfg: EdgeCoreConfig) -> None:
    """Cross-key checks that single fields cannot express; raises :class:`ConfigError`."""
    status = cfg.modules.status_server
    if not status.socket_path.startswith("/"):
        raise ConfigError(
            ["modules", "statusServer", "socketPath"], f"must be an absolute path, got {status.socket_path!r}"
        )
    if not status.group or any(c.isspace() or c in ":/" for c in status.group):
        raise ConfigError(
            ["modules", "statusServer", "group"], f"must be a group name or numeric id, got {status.group!r}"
        )
    kubelet = cfg.modules.edged.tailored_kubelet_config
    if kubelet.image_gc_low_threshold_percent > kubelet.image_gc_high_threshold_percent:
        raise ConfigError(
            ["modules", "edged", "tailoredKubeletConfig", "imageGCLowThresholdPercent"],
            f"must not exceed imageGCHighThresholdPercent ({kubelet.image_gc_high_threshold_percent}), "
            f"got {kubelet.image_gc_low_threshold_percent}",
        )
