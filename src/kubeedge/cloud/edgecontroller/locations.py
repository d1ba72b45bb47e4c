"""Which edge node needs which object: pods bound to edge nodes and the configmaps/secrets they reference.

Owns :class:`Locations`, the sans-io reference map: for each pod on an edge node
its node, UID, service account and the configmaps/secrets it references; and
the reverse index object -> nodes (with a count of referencing pods). Also owns
:func:`references` (what a pod spec refers to) and :func:`spec_changed` (is a
pod change worth pushing: status-only changes are not).

Invariants: the reverse index always equals what the pods recorded imply; a
node's reference to an object disappears with the last pod that made it. Pure
data, no I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class RefKind(StrEnum):
    """Kinds of objects a pod can make a node need (edge resource type names)."""

    CONFIGMAP = "configmap"
    SECRET = "secret"


@dataclass(frozen=True, slots=True)
class Ref:
    """One referenced object."""

    kind: RefKind
    namespace: str
    name: str


def references(pod: dict[str, Any]) -> set[Ref]:
    """Every configmap and secret the pod uses: volumes, projected sources, env, envFrom, imagePullSecrets."""
    ns = (pod.get("metadata") or {}).get("namespace", "")
    spec = pod.get("spec") or {}
    refs: set[Ref] = set()

    def add(kind: RefKind, name: Any) -> None:
        if isinstance(name, str) and name:
            refs.add(Ref(kind, ns, name))

    for vol in spec.get("volumes") or []:
        add(RefKind.CONFIGMAP, (vol.get("configMap") or {}).get("name"))
        add(RefKind.SECRET, (vol.get("secret") or {}).get("secretName"))
        for source in (vol.get("projected") or {}).get("sources") or []:
            add(RefKind.CONFIGMAP, (source.get("configMap") or {}).get("name"))
            add(RefKind.SECRET, (source.get("secret") or {}).get("name"))
    containers = [
        *(spec.get("containers") or []),
        *(spec.get("initContainers") or []),
        *(spec.get("ephemeralContainers") or []),
    ]
    for container in containers:
        for source in container.get("envFrom") or []:
            add(RefKind.CONFIGMAP, (source.get("configMapRef") or {}).get("name"))
            add(RefKind.SECRET, (source.get("secretRef") or {}).get("name"))
        for env in container.get("env") or []:
            value_from = env.get("valueFrom") or {}
            add(RefKind.CONFIGMAP, (value_from.get("configMapKeyRef") or {}).get("name"))
            add(RefKind.SECRET, (value_from.get("secretKeyRef") or {}).get("name"))
    for pull in spec.get("imagePullSecrets") or []:
        add(RefKind.SECRET, pull.get("name"))
    return refs


_PUSHED_METADATA = ("labels", "annotations", "deletionTimestamp", "deletionGracePeriodSeconds", "finalizers",
                    "ownerReferences")  # fmt: skip


def spec_changed(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """True if the edge must hear about the change: anything but status (and bookkeeping metadata)."""
    if old.get("spec") != new.get("spec"):
        return True
    old_meta, new_meta = old.get("metadata") or {}, new.get("metadata") or {}
    return any(old_meta.get(k) != new_meta.get(k) for k in _PUSHED_METADATA)


@dataclass(slots=True)
class PodEntry:
    """What the map remembers about one pod."""

    node: str
    uid: str
    service_account: str
    refs: frozenset[Ref]


@dataclass(slots=True)
class Locations:
    """The reference map. Keys of pods are ``<namespace>/<name>``."""

    pods: dict[str, PodEntry] = field(default_factory=dict)
    _users: dict[Ref, dict[str, int]] = field(default_factory=dict)
    _by_node: dict[str, set[str]] = field(default_factory=dict)

    def set_pod(self, key: str, pod: dict[str, Any], node: str) -> set[Ref]:
        """Record ``pod`` on ``node``; returns the references that are new for that node."""
        spec = pod.get("spec") or {}
        entry = PodEntry(
            node=node,
            uid=(pod.get("metadata") or {}).get("uid", ""),
            service_account=spec.get("serviceAccountName") or spec.get("serviceAccount") or "default",
            refs=frozenset(references(pod)),
        )
        before = {r for r in entry.refs if node in self._users.get(r, {})}
        self.remove_pod(key)
        self.pods[key] = entry
        self._by_node.setdefault(node, set()).add(key)
        for ref in entry.refs:
            users = self._users.setdefault(ref, {})
            users[node] = users.get(node, 0) + 1
        return set(entry.refs) - before

    def remove_pod(self, key: str) -> PodEntry | None:
        """Forget a pod; returns what was recorded for it."""
        entry = self.pods.pop(key, None)
        if entry is None:
            return None
        keys = self._by_node.get(entry.node)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del self._by_node[entry.node]
        for ref in entry.refs:
            users = self._users.get(ref)
            if users is None:
                continue
            left = users.get(entry.node, 0) - 1
            if left > 0:
                users[entry.node] = left
            else:
                users.pop(entry.node, None)
            if not users:
                del self._users[ref]
        return entry

    def nodes_for(self, ref: Ref) -> list[str]:
        """Nodes with at least one pod referencing ``ref`` (sorted)."""
        return sorted(self._users.get(ref, {}))

    def node_uses(self, node: str, ref: Ref) -> bool:
        """True if a pod on ``node`` references ``ref``."""
        return node in self._users.get(ref, {})

    def pods_on(self, node: str) -> list[str]:
        """Keys of the pods recorded on ``node`` (sorted)."""
        return sorted(self._by_node.get(node, ()))

    def refs_of_node(self, node: str) -> set[Ref]:
        """Everything the pods on ``node`` reference."""
        out: set[Ref] = set()
        for key in self._by_node.get(node, ()):
            out |= self.pods[key].refs
        return out

    def node_has_pod(self, node: str, namespace: str, name: str) -> bool:
        """True if pod ``namespace/name`` is recorded on ``node``."""
        entry = self.pods.get(f"{namespace}/{name}")
        return entry is not None and entry.node == node

    def node_uses_service_account(self, node: str, namespace: str, name: str) -> bool:
        """True if a pod on ``node`` in ``namespace`` runs as service account ``name``."""
        return any(
            self.pods[key].service_account == name and key.split("/", 1)[0] == namespace
            for key in self._by_node.get(node, ())
        )

    def drop_node(self, node: str) -> Iterable[str]:
        """Forget every pod on ``node``; returns their keys."""
        keys = list(self._by_node.get(node, ()))
        for key in keys:
            self.remove_pod(key)
        return keys
