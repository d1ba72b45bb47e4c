"""Bounded HTTP/1.1 exchanges over trio streams with h11: one request read (server side), one call (client side).

Shared by the edge's ServiceBus and the cloud's Router. Owns the size bounds of their HTTP: heads at most
``max_head`` (default :data:`~kubeedge.kit.limits.SERVICEBUS_MAX_HEADER_BYTES`), bodies at most the
``max_body`` given (upstream CVE-2022-31073 was an unbounded body); every exchange runs under the
caller's deadline. One request per connection (``Connection: close``): this traffic is a few calls, not
a hot path.

Failures: :class:`HttpError` carries the HTTP status to report (400 malformed, 413 too large, 502 the
app failed, 504 timed out) and a message naming what was wrong.
"""

from __future__ import annotations

from dataclasses import dataclass

import h11
import trio

from kubeedge.kit import limits

_HOP_BY_HOP = frozenset(
    {b"connection", b"content-length", b"transfer-encoding", b"host", b"keep-alive", b"upgrade"}
)


class HttpError(Exception):
    """A failed exchange; ``status`` is what to report."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class Exchange:
    """A request or response: head plus complete body."""

    status_or_method: str
    target: str
    headers: list[tuple[str, str]]
    body: bytes


async def _next_event(conn: h11.Connection, stream: trio.abc.Stream) -> object:
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as e:
            raise HttpError(400, f"malformed HTTP: {e}") from None
        if event is not h11.NEED_DATA:
            return event
        data = await stream.receive_some(64 * 1024)
        if not data and conn.their_state is h11.SEND_BODY:
            raise HttpError(502, "connection closed in the middle of the body")
        conn.receive_data(bytes(data))


async def _read_body(
    conn: h11.Connection, stream: trio.abc.Stream, max_body: int, length: int | None
) -> bytes:
    if length is not None and length > max_body:
        raise HttpError(413, f"body of {length} bytes is larger than the {max_body}-byte limit")
    chunks: list[bytes] = []
    size = 0
    while True:
        event = await _next_event(conn, stream)
        if isinstance(event, h11.Data):
            size += len(event.data)
            if size > max_body:
                raise HttpError(413, f"body is larger than the {max_body}-byte limit")
            chunks.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage):
            return b"".join(chunks)
        elif isinstance(event, h11.ConnectionClosed):
            raise HttpError(502, "connection closed before the end of the body")


def _length(headers: list[tuple[bytes, bytes]]) -> int | None:
    for name, value in headers:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _text_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[str, str]]:
    return [(n.decode("latin-1"), v.decode("latin-1")) for n, v in headers]


def server_connection(max_head: int = limits.SERVICEBUS_MAX_HEADER_BYTES) -> h11.Connection:
    """A server-side h11 connection whose request head may be at most ``max_head`` bytes."""
    return h11.Connection(h11.SERVER, max_incomplete_event_size=max_head)


async def read_request(conn: h11.Connection, stream: trio.abc.Stream, max_body: int) -> Exchange:
    """Read one request from a client; raises :class:`HttpError` (400/413) for a bad or oversized one."""
    event = await _next_event(conn, stream)
    if isinstance(event, h11.ConnectionClosed):
        raise HttpError(400, "connection closed before a request")
    if not isinstance(event, h11.Request):
        raise HttpError(400, "expected a request")
    headers = list(event.headers)
    body = await _read_body(conn, stream, max_body, _length(headers))
    return Exchange(event.method.decode(), event.target.decode("latin-1"), _text_headers(headers), body)


async def write_response(
    conn: h11.Connection,
    stream: trio.abc.Stream,
    status: int,
    body: bytes,
    content_type: str = "application/json",
    extra_headers: list[tuple[str, str]] | None = None,
) -> None:
    """Send a complete response and close the connection's HTTP side (hop-by-hop ``extra_headers`` dropped)."""
    if conn.our_state not in {h11.IDLE, h11.SEND_RESPONSE}:
        return
    headers = [("Content-Type", content_type), ("Content-Length", str(len(body))), ("Connection", "close")]
    headers += [
        (n, v)
        for n, v in extra_headers or []
        if n.lower().encode() not in _HOP_BY_HOP and n.lower() != "content-type"
    ]
    try:
        data = conn.send(
            h11.Response(status_code=status, headers=headers, reason=b"OK" if status == 200 else b"")
        )
        data += conn.send(h11.Data(data=body)) or b""
        data += conn.send(h11.EndOfMessage()) or b""
    except h11.LocalProtocolError:
        return
    await stream.send_all(data or b"")


async def call(
    port: int,
    method: str,
    path: str,
    headers: list[tuple[str, str]],
    body: bytes,
    *,
    max_body: int,
    host: str = "127.0.0.1",
) -> Exchange:
    """One HTTP call to ``host:port``; the caller bounds it in time. Raises :class:`HttpError`."""
    try:
        stream = await trio.open_tcp_stream(host, port)
    except OSError as e:
        raise HttpError(502, f"cannot connect to {host}:{port}: {e.strerror or e}") from None
    async with stream:
        conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=limits.SERVICEBUS_MAX_HEADER_BYTES)
        head = [("Host", f"{host}:{port}"), ("Content-Length", str(len(body))), ("Connection", "close")]
        head += [(n, v) for n, v in headers if n.lower().encode() not in _HOP_BY_HOP]
        try:
            data = conn.send(h11.Request(method=method, target=path, headers=head)) or b""
            if body:
                data += conn.send(h11.Data(data=body)) or b""
            data += conn.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError as e:
            raise HttpError(400, f"bad request for the app: {e}") from None
        try:
            await stream.send_all(data)
            event = await _next_event(conn, stream)
            while isinstance(event, h11.InformationalResponse):
                event = await _next_event(conn, stream)
            if not isinstance(event, h11.Response):
                raise HttpError(502, "the app closed the connection without a response")
            resp_headers = list(event.headers)
            resp_body = await _read_body(conn, stream, max_body, _length(resp_headers))
        except HttpError as e:
            if e.status == 400:  # a malformed reply is the app's fault, not the caller's
                raise HttpError(502, f"bad response from the app: {e.message}") from None
            raise
        except (OSError, trio.BrokenResourceError) as e:
            raise HttpError(502, f"the app connection failed: {e}") from None
        return Exchange(str(event.status_code), "", _text_headers(resp_headers), resp_body)
