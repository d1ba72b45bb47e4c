"""Edged's settings, with upstream key names and defaults (edgecore.yaml ``modules.edged`` and kubelet flags).

Owns :class:`EdgedConfig`, a frozen value built once; :meth:`EdgedConfig.from_mapping` validates a
mapping of upstream keys and raises :class:`ValueError` naming the bad key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

DEFAULT_ROOT: Final = Path("/var/lib/kubelet")
"""kubelet's ``--root-dir`` default."""
DEFAULT_STATIC_POD_PATH: Final = Path("/etc/kubeedge/manifests")
"""edgecore's ``staticPodPath`` default."""
DEFAULT_PAUSE_IMAGE: Final = "kubeedge/pause:3.6"
"""edgecore's ``podSandboxImage`` default."""


@dataclass(frozen=True, slots=True)
class EdgedConfig:
    """What the pod manager needs; field names follow upstream's camelCase keys in snake_case."""

    node_name: str = "edge-node"
    """``hostnameOverride``: the node this edged runs pods for."""
    node_ip: str = "127.0.0.1"
    """``nodeIP``: reported as the node's InternalIP, hostIP of pods and podIP of hostNetwork pods."""
    root_directory: Path = DEFAULT_ROOT
    """``rootDirectory``: pod volumes live in ``<root>/pods/<uid>/volumes``."""
    pod_sandbox_image: str = DEFAULT_PAUSE_IMAGE
    """``podSandboxImage``: the image of the container holding each pod's network namespace."""
    static_pod_path: Path | None = DEFAULT_STATIC_POD_PATH
    """``staticPodPath``: manifests run as pods without any cloud; ``None`` disables."""
    file_check_frequency: float = 20.0
    """``fileCheckFrequency`` (s): how often the static pod folder is re-read (kubelet's 20 s)."""
    sync_frequency: float = 60.0
    """``syncFrequency`` (s): every pod is re-synced at least this often (configmap volume refresh)."""
    relist_period: float = 1.0
    """PLEG relist period (s): containers changed outside edgecore are noticed within it (kubelet's 1 s)."""
    max_pods: int = 110
    """``maxPods``."""
    max_per_pod_container_count: int = 1
    """``maxPerPodContainerCount``: dead containers kept per pod container."""
    minimum_gc_age: float = 0.0
    """``minimumGCAge`` (s): dead containers younger than this are kept."""
    image_gc_high_threshold_percent: int = 85
    """``imageGCHighThresholdPercent``: image GC starts above this disk use; 100 disables it."""
    image_gc_low_threshold_percent: int = 80
    """``imageGCLowThresholdPercent``: image GC frees down to this disk use."""
    image_minimum_gc_age: float = 120.0
    """``imageMinimumGCAge`` (s): images unused for less than this are kept."""
    gc_period: float = 60.0
    """How often container and image GC run (kubelet: containers every 1 min, images every 5 min)."""
    register_node_namespace: str = "default"
    """``registerNodeNamespace``."""
    node_labels: Mapping[str, str] = dataclasses.field(default_factory=dict)
    """``nodeLabels``: extra labels on the Node object."""

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> EdgedConfig:
        """Build from upstream camelCase keys (unknown keys are rejected by name)."""
        keys = {
            "hostnameOverride": "node_name",
            "nodeIP": "node_ip",
            "rootDirectory": "root_directory",
            "podSandboxImage": "pod_sandbox_image",
            "staticPodPath": "static_pod_path",
            "fileCheckFrequency": "file_check_frequency",
            "syncFrequency": "sync_frequency",
            "maxPods": "max_pods",
            "maxPerPodContainerCount": "max_per_pod_container_count",
            "minimumGCAge": "minimum_gc_age",
            "imageGCHighThresholdPercent": "image_gc_high_threshold_percent",
            "imageGCLowThresholdPercent": "image_gc_low_threshold_percent",
            "imageMinimumGCAge": "image_minimum_gc_age",
            "registerNodeNamespace": "register_node_namespace",
            "nodeLabels": "node_labels",
        }
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key not in keys:
                raise ValueError(f"edged config: unknown key {key!r}")
            kwargs[keys[key]] = value
        for name in ("root_directory", "static_pod_path"):
            if name in kwargs and kwargs[name] not in (None, ""):
                kwargs[name] = Path(kwargs[name])
            elif name in kwargs:
                kwargs[name] = None if name == "static_pod_path" else DEFAULT_ROOT
        config = cls(**kwargs)
        config.validate()
        return config

    def validate(self) -> None:
        """Raise :class:`ValueError` naming the first inconsistent field."""
        if not self.node_name:
            raise ValueError("edged config: hostnameOverride must not be empty")
        if not 0 < self.max_pods <= 1000:
            raise ValueError(f"edged config: maxPods {self.max_pods} must be in 1..1000")
        if not 0 <= self.image_gc_low_threshold_percent <= self.image_gc_high_threshold_percent <= 100:
            raise ValueError(
                "edged config: need 0 <= imageGCLowThresholdPercent <= imageGCHighThresholdPercent <= 100"
            )
        if self.max_per_pod_container_count < 0:
            raise ValueError("edged config: maxPerPodContainerCount must be >= 0")
        for name in ("file_check_frequency", "sync_frequency", "relist_period", "gc_period"):
            if getattr(self, name) <= 0:
                raise ValueError(f"edged config: {name} must be > 0")

    def pod_dir(self, uid: str) -> Path:
        """``<root>/pods/<uid>``."""
        return self.root_directory / "pods" / uid
