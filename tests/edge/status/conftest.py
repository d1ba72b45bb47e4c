"""Fixtures for the status API: a socket path short enough for AF_UNIX, a served board, a raw HTTP client."""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import h11
import pytest
import trio

from kubeedge.edge.status.board import StatusBoard
from kubeedge.edge.status.server import StatusServer
from tests.status_support import short_socket_dir

DEADLINE = 10


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    path = Path(short_socket_dir())
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def sock_path(sock_dir: Path) -> str:
    return str(sock_dir / "run" / "edgecore-status.sock")


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes


async def request(path: str, raw: bytes, method: str = "GET") -> Answer:
    """Send ``raw`` bytes on a fresh connection and parse the answer with h11 (bounded read)."""
    stream = await trio.open_unix_socket(path)
    async with stream:
        await stream.send_all(raw)
        conn = h11.Connection(h11.CLIENT)
        conn.send(h11.Request(method=method, target="/", headers=[("host", "x")]))  # sync h11's client state
        status, headers, body = 0, {}, b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await stream.receive_some(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
                headers = {k.decode(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                body += event.data
                assert len(body) < 4 * 1024 * 1024
            else:
                break
        return Answer(status, headers, body)


async def get(path: str, target: str, method: str = "GET") -> Answer:
    return await request(path, f"{method} {target} HTTP/1.1\r\nHost: edgecore\r\n\r\n".encode(), method)


@asynccontextmanager
async def serving(board: StatusBoard, path: str, group: str = "root") -> AsyncIterator[StatusServer]:
    server = StatusServer(board, path, group=group)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        yield server
        nursery.cancel_scope.cancel()
