"""Container environment: ``env``/``envFrom`` resolved from configmaps, secrets and the downward API.

Pure: objects are looked up beforehand (:func:`referenced_objects` lists what a pod needs) and passed
in as :data:`Objects`. Failures raise :class:`ConfigError`, which the status shows as kubelet's
``CreateContainerConfigError`` with the same wording (``configmap "x" not found``).
"""

from __future__ import annotations

import base64
import binascii
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from kubeedge.edge.edged import quantity
from kubeedge.edge.edged.podspec import Container, Pod

Objects = Mapping[tuple[str, str, str], Mapping[str, Any] | None]
"""``(kind, namespace, name) -> object`` with kind ``configmap`` or ``secret``; ``None`` when missing."""

_FIELD_LABEL: Final = re.compile(r"^metadata\.(labels|annotations)\['([^']*)'\]$")
_VAR_REF: Final = re.compile(r"\$\$|\$\(([-._a-zA-Z][-._a-zA-Z0-9]*)\)")


class ConfigError(ValueError):
    """A container's configuration refers to something missing or malformed."""


@dataclass(frozen=True, slots=True)
class PodContext:
    """Facts the downward API exposes that are not in the pod object itself."""

    node_name: str
    host_ip: str
    pod_ip: str = ""
    node_cpu_millis: int = 0
    node_memory_bytes: int = 0


def referenced_objects(pod: Pod) -> set[tuple[str, str, str]]:
    """Every ``(kind, namespace, name)`` the pod's env and volumes read."""
    refs: set[tuple[str, str, str]] = set()
    ns = pod.namespace
    for container in (*pod.init_containers, *pod.containers):
        for env in container.env:
            source = env.get("valueFrom") or {}
            if isinstance(source.get("configMapKeyRef"), Mapping):
                refs.add(("configmap", ns, str(source["configMapKeyRef"].get("name", ""))))
            if isinstance(source.get("secretKeyRef"), Mapping):
                refs.add(("secret", ns, str(source["secretKeyRef"].get("name", ""))))
        for env_from in container.env_from:
            if isinstance(env_from.get("configMapRef"), Mapping):
                refs.add(("configmap", ns, str(env_from["configMapRef"].get("name", ""))))
            if isinstance(env_from.get("secretRef"), Mapping):
                refs.add(("secret", ns, str(env_from["secretRef"].get("name", ""))))
    for volume in pod.volumes.values():
        if "configMap" in volume:
            refs.add(("configmap", ns, str(volume["configMap"].get("name", ""))))
        if "secret" in volume:
            refs.add(("secret", ns, str(volume["secret"].get("secretName", ""))))
        for source in (volume.get("projected") or {}).get("sources") or []:
            if isinstance(source.get("configMap"), Mapping):
                refs.add(("configmap", ns, str(source["configMap"].get("name", ""))))
            if isinstance(source.get("secret"), Mapping):
                refs.add(("secret", ns, str(source["secret"].get("name", ""))))
            if isinstance(source.get("serviceAccountToken"), Mapping):
                account = str((pod.raw.get("spec") or {}).get("serviceAccountName") or "default")
                refs.add(("serviceaccounttoken", ns, account))
    return refs


def object_data(kind: str, obj: Mapping[str, Any], name: str) -> dict[str, bytes]:
    """Key -> bytes of a configmap (``data`` + ``binaryData``) or secret (``data`` base64, ``stringData``)."""
    result: dict[str, bytes] = {}
    data = obj.get("data") or {}
    if not isinstance(data, Mapping):
        raise ConfigError(f'{kind} "{name}": data is not an object')
    if kind == "configmap":
        for key, value in data.items():
            result[str(key)] = str(value).encode()
        binary = obj.get("binaryData") or {}
        encoded: Mapping[str, Any] = binary if isinstance(binary, Mapping) else {}
    else:
        encoded = data
        for key, value in (obj.get("stringData") or {}).items():
            result[str(key)] = str(value).encode()
    for key, value in encoded.items():
        try:
            result[str(key)] = base64.b64decode(str(value), validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f'{kind} "{name}": key {key!r} is not valid base64') from None
    return result


def _lookup(
    objects: Objects, kind: str, namespace: str, name: str, optional: bool
) -> dict[str, bytes] | None:
    obj = objects.get((kind, namespace, name))
    if obj is None:
        if optional:
            return None
        raise ConfigError(f'{kind} "{name}" not found')
    return object_data(kind, obj, name)


def field_value(pod: Pod, path: str, ctx: PodContext) -> str:
    """The downward-API value of ``fieldPath``; raises :class:`ConfigError` for unsupported paths."""
    meta = pod.raw.get("metadata") or {}
    spec = pod.raw.get("spec") or {}
    simple = {
        "metadata.name": pod.name,
        "metadata.namespace": pod.namespace,
        "metadata.uid": pod.uid,
        "spec.nodeName": str(spec.get("nodeName") or ctx.node_name),
        "spec.serviceAccountName": str(spec.get("serviceAccountName") or ""),
        "status.hostIP": ctx.host_ip,
        "status.hostIPs": ctx.host_ip,
        "status.podIP": ctx.pod_ip,
        "status.podIPs": ctx.pod_ip,
    }
    if path in simple:
        return simple[path]
    if path in ("metadata.labels", "metadata.annotations"):
        values = meta.get(path.split(".")[1]) or {}
        return "\n".join(f'{k}="{v}"' for k, v in sorted(values.items()))
    match = _FIELD_LABEL.match(path)
    if match:
        return str((meta.get(match.group(1)) or {}).get(match.group(2), ""))
    raise ConfigError(f"fieldRef {path!r} is not supported")


def resource_value(container: Container, resource: str, divisor: Any, ctx: PodContext) -> str:
    """The downward-API value of a ``resourceFieldRef`` (unset limits fall back to the node's capacity)."""
    try:
        div = quantity.parse(divisor) if divisor not in (None, "") else None
    except ValueError as exc:
        raise ConfigError(f"resourceFieldRef divisor: {exc}") from None
    if resource in ("limits.cpu", "requests.cpu"):
        millis = container.cpu_limit_millis if resource == "limits.cpu" else container.cpu_request_millis
        millis = millis or ctx.node_cpu_millis
        return str(math.ceil(millis / 1000 / float(div or 1)))
    if resource in ("limits.memory", "requests.memory"):
        value = container.memory_limit_bytes or ctx.node_memory_bytes
        return str(math.ceil(value / float(div or 1)))
    raise ConfigError(f"resourceFieldRef {resource!r} is not supported")


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes ``$(VAR)`` expansion: known variables are replaced, ``$$`` escapes, others stay."""

    def repl(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return _VAR_REF.sub(repl, text)


def container_env(pod: Pod, container: Container, objects: Objects, ctx: PodContext) -> dict[str, str]:
    """The container's final environment, in Kubernetes order (envFrom first, then env, expanded)."""
    env: dict[str, str] = {}
    for env_from in container.env_from:
        prefix = str(env_from.get("prefix") or "")
        for kind, key in (("configmap", "configMapRef"), ("secret", "secretRef")):
            ref = env_from.get(key)
            if isinstance(ref, Mapping):
                data = _lookup(
                    objects, kind, pod.namespace, str(ref.get("name", "")), bool(ref.get("optional"))
                )
                for name, value in (data or {}).items():
                    env[prefix + name] = value.decode(errors="replace")
    for item in container.env:
        name = str(item["name"])
        if "value" in item:
            env[name] = expand(str(item.get("value") or ""), env)
            continue
        source = item.get("valueFrom")
        if not isinstance(source, Mapping):
            env[name] = ""
            continue
        for kind, key in (("configmap", "configMapKeyRef"), ("secret", "secretKeyRef")):
            ref = source.get(key)
            if isinstance(ref, Mapping):
                obj_name = str(ref.get("name", ""))
                optional = bool(ref.get("optional"))
                data = _lookup(objects, kind, pod.namespace, obj_name, optional)
                wanted = str(ref.get("key", ""))
                if data is not None and wanted in data:
                    env[name] = data[wanted].decode(errors="replace")
                elif not optional:
                    raise ConfigError(f"couldn't find key {wanted} in {kind} {pod.namespace}/{obj_name}")
                break
        else:
            if isinstance(source.get("fieldRef"), Mapping):
                env[name] = field_value(pod, str(source["fieldRef"].get("fieldPath", "")), ctx)
            elif isinstance(source.get("resourceFieldRef"), Mapping):
                ref = source["resourceFieldRef"]
                env[name] = resource_value(container, str(ref.get("resource", "")), ref.get("divisor"), ctx)
            else:
                raise ConfigError(f"env {name}: valueFrom has no supported source")
    return env
