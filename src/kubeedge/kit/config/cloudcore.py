"""The typed model of ``cloudcore.yaml`` (``cloudcore.config.kubeedge.io/v1alpha1``, kind ``CloudCore``).

Owns every cloudcore default: each field below carries the upstream default it mirrors (upstream's
``NewDefaultCloudCoreConfig``); no other module repeats a default. Keys are upstream's camelCase keys.

kubeedge-py extension: the top-level ``embeddedAPIServer`` section (not in upstream) selects the embedded
Kubernetes-compatible control plane; see :class:`EmbeddedAPIServer`.

Invariants: a :class:`CloudCoreConfig` returned by the loaders has passed :func:`check`. Failure: invalid input
raises :class:`~kubeedge.kit.config.ConfigError` naming the key path.
"""

# setting()/section()/extras() return dataclasses.field() specifiers, which ruff cannot see through.
# ruff: noqa: RUF009

from __future__ import annotations

import dataclasses
from typing import Final

from kubeedge.kit import limits
from kubeedge.kit.config._schema import ConfigError, port_number, positive, section, setting

API_VERSION: Final = "cloudcore.config.kubeedge.io/v1alpha1"
KIND: Final = "CloudCore"

MIN_PATHS: Final = (
    "apiVersion",
    "kind",
    "modules.cloudHub.advertiseAddress",
    "modules.cloudHub.enable",
    "modules.cloudHub.https",
    "modules.cloudHub.nodeLimit",
    "modules.cloudHub.tlsCAFile",
    "modules.cloudHub.tlsCAKeyFile",
    "modules.cloudHub.tlsCertFile",
    "modules.cloudHub.tlsPrivateKeyFile",
    "modules.cloudHub.unixsocket",
    "modules.cloudHub.websocket",
    "modules.iptablesManager",
    "modules.router",
)
"""The keys of upstream's ``cloudcore --minconfig``."""

MIN_NODE_LIMIT: Final = 1000
"""``modules.cloudHub.nodeLimit`` in upstream's minimal config (it differs from the full default of 500)."""


# --- kubeAPIConfig / commonConfig ----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class KubeAPIConfig:
    """How cloudcore reaches the Kubernetes API server."""

    master: str = setting("", "API server URL; overrides the kubeconfig's server (upstream: empty)")
    content_type: str = setting(
        "application/vnd.kubernetes.protobuf",
        "content type of requests to the API server (upstream: protobuf)",
    )
    qps: float = setting(2500.0, "client queries per second towards the API server (upstream: 2500)", gt=0)
    burst: int = setting(5000, "client burst towards the API server (upstream: 5000)", gt=0)
    kube_config: str = setting(
        "", "kubeconfig path; empty with empty master = embedded API server (upstream: empty)"
    )


@dataclasses.dataclass(frozen=True)
class MonitorServer:
    """The metrics and debug endpoint."""

    bind_address: str = setting(
        "127.0.0.1:9091", "host:port of the metrics server (upstream: 127.0.0.1:9091)", hostport=True
    )


@dataclasses.dataclass(frozen=True)
class CommonConfig:
    """Settings shared by all cloud modules."""

    tunnel_port: int = port_number(10350, "port edge nodes' stream tunnel is reached on (upstream: 10350)")
    monitor_server: MonitorServer = section(MonitorServer, "metrics server")


# --- cloudHub ------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CloudHubWebSocket:
    """The websocket listener edge nodes connect to."""

    enable: bool = setting(True, "serve edge nodes over websocket (upstream: true)")
    address: str = setting("0.0.0.0", "listen address (upstream: 0.0.0.0)", ip=True)
    port: int = port_number(10000, "listen port (upstream: 10000)")


@dataclasses.dataclass(frozen=True)
class CloudHubQUIC:
    """The QUIC listener (accepted for compatibility; kubeedge-py serves websocket only)."""

    enable: bool = setting(False, "serve edge nodes over QUIC (upstream: false; not implemented here)")
    address: str = setting("0.0.0.0", "listen address (upstream: 0.0.0.0)", ip=True)
    port: int = port_number(10001, "listen port (upstream: 10001)")
    max_incoming_streams: int = positive(10000, "most concurrent QUIC streams (upstream: 10000)")


@dataclasses.dataclass(frozen=True)
class CloudHubHTTPS:
    """The HTTPS certificate service (join token exchange and certificate signing)."""

    enable: bool = setting(True, "serve the certificate service (upstream: true)")
    address: str = setting("0.0.0.0", "listen address (upstream: 0.0.0.0)", ip=True)
    port: int = port_number(10002, "listen port (upstream: 10002)")


@dataclasses.dataclass(frozen=True)
class CloudHubUnixSocket:
    """The local unix socket for tools on the cloud host."""

    enable: bool = setting(True, "serve the unix socket (upstream: true)")
    address: str = setting(
        "unix:///var/lib/kubeedge/kubeedge.sock",
        "socket address (upstream: unix:///var/lib/kubeedge/kubeedge.sock)",
    )


@dataclasses.dataclass(frozen=True)
class NodeAuthorization:
    """The node authorizer."""

    enable: bool = setting(
        False, "restrict each edge node to its own objects (upstream: false unless listed in modes)"
    )


@dataclasses.dataclass(frozen=True)
class AuthorizationMode:
    """One authorization mode (upstream has only ``node``)."""

    node: NodeAuthorization = section(NodeAuthorization, "node authorization mode")


@dataclasses.dataclass(frozen=True)
class Authorization:
    """Authorization of edge node requests."""

    enable: bool = setting(False, "authorize edge node requests (upstream: false)")
    debug: bool = setting(True, "log denials without enforcing them (upstream: true)")
    modes: tuple[AuthorizationMode, ...] = setting(
        (AuthorizationMode(NodeAuthorization(enable=True)),),
        "authorization modes (upstream: [{node: {enable: true}}])",
    )


@dataclasses.dataclass(frozen=True)
class CloudHubNodeAuthorization:
    """kubeedge-py extension (not in upstream): the websocket's node identity check.

    With ``enable`` a connection's ``node_id`` header must equal ``<node>`` of its client certificate's CN
    ``system:node:<node>``, so one node's certificate cannot speak for another node. Upstream only checks
    this under ``authorization.enable`` (default false); kubeedge-py checks by default.
    """

    enable: bool = setting(
        True,
        "require client certificate CN system:node:<node_id> on the websocket "
        "(kubeedge-py extension; default: true)",
    )


@dataclasses.dataclass(frozen=True)
class CloudHub:
    """CloudHub: the edge-facing hub."""

    enable: bool = setting(True, "run CloudHub (upstream: true)")
    keepalive_interval: int = positive(
        30, "seconds without a message before an edge node is dropped (upstream: 30)"
    )
    node_limit: int = positive(500, "most edge nodes connected at once (upstream: 500)")
    tls_ca_file: str = setting(
        "/etc/kubeedge/ca/rootCA.crt",
        "CA certificate (upstream: /etc/kubeedge/ca/rootCA.crt)",
        key="tlsCAFile",
    )
    tls_ca_key_file: str = setting(
        "/etc/kubeedge/ca/rootCA.key",
        "CA private key (upstream: /etc/kubeedge/ca/rootCA.key)",
        key="tlsCAKeyFile",
    )
    tls_cert_file: str = setting(
        "/etc/kubeedge/certs/server.crt", "server certificate (upstream: /etc/kubeedge/certs/server.crt)"
    )
    tls_private_key_file: str = setting(
        "/etc/kubeedge/certs/server.key", "server private key (upstream: /etc/kubeedge/certs/server.key)"
    )
    write_timeout: int = positive(30, "seconds a write to an edge node may take (upstream: 30)")
    advertise_address: tuple[str, ...] = setting(
        (), "IPs put in the server certificate and join token (upstream: the host's first IP)", ip=True
    )
    dns_names: tuple[str, ...] = setting(("",), 'DNS names put in the server certificate (upstream: [""])')
    edge_cert_signing_duration: int = positive(365, "days an edge certificate is valid (upstream: 365)")
    token_refresh_duration: int = positive(12, "hours between join token rotations (upstream: 12)")
    websocket: CloudHubWebSocket = section(CloudHubWebSocket, "websocket listener")
    quic: CloudHubQUIC = section(CloudHubQUIC, "QUIC listener")
    https: CloudHubHTTPS = section(CloudHubHTTPS, "certificate service")
    unixsocket: CloudHubUnixSocket = section(CloudHubUnixSocket, "local unix socket")
    authorization: Authorization = section(Authorization, "edge request authorization")
    node_authorization: CloudHubNodeAuthorization = section(
        CloudHubNodeAuthorization, "kubeedge-py extension: websocket node identity check"
    )

    @property
    def node_authorization_enforced(self) -> bool:
        """Whether CloudHub refuses a certificate whose CN names another node than ``node_id``.

        On with ``nodeAuthorization.enable`` (default); upstream's ``authorization`` with ``enable: true`` and
        ``debug: false`` also enforces it (upstream would), whatever ``nodeAuthorization`` says. Upstream's
        ``authorization.enable: false`` (its default) does NOT turn the check off: only
        ``nodeAuthorization.enable: false`` does.
        """
        upstream = self.authorization
        return self.node_authorization.enable or (upstream.enable and not upstream.debug)


# --- edgeController / deviceController / taskManager ---------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class EdgeControllerBuffer:
    """Queue sizes of EdgeController's work queues (upstream defaults)."""

    certificate_signing_request: int = positive(1024, "CSR queue (upstream: 1024)")
    config_map_event: int = positive(1, "ConfigMap event queue (upstream: 1)")
    create_lease: int = positive(1524, "lease create queue (upstream: 1524)")
    create_node: int = positive(1024, "node create queue (upstream: 1024)")
    create_pod: int = positive(1024, "pod create queue (upstream: 1024)")
    delete_pod: int = positive(1024, "pod delete queue (upstream: 1024)")
    patch_node: int = positive(1274, "node patch queue (upstream: 1274)")
    patch_pod: int = positive(1024, "pod patch queue (upstream: 1024)")
    pod_event: int = positive(1, "pod event queue (upstream: 1)")
    process_event: int = positive(1024, "event processing queue (upstream: 1024)")
    query_config_map: int = positive(1024, "ConfigMap query queue (upstream: 1024)")
    query_lease: int = positive(1024, "lease query queue (upstream: 1024)")
    query_node: int = positive(1524, "node query queue (upstream: 1524)")
    query_persistent_volume: int = positive(1024, "PV query queue (upstream: 1024)")
    query_persistent_volume_claim: int = positive(1024, "PVC query queue (upstream: 1024)")
    query_secret: int = positive(1024, "Secret query queue (upstream: 1024)")
    query_volume_attachment: int = positive(1024, "VolumeAttachment query queue (upstream: 1024)")
    rule_endpoints_event: int = positive(1, "rule endpoint event queue (upstream: 1)")
    rules_event: int = positive(1, "rule event queue (upstream: 1)")
    secret_event: int = positive(1, "Secret event queue (upstream: 1)")
    service_account_token: int = positive(1024, "service account token queue (upstream: 1024)")
    update_node: int = positive(1024, "node update queue (upstream: 1024)")
    update_node_status: int = positive(1024, "node status queue (upstream: 1024)")
    update_pod_status: int = positive(1024, "pod status queue (upstream: 1024)")


@dataclasses.dataclass(frozen=True)
class EdgeControllerLoad:
    """Worker counts of EdgeController (upstream defaults; three keys are capitalised upstream)."""

    create_pod_works: int = positive(4, "pod create workers (upstream: 4)", key="CreatePodWorks")
    service_account_token_workers: int = positive(
        100, "service account token workers (upstream: 100)", key="ServiceAccountTokenWorkers"
    )
    update_rule_status_workers: int = positive(
        4, "rule status workers (upstream: 4)", key="UpdateRuleStatusWorkers"
    )
    certificate_signing_request_workers: int = positive(4, "CSR workers (upstream: 4)")
    create_lease_workers: int = positive(500, "lease create workers (upstream: 500)")
    create_node_workers: int = positive(100, "node create workers (upstream: 100)")
    delete_pod_workers: int = positive(100, "pod delete workers (upstream: 100)")
    patch_node_workers: int = positive(110, "node patch workers (upstream: 110)")
    patch_pod_workers: int = positive(100, "pod patch workers (upstream: 100)")
    process_event_workers: int = positive(4, "event workers (upstream: 4)")
    query_config_map_workers: int = positive(100, "ConfigMap query workers (upstream: 100)")
    query_lease_workers: int = positive(100, "lease query workers (upstream: 100)")
    query_node_workers: int = positive(500, "node query workers (upstream: 500)")
    query_persistent_volume_claim_workers: int = positive(4, "PVC query workers (upstream: 4)")
    query_persistent_volume_workers: int = positive(4, "PV query workers (upstream: 4)")
    query_secret_workers: int = positive(100, "Secret query workers (upstream: 100)")
    query_volume_attachment_workers: int = positive(4, "VolumeAttachment query workers (upstream: 4)")
    update_node_status_workers: int = positive(1, "node status workers (upstream: 1)")
    update_node_workers: int = positive(4, "node update workers (upstream: 4)")
    update_pod_status_workers: int = positive(1, "pod status workers (upstream: 1)")


@dataclasses.dataclass(frozen=True)
class EdgeController:
    """EdgeController: syncs pods, nodes, ConfigMaps and Secrets between Kubernetes and edge nodes."""

    enable: bool = setting(True, "run EdgeController (upstream: true)")
    node_update_frequency: int = positive(10, "seconds between node status updates (upstream: 10)")
    buffer: EdgeControllerBuffer = section(EdgeControllerBuffer, "work queue sizes")
    load: EdgeControllerLoad = section(EdgeControllerLoad, "worker counts")


@dataclasses.dataclass(frozen=True)
class DeviceControllerBuffer:
    """Queue sizes of DeviceController."""

    device_event: int = positive(1, "device event queue (upstream: 1)")
    device_model_event: int = positive(1, "device model event queue (upstream: 1)")
    update_device_status: int = positive(1024, "device status queue (upstream: 1024)")
    update_device_twins: int = positive(1024, "device twin queue (upstream: 1024)")


@dataclasses.dataclass(frozen=True)
class DeviceControllerLoad:
    """Worker counts of DeviceController."""

    update_device_status_workers: int = positive(1, "device status workers (upstream: 1)")


@dataclasses.dataclass(frozen=True)
class DeviceController:
    """DeviceController: syncs Device and DeviceModel objects with edge nodes."""

    enable: bool = setting(True, "run DeviceController (upstream: true)")
    buffer: DeviceControllerBuffer = section(DeviceControllerBuffer, "work queue sizes")
    load: DeviceControllerLoad = section(DeviceControllerLoad, "worker counts")


@dataclasses.dataclass(frozen=True)
class TaskManagerBuffer:
    """Queue sizes of TaskManager."""

    task_event: int = positive(1, "task event queue (upstream: 1)")
    task_status: int = positive(1024, "task status queue (upstream: 1024)")


@dataclasses.dataclass(frozen=True)
class TaskManagerLoad:
    """Worker counts of TaskManager."""

    task_workers: int = positive(1, "task workers (upstream: 1)")


@dataclasses.dataclass(frozen=True)
class TaskManager:
    """TaskManager: node upgrade and image prepull jobs (accepted; not implemented here)."""

    enable: bool = setting(False, "run TaskManager (upstream: false)")
    buffer: TaskManagerBuffer = section(TaskManagerBuffer, "work queue sizes")
    load: TaskManagerLoad = section(TaskManagerLoad, "worker counts")


@dataclasses.dataclass(frozen=True)
class Enable:
    """A module configured only by whether it runs."""

    enable: bool = setting(False, "run this module (upstream: false)")


@dataclasses.dataclass(frozen=True)
class SyncController:
    """SyncController: reconciles ObjectSync records (reliable delivery bookkeeping)."""

    enable: bool = setting(True, "run SyncController (upstream: true)")


@dataclasses.dataclass(frozen=True)
class CloudStream:
    """CloudStream: the tunnel behind ``kubectl logs/exec`` to edge pods."""

    enable: bool = setting(False, "run CloudStream (upstream: false)")
    stream_port: int = port_number(10003, "port the API server's stream requests arrive on (upstream: 10003)")
    tunnel_port: int = port_number(10004, "port edge nodes open their tunnel to (upstream: 10004)")
    tls_stream_ca_file: str = setting(
        "/etc/kubeedge/ca/streamCA.crt",
        "stream CA (upstream: /etc/kubeedge/ca/streamCA.crt)",
        key="tlsStreamCAFile",
    )
    tls_stream_cert_file: str = setting(
        "/etc/kubeedge/certs/stream.crt", "stream certificate (upstream: /etc/kubeedge/certs/stream.crt)"
    )
    tls_stream_private_key_file: str = setting(
        "/etc/kubeedge/certs/stream.key", "stream private key (upstream: /etc/kubeedge/certs/stream.key)"
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


@dataclasses.dataclass(frozen=True)
class Router:
    """Router: the REST entry point of the rule engine."""

    enable: bool = setting(False, "run the router (upstream: false)")
    address: str = setting("0.0.0.0", "listen address (upstream: 0.0.0.0)", ip=True)
    port: int = port_number(9443, "listen port (upstream: 9443)")
    rest_timeout: int = positive(60, "seconds a REST request may take (upstream: 60)")


@dataclasses.dataclass(frozen=True)
class IptablesManager:
    """IptablesManager: DNAT rules that route ``kubectl logs/exec`` into CloudStream."""

    enable: bool = setting(True, "run the iptables manager (upstream: true)")
    mode: str = setting(
        "internal",
        "internal (in cloudcore) or external (separate pod) (upstream: internal)",
        choices=("internal", "external"),
    )


@dataclasses.dataclass(frozen=True)
class CloudModules:
    """The cloud modules."""

    cloud_hub: CloudHub = section(CloudHub, "CloudHub: the edge-facing hub")
    edge_controller: EdgeController = section(
        EdgeController, "EdgeController: pods, nodes, configmaps, secrets"
    )
    device_controller: DeviceController = section(DeviceController, "DeviceController: devices and models")
    sync_controller: SyncController = section(SyncController, "SyncController: reliable delivery bookkeeping")
    dynamic_controller: Enable = section(
        Enable, "DynamicController: generic list/watch for edge (upstream: off)"
    )
    cloud_stream: CloudStream = section(CloudStream, "CloudStream: kubectl logs/exec tunnel")
    router: Router = section(Router, "Router: rule engine REST entry")
    iptables_manager: IptablesManager = section(IptablesManager, "IptablesManager: stream DNAT rules")
    task_manager: TaskManager = section(TaskManager, "TaskManager: node jobs")


# --- kubeedge-py extension -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class EmbeddedAPIServer:
    """kubeedge-py extension (not in upstream): the embedded Kubernetes-compatible control plane.

    ``enable`` is tri-state: unset (null) means automatic, which turns it on exactly when
    ``kubeAPIConfig.kubeConfig`` and ``kubeAPIConfig.master`` are both empty (a fresh install).
    """

    enable: bool | None = setting(
        None, "true/false, or null = automatic: on when kubeAPIConfig.kubeConfig and .master are both empty"
    )
    address: str = setting("127.0.0.1", "listen address (kubeedge-py default: 127.0.0.1)", ip=True)
    port: int = port_number(6443, "listen port (kubeedge-py default: 6443, the Kubernetes API port)")
    data_dir: str = setting(
        "/var/lib/kubeedge/apiserver",
        "directory of its SQLite store (kubeedge-py default: /var/lib/kubeedge/apiserver)",
    )
    kube_config_output: str = setting(
        "/etc/kubeedge/admin.kubeconfig",
        "admin kubeconfig written for kubectl (kubeedge-py default: /etc/kubeedge/admin.kubeconfig)",
    )
    max_request_body_bytes: int = setting(
        limits.APISERVER_MAX_BODY, "largest request body accepted (default 3 MiB, etcd's request limit)", gt=0
    )


# --- the file ------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CloudCoreConfig:
    """The whole ``cloudcore.yaml``."""

    api_version: str = setting(API_VERSION, "config schema version", choices=(API_VERSION,))
    kind: str = setting(KIND, "config kind", choices=(KIND,))
    kube_api_config: KubeAPIConfig = section(KubeAPIConfig, "Kubernetes API access", key="kubeAPIConfig")
    common_config: CommonConfig = section(CommonConfig, "settings shared by all modules")
    modules: CloudModules = section(CloudModules, "the cloud modules")
    embedded_api_server: EmbeddedAPIServer = section(
        EmbeddedAPIServer,
        "kubeedge-py extension: embedded Kubernetes-compatible control plane",
        key="embeddedAPIServer",
    )

    @property
    def embedded_api_server_enabled(self) -> bool:
        """Whether cloudcore runs the embedded control plane (resolves ``embeddedAPIServer.enable``)."""
        explicit = self.embedded_api_server.enable
        if explicit is not None:
            return explicit
        return not self.kube_api_config.kube_config and not self.kube_api_config.master


def check(cfg: CloudCoreConfig) -> None:
    """Cross-key checks that single fields cannot express; raises :class:`ConfigError`."""
    api = cfg.kube_api_config
    if cfg.embedded_api_server.enable is True and (api.kube_config or api.master):
        raise ConfigError(
            ["embeddedAPIServer", "enable"],
            "true conflicts with a non-empty kubeAPIConfig.kubeConfig or kubeAPIConfig.master "
            f"(kubeConfig={api.kube_config!r}, master={api.master!r}); use one control plane",
        )
