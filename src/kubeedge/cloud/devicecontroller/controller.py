"""The ``devicecontroller`` module: Device/DeviceModel watches to edge nodes, edge reports to Device status.

Downstream: two watcher threads (``kubernetes`` client list+watch of ``devices.kubeedge.io/v1beta1``
``devices`` and ``devicemodels``, the same code against the embedded server or a real cluster) feed one
trio task. A Device bound to a node (``spec.nodeName``) reaches it as ``membership`` (op update, group
``twin``: ``added_devices``/``removed_devices``) and as ``node/<node>/<ns>/device/<n>`` insert/update/
delete (group ``resource``, resourceVersion header); its model goes along as
``node/<node>/<ns>/devicemodel/<m>``. Status-only changes (our own writes) are not sent again.

Upstream: CloudHub hands messages with source ``twin`` here (resource ``node/<node>/device/<ns>/<n>/
twin/edge_updated`` or ``.../state/update``). They are applied to ``Device.status`` (see :mod:`.status`
for why not the v1.23 DeviceStatus CR) by one status worker that merges queued reports per device into
one merge-patch of the status subresource, then each is answered (source ``devicecontroller``, group
``twin``, resource ``node/<node>/twin``, op ``response``, content ``"OK"``, parent = report id) so the
edge stops resending. A report for a Device that no longer exists is answered too; a failed write is
not, and the edge resends it.

Failures: API errors in a watcher are logged and the watch restarts after a jittered backoff (410 Gone
re-lists). The module never stops on a bad message; it is logged and dropped.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

import trio

from kubeedge.cloud.devicecontroller import status as st
from kubeedge.kit import beehive, limits, log
from kubeedge.kit.backoff import Backoff
from kubeedge.proto import resource as res
from kubeedge.proto import vocab
from kubeedge.proto.message import Message

_log = log.get(__name__)

GROUP: Final = "devices.kubeedge.io"
VERSION: Final = "v1beta1"
DEVICES: Final = "devices"
MODELS: Final = "devicemodels"

ApiClientFactory = Callable[[], Any]
"""Returns a new ``kubernetes.client.ApiClient`` (one per thread that talks to the API)."""


@dataclass(frozen=True, slots=True)
class _Event:
    plural: str
    type: str
    obj: dict[str, Any]


@dataclass
class _Job:
    node: str
    namespace: str
    name: str
    msgs: list[Message] = field(default_factory=list)
    twins: list[st.TwinReport] = field(default_factory=list)
    state: st.StateReport | None = None


def _key(obj: dict[str, Any]) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace", "default")), str(meta.get("name", "")))


class DeviceController:
    """Beehive module ``devicecontroller``. ``api_client`` makes kubernetes ``ApiClient`` objects."""

    name = vocab.CloudModule.DEVICECONTROLLER.value
    group = vocab.CloudGroup.DEVICECONTROLLER.value

    def __init__(
        self,
        api_client: ApiClientFactory,
        *,
        cloudhub_module: str = vocab.CloudModule.CLOUDHUB.value,
        status_queue: int = 1024,
        watch_timeout_s: int = limits.DEVICECONTROLLER_WATCH_TIMEOUT_S,
    ) -> None:
        self.api_client = api_client
        self.cloudhub_module = cloudhub_module
        self.status_queue = status_queue
        self.watch_timeout_s = watch_timeout_s
        self.devices: dict[tuple[str, str], dict[str, Any]] = {}
        """Last seen Device objects by (namespace, name)."""
        self.models: dict[tuple[str, str], dict[str, Any]] = {}
        """Last seen DeviceModel objects by (namespace, name)."""
        self._status: dict[tuple[str, str], dict[str, Any]] = {}
        self._stop = threading.Event()

    # --- shell ------------------------------------------------------------------------------------------
    async def run(
        self, ctx: beehive.Context, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Start the watchers and the status worker, then serve upstream messages."""
        self._stop.clear()
        token = trio.lowlevel.current_trio_token()
        events_in, events_out = trio.open_memory_channel[_Event](0)
        # Upstream's updateDeviceStatus buffer (1024): the edge keeps sending while a write is in flight.
        jobs_in, jobs_out = trio.open_memory_channel[_Job](self.status_queue)
        synced = [trio.Event(), trio.Event()]
        status_client = await trio.to_thread.run_sync(self.api_client)
        try:
            async with trio.open_nursery() as nursery:
                for i, plural in enumerate((MODELS, DEVICES)):
                    nursery.start_soon(self._watch_thread, plural, events_in.clone(), token, synced[i])
                nursery.start_soon(self._downstream, ctx, events_out)
                nursery.start_soon(self._status_worker, ctx, jobs_out, status_client)
                for ev in synced:
                    await ev.wait()
                task_status.started()
                async for msg in ctx:
                    await self._upstream(msg, jobs_in)
        finally:
            self._stop.set()
            status_client.close()

    async def _watch_thread(
        self,
        plural: str,
        out: trio.MemorySendChannel[_Event],
        token: trio.lowlevel.TrioToken,
        synced: trio.Event,
    ) -> None:
        # The thread blocks in HTTP reads the trio side cannot interrupt: it is abandoned on cancel and
        # exits at its next event or watch timeout (self._stop), its sends failing once we are gone.
        def mark_synced() -> None:
            trio.from_thread.run_sync(synced.set, trio_token=token)

        async with out:
            await trio.to_thread.run_sync(
                self._watch_loop, plural, out, token, mark_synced, abandon_on_cancel=True
            )

    def _watch_loop(
        self,
        plural: str,
        out: trio.MemorySendChannel[_Event],
        token: trio.lowlevel.TrioToken,
        mark_synced: Callable[[], None],
    ) -> None:
        from kubernetes import client, watch
        from kubernetes.client.exceptions import ApiException

        api: Any = client.CustomObjectsApi(self.api_client())
        watch_mod: Any = watch
        backoff = Backoff(0.5, 30.0, random.Random())
        first = True
        while not self._stop.is_set():
            try:
                listing = api.list_cluster_custom_object(GROUP, VERSION, plural)
                rv = listing["metadata"].get("resourceVersion", "")
                items = listing.get("items") or []
                trio.from_thread.run(out.send, _Event(plural, "SYNC", {"items": items}), trio_token=token)
                if first:
                    mark_synced()
                    first = False
                backoff.reset()
                while not self._stop.is_set():
                    w = watch_mod.Watch()
                    for ev in w.stream(
                        api.list_cluster_custom_object,
                        GROUP,
                        VERSION,
                        plural,
                        resource_version=rv,
                        timeout_seconds=self.watch_timeout_s,
                        allow_watch_bookmarks=True,
                    ):
                        if self._stop.is_set():
                            w.stop()
                            return
                        obj = ev["object"]
                        rv = (obj.get("metadata") or {}).get("resourceVersion", rv)
                        if ev["type"] in {"ADDED", "MODIFIED", "DELETED"}:
                            trio.from_thread.run(out.send, _Event(plural, ev["type"], obj), trio_token=token)
                    rv = w.resource_version or rv
            except (
                trio.RunFinishedError,
                trio.Cancelled,
                trio.BrokenResourceError,
                trio.ClosedResourceError,
            ):
                return
            except ApiException as e:
                if self._stop.is_set():
                    return
                if e.status != 410:
                    _log.warning(
                        "device watch failed; retrying", plural=plural, status=e.status, reason=e.reason
                    )
                    self._stop.wait(backoff.next_delay())
            except Exception as e:  # a watcher must outlive any client or connection failure
                if self._stop.is_set():
                    return
                _log.warning("device watch failed; retrying", plural=plural, error=repr(e))
                self._stop.wait(backoff.next_delay())

    # --- downstream -----------------------------------------------------------------------------------
    async def _downstream(self, ctx: beehive.Bus, events: trio.MemoryReceiveChannel[_Event]) -> None:
        async for ev in events:
            try:
                if ev.type == "SYNC":
                    for obj in ev.obj["items"]:
                        await self._on_event(ctx, _Event(ev.plural, "ADDED", obj))
                else:
                    await self._on_event(ctx, ev)
            except beehive.BeehiveError as e:
                _log.warning("device message not sent", error=str(e))

    async def _send(
        self, ctx: beehive.Bus, node: str, resource: str, op: str, group: str, content: Any, rv: str = ""
    ) -> None:
        msg = Message.new(
            source=self.name,
            group=group,
            operation=op,
            resource=res.add_node_prefix(resource, node),
            content=content,
            now_ms=ctx.now_ms(),
            resource_version=rv,
        )
        await ctx.send(self.cloudhub_module, msg)

    async def _membership(
        self, ctx: beehive.Bus, node: str, added: list[dict[str, Any]], removed: list[dict[str, Any]]
    ) -> None:
        now = ctx.now_ms()
        content = {
            "event_id": "",
            "timestamp": now,
            "added_devices": added or None,
            "removed_devices": removed or None,
        }
        await self._send(ctx, node, "membership", vocab.Operation.UPDATE, vocab.Group.TWIN, content)

    async def _on_event(self, ctx: beehive.Bus, ev: _Event) -> None:
        key = _key(ev.obj)
        ns, name = key
        rv = str((ev.obj.get("metadata") or {}).get("resourceVersion", ""))
        if ev.plural == MODELS:
            prev_model = self.models.get(key)
            if ev.type == "DELETED":
                self.models.pop(key, None)
            elif prev_model is not None and prev_model.get("spec") == ev.obj.get("spec"):
                return
            else:
                self.models[key] = ev.obj
            op = vocab.Operation.DELETE if ev.type == "DELETED" else vocab.Operation.UPDATE
            for node in sorted(
                {st.node_of(d) for k, d in self.devices.items() if k[0] == ns and st.model_of(d) == name}
                - {""}
            ):
                await self._send(ctx, node, f"{ns}/devicemodel/{name}", op, vocab.Group.RESOURCE, ev.obj, rv)
            return
        prev = self.devices.get(key)
        old_node = st.node_of(prev) if prev is not None else ""
        if ev.type == "DELETED":
            self.devices.pop(key, None)
            self._status.pop(key, None)
            if old_node:
                await self._membership(ctx, old_node, [], [st.member(ev.obj)])
                await self._send(
                    ctx,
                    old_node,
                    f"{ns}/device/{name}",
                    vocab.Operation.DELETE,
                    vocab.Group.RESOURCE,
                    ev.obj,
                    rv,
                )
            return
        self.devices[key] = ev.obj
        if prev is not None and prev.get("spec") == ev.obj.get("spec"):
            return  # status-only change (typically our own write)
        node = st.node_of(ev.obj)
        if old_node and old_node != node:
            await self._membership(ctx, old_node, [], [st.member(ev.obj)])
            await self._send(
                ctx, old_node, f"{ns}/device/{name}", vocab.Operation.DELETE, vocab.Group.RESOURCE, ev.obj, rv
            )
        if not node:
            return
        new_member = old_node != node
        if new_member:
            model = self.models.get((ns, st.model_of(ev.obj)))
            if model is not None:
                mrv = str((model.get("metadata") or {}).get("resourceVersion", ""))
                await self._send(
                    ctx,
                    node,
                    f"{ns}/devicemodel/{st.model_of(ev.obj)}",
                    vocab.Operation.INSERT,
                    vocab.Group.RESOURCE,
                    model,
                    mrv,
                )
            await self._membership(ctx, node, [st.member(ev.obj)], [])
        op = vocab.Operation.INSERT if new_member else vocab.Operation.UPDATE
        await self._send(ctx, node, f"{ns}/device/{name}", op, vocab.Group.RESOURCE, ev.obj, rv)

    # --- upstream -------------------------------------------------------------------------------------
    async def _upstream(self, msg: Message, jobs: trio.MemorySendChannel[_Job]) -> None:
        try:
            key = res.parse(msg.route.resource)
        except res.ResourceError as e:
            _log.warning("bad resource from edge", error=str(e))
            return
        if key.shape is res.Shape.MEMBERSHIP_DETAIL:
            _log.debug("membership detail request", node=key.node)  # upstream never answers it either
            return
        if key.shape is not res.Shape.DEVICE or not key.node or not key.namespace:
            _log.debug("message ignored", resource=msg.route.resource, operation=msg.route.operation)
            return
        job = _Job(key.node, key.namespace, key.name, [msg])
        try:
            if key.event == "twin/edge_updated":
                job.twins.append(st.parse_twin_report(msg.content))
            elif key.event == "state/update":
                job.state = st.parse_state_report(msg.content)
            else:
                _log.debug("device event ignored", event=key.event)
                return
        except st.ReportError as e:
            _log.warning("bad device report dropped", resource=msg.route.resource, error=str(e))
            return
        await jobs.send(job)

    async def _status_worker(
        self, ctx: beehive.Bus, jobs: trio.MemoryReceiveChannel[_Job], api_client: Any
    ) -> None:
        async for first in jobs:
            batch: dict[tuple[str, str], _Job] = {(first.namespace, first.name): first}
            # Coalesce what queued meanwhile: one status write per device covers all its reports.
            for _ in range(self.status_queue):
                try:
                    job = jobs.receive_nowait()
                except trio.WouldBlock:
                    break
                merged = batch.setdefault((job.namespace, job.name), _Job(job.node, job.namespace, job.name))
                merged.msgs += job.msgs
                merged.twins += job.twins
                merged.state = job.state or merged.state
            for key, job in batch.items():
                ok = await trio.to_thread.run_sync(self._write_status, api_client, key, job)
                if not ok:
                    continue
                for m in job.msgs:
                    reply = Message.new(
                        source=self.name,
                        group=vocab.Group.TWIN,
                        operation=vocab.Operation.RESPONSE,
                        resource=f"{res.NODE_PREFIX}/{job.node}/twin",
                        content=vocab.ACK_CONTENT,
                        now_ms=ctx.now_ms(),
                        parent_msg_id=m.msg_id,
                    )
                    try:
                        await ctx.send(self.cloudhub_module, reply)
                    except beehive.BeehiveError as e:
                        _log.warning("report reply not sent", error=str(e))

    def _write_status(self, api_client: Any, key: tuple[str, str], job: _Job) -> bool:
        """Merge-patch the Device's status; True when done (or the Device is gone), False to let the edge resend."""
        from kubernetes import client
        from kubernetes.client.exceptions import ApiException

        api = client.CustomObjectsApi(api_client)
        ns, name = key
        current = self._status.get(key)
        if current is None:
            cached = self.devices.get(key)
            current = dict((cached or {}).get("status") or {})
        status = dict(current)
        for report in job.twins:
            status["twins"] = st.merge_twins(status, report)
        if job.state is not None:
            status["state"] = job.state.state
            if job.state.last_online:
                status["lastOnlineTime"] = job.state.last_online
        patch = {"status": {k: status[k] for k in ("twins", "state", "lastOnlineTime") if k in status}}
        try:
            api.patch_namespaced_custom_object_status(GROUP, VERSION, ns, DEVICES, name, patch)
        except ApiException as e:
            if e.status == 404:
                _log.info("report for a device that no longer exists", device=f"{ns}/{name}")
                return True
            _log.warning(
                "device status write failed", device=f"{ns}/{name}", status=e.status, reason=e.reason
            )
            return False
        except Exception as e:  # connection trouble: the edge resends
            _log.warning("device status write failed", device=f"{ns}/{name}", error=repr(e))
            return False
        self._status[key] = status
        return True
