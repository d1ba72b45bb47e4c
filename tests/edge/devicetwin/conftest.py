"""Fixtures for DeviceTwin: a real edgecore.db, the real broker, a paho mapper, the twin module in a beehive.

The edge runs ``twin`` with the real EventBus module (mqttMode 2, on the real mosquitto) and :class:`tests.devicekit.EdgeLink` in place of EdgeHub, which records what
the twin sends upstream and lets the test say whether the cloud is reachable.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from kubeedge.edge.devicetwin.module import DeviceTwin
from kubeedge.kit import beehive
from tests.conftest import Broker
from tests.devicekit import EdgeLink, LinkState, Mapper, eventbus, wait_subscribed

NODE = "edge-1"
_ids = itertools.count()


@dataclass
class Edge:
    hive: beehive.Beehive
    twin: DeviceTwin
    link: LinkState
    edge_link: EdgeLink


@asynccontextmanager
async def running_edge(
    db: Path, broker: Broker, *, up: bool = True, resend_interval: float = 60.0
) -> AsyncIterator[Edge]:
    """The twin module, an EventBus stand-in and a recording EdgeHub stand-in, running until exit."""
    state = LinkState(NODE, up=up)
    twin = DeviceTwin(data_source=db, node_name=NODE, resend_interval=resend_interval)
    link = EdgeLink(state, cloud_module="")
    bus = eventbus(broker.host, broker.port, f"twin-{next(_ids)}")
    hive = beehive.Beehive([twin, bus, link], shutdown_timeout=2)
    async with trio.open_nursery() as nursery:
        await nursery.start(hive.run)
        await wait_subscribed(bus)
        try:
            yield Edge(hive, twin, state, link)
        finally:
            hive.shutdown()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "edgecore.db"


@pytest.fixture
def mapper(mosquitto: Broker) -> Iterator[Mapper]:
    m = Mapper(mosquitto.host, mosquitto.port, client_id=f"mapper-{next(_ids)}")
    try:
        yield m
    finally:
        m.close()
