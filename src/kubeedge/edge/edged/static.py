"""Static pods: Pod manifests in ``staticPodPath`` that run with no cloud at all.

:func:`pods_from_manifests` is pure (file name -> bytes in, pods and per-file errors out); :func:`read_dir`
reads the folder with bounds (:data:`~kubeedge.kit.limits.EDGED_MAX_MANIFEST_BYTES`, ``..._MANIFESTS``).
As in kubelet, a pod is named ``<name>-<nodeName>``, its UID is a hash of its content and the node name
(so an edit is a new pod and a restart finds the same UID), and it is annotated
``kubernetes.io/config.source: file``. A bad file is reported by name and skipped; other files still run.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import yaml

from kubeedge.kit import limits

SUFFIXES: Final = (".yaml", ".yml", ".json")
SOURCE_ANNOTATION: Final = "kubernetes.io/config.source"
HASH_ANNOTATION: Final = "kubernetes.io/config.hash"
MIRROR_ANNOTATION: Final = "kubernetes.io/config.mirror"


def read_dir(path: Path) -> tuple[dict[str, bytes], dict[str, str]]:
    """``(contents, errors)`` by file name for manifest files in ``path`` (blocking; a missing folder is empty)."""
    contents: dict[str, bytes] = {}
    errors: dict[str, str] = {}
    if not path.is_dir():
        return contents, errors
    files = sorted(p for p in path.iterdir() if p.suffix in SUFFIXES and not p.name.startswith("."))
    for file in files[: limits.EDGED_MAX_MANIFESTS]:
        try:
            if file.stat().st_size > limits.EDGED_MAX_MANIFEST_BYTES:
                errors[file.name] = f"larger than {limits.EDGED_MAX_MANIFEST_BYTES} bytes"
                continue
            contents[file.name] = file.read_bytes()[: limits.EDGED_MAX_MANIFEST_BYTES + 1]
        except OSError as exc:
            errors[file.name] = str(exc)
    for file in files[limits.EDGED_MAX_MANIFESTS :]:
        errors[file.name] = f"more than {limits.EDGED_MAX_MANIFESTS} manifests: ignored"
    return contents, errors


def static_pod(raw: Mapping[str, Any], node_name: str) -> dict[str, Any]:
    """The runnable pod of one manifest object."""
    if raw.get("kind") not in (None, "Pod"):
        raise ValueError(f"kind {raw.get('kind')!r}: only Pod manifests are supported")
    pod = copy.deepcopy(dict(raw))
    meta = pod.setdefault("metadata", {})
    if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
        raise ValueError("metadata.name: required")
    meta["name"] = f"{meta['name']}-{node_name}"
    meta.setdefault("namespace", "default")
    digest = hashlib.md5(
        json.dumps(raw, sort_keys=True, default=str).encode() + node_name.encode() + b"file",
        usedforsecurity=False,
    ).hexdigest()
    meta["uid"] = digest
    annotations = meta.setdefault("annotations", {})
    annotations[SOURCE_ANNOTATION] = "file"
    annotations[HASH_ANNOTATION] = digest
    annotations[MIRROR_ANNOTATION] = digest
    pod.setdefault("apiVersion", "v1")
    pod.setdefault("kind", "Pod")
    spec = pod.setdefault("spec", {})
    if isinstance(spec, dict):
        spec["nodeName"] = node_name
    return pod


def pods_from_manifests(
    files: Mapping[str, bytes], node_name: str
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """``(pods, errors by file name)`` for the given manifest contents."""
    pods: list[dict[str, Any]] = []
    errors: dict[str, str] = {}
    for name, data in sorted(files.items()):
        try:
            docs = [d for d in yaml.safe_load_all(data.decode()) if d is not None]
            for doc in docs[:16]:
                if not isinstance(doc, Mapping):
                    raise ValueError("not a Pod object")
                pods.append(static_pod(doc, node_name))
        except (yaml.YAMLError, UnicodeDecodeError, ValueError) as exc:
            errors[name] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return pods, errors
