"""The TUI's status-API client: one bounded HTTP/1.1 GET over edgecore's unix socket, on asyncio.

Owns nothing between calls (a fresh connection per request, as the server closes after each answer).

Invariants: a call takes at most ``timeout`` seconds and reads at most
:data:`~kubeedge.kit.limits.STATUS_MAX_RESPONSE_BYTES` plus a header allowance. Failures: every problem (no
socket, permission denied, edgecore not answering, bad HTTP, bad JSON, foreign schema) raises
:class:`StatusUnavailable` with a message meant for the operator; nothing else escapes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Final, TypeVar

import h11

from kubeedge.kit import limits
from kubeedge.kit import status as s

_T = TypeVar("_T")

DEFAULT_TIMEOUT: Final = 5.0


class StatusUnavailable(Exception):
    """The status API could not be read; ``str()`` says why in operator terms."""


class StatusClient:
    """Reads documents from the status API at ``socket_path``."""

    def __init__(self, socket_path: str, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.socket_path = socket_path
        self.timeout = timeout

    async def get(self, cls: type[_T]) -> _T:
        """``GET`` the endpoint serving ``cls`` (e.g. :class:`~kubeedge.kit.status.Snapshot`) and decode it."""
        (path,) = [p for p, c in s.ENDPOINTS.items() if c is cls]
        try:
            body = await asyncio.wait_for(self._fetch(path), self.timeout)
        except TimeoutError:
            raise StatusUnavailable(
                f"edgecore did not answer on {self.socket_path} within {self.timeout:g} s"
            ) from None
        except FileNotFoundError:
            raise StatusUnavailable(
                f"no status socket at {self.socket_path}: is edgecore running with modules.statusServer enabled?"
            ) from None
        except ConnectionRefusedError:
            raise StatusUnavailable(
                f"edgecore is not running (nothing listens on {self.socket_path})"
            ) from None
        except PermissionError:
            raise StatusUnavailable(
                f"permission denied on {self.socket_path}: run as root or as a member of statusServer.group"
            ) from None
        except OSError as exc:
            raise StatusUnavailable(
                f"cannot reach edgecore on {self.socket_path}: {exc.strerror or exc}"
            ) from None
        try:
            return s.loads(cls, body)
        except s.SchemaError as exc:
            raise StatusUnavailable(f"edgecore sent a status document this TUI cannot read: {exc}") from None

    async def _fetch(self, path: str) -> bytes:
        reader, writer = await asyncio.open_unix_connection(self.socket_path, limit=64 * limits.KiB)
        try:
            conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=limits.STATUS_MAX_REQUEST_BYTES)
            request = h11.Request(
                method="GET", target=path, headers=[("host", "edgecore"), ("connection", "close")]
            )
            writer.write(conn.send(request) + (conn.send(h11.EndOfMessage()) or b""))
            await writer.drain()
            status = 0
            chunks: list[bytes] = []
            size = 0
            while True:
                try:
                    event = conn.next_event()
                except h11.RemoteProtocolError as exc:
                    raise StatusUnavailable(f"edgecore sent a malformed HTTP answer: {exc}") from None
                if event is h11.NEED_DATA:
                    conn.receive_data(await reader.read(64 * limits.KiB))
                elif isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    size += len(event.data)
                    if size > limits.STATUS_MAX_RESPONSE_BYTES:
                        raise StatusUnavailable(
                            f"status answer larger than {limits.STATUS_MAX_RESPONSE_BYTES} bytes; refusing it"
                        )
                    chunks.append(bytes(event.data))
                elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                    break
            body = b"".join(chunks)
            if status != 200:
                raise StatusUnavailable(f"edgecore answered {path} with HTTP {status}: {_error_text(body)}")
            return body
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def _error_text(body: bytes) -> str:
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        return s.clip_text(body.decode("utf-8", "replace"), 200)
    error = data.get("error") if isinstance(data, dict) else None
    return s.clip_text(str(error if error is not None else data), 200)
