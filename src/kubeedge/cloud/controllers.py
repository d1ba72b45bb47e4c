"""Builds cloudcore's controller modules from ``cloudcore.yaml``: SyncController and EdgeController.

Owns the wiring the two modules share: one :class:`~kubeedge.cloud.kubeapi.KubeAPI` (the kubeconfig of
``kubeAPIConfig.kubeConfig``, or the embedded API server's ``kubeConfigOutput``, with
``kubeAPIConfig.qps``/``burst``) and one :class:`~kubeedge.cloud.synccontroller.controller.SyncStore`.
Module order matters: SyncController loads the acknowledged versions before EdgeController starts
sending, and both must start before ``cloudhub`` so no session event is missed.

Fails with :class:`ValueError` naming the key when no kubeconfig can be found; disabled modules are left out.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass

from kubeedge.cloud import kubeapi
from kubeedge.cloud.edgecontroller.controller import EdgeController
from kubeedge.cloud.synccontroller.controller import SyncController, SyncStore
from kubeedge.kit.beehive import Module
from kubeedge.kit.config.cloudcore import CloudCoreConfig


@dataclass
class Controllers:
    """The modules (in start order) and the client they share (close it after the modules stop)."""

    modules: list[Module]
    api: kubeapi.KubeAPI


def kubeconfig_path(cfg: CloudCoreConfig) -> str:
    """The kubeconfig cloudcore uses: ``kubeAPIConfig.kubeConfig``, else the embedded server's output."""
    if cfg.kube_api_config.kube_config:
        return cfg.kube_api_config.kube_config
    if cfg.embedded_api_server_enabled:
        return cfg.embedded_api_server.kube_config_output
    raise ValueError(
        "kubeAPIConfig.kubeConfig: empty and the embedded API server is disabled; set a kubeconfig path"
    )


def build(cfg: CloudCoreConfig, *, cloudcore_id: str = "") -> Controllers:
    """SyncController and EdgeController as configured (put them before ``cloudhub`` in the Beehive)."""
    api_cfg = cfg.kube_api_config
    api = kubeapi.KubeAPI.from_kubeconfig(kubeconfig_path(cfg), qps=api_cfg.qps, burst=api_cfg.burst)
    store = SyncStore(api)
    edge = EdgeController(
        api,
        store,
        node_update_frequency=float(cfg.modules.edge_controller.node_update_frequency),
        cloudcore_id=cloudcore_id or socket.gethostname(),
    )
    modules: list[Module] = []
    if cfg.modules.sync_controller.enable:
        modules.append(SyncController(store, edge))
    if cfg.modules.edge_controller.enable:
        modules.append(edge)
    return Controllers(modules, api)
