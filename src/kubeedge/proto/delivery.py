"""Cloud-to-edge reliable delivery bookkeeping for one node session, sans-io.

Owns which messages need an edge ack, the per-node ack queue (keyed by object
UID, newest resourceVersion wins), the no-ack FIFO, ack matching, resends and
backoff. It owns no socket and no clock: the CloudHub shell calls
:meth:`NodeDelivery.push` for each outgoing message, :meth:`NodeDelivery.on_ack`
for each ``response`` from the edge, and :meth:`NodeDelivery.poll` whenever
:meth:`NodeDelivery.next_deadline` passes, writing the messages ``poll`` returns.
Every method takes ``now`` (seconds, any monotonic origin).

Rules (upstream CloudHub, see the wire notes 2.5):

* :func:`classify` decides ack vs no-ack. No-ack messages are sent once, in order.
* Ack messages are keyed by the object's UID (``metadata.uid`` of the content or
  of an ``ObjectResp``'s ``Object``; the resource string when there is none).
  Deletes (op ``delete`` or a ``deletionTimestamp``) and ``response`` messages
  always go through (responses are keyed by their own id, so nothing supersedes
  them). Otherwise an empty or non-uint64 ``resourceversion`` is dropped, and the
  RV is compared as uint64 with the message held for that key: older or equal (or
  a held delete) is dropped, newer replaces it. With nothing held, the caller's
  ObjectSync RV (``synced_rv``) decides: ``None`` sends, else only a newer RV.
* A sent ack message waits ``ack_timeout`` (5 s) for a ``response`` whose
  ``parent_msg_id`` is its id, is resent with the same id up to ``max_sends - 1``
  (4) more times, then goes back to the queue with exponential backoff (5 ms
  doubling to 1000 s, per key, like client-go's default item limiter). A late ack
  of a backed-off message still counts.
* ``window`` ack messages are in flight at once (upstream: 1).

Bounds and overflow: at most ``capacity`` ack entries (held + in flight) and
``capacity`` no-ack messages. A message for a new key (or a no-ack message) that
finds its queue full is dropped and reported; replacing a held key never needs
room. Dropping the newest is safe because SyncController's periodic reconcile
resends whatever the edge has not acked (the real recovery path upstream too).

Failure: nothing here raises on peer input; odd messages are classified and
dropped with a :class:`Dropped` reason.
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass
from typing import Any, Final

from kubeedge.proto.codec import lenient_get
from kubeedge.proto.message import Message
from kubeedge.proto.vocab import ACK_CONTENT, CSI_OPERATIONS, CloudModule, Group, Operation, ResourceType

DEFAULT_CAPACITY: Final = 2048
"""Mirrors ``kit.limits.NODE_SEND_QUEUE`` (a test keeps them equal)."""
ACK_TIMEOUT: Final = 5.0
"""Seconds to wait for an ack before resending (upstream 5 s)."""
MAX_SENDS: Final = 5
"""Sends of one message id before it is requeued with backoff (upstream: 1 + 4 retries)."""
BACKOFF_BASE: Final = 0.005
BACKOFF_MAX: Final = 1000.0
"""client-go's DefaultControllerRateLimiter per-item bounds (5 ms .. 1000 s)."""

_UINT64_MAX: Final = 2**64 - 1

_NO_ACK_RESOURCE_PARTS: Final = (
    ResourceType.POD_LIST.value,
    "membership",
    "twin/cloud_updated",
    ResourceType.SERVICE_ACCOUNT_TOKEN.value,
    "k8s/ca.crt",
)
TASK_SOURCES: Final = frozenset(
    {CloudModule.TASK_MANAGER.value, "nodeupgradejobcontroller", "imageprepullcontroller"}
)
"""Sources of node task messages, which are never acked."""
_EDGECONTROLLER_NO_ACK_TYPES: Final = frozenset(
    {
        ResourceType.LEASE,
        ResourceType.NODE_PATCH,
        ResourceType.POD_PATCH,
        ResourceType.POD_STATUS,
        ResourceType.CERTIFICATE_SIGNING_REQUEST,
    }
)


class Delivery(enum.StrEnum):
    """How a cloud-to-edge message is delivered."""

    ACK = "ack"
    NO_ACK = "no-ack"


def _resource_type(resource: str) -> str:
    # Both spellings: node/<node>/<ns>/<type>/... and <ns>/<type>/...
    tokens = resource.split("/")
    if tokens[0] == "node" and len(tokens) >= 3:
        tokens = tokens[2:]
    return tokens[1] if len(tokens) >= 2 else ""


def classify(msg: Message) -> Delivery:
    """Ack or no-ack, by upstream CloudHub's rules (wire notes 2.5)."""
    route = msg.route
    resource, op = route.resource, route.operation
    if any(part in resource for part in _NO_ACK_RESOURCE_PARTS):
        return Delivery.NO_ACK
    if op in CSI_OPERATIONS or op == Operation.APPLICATION_RESPONSE or op == Operation.ERROR:
        return Delivery.NO_ACK
    if route.group == Group.USER or route.source in TASK_SOURCES:
        return Delivery.NO_ACK
    if op == Operation.RESPONSE and msg.content == ACK_CONTENT:
        return Delivery.NO_ACK
    if route.source == CloudModule.EDGECONTROLLER:
        rtype = _resource_type(resource)
        if rtype in _EDGECONTROLLER_NO_ACK_TYPES:
            return Delivery.NO_ACK
        if rtype == ResourceType.NODE and op != Operation.UPDATE:
            return Delivery.NO_ACK
        if rtype == ResourceType.POD and op == Operation.RESPONSE:
            return Delivery.NO_ACK
    if route.group != Group.RESOURCE:
        return Delivery.NO_ACK
    return Delivery.ACK


def parse_rv(value: str) -> int | None:
    """A resourceVersion as uint64, or ``None`` if it is not one."""
    if not value or not value.isascii() or not value.isdigit() or len(value) > 20:
        return None
    number = int(value)
    return number if number <= _UINT64_MAX else None


def _metadata(content: Any) -> dict[str, Any]:
    if not isinstance(content, dict):
        return {}
    meta = content.get("metadata")
    if not isinstance(meta, dict):
        inner = lenient_get(content, "Object")
        meta = inner.get("metadata") if isinstance(inner, dict) else None
    return meta if isinstance(meta, dict) else {}


def object_key(msg: Message) -> str:
    """The ack-queue key: the object's UID, else its resource string."""
    uid = _metadata(msg.content).get("uid")
    return uid if isinstance(uid, str) and uid else f"resource:{msg.route.resource}"


def is_delete(msg: Message) -> bool:
    """Op ``delete``, or an object that carries a ``deletionTimestamp``."""
    return msg.route.operation == Operation.DELETE or bool(_metadata(msg.content).get("deletionTimestamp"))


def backoff(failures: int) -> float:
    """Delay before the ``failures``-th requeue (1-based): 5 ms doubling, capped at 1000 s."""
    return min(BACKOFF_BASE * 2.0 ** min(max(failures - 1, 0), 64), BACKOFF_MAX)


@dataclass(frozen=True, slots=True)
class Dropped:
    """A message that will not be sent, and why."""

    msg: Message
    reason: str


@dataclass(frozen=True, slots=True)
class Acked:
    """The edge acked ``msg``: persist ObjectSync (store ``resource_version``, or delete it when ``deleted``)."""

    key: str
    msg: Message
    resource_version: int | None
    deleted: bool


@dataclass(slots=True)
class _Entry:
    key: str
    msg: Message
    rv: int | None
    delete: bool
    due: float
    sends: int = 0
    failures: int = 0


class NodeDelivery:
    """Delivery state of one node session (create a new one per connection, as upstream does)."""

    def __init__(
        self,
        *,
        capacity: int = DEFAULT_CAPACITY,
        window: int = 1,
        ack_timeout: float = ACK_TIMEOUT,
        max_sends: int = MAX_SENDS,
    ) -> None:
        if capacity < 1 or window < 1 or max_sends < 1 or ack_timeout <= 0:
            raise ValueError("capacity, window and max_sends must be >= 1 and ack_timeout > 0")
        self.capacity = capacity
        self.window = window
        self.ack_timeout = ack_timeout
        self.max_sends = max_sends
        self._held: dict[str, _Entry] = {}
        """Waiting to be sent (new, or backing off), in first-queued order."""
        self._in_flight: dict[str, _Entry] = {}
        self._by_id: dict[str, _Entry] = {}
        """Sent at least once and not yet acked (in flight or backing off)."""
        self._no_ack: deque[Message] = deque()

    # --- input ---------------------------------------------------------------------------------------

    def push(self, msg: Message, now: float, *, synced_rv: int | None = None) -> Dropped | None:
        """Queue an outgoing message; returns why it was dropped, or ``None`` when queued.

        ``synced_rv`` is the ObjectSync ``objectResourceVersion`` the cloud holds
        for this node and object (``None``: no ObjectSync yet).
        """
        if classify(msg) is Delivery.NO_ACK:
            if len(self._no_ack) >= self.capacity:
                return Dropped(msg, "no-ack queue full")
            self._no_ack.append(msg)
            return None
        delete = is_delete(msg)
        response = msg.route.operation == Operation.RESPONSE
        key = f"response:{msg.msg_id}" if response else object_key(msg)
        rv = parse_rv(msg.header.resource_version)
        if not (delete or response):
            if rv is None:
                return Dropped(msg, "ack message without a uint64 resourceversion")
            held = self._held.get(key) or self._in_flight.get(key)
            if held is not None:
                if held.delete:
                    return Dropped(msg, "object already being deleted")
                if held.rv is not None and rv <= held.rv:
                    return Dropped(msg, "resourceversion not newer than the queued one")
            elif synced_rv is not None and rv <= synced_rv:
                return Dropped(msg, "resourceversion not newer than the acked one")
        old = self._held.get(key)
        if old is None and len(self._held) + len(self._in_flight) >= self.capacity:
            return Dropped(msg, "ack queue full")
        if old is not None:
            self._by_id.pop(old.msg.msg_id, None)
            old.msg, old.rv, old.delete, old.due, old.sends, old.failures = msg, rv, delete, now, 0, 0
        else:
            self._held[key] = _Entry(key, msg, rv, delete, due=now)
        return None

    def on_ack(self, msg: Message, now: float) -> Acked | None:
        """Match an edge ``response`` to the message it acks (by ``parent_msg_id``); ``None`` if none matches."""
        if msg.route.operation != Operation.RESPONSE or not msg.parent_msg_id:
            return None
        entry = self._by_id.pop(msg.parent_msg_id, None)
        if entry is None:
            return None
        if self._in_flight.get(entry.key) is entry:
            del self._in_flight[entry.key]
        elif self._held.get(entry.key) is entry:
            del self._held[entry.key]
        return Acked(entry.key, entry.msg, entry.rv, entry.delete)

    # --- output --------------------------------------------------------------------------------------

    def poll(self, now: float) -> tuple[list[Message], list[Dropped]]:
        """Messages to write now (resends first, then no-ack, then new ack sends) and entries given up."""
        out: list[Message] = []
        dropped: list[Dropped] = []
        for key, entry in list(self._in_flight.items()):
            if entry.due > now:
                continue
            if entry.sends < self.max_sends:
                entry.sends += 1
                entry.due = now + self.ack_timeout
                out.append(entry.msg)
                continue
            del self._in_flight[key]
            if key in self._held:
                # A newer message for the object is already waiting; this one is moot.
                self._by_id.pop(entry.msg.msg_id, None)
                dropped.append(Dropped(entry.msg, "superseded after unanswered sends"))
                continue
            entry.failures += 1
            entry.sends = 0
            entry.due = now + backoff(entry.failures)
            self._held[key] = entry
        while self._no_ack:
            out.append(self._no_ack.popleft())
        if len(self._in_flight) < self.window:
            for key, entry in list(self._held.items()):
                if len(self._in_flight) >= self.window:
                    break
                if entry.due > now or key in self._in_flight:
                    continue
                del self._held[key]
                entry.sends = 1
                entry.due = now + self.ack_timeout
                self._in_flight[key] = entry
                self._by_id[entry.msg.msg_id] = entry
                out.append(entry.msg)
        return out, dropped

    def next_deadline(self) -> float | None:
        """When :meth:`poll` has work next (``-inf`` if it has work now), or ``None`` if idle."""
        if self._no_ack:
            return float("-inf")
        deadlines = [e.due for e in self._in_flight.values()]
        if len(self._in_flight) < self.window:
            deadlines.extend(e.due for k, e in self._held.items() if k not in self._in_flight)
        return min(deadlines, default=None)

    # --- introspection -------------------------------------------------------------------------------

    def __len__(self) -> int:
        """Messages not yet acked or sent (held, in flight, no-ack)."""
        return len(self._held) + len(self._in_flight) + len(self._no_ack)

    @property
    def in_flight(self) -> int:
        """Ack messages sent and awaiting their ack."""
        return len(self._in_flight)
