"""Garbage collection choices (pure): which dead containers, orphans and images to remove.

kubelet's rules, kept conservative: only containers carrying edged's labels are ever considered;
running containers of known pods are never chosen; images are chosen only when disk use is above the
high threshold, only if no container (of any owner) uses them, never the sandbox image or an image a
desired pod names, oldest first, until use would drop to the low threshold.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass

from kubeedge.edge.edged.runtime import ContainerKind, ContainerRecord, ContainerState, ImageRecord


def dead_containers(
    records: Sequence[ContainerRecord],
    known_pods: Collection[str],
    max_per_pod_container: int,
    min_age: float,
    now: float,
) -> list[str]:
    """Ids of exited containers of known pods beyond the newest ``max_per_pod_container`` per container name.

    Sandboxes count as one container name per pod. The newest record of a container is never chosen
    while it is dead: it carries the restart count and the last exit the status reports.
    """
    groups: dict[tuple[str, ContainerKind, str], list[ContainerRecord]] = {}
    for record in records:
        if record.pod_uid in known_pods:
            groups.setdefault((record.pod_uid, record.kind, record.container_name), []).append(record)
    chosen = []
    for group in groups.values():
        group.sort(key=lambda r: (r.attempt, r.created_at), reverse=True)
        dead = [r for r in group if r.state is ContainerState.EXITED]
        keep = max(max_per_pod_container, 0)
        if group[0].state is ContainerState.EXITED:
            keep = max(keep, 1)
        for record in dead[keep:]:
            if now - (record.finished_at or record.created_at) >= min_age:
                chosen.append(record.id)
    return chosen


def orphans(records: Iterable[ContainerRecord], known_pods: Collection[str]) -> list[ContainerRecord]:
    """Managed containers whose pod edged no longer knows (to stop and remove)."""
    return [r for r in records if r.pod_uid not in known_pods]


@dataclass(frozen=True, slots=True)
class ImageUse:
    """Disk usage of the image filesystem."""

    used_bytes: int
    capacity_bytes: int

    @property
    def percent(self) -> float:
        """Used share in percent."""
        return 100.0 * self.used_bytes / self.capacity_bytes if self.capacity_bytes else 0.0


def images_to_remove(
    images: Sequence[ImageRecord],
    in_use: Collection[str],
    protected: Collection[str],
    usage: ImageUse,
    high_percent: int,
    low_percent: int,
    min_age: float,
    first_seen_unused: Mapping[str, float],
    now: float,
) -> list[str]:
    """Image ids to delete, oldest unused first, freeing enough to reach ``low_percent``.

    ``in_use``: image ids any container references. ``protected``: ids and tags never removed (sandbox image,
    images of desired pods). ``first_seen_unused``: when edged first saw each image unused (min age counts
    from there). ``high_percent`` 100 disables image GC, as in kubelet.
    """
    if high_percent >= 100 or usage.percent < high_percent or not usage.capacity_bytes:
        return []
    to_free = usage.used_bytes - usage.capacity_bytes * low_percent // 100
    candidates = []
    for image in images:
        if image.id in in_use or image.id in protected or any(tag in protected for tag in image.tags):
            continue
        seen = first_seen_unused.get(image.id, now)
        if now - seen < min_age:
            continue
        candidates.append((seen, image.created_at, image))
    candidates.sort(key=lambda c: (c[0], c[1]))
    chosen: list[str] = []
    freed = 0
    for _, _, image in candidates:
        if freed >= to_free:
            break
        chosen.append(image.id)
        freed += image.size
    return chosen
