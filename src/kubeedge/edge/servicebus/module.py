"""The ``servicebus`` module (group ``bus``): HTTP between edge apps and the cloud.

Cloud to edge app: a message from ``router_servicebus`` (op = HTTP method, resource ``<port>:<path>``,
content ``{"method","url","header","body"}`` with ``body`` base64) becomes a call to
``http://127.0.0.1:<port><path>`` bounded by ``app_timeout`` (upstream's client: 10 s); the answer goes
to group ``hub`` as source ``servicebus``, group ``user``, op ``upload``, empty resource, parent = request
id, content ``{"header","status_code","body"}`` (body base64). A failed call is answered the same way with
status 400 (bad request), 413 (body over :data:`~kubeedge.kit.limits.SERVICEBUS_MAX_BODY`), 502 (app
unreachable or broken) or 504 (timeout), and the reason as body.

Edge app to cloud: an HTTP server on ``server:port`` (upstream 127.0.0.1:9060) takes
``{"method","targetURL","payload"}`` (payload base64), sends it to EdgeHub (module ``websocket``) as op
``upload``, resource = targetURL, content = payload, and waits ``timeout`` seconds for the reply. The
answer is always HTTP 200 with ``{"code","msg","body"}`` as upstream: code 200 with the reply content,
400 bad request or a target URL the cloud has not registered (op ``start``, resource = URL; ``stop``
unregisters; kept in edgecore.db ``target_urls``), 413 too large, 504 no reply in time, 502 link failure.

Bounds: request and response bodies, heads, concurrent connections and calls
(:data:`~kubeedge.kit.limits.SERVICEBUS_MAX_CONNECTIONS`). A misbehaving client or app only fails its
own exchange.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import trio

from kubeedge.edge.metamanager.store import MetaStore
from kubeedge.kit import beehive, http1, limits, log
from kubeedge.proto import vocab
from kubeedge.proto.message import Message

_log = log.get(__name__)

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
ROUTER_SOURCE = "router_servicebus"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _canonical(name: str) -> str:
    """Go's canonical header key (``x-app`` -> ``X-App``): the reply's ``header`` is a Go ``http.Header``."""
    return "-".join(part[:1].upper() + part[1:].lower() for part in name.split("-"))


class ServiceBus:
    """Beehive module ``servicebus``. ``data_source`` (optional) persists target URLs in edgecore.db."""

    name = vocab.EdgeModule.SERVICEBUS.value
    group = vocab.EdgeGroup.BUS.value

    def __init__(
        self,
        *,
        server: str = "127.0.0.1",
        port: int = 9060,
        timeout: float = 60.0,
        app_timeout: float = limits.SERVICEBUS_APP_TIMEOUT,
        max_body: int = limits.SERVICEBUS_MAX_BODY,
        data_source: str | Path | None = None,
        edgehub_module: str = vocab.EdgeModule.EDGEHUB.value,
        hub_group: str = vocab.EdgeGroup.HUB.value,
    ) -> None:
        self.server = server
        self.port = port
        self.timeout = timeout
        self.app_timeout = app_timeout
        self.max_body = max_body
        self.data_source = data_source
        self.edgehub_module = edgehub_module
        self.hub_group = hub_group
        self.bound_port: int | None = None
        """The port actually listened on (useful with ``port=0``)."""
        self.targets: set[str] = set()
        """Target URLs edge apps may call."""
        self._limiter = trio.CapacityLimiter(limits.SERVICEBUS_MAX_CONNECTIONS)
        self._store: MetaStore | None = None

    async def run(
        self, ctx: beehive.Context, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen, then serve cloud requests from the inbox; each call runs in its own bounded task."""
        if self.data_source is not None:
            self._store = await trio.to_thread.run_sync(MetaStore.open, self.data_source)
            self.targets = set(await trio.to_thread.run_sync(self._store.target_urls))
        listeners = await trio.open_tcp_listeners(self.port, host=self.server)
        self.bound_port = listeners[0].socket.getsockname()[1]
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.serve_listeners, lambda s: self._serve_app(ctx, s), listeners)
                _log.info("servicebus listening", address=f"{self.server}:{self.bound_port}")
                task_status.started()
                async for msg in ctx:
                    await self._from_cloud(ctx, nursery, msg)
        finally:
            if self._store is not None:
                self._store.close()
                self._store = None

    # --- cloud -> edge app ----------------------------------------------------------------------------
    async def _from_cloud(self, ctx: beehive.Bus, nursery: trio.Nursery, msg: Message) -> None:
        op = msg.route.operation
        if op in {vocab.Operation.START, vocab.Operation.STOP}:
            await self._register(msg.route.resource, op == vocab.Operation.START)
            return
        if msg.route.source != ROUTER_SOURCE:
            _log.debug("message ignored", source=msg.route.source, operation=op)
            return
        # A call slot is taken before the task starts, so a flood of requests waits here (inbox backpressure).
        await self._limiter.acquire_on_behalf_of(msg.msg_id)
        nursery.start_soon(self._call_app, ctx, msg)

    async def _register(self, url: str, add: bool) -> None:
        if not url or len(url) > 2048:
            _log.warning("target URL refused: must be 1..2048 characters")
            return
        if add:
            self.targets.add(url)
        else:
            self.targets.discard(url)
        if self._store is not None:
            fn = self._store.add_target_url if add else self._store.remove_target_url
            await trio.to_thread.run_sync(fn, url)
        _log.info("target URL " + ("registered" if add else "unregistered"), url=url)

    async def _call_app(self, ctx: beehive.Bus, msg: Message) -> None:
        try:
            try:
                port, path, method, headers, body = self._parse_cloud_request(msg)
                with trio.fail_after(self.app_timeout):
                    resp = await http1.call(port, method, path, headers, body, max_body=self.max_body)
                grouped: dict[str, list[str]] = {}
                for n, v in resp.headers:
                    grouped.setdefault(_canonical(n), []).append(v)
                content: dict[str, Any] = {
                    "header": grouped,
                    "status_code": int(resp.status_or_method),
                    "body": _b64(resp.body),
                }
            except trio.TooSlowError:
                content = self._error(504, f"the app did not answer within {self.app_timeout:g} s")
            except http1.HttpError as e:
                content = self._error(e.status, e.message)
            reply = Message.new(
                source=self.name,
                group=vocab.Group.USER,
                operation=vocab.Operation.UPLOAD,
                resource="",
                content=content,
                now_ms=ctx.now_ms(),
                parent_msg_id=msg.msg_id,
            )
            try:
                await ctx.send_to_group(self.hub_group, reply)
            except beehive.BeehiveError as e:
                _log.warning("servicebus reply not sent", error=str(e))
        finally:
            self._limiter.release_on_behalf_of(msg.msg_id)

    @staticmethod
    def _error(status: int, reason: str) -> dict[str, Any]:
        _log.info("app call failed", status=status, reason=reason)
        return {"header": {}, "status_code": status, "body": _b64(reason.encode())}

    def _parse_cloud_request(self, msg: Message) -> tuple[int, str, str, list[tuple[str, str]], bytes]:
        port_text, sep, path = msg.route.resource.partition(":")
        if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise http1.HttpError(400, f"resource {msg.route.resource[:100]!r}: expected <port>:<path>")
        if not path.startswith("/"):
            path = "/" + path
        content = msg.content
        if isinstance(content, str | bytes):
            if len(content) > 2 * self.max_body:
                raise http1.HttpError(413, f"request larger than the {self.max_body}-byte limit")
            try:
                content = json.loads(content)
            except ValueError:
                raise http1.HttpError(400, "request content is not JSON") from None
        if not isinstance(content, Mapping):
            raise http1.HttpError(400, "request content must be an object")
        method = str(content.get("method") or msg.route.operation).upper()
        if method not in METHODS:
            raise http1.HttpError(400, f"method {method[:16]!r} is not one of {', '.join(sorted(METHODS))}")
        raw_body = content.get("body") or ""
        if not isinstance(raw_body, str):
            raise http1.HttpError(400, "body must be base64 text")
        if len(raw_body) > (self.max_body * 4) // 3 + 4:
            raise http1.HttpError(413, f"request body larger than the {self.max_body}-byte limit")
        try:
            body = base64.b64decode(raw_body, validate=True)
        except (binascii.Error, ValueError):
            raise http1.HttpError(400, "body is not valid base64") from None
        headers: list[tuple[str, str]] = []
        raw_headers = content.get("header") or {}
        if not isinstance(raw_headers, Mapping):
            raise http1.HttpError(400, "header must be an object")
        for name, values in raw_headers.items():
            for value in values if isinstance(values, list) else [values]:
                headers.append((str(name), str(value)))
        return int(port_text), path, method, headers, body

    # --- edge app -> cloud ----------------------------------------------------------------------------
    async def _serve_app(self, ctx: beehive.Bus, stream: trio.SocketStream) -> None:
        async with stream, self._limiter:
            conn = http1.server_connection()
            try:
                with trio.fail_after(self.timeout + 5):
                    try:
                        request = await http1.read_request(conn, stream, self.max_body)
                        code, text, body = await self._forward(ctx, request.body)
                    except http1.HttpError as e:
                        code, text, body = e.status, e.message, None
                    answer = json.dumps({"code": code, "msg": text, "body": body}).encode()
                    await http1.write_response(conn, stream, 200, answer)
            except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
                _log.debug("servicebus client dropped", error=repr(e))

    async def _forward(self, ctx: beehive.Bus, raw: bytes) -> tuple[int, str, Any]:
        try:
            req = json.loads(raw)
        except ValueError:
            return 400, "request body is not JSON", None
        if not isinstance(req, Mapping):
            return 400, "request body must be a JSON object", None
        target = req.get("targetURL")
        if not isinstance(target, str) or target not in self.targets:
            return 400, f"targetURL {str(target)[:200]!r} is not registered", None
        payload = req.get("payload") or ""
        if not isinstance(payload, str):
            return 400, "payload must be base64 text", None
        msg = Message.new(
            source=self.name,
            group=vocab.Group.USER,
            operation=vocab.Operation.UPLOAD,
            resource=target,
            content=payload,
            now_ms=ctx.now_ms(),
        )
        try:
            reply = await ctx.send_sync(self.edgehub_module, msg, timeout=self.timeout)
        except beehive.SyncTimeoutError:
            return 504, f"no reply from the cloud within {self.timeout:g} s", None
        except beehive.BeehiveError as e:
            return 502, f"cannot reach the cloud: {e}", None
        if reply.route.operation == vocab.Operation.ERROR:
            return 500, str(reply.content)[:1000], None
        return 200, "ok", reply.content
