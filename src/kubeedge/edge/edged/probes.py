"""Probe bookkeeping (pure) and the three probe handlers (trio): exec, httpGet, tcpSocket.

:class:`ProbeTracker` is kubelet's worker state without the goroutine: it says when the next run is due
(``initialDelaySeconds`` after the container started, then every ``periodSeconds``) and turns raw
outcomes into a result only after ``successThreshold``/``failureThreshold`` consecutive ones. Readiness
starts as failure, liveness as success, startup as unknown. The handlers never raise: every error,
timeout or refusal is a failed probe with a message.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from enum import StrEnum

import trio

from kubeedge.edge.edged.podspec import Container, Probe, ProbeKind
from kubeedge.edge.edged.runtime import ContainerRuntime
from kubeedge.kit import limits


class ProbeType(StrEnum):
    """Which of a container's probes."""

    LIVENESS = "liveness"
    READINESS = "readiness"
    STARTUP = "startup"


class ProbeResult(StrEnum):
    """A probe's current verdict."""

    SUCCESS = "success"
    FAILURE = "failure"
    UNKNOWN = "unknown"


_INITIAL = {
    ProbeType.LIVENESS: ProbeResult.SUCCESS,
    ProbeType.READINESS: ProbeResult.FAILURE,
    ProbeType.STARTUP: ProbeResult.UNKNOWN,
}


@dataclass(slots=True)
class ProbeTracker:
    """Thresholds and timing of one probe of one container instance."""

    probe: Probe
    type: ProbeType
    started_at: float
    result: ProbeResult = ProbeResult.UNKNOWN
    successes: int = 0
    failures: int = 0
    last_run: float | None = None
    message: str = ""
    _initialised: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        if not self._initialised:
            self.result = _INITIAL[self.type]
            self._initialised = True

    def wait(self, now: float) -> float:
        """Seconds until the next run is due (0 when due now)."""
        if self.last_run is None:
            due = self.started_at + self.probe.initial_delay
        else:
            due = self.last_run + self.probe.period
        return max(0.0, due - now)

    def record(self, ok: bool, now: float, message: str = "") -> bool:
        """Account one outcome at ``now``; True when the result changed."""
        self.last_run = now
        self.message = message
        if ok:
            self.successes += 1
            self.failures = 0
            new = ProbeResult.SUCCESS if self.successes >= self.probe.success_threshold else self.result
        else:
            self.failures += 1
            self.successes = 0
            new = ProbeResult.FAILURE if self.failures >= self.probe.failure_threshold else self.result
        changed = new is not self.result
        self.result = new
        return changed


def probes_of(container: Container) -> dict[ProbeType, Probe]:
    """The probes a container declares."""
    found = {
        ProbeType.LIVENESS: container.liveness,
        ProbeType.READINESS: container.readiness,
        ProbeType.STARTUP: container.startup,
    }
    return {kind: probe for kind, probe in found.items() if probe is not None}


def resolve_port(container: Container, port: int | str) -> int:
    """A probe port number, looking names up in the container's ports; raises ``ValueError``."""
    if isinstance(port, int):
        return port
    for declared in container.ports:
        if declared.name == port:
            return declared.container_port
    raise ValueError(f"port name {port!r} not found in container {container.name}")


async def run_probe(
    runtime: ContainerRuntime, container_id: str, container: Container, probe: Probe, pod_ip: str
) -> tuple[bool, str]:
    """Run ``probe`` once within its timeout; ``(ok, message)``."""
    try:
        with trio.fail_after(probe.timeout):
            if probe.kind is ProbeKind.EXEC:
                result = await runtime.exec(container_id, probe.command)
                output = result.output[: limits.EDGED_PROBE_OUTPUT_BYTES].decode(errors="replace")
                return result.exit_code == 0, output.strip()
            host = probe.host or pod_ip or "127.0.0.1"
            port = resolve_port(container, probe.port)
            if probe.kind is ProbeKind.TCP:
                stream = await trio.open_tcp_stream(host, port)
                await stream.aclose()
                return True, ""
            return await _http_get(host, port, probe)
    except trio.TooSlowError:
        return False, f"{probe.kind} probe timed out after {probe.timeout:g}s"
    except (OSError, ValueError, trio.BrokenResourceError, ssl.SSLError) as exc:
        return False, f"{probe.kind} probe failed: {exc}"
    except Exception as exc:  # a runtime error (container gone) is a failed probe, never a crash
        return False, f"{probe.kind} probe failed: {exc}"


async def _http_get(host: str, port: int, probe: Probe) -> tuple[bool, str]:
    stream: trio.abc.Stream = await trio.open_tcp_stream(host, port)
    if probe.scheme == "HTTPS":
        # kubelet does not verify probe certificates either.
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        stream = trio.SSLStream(stream, context, server_hostname=host)
    async with stream:
        headers = {
            "Host": f"{host}:{port}",
            "User-Agent": "kube-probe/1.32",
            "Accept": "*/*",
            "Connection": "close",
        }
        headers.update(dict(probe.headers))
        request = (
            f"GET {probe.path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
        )
        await stream.send_all(request.encode())
        data = b""
        while b"\r\n" not in data and len(data) < limits.EDGED_HTTP_PROBE_BYTES:
            chunk = await stream.receive_some(4096)
            if not chunk:
                break
            data += chunk
    status_line = data.split(b"\r\n", 1)[0].decode(errors="replace")
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        return False, f"HTTP probe got no status line from {host}:{port}"
    code = int(parts[1])
    return 200 <= code < 400, f"HTTP probe failed with statuscode: {code}" if code >= 400 else ""
