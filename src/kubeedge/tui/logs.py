"""Recent log lines of a pod's containers, read from Docker by the containers' pod-UID label.

Owns the docker SDK call the pod detail screen makes (blocking: the TUI runs it in a worker thread).
Invariants: at most :data:`MAX_CONTAINERS` containers, :data:`TAIL_LINES` lines each, every line clipped to
:data:`~kubeedge.kit.limits.STATUS_MAX_STRING` characters. Failures: Docker missing or unreachable, or any API
error, is returned as a one-line explanation instead of logs; nothing raises.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from kubeedge.kit import status as s

TAIL_LINES: Final = 20
"""Lines shown per container: enough to see why it crashed, few enough to fit a detail screen."""

MAX_CONTAINERS: Final = 8
"""Containers whose logs are read per pod (newest first), bounding Docker calls per Enter key."""

DOCKER_TIMEOUT: Final = 15
"""Seconds each Docker API call may take; a busy engine on a small edge box can be slow to list containers."""

DEFAULT_DOCKER_HOST: Final = "unix:///var/run/docker.sock"

CONTAINER_NAME_LABEL: Final = "io.kubeedge-py.container.name"
"""Docker label edged puts on a container with its Kubernetes container name (mirrors edged's runtime labels)."""


@dataclass(frozen=True)
class ContainerLog:
    """The last lines of one Docker container of a pod (``error`` set when they could not be read)."""

    container: str
    lines: tuple[str, ...] = ()
    error: str = ""


LogSource = Callable[[str], list[ContainerLog]]
"""``source(pod_uid)``: the recent logs of the pod's containers. Blocking; call it from a thread."""


def docker_logs(pod_uid: str) -> list[ContainerLog]:
    """Logs of the Docker containers labelled with ``pod_uid`` (see :data:`kubeedge.kit.status.POD_UID_LABEL`).

    The engine is the one ``DOCKER_HOST`` names (default ``unix:///var/run/docker.sock``), as for ``docker``.
    """
    host = os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST
    if host.startswith("unix://") and not os.path.exists(host.removeprefix("unix://")):
        # Checked first: the SDK leaks a socket per failed connection to a missing unix socket.
        return [
            ContainerLog(
                "docker", error=f"Docker is not reachable: no socket at {host.removeprefix('unix://')}"
            )
        ]
    try:
        import docker  # imported here: the TUI starts (and works offline) without a Docker daemon

        client = docker.from_env(timeout=DOCKER_TIMEOUT)
    except Exception as exc:  # no daemon, no permission, no SDK: say so instead of failing
        return [ContainerLog("docker", error=f"Docker is not reachable: {exc}")]
    try:
        containers = client.containers.list(all=True, filters={"label": f"{s.POD_UID_LABEL}={pod_uid}"})
        out: list[ContainerLog] = []
        for c in containers[:MAX_CONTAINERS]:
            name = c.labels.get(CONTAINER_NAME_LABEL) or c.name
            try:
                raw = c.logs(tail=TAIL_LINES, timestamps=False)
            except Exception as exc:
                out.append(ContainerLog(name, error=f"cannot read logs: {exc}"))
                continue
            text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            lines = tuple(s.clip_text(line) for line in text.splitlines()[-TAIL_LINES:])
            out.append(ContainerLog(name, lines))
        if not out:
            out.append(ContainerLog("docker", error="no Docker containers carry this pod's UID label"))
        return out
    except Exception as exc:
        return [ContainerLog("docker", error=f"Docker API error: {exc}")]
    finally:
        client.close()
