"""Wire resources and contents as MetaManager reads them: pure functions, no I/O.

Owns the parsing of ``<namespace>/<type>[/<name>]`` resources, the operation and resource-type
names MetaManager routes on, and the lenient decoding of what the cloud sends back (object RVs
and UIDs, upstream's untagged ``ObjectResp{Object, Err}``). Invalid input raises
:class:`ValueError` with a message naming the field; nothing here touches a clock or a socket.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from kubeedge.edge.metamanager.store import MetaV2Ref
from kubeedge.kit import limits


class Op(enum.StrEnum):
    """Operations MetaManager acts on (upstream ``model.*Operation``)."""

    INSERT = "insert"
    UPDATE = "update"
    DELETE = "delete"
    QUERY = "query"
    RESPONSE = "response"
    ERROR = "error"
    PATCH = "patch"
    CONNECT = "connect"


class Kind(enum.StrEnum):
    """Resource types (the second token of a resource) MetaManager treats specially."""

    POD = "pod"
    NODE = "node"
    CONFIGMAP = "configmap"
    SECRET = "secret"
    SERVICEACCOUNTTOKEN = "serviceaccounttoken"
    PERSISTENTVOLUME = "persistentvolume"
    PERSISTENTVOLUMECLAIM = "persistentvolumeclaim"
    VOLUMEATTACHMENT = "volumeattachment"
    LEASE = "lease"
    CSR = "certificatesigningrequest"
    PODSTATUS = "podstatus"
    PODPATCH = "podpatch"
    NODESTATUS = "nodestatus"
    NODEPATCH = "nodepatch"
    EVENT = "event"


REMOTE_QUERY_KINDS: Final = frozenset(
    {
        Kind.CONFIGMAP,
        Kind.SECRET,
        Kind.SERVICEACCOUNTTOKEN,
        Kind.PERSISTENTVOLUME,
        Kind.PERSISTENTVOLUMECLAIM,
        Kind.VOLUMEATTACHMENT,
        Kind.LEASE,
        Kind.CSR,
    }
)
"""Edged queries of these go to the cloud while connected (the DB answers when offline or on failure)."""

REMOTE_INSERT_KINDS: Final = frozenset({Kind.NODE, Kind.POD, Kind.LEASE, Kind.CSR})
"""Edged inserts of these are answered by the cloud only ("not connected" when offline)."""

STATUS_KINDS: Final = frozenset({Kind.PODSTATUS, Kind.PODPATCH, Kind.NODESTATUS, Kind.NODEPATCH})
"""Upstream statuses: in the offline outbox the newest per object supersedes older ones."""

API_RESOURCES: Final[Mapping[str, tuple[str, str, str]]] = {
    Kind.POD: ("", "v1", "pods"),
    Kind.NODE: ("", "v1", "nodes"),
    Kind.CONFIGMAP: ("", "v1", "configmaps"),
    Kind.SECRET: ("", "v1", "secrets"),
    Kind.PERSISTENTVOLUME: ("", "v1", "persistentvolumes"),
    Kind.PERSISTENTVOLUMECLAIM: ("", "v1", "persistentvolumeclaims"),
    Kind.VOLUMEATTACHMENT: ("storage.k8s.io", "v1", "volumeattachments"),
    Kind.LEASE: ("coordination.k8s.io", "v1", "leases"),
    "device": ("devices.kubeedge.io", "v1beta1", "devices"),
    "devicemodel": ("devices.kubeedge.io", "v1beta1", "devicemodels"),
}
"""Resource types that are Kubernetes API objects: (group, version, plural) for their ``meta_v2`` row."""

# Sources (upstream module names).
SOURCE_EDGED: Final = "edged"
SOURCE_EDGEHUB: Final = "edgehub"
SOURCE_DEVICECONTROLLER: Final = "devicecontroller"
SOURCE_METAMANAGER: Final = "metamanager"
SOURCE_META: Final = "meta"
"""Source stamped on device resources forwarded to DeviceTwin (upstream rewrites it to ``meta``)."""

CLOUD_CONNECTED: Final = "cloud_connected"
CLOUD_DISCONNECTED: Final = "cloud_disconnected"
CONNECTION_RESOURCE: Final = "node/connection"


@dataclass(frozen=True, slots=True)
class Resource:
    """A parsed ``<namespace>/<type>[/<name>]`` resource; ``name`` keeps any further ``/``-joined tokens."""

    raw: str
    namespace: str
    type: str
    name: str = ""

    @classmethod
    def parse(cls, resource: str) -> Resource:
        """Parse ``resource``; :class:`ValueError` when it has fewer than two non-empty tokens or is too long."""
        if len(resource) > limits.META_MAX_KEY_CHARS:
            raise ValueError(
                f"resource longer than {limits.META_MAX_KEY_CHARS} characters: {resource[:60]!r}..."
            )
        tokens = resource.split("/")
        if len(tokens) < 2 or not tokens[0] or not tokens[1]:
            raise ValueError(f"resource {resource!r} is not <namespace>/<type>[/<name>]")
        if len(tokens[1]) > limits.META_MAX_TYPE_CHARS:
            raise ValueError(
                f"resource type {tokens[1][:40]!r} longer than {limits.META_MAX_TYPE_CHARS} characters"
            )
        name = "/".join(tokens[2:])
        if len(tokens) > 2 and not name:
            raise ValueError(f"resource {resource!r} has an empty name")
        return cls(resource, tokens[0], tokens[1], name)


def _get_lenient(obj: Mapping[str, Any], key: str) -> Any:
    """``obj[key]`` trying the exact key, then a case-insensitive match (Go decodes untagged fields so)."""
    if key in obj:
        return obj[key]
    low = key.lower()
    for k, v in obj.items():
        if isinstance(k, str) and k.lower() == low:
            return v
    return None


def object_metadata(content: Any) -> Mapping[str, Any]:
    """``content.metadata`` when content is an object with one, else an empty mapping."""
    if isinstance(content, Mapping):
        meta = content.get("metadata")
        if isinstance(meta, Mapping):
            return meta
    return {}


def resource_version_of(header_rv: str, content: Any) -> str:
    """The RV of a message: the header's, else ``metadata.resourceVersion`` of the content, else ``""``."""
    rv = header_rv or object_metadata(content).get("resourceVersion") or ""
    if not isinstance(rv, str):
        raise ValueError(f"metadata.resourceVersion must be a string, got {type(rv).__name__}")
    return rv


def uid_of(content: Any) -> str:
    """The UID a delete targets: ``metadata.uid``, else DeleteOptions ``preconditions.uid``, else ``""``."""
    uid = object_metadata(content).get("uid")
    if not uid and isinstance(content, Mapping):
        pre = content.get("preconditions")
        if isinstance(pre, Mapping):
            uid = pre.get("uid")
        if not uid:
            uid = _get_lenient(content, "UID")
    return uid if isinstance(uid, str) else ""


@dataclass(frozen=True, slots=True)
class RemoteAnswer:
    """A cloud answer, decoded: the object, or the error text when the cloud reported one."""

    object: Any
    error: str = ""


def decode_answer(operation: str, content: Any) -> RemoteAnswer:
    """Decode a cloud reply to a remote query or insert.

    Accepts upstream's ObjectResp ``{"Object": …, "Err": …}`` (keys matched case-insensitively;
    any non-null ``Err`` is an error, even ``{}``, which is how Go marshals a plain error), a
    Kubernetes ``{"ErrStatus": …}`` error, an ``error`` operation, or a bare object.
    """
    if operation == Op.ERROR:
        return RemoteAnswer(None, content if isinstance(content, str) else "remote error")
    if isinstance(content, Mapping):
        status = _get_lenient(content, "ErrStatus")
        if isinstance(status, Mapping):
            return RemoteAnswer(None, str(status.get("message") or status.get("reason") or "remote error"))
        keys = {k.lower() for k in content if isinstance(k, str)}
        if keys and keys <= {"object", "err"}:
            err = _get_lenient(content, "Err")
            if err is not None:
                if isinstance(err, Mapping):
                    inner = _get_lenient(err, "ErrStatus")
                    if isinstance(inner, Mapping):
                        return RemoteAnswer(None, str(inner.get("message") or "remote error"))
                return RemoteAnswer(None, err if isinstance(err, str) and err else "remote error")
            return RemoteAnswer(_get_lenient(content, "Object"))
    return RemoteAnswer(content)


def meta_v2_ref(resource: Resource) -> MetaV2Ref | None:
    """Where an API object of ``resource`` lives in ``meta_v2``; None for non-API types or type-only resources."""
    api = API_RESOURCES.get(resource.type)
    if api is None or not resource.name or "/" in resource.name:
        return None
    group, version, plural = api
    return MetaV2Ref(
        key=f"/{group or 'core'}/{version}/{plural}/{resource.namespace}/{resource.name}",
        group_version_resource=f"{group}/{version}, Resource={plural}",
        namespace=resource.namespace,
        name=resource.name,
    )
