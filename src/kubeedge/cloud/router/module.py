"""The ``router`` module (group ``router``): REST requests on the cloud to edge apps and brokers, and back.

Upstream's Router with its rest, servicebus and eventbus providers (wire notes section 8), as three
routes: rest -> servicebus, rest -> eventbus, eventbus -> rest.

- two :class:`~kubeedge.cloud.kubeapi.Reflector` watches keep a :class:`~.rules.RuleTable` of
  ``rules.kubeedge.io/v1`` Rules and RuleEndpoints;
- a REST listener on ``modules.router.address:port`` (upstream 0.0.0.0:9443, plain HTTP) takes
  ``<METHOD> /<node>/<namespace>/<path>``; the matching rule's request goes to ``cloudhub`` as source
  ``router_servicebus``, group ``user``, op = the HTTP method, resource ``node/<node>/<service_port>:<path>``,
  content ``{"method","url","header","body"}`` (body base64);
- the edge's answer (its ``parent_msg_id`` is the request's id, content ``{"header","status_code","body"}``)
  comes back through ``cloudhub`` and becomes the HTTP response;
- an ``eventbus`` -> ``rest`` rule makes the node subscribe ``<namespace>/<topic>`` (source ``router_eventbus``,
  op ``subscribe``, sent again when the node connects); what its EventBus uploads from that topic (source
  ``bus``, group ``user``) is POSTed to the rule's http:// URL in the background (bounded in number and
  time; failures are logged, as upstream nothing goes back to the edge);
- with an ``eventbus`` target the (UTF-8) body goes to the node as source ``router_eventbus``, group ``user``,
  op ``publish``, resource ``node/<node>/<topic>``, and the caller gets 200 ``message delivered`` at once
  (as upstream: there is no answer to wait for; a node that is offline loses it, after the 500 check).

Each routed message counts in its Rule's ``status`` (``successMessages``, ``failMessages``, the last
:data:`~kubeedge.kit.limits.ROUTER_RULE_ERRORS` ``errors``), written at most every
:data:`~kubeedge.kit.limits.ROUTER_STATUS_FLUSH_S` seconds and continued from the stored status.

Errors as upstream: no matching rule 404 ``No rule match``; node without a session 500; no answer within
``restTimeout`` (upstream 60 s) 408 ``wait to get response time out``; an answer that is not a response
500 ``invalid response``. Bounds: request head and body (:data:`~kubeedge.kit.limits.ROUTER_MAX_BODY`,
12 MiB as upstream, answered 413; upstream answers 400), time to send a request, concurrent
connections; each connection carries one request. A late answer (after its timeout) is dropped. A bad
client or a bad Rule only fails itself; watch failures are retried by the reflectors.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import trio

from kubeedge.cloud import kubeapi
from kubeedge.cloud.router import rules as rulesmod
from kubeedge.kit import beehive, http1, limits, log
from kubeedge.proto import resource as res
from kubeedge.proto.message import Message
from kubeedge.proto.vocab import CloudModule, Group, Operation

_log = log.get(__name__)


def _now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


RULES: Final = kubeapi.Kind("rules.kubeedge.io", "v1", "rules", "Rule", True)
RULEENDPOINTS: Final = kubeapi.Kind("rules.kubeedge.io", "v1", "ruleendpoints", "RuleEndpoint", True)
SOURCE_SERVICEBUS: Final = "router_servicebus"
"""``route.source`` of Router messages for an edge's ServiceBus (upstream ``modules.RouterSourceServiceBus``)."""
SOURCE_EVENTBUS: Final = "router_eventbus"
"""``route.source`` of Router publishes for an edge's EventBus."""
_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_DISCARD_MAX: Final = 16 * 1024 * 1024
_DISCARD_TIMEOUT_S: Final = 2.0


@dataclass
class _Pending:
    done: trio.Event = field(default_factory=trio.Event)
    reply: Message | None = None


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP response to write."""

    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: list[tuple[str, str]] = field(default_factory=list)
    failure: str = ""
    """Set when the Router itself could not deliver (counted in the rule's ``failMessages``)."""


def _failed(status: int, text: str) -> Answer:
    return Answer(status, text.encode(), failure=text)


def answer_from_reply(reply: Message) -> Answer:
    """The HTTP response an edge ServiceBus reply stands for (500 ``invalid response`` if it is not one)."""
    content = reply.content
    if isinstance(content, str | bytes):
        try:
            content = json.loads(content)
        except ValueError:
            content = None
    invalid = _failed(500, "invalid response")
    if not isinstance(content, Mapping):
        return invalid
    status = content.get("status_code")
    raw = content.get("body") or ""
    header = content.get("header") or {}
    if not isinstance(status, int) or not 100 <= status <= 599 or not isinstance(raw, str):
        return invalid
    if not isinstance(header, Mapping):
        return invalid
    try:
        body = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        return invalid
    headers: list[tuple[str, str]] = []
    content_type = "text/plain; charset=utf-8"
    for name, values in header.items():
        for value in values if isinstance(values, list) else [values]:
            if str(name).lower() == "content-type":
                content_type = str(value)
            else:
                headers.append((str(name), str(value)))
    return Answer(status, body, content_type, headers)


class Router:
    """Beehive module ``router``: watches rules through ``api`` and serves REST on ``address:port``."""

    name = CloudModule.ROUTER.value
    group = CloudModule.ROUTER.value

    def __init__(
        self,
        api: kubeapi.KubeAPI,
        *,
        address: str = "0.0.0.0",
        port: int = 9443,
        rest_timeout: float = 60.0,
        max_body: int = limits.ROUTER_MAX_BODY,
        cloudhub_module: str = CloudModule.CLOUDHUB.value,
    ) -> None:
        self.api = api
        self.address = address
        self.port = port
        self.rest_timeout = rest_timeout
        self.max_body = max_body
        self.cloudhub_module = cloudhub_module
        self.table = rulesmod.RuleTable()
        self.nodes: set[str] = set()
        """Nodes with a CloudHub session (from cloudhub's connected/disconnected events)."""
        self.bound_port: int | None = None
        """The port actually listened on (useful with ``port=0``)."""
        self._pending: dict[str, _Pending] = {}
        self._limiter = trio.CapacityLimiter(limits.ROUTER_MAX_CONNECTIONS)
        self._posts = trio.CapacityLimiter(limits.ROUTER_MAX_CONNECTIONS)
        self._bus: beehive.Bus | None = None
        self._nursery: trio.Nursery | None = None
        self.stats = rulesmod.RuleStats()
        """Per-rule message counts, written to ``Rule.status`` every few seconds."""
        self._stats_changed = trio.Event()

    async def run(
        self, ctx: beehive.Context, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen, watch Rules and RuleEndpoints, and route replies from the inbox to waiting requests."""
        self._bus = ctx
        listeners = await trio.open_tcp_listeners(self.port, host=self.address)
        self.bound_port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            # The listener starts at once: until the first lists arrive every path is simply unknown (404).
            nursery.start_soon(kubeapi.Reflector(self.api, RULEENDPOINTS).run, self._on_endpoint)
            nursery.start_soon(kubeapi.Reflector(self.api, RULES).run, self._on_rule)
            nursery.start_soon(trio.serve_listeners, self._serve, listeners)
            nursery.start_soon(self._write_status)
            _log.info("router listening", address=f"{self.address}:{self.bound_port}")
            task_status.started()
            async for msg in ctx:
                await self._on_message(msg)

    # --- rules ------------------------------------------------------------------------------------
    async def _on_endpoint(
        self, type_: kubeapi.EventType, obj: dict[str, Any], _old: dict[str, Any] | None
    ) -> None:
        meta = obj.get("metadata") or {}
        before = self.table.subscriptions()
        if type_ is kubeapi.EventType.DELETED:
            self.table.remove_endpoint(meta.get("namespace", ""), meta.get("name", ""))
        else:
            try:
                self.table.put_endpoint(rulesmod.Endpoint.from_object(obj))
            except rulesmod.RuleError as exc:
                _log.warning("ruleendpoint not used", error=str(exc))
                self.table.remove_endpoint(meta.get("namespace", ""), meta.get("name", ""))
        await self._sync_subscriptions(before)

    async def _on_rule(
        self, type_: kubeapi.EventType, obj: dict[str, Any], old: dict[str, Any] | None
    ) -> None:
        meta = obj.get("metadata") or {}
        ns, name = meta.get("namespace", ""), meta.get("name", "")
        if type_ is kubeapi.EventType.MODIFIED and old is not None and old.get("spec") == obj.get("spec"):
            return  # a status change, typically our own counts
        before = self.table.subscriptions()
        try:
            if type_ is kubeapi.EventType.DELETED:
                self.table.remove_rule(ns, name)
                self.stats.forget(f"{ns}/{name}")
                _log.info("rule removed", rule=f"{ns}/{name}")
                return
            self.stats.seed(f"{ns}/{name}", obj.get("status"))
            try:
                self.table.put_rule(rulesmod.Rule.from_object(obj))
            except rulesmod.RuleError as exc:
                _log.warning("rule not used", error=str(exc))
                self.table.remove_rule(ns, name)
                return
            problem = self.table.problem(ns, name)
            if problem:
                _log.warning("rule inactive", rule=f"{ns}/{name}", reason=problem)
            else:
                _log.info("rule added", rule=f"{ns}/{name}")
        finally:
            await self._sync_subscriptions(before)

    async def _sync_subscriptions(self, before: set[tuple[str, str]]) -> None:
        """Ask nodes to (un)subscribe the topics eventbus -> rest rules gained or lost."""
        after = self.table.subscriptions()
        for node, topic in sorted(after - before):
            await self._subscription(node, topic, Operation.SUBSCRIBE)
        for node, topic in sorted(before - after):
            await self._subscription(node, topic, Operation.UNSUBSCRIBE)

    async def _subscription(self, node: str, topic: str, op: Operation) -> None:
        # Sent when the rule changes and again whenever the node connects: the edge keeps its
        # subscriptions in sub_topics, and a repeated subscribe is harmless.
        if self._bus is None or node not in self.nodes:
            return
        msg = Message.new(
            source=SOURCE_EVENTBUS,
            group=Group.USER,
            operation=op,
            resource=res.add_node_prefix(topic, node),
            now_ms=self._bus.now_ms(),
        )
        try:
            await self._bus.send(self.cloudhub_module, msg)
        except beehive.BeehiveError as exc:
            _log.warning("subscription not sent", node=node, topic=topic, error=str(exc))

    async def _write_status(self) -> None:
        """Write changed rule counts to ``Rule.status`` (merge patch), at most once per flush period."""
        while True:
            await self._stats_changed.wait()
            self._stats_changed = trio.Event()
            # Gathering for a period turns a burst of requests into one write per rule.
            await trio.sleep(limits.ROUTER_STATUS_FLUSH_S)
            for rule, status in self.stats.take_dirty():
                ns, _, name = rule.partition("/")
                try:
                    await self.api.patch(
                        RULES, ns, name, {"status": status},
                        content_type="application/merge-patch+json", subresource="status",
                    )  # fmt: skip
                except kubeapi.KubeError as exc:
                    if exc.not_found:
                        self.stats.forget(rule)
                        continue
                    _log.warning("rule status not written; retrying", rule=rule, error=str(exc))
                    self.stats.mark_dirty(rule)
                    self._stats_changed.set()

    # --- inbox ------------------------------------------------------------------------------------
    async def _on_message(self, msg: Message) -> None:
        op = msg.route.operation
        if op in (Operation.CONNECTED, Operation.DISCONNECTED):
            node, _ = res.strip_node_prefix(msg.route.resource + "/")
            if not node:
                return
            if op == Operation.DISCONNECTED:
                self.nodes.discard(node)
                return
            self.nodes.add(node)
            for sub_node, topic in sorted(self.table.subscriptions()):
                if sub_node == node:
                    await self._subscription(node, topic, Operation.SUBSCRIBE)
            return
        if msg.parent_msg_id:
            pending = self._pending.get(msg.parent_msg_id)
            if pending is None:
                _log.debug(
                    "reply without a waiting request", parent=msg.parent_msg_id, source=msg.route.source
                )
                return
            pending.reply = msg
            pending.done.set()
            return
        node, topic = res.strip_node_prefix(msg.route.resource)
        for route in self.table.bus_targets(node, topic):
            self._start_post(route, msg)

    def _start_post(self, route: rulesmod.BusRoute, msg: Message) -> None:
        """eventbus -> rest: POST the message's content to the rule's URL in the background (bounded)."""
        content = msg.content
        if isinstance(content, str):
            body = content.encode()
        elif isinstance(content, bytes):
            body = content
        else:
            body = json.dumps(content).encode()
        try:
            self._posts.acquire_on_behalf_of_nowait(msg.msg_id + route.rule)
        except trio.WouldBlock:
            _log.warning("eventbus message dropped: too many posts in flight", rule=route.rule)
            return
        assert self._nursery is not None
        self._nursery.start_soon(self._post, route, body, msg.msg_id + route.rule)

    async def _post(self, route: rulesmod.BusRoute, body: bytes, token: str) -> None:
        try:
            with trio.fail_after(self.rest_timeout):
                resp = await http1.call(
                    route.port, "POST", route.path, [], body, max_body=self.max_body, host=route.host
                )
            _log.info("eventbus message posted", rule=route.rule, status=resp.status_or_method)
            self._record(route.rule, "")
        except trio.TooSlowError:
            _log.warning("eventbus message post timed out", rule=route.rule)
            self._record(route.rule, f"POST to {route.host}:{route.port} timed out")
        except http1.HttpError as exc:
            _log.warning("eventbus message post failed", rule=route.rule, error=exc.message)
            self._record(route.rule, exc.message)
        finally:
            self._posts.release_on_behalf_of(token)

    # --- REST -------------------------------------------------------------------------------------
    async def _serve(self, stream: trio.SocketStream) -> None:
        async with stream, self._limiter:
            conn = http1.server_connection(limits.ROUTER_MAX_HEADER_BYTES)
            try:
                with trio.fail_after(limits.ROUTER_HEAD_TIMEOUT_S):
                    try:
                        request = await http1.read_request(conn, stream, self.max_body)
                    except http1.HttpError as exc:
                        await http1.write_response(
                            conn, stream, exc.status, exc.message.encode(), "text/plain"
                        )
                        if exc.status == 413:
                            await self._discard(stream)
                        return
                answer = await self.handle(
                    request.status_or_method, request.target, request.headers, request.body
                )
                with trio.fail_after(limits.ROUTER_HEAD_TIMEOUT_S):
                    await http1.write_response(
                        conn, stream, answer.status, answer.body, answer.content_type, answer.headers
                    )
            except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                _log.debug("router client dropped", error=repr(exc))

    @staticmethod
    async def _discard(stream: trio.SocketStream) -> None:
        """Read and drop a refused body for a moment, so a client still sending it reads our answer."""
        left = _DISCARD_MAX
        with trio.move_on_after(_DISCARD_TIMEOUT_S):
            while left > 0:
                data = await stream.receive_some(64 * 1024)
                if not data:
                    return
                left -= len(data)

    async def handle(self, method: str, target: str, headers: list[tuple[str, str]], body: bytes) -> Answer:
        """Route one REST request to its edge app and wait for the answer (at most ``rest_timeout``)."""
        match = self.table.match(target)
        if match is None:
            _log.info("no rule match", target=target[:200])
            return Answer(404, b"No rule match")
        answer = await self._forward(match, method, headers, body)
        self._record(match.rule, answer.failure)
        return answer

    def _record(self, rule: str, failure: str) -> None:
        self.stats.record(rule, error=failure, when=_now_rfc3339())
        self._stats_changed.set()

    async def _forward(
        self, match: rulesmod.Match, method: str, headers: list[tuple[str, str]], body: bytes
    ) -> Answer:
        method = method.upper()
        if method not in _METHODS:
            return _failed(405, f"method {method[:16]} is not supported")
        if match.node not in self.nodes:
            return _failed(500, f"cloudcore doesn't have session for node:{match.node}")
        assert self._bus is not None, "handle() runs only inside run()"
        if match.target_type is rulesmod.EndpointType.EVENTBUS:
            return await self._publish(match, body)
        grouped: dict[str, list[str]] = {}
        for name, value in headers:
            grouped.setdefault(name, []).append(value)
        try:
            resource = res.add_node_prefix(match.resource, match.node)
        except ValueError as exc:
            return _failed(400, f"bad request path: {exc}")
        msg = Message.new(
            source=SOURCE_SERVICEBUS,
            group=Group.USER,
            operation=method,
            resource=resource,
            content={
                "method": method,
                "url": match.path,
                "header": grouped,
                "body": base64.b64encode(body).decode("ascii"),
            },
            now_ms=self._bus.now_ms(),
        )
        pending = self._pending[msg.msg_id] = _Pending()
        try:
            await self._bus.send(self.cloudhub_module, msg)
            with trio.move_on_after(self.rest_timeout):
                await pending.done.wait()
        except beehive.BeehiveError as exc:
            return _failed(500, f"cannot reach cloudhub: {exc}")
        finally:
            del self._pending[msg.msg_id]
        if pending.reply is None:
            _log.warning("operation timeout", rule=match.rule, node=match.node, msg_id=msg.msg_id)
            return _failed(408, "wait to get response time out")
        return answer_from_reply(pending.reply)

    async def _publish(self, match: rulesmod.Match, body: bytes) -> Answer:
        """rest -> eventbus: hand the body to the node's EventBus as a publish; nothing is awaited back."""
        assert self._bus is not None
        try:
            text = body.decode("utf-8")
            resource = res.add_node_prefix(match.resource, match.node)
        except UnicodeDecodeError:
            return _failed(400, "the body of a message for the eventbus must be UTF-8 text")
        except ValueError as exc:
            return _failed(400, f"bad request path: {exc}")
        msg = Message.new(
            source=SOURCE_EVENTBUS,
            group=Group.USER,
            operation=Operation.PUBLISH,
            resource=resource,
            content=text,
            now_ms=self._bus.now_ms(),
        )
        try:
            await self._bus.send(self.cloudhub_module, msg)
        except beehive.BeehiveError as exc:
            return _failed(500, f"cannot reach cloudhub: {exc}")
        return Answer(200, b"message delivered")
