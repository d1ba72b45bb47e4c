"""Fixtures for MetaManager: a real edgecore.db in tmp_path and a running MetaManager wired to real trio channels.

The :class:`Link` stands in for EdgeHub through MetaManager's real interface (channels and
async callables): everything MetaManager sends up lands in ``cloud``; requests made with
``send_sync`` wait until the test answers them through :meth:`Link.answer`, correlated by
``parent_msg_id`` exactly as EdgeHub does.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio

from kubeedge.edge.metamanager import manager as mm
from kubeedge.edge.metamanager import store as st
from kubeedge.kit import limits
from kubeedge.proto.message import Message

CLOCK_MS = 1_700_000_000_000


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "edgecore.db"


@pytest.fixture
def store(db_path: Path) -> Iterator[st.MetaStore]:
    s = st.MetaStore.open(db_path)
    try:
        yield s
    finally:
        s.close()


@dataclass
class Link:
    """The cloud side of MetaManager's outputs, over real trio channels."""

    up_send: trio.MemorySendChannel[Message]
    cloud: trio.MemoryReceiveChannel[Message]
    connected: bool = False
    waiting: dict[str, trio.MemorySendChannel[Message]] = field(default_factory=dict)

    async def to_cloud(self, msg: Message) -> None:
        if not self.connected:
            raise mm.CloudUnavailable("not connected")
        await self.up_send.send(msg)

    async def send_sync(self, msg: Message, timeout: float) -> Message:
        if not self.connected:
            raise mm.CloudUnavailable("not connected")
        send, recv = trio.open_memory_channel[Message](1)
        self.waiting[msg.msg_id] = send
        try:
            await self.up_send.send(msg)
            with trio.fail_after(timeout):
                return await recv.receive()
        finally:
            del self.waiting[msg.msg_id]

    async def answer(self, reply: Message) -> None:
        await self.waiting[reply.parent_msg_id].send(reply)


@dataclass
class Running:
    """A running MetaManager and the far ends of its channels."""

    manager: mm.MetaManager
    inbox: trio.MemorySendChannel[Message]
    edged: trio.MemoryReceiveChannel[Message]
    twin: trio.MemoryReceiveChannel[Message]
    link: Link

    async def recv_cloud(self) -> Message:
        return await self.link.cloud.receive()


@asynccontextmanager
async def run_manager(store: st.MetaStore, **config: Any) -> AsyncIterator[Running]:
    """Start MetaManager on ``store`` in a nursery; closing the inbox at exit stops it."""
    inbox_send, inbox_recv = trio.open_memory_channel[Message](limits.MODULE_QUEUE)
    edged_send, edged_recv = trio.open_memory_channel[Message](100)
    twin_send, twin_recv = trio.open_memory_channel[Message](100)
    up_send, up_recv = trio.open_memory_channel[Message](1000)
    link = Link(up_send, up_recv)
    manager = mm.MetaManager(
        store,
        inbox=inbox_recv,
        to_edged=edged_send.send,
        to_twin=twin_send.send,
        to_cloud=link.to_cloud,
        send_sync=link.send_sync,
        config=mm.MetaManagerConfig(**config),
        clock=lambda: CLOCK_MS,
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(manager.run)
        yield Running(manager, inbox_send, edged_recv, twin_recv, link)
        await inbox_send.aclose()
