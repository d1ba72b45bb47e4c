"""A cloudcore process for the restart test: SyncController, EdgeController, the cloudhub stand-in, and edges.

Usage: ``python -m tests.cloud.cloudcore_proc KUBECONFIG EDGE_DB_DIR NODE...``. Each edge keeps its objects
in ``EDGE_DB_DIR/<node>.db`` (committed before it acks), so its state survives the process being killed;
the cloud side keeps nothing but ObjectSyncs in the API server. Prints ``ready`` once every edge is connected.
"""

from __future__ import annotations

import sys
from pathlib import Path

import trio

from kubeedge.cloud import kubeapi
from kubeedge.cloud.edgecontroller.controller import EdgeController
from kubeedge.cloud.synccontroller.controller import SyncController, SyncStore
from kubeedge.kit.beehive import Beehive
from tests.cloud.edgesim import EdgePeer, HubStandIn


async def main(kubeconfig: str, db_dir: Path, nodes: list[str]) -> None:
    api = kubeapi.KubeAPI.from_kubeconfig(kubeconfig, qps=1000, burst=1000)
    store = SyncStore(api)
    edge = EdgeController(api, store, cloudcore_id="restart-test")
    sync = SyncController(store, edge, period=0.3)
    hub = HubStandIn()
    hive = Beehive([sync, edge, hub])
    async with trio.open_nursery() as nursery:
        await nursery.start(hive.run)
        for node in nodes:
            await hub.connect(EdgePeer(node, db=db_dir / f"{node}.db"))
        print("ready", flush=True)


if __name__ == "__main__":
    trio.run(main, sys.argv[1], Path(sys.argv[2]), sys.argv[3:])
