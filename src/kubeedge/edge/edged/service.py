"""Edged as a service on a Docker engine: one call the module runtime supervises.

Owns nothing but the wiring: a Docker client on the configured endpoint (unless given one), the
:class:`~kubeedge.edge.edged.dockerruntime.DockerRuntime` and a
:class:`~kubeedge.edge.edged.manager.PodManager`, handed to the caller through ``task_status`` so it can
feed pods and read node status. Fails with :class:`~kubeedge.edge.edged.runtime.RuntimeFailure` when the
Docker engine cannot be reached at start; later outages are retried inside the manager.
"""

from __future__ import annotations

from typing import Any

import trio

from kubeedge.edge.edged.dockerruntime import DockerRuntime
from kubeedge.edge.edged.manager import Lookup, Periods, PodManager, PodStatusReport
from kubeedge.edge.edged.runtime import RuntimeFailure
from kubeedge.kit import limits
from kubeedge.kit.config.edgecore import Edged, TailoredKubeletConfig

UPSTREAM_DEFAULT_ENDPOINT = TailoredKubeletConfig().container_runtime_endpoint
"""``containerRuntimeEndpoint``'s upstream default (containerd's CRI socket): not a Docker engine, so it
means "the local Docker engine" (``DOCKER_HOST``, else ``unix:///var/run/docker.sock``)."""
DOCKER_TIMEOUT = 120
"""Seconds a Docker API call may take: pulls and removals of big images are slow on edge disks."""


def docker_endpoint(edged: Edged) -> str | None:
    """The Docker engine edged uses: ``containerRuntimeEndpoint``, or None for ``DOCKER_HOST``/the default.

    Raises :class:`ValueError` naming the key for an endpoint Docker cannot dial.
    """
    endpoint = edged.tailored_kubelet_config.container_runtime_endpoint.strip()
    if not endpoint or endpoint == UPSTREAM_DEFAULT_ENDPOINT:
        return None
    if not endpoint.startswith(("unix://", "tcp://")):
        raise ValueError(
            "modules.edged.tailoredKubeletConfig.containerRuntimeEndpoint: "
            f"{endpoint[:200]!r} is not a unix:// or tcp:// Docker engine endpoint"
        )
    return endpoint


async def serve_docker(
    config: Edged,
    lookup: Lookup,
    status_out: trio.MemorySendChannel[PodStatusReport] | None = None,
    *,
    docker_client: Any = None,
    periods: Periods | None = None,
    task_status: trio.TaskStatus[PodManager] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run edged until cancelled; ``started`` with the :class:`PodManager` once it has listed the runtime.

    ``config`` is ``modules.edged`` with the node name and IP resolved (see :class:`PodManager`).
    ``docker_client`` defaults to a client on :func:`docker_endpoint` and is closed on exit only when
    created here.
    """
    import docker
    import docker.errors

    own = docker_client is None
    if own:
        endpoint = docker_endpoint(config)

        def connect() -> Any:
            pool = limits.EDGED_DOCKER_CONNECTIONS
            if endpoint is None:
                return docker.from_env(timeout=DOCKER_TIMEOUT, max_pool_size=pool)
            return docker.DockerClient(base_url=endpoint, timeout=DOCKER_TIMEOUT, max_pool_size=pool)

        try:
            docker_client = await trio.to_thread.run_sync(connect)
        except docker.errors.DockerException as exc:
            where = endpoint or "DOCKER_HOST or unix:///var/run/docker.sock"
            raise RuntimeFailure(f"cannot reach the Docker engine at {where}: {exc}") from exc
    try:
        manager = PodManager(
            DockerRuntime(docker_client, node=config.hostname_override),
            config,
            lookup,
            status_out,
            periods=periods,
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(manager.run)
            task_status.started(manager)
    finally:
        if own:
            docker_client.close()
