"""The controllers behind the real CloudHub (mTLS websockets) with a real EdgeHub as the edge.

CloudHub on the link branch is a class, not yet a beehive module; :class:`LinkHub` is the thin module
around it that the contract describes: downstream messages go to ``send_to_node``, upstream messages
and session events go to the controllers, acknowledgements become ``acked`` messages for SyncController.
"""

from __future__ import annotations

import collections
import json
import time

import trio

from kubeedge.cloud import kubeapi
from kubeedge.cloud.cloudhub.hub import CloudHub, HubSettings
from kubeedge.cloud.edgecontroller.controller import EdgeController
from kubeedge.cloud.synccontroller.controller import OP_ACKED, SyncController, SyncStore
from kubeedge.cloud.synccontroller.index import SyncIndex
from kubeedge.kit.beehive import Beehive, Context
from kubeedge.proto import resource as resources
from kubeedge.proto.message import Message
from kubeedge.proto.vocab import CloudModule, Operation
from tests.apiserver.conftest import Cluster
from tests.cloud.conftest import client_api, eventually, node_object, pod_object
from tests.link.conftest import PKI, make_edge
from tests.link.conftest import pki as pki


class LinkHub:
    """Module ``cloudhub`` around the link's CloudHub."""

    name = CloudModule.CLOUDHUB.value
    group = "hub"

    def __init__(self, pki: PKI, index: SyncIndex) -> None:
        self.pki = pki
        self.index = index
        self.hub: CloudHub | None = None
        self._acks: collections.deque[tuple[str, Message]] = collections.deque()
        self._acked = trio.Event()

    def _on_acked(self, node: str, msg: Message) -> None:
        # Called synchronously by the delivery core: queue and wake the forwarding task.
        self._acks.append((node, msg))
        self._acked.set()

    async def run(
        self, ctx: Context, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        up_send, up_recv = trio.open_memory_channel[Message](0)
        hub = CloudHub(self.pki.server_context(), up_send, HubSettings(address="127.0.0.1", port=0),
                       on_acked=self._on_acked, acked_version=self.index.acked)  # fmt: skip
        async with trio.open_nursery() as nursery:
            self.hub = await nursery.start(hub.run)
            nursery.start_soon(self._upstream, ctx, up_recv)
            nursery.start_soon(self._forward_acks, ctx)
            task_status.started()
            async for msg in ctx:
                node, _ = resources.strip_node_prefix(msg.route.resource)
                hub.send_to_node(node, msg)

    async def _upstream(self, ctx: Context, up: trio.MemoryReceiveChannel[Message]) -> None:
        async for msg in up:
            if msg.route.operation in (Operation.CONNECTED, Operation.DISCONNECTED):
                await ctx.send(CloudModule.EDGECONTROLLER, msg)
                await ctx.send(CloudModule.SYNCCONTROLLER, msg)
            else:
                await ctx.send(CloudModule.EDGECONTROLLER, msg)

    async def _forward_acks(self, ctx: Context) -> None:
        while True:
            await self._acked.wait()
            self._acked = trio.Event()
            while self._acks:
                node, sent = self._acks.popleft()
                obj = sent.content if isinstance(sent.content, dict) else {}
                meta = obj.get("metadata") or {}
                await ctx.send(CloudModule.SYNCCONTROLLER, Message.new(
                    source=CloudModule.CLOUDHUB, group=CloudModule.SYNCCONTROLLER, operation=OP_ACKED,
                    resource=sent.route.resource, resource_version=sent.header.resource_version,
                    content={"node": node, "objectUID": meta.get("uid", ""), "objectKind": obj.get("kind", ""),
                             "objectAPIVersion": obj.get("apiVersion", ""), "objectName": meta.get("name", ""),
                             "objectNamespace": meta.get("namespace", ""),
                             "deleted": sent.route.operation == Operation.DELETE},
                    now_ms=ctx.now_ms()))  # fmt: skip


async def test_pod_over_the_real_link_is_acked_and_status_flows_back(cluster: Cluster, pki: PKI) -> None:
    api = client_api(cluster)
    store = SyncStore(api)
    edge_ctl = EdgeController(api, store, cloudcore_id="link-test")
    sync = SyncController(store, edge_ctl, period=0.3)
    link = LinkHub(pki, store.index)
    hive = Beehive([sync, edge_ctl, link], shutdown_timeout=2)
    try:
        with trio.fail_after(40):
            await api.create(kubeapi.NODES, "", node_object("edge-a"))
            async with trio.open_nursery() as nursery:
                await nursery.start(hive.run)
                assert link.hub is not None
                edge = make_edge(pki, f"127.0.0.1:{link.hub.port}", "edge-a")
                await nursery.start(edge.run)
                await eventually(lambda: edge_ctl.liveness.is_connected("edge-a"), what="session up")
                await api.create(kubeapi.PODS, "default", pod_object("web", "edge-a"))
                while True:
                    msg = await edge.receive()
                    if msg.route.resource == "default/pod/web":
                        break
                assert msg.route.operation == "insert"
                assert msg.content["metadata"]["name"] == "web"
                await edge.durably_handled(msg)
                uid = msg.content["metadata"]["uid"]
                await eventually(lambda: store.index.acked("edge-a", uid) == int(msg.header.resource_version),
                                 what="ack recorded")  # fmt: skip
                patch = Message.new(source="edged", group="meta", operation="patch", resource="default/podpatch/web",
                                    content=json.dumps({"status": {"phase": "Running"}}),
                                    now_ms=int(time.time() * 1000))  # fmt: skip
                await edge.send(patch)
                while True:
                    reply = await edge.receive()
                    if reply.parent_msg_id == patch.msg_id:
                        break
                assert reply.content["Err"] is None
                assert (await api.get(kubeapi.PODS, "default", "web"))["status"]["phase"] == "Running"
                hive.shutdown(hard=True)
                nursery.cancel_scope.cancel()
    finally:
        api.close()
