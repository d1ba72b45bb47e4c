"""Edged's settings, with upstream key names and defaults (edgecore.yaml ``modules.edged`` and kubelet flags).

Owns :class:`EdgedConfig`, a frozen value built once; :meth:`EdgedConfig.from_mapping` validates a
mapping of upstream keys and raises :class:`ValueError` naming the bad key.
"""

from __future__ import annotations

import dataclasses
import re
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


FLAG_KEYS: Final = {
    "hostnameOverride": "node_name",
    "nodeIP": "node_ip",
    "rootDirectory": "root_directory",
    "podSandboxImage": "pod_sandbox_image",
    "registerNodeNamespace": "register_node_namespace",
    "nodeLabels": "node_labels",
    "maxPerPodContainerCount": "max_per_pod_container_count",
    "minimumGCAge": "minimum_gc_age",
}
"""Top-level keys of ``modules.edged`` (upstream's TailoredKubeletFlag) edged reads."""
KUBELET_CONFIG_KEYS: Final = {
    "staticPodPath": "static_pod_path",
    "fileCheckFrequency": "file_check_frequency",
    "syncFrequency": "sync_frequency",
    "maxPods": "max_pods",
    "imageGCHighThresholdPercent": "image_gc_high_threshold_percent",
    "imageGCLowThresholdPercent": "image_gc_low_threshold_percent",
    "imageMinimumGCAge": "image_minimum_gc_age",
}
"""``tailoredKubeletConfig`` fields edged reads; the other kubelet fields are accepted and ignored."""
IGNORED_KEYS: Final = frozenset(
    {
        "enable",
        "reportEvent",
        "registerSchedulable",
        "customInterfaceName",
        "kubeConfig",
        "certDirectory",
        "registerNode",
        "registerWithTaints",
        "containerRuntime",
        "remoteRuntimeEndpoint",
        "remoteImageEndpoint",
        "runtimeCgroups",
        "imageServiceEndpoint",
        "cniConfDir",
        "cniBinDir",
        "cniCacheDirs",
        "networkPluginMTU",
        "maxContainerCount",
        "seccompDefault",
        "windowsService",
        "windowsPriorityClass",
        "experimentalMounterPath",
        "experimentalCheckNodeCapabilitiesBeforeMount",
        "keepTerminatedPodVolumes",
        "nodeStatusMaxImages",
    }
)
"""Upstream keys that are valid but mean nothing to this edged (Docker runtime, no CNI, no events yet)."""
DURATION_FIELDS: Final = ("file_check_frequency", "sync_frequency", "image_minimum_gc_age", "minimum_gc_age")
INT_FIELDS: Final = (
    "max_pods",
    "image_gc_high_threshold_percent",
    "image_gc_low_threshold_percent",
    "max_per_pod_container_count",
)
_DURATION_UNITS: Final = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION: Final = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")


def parse_duration(value: Any, name: str = "duration") -> float:
    """Seconds of a Go duration string (``"1m0s"``, ``"20s"``, ``"300ms"``) or a plain number of seconds."""
    if isinstance(value, bool):
        raise ValueError(f"edged config: {name} {value!r} is not a duration")
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    if text in ("0", ""):
        return 0.0
    pos = 0
    total = 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or len(text) > 64:
        raise ValueError(f"edged config: {name} {text[:64]!r} is not a duration like 1m0s or 20s")
    return total


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
        """Build from edgecore.yaml's ``modules.edged`` mapping (upstream v1alpha2 keys).

        Top-level keys are the tailored kubelet flags; ``tailoredKubeletConfig`` holds kubelet
        configuration fields, of which edged reads the ones in :data:`KUBELET_CONFIG_KEYS` (durations as
        Go strings like ``"1m0s"``) and ignores the rest. Unknown top-level keys are refused by name.
        """
        kwargs: dict[str, Any] = {}
        for key, value in data.items():
            if key in FLAG_KEYS:
                kwargs[FLAG_KEYS[key]] = value
            elif key == "tailoredKubeletConfig":
                if value is None:
                    continue
                if not isinstance(value, Mapping):
                    raise ValueError("edged config: tailoredKubeletConfig must be a mapping")
                for sub, sub_value in value.items():
                    if sub in KUBELET_CONFIG_KEYS:
                        kwargs[KUBELET_CONFIG_KEYS[sub]] = sub_value
            elif key not in IGNORED_KEYS:
                raise ValueError(f"edged config: unknown key {key!r}")
        upstream = {field: key for key, field in (FLAG_KEYS | KUBELET_CONFIG_KEYS).items()}
        for name in DURATION_FIELDS:
            if name in kwargs:
                kwargs[name] = parse_duration(kwargs[name], upstream[name])
        for name in ("root_directory", "static_pod_path"):
            if name in kwargs:
                if kwargs[name] in (None, ""):
                    kwargs[name] = None if name == "static_pod_path" else DEFAULT_ROOT
                else:
                    kwargs[name] = Path(str(kwargs[name]))
        for name in INT_FIELDS:
            if name in kwargs and (isinstance(kwargs[name], bool) or not isinstance(kwargs[name], int)):
                raise ValueError(f"edged config: {upstream[name]} must be an integer, got {kwargs[name]!r}")
        if "node_labels" in kwargs:
            labels = kwargs["node_labels"] or {}
            if not isinstance(labels, Mapping) or not all(isinstance(v, str) for v in labels.values()):
                raise ValueError("edged config: nodeLabels must map strings to strings")
            kwargs["node_labels"] = dict(labels)
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
