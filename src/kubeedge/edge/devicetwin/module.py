"""The ``twin`` module (group ``twin``): mapper requests over MQTT, cloud device updates, reports to the cloud.

Inputs (its inbox):

- from EventBus: ``$hw/events/device/<ns>/<n>/{twin/update,twin/get,state/update}`` and
  ``$hw/events/node/<node>/membership/get``; ``route.resource`` is the topic (raw or upstream's URL-safe
  base64), ``content`` the payload (bytes, text or already-decoded JSON);
- from the cloud (through EdgeHub/MetaManager): ``membership`` update (added/removed devices),
  ``<ns>/device/<n>`` insert/update/delete (desired values become expected), replies whose
  ``parent_msg_id`` confirms a report;
- from EdgeHub: ``node/connection`` connect with ``cloud_connected``/``cloud_disconnected``.

Outputs: results, deltas, documents and membership updates published through module ``eventbus``
(op ``publish``, resource = topic, content = JSON text); reports to group ``hub`` (source ``twin``, group
``resource``, op ``update``): ``device/<ns>/<n>/twin/edge_updated`` (object) and
``device/<ns>/<n>/state/update`` (JSON text, as upstream).

Group commit: twin and state updates and confirmations are merged against an in-memory copy of the
twins and queued to one committer task, which writes everything queued in one transaction and only then
publishes the results and sends the reports, in order. Reads and cloud changes first wait for the
queue to drain (a barrier), so they never see or overwrite an uncommitted state.

Invariants: every request with a result topic gets a result, an error result with ``code``/``reason``
when refused; reports are durable (see :mod:`.store`) and resent every ``resend_interval`` seconds while
the cloud is connected, and at once on reconnect, until a message with that ``parent_msg_id`` arrives.
Reads (twin get, membership get) come from SQLite and work offline. A failing publish or send is logged
and does not stop the module; a database failure raises (the supervisor restarts the module).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from kubeedge.edge.devicetwin import store as storemod
from kubeedge.edge.devicetwin import topics, twins
from kubeedge.edge.devicetwin.twins import Origin, TwinError
from kubeedge.kit import beehive, limits, log
from kubeedge.proto import codec, vocab
from kubeedge.proto.message import Message, make_id

_log = log.get(__name__)

_RESULT_SUFFIX = {
    topics.Kind.TWIN_UPDATE: "twin/update/result",
    topics.Kind.TWIN_GET: "twin/get/result",
    topics.Kind.STATE_UPDATE: "state/update/result",
    topics.Kind.MEMBERSHIP_GET: "membership/get/result",
}

# Upstream DeviceModel property types -> twin metadata.type.
_MODEL_TYPES = {"int": "int", "float": "float", "double": "float", "boolean": "boolean", "string": "string"}


def _payload(content: Any) -> Any:
    if isinstance(content, bytes | bytearray | str):
        return codec.loads_bounded(content, max_size=limits.TWIN_MAX_PAYLOAD)
    return content


class DeviceTwin:
    """Beehive module ``twin``. ``data_source`` is edgecore.db; ``node_name`` names membership topics."""

    name = vocab.EdgeModule.TWIN.value
    group = vocab.EdgeGroup.TWIN.value

    def __init__(
        self,
        *,
        data_source: str | Path,
        node_name: str,
        eventbus_module: str = vocab.EdgeModule.EVENTBUS.value,
        hub_group: str = vocab.EdgeGroup.HUB.value,
        resend_interval: float = limits.TWIN_RESEND_INTERVAL,
    ) -> None:
        self.data_source = Path(data_source)
        self.node_name = node_name
        self.eventbus_module = eventbus_module
        self.hub_group = hub_group
        self.resend_interval = resend_interval
        self.connected = False
        """Whether EdgeHub last said the cloud is reachable."""
        self.store: storemod.DeviceStore | None = None
        self._kick = trio.Event()
        self._twins: dict[str, dict[str, twins.Twin]] = {}
        self._commits: trio.MemorySendChannel[_Commit] | None = None

    async def run(
        self, ctx: beehive.Context, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Open the store, start the resend loop, serve the inbox."""
        store = await trio.to_thread.run_sync(storemod.DeviceStore.open, self.data_source)
        self.store = store
        self._twins = {}  # a restarted run trusts only the database
        # The buffer is the group-commit window: requests queue here while the previous batch commits.
        commits_in, commits_out = trio.open_memory_channel[_Commit](limits.TWIN_COMMIT_BATCH)
        self._commits = commits_in
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._resend_loop, ctx, store)
                nursery.start_soon(self._committer, ctx, store, commits_out)
                task_status.started()
                async for msg in ctx:
                    await self.handle(ctx, store, msg)
        finally:
            self._commits = None
            self.store = None
            store.close()

    # --- group commit ---------------------------------------------------------------------------------
    async def _commit(self, commit: _Commit) -> None:
        """Queue writes and what follows them; the committer applies them in order."""
        assert self._commits is not None, "the twin module is not running"
        await self._commits.send(commit)

    async def _barrier(self) -> None:
        """Wait until everything queued before is committed and its results published."""
        done = trio.Event()
        await self._commit(_Commit(done=done))
        await done.wait()

    async def _committer(
        self, ctx: beehive.Bus, store: storemod.DeviceStore, commits: trio.MemoryReceiveChannel[_Commit]
    ) -> None:
        async for first in commits:
            batch_commits = [first]
            while len(batch_commits) < limits.TWIN_COMMIT_BATCH:
                try:
                    batch_commits.append(commits.receive_nowait())
                except trio.WouldBlock:
                    break
            batch = storemod.Batch()
            for c in batch_commits:
                batch.twins += c.batch.twins
                batch.states += c.batch.states
                batch.confirms += c.batch.confirms
            if batch:
                await trio.to_thread.run_sync(store.apply, batch)
            reports: list[storemod.Report] = []
            for c in batch_commits:
                for topic, payload in c.publish:
                    await self._publish(ctx, topic, payload)
                reports += c.reports
                if c.done is not None:
                    c.done.set()
            await self._send_reports(ctx, store, reports, record=False)

    async def _cached_twins(self, store: storemod.DeviceStore, device_id: str) -> dict[str, twins.Twin]:
        current = self._twins.get(device_id)
        if current is None:
            current = await trio.to_thread.run_sync(store.twins, device_id)
            self._twins[device_id] = current
        return current

    # --- dispatch -------------------------------------------------------------------------------------
    async def handle(self, ctx: beehive.Bus, store: storemod.DeviceStore, msg: Message) -> None:
        """Handle one inbox message (public for tests and benchmarks driving the core directly)."""
        route = msg.route
        if route.resource == vocab.CONNECT_RESOURCE and route.operation == vocab.Operation.CONNECT:
            self.connected = msg.content == vocab.CLOUD_CONNECTED
            _log.info("cloud link", connected=self.connected)
            if self.connected:
                self._kick.set()
            return
        if msg.parent_msg_id and route.operation == vocab.Operation.RESPONSE and route.source != "bus":
            await self._commit(_Commit(storemod.Batch(confirms=[msg.parent_msg_id])))
            return
        if route.resource.startswith("$hw/") or route.source == "bus":
            await self._from_mapper(ctx, store, msg)
            return
        if route.resource == "membership":
            await self._membership(ctx, store, msg)
            return
        parts = route.resource.split("/")
        if len(parts) == 3 and parts[1] == vocab.ResourceType.DEVICE:
            await self._device_object(ctx, store, msg, parts[0], parts[2])
            return
        _log.debug("message ignored", source=route.source, operation=route.operation, resource=route.resource)

    # --- mapper side ----------------------------------------------------------------------------------
    async def _publish(self, ctx: beehive.Bus, topic: str, payload: Mapping[str, Any]) -> None:
        msg = Message.new(
            source=self.name,
            group="",
            operation=vocab.Operation.PUBLISH,
            resource=topic,
            content=json.dumps(payload, separators=(",", ":")),
            now_ms=ctx.now_ms(),
        )
        try:
            await ctx.send(self.eventbus_module, msg)
        except beehive.BeehiveError as e:
            _log.warning("publish failed", topic=topic, error=str(e))

    async def _from_mapper(self, ctx: beehive.Bus, store: storemod.DeviceStore, msg: Message) -> None:
        try:
            topic_text = topics.decode_resource(msg.route.resource)
        except ValueError as e:
            _log.warning("bad eventbus resource", error=str(e))
            return
        topic = topics.parse(topic_text)
        if topic is None:
            _log.debug("topic ignored", topic=topic_text)
            return
        result_topic = (
            topics.node_topic(topic.node, _RESULT_SUFFIX[topic.kind])
            if topic.kind is topics.Kind.MEMBERSHIP_GET
            else topics.device_topic(topic.device_id, _RESULT_SUFFIX[topic.kind])
        )
        now = ctx.now_ms()
        eid = ""
        try:
            try:
                payload = _payload(msg.content)
            except (ValueError, TypeError) as e:
                raise TwinError(twins.BAD_REQUEST, f"payload is not valid JSON: {e}") from None
            if not isinstance(payload, Mapping):
                raise TwinError(twins.BAD_REQUEST, "payload must be a JSON object")
            eid = twins.event_id(payload)
            if topic.kind is not topics.Kind.TWIN_UPDATE:
                await self._barrier()  # answers and state reads see every update queued before them
            if topic.kind is topics.Kind.MEMBERSHIP_GET:
                devices = await trio.to_thread.run_sync(store.devices)
                await self._publish(ctx, result_topic, self._membership_list(eid, now, devices))
                return
            device = await trio.to_thread.run_sync(store.device, topic.device_id)
            if device is None:
                raise TwinError(twins.NOT_FOUND, f"device {topic.device_id!r} is not a member of this node")
            if topic.kind is topics.Kind.TWIN_GET:
                current = await self._cached_twins(store, topic.device_id)
                await self._publish(ctx, result_topic, twins.update_result(eid, now, current))
            elif topic.kind is topics.Kind.TWIN_UPDATE:
                await self._twin_update(
                    ctx, store, topic.device_id, eid, payload, now, result_topic, Origin.EDGE
                )
            else:
                await self._state_update(ctx, store, device, eid, payload, now, result_topic)
        except TwinError as e:
            _log.info("request refused", topic=topic_text, code=e.code, reason=e.reason)
            await self._publish(ctx, result_topic, twins.error_result(eid, now, e))

    async def _twin_update(
        self,
        ctx: beehive.Bus,
        store: storemod.DeviceStore,
        device_id: str,
        eid: str,
        payload: Mapping[str, Any],
        now: int,
        result_topic: str | None,
        origin: Origin,
    ) -> None:
        update = twins.parse_update(payload.get("twin"))
        current = await self._cached_twins(store, device_id)
        result = twins.merge(current, update, origin=origin, now_ms=now)
        if len(result.twins) > limits.TWIN_MAX_PROPERTIES:
            raise TwinError(
                twins.BAD_REQUEST, f"device {device_id!r}: more than {limits.TWIN_MAX_PROPERTIES} twins"
            )
        commit = _Commit()
        report = None
        if result.changed and origin is Origin.EDGE:
            changed = {n: after for n, (_, after) in result.changed.items() if after is not None}
            report = storemod.Report(
                msg_id=make_id(),
                resource=f"device/{device_id}/twin/edge_updated",
                operation=vocab.Operation.UPDATE,
                content={"event_id": eid or make_id(), "timestamp": now, "twin": twins.twins_json(changed)},
                created_ms=now,
                # Sent right after the commit when connected: no second commit to record it.
                sent_ms=now if self.connected else 0,
            )
            commit.reports.append(report)
        if result.changed:
            self._twins[device_id] = result.twins
            changes = {n: after for n, (_, after) in result.changed.items()}
            commit.batch.twins.append((device_id, changes, report))
        if result_topic is not None:
            requested = {n: result.twins[n] for n in update if n in result.twins}
            commit.publish.append((result_topic, twins.update_result(eid, now, requested)))
        if result.changed:
            commit.publish.append(
                (
                    topics.device_topic(device_id, "twin/update/document"),
                    twins.document_payload(eid, now, result),
                )
            )
            delta = twins.delta_payload(eid, now, result.twins)
            if delta is not None:
                commit.publish.append((topics.device_topic(device_id, "twin/update/delta"), delta))
        await self._commit(commit)

    async def _state_update(
        self,
        ctx: beehive.Bus,
        store: storemod.DeviceStore,
        device: storemod.Device,
        eid: str,
        payload: Mapping[str, Any],
        now: int,
        result_topic: str,
    ) -> None:
        state = twins.check_state(payload.get("state"))
        last_online = twins.rfc3339(now) if state in twins.ONLINE_STATES else None
        body = {
            "event_id": eid,
            "timestamp": now,
            "device": {
                "name": device.name,
                "state": state,
                "lastOnlineTime": last_online if last_online is not None else device.last_online,
            },
        }
        report = storemod.Report(
            msg_id=make_id(),
            resource=f"device/{device.id}/state/update",
            operation=vocab.Operation.UPDATE,
            # Upstream sends this content as a JSON string, not an object.
            content=json.dumps(body, separators=(",", ":")),
            created_ms=now,
            sent_ms=now if self.connected else 0,
        )
        await self._commit(
            _Commit(
                storemod.Batch(states=[(device.id, state, last_online, report)]),
                publish=[(result_topic, body)],
                reports=[report],
            )
        )

    @staticmethod
    def _membership_list(eid: str, now: int, devices: list[storemod.Device]) -> dict[str, Any]:
        return {
            "event_id": eid,
            "timestamp": now,
            "devices": [
                {
                    "id": d.id,
                    "name": d.name,
                    "description": d.description,
                    "state": d.state,
                    "last_online": d.last_online,
                    "attributes": {},
                }
                for d in devices
            ],
        }

    # --- cloud side -----------------------------------------------------------------------------------
    async def _membership(self, ctx: beehive.Bus, store: storemod.DeviceStore, msg: Message) -> None:
        try:
            body = _payload(msg.content)
        except (ValueError, TypeError) as e:
            _log.warning("bad membership message", error=str(e))
            return
        if not isinstance(body, Mapping):
            _log.warning("bad membership message: not an object")
            return
        await self._barrier()
        added, removed = [], []
        for entry in (body.get("added_devices") or [])[: limits.TWIN_MAX_DEVICES]:
            device = _member(entry)
            if device is None:
                _log.warning("membership: bad added device ignored", entry=str(entry)[:200])
                continue
            if await trio.to_thread.run_sync(store.put_device, device):
                added.append({"id": device.id, "name": device.name, "description": device.description})
            else:
                _log.warning("membership: device table full", device=device.id)
            twin = entry.get("twin") if isinstance(entry, Mapping) else None
            if isinstance(twin, Mapping) and twin:
                try:
                    await self._twin_update(
                        ctx, store, device.id, "", {"twin": twin}, ctx.now_ms(), None, Origin.CLOUD
                    )
                except TwinError as e:
                    _log.warning("membership: bad twin for device", device=device.id, reason=e.reason)
        for entry in (body.get("removed_devices") or [])[: limits.TWIN_MAX_DEVICES]:
            device = _member(entry)
            if device is not None:
                self._twins.pop(device.id, None)
            if device is not None and await trio.to_thread.run_sync(store.remove_device, device.id):
                removed.append({"id": device.id, "name": device.name, "description": device.description})
        _log.info("membership updated", added=len(added), removed=len(removed))
        if added or removed:
            await self._publish(
                ctx,
                topics.node_topic(self.node_name, "membership/updated"),
                {
                    "event_id": twins.event_id(body),
                    "timestamp": ctx.now_ms(),
                    "added_devices": added,
                    "removed_devices": removed,
                },
            )

    async def _device_object(
        self, ctx: beehive.Bus, store: storemod.DeviceStore, msg: Message, namespace: str, name: str
    ) -> None:
        device_id = f"{namespace}/{name}"
        await self._barrier()
        if msg.route.operation == vocab.Operation.DELETE:
            self._twins.pop(device_id, None)
            if await trio.to_thread.run_sync(store.remove_device, device_id):
                await self._publish(
                    ctx,
                    topics.node_topic(self.node_name, "membership/updated"),
                    {
                        "event_id": "",
                        "timestamp": ctx.now_ms(),
                        "added_devices": [],
                        "removed_devices": [{"id": device_id, "name": name, "description": ""}],
                    },
                )
            return
        if msg.route.operation not in {vocab.Operation.INSERT, vocab.Operation.UPDATE}:
            return
        try:
            obj = _payload(msg.content)
        except (ValueError, TypeError) as e:
            _log.warning("bad device object", device=device_id, error=str(e))
            return
        if not isinstance(obj, Mapping):
            return
        spec = obj.get("spec") if isinstance(obj.get("spec"), Mapping) else {}
        assert isinstance(spec, Mapping)
        await trio.to_thread.run_sync(store.put_device, storemod.Device(device_id, name))
        desired: dict[str, Any] = {}
        props = spec.get("properties")
        for prop in props if isinstance(props, list) else []:
            if not isinstance(prop, Mapping) or not isinstance(prop.get("desired"), Mapping):
                continue
            want = prop["desired"]
            value = want.get("value")
            if value is None or value == "":
                continue
            meta = want.get("metadata") if isinstance(want.get("metadata"), Mapping) else {}
            assert isinstance(meta, Mapping)
            kind = str(meta.get("type", "string")).lower()
            desired[str(prop.get("name"))] = {
                "expected": {"value": str(value)},
                "metadata": {"type": _MODEL_TYPES.get(kind, kind)},
            }
        if not desired:
            return
        try:
            await self._twin_update(
                ctx, store, device_id, "", {"twin": desired}, ctx.now_ms(), None, Origin.CLOUD
            )
        except TwinError as e:
            _log.warning("device desired values refused", device=device_id, reason=e.reason)

    # --- reports to the cloud ---------------------------------------------------------------------------
    async def _send_reports(
        self,
        ctx: beehive.Bus,
        store: storemod.DeviceStore,
        reports: list[storemod.Report],
        *,
        record: bool = True,
    ) -> None:
        """Send ``reports`` to the hub while connected; ``record=False`` when their ``sent_ms`` is already stored
        (a fresh report whose send fails is then retried after the resend interval, or at once on reconnect)."""
        if not self.connected or not reports:
            return
        sent = []
        for r in reports:
            msg = Message.new(
                source=self.name,
                group=vocab.Group.RESOURCE,
                operation=r.operation,
                resource=r.resource,
                content=r.content,
                now_ms=ctx.now_ms(),
                msg_id=r.msg_id,
            )
            try:
                await ctx.send_to_group(self.hub_group, msg)
            except beehive.BeehiveError as e:
                _log.warning("report not sent; will resend", resource=r.resource, error=str(e))
                break
            sent.append(r.msg_id)
        if record:
            await trio.to_thread.run_sync(store.mark_sent, sent, ctx.now_ms())

    async def _resend_loop(self, ctx: beehive.Bus, store: storemod.DeviceStore) -> None:
        # Polls at a quarter of the interval so a report is resent at most 1.25 intervals after its last send.
        period = max(self.resend_interval / 4, 0.01)
        while True:
            with trio.move_on_after(period):
                await self._kick.wait()
            kicked = self._kick.is_set()
            self._kick = trio.Event()
            if not self.connected:
                continue
            now = ctx.now_ms()
            cutoff = now + 1 if kicked else now - int(self.resend_interval * 1000)
            # One pass over the bounded outbox: what this pass sends gets a fresh sent_ms.
            due = await trio.to_thread.run_sync(
                functools.partial(store.pending, sent_before_ms=cutoff, limit=limits.TWIN_OUTBOX_MAX)
            )
            if due:
                _log.info("resending unconfirmed reports", count=len(due))
                await self._send_reports(ctx, store, due)


@dataclass
class _Commit:
    """One request's writes, and what to do once they are durable (publish results, send reports)."""

    batch: storemod.Batch = field(default_factory=storemod.Batch)
    publish: list[tuple[str, Mapping[str, Any]]] = field(default_factory=list)
    reports: list[storemod.Report] = field(default_factory=list)
    done: trio.Event | None = None


def _member(entry: Any) -> storemod.Device | None:
    if not isinstance(entry, Mapping):
        return None
    device_id = entry.get("id")
    if not isinstance(device_id, str) or not 0 < len(device_id) <= 512 or device_id.count("/") != 1:
        return None
    ns, _, name = device_id.partition("/")
    if not ns or not name:
        return None
    desc = entry.get("description")
    shown = entry.get("name")
    return storemod.Device(
        device_id,
        shown if isinstance(shown, str) and shown else name,
        desc[:1024] if isinstance(desc, str) else "",
    )
