"""The status API server: read-only HTTP/1.1 + JSON on a unix socket, rendering the status board.

Owns the socket file (created mode 0660, owner root or the running user, group from ``statusServer.group``),
the accept loop and the per-connection request handling. Endpoints are :data:`kubeedge.kit.status.ENDPOINTS`
(``GET``/``HEAD`` only; anything else is 405, unknown paths 404). One request per connection
(``Connection: close``), which keeps every connection's life bounded.

Invariants: the socket appears at its path already carrying its final mode and group (it is bound under a
temporary name, fixed up, then renamed into place), so there is no window where it is more open; at most
:data:`~kubeedge.kit.limits.STATUS_MAX_CONNECTIONS` connections are served (more get a 503 and are closed);
request heads are bounded (:data:`~kubeedge.kit.limits.STATUS_MAX_REQUEST_BYTES`) and a connection lives at
most :data:`~kubeedge.kit.limits.STATUS_REQUEST_TIMEOUT` seconds; response bodies are bounded by
:func:`kubeedge.kit.status.render`.

Failures: a path that is occupied by a non-socket, or by a socket another process still serves, or an unknown
group raises :class:`StatusServerError` at start; a bad client is answered 400 or dropped without affecting
others; the socket file is removed on exit.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import socket as stdsocket
import stat
from collections.abc import Callable
from typing import Any, Final

import h11
import trio

from kubeedge.edge.status.board import StatusBoard
from kubeedge.kit import limits, log
from kubeedge.kit import status as s
from kubeedge.kit.config.edgecore import StatusServer as StatusServerSettings

_log = log.get(__name__)

SOCKET_MODE: Final = 0o660
_ALLOWED: Final = b"GET, HEAD"


class StatusServerError(Exception):
    """The status server cannot start (socket path or group problem); the message names what is wrong."""


def resolve_group(group: str) -> int:
    """The numeric id of ``group`` (a name or a number); raises :class:`StatusServerError` if unknown."""
    if group.isdigit():
        return int(group)
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise StatusServerError(f"statusServer.group: no group named {group!r} on this host") from None


def _socket_in_use(path: str) -> bool:
    probe = stdsocket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except OSError:
        return False
    else:
        return True
    finally:
        probe.close()


def _prepare_path(path: str) -> None:
    os.makedirs(os.path.dirname(path) or ".", mode=0o755, exist_ok=True)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise StatusServerError(
            f"statusServer.socketPath: {path} exists and is not a socket; not replacing it"
        )
    if _socket_in_use(path):
        raise StatusServerError(
            f"statusServer.socketPath: {path} is served by another process (edgecore running?)"
        )
    os.unlink(path)  # a stale socket left by a crashed edgecore


async def bind_socket(path: str, gid: int) -> trio.socket.SocketType:
    """A listening unix socket at ``path``, mode 0660, group ``gid``; raises :class:`StatusServerError`."""
    _prepare_path(path)
    tmp = f"{path}.{os.getpid()}.tmp"
    sock = trio.socket.socket(stdsocket.AF_UNIX, stdsocket.SOCK_STREAM)
    try:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        await sock.bind(tmp)
        try:
            os.chmod(tmp, SOCKET_MODE)
            os.chown(tmp, os.geteuid(), gid)
            sock.listen(limits.STATUS_MAX_CONNECTIONS)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError as exc:
        sock.close()
        raise StatusServerError(
            f"statusServer.socketPath: cannot create {path}: {exc.strerror or exc}"
        ) from exc
    except BaseException:
        sock.close()
        raise
    return sock


def _response(
    status: int,
    body: bytes,
    *,
    content_type: str = s.CONTENT_TYPE,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> tuple[h11.Response, bytes]:
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        (b"cache-control", b"no-store"),
        *(extra or []),
    ]
    return h11.Response(status_code=status, headers=headers), body


def _error(status: int, message: str, **extra: Any) -> tuple[h11.Response, bytes]:
    headers = [(b"allow", _ALLOWED)] if status == 405 else None
    body = json.dumps({"schema": s.SCHEMA, "error": message, **extra}).encode()
    return _response(status, body, extra=headers)


class StatusServer:
    """Serves ``board`` on ``socket_path`` until cancelled.

    Use :meth:`serve` under a nursery (``await nursery.start(server.serve)``); it calls ``task_status.started``
    once the socket is in place. ``clock`` is trio's by default (it paces provider refreshes).
    """

    def __init__(
        self,
        board: StatusBoard,
        socket_path: str,
        *,
        group: str = "root",
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.board = board
        self.socket_path = socket_path
        self.group = group
        self._clock = clock
        self._active = 0
        self.served = 0
        """Requests answered (any status), for tests and metrics."""
        self.refused = 0
        """Connections refused because :data:`~kubeedge.kit.limits.STATUS_MAX_CONNECTIONS` were open."""

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Create the socket, serve until cancelled, then remove the socket file."""
        gid = resolve_group(self.group)
        sock = await bind_socket(self.socket_path, gid)
        inode = os.stat(self.socket_path).st_ino
        listener = trio.SocketListener(sock)
        _log.info("status API listening", socket=self.socket_path, group=self.group, mode=oct(SOCKET_MODE))
        try:
            async with listener, trio.open_nursery() as nursery:
                task_status.started()
                while True:
                    try:
                        stream = await listener.accept()
                    except OSError as exc:
                        # EMFILE and friends: do not spin; the next accept may succeed once others close.
                        _log.warning("status API accept failed", error=str(exc))
                        await trio.sleep(0.1)
                        continue
                    nursery.start_soon(self._connection, stream)
        finally:
            with contextlib.suppress(OSError):
                if os.stat(self.socket_path).st_ino == inode:
                    os.unlink(self.socket_path)

    async def _connection(self, stream: trio.SocketStream) -> None:
        self._active += 1
        try:
            async with stream:
                with trio.move_on_after(limits.STATUS_REQUEST_TIMEOUT):
                    if self._active > limits.STATUS_MAX_CONNECTIONS:
                        self.refused += 1
                        await self._send(
                            stream, h11.Connection(h11.SERVER), *_error(503, "too many connections")
                        )
                        return
                    await self._handle(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
            _log.debug("status API client went away", error=str(exc))
        finally:
            self._active -= 1

    async def _handle(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.STATUS_MAX_REQUEST_BYTES)
        request: h11.Request | None = None
        try:
            while request is None:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(4096)
                    conn.receive_data(data)
                    if not data:
                        # A client that connects and closes without asking has no answer to wait for.
                        with contextlib.suppress(h11.RemoteProtocolError):
                            conn.next_event()
                        return
                elif isinstance(event, h11.Request):
                    request = event
                else:
                    return
        except h11.RemoteProtocolError as exc:
            await self._send(stream, conn, *_error(exc.error_status_hint, f"bad request: {exc}"))
            return
        await self._send(stream, conn, *await self._answer(request))

    async def _answer(self, request: h11.Request) -> tuple[h11.Response, bytes]:
        method = request.method.decode("ascii", "replace")
        path = request.target.decode("ascii", "replace").split("?", 1)[0].rstrip("/") or "/"
        if method not in ("GET", "HEAD"):
            return _error(405, f"method {method} not allowed: the status API is read-only")
        if path not in s.ENDPOINTS:
            return _error(404, f"no such endpoint: {s.clip_text(path, 100)}", endpoints=sorted(s.ENDPOINTS))
        await self.board.refresh(self._clock())
        body = s.render(s.documents(self.board.snapshot())[path])
        if method == "HEAD":
            response, _ = _response(200, body)
            return response, b""
        return _response(200, body)

    async def _send(
        self, stream: trio.SocketStream, conn: h11.Connection, response: h11.Response, body: bytes
    ) -> None:
        if conn.our_state is not h11.SEND_RESPONSE and conn.our_state is not h11.IDLE:
            return
        try:
            out = conn.send(response) or b""
            if body:
                out += conn.send(h11.Data(data=body)) or b""
            out += conn.send(h11.EndOfMessage()) or b""
        except h11.LocalProtocolError:
            # h11 refuses to answer in some broken states (e.g. after a malformed request line); just close.
            return
        self.served += 1
        await stream.send_all(out)


class StatusModule:
    """The ``status`` beehive module: serves the board; takes no messages.

    Wire it with ``StatusModule(board, cfg.modules.status_server.socket_path, group=...)`` in edgecore's module
    list; other modules get the same ``board`` object to publish on.
    """

    name = "status"
    group = "status"

    def __init__(self, board: StatusBoard, socket_path: str, *, group: str = "root") -> None:
        self.server = StatusServer(board, socket_path, group=group)

    @classmethod
    def from_config(cls, board: StatusBoard, settings: StatusServerSettings) -> StatusModule:
        """The module for ``cfg.modules.statusServer`` (check ``settings.enable`` before adding it)."""
        return cls(board, settings.socket_path, group=settings.group)

    async def run(self, ctx: Any, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled (``ctx`` is unused: nothing is addressed to this module)."""
        del ctx
        await self.server.serve(task_status=task_status)


__all__ = [
    "SOCKET_MODE",
    "StatusModule",
    "StatusServer",
    "StatusServerError",
    "bind_socket",
    "resolve_group",
]
