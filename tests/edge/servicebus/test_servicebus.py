"""ServiceBus: cloud-to-app calls to a real HTTP app on loopback, app-to-cloud calls from a real HTTP client."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trio

from kubeedge.edge.metamanager.store import MetaStore
from kubeedge.edge.servicebus.module import ServiceBus
from kubeedge.kit import beehive
from kubeedge.proto.message import Message

MAX_BODY = 1024


class _App(BaseHTTPRequestHandler):
    def log_message(self, *_a: Any) -> None:
        pass

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        if self.path == "/slow":
            time.sleep(1.5)  # the app is slow: that is the behaviour under test
        out = (
            b"x" * (2 * MAX_BODY)
            if self.path == "/big"
            else json.dumps(
                {
                    "method": self.command,
                    "path": self.path,
                    "body": body.decode(),
                    "x_test": self.headers.get("X-Test"),
                }
            ).encode()
        )
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-App", "yes")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = _answer


@pytest.fixture(scope="module")
def app_port() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _App)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


class Hub:
    """Module ``websocket`` (group ``hub``): records replies, answers uploads from apps like the cloud would."""

    name = "websocket"
    group = "hub"

    def __init__(self) -> None:
        self.seen: list[Message] = []
        self.changed = trio.Event()
        self.silent = False

    async def run(
        self, ctx: beehive.Context, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        async for msg in ctx:
            self.seen.append(msg)
            self.changed.set()
            self.changed = trio.Event()
            if msg.header.sync and not self.silent:
                ctx.send_response(
                    msg.reply({"echo": msg.content, "to": msg.route.resource}, now_ms=ctx.now_ms())
                )

    async def reply_to(self, msg_id: str) -> Message:
        while True:
            for m in self.seen:
                if m.parent_msg_id == msg_id:
                    return m
            await self.changed.wait()


@asynccontextmanager
async def running(tmp_path: Path, **kw: Any) -> AsyncIterator[tuple[beehive.Beehive, ServiceBus, Hub]]:
    sb = ServiceBus(port=0, max_body=MAX_BODY, data_source=tmp_path / "edgecore.db", **kw)
    hub = Hub()
    hive = beehive.Beehive([sb, hub], shutdown_timeout=2)
    async with trio.open_nursery() as nursery:
        await nursery.start(hive.run)
        try:
            yield hive, sb, hub
        finally:
            hive.shutdown()


def cloud_request(resource: str, method: str = "POST", body: bytes = b"", header: Any = None) -> Message:
    return Message.new(
        source="router_servicebus",
        group="user",
        operation=method,
        resource=resource,
        content={
            "method": method,
            "url": "",
            "header": header or {"X-Test": ["abc"]},
            "body": base64.b64encode(body).decode(),
        },
        now_ms=0,
    )


async def call_app(hive: beehive.Beehive, hub: Hub, msg: Message) -> dict[str, Any]:
    await hive.bus.send("servicebus", msg)
    reply = await hub.reply_to(msg.msg_id)
    assert reply.route.source == "servicebus"
    assert reply.route.group == "user"
    assert reply.route.operation == "upload"
    assert reply.route.resource == ""
    return dict(reply.content)


async def test_cloud_to_app_round_trip_and_failures(tmp_path: Path, app_port: int) -> None:
    with trio.fail_after(20):
        async with running(tmp_path, app_timeout=0.5) as (hive, _sb, hub):
            ok = await call_app(hive, hub, cloud_request(f"{app_port}:/echo?a=1", body=b"hello"))
            assert ok["status_code"] == 201
            assert ok["header"]["X-App"] == ["yes"]
            echoed = json.loads(base64.b64decode(ok["body"]))
            assert echoed == {"method": "POST", "path": "/echo?a=1", "body": "hello", "x_test": "abc"}
            get = await call_app(hive, hub, cloud_request(f"{app_port}:echo", method="GET"))
            assert json.loads(base64.b64decode(get["body"]))["path"] == "/echo"
            cases = [
                (cloud_request(f"{app_port}:/slow"), 504, "did not answer within 0.5 s"),
                (cloud_request(f"{app_port}:/big"), 413, "1024-byte limit"),
                (cloud_request(f"{app_port}:/echo", body=b"y" * (MAX_BODY + 1)), 413, "1024-byte limit"),
                (cloud_request("notaport:/x"), 400, "expected <port>:<path>"),
                (cloud_request(f"{app_port}:/echo", method="BREW"), 400, "method 'BREW'"),
                (
                    cloud_request(f"{app_port}:/echo", header={"Bad Header": "x"}),
                    400,
                    "bad request for the app",
                ),
                (cloud_request(f"{free_closed_port()}:/x"), 502, "cannot connect"),
            ]
            for msg, status, needle in cases:
                got = await call_app(hive, hub, msg)
                assert got["status_code"] == status, got
                assert needle in base64.b64decode(got["body"]).decode()


def free_closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def post(port: int, body: bytes) -> dict[str, Any]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/", data=body, method="POST")
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status == 200  # upstream answers 200 and puts the outcome in "code"
        return dict(json.loads(resp.read()))


async def test_app_to_cloud_with_registered_targets(tmp_path: Path) -> None:
    with trio.fail_after(20):
        async with running(tmp_path, timeout=0.5) as (hive, sb, hub):
            port = sb.bound_port
            assert port is not None
            target = "http://cloud.example/api"
            request = json.dumps(
                {"method": "POST", "targetURL": target, "payload": base64.b64encode(b"hi").decode()}
            ).encode()
            refused = await trio.to_thread.run_sync(post, port, request)
            assert refused["code"] == 400
            assert "not registered" in refused["msg"]
            start = Message.new(
                source="router_servicebus", group="user", operation="start", resource=target, now_ms=0
            )
            await hive.bus.send("servicebus", start)
            with trio.fail_after(5):
                while target not in sb.targets:
                    await trio.sleep(0.01)  # the registration is handled by the module's loop
            ok = await trio.to_thread.run_sync(post, port, request)
            assert ok == {
                "code": 200,
                "msg": "ok",
                "body": {"echo": base64.b64encode(b"hi").decode(), "to": target},
            }
            (upload,) = [m for m in hub.seen if m.route.resource == target]
            assert (upload.route.source, upload.route.group, upload.route.operation) == (
                "servicebus",
                "user",
                "upload",
            )
            bad = await trio.to_thread.run_sync(post, port, b"{nope")
            assert bad["code"] == 400
            hub.silent = True
            late = await trio.to_thread.run_sync(post, port, request)
            assert late["code"] == 504
            # An oversized body is refused from its Content-Length, before it is read.
            big = await trio.to_thread.run_sync(raw_post_head, port, 50 * MAX_BODY)
            assert big.startswith(b"HTTP/1.1 200 ")
            assert json.loads(big.split(b"\r\n\r\n", 1)[1])["code"] == 413
    # Registered targets persist in edgecore.db (upstream's target_urls table).
    with MetaStore.open(tmp_path / "edgecore.db") as store:
        assert store.target_urls() == [target]


def raw_post_head(port: int, length: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n\r\n".encode() + b"{" * 100)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        return data
