"""HTTP/1.1 shell of the API server: h11 over trio TLS streams.

Owns sockets and timing: one task per connection, keep-alive between
requests, request bodies bounded by ``max_body`` (413 before reading more),
headers bounded by ``limits.APISERVER_MAX_HEADER_BYTES``, idle connections
closed after ``limits.APISERVER_IDLE_TIMEOUT_S``. Watches are chunked streams
driven by :class:`~kubeedge.apiserver.api.Watch`: they wake on a
:class:`ChangeSignal`, emit bookmarks on an interval, end at the client's
timeout and stop as soon as the client goes away. A misbehaving client only
loses its own connection. HTTP/2 is not offered (ALPN says http/1.1), which
Go and Python clients accept.
"""

from __future__ import annotations

import contextlib
import ssl
import urllib.parse
from collections.abc import Callable

import h11
import trio

from kubeedge.apiserver import errors
from kubeedge.apiserver.api import Api, Request, Response, Watch, error_response
from kubeedge.kit import limits, log

_log = log.get(__name__)
_HANDSHAKE_TIMEOUT_S = 10.0
# A client that streams an oversized body before reading gets our 413 only if we read what it sends;
# we read at most limits.APISERVER_DISCARD_MAX_BYTES for at most this long, then close.
_DISCARD_TIMEOUT_S = 5.0


class ChangeSignal:
    """Wakes every waiting watch when the store commits a change."""

    def __init__(self) -> None:
        self.event = trio.Event()

    def fire(self, _event: object = None) -> None:
        """Wake current waiters; later waiters wait for the next change."""
        self.event.set()
        self.event = trio.Event()


class _Closed(Exception):
    pass


class Connection:
    """One client connection."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        api: Api,
        signal: ChangeSignal,
        *,
        max_body: int,
        bookmark_interval: float,
    ) -> None:
        self.stream = stream
        self.api = api
        self.signal = signal
        self.max_body = max_body
        self.bookmark_interval = bookmark_interval
        self.conn = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.APISERVER_MAX_HEADER_BYTES)

    async def _next(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            try:
                data = await self.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                raise _Closed() from None
            self.conn.receive_data(bytes(data))

    async def _send(self, event: h11.Event) -> None:
        data = self.conn.send(event)
        if data:
            try:
                await self.stream.send_all(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                raise _Closed() from None

    async def run(self) -> None:
        """Serve requests until the client closes, idles out or breaks the protocol."""
        try:
            while True:
                with trio.move_on_after(limits.APISERVER_IDLE_TIMEOUT_S) as idle:
                    event = await self._next()
                if idle.cancelled_caught or not isinstance(event, h11.Request):
                    return
                keep = await self._serve(event)
                if not keep or self.conn.our_state is not h11.DONE or self.conn.their_state is not h11.DONE:
                    return
                self.conn.start_next_cycle()
        except h11.RemoteProtocolError as exc:
            if self.conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                with contextlib.suppress(_Closed, h11.LocalProtocolError):
                    await self._respond(
                        error_response(errors.bad_request(f"bad HTTP request: {exc}")), close=True
                    )
        except _Closed:
            return

    async def _serve(self, req: h11.Request) -> bool:
        headers: dict[str, str] = {}
        for name, value in req.headers:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        target = req.target.decode("latin-1")
        raw_path, _, qs = target.partition("?")
        path = urllib.parse.unquote(raw_path)
        query = dict(urllib.parse.parse_qsl(qs, keep_blank_values=True))
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            await self._respond(error_response(errors.too_large(self.max_body)), close=True)
            await self._discard(int(length))
            return False
        body = bytearray()
        while True:
            event = await self._next()
            if isinstance(event, h11.Data):
                body += event.data
                if len(body) > self.max_body:
                    await self._respond(error_response(errors.too_large(self.max_body)), close=True)
                    return False
            elif isinstance(event, h11.EndOfMessage):
                break
            else:
                return False
        request = Request(req.method.decode("latin-1").upper(), path, query, headers, bytes(body))
        try:
            result = self.api.handle(request)
        except Exception as exc:
            _log.exception("request failed", method=request.method, path=request.path)
            result = error_response(
                errors.ApiError(500, "InternalError", f"internal error: {type(exc).__name__}")
            )
        if isinstance(result, Watch):
            await self._watch(result)
            return False
        await self._respond(result)
        return True

    async def _discard(self, length: int) -> None:
        """Read and drop a rejected body for a short while, so clients that send it all see our 413."""
        remaining = min(length, limits.APISERVER_DISCARD_MAX_BYTES)
        with trio.move_on_after(_DISCARD_TIMEOUT_S):
            while remaining > 0:
                try:
                    data = await self.stream.receive_some(65536)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
                if not data:
                    return
                remaining -= len(data)

    async def _respond(self, resp: Response, *, close: bool = False) -> None:
        headers = [
            ("Content-Type", resp.content_type),
            ("Content-Length", str(len(resp.body))),
            ("Cache-Control", "no-cache, private"),
            *resp.headers,
        ]
        if close:
            headers.append(("Connection", "close"))
        # One write per response: fewer TLS records and syscalls than one per h11 event.
        data = b"".join(
            self.conn.send(event) or b""
            for event in (h11.Response(status_code=resp.status, headers=headers), h11.Data(data=resp.body),
                          h11.EndOfMessage())
        )  # fmt: skip
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise _Closed() from None

    async def _watch(self, watch: Watch) -> None:
        await self._send(
            h11.Response(
                status_code=200,
                # The connection ends with the watch: saying so keeps clients (urllib3's pool) from
                # reusing it for their next request and logging a retry on every watch restart.
                headers=[("Content-Type", "application/json"), ("Transfer-Encoding", "chunked"),
                         ("Cache-Control", "no-cache, private"), ("Connection", "close")],
            )
        )  # fmt: skip
        # A client that vanishes mid-stream makes _send raise _Closed inside the nursery; it is carried
        # out by hand, because the nursery would wrap it in an ExceptionGroup that run() does not catch.
        closed = False
        with trio.move_on_after(watch.timeout):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._until_client_leaves, nursery.cancel_scope.cancel)
                next_bookmark = trio.current_time() + self.bookmark_interval
                try:
                    while True:
                        changed = self.signal.event
                        lines = watch.poll()
                        if lines:
                            await self._send(h11.Data(data=b"".join(lines)))
                        if watch.done:
                            break
                        with trio.move_on_at(next_bookmark):
                            await changed.wait()
                        if trio.current_time() >= next_bookmark:
                            next_bookmark = trio.current_time() + self.bookmark_interval
                            mark = watch.bookmark()
                            if mark:
                                await self._send(h11.Data(data=mark))
                except _Closed:
                    closed = True
                nursery.cancel_scope.cancel()
        if closed:
            raise _Closed()
        with contextlib.suppress(_Closed, h11.LocalProtocolError):
            await self._send(h11.EndOfMessage())

    async def _until_client_leaves(self, cancel: Callable[[], None]) -> None:
        try:
            while await self.stream.receive_some(4096):
                pass  # a client does not send while a watch streams; ignore stray bytes
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        cancel()


def server_ssl_context(cert: str, key: str) -> ssl.SSLContext:
    """TLS 1.2+ server context offering HTTP/1.1 only."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["http/1.1"])
    # No session resumption is used by clients here; tickets only cost CPU per accept.
    ctx.num_tickets = 0
    return ctx


async def handle_stream(
    raw: trio.SocketStream,
    ctx: ssl.SSLContext,
    api: Api,
    signal: ChangeSignal,
    limiter: trio.CapacityLimiter,
    *,
    max_body: int,
    bookmark_interval: float,
) -> None:
    """TLS-wrap one accepted socket and serve it; errors end this connection only."""
    async with limiter:
        stream = trio.SSLStream(raw, ctx, server_side=True, https_compatible=True)
        try:
            with trio.fail_after(_HANDSHAKE_TIMEOUT_S):
                await stream.do_handshake()
            await Connection(
                stream, api, signal, max_body=max_body, bookmark_interval=bookmark_interval
            ).run()
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.TooSlowError):
            pass
        finally:
            with trio.move_on_after(1) as cleanup:
                cleanup.shield = True
                with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                    await stream.aclose()
