"""What both ends of the cloud-edge websocket share: headers, close codes, liveness stream, bounded close.

Owns the handshake vocabulary (wire notes 2.2: ``node_id``, ``project_id``,
``ConnectionUse: msg``, path ``/<projectID>/<nodeName>/events``), the close
codes CloudHub uses to refuse or end a session (upstream leaves refused sockets
open; we close them with a code and reason the edge logs), and two trio helpers:

* :class:`ActivityStream` wraps a transport stream and records when bytes last
  arrived, which is what a read deadline needs (trio-websocket hides pongs).
* :func:`close_bounded` closes a websocket without trusting the peer: the
  closing handshake gets ``timeout`` seconds, then the stream is aborted. A
  half-open peer would otherwise hold ``aclose()`` forever.
"""

from __future__ import annotations

import contextlib
import enum
from typing import Any, Final

import trio

HEADER_NODE_ID: Final = "node_id"
HEADER_PROJECT_ID: Final = "project_id"
HEADER_CONNECTION_USE: Final = "ConnectionUse"
CONNECTION_USE_MSG: Final = "msg"
DEFAULT_PROJECT_ID: Final = "e632aba927ea4ac2b575ec1603d56f10"
"""Upstream's default ``projectID`` in the dial path."""
NODE_CN_PREFIX: Final = "system:node:"
"""A node's client certificate has CN ``system:node:<node>``."""

CLOSE_TIMEOUT: Final = 2.0
"""Seconds granted to a websocket closing handshake before the stream is aborted."""


class CloseCode(enum.IntEnum):
    """Websocket close codes on the cloud-edge link (RFC 6455 §7.4; 4xxx are ours)."""

    NORMAL = 1000
    GOING_AWAY = 1001
    """CloudHub is shutting down."""
    INVALID_PAYLOAD = 1007
    """A frame that is not a valid beehive message."""
    POLICY_VIOLATION = 1008
    """Handshake headers missing or wrong (``node_id``, ``ConnectionUse: msg``)."""
    MESSAGE_TOO_BIG = 1009
    """A frame over ``kit.limits.MAX_FRAME_BYTES``."""
    TRY_AGAIN_LATER = 1013
    """``nodeLimit`` reached."""
    NODE_FORBIDDEN = 4403
    """The certificate's node (CN ``system:node:<node>``) is not the ``node_id`` header."""
    NODE_DELETED = 4404
    """The Node object was deleted; its session ends."""
    KEEPALIVE_TIMEOUT = 4408
    """No keepalive (or no bytes at all) within the deadline."""
    REPLACED = 4409
    """A newer connection for the same node took over the session."""

    @property
    def refusal(self) -> bool:
        """True for codes that mean the cloud will not take this edge as it is (worth an error log)."""
        return self in {CloseCode.POLICY_VIOLATION, CloseCode.TRY_AGAIN_LATER, CloseCode.NODE_FORBIDDEN}


def events_path(project_id: str, node: str) -> str:
    """The dial path ``/<projectID>/<nodeName>/events`` (the cloud ignores it; identity is the header)."""
    return f"/{project_id}/{node}/events"


def node_from_common_name(common_name: str) -> str | None:
    """``<node>`` of ``system:node:<node>``, else ``None``."""
    if common_name.startswith(NODE_CN_PREFIX) and len(common_name) > len(NODE_CN_PREFIX):
        return common_name[len(NODE_CN_PREFIX) :]
    return None


def peer_common_name(ssl_stream: trio.SSLStream[Any]) -> str:
    """The subject CN of the verified peer certificate, ``""`` if there is none."""
    cert = ssl_stream.getpeercert()
    if not cert:
        return ""
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName" and isinstance(value, str):
                return value
    return ""


def peer_serial(ssl_stream: trio.SSLStream[Any]) -> int | None:
    """The serial number of the verified peer certificate, None if there is none."""
    cert = ssl_stream.getpeercert()
    serial = cert.get("serialNumber") if cert else None
    if not isinstance(serial, str):
        return None
    try:
        return int(serial, 16)
    except ValueError:
        return None


class ActivityStream(trio.abc.Stream):
    """A :class:`trio.abc.Stream` that records when bytes last arrived and when the peer went away.

    trio-websocket swallows transport errors during its handshake and then waits
    forever for a reply; :attr:`gone` lets the caller race that wait, and
    :attr:`error` keeps the cause (e.g. the TLS alert of a refused certificate).
    """

    __slots__ = ("_inner", "_rx_lot", "error", "gone", "last_rx")

    def __init__(self, inner: trio.abc.Stream) -> None:
        self._inner = inner
        self.last_rx = trio.current_time()
        """``trio.current_time()`` when bytes last arrived."""
        self.gone = trio.Event()
        """Set on end-of-stream or a receive error."""
        self.error: BaseException | None = None
        """The receive error, if any (its ``__cause__`` is usually the ``ssl.SSLError``)."""
        self._rx_lot = trio.lowlevel.ParkingLot()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Forward to the wrapped stream."""
        await self._inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        """Forward to the wrapped stream."""
        await self._inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        """Forward to the wrapped stream and note the time."""
        try:
            data = await self._inner.receive_some(max_bytes)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self.error = exc
            self.gone.set()
            raise
        if not data:
            self.gone.set()
        self.last_rx = trio.current_time()
        if self._rx_lot:
            self._rx_lot.unpark_all()
        return data

    async def wait_received_after(self, when: float) -> None:
        """Return once bytes (or end-of-stream) arrived after trio time ``when``."""
        while self.last_rx <= when:
            await self._rx_lot.park()

    async def aclose(self) -> None:
        """Close the wrapped stream."""
        self.gone.set()
        await self._inner.aclose()


def describe_error(exc: BaseException | None) -> str:
    """A one-line description of a transport error, preferring the underlying SSL/OS error."""
    if exc is None:
        return "connection closed by peer"
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if isinstance(exc, trio.TooSlowError):
        return "timed out"
    cause = exc.__cause__ or exc.__context__ or exc
    return f"{type(cause).__name__}: {cause}"


async def close_bounded(ws: Any, code: int, reason: str, *, grace: float = CLOSE_TIMEOUT) -> None:
    """Close ``ws`` (a trio-websocket connection) with ``code``/``reason``; never blocks past ``grace`` seconds.

    Errors are swallowed: the caller is tearing the session down either way.
    """
    # A close reason is at most 123 bytes of UTF-8 (RFC 6455 §5.5).
    reason = reason.encode()[:120].decode(errors="ignore")
    with trio.move_on_after(grace):
        # trio-websocket closes the stream in a ``finally``; under our cancelled scope that
        # close is forceful, so a silent peer cannot hold us past ``grace``.
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await ws.aclose(code, reason)
