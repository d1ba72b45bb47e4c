"""MetaManager's trio component: cloud messages into edgecore.db and on to edged, edged's reads and writes.

Owns the routing rules of upstream MetaManager (wire notes section 6) and the offline outbox.
Its interface is explicit: one inbox channel in, four async callables out (to edged, to
DeviceTwin, to the cloud link, and a request/response call to the cloud); see
:class:`MetaManager`.

Invariants:

- A cloud insert/update/delete is acked (``Message.reply("OK")`` sent up) only after its write is
  durable. Messages waiting in the inbox are written as one group (at most ``group_commit_max``,
  one transaction, one fsync), then forwarded and acked in arrival order.
- Order: every message is handled in inbox order; pending writes are flushed before any read
  or edged write, so reads see every earlier write. Remote queries run concurrently (bounded)
  and answer edged when the cloud answers.
- Edge-to-cloud messages that cannot go out (offline, link error) wait in the store's outbox,
  newest status per object superseding older ones; while the outbox is not empty new ones queue
  behind it, so the cloud never sees an older status after a newer one. The outbox drains on
  ``cloud_connected``.

Failures: a database error turns into an ``error`` reply (nothing acked, the cloud resends); a
bad message is answered with an ``error`` naming the problem; a link error marks the message for
the outbox. Nothing here raises out of :meth:`MetaManager.run` except a failing output callable
to edged or DeviceTwin (those are in-process and must not fail).
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import trio

from kubeedge.edge.metamanager import resources as res
from kubeedge.edge.metamanager import store as st
from kubeedge.kit import limits, log
from kubeedge.proto.message import Header, Message, make_id

_log = log.get(__name__)

SendFn = Callable[[Message], Awaitable[None]]
"""Deliver one message (to edged, DeviceTwin or the cloud link); may block for backpressure."""
SendSyncFn = Callable[[Message, float], Awaitable[Message]]
"""Send a request to the cloud and wait at most the given seconds for the reply (``parent_msg_id`` = request id)."""

_T = TypeVar("_T")


class CloudUnavailable(Exception):
    """Raised by the link's callables when a message cannot be handed to the cloud (not connected, link broken)."""


_LINK_ERRORS: Final = (CloudUnavailable, trio.BrokenResourceError, trio.ClosedResourceError)


def wall_ms() -> int:
    """Unix milliseconds (the default clock)."""
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class MetaManagerConfig:
    """``modules.metaManager`` settings (upstream keys in the attribute docs) plus our group commit bound."""

    remote_query_timeout: float = 60.0
    """``remoteQueryTimeout`` seconds (upstream default 60)."""
    context_send_group: str = "hub"
    """``contextSendGroup`` (upstream ``hub``): the group the runtime sends cloud-bound messages to."""
    context_send_module: str = "websocket"
    """``contextSendModule`` (upstream ``websocket``, i.e. EdgeHub)."""
    group_commit_max: int = limits.META_GROUP_COMMIT_MAX
    """Most cloud messages per transaction; 1 commits (and fsyncs) every message on its own."""
    tombstone_ttl_s: float = 3600.0
    """Delete tombstones older than this are compacted. The cloud's SyncController reconciles every 5 s, so a
    late message older than an hour cannot still be in flight."""
    compact_interval_s: float = 600.0
    """How often tombstones are compacted."""

    def __post_init__(self) -> None:
        if not 0 < self.remote_query_timeout <= 3600:
            raise ValueError(
                f"metaManager.remoteQueryTimeout must be in (0, 3600], got {self.remote_query_timeout}"
            )
        if not 1 <= self.group_commit_max <= limits.META_GROUP_COMMIT_MAX:
            raise ValueError(
                f"group commit size must be 1..{limits.META_GROUP_COMMIT_MAX}, got {self.group_commit_max}"
            )
        if self.tombstone_ttl_s <= 0 or self.compact_interval_s <= 0:
            raise ValueError("tombstone TTL and compaction interval must be positive")


class _Target(enum.StrEnum):
    """Where a stored cloud message goes next."""

    EDGED = "edged"
    TWIN = "twin"
    NOWHERE = ""
    """Node updates are stored only."""


@dataclass(frozen=True, slots=True)
class _Pending:
    """A cloud message whose write is waiting for the group commit."""

    msg: Message
    write: st.Write | None
    """None: nothing to store (e.g. a device membership), only forward and ack."""
    forward_to: _Target


def _compact(content: Any) -> str:
    return json.dumps(content, separators=(",", ":"), ensure_ascii=False)


class MetaManager:
    """The MetaManager module.

    ``inbox`` carries every message addressed to MetaManager: cloud messages from EdgeHub,
    edged's requests, and EdgeHub's ``connect`` notices. Create it with a buffer (upstream
    beehive gives each module :data:`~kubeedge.kit.limits.MODULE_QUEUE` slots): messages
    waiting there are what group commit batches.

    Outputs: ``to_edged`` and ``to_twin`` deliver in-process; ``to_cloud`` hands a message to
    EdgeHub and raises :class:`CloudUnavailable` (or a trio channel error) when it cannot;
    ``send_sync`` sends a request to the cloud and returns the reply, raising
    :class:`CloudUnavailable` or :class:`trio.TooSlowError`.
    """

    def __init__(
        self,
        store: st.MetaStore,
        *,
        inbox: trio.MemoryReceiveChannel[Message],
        to_edged: SendFn,
        to_twin: SendFn,
        to_cloud: SendFn,
        send_sync: SendSyncFn,
        config: MetaManagerConfig | None = None,
        clock: Callable[[], int] = wall_ms,
    ) -> None:
        self.store = store
        self._inbox = inbox
        self._to_edged = to_edged
        self._to_twin = to_twin
        self._to_cloud = to_cloud
        self._send_sync = send_sync
        self.config = config or MetaManagerConfig()
        self._now = clock
        self._connected = False
        self._outbox_pending = True  # unknown until the first drain looks
        self._draining = False
        self._outbox_gen = 0  # bumped on every enqueue, so a drain never misses one queued while it looked
        # Taken by the inbox loop before a remote request is spawned, so at most this many tasks exist
        # and a slow cloud backpressures edged instead of piling up tasks.
        self._remote_slots = trio.Semaphore(limits.META_MAX_REMOTE_QUERIES)
        self._nursery: trio.Nursery | None = None
        self._unacked = 0  # cloud messages of the current batch not yet acked (or refused)
        self.stats: dict[str, int] = {"acked": 0, "stale": 0, "commits": 0, "outboxed": 0, "drained": 0}
        """Counters for metrics and tests."""

    @property
    def connected(self) -> bool:
        """Whether EdgeHub last reported ``cloud_connected``."""
        return self._connected

    @property
    def outbox_pending(self) -> bool:
        """Whether edge-to-cloud messages may be waiting in the outbox (new ones then queue behind them)."""
        return self._outbox_pending

    @property
    def pending_acks(self) -> int:
        """Messages waiting in the inbox plus cloud messages taken from it whose write and ack are not done.

        The inbox is shared with edged's requests, which are counted too: the channel cannot be looked into.
        """
        return self._inbox.statistics().current_buffer_used + self._unacked

    @property
    def draining(self) -> bool:
        """Whether the outbox is being sent to the cloud right now."""
        return self._draining

    # --- lifecycle -------------------------------------------------------------------------------------
    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Process the inbox until it is closed; then cancel remote queries in flight and return."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._compactor)
            task_status.started()
            while True:
                try:
                    first = await self._inbox.receive()
                except (trio.EndOfChannel, trio.ClosedResourceError):
                    break
                batch = [first]
                while len(batch) < self.config.group_commit_max:
                    try:
                        batch.append(self._inbox.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
                        break
                await self._handle_batch(batch)
            nursery.cancel_scope.cancel()

    async def _db(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        return await trio.to_thread.run_sync(lambda: fn(*args, **kwargs))

    async def _compactor(self) -> None:
        while True:
            await trio.sleep(self.config.compact_interval_s)
            cutoff = self._now() - int(self.config.tombstone_ttl_s * 1000)
            try:
                dropped = await self._db(self.store.compact_tombstones, older_than_ms=cutoff)
            except st.StoreError as e:
                _log.error("tombstone compaction failed", error=str(e))
            else:
                if dropped:
                    _log.info("tombstones compacted", count=dropped)

    # --- dispatch --------------------------------------------------------------------------------------
    async def _handle_batch(self, batch: Sequence[Message]) -> None:
        pending: list[_Pending] = []
        for msg in batch:
            src, op = msg.route.source, msg.route.operation
            if src == res.SOURCE_EDGEHUB and op == res.Op.CONNECT:
                await self._flush(pending)
                self._on_connection(msg)
            elif src == res.SOURCE_EDGED:
                await self._flush(pending)
                await self._from_edged(msg)
            elif msg.parent_msg_id:
                # A reply to a request belongs to whoever waits for it, not to the store.
                await self._flush(pending)
                target = self._to_twin if src == res.SOURCE_DEVICECONTROLLER else self._to_edged
                await target(msg)
            else:
                item = await self._cloud_item(msg)
                if item is not None:
                    pending.append(item)
                    self._unacked += 1
        await self._flush(pending)

    def _on_connection(self, msg: Message) -> None:
        if msg.content == res.CLOUD_CONNECTED:
            _log.info("cloud connected")
            self._connected = True
            self._start_drain()
        elif msg.content == res.CLOUD_DISCONNECTED:
            _log.info("cloud disconnected")
            self._connected = False
        else:
            _log.warning("unknown connection notice", content=str(msg.content)[:64])

    # --- from the cloud --------------------------------------------------------------------------------
    async def _cloud_item(self, msg: Message) -> _Pending | None:
        """Turn a cloud message into a pending write, or answer it at once with an error (bad input)."""
        op = msg.route.operation
        if op not in (res.Op.INSERT, res.Op.UPDATE, res.Op.DELETE):
            _log.warning("cloud message ignored", op=op, resource=msg.route.resource, msg_id=msg.msg_id)
            return None
        forward = _Target.TWIN if msg.route.source == res.SOURCE_DEVICECONTROLLER else _Target.EDGED
        try:
            resource = res.Resource.parse(msg.route.resource)
        except ValueError:
            if forward is _Target.TWIN:
                # Device messages such as ``membership`` carry no storable key: forward only.
                return _Pending(msg, None, forward)
            await self._error_to_cloud(msg, f"bad resource {msg.route.resource[:80]!r}")
            return None
        if resource.type == res.Kind.NODE and op != res.Op.DELETE:
            forward = _Target.NOWHERE
        try:
            rv = res.resource_version_of(msg.header.resource_version, msg.content)
            write: st.Write
            if op == res.Op.DELETE:
                uid = res.uid_of(msg.content) if resource.type == res.Kind.POD else ""
                also = (
                    (f"{resource.namespace}/{res.Kind.PODPATCH}/{resource.name}",)
                    if resource.name and (resource.type == res.Kind.POD)
                    else ()
                )
                write = st.Delete(resource.raw, rv, uid, also, res.meta_v2_ref(resource))
            else:
                if not resource.name:
                    raise ValueError(f"resource {resource.raw!r} has no name")
                write = st.Upsert(
                    resource.raw, resource.type, _compact(msg.content), rv, res.meta_v2_ref(resource)
                )
        except ValueError as e:
            await self._error_to_cloud(msg, str(e))
            return None
        return _Pending(msg, write, forward)

    async def _flush(self, pending: list[_Pending]) -> None:
        if not pending:
            return
        items = list(pending)
        pending.clear()
        try:
            await self._write_and_ack(items)
        finally:
            self._unacked -= len(items)

    async def _write_and_ack(self, items: list[_Pending]) -> None:
        writes = [p.write for p in items if p.write is not None]
        outcomes: list[st.Outcome] = []
        if writes:
            try:
                outcomes = await self._db(self.store.apply, writes, now_ms=self._now())
            except st.StoreError as e:
                _log.error("store write failed; nothing acked", error=str(e), messages=len(items))
                for p in items:
                    await self._error_to_cloud(p.msg, f"edge store: {e}")
                return
            self.stats["commits"] += 1
        it = iter(outcomes)
        for p in items:
            outcome = next(it) if p.write is not None else st.Outcome.APPLIED
            if outcome is st.Outcome.STALE:
                self.stats["stale"] += 1
            else:
                await self._forward(p)
            await self._ack(p.msg)

    async def _forward(self, p: _Pending) -> None:
        if p.forward_to is _Target.EDGED:
            await self._to_edged(p.msg)
        elif p.forward_to is _Target.TWIN:
            route = dataclasses.replace(p.msg.route, source=res.SOURCE_META)
            await self._to_twin(dataclasses.replace(p.msg, route=route))

    async def _ack(self, msg: Message) -> None:
        try:
            await self._to_cloud(msg.reply("OK", now_ms=self._now()))
        except _LINK_ERRORS:
            # The cloud resends unacked messages; our writes are idempotent.
            _log.debug("ack not sent, link down", msg_id=msg.msg_id)
            return
        self.stats["acked"] += 1

    async def _error_to_cloud(self, msg: Message, text: str) -> None:
        _log.warning(
            "cloud message rejected", msg_id=msg.msg_id, resource=msg.route.resource[:120], error=text
        )
        with contextlib.suppress(*_LINK_ERRORS):
            await self._to_cloud(self._reply(msg, text, operation=res.Op.ERROR))

    def _reply(self, msg: Message, content: Any, *, operation: str = res.Op.RESPONSE) -> Message:
        reply = msg.reply(content, now_ms=self._now(), operation=operation)
        return dataclasses.replace(
            reply, route=dataclasses.replace(reply.route, source=res.SOURCE_METAMANAGER)
        )

    # --- from edged ------------------------------------------------------------------------------------
    async def _from_edged(self, msg: Message) -> None:
        op = msg.route.operation
        try:
            resource = res.Resource.parse(msg.route.resource)
        except ValueError as e:
            await self._to_edged(self._reply(msg, str(e), operation=res.Op.ERROR))
            return
        kind = resource.type
        if kind == res.Kind.EVENT:
            # Events bypass the store and are not worth keeping offline.
            if self._connected:
                try:
                    await self._to_cloud(msg)
                except _LINK_ERRORS:
                    _log.debug("event dropped, link down", resource=resource.raw)
            return
        if op == res.Op.QUERY:
            if kind in res.REMOTE_QUERY_KINDS and resource.name and self._connected:
                await self._spawn_remote(msg, resource, fallback_to_db=True)
            else:
                await self._answer_from_db(msg, resource)
        elif (op == res.Op.INSERT and kind in res.REMOTE_INSERT_KINDS) or (
            op == res.Op.UPDATE and kind == res.Kind.LEASE
        ):
            if self._connected:
                await self._spawn_remote(msg, resource, fallback_to_db=False)
            else:
                await self._to_edged(self._reply(msg, "not connected", operation=res.Op.ERROR))
        elif op in (res.Op.UPDATE, res.Op.PATCH, res.Op.INSERT):
            await self._edged_write(msg, resource)
        elif op == res.Op.DELETE:
            if kind == res.Kind.POD and resource.name:
                also = (f"{resource.namespace}/{res.Kind.PODPATCH}/{resource.name}",)
                write = st.Delete(resource.raw, "", res.uid_of(msg.content), also, res.meta_v2_ref(resource))
                if not await self._store_for_edged(msg, write):
                    return
            await self._send_up(msg, supersede_key=None)
        else:
            await self._to_edged(self._reply(msg, f"unsupported operation {op!r}", operation=res.Op.ERROR))

    async def _store_for_edged(self, msg: Message, write: st.Write) -> bool:
        try:
            await self._db(self.store.apply, [write], now_ms=self._now())
        except st.StoreError as e:
            _log.error("store write failed", resource=msg.route.resource, error=str(e))
            await self._to_edged(self._reply(msg, f"edge store: {e}", operation=res.Op.ERROR))
            return False
        return True

    async def _edged_write(self, msg: Message, resource: res.Resource) -> None:
        try:
            write = st.Upsert(resource.raw, resource.type, _compact(msg.content))
        except ValueError as e:
            await self._to_edged(self._reply(msg, str(e), operation=res.Op.ERROR))
            return
        if not await self._store_for_edged(msg, write):
            return
        key = f"{msg.route.operation}:{resource.raw}" if resource.type in res.STATUS_KINDS else None
        sent = await self._send_up(msg, supersede_key=key)
        if msg.route.operation == res.Op.PATCH:
            # The cloud's answer to a patch goes straight to edged's waiting call (same msg id);
            # only a patch that could not be sent is answered here.
            if not sent and not self._connected:
                await self._to_edged(self._reply(msg, "connection lost", operation=res.Op.ERROR))
        else:
            await self._to_edged(self._reply(msg, "OK"))

    async def _answer_from_db(self, msg: Message, resource: res.Resource) -> None:
        try:
            if resource.name:
                value = await self._db(self.store.get, resource.raw)
                values = [value] if value is not None else []
            else:
                values = await self._db(self.store.list_type, resource.namespace, resource.type)
        except st.StoreError as e:
            await self._to_edged(self._reply(msg, f"edge store: {e}", operation=res.Op.ERROR))
            return
        await self._to_edged(self._reply(msg, values or None))

    # --- remote requests -------------------------------------------------------------------------------
    async def _spawn_remote(self, msg: Message, resource: res.Resource, *, fallback_to_db: bool) -> None:
        assert self._nursery is not None
        await self._remote_slots.acquire()
        self._nursery.start_soon(self._remote, msg, resource, fallback_to_db)

    async def _remote(self, msg: Message, resource: res.Resource, fallback_to_db: bool) -> None:
        try:
            await self._remote_request(msg, resource, fallback_to_db)
        finally:
            self._remote_slots.release()

    async def _remote_request(self, msg: Message, resource: res.Resource, fallback_to_db: bool) -> None:
        request = dataclasses.replace(
            msg, header=dataclasses.replace(msg.header, msg_id=make_id(), sync=True, parent_msg_id="")
        )
        timeout = self.config.remote_query_timeout
        try:
            with trio.fail_after(timeout):
                answer = await self._send_sync(request, timeout)
        except (*_LINK_ERRORS, trio.TooSlowError) as e:
            _log.info("remote request failed", resource=resource.raw, error=type(e).__name__)
            if fallback_to_db:
                await self._answer_from_db(msg, resource)
            else:
                await self._to_edged(
                    self._reply(msg, f"remote {msg.route.operation} failed", operation=res.Op.ERROR)
                )
            return
        decoded = res.decode_answer(answer.route.operation, answer.content)
        if (
            not decoded.error
            and msg.route.operation == res.Op.QUERY
            and resource.name
            and decoded.object is not None
        ):
            await self._store_answer(resource, decoded.object)
        # Edged gets the cloud's answer as its reply: same content, parent = the original id.
        header = Header(
            msg_id=answer.msg_id,
            timestamp=answer.header.timestamp,
            parent_msg_id=msg.msg_id,
            resource_version=answer.header.resource_version,
        )
        await self._to_edged(Message(header, answer.route, answer.content))
        await self._ack(answer)

    async def _store_answer(self, resource: res.Resource, obj: Any) -> None:
        try:
            rv = res.resource_version_of("", obj)
            write = st.Upsert(resource.raw, resource.type, _compact(obj), rv, res.meta_v2_ref(resource))
            await self._db(self.store.apply, [write], now_ms=self._now())
        except (ValueError, st.StoreError) as e:
            _log.warning("remote answer not stored", resource=resource.raw, error=str(e))

    # --- edge to cloud, with the outbox ----------------------------------------------------------------
    async def _send_up(self, msg: Message, *, supersede_key: str | None) -> bool:
        """Send ``msg`` to the cloud now if possible, else queue it; True when it was handed to the link."""
        if self._connected and not self._outbox_pending:
            try:
                await self._to_cloud(msg)
                return True
            except _LINK_ERRORS:
                _log.info("send to cloud failed, queued", resource=msg.route.resource)
        await self._enqueue(msg, supersede_key)
        if self._connected:
            self._start_drain()
        return False

    async def _enqueue(self, msg: Message, supersede_key: str | None) -> None:
        try:
            dropped = await self._db(
                self.store.outbox_put, msg, supersede_key=supersede_key, now_ms=self._now()
            )
        except (ValueError, st.StoreError) as e:
            _log.error("outbox write failed, message lost", resource=msg.route.resource, error=str(e))
            return
        self._outbox_pending = True
        self._outbox_gen += 1
        self.stats["outboxed"] += 1
        if dropped:
            _log.warning("outbox full, oldest messages dropped", count=dropped)

    def _start_drain(self) -> None:
        if not self._draining and self._nursery is not None:
            self._draining = True
            self._nursery.start_soon(self._drain)

    async def _drain(self) -> None:
        try:
            while self._connected:
                gen = self._outbox_gen
                try:
                    entries = await self._db(self.store.outbox_peek, 64)
                except st.StoreError as e:
                    _log.error("outbox read failed", error=str(e))
                    return
                if not entries:
                    if gen == self._outbox_gen:
                        self._outbox_pending = False
                        return
                    continue
                for entry in entries:
                    if not self.connected:  # may have changed while we awaited
                        return
                    try:
                        await self._to_cloud(entry.message)
                    except _LINK_ERRORS:
                        return
                    await self._db(self.store.outbox_remove, entry.seq)
                    self.stats["drained"] += 1
        finally:
            self._draining = False
