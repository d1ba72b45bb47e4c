"""Edged as a service on the local Docker engine: one call the module runtime supervises.

Owns nothing but the wiring: a Docker client (unless given one), the
:class:`~kubeedge.edge.edged.dockerruntime.DockerRuntime` and a
:class:`~kubeedge.edge.edged.manager.PodManager`, handed to the caller through ``task_status`` so it can
feed pods and read node status. Fails with :class:`~kubeedge.edge.edged.runtime.RuntimeFailure` when the
Docker engine cannot be reached at start; later outages are retried inside the manager.
"""

from __future__ import annotations

from typing import Any

import trio

from kubeedge.edge.edged.config import EdgedConfig
from kubeedge.edge.edged.dockerruntime import DockerRuntime
from kubeedge.edge.edged.manager import Lookup, PodManager, PodStatusReport
from kubeedge.edge.edged.runtime import RuntimeFailure


async def serve_docker(
    config: EdgedConfig,
    lookup: Lookup,
    status_out: trio.MemorySendChannel[PodStatusReport] | None = None,
    *,
    docker_client: Any = None,
    task_status: trio.TaskStatus[PodManager] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run edged until cancelled; ``started`` with the :class:`PodManager` once it has listed the runtime.

    ``docker_client`` defaults to ``docker.from_env()`` (``DOCKER_HOST`` or ``/var/run/docker.sock``) and is
    closed on exit only when created here.
    """
    import docker
    import docker.errors

    own = docker_client is None
    if own:
        try:
            docker_client = await trio.to_thread.run_sync(lambda: docker.from_env(timeout=120))
        except docker.errors.DockerException as exc:
            raise RuntimeFailure(f"cannot reach the Docker engine: {exc}") from exc
    try:
        manager = PodManager(DockerRuntime(docker_client, node=config.node_name), config, lookup, status_out)
        async with trio.open_nursery() as nursery:
            await nursery.start(manager.run)
            task_status.started(manager)
    finally:
        if own:
            docker_client.close()
