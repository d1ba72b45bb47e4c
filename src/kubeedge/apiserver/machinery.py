"""API machinery for stored objects: name validation, create/update preparation, defaulting, strict fields.

Pure functions over decoded objects, with the clock and random source passed
in. Defaulting mirrors what kube-apiserver's defaulters and admission plugins
leave on objects that kubectl and controllers rely on (pod restartPolicy,
container imagePullPolicy, service clusterIP and targetPort, namespace phase,
...). Problems raise :class:`~kubeedge.apiserver.errors.ApiError` (422 Invalid
naming each bad field, 400 for shape errors); inputs are only mutated where a
function says so.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import ipaddress
import random
import re
import uuid
from collections.abc import Callable
from typing import Any

from kubeedge.apiserver import errors
from kubeedge.apiserver.resources import Resource

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_GENERATE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"

LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and"
    " end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is"
    " '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must"
    " start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is"
    " '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)

# Kinds whose names must be DNS-1123 labels rather than subdomains (upstream ValidateNamespaceName etc.).
_LABEL_NAMED = {"Namespace", "Service"}

_META_FIELDS = {
    "name", "generateName", "namespace", "selfLink", "uid", "resourceVersion", "generation",
    "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "labels", "annotations",
    "ownerReferences", "finalizers", "managedFields",
}  # fmt: skip
_TOP_FIELDS: dict[str, set[str]] = {
    "Namespace": {"spec", "status"},
    "Node": {"spec", "status"},
    "Pod": {"spec", "status"},
    "Service": {"spec", "status"},
    "ConfigMap": {"data", "binaryData", "immutable"},
    "Secret": {"data", "stringData", "type", "immutable"},
    "Endpoints": {"subsets"},
    "Event": {
        "involvedObject", "reason", "message", "source", "firstTimestamp", "lastTimestamp", "count", "type",
        "eventTime", "series", "action", "related", "reportingComponent", "reportingInstance",
    },
    "ServiceAccount": {"secrets", "imagePullSecrets", "automountServiceAccountToken"},
    "Lease": {"spec"},
    "CustomResourceDefinition": {"spec", "status"},
}  # fmt: skip


def rfc3339(now: float) -> str:
    """Seconds-resolution UTC timestamp as Kubernetes writes it."""
    return dt.datetime.fromtimestamp(int(now), dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str) -> float | None:
    """Seconds since the epoch of an RFC 3339 timestamp, or None."""
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except (ValueError, AttributeError):
        return None


def name_problem(kind: str, name: str) -> str | None:
    """Why ``name`` is not a valid object name for ``kind`` (None when valid)."""
    if kind in _LABEL_NAMED:
        if len(name) > 63:
            return "must be no more than 63 characters"
        return None if DNS1123_LABEL.match(name) else LABEL_MSG
    if len(name) > 253:
        return "must be no more than 253 characters"
    return None if DNS1123_SUBDOMAIN.match(name) else SUBDOMAIN_MSG


def _label_key_problem(key: str) -> str | None:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not DNS1123_SUBDOMAIN.match(prefix)):
        return f"prefix part {SUBDOMAIN_MSG}"
    if not name or len(name) > 63 or not _QUALIFIED_NAME.match(name):
        return (
            "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an"
            " alphanumeric character, at most 63 characters"
        )
    return None


def validate_meta(kind: str, obj: dict[str, Any], *, group: str = "") -> None:
    """422 Invalid unless name, labels and annotations are well formed."""
    meta = obj["metadata"]
    name = str(meta.get("name", ""))
    causes: list[tuple[str, str]] = []
    problem = name_problem(kind, name)
    if problem:
        causes.append(("metadata.name", f'Invalid value: "{name}": {problem}'))
    labels = meta.get("labels") or {}
    if not isinstance(labels, dict):
        causes.append(("metadata.labels", "Invalid value: must be a map of strings"))
    else:
        for key, value in labels.items():
            if p := _label_key_problem(key):
                causes.append(("metadata.labels", f'Invalid value: "{key}": {p}'))
            if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
                causes.append(
                    (
                        "metadata.labels",
                        f'Invalid value: "{value}": a valid label must be an empty string or consist of alphanumeric'
                        " characters, '-', '_' or '.', and must start and end with an alphanumeric character",
                    )
                )
    annotations = meta.get("annotations") or {}
    if not isinstance(annotations, dict) or not all(isinstance(v, str) for v in annotations.values()):
        causes.append(("metadata.annotations", "Invalid value: must be a map of strings"))
    for field in ("finalizers",):
        value = meta.get(field)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            causes.append((f"metadata.{field}", "Invalid value: must be a list of strings"))
    causes.extend(_kind_problems(kind, obj))
    if causes:
        raise errors.invalid(kind, name, causes, group)


def _kind_problems(kind: str, obj: dict[str, Any]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if kind == "Pod":
        containers = (obj.get("spec") or {}).get("containers")
        if not isinstance(containers, list) or not containers:
            out.append(("spec.containers", "Required value"))
        else:
            for i, c in enumerate(containers):
                if not isinstance(c, dict):
                    out.append((f"spec.containers[{i}]", "Invalid value: must be an object"))
                    continue
                if not c.get("name"):
                    out.append((f"spec.containers[{i}].name", "Required value"))
                elif not DNS1123_LABEL.match(str(c["name"])):
                    out.append((f"spec.containers[{i}].name", f'Invalid value: "{c["name"]}": {LABEL_MSG}'))
                if not c.get("image"):
                    out.append((f"spec.containers[{i}].image", "Required value"))
    elif kind == "ConfigMap":
        data = obj.get("data")
        if data is not None and not (
            isinstance(data, dict) and all(isinstance(v, str) for v in data.values())
        ):
            out.append(("data", "Invalid value: must be a map of strings"))
    elif kind == "Secret":
        for field in ("data", "stringData"):
            data = obj.get(field)
            if data is not None and not isinstance(data, dict):
                out.append((field, "Invalid value: must be a map"))
        for key, value in (obj.get("data") or {}).items():
            try:
                base64.b64decode(str(value), validate=True)
            except ValueError:
                out.append((f"data[{key}]", "Invalid value: must be base64"))
    elif kind == "Lease":
        holder = (obj.get("spec") or {}).get("leaseDurationSeconds")
        if holder is not None and (not isinstance(holder, int) or holder <= 0):
            out.append(("spec.leaseDurationSeconds", "Invalid value: must be greater than 0"))
    return out


def unknown_fields(res: Resource, obj: dict[str, Any], schema: dict[str, Any] | None) -> list[str]:
    """Dotted paths of fields the kind does not define (for fieldValidation=Strict/Warn)."""
    out = [f"metadata.{k}" for k in (obj.get("metadata") or {}) if k not in _META_FIELDS]
    if res.crd:
        if schema:
            out.extend(_schema_unknown(schema, obj, "", top=True))
        return out
    allowed = _TOP_FIELDS.get(res.kind)
    if allowed is not None:
        out.extend(k for k in obj if k not in allowed and k not in ("apiVersion", "kind", "metadata"))
    return out


def _schema_unknown(schema: dict[str, Any], value: Any, path: str, *, top: bool = False) -> list[str]:
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    out: list[str] = []
    if isinstance(value, dict):
        props = schema.get("properties")
        extra = schema.get("additionalProperties")
        if props is None and extra is None:
            return []
        for key, sub in value.items():
            if top and key in ("apiVersion", "kind", "metadata"):
                continue
            child = f"{path}.{key}" if path else key
            if props is not None and key in props:
                out.extend(_schema_unknown(props[key], sub, child))
            elif isinstance(extra, dict):
                out.extend(_schema_unknown(extra, sub, child))
            elif extra is True:
                continue
            else:
                out.append(child)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            out.extend(_schema_unknown(schema["items"], item, f"{path}[{i}]"))
    return out


def generate_name(prefix: str, rng: random.Random) -> str:
    """``prefix`` plus five random characters, as upstream's name generator does."""
    return prefix[:58] + "".join(rng.choice(_GENERATE_ALPHABET) for _ in range(5))


def prepare_create(
    res: Resource,
    obj: dict[str, Any],
    namespace: str,
    *,
    now: float,
    rng: random.Random,
    allocate_ip: Callable[[], str],
) -> dict[str, Any]:
    """Set server-owned metadata and defaults on a new object (mutates and returns ``obj``)."""
    meta = obj["metadata"]
    for field in (
        "resourceVersion",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "selfLink",
        "managedFields",
    ):
        meta.pop(field, None)
    if res.namespaced:
        meta["namespace"] = namespace
    else:
        meta.pop("namespace", None)
    meta["uid"] = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    meta["creationTimestamp"] = rfc3339(now)
    if "spec" in obj or res.crd:
        meta["generation"] = 1
    obj["apiVersion"] = res.group_version
    obj["kind"] = res.kind
    default(res, obj, now=now, allocate_ip=allocate_ip, create=True)
    return obj


def default(
    res: Resource, obj: dict[str, Any], *, now: float, allocate_ip: Callable[[], str], create: bool = False
) -> None:
    """Kind defaults (mutates ``obj``). Idempotent, so updates run it too."""
    kind = res.kind if not res.crd else ""
    if kind == "Pod":
        _default_pod(obj, create=create, now=now)
    elif kind == "Service":
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        spec.setdefault("internalTrafficPolicy", "Cluster")
        if spec.get("clusterIP") in (None, "") and spec["type"] != "ExternalName":
            spec["clusterIP"] = allocate_ip()
        if spec.get("clusterIP") and "clusterIPs" not in spec:
            spec["clusterIPs"] = [spec["clusterIP"]]
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        for port in spec.get("ports") or []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")
                if "port" in port:
                    port.setdefault("targetPort", port["port"])
        obj.setdefault("status", {"loadBalancer": {}})
    elif kind == "Namespace":
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj.setdefault("status", {}).setdefault("phase", "Active")
        labels = obj["metadata"].setdefault("labels", {})
        labels["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
    elif kind == "Secret":
        obj.setdefault("type", "Opaque")
        string_data = obj.pop("stringData", None)
        if isinstance(string_data, dict):
            data = obj.setdefault("data", {})
            for key, value in string_data.items():
                data[key] = base64.b64encode(str(value).encode()).decode()
    elif kind == "Node":
        obj.setdefault("spec", {})
        obj.setdefault("status", {})
    elif kind == "Event":
        obj.setdefault("count", 1)
        obj.setdefault("type", "Normal")
        obj.setdefault("firstTimestamp", rfc3339(now))
        obj.setdefault("lastTimestamp", obj["firstTimestamp"])
        obj.setdefault("source", {})
        obj.setdefault("reportingComponent", "")
        obj.setdefault("reportingInstance", "")
    elif kind == "CustomResourceDefinition":
        _default_crd(obj, now)


def _default_pod(obj: dict[str, Any], *, create: bool, now: float) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("securityContext", {})
    spec.setdefault("serviceAccountName", spec.get("serviceAccount") or "default")
    spec.setdefault("serviceAccount", spec["serviceAccountName"])
    spec.setdefault("enableServiceLinks", True)
    spec.setdefault("priority", 0)
    spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
    for group in ("initContainers", "containers"):
        for c in spec.get(group) or []:
            if not isinstance(c, dict):
                continue
            image = str(c.get("image", ""))
            tail = image.rsplit("/", 1)[-1]
            latest = "@" not in image and (":" not in tail or tail.endswith(":latest"))
            c.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
            c.setdefault("terminationMessagePath", "/dev/termination-log")
            c.setdefault("terminationMessagePolicy", "File")
            c.setdefault("resources", {})
            for port in c.get("ports") or []:
                if isinstance(port, dict):
                    port.setdefault("protocol", "TCP")
    if create:
        tolerations = spec.setdefault("tolerations", [])
        have = {t.get("key") for t in tolerations if isinstance(t, dict)}
        # What the DefaultTolerationSeconds admission plugin adds.
        for key in ("node.kubernetes.io/not-ready", "node.kubernetes.io/unreachable"):
            if key not in have:
                tolerations.append(
                    {"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
                )
        status = obj.setdefault("status", {})
        status.setdefault("phase", "Pending")
        status.setdefault("qosClass", _qos(spec))


def _qos(spec: dict[str, Any]) -> str:
    containers = [c for c in spec.get("containers") or [] if isinstance(c, dict)]
    reqs = [(c.get("resources") or {}) for c in containers]
    if not any(r.get("requests") or r.get("limits") for r in reqs):
        return "BestEffort"
    guaranteed = all(
        (r.get("limits") or {}).get(k) is not None
        and (r.get("requests") or r.get("limits") or {}).get(k) == (r.get("limits") or {}).get(k)
        for r in reqs
        for k in ("cpu", "memory")
    )
    return "Guaranteed" if guaranteed else "Burstable"


def _default_crd(obj: dict[str, Any], now: float) -> None:
    spec = obj.setdefault("spec", {})
    names = spec.setdefault("names", {})
    if names.get("kind"):
        names.setdefault("singular", str(names["kind"]).lower())
        names.setdefault("listKind", f"{names['kind']}List")
    spec.setdefault("scope", "Namespaced")
    for version in spec.get("versions") or []:
        if isinstance(version, dict):
            version.setdefault("served", True)
            version.setdefault("storage", False)
    ts = rfc3339(now)
    status = obj.setdefault("status", {})
    status["acceptedNames"] = dict(names)
    status["storedVersions"] = [v["name"] for v in spec.get("versions") or [] if v.get("storage")]
    status["conditions"] = [
        {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts",
         "message": "no conflicts found", "lastTransitionTime": ts},
        {"type": "Established", "status": "True", "reason": "InitialNamesAccepted",
         "message": "the initial names have been accepted", "lastTransitionTime": ts},
    ]  # fmt: skip


def validate_crd(obj: dict[str, Any]) -> None:
    """422 Invalid unless the CRD's name is ``<plural>.<group>`` and it has one storage version."""
    name = str(obj["metadata"].get("name", ""))
    spec = obj.get("spec") or {}
    names = spec.get("names") or {}
    causes: list[tuple[str, str]] = []
    group, plural = spec.get("group"), names.get("plural")
    if not isinstance(group, str) or "." not in group:
        causes.append(("spec.group", "Invalid value: should be a domain with at least one dot"))
    if not isinstance(plural, str) or not DNS1123_LABEL.match(plural):
        causes.append(("spec.names.plural", f"Invalid value: {LABEL_MSG}"))
    if not isinstance(names.get("kind"), str) or not names.get("kind"):
        causes.append(("spec.names.kind", "Required value"))
    if isinstance(group, str) and isinstance(plural, str) and name != f"{plural}.{group}":
        causes.append(("metadata.name", f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group'))
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        causes.append(("spec.scope", 'Unsupported value: must be "Cluster" or "Namespaced"'))
    versions = spec.get("versions")
    if not isinstance(versions, list) or not versions:
        causes.append(("spec.versions", "Required value"))
    elif sum(1 for v in versions if isinstance(v, dict) and v.get("storage")) != 1:
        causes.append(
            ("spec.versions", "Invalid value: must have exactly one version marked as storage version")
        )
    if causes:
        raise errors.invalid("CustomResourceDefinition", name, causes, "apiextensions.k8s.io")


def crd_schema(crd: dict[str, Any], version: str) -> dict[str, Any] | None:
    """The openAPIV3Schema of ``version`` of a CRD object."""
    for v in (crd.get("spec") or {}).get("versions") or []:
        if isinstance(v, dict) and v.get("name") == version:
            schema = (v.get("schema") or {}).get("openAPIV3Schema")
            return schema if isinstance(schema, dict) else None
    return None


def carry_over(
    res: Resource, new: dict[str, Any], old: dict[str, Any], *, subresource: str
) -> dict[str, Any]:
    """The object to store for an update of ``old`` with body ``new`` (mutates and returns ``new``).

    Server-owned metadata is kept from ``old``; the main resource ignores
    ``status`` changes when a status subresource exists and ``/status`` only
    takes ``status``. ``generation`` moves when anything but metadata and status
    changes.
    """
    if subresource == "status":
        merged = copy.deepcopy(old)
        if "status" in new:
            merged["status"] = new["status"]
        else:
            merged.pop("status", None)
        new = merged
    elif "status" in res.subresources:
        if "status" in old:
            new["status"] = old["status"]
        else:
            new.pop("status", None)
    meta, old_meta = new.setdefault("metadata", {}), old["metadata"]
    for field in (
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
    ):
        if field in old_meta:
            meta[field] = old_meta[field]
        else:
            meta.pop(field, None)
    meta["name"] = old_meta["name"]
    if "namespace" in old_meta:
        meta["namespace"] = old_meta["namespace"]
    new["apiVersion"] = old.get("apiVersion", res.group_version)
    new["kind"] = res.kind
    changed = {k: v for k, v in new.items() if k not in ("metadata", "status")} != {
        k: v for k, v in old.items() if k not in ("metadata", "status")
    }
    if changed and "generation" in old_meta:
        meta["generation"] = int(old_meta["generation"]) + 1
    return new


def immutable_problems(res: Resource, new: dict[str, Any], old: dict[str, Any]) -> list[tuple[str, str]]:
    """Fields an update may not change for ``res`` (pod spec except images, service clusterIP, ...)."""
    out: list[tuple[str, str]] = []
    if res.crd:
        return out
    if res.kind == "Pod":
        old_spec, new_spec = old.get("spec") or {}, new.get("spec") or {}
        if _pod_fixed_fields(old_spec) != _pod_fixed_fields(new_spec):
            out.append(
                ("spec", "Forbidden: pod updates may not change fields other than image and tolerations")
            )
        if old_spec.get("nodeName") and new_spec.get("nodeName") != old_spec.get("nodeName"):
            out.append(("spec.nodeName", "Forbidden: pod updates may not change spec.nodeName once set"))
    elif res.kind == "Service":
        old_ip = (old.get("spec") or {}).get("clusterIP")
        if old_ip and (new.get("spec") or {}).get("clusterIP") not in (old_ip, None, ""):
            out.append(("spec.clusterIP", "Invalid value: field is immutable"))
    elif res.kind in ("ConfigMap", "Secret") and old.get("immutable"):
        if {k: new.get(k) for k in ("data", "binaryData")} != {k: old.get(k) for k in ("data", "binaryData")}:
            out.append(("data", "Forbidden: field is immutable when `immutable` is set"))
    elif res.kind == "CustomResourceDefinition":
        for field in ("group", "scope"):
            if (new.get("spec") or {}).get(field) != (old.get("spec") or {}).get(field):
                out.append((f"spec.{field}", "Invalid value: field is immutable"))
    return out


def _pod_fixed_fields(spec: dict[str, Any]) -> dict[str, Any]:
    """The part of a pod spec an update may not change (all but images, tolerations, deadlines, nodeName)."""
    return {
        k: ([{ck: cv for ck, cv in c.items() if ck != "image"} for c in v] if k == "containers" else v)
        for k, v in spec.items()
        if k not in ("activeDeadlineSeconds", "tolerations", "nodeName", "schedulingGates")
    }


class IPAllocator:
    """Service cluster IPs from a /12 (upstream's default service CIDR), skipping ones in use."""

    def __init__(self, cidr: str = "10.96.0.0/12") -> None:
        self._net = ipaddress.ip_network(cidr)
        self._next = 10
        self.used: set[str] = set()

    def allocate(self) -> str:
        """A free address from the range."""
        for _ in range(self._net.num_addresses):
            addr = str(self._net.network_address + self._next)
            self._next = self._next + 1 if self._next + 2 < self._net.num_addresses else 10
            if addr not in self.used:
                self.used.add(addr)
                return addr
        raise errors.ApiError(500, "InternalError", "service IP range exhausted")
