"""Resource keys: the ``route.resource`` strings, parsed into a frozen :class:`ResourceKey`.

Owns the two spellings of a resource and the conversion between them:

* cloud-internal (between CloudHub and the cloud controllers):
  ``node/<node>/<namespace>/<type>[/<name>]``;
* wire (on the cloud-edge link and inside edgecore): ``<namespace>/<type>[/<name>]``.

Cluster-scoped objects use the literal namespace ``null`` (``null/node/<name>``).
Besides objects there are a few fixed shapes: device events
``device/<ns>/<name>/twin/edge_updated`` (also ``state/update``,
``twin/cloud_updated``; legacy keys have no namespace), ``membership``,
``membership/detail``, ``k8s/ca.crt``, the edge-local ``node/connection`` and the
keepalive's bare ``node``. Leases are ordinary objects
(``kube-node-lease/lease/<node>``).

CloudHub's rule (:func:`strip_node_prefix`): a resource whose first token is
``node`` and that has at least three tokens carries a node prefix. Upstream shares
the ambiguity that follows: a namespace literally called ``node`` cannot be told
apart from a prefix; :func:`parse` applies the rule exactly as CloudHub does.

Failure: a malformed key (empty or ``.``/``..`` token, control character, token or
key over the bounds, unknown shape) raises :class:`ResourceError` (a ``ValueError``)
naming the key and the problem. Formatting never fails for a key that parsed.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Final

MAX_RESOURCE_CHARS: Final = 1024
"""Longest resource string; mirrors ``kit.limits.MAX_RESOURCE_CHARS`` (a test keeps them equal)."""
MAX_TOKEN_CHARS: Final = 253
"""Longest single token: a Kubernetes DNS subdomain name."""

NODE_PREFIX: Final = "node"
CLUSTER_NAMESPACE: Final = "null"
"""Namespace token of cluster-scoped objects (Go's ``nil`` namespace printed as ``null``)."""
LEASE_NAMESPACE: Final = "kube-node-lease"

_BAD_CHAR_RE: Final = re.compile(r"[\x00-\x1f\x7f]")


class ResourceError(ValueError):
    """A resource string that is not a valid key."""


class Shape(enum.StrEnum):
    """Which kind of resource a key names."""

    OBJECT = "object"
    """``<namespace>/<type>[/<name>]``."""
    DEVICE = "device"
    """``device/[<ns>/]<name>/<event>/<detail>``."""
    MEMBERSHIP = "membership"
    MEMBERSHIP_DETAIL = "membership/detail"
    CA_CERT = "k8s/ca.crt"
    CONNECTION = "node/connection"
    NODE = "node"
    """The keepalive's bare ``node``."""


_FIXED: Final = {
    "membership": Shape.MEMBERSHIP,
    "membership/detail": Shape.MEMBERSHIP_DETAIL,
    "k8s/ca.crt": Shape.CA_CERT,
    "node/connection": Shape.CONNECTION,
    "node": Shape.NODE,
}


def _check_token(token: str, what: str, key: str) -> None:
    if not token:
        raise ResourceError(f"resource {key!r}: empty {what}")
    if "/" in token:
        raise ResourceError(f"resource {key!r}: {what} {token!r} contains '/'")
    if token in {".", ".."}:
        raise ResourceError(f"resource {key!r}: {what} {token!r} is not a name")
    if len(token) > MAX_TOKEN_CHARS:
        raise ResourceError(f"resource {key!r}: {what} is over {MAX_TOKEN_CHARS} characters")


def _check_text(key: str) -> None:
    if not isinstance(key, str):
        raise ResourceError(f"resource must be a string, not {type(key).__name__}")
    if len(key) > MAX_RESOURCE_CHARS:
        raise ResourceError(f"resource is {len(key)} characters, over the limit of {MAX_RESOURCE_CHARS}")
    if _BAD_CHAR_RE.search(key):
        raise ResourceError(f"resource {key!r} contains a control character")


@dataclass(frozen=True, slots=True)
class ResourceKey:
    """One parsed resource; ``node`` is set only for the cloud-internal spelling.

    Build with :meth:`object`, :meth:`device`, :meth:`fixed` or the parse
    functions; read back with :attr:`wire` and :attr:`internal`.
    """

    shape: Shape
    namespace: str = ""
    """Object or device namespace (``null`` for cluster-scoped objects; ``""`` for legacy device keys)."""
    type: str = ""
    """Object resource type (compare with :class:`~kubeedge.proto.vocab.ResourceType`)."""
    name: str = ""
    """Object or device name (``""`` for collection keys such as ``<ns>/podstatus``)."""
    event: str = ""
    """Device event, e.g. ``twin/edge_updated``."""
    node: str = ""
    """Node of the cloud-internal prefix, ``""`` on the wire."""

    @classmethod
    def object(cls, namespace: str, type: str, name: str = "", *, node: str = "") -> ResourceKey:
        """An object key; validates every token."""
        key = "/".join(t for t in (namespace, type, name) if t)
        _check_token(namespace, "namespace", key)
        _check_token(type, "type", key)
        if name:
            _check_token(name, "name", key)
        if node:
            _check_token(node, "node", key)
        result = cls(Shape.OBJECT, namespace=namespace, type=type, name=name, node=node)
        _check_text(result.internal if node else result.wire)
        return result

    @classmethod
    def device(cls, namespace: str, name: str, event: str, *, node: str = "") -> ResourceKey:
        """A device event key (``namespace`` may be ``""`` for pre-v1.16 keys); ``event`` is ``<a>/<b>``."""
        wire = f"device/{namespace}/{name}/{event}" if namespace else f"device/{name}/{event}"
        key = parse_wire(wire)
        if key.shape is not Shape.DEVICE or key.name != name or key.event != event:
            raise ResourceError(f"resource {wire!r}: not a device key (event must be two tokens)")
        return key.with_node(node)

    @classmethod
    def fixed(cls, shape: Shape, *, node: str = "") -> ResourceKey:
        """One of the fixed shapes (membership, CA certificate, connection, keepalive node)."""
        if shape in {Shape.OBJECT, Shape.DEVICE}:
            raise ResourceError(f"{shape} is not a fixed resource shape")
        return cls(shape).with_node(node)

    def with_node(self, node: str) -> ResourceKey:
        """This key with the cloud-internal ``node`` set (``""`` removes it)."""
        if node:
            _check_token(node, "node", self.wire)
            _check_text(f"{NODE_PREFIX}/{node}/{self.wire}")
        return ResourceKey(self.shape, self.namespace, self.type, self.name, self.event, node)

    @property
    def wire(self) -> str:
        """The prefix-less spelling used on the cloud-edge link."""
        if self.shape is Shape.OBJECT:
            return (
                f"{self.namespace}/{self.type}/{self.name}" if self.name else f"{self.namespace}/{self.type}"
            )
        if self.shape is Shape.DEVICE:
            if self.namespace:
                return f"device/{self.namespace}/{self.name}/{self.event}"
            return f"device/{self.name}/{self.event}"
        return self.shape.value

    @property
    def internal(self) -> str:
        """The cloud-internal spelling ``node/<node>/<wire>``; raises :class:`ResourceError` without a node."""
        if not self.node:
            raise ResourceError(f"resource {self.wire!r} has no node for the cloud-internal form")
        return f"{NODE_PREFIX}/{self.node}/{self.wire}"

    @property
    def cluster_scoped(self) -> bool:
        """True for objects in the ``null`` namespace."""
        return self.shape is Shape.OBJECT and self.namespace == CLUSTER_NAMESPACE

    def __str__(self) -> str:
        return self.internal if self.node else self.wire


def parse_wire(resource: str) -> ResourceKey:
    """Parse a prefix-less resource; raises :class:`ResourceError`."""
    _check_text(resource)
    fixed = _FIXED.get(resource)
    if fixed is not None:
        return ResourceKey(fixed)
    tokens = resource.split("/")
    if tokens[0] == "device" and len(tokens) in {4, 5}:
        for token in tokens[1:]:
            _check_token(token, "device key token", resource)
        if len(tokens) == 5:
            return ResourceKey(Shape.DEVICE, namespace=tokens[1], name=tokens[2], event="/".join(tokens[3:]))
        return ResourceKey(Shape.DEVICE, name=tokens[1], event="/".join(tokens[2:]))
    if len(tokens) not in {2, 3}:
        raise ResourceError(f"resource {resource!r}: expected <namespace>/<type>[/<name>]")
    _check_token(tokens[0], "namespace", resource)
    _check_token(tokens[1], "type", resource)
    name = ""
    if len(tokens) == 3:
        name = tokens[2]
        _check_token(name, "name", resource)
    return ResourceKey(Shape.OBJECT, namespace=tokens[0], type=tokens[1], name=name)


def parse_internal(resource: str) -> ResourceKey:
    """Parse a ``node/<node>/...`` resource; raises :class:`ResourceError` if the prefix is missing."""
    _check_text(resource)
    node, wire = strip_node_prefix(resource)
    if not node and wire is resource:
        raise ResourceError(f"resource {resource!r} has no node/<node>/ prefix")
    _check_token(node, "node", resource)
    return parse_wire(wire).with_node(node)


def parse(resource: str) -> ResourceKey:
    """Parse either spelling, deciding like CloudHub: a prefix iff the first token is ``node`` and >= 3 tokens."""
    _check_text(resource)
    if _has_prefix(resource):
        return parse_internal(resource)
    return parse_wire(resource)


def _has_prefix(resource: str) -> bool:
    return resource.startswith("node/") and resource.count("/") >= 2


def strip_node_prefix(resource: str) -> tuple[str, str]:
    """CloudHub's write rule: ``("<node>", "<rest>")`` for ``node/<node>/<rest>``, else ``("", resource)``.

    A pure string rule (no validation), exactly as upstream applies it to every
    outgoing message.
    """
    if _has_prefix(resource):
        _, node, rest = resource.split("/", 2)
        return node, rest
    return "", resource


def add_node_prefix(wire_resource: str, node: str) -> str:
    """CloudHub's read rule: ``node/<node>/<wire_resource>``; validates ``node`` and the result's size."""
    _check_token(node, "node", wire_resource)
    result = f"{NODE_PREFIX}/{node}/{wire_resource}"
    _check_text(result)
    return result


def lease_key(node: str) -> ResourceKey:
    """The node's lease: ``kube-node-lease/lease/<node>``."""
    return ResourceKey.object(LEASE_NAMESPACE, "lease", node)


def node_key(node: str) -> ResourceKey:
    """The Node object: ``null/node/<node>``."""
    return ResourceKey.object(CLUSTER_NAMESPACE, "node", node)
