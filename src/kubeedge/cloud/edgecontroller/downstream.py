"""Messages EdgeController sends towards edges (through CloudHub), in upstream's format.

Owns the mapping between Kubernetes objects and edge resource types, and
:func:`object_message`, the one builder of downstream object messages: source
``edgecontroller``, group ``resource``, cloud-internal resource
``node/<node>/<ns>/<type>/<name>`` (``null`` namespace for cluster-scoped
objects), ``resourceversion`` header = the object's resourceVersion, content =
the full object with ``apiVersion``/``kind``. Pure functions; a name that is
not a valid resource token raises :class:`~kubeedge.proto.resource.ResourceError`.
"""

from __future__ import annotations

from typing import Any, Final

from kubeedge.cloud import kubeapi
from kubeedge.proto import resource as resources
from kubeedge.proto.message import Message
from kubeedge.proto.vocab import CloudModule, Group, ResourceType

KINDS: Final[dict[ResourceType, kubeapi.Kind]] = {
    ResourceType.POD: kubeapi.PODS,
    ResourceType.CONFIGMAP: kubeapi.CONFIGMAPS,
    ResourceType.SECRET: kubeapi.SECRETS,
    ResourceType.NODE: kubeapi.NODES,
}
"""Edge resource type -> Kubernetes kind, for what EdgeController pushes."""

BY_KIND: Final = {kind.kind: rtype for rtype, kind in KINDS.items()}
"""Kubernetes ``kind`` -> edge resource type."""


def resource_of(node: str, rtype: ResourceType, namespace: str, name: str) -> str:
    """The cloud-internal resource of an object sent to ``node``."""
    return resources.ResourceKey.object(
        namespace or resources.CLUSTER_NAMESPACE, rtype, name, node=node
    ).internal


def object_message(
    node: str, operation: str, rtype: ResourceType, obj: dict[str, Any], *, now_ms: int
) -> Message:
    """A downstream message carrying ``obj`` to ``node``."""
    meta = obj.get("metadata") or {}
    return Message.new(
        source=CloudModule.EDGECONTROLLER,
        group=Group.RESOURCE,
        operation=operation,
        resource=resource_of(node, rtype, meta.get("namespace", ""), meta.get("name", "")),
        content=obj,
        resource_version=str(meta.get("resourceVersion", "")),
        now_ms=now_ms,
    )


def tombstone(kind: kubeapi.Kind, namespace: str, name: str, uid: str) -> dict[str, Any]:
    """The stub upstream's SyncController sends for an object that vanished: identity only."""
    meta: dict[str, Any] = {"name": name, "uid": uid}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": kind.api_version, "kind": kind.kind, "metadata": meta}
