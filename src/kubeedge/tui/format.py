"""Pure text helpers of the TUI: durations, times, and the row cells of each table.

Owns how status values look on a terminal (``kubectl``-like columns and ages). Everything takes an explicit
``now`` so that the screens are deterministic under a fixed clock. Never fails: unknown values render as ``-``.
"""

from __future__ import annotations

import datetime as dt
from typing import Final

from kubeedge.kit import status as s

DASH: Final = "-"


def duration(seconds: float) -> str:
    """``kubectl``-style short duration: ``42s``, ``3m12s``, ``5h7m``, ``12d3h``."""
    total = max(0, int(seconds))
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours}h" if hours else f"{days}d"
    if hours:
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    if minutes:
        return f"{minutes}m{secs}s" if secs else f"{minutes}m"
    return f"{secs}s"


def age(at: float | None, now: float) -> str:
    """How long ago ``at`` was, or ``-``."""
    return DASH if at is None else duration(now - at)


def clock_time(at: float | None) -> str:
    """``at`` as UTC ``HH:MM:SS``, or ``-``."""
    if at is None:
        return DASH
    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%H:%M:%S")


def timestamp(at: float | None) -> str:
    """``at`` as an RFC 3339 UTC time to the second, or ``-``."""
    if at is None:
        return DASH
    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def byte_size(n: int | None) -> str:
    """``n`` bytes in binary units, or ``-``."""
    if n is None:
        return DASH
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def pod_status_text(pod: s.PodStatus) -> str:
    """What ``kubectl get pods`` puts in STATUS: a container's waiting/terminated reason, else the phase."""
    for c in pod.containers:
        if c.state in (s.ContainerState.WAITING, s.ContainerState.TERMINATED) and c.reason and not c.init:
            return c.reason
    return pod.reason or pod.phase


def pod_row(pod: s.PodStatus, now: float) -> tuple[str, ...]:
    """NAMESPACE, NAME, READY, STATUS, RESTARTS, AGE, IP."""
    ready, total = pod.ready_count
    return (
        pod.namespace,
        pod.name + (" (static)" if pod.static else ""),
        f"{ready}/{total}",
        pod_status_text(pod),
        str(pod.restarts),
        age(pod.started_at, now),
        pod.pod_ip or DASH,
    )


def device_row(device: s.DeviceStatus, now: float) -> tuple[str, ...]:
    """NAME, NAMESPACE, MODEL, PROTOCOL, STATE, TWINS (in sync/total), REPORTED."""
    in_sync = sum(t.in_sync for t in device.twins)
    return (
        device.name or device.id,
        device.namespace or DASH,
        device.model or DASH,
        device.protocol or DASH,
        str(device.state),
        f"{in_sync}/{len(device.twins)}",
        age(device.last_report, now),
    )


def event_row(event: s.Event, now: float) -> tuple[str, ...]:
    """AGE, LEVEL, SOURCE, REASON, OBJECT, MESSAGE."""
    return (
        age(event.at, now),
        str(event.severity),
        event.source,
        event.reason,
        event.object or DASH,
        event.message,
    )


_PROBE_NAMES: Final = {
    s.ProbeKind.STARTUP: "start",
    s.ProbeKind.LIVENESS: "live",
    s.ProbeKind.READINESS: "ready",
}
_PROBE_RESULTS: Final = {
    s.ProbeResult.SUCCESS: "ok",
    s.ProbeResult.FAILURE: "FAIL",
    s.ProbeResult.UNKNOWN: "?",
}


def container_row(c: s.ContainerStatus, now: float) -> tuple[str, ...]:
    """NAME, STATE, READY, RESTARTS, LAST TERMINATION, PROBES."""
    state = str(c.state) + (f" ({c.reason})" if c.reason else "")
    last = c.last_termination_reason or DASH
    if c.last_exit_code is not None:
        last += f" exit {c.last_exit_code}"
    probes = " ".join(f"{_PROBE_NAMES[p.kind]}:{_PROBE_RESULTS[p.result]}" for p in c.probes) or DASH
    return (
        c.name + (" (init)" if c.init else ""),
        state + (f" {age(c.started_at, now)}" if c.state is s.ContainerState.RUNNING else ""),
        "yes" if c.ready else "no",
        str(c.restarts),
        last,
        probes,
    )


def twin_row(t: s.TwinStatus, now: float) -> tuple[str, ...]:
    """PROPERTY, EXPECTED, ACTUAL, SYNC, REPORTED."""
    return (
        t.name,
        DASH if t.expected is None else t.expected,
        DASH if t.actual is None else t.actual,
        "yes" if t.in_sync else "NO",
        age(t.actual_at, now),
    )


def link_rows(link: s.LinkStatus, now: float) -> list[tuple[str, str]]:
    """(FIELD, VALUE) pairs of the Link tab."""
    cert = link.certificate
    if cert.error:
        expiry = f"unreadable: {cert.error}"
    elif cert.not_after is None:
        expiry = DASH
    elif cert.not_after <= now:
        expiry = f"{timestamp(cert.not_after)} (EXPIRED {duration(now - cert.not_after)} ago)"
    else:
        expiry = f"{timestamp(cert.not_after)} (in {duration(cert.not_after - now)})"
    rtt = DASH if link.last_heartbeat_rtt_ms is None else f"{link.last_heartbeat_rtt_ms:.1f} ms"
    since_label = "connected since" if link.state is s.LinkState.CONNECTED else "state since"
    since = DASH if link.since is None else f"{timestamp(link.since)} ({duration(now - link.since)} ago)"
    return [
        ("state", str(link.state)),
        ("server", link.server or DASH),
        (since_label, since),
        ("last heartbeat", f"{rtt} round trip, {age(link.last_heartbeat_at, now)} ago"),
        ("reconnects", str(link.reconnects)),
        ("last error", link.last_error or DASH),
        ("certificate", cert.path or DASH),
        ("subject", cert.subject or DASH),
        ("expires", expiry),
    ]
