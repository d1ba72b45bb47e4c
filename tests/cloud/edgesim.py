"""A stand-in ``cloudhub`` module and scripted edge peers that speak the wire protocol.

:class:`HubStandIn` is a real beehive module named ``cloudhub``: it records every
message the controllers send it, strips the ``node/<node>/`` prefix, encodes the
message with the wire codec and hands the frame to the node's :class:`EdgePeer`;
frames from an edge are decoded, prefixed and passed to ``edgecontroller``; an
edge ``response`` to an ack-class message becomes the internal ``acked`` message
to ``synccontroller`` (the contract CloudHub implements). Session events go to
both controllers.

:class:`EdgePeer` applies object messages to its store (a dict, optionally
persisted in SQLite so it survives a cloudcore restart), acknowledges them after
the write, answers nothing else, and records every version it was sent so tests
can check that no older version ever arrived after a newer one was applied.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import trio

from kubeedge.cloud.cloudhub import delivery
from kubeedge.cloud.synccontroller.controller import OP_ACKED
from kubeedge.kit import limits
from kubeedge.kit.beehive import Context, InboxFullError
from kubeedge.proto import codec
from kubeedge.proto import resource as resources
from kubeedge.proto.message import Message
from kubeedge.proto.vocab import CloudModule, Group, Operation


class HubStandIn:
    """The ``cloudhub`` module, minus the network: frames go to in-process edge peers."""

    name = CloudModule.CLOUDHUB.value
    group = "hub"

    def __init__(self) -> None:
        self.received: list[Message] = []
        self.peers: dict[str, EdgePeer] = {}
        self.ctx: Context | None = None
        self._pending: dict[str, Message] = {}
        self._nursery: trio.Nursery | None = None
        self.on_receive: Any = None

    async def run(
        self, ctx: Context, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        self.ctx = ctx
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            task_status.started()
            async for msg in ctx:
                self.received.append(msg)
                node, wire = resources.strip_node_prefix(msg.route.resource)
                peer = self.peers.get(node)
                if peer is None or not peer.online:
                    continue
                if self.on_receive is not None:
                    self.on_receive(node, msg)
                out = dataclasses.replace(msg, route=dataclasses.replace(msg.route, resource=wire))
                if delivery.classify(msg) is delivery.Mode.ACK and msg.route.operation != Operation.RESPONSE:
                    self._pending[msg.msg_id] = msg
                # Like CloudHub's send_to_node: queue for the node and never block the module's loop.
                peer.frames.append(codec.encode(out, max_size=limits.MAX_FRAME_BYTES))
                peer.wake.set()

    async def connect(self, peer: EdgePeer) -> None:
        """The edge's session comes up: announce it to both controllers."""
        self.peers[peer.node] = peer
        peer.hub = self
        peer.online = True
        if not peer.pumping:
            peer.pumping = True
            assert self._nursery is not None
            self._nursery.start_soon(peer.pump)
        await self._session(peer.node, Operation.CONNECTED)

    async def disconnect(self, node: str) -> None:
        """The edge's session ends."""
        self.peers[node].online = False
        await self._session(node, Operation.DISCONNECTED)

    async def _session(self, node: str, op: Operation) -> None:
        assert self.ctx is not None
        for module in (CloudModule.EDGECONTROLLER, CloudModule.SYNCCONTROLLER):
            await self.ctx.send(module, Message.new(
                source=CloudModule.CLOUDHUB, group=Group.RESOURCE, operation=op, resource=f"node/{node}",
                content={"event_type": op.value, "timestamp": int(time.time()), "client_id": node},
                now_ms=self.ctx.now_ms()))  # fmt: skip

    async def from_edge(self, node: str, frame: bytes) -> None:
        """One frame from an edge."""
        assert self.ctx is not None
        msg = codec.decode(frame, max_size=limits.MAX_FRAME_BYTES)
        if msg.route.operation == Operation.RESPONSE and msg.parent_msg_id in self._pending:
            sent = self._pending.pop(msg.parent_msg_id)
            meta = (sent.content or {}).get("metadata") or {}
            await self.ctx.send(CloudModule.SYNCCONTROLLER, Message.new(
                source=CloudModule.CLOUDHUB, group=CloudModule.SYNCCONTROLLER, operation=OP_ACKED,
                resource=sent.route.resource, resource_version=sent.header.resource_version,
                content={"node": node, "objectUID": meta.get("uid", ""), "objectKind": sent.content.get("kind", ""),
                         "objectAPIVersion": sent.content.get("apiVersion", ""), "objectName": meta.get("name", ""),
                         "objectNamespace": meta.get("namespace", ""),
                         "deleted": sent.route.operation == Operation.DELETE},
                now_ms=self.ctx.now_ms()))  # fmt: skip
            return
        prefixed = resources.add_node_prefix(msg.route.resource, node)
        upstream = dataclasses.replace(msg, route=dataclasses.replace(msg.route, resource=prefixed))
        # CloudHub's reader blocks on its upstream channel while the controller is busy (the edge's socket
        # then backs up); the stand-in does the same by retrying a send that timed out on a full inbox.
        while True:
            try:
                await self.ctx.send(CloudModule.EDGECONTROLLER, upstream)
                return
            except InboxFullError:
                continue


class EdgePeer:
    """A scripted edge node: applies and acks object messages, can send requests and await replies."""

    def __init__(self, node: str, *, db: Path | None = None, auto_ack: bool = True) -> None:
        self.node = node
        self.hub: HubStandIn | None = None
        self.online = False
        self.auto_ack = auto_ack
        self.store: dict[str, dict[str, Any]] = {}
        self.versions: dict[str, int] = {}
        self.log: list[tuple[str, str, int]] = []
        self.stale: list[tuple[str, str, int, int]] = []
        self.replies: dict[str, Message] = {}
        self.frames: collections.deque[bytes] = collections.deque()
        self.wake = trio.Event()
        self.pumping = False
        self._db = sqlite3.connect(db) if db is not None else None
        if self._db is not None:
            self._db.execute("CREATE TABLE IF NOT EXISTS obj (key TEXT PRIMARY KEY, rv INTEGER, body TEXT)")
            self._db.execute("CREATE TABLE IF NOT EXISTS applied (key TEXT, op TEXT, rv INTEGER)")
            for key, rv, body in self._db.execute("SELECT key, rv, body FROM obj"):
                self.versions[key] = rv
                if body:
                    self.store[key] = json.loads(body)

    async def receive(self, frame: bytes) -> None:
        """One frame from the cloud."""
        await self.handle(codec.decode(frame, max_size=limits.MAX_FRAME_BYTES))

    async def pump(self) -> None:
        """Handle queued frames in order, forever (the edge's own task, like its websocket reader)."""
        while True:
            await self.wake.wait()
            self.wake = trio.Event()
            while self.frames:
                await self.receive(self.frames.popleft())

    async def handle(self, msg: Message) -> None:
        op = msg.route.operation
        if msg.parent_msg_id:
            self.replies[msg.parent_msg_id] = msg
            return
        if op in (Operation.INSERT, Operation.UPDATE, Operation.DELETE) and isinstance(msg.content, dict):
            self.apply(msg)
            if self.auto_ack and delivery.classify(msg) is delivery.Mode.ACK:
                await self.send(msg.reply("OK", now_ms=int(time.time() * 1000)))
            meta = msg.content.get("metadata") or {}
            if msg.content.get("kind") == "Pod" and meta.get("deletionTimestamp") and op != Operation.DELETE:
                # What edged does once the containers are gone: confirm with grace 0 and a UID precondition.
                await self.send(Message.new(
                    source="edged", group="meta", operation=Operation.DELETE, resource=msg.route.resource,
                    content={"gracePeriodSeconds": 0, "preconditions": {"uid": meta.get("uid")}},
                    now_ms=int(time.time() * 1000)))  # fmt: skip

    def apply(self, msg: Message) -> None:
        key = msg.route.resource
        rv = delivery.parse_rv(msg.header.resource_version) or 0
        held = self.versions.get(key, -1)
        self.log.append((msg.route.operation, key, rv))
        if msg.route.operation == Operation.DELETE:
            self.store.pop(key, None)
            self.versions[key] = max(held, rv)
            body = None
        else:
            if rv < held:
                self.stale.append((msg.route.operation, key, rv, held))
                return
            self.store[key] = msg.content
            self.versions[key] = rv
            body = json.dumps(msg.content)
        if self._db is not None:
            with self._db:
                self._db.execute(
                    "INSERT OR REPLACE INTO obj VALUES (?, ?, ?)", (key, self.versions[key], body)
                )
                self._db.execute("INSERT INTO applied VALUES (?, ?, ?)", (key, msg.route.operation, rv))

    async def send(self, msg: Message) -> None:
        assert self.hub is not None
        await self.hub.from_edge(self.node, codec.encode(msg, max_size=limits.MAX_FRAME_BYTES))

    async def request(
        self, op: str, resource: str, content: Any, *, source: str = "edged", group: str = "meta"
    ) -> Message:
        """Send a request and wait for the reply (callers bound it with trio.fail_after)."""
        msg = Message.new(source=source, group=group, operation=op, resource=resource, content=content,
                          now_ms=int(time.time() * 1000))  # fmt: skip
        await self.send(msg)
        while msg.msg_id not in self.replies:
            await trio.sleep(0.005)
        return self.replies.pop(msg.msg_id)

    def has(self, resource: str) -> bool:
        return resource in self.store
