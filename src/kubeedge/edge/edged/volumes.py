"""Pod volumes on the host: what each volume holds (pure) and the atomic writer that puts it on disk.

Layout mirrors kubelet: ``<root>/pods/<uid>/volumes/kubernetes.io~<plugin>/<volume>``. configMap, secret,
projected and downwardAPI volumes are written like kubelet's AtomicWriter: files go into a fresh hidden
``..<timestamp>`` folder, a ``..data`` symlink is swapped to it with one ``rename`` and every visible
name is a symlink through ``..data``, so a running container sees either the old or the new set, never a
mix. Payloads are bounded (:data:`~kubeedge.kit.limits.EDGED_MAX_VOLUME_BYTES`, ``..._FILES``) and paths
validated; a bad or missing source raises :class:`~kubeedge.edge.edged.envvars.ConfigError`.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

from kubeedge.edge.edged import envvars
from kubeedge.edge.edged.envvars import ConfigError, Objects, PodContext
from kubeedge.edge.edged.podspec import Container, Pod
from kubeedge.edge.edged.runtime import VolumeBind
from kubeedge.kit import limits

Payload = dict[str, tuple[bytes, int]]
"""Relative file path -> (content, mode)."""

DEFAULT_MODE: Final = 0o644
PLUGIN_DIRS: Final = {
    "configMap": "kubernetes.io~configmap",
    "secret": "kubernetes.io~secret",
    "emptyDir": "kubernetes.io~empty-dir",
    "projected": "kubernetes.io~projected",
    "downwardAPI": "kubernetes.io~downward-api",
}
DATA_LINK: Final = "..data"


def source_type(volume: Mapping[str, Any]) -> str:
    """The one volume source key (``configMap``, ``hostPath``...)."""
    return next(k for k in volume if k != "name")


def volume_dir(pod_dir: Path, name: str, volume: Mapping[str, Any]) -> Path:
    """Where a volume lives on the host (hostPath volumes: the path itself)."""
    kind = source_type(volume)
    if kind == "hostPath":
        return Path(str(volume["hostPath"].get("path", "")))
    return pod_dir / "volumes" / PLUGIN_DIRS[kind] / name


def _check_path(path: str, where: str) -> str:
    parts = path.split("/")
    if not path or path.startswith("/") or ".." in parts or any(p.startswith("..") for p in parts):
        raise ConfigError(f"{where}: path {path!r} must be relative, without '..'")
    return path


def _mode(value: Any, default: int, where: str) -> int:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 0o777:
        raise ConfigError(f"{where}: mode {value!r} must be between 0 and 0777")
    return value


def _keyed(
    kind: str,
    source: Mapping[str, Any],
    name_key: str,
    objects: Objects,
    namespace: str,
    default_mode: int,
    where: str,
) -> Payload:
    name = str(source.get(name_key, ""))
    optional = bool(source.get("optional"))
    obj = objects.get((kind, namespace, name))
    if obj is None:
        if optional:
            return {}
        raise ConfigError(f'{kind} "{name}" not found')
    data = envvars.object_data(kind, obj, name)
    items = source.get("items")
    payload: Payload = {}
    if items:
        for i, item in enumerate(items):
            key = str(item.get("key", ""))
            if key not in data:
                if optional:
                    continue
                raise ConfigError(f"{where}.items[{i}]: key {key!r} not found in {kind} {namespace}/{name}")
            path = _check_path(str(item.get("path", "")), f"{where}.items[{i}]")
            payload[path] = (data[key], _mode(item.get("mode"), default_mode, f"{where}.items[{i}]"))
    else:
        for key, value in data.items():
            payload[_check_path(key, where)] = (value, default_mode)
    return payload


def _downward(pod: Pod, items: Any, default_mode: int, ctx: PodContext, where: str) -> Payload:
    payload: Payload = {}
    for i, item in enumerate(items or []):
        path = _check_path(str(item.get("path", "")), f"{where}.items[{i}]")
        if isinstance(item.get("fieldRef"), Mapping):
            value = envvars.field_value(pod, str(item["fieldRef"].get("fieldPath", "")), ctx)
        elif isinstance(item.get("resourceFieldRef"), Mapping):
            ref = item["resourceFieldRef"]
            wanted = str(ref.get("containerName", ""))
            container = next((c for c in pod.containers if c.name == wanted), None)
            if container is None:
                raise ConfigError(f"{where}.items[{i}]: no container {wanted!r}")
            value = envvars.resource_value(container, str(ref.get("resource", "")), ref.get("divisor"), ctx)
        else:
            raise ConfigError(f"{where}.items[{i}]: needs fieldRef or resourceFieldRef")
        payload[path] = (value.encode(), _mode(item.get("mode"), default_mode, f"{where}.items[{i}]"))
    return payload


def volume_payload(pod: Pod, name: str, objects: Objects, ctx: PodContext) -> Payload | None:
    """Files of a configMap/secret/projected/downwardAPI volume; ``None`` for other types."""
    volume = pod.volumes[name]
    kind = source_type(volume)
    source = volume[kind] or {}
    where = f"volume {name}"
    ns = pod.namespace
    default_mode = _mode(source.get("defaultMode"), DEFAULT_MODE, f"{where}.defaultMode")
    if kind == "configMap":
        payload = _keyed("configmap", source, "name", objects, ns, default_mode, where)
    elif kind == "secret":
        payload = _keyed("secret", source, "secretName", objects, ns, default_mode, where)
    elif kind == "downwardAPI":
        payload = _downward(pod, source.get("items"), default_mode, ctx, where)
    elif kind == "projected":
        payload = {}
        for i, part in enumerate(source.get("sources") or []):
            pw = f"{where}.sources[{i}]"
            if isinstance(part.get("configMap"), Mapping):
                payload.update(_keyed("configmap", part["configMap"], "name", objects, ns, default_mode, pw))
            elif isinstance(part.get("secret"), Mapping):
                payload.update(_keyed("secret", part["secret"], "name", objects, ns, default_mode, pw))
            elif isinstance(part.get("downwardAPI"), Mapping):
                payload.update(_downward(pod, part["downwardAPI"].get("items"), default_mode, ctx, pw))
            elif isinstance(part.get("serviceAccountToken"), Mapping):
                # The token comes from the cloud (TokenRequest via MetaManager); none yet means no file yet.
                account = str((pod.raw.get("spec") or {}).get("serviceAccountName") or "default")
                token = objects.get(("serviceaccounttoken", ns, account))
                if token is not None:
                    text = str((token.get("status") or {}).get("token") or token.get("token") or "")
                    path = _check_path(str(part["serviceAccountToken"].get("path", "token")), pw)
                    payload[path] = (text.encode(), default_mode)
            else:
                raise ConfigError(
                    f"{pw}: unsupported projection (configMap, secret, downwardAPI, serviceAccountToken)"
                )
    else:
        return None
    if len(payload) > limits.EDGED_MAX_VOLUME_FILES:
        raise ConfigError(f"{where}: {len(payload)} files exceed {limits.EDGED_MAX_VOLUME_FILES}")
    total = sum(len(content) for content, _ in payload.values())
    if total > limits.EDGED_MAX_VOLUME_BYTES:
        raise ConfigError(f"{where}: {total} bytes exceed {limits.EDGED_MAX_VOLUME_BYTES}")
    return payload


def _current(target: Path) -> Payload | None:
    data = target / DATA_LINK
    if not data.is_dir():
        return None
    found: Payload = {}
    for path in data.rglob("*"):
        if path.is_file():
            found[str(path.relative_to(data))] = (path.read_bytes(), path.stat().st_mode & 0o777)
    return found


def write_atomic(target: Path, payload: Payload) -> bool:
    """Make ``target`` hold exactly ``payload`` via a ``..data`` symlink swap; False when already so."""
    target.mkdir(parents=True, exist_ok=True)
    if _current(target) == payload:
        return False
    stamp = time.strftime("..%Y_%m_%d_%H_%M_%S.", time.gmtime()) + f"{time.time_ns() % 10**9:09d}"
    fresh = target / stamp
    fresh.mkdir(mode=0o755)
    for rel, (content, mode) in payload.items():
        path = fresh / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        path.chmod(mode)
    old = os.readlink(target / DATA_LINK) if (target / DATA_LINK).is_symlink() else None
    tmp_link = target / "..data_tmp"
    tmp_link.unlink(missing_ok=True)
    tmp_link.symlink_to(stamp)
    os.replace(tmp_link, target / DATA_LINK)
    visible = {rel.split("/", 1)[0] for rel in payload}
    for name in visible:
        link = target / name
        if not link.is_symlink():
            link.symlink_to(f"{DATA_LINK}/{name}")
    for entry in target.iterdir():
        if not entry.name.startswith("..") and entry.name not in visible and entry.is_symlink():
            entry.unlink()
    if old and old != stamp and not old.startswith("/"):
        shutil.rmtree(target / old, ignore_errors=True)
    return True


def prepare_volumes(pod: Pod, objects: Objects, ctx: PodContext, pod_dir: Path) -> list[str]:
    """Create or refresh every volume of ``pod`` on the host; returns the names whose content changed.

    Blocking file I/O: call from a worker thread.
    """
    changed = []
    for name, volume in pod.volumes.items():
        kind = source_type(volume)
        target = volume_dir(pod_dir, name, volume)
        if kind == "emptyDir":
            target.mkdir(parents=True, exist_ok=True)
            continue
        if kind == "hostPath":
            _prepare_host_path(volume["hostPath"] or {}, name)
            continue
        payload = volume_payload(pod, name, objects, ctx)
        if payload is not None and write_atomic(target, payload):
            changed.append(name)
    return changed


def _prepare_host_path(source: Mapping[str, Any], name: str) -> None:
    path = Path(str(source.get("path", "")))
    kind = str(source.get("type") or "")
    if not path.is_absolute():
        raise ConfigError(f"volume {name}: hostPath.path {str(path)!r} must be absolute")
    if kind == "DirectoryOrCreate":
        path.mkdir(parents=True, exist_ok=True)
    elif kind == "FileOrCreate":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch(exist_ok=True)
    elif kind == "Directory" and not path.is_dir():
        raise ConfigError(f"volume {name}: hostPath {path} is not a directory")
    elif kind == "File" and not path.is_file():
        raise ConfigError(f"volume {name}: hostPath {path} is not a file")
    elif kind == "Socket" and not path.is_socket():
        raise ConfigError(f"volume {name}: hostPath {path} is not a socket")
    elif kind not in (
        "",
        "DirectoryOrCreate",
        "FileOrCreate",
        "Directory",
        "File",
        "Socket",
        "CharDevice",
        "BlockDevice",
    ):
        raise ConfigError(f"volume {name}: hostPath.type {kind!r} is not supported")


def container_binds(pod: Pod, container: Container, pod_dir: Path) -> tuple[VolumeBind, ...]:
    """The host paths (and tmpfs) to mount into ``container`` for its ``volumeMounts``."""
    binds = []
    for mount in container.mounts:
        volume = pod.volumes[mount.name]
        kind = source_type(volume)
        if kind == "emptyDir" and (volume["emptyDir"] or {}).get("medium") == "Memory" and not mount.sub_path:
            binds.append(VolumeBind(target=mount.mount_path, tmpfs=True, read_only=mount.read_only))
            continue
        source = volume_dir(pod_dir, mount.name, volume)
        if mount.sub_path:
            source = source / mount.sub_path
            if kind == "emptyDir":
                source.mkdir(parents=True, exist_ok=True)
        read_only = mount.read_only or kind in ("configMap", "secret", "projected", "downwardAPI")
        binds.append(VolumeBind(target=mount.mount_path, source=str(source), read_only=read_only))
    return tuple(binds)
