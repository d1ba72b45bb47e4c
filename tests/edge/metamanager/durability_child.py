"""Child process for the durability test: MetaManager storing a stream of cloud messages, printing each ack.

Run as ``python -m tests.edge.metamanager.durability_child DB COUNT``. Every ack MetaManager sends
to the cloud is printed as ``acked <resource>`` (flushed) the moment it is sent; the parent kills
this process with SIGKILL at an arbitrary point and checks that every printed ack is in DB.
"""

from __future__ import annotations

import math
import sys

import trio

from kubeedge.edge.metamanager import manager as mm
from kubeedge.edge.metamanager import store as st
from kubeedge.kit import limits
from kubeedge.proto.message import Message


async def main(path: str, count: int) -> None:
    store = st.MetaStore.open(path)
    inbox_send, inbox_recv = trio.open_memory_channel[Message](limits.MODULE_QUEUE)
    # The parent never reads edged's side; an unbounded buffer keeps it out of the way (count bounds it).
    edged_send, _edged_recv = trio.open_memory_channel[Message](math.inf)

    async def to_cloud(msg: Message) -> None:
        sys.stdout.write(f"acked {msg.route.resource}\n")
        sys.stdout.flush()

    async def send_sync(msg: Message, timeout: float) -> Message:
        raise mm.CloudUnavailable("no cloud in this test")

    manager = mm.MetaManager(
        store,
        inbox=inbox_recv,
        to_edged=edged_send.send,
        to_twin=edged_send.send,
        to_cloud=to_cloud,
        send_sync=send_sync,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(manager.run)
        for i in range(count):
            content = {
                "kind": "ConfigMap",
                "metadata": {"name": f"c{i}", "resourceVersion": str(i + 1)},
                "data": {"i": str(i)},
            }
            await inbox_send.send(
                Message.new(
                    source="edgecontroller",
                    group="resource",
                    operation="insert",
                    resource=f"default/configmap/c{i}",
                    content=content,
                    now_ms=i,
                    resource_version=str(i + 1),
                )
            )
        await inbox_send.aclose()
    store.close()


if __name__ == "__main__":
    trio.run(main, sys.argv[1], int(sys.argv[2]))
