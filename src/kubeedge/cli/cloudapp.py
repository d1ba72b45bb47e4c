"""cloudcore's assembly: the embedded API server, certificates, join token, certificate service and modules.

Start order (each step waits for the previous one to be ready):

1. the embedded API server, when ``embeddedAPIServer`` selects it (it writes the kubeconfig the controllers use);
2. the CA and the server certificate (created once, never regenerated; reissued when the SANs change);
3. the join token file (``<CA dir>/../tokens/tokendata``, refreshed every ``tokenRefreshDuration``);
4. the certificate service on ``cloudHub.https`` (port 10002);
5. the beehive modules: SyncController, EdgeController, DeviceController, Router (``modules.router``,
   off by default), then ``cloudhub`` on ``cloudHub.websocket``.

The process runs until SIGINT/SIGTERM; then the modules get their grace period and everything else is cancelled.
Failure: a start-up problem raises :class:`StartupError` with one line naming what failed.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import trio

from kubeedge.apiserver import server as apiserver
from kubeedge.cloud import controllers
from kubeedge.cloud.cloudhub import certserver
from kubeedge.cloud.cloudhub import token as token_loop
from kubeedge.cloud.cloudhub.hub import HubSettings
from kubeedge.cloud.cloudhub.module import CloudHubModule
from kubeedge.cloud.devicecontroller.controller import DeviceController
from kubeedge.cloud.router.module import Router
from kubeedge.kit import beehive, jointoken, log, pki, tls
from kubeedge.kit.config.cloudcore import CloudCoreConfig
from kubeedge.proto.vocab import CloudModule

_log = log.get(__name__)


class StartupError(RuntimeError):
    """cloudcore could not start; the message names the failing step."""


def token_file_for(cfg: CloudCoreConfig) -> Path:
    """Where the join token is kept: ``tokens/tokendata`` beside the CA folder (``/etc/kubeedge/tokens/tokendata``)."""
    return Path(cfg.modules.cloud_hub.tls_ca_file).parent.parent / "tokens" / "tokendata"


def apiserver_settings(cfg: CloudCoreConfig) -> apiserver.Settings:
    """The embedded API server's settings from ``embeddedAPIServer``."""
    emb = cfg.embedded_api_server
    return apiserver.Settings(
        data_dir=Path(emb.data_dir),
        address=emb.address,
        port=emb.port,
        kubeconfig=Path(emb.kube_config_output),
        max_body_bytes=emb.max_request_body_bytes,
    )


def hub_settings(cfg: CloudCoreConfig) -> HubSettings:
    """CloudHub's websocket settings from ``modules.cloudHub``; logs a warning when node authorization is off."""
    hub = cfg.modules.cloud_hub
    if not hub.node_authorization_enforced:
        _log.warning(
            "node authorization is OFF: a node's certificate may connect as any node "
            "(modules.cloudHub.nodeAuthorization.enable: false)"
        )
    return HubSettings(
        address=hub.websocket.address,
        port=hub.websocket.port,
        node_limit=hub.node_limit,
        keepalive_interval=float(hub.keepalive_interval),
        write_timeout=float(hub.write_timeout),
        authorize_nodes=hub.node_authorization_enforced,
    )


def preflight(cfg: CloudCoreConfig) -> None:
    """Checks that must pass before anything is created on disk or a port is opened.

    Without the embedded API server the cluster's kubeconfig must exist. Raises :class:`StartupError`.
    """
    if cfg.embedded_api_server_enabled:
        return
    try:
        cluster_config = Path(controllers.kubeconfig_path(cfg))
    except ValueError as exc:
        raise StartupError(str(exc)) from exc
    if not cluster_config.is_file():
        raise StartupError(f"kubeAPIConfig.kubeConfig: {cluster_config}: no such file")


async def run(cfg: CloudCoreConfig, *, shutdown_timeout: float = beehive.SHUTDOWN_TIMEOUT) -> int:
    """Run cloudcore until a signal; returns the exit code."""
    hub_cfg = cfg.modules.cloud_hub
    async with trio.open_nursery() as nursery:
        if cfg.embedded_api_server_enabled:
            try:
                running = await nursery.start(apiserver.serve, apiserver_settings(cfg))
            except (OSError, ValueError) as exc:
                raise StartupError(f"embedded API server: {exc}") from exc
            _log.info("embedded API server ready", url=running.url, kubeconfig=str(running.kubeconfig))

        ca_cert, ca_key = Path(hub_cfg.tls_ca_file), Path(hub_cfg.tls_ca_key_file)
        cert, key = Path(hub_cfg.tls_cert_file), Path(hub_cfg.tls_private_key_file)
        try:
            ca = await trio.to_thread.run_sync(pki.load_or_create_ca, ca_cert, ca_key)
            sans = pki.SubjectAltNames.from_config(hub_cfg.advertise_address, hub_cfg.dns_names)
            await trio.to_thread.run_sync(pki.load_or_issue_server_cert, ca, sans, cert, key)
        except (OSError, pki.PKIError) as exc:
            raise StartupError(f"certificates: {exc}") from exc

        issuer = jointoken.TokenIssuer(
            ca.key_der, ca.cert_der, refresh=dt.timedelta(hours=hub_cfg.token_refresh_duration)
        )
        await nursery.start(token_loop.maintain_token, issuer, token_file_for(cfg))

        if hub_cfg.https.enable:
            try:
                port = await nursery.start(
                    _serve_certificates, ca, tls.cert_service_context(ca_cert, cert, key), cfg
                )
            except OSError as exc:
                raise StartupError(
                    f"certificate service on {hub_cfg.https.address}:{hub_cfg.https.port}: {exc}"
                ) from exc
            _log.info("certificate service ready", address=hub_cfg.https.address, port=port)

        try:
            ctrls = controllers.build(cfg)
        except (OSError, ValueError) as exc:
            raise StartupError(f"controllers: {exc}") from exc
        modules: list[Any] = list(ctrls.modules)
        if cfg.modules.device_controller.enable:
            kubeconfig = controllers.kubeconfig_path(cfg)

            def api_client() -> Any:
                from kubernetes import config as kube_config

                return kube_config.new_client_from_config(config_file=kubeconfig)  # type: ignore[no-untyped-call]

            modules.append(DeviceController(api_client))
        router_cfg = cfg.modules.router
        if router_cfg.enable:
            modules.append(
                Router(
                    ctrls.api,
                    address=router_cfg.address,
                    port=router_cfg.port,
                    rest_timeout=float(router_cfg.rest_timeout),
                )
            )
        if hub_cfg.enable and hub_cfg.websocket.enable:
            present = [m.name for m in modules] + [CloudModule.CLOUDHUB.value]
            modules.append(
                CloudHubModule(
                    tls.cloud_hub_context(ca_cert, cert, key),
                    hub_settings(cfg),
                    present,
                    acked_version=ctrls.store.index.acked,
                )
            )
        try:
            code = await beehive.run_modules(modules, shutdown_timeout=shutdown_timeout)
        finally:
            ctrls.api.close()
        nursery.cancel_scope.cancel()
    return code


async def _serve_certificates(
    ca: pki.CertificateAuthority,
    context: Any,
    cfg: CloudCoreConfig,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    hub_cfg = cfg.modules.cloud_hub
    await certserver.serve_certificates(
        ca,
        context,
        host=hub_cfg.https.address,
        port=hub_cfg.https.port,
        edge_cert_validity=dt.timedelta(days=hub_cfg.edge_cert_signing_duration),
        task_status=task_status,
    )
