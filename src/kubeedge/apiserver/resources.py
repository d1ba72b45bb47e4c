"""The served resource types: built-in kinds and those added by CustomResourceDefinitions.

A :class:`Resource` names one REST resource (group, version, plural, kind,
scope, subresources). :class:`Registry` holds the built-ins plus one entry per
served version of every established CRD; it is rebuilt from CRD objects, never
mutated piecemeal by handlers. Storage keys objects by group and plural
(``Resource.key``), so every served version of a group shares one store.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class Resource:
    """One REST resource at one group version."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    crd: bool = False
    printer_columns: tuple[dict[str, Any], ...] = ()
    field_labels: tuple[str, ...] = ()
    """Field selector keys accepted beyond metadata.name/metadata.namespace."""

    @property
    def key(self) -> str:
        """Storage key: ``plural`` for the core group, else ``plural.group``."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def group_version(self) -> str:
        """``v1`` for core, else ``group/version``."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def list_kind(self) -> str:
        """The kind of a list of this resource."""
        return f"{self.kind}List"


CORE = ""
_POD_FIELDS = (
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
)
_EVENT_FIELDS = (
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
)

BUILTIN: tuple[Resource, ...] = (
    Resource(CORE, "v1", "namespaces", "Namespace", False, "namespace", ("ns",), ("status",),
             field_labels=("status.phase",)),
    Resource(CORE, "v1", "nodes", "Node", False, "node", ("no",), ("status",), field_labels=("spec.unschedulable",)),
    Resource(CORE, "v1", "pods", "Pod", True, "pod", ("po",), ("status", "binding"), ("all",),
             field_labels=_POD_FIELDS),
    Resource(CORE, "v1", "bindings", "Binding", True, "binding", verbs=("create",)),
    Resource(CORE, "v1", "configmaps", "ConfigMap", True, "configmap", ("cm",)),
    Resource(CORE, "v1", "secrets", "Secret", True, "secret", (), field_labels=("type",)),
    Resource(CORE, "v1", "services", "Service", True, "service", ("svc",), ("status",), ("all",)),
    Resource(CORE, "v1", "endpoints", "Endpoints", True, "endpoints", ("ep",)),
    Resource(CORE, "v1", "events", "Event", True, "event", ("ev",), field_labels=_EVENT_FIELDS),
    Resource(CORE, "v1", "serviceaccounts", "ServiceAccount", True, "serviceaccount", ("sa",), ("token",)),
    Resource("coordination.k8s.io", "v1", "leases", "Lease", True, "lease"),
    Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False,
             "customresourcedefinition", ("crd", "crds"), ("status",)),
)  # fmt: skip


def from_crd(crd: dict[str, Any]) -> list[Resource]:
    """The resources one CRD object serves (one per served version); empty if the CRD is malformed."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group = spec.get("group")
    plural = names.get("plural")
    kind = names.get("kind")
    if not (isinstance(group, str) and isinstance(plural, str) and isinstance(kind, str)):
        return []
    out: list[Resource] = []
    for version in spec.get("versions") or []:
        if not isinstance(version, dict) or not version.get("served", True):
            continue
        subs = version.get("subresources") or {}
        out.append(
            Resource(
                group=group,
                version=str(version.get("name")),
                plural=plural,
                kind=kind,
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                singular=str(names.get("singular") or kind.lower()),
                short_names=tuple(str(s) for s in names.get("shortNames") or ()),
                subresources=tuple(s for s in ("status", "scale") if s in subs),
                categories=tuple(str(c) for c in names.get("categories") or ()),
                crd=True,
                printer_columns=tuple(
                    c for c in version.get("additionalPrinterColumns") or () if isinstance(c, dict)
                ),
            )
        )
    return out


@dataclass
class Registry:
    """Lookup of served resources by (group, version, plural) and by kind."""

    _by_path: dict[tuple[str, str, str], Resource] = field(default_factory=dict)

    @classmethod
    def build(cls, crds: Iterable[dict[str, Any]]) -> Registry:
        """Built-ins plus every served version of ``crds``."""
        reg = cls()
        for res in BUILTIN:
            reg._by_path[(res.group, res.version, res.plural)] = res
        for crd in crds:
            for res in from_crd(crd):
                reg._by_path.setdefault((res.group, res.version, res.plural), res)
        return reg

    def lookup(self, group: str, version: str, plural: str) -> Resource | None:
        """The resource served at ``/apis/group/version/plural`` (or ``/api/v1/plural``)."""
        return self._by_path.get((group, version, plural))

    def by_kind(self, group: str, version: str, kind: str) -> Resource | None:
        """The resource whose kind is ``kind`` in ``group/version``."""
        for res in self._by_path.values():
            if res.group == group and res.version == version and res.kind == kind:
                return res
        return None

    def __iter__(self) -> Iterator[Resource]:
        return iter(sorted(self._by_path.values(), key=lambda r: (r.group, r.version, r.plural)))

    def group_versions(self) -> dict[str, list[str]]:
        """Served versions per group (core excluded), in the order CRDs list them."""
        out: dict[str, list[str]] = {}
        for (group, version, _), _res in self._by_path.items():
            if group and version not in out.setdefault(group, []):
                out[group].append(version)
        return out
