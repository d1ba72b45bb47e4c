"""The on-disk layout of kubeedge-py releases on a managed host (stdlib only).

Layout (owned by the ``kubeedge.edge.release`` role)::

    <root>/releases/<version>/      one venv per release (bin/python, bin/cloudcore, bin/edgecore, bin/keadm)
    <root>/current -> releases/<version>    what the systemd units run
    <root>/previous -> releases/<version>   what rollback returns to
    <backup_root>/<version>/        config and database snapshot taken before leaving <version>

Invariants: ``current`` and ``previous`` are relative symlinks into ``releases/``; a release directory whose
venv lacks ``bin/python`` is reported as incomplete, never as installed. Reading never raises for a missing
or odd layout: it reports what is there.
"""

from __future__ import annotations

import os
import re

EXECUTABLES = ("cloudcore", "edgecore", "keadm")
# PEP 440 versions as the wheel names them (also local versions like 0.2.0+site.1); no path separators.
VERSION_RE = re.compile(r"[0-9][0-9A-Za-z.+_-]{0,99}")


def link_target(root, name):
    """Version that ``<root>/<name>`` points at, or ``None`` if absent or not into ``releases/``."""
    path = os.path.join(root, name)
    if not os.path.islink(path):
        return None
    target = os.readlink(path).rstrip("/")
    head, version = os.path.split(target)
    if os.path.basename(head) != "releases" or not VERSION_RE.fullmatch(version):
        return None
    return version


def release_complete(root, version):
    """Whether ``releases/<version>`` has a venv Python and all three commands."""
    base = os.path.join(root, "releases", version, "bin")
    return all(os.access(os.path.join(base, exe), os.X_OK) for exe in ("python", *EXECUTABLES))


def list_releases(root):
    """Installed release versions (directory names), sorted by name."""
    folder = os.path.join(root, "releases")
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    return sorted(n for n in names if VERSION_RE.fullmatch(n) and os.path.isdir(os.path.join(folder, n)))


def parse_version_output(text):
    """The version from ``<prog> kubeedge-py <version> (upstream KubeEdge <v>)``, or ``None``."""
    match = re.search(r"kubeedge-py (\S+)", text or "")
    return match.group(1) if match else None


def describe(root, backup_root):
    """Everything known about the host's releases, as a JSON-able dict."""
    installed = list_releases(root)
    current = link_target(root, "current")
    previous = link_target(root, "previous")
    try:
        snapshots = sorted(n for n in os.listdir(backup_root) if VERSION_RE.fullmatch(n))
    except OSError:
        snapshots = []
    return {
        "root": root,
        "current": current,
        "previous": previous,
        "releases": installed,
        "complete": {v: release_complete(root, v) for v in installed},
        "snapshots": snapshots,
    }
