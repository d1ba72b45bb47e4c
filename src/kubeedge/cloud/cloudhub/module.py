"""The ``cloudhub`` beehive module: :class:`~kubeedge.cloud.cloudhub.hub.CloudHub` on the cloud's bus.

Owns the routing between the hub and the controllers, as upstream CloudHub does:

- downstream: every message sent to ``cloudhub`` carries a cloud-internal resource ``node/<node>/...``; it is
  queued for that node's session (dropped when the node has no session: SyncController re-sends on connect);
- upstream: messages from edges go to ``devicecontroller`` when their source is ``twin``, to ``router``
  when their group is ``user`` (ServiceBus answers), else to ``edgecontroller``; ``connected``/
  ``disconnected`` session events go to every controller present and the router;
- acknowledgements: each ack-mode message an edge acknowledged becomes an internal ``acked`` message for
  ``synccontroller``, which records it in ObjectSync.

Invariant: the hub's callbacks never block; acks are queued in memory and forwarded by one task, in order.
"""

from __future__ import annotations

import collections
import ssl
from collections.abc import Callable, Sequence
from typing import Final

import trio

from kubeedge.cloud.cloudhub.hub import CloudHub, HubSettings
from kubeedge.kit import beehive, log
from kubeedge.proto import resource as resources
from kubeedge.proto.message import Message
from kubeedge.proto.vocab import CloudModule, Group, Operation

_log = log.get(__name__)

OP_ACKED: Final = "acked"
"""Cloud-internal operation telling SyncController an edge acknowledged an object (never on the wire)."""


class CloudHubModule:
    """Module ``cloudhub`` (group ``hub``) around :class:`CloudHub`."""

    name = CloudModule.CLOUDHUB.value
    group = "hub"

    def __init__(
        self,
        ssl_context: ssl.SSLContext,
        settings: HubSettings,
        present: Sequence[str],
        *,
        acked_version: Callable[[str, str], int | None] | None = None,
    ) -> None:
        self._ssl = ssl_context
        self._settings = settings
        self._present = frozenset(present)
        self._acked_version = acked_version
        self._acks: collections.deque[tuple[str, Message]] = collections.deque()
        self._acked = trio.Event()
        self.hub: CloudHub | None = None

    def _on_acked(self, node: str, msg: Message) -> None:
        # Called synchronously by the delivery core: queue and wake the forwarding task.
        self._acks.append((node, msg))
        self._acked.set()

    async def run(
        self, ctx: beehive.Context, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve edges; route downstream, upstream and acknowledgement traffic."""
        up_send, up_recv = trio.open_memory_channel[Message](0)
        hub = CloudHub(
            self._ssl, up_send, self._settings, on_acked=self._on_acked, acked_version=self._acked_version
        )
        async with trio.open_nursery() as nursery:
            self.hub = await nursery.start(hub.run)
            nursery.start_soon(self._upstream, ctx, up_recv)
            nursery.start_soon(self._forward_acks, ctx)
            task_status.started()
            async for msg in ctx:
                node, _ = resources.strip_node_prefix(msg.route.resource)
                if not node:
                    _log.warning("downstream message without a node", resource=msg.route.resource[:120])
                    continue
                hub.send_to_node(node, msg)

    async def _to(self, ctx: beehive.Context, module: str, msg: Message) -> None:
        if module in self._present:
            await ctx.send(module, msg)

    async def _upstream(self, ctx: beehive.Context, up: trio.MemoryReceiveChannel[Message]) -> None:
        async for msg in up:
            if msg.route.operation in (Operation.CONNECTED, Operation.DISCONNECTED):
                for module in (
                    CloudModule.EDGECONTROLLER,
                    CloudModule.SYNCCONTROLLER,
                    CloudModule.DEVICECONTROLLER,
                    CloudModule.ROUTER,
                ):
                    await self._to(ctx, module.value, msg)
            elif msg.route.source == "twin":
                await self._to(ctx, CloudModule.DEVICECONTROLLER.value, msg)
            elif msg.route.group == Group.USER:
                # ServiceBus answers and other user traffic belong to the Router (dropped if it is off).
                await self._to(ctx, CloudModule.ROUTER.value, msg)
            else:
                await self._to(ctx, CloudModule.EDGECONTROLLER.value, msg)

    async def _forward_acks(self, ctx: beehive.Context) -> None:
        while True:
            await self._acked.wait()
            self._acked = trio.Event()
            while self._acks:
                node, sent = self._acks.popleft()
                if CloudModule.SYNCCONTROLLER.value not in self._present:
                    continue
                await ctx.send(
                    CloudModule.SYNCCONTROLLER.value, acked_message(node, sent, now_ms=ctx.now_ms())
                )


def acked_message(node: str, sent: Message, *, now_ms: int) -> Message:
    """The internal ``acked`` message for SyncController about ``sent``, acknowledged by ``node``."""
    obj = sent.content if isinstance(sent.content, dict) else {}
    meta = obj.get("metadata") or {}
    return Message.new(
        source=CloudModule.CLOUDHUB.value,
        group=CloudModule.SYNCCONTROLLER.value,
        operation=OP_ACKED,
        resource=sent.route.resource,
        resource_version=sent.header.resource_version,
        content={
            "node": node,
            "objectUID": meta.get("uid", ""),
            "objectKind": obj.get("kind", ""),
            "objectAPIVersion": obj.get("apiVersion", ""),
            "objectName": meta.get("name", ""),
            "objectNamespace": meta.get("namespace", ""),
            "deleted": sent.route.operation == Operation.DELETE,
        },
        now_ms=now_ms,
    )
