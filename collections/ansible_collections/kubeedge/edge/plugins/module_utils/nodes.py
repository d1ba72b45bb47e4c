"""Node readiness as the Kubernetes API reports it (pure functions over a Node object as a dict).

A node is ready when its ``Ready`` condition has status ``"True"``; an optional version check compares the
version edged reports (``status.nodeInfo.kubeletVersion``) so that an upgrade's health gate can insist that the
node runs the new release, not merely that the old process is still up. Unknown or missing fields count as
not ready, never as an error.
"""

from __future__ import annotations

import datetime


def ready_condition(node):
    """The node's ``Ready`` condition dict, or ``None``."""
    status = node.get("status") or {}
    for cond in status.get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") == "Ready":
            return cond
    return None


def reported_version(node):
    """``status.nodeInfo.kubeletVersion`` or ``""``."""
    info = (node.get("status") or {}).get("nodeInfo") or {}
    value = info.get("kubeletVersion")
    return value if isinstance(value, str) else ""


def heartbeat(cond):
    """The condition's ``lastHeartbeatTime`` as Unix seconds, or ``None`` when absent or unparsable."""
    text = cond.get("lastHeartbeatTime")
    if not isinstance(text, str):
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def verdict(node, version=None, since=None):
    """``(ready, reason)``: whether the node passes, and a one-line reason when it does not.

    ``since`` (Unix seconds): the Ready condition must also carry a heartbeat at or after it, so that a
    node object still saying Ready from before a restart does not pass for the restarted node.
    """
    cond = ready_condition(node)
    if cond is None:
        return False, "no Ready condition reported yet"
    if since is not None:
        beat = heartbeat(cond)
        if beat is None or beat < since:
            return False, f"no heartbeat since the restart (last: {cond.get('lastHeartbeatTime')})"
    if cond.get("status") != "True":
        return False, "Ready={} ({}: {})".format(
            cond.get("status"),
            cond.get("reason", ""),
            cond.get("message", ""),
        )
    if version and version not in reported_version(node):
        return False, f"Ready, but reports version {reported_version(node)!r}, not {version!r}"
    return True, ""
