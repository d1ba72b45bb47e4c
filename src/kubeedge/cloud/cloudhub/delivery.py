"""Per-node reliable delivery of cloud-to-edge messages: the sans-io core of CloudHub's send path.

Owns, for one connected node, the two queues upstream calls the node message
pool (wire notes 2.5):

* the **no-ack** queue, a FIFO of messages sent once (replies, user traffic,
  volume and task operations, …; :func:`classify` decides), and
* the **ack** queue, keyed by object UID: the message is sent, and re-sent with
  the same ``msg_id`` every ``ack_timeout`` seconds up to ``max_sends`` times in
  all until the edge answers with op ``response`` whose ``parent_msg_id`` is the
  message id; after that the key is requeued with per-key exponential backoff
  (``backoff_base`` doubling up to ``backoff_cap``, client-go's 5 ms .. 1000 s).

Invariants:

* At most one message per UID is in flight; a newer resourceVersion (uint64
  compare) replaces the queued or in-flight one (the in-flight one is abandoned:
  its late ack is ignored, so ``on_acked`` never reports a version older than
  one already reported for that key). An older or equal version, or anything
  after a stored delete, is discarded. Deletes and responses always replace.
* At most ``max_in_flight`` ack-mode messages are awaiting acks at once, so the
  per-node window is bounded (upstream is stop-and-wait, a window of 1).
* Sizes are bounded: the ack queue holds at most ``ack_queue_size`` distinct
  UIDs and the no-ack queue ``noack_queue_size`` messages. **Overflow policy:**
  a message for a *new* UID is refused when the ack queue is full (messages for
  UIDs already queued still supersede in place, as they take no new slot); the
  SyncController's periodic reconcile re-sends what was refused. A full no-ack
  queue drops its *oldest* message: no-ack traffic is replies the edge retries,
  and the oldest reply is the one most likely already given up on.

Every method takes ``now`` (seconds, any monotonic origin); nothing here reads a
clock, sleeps or does I/O. Bad input never raises: :meth:`NodeDelivery.enqueue`
returns an :class:`Outcome` saying what happened.
"""

from __future__ import annotations

import enum
import heapq
import itertools
import math
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from kubeedge.kit import limits
from kubeedge.proto import resource as resources
from kubeedge.proto.message import Message
from kubeedge.proto.vocab import (
    ACK_CONTENT,
    CSI_OPERATIONS,
    CloudModule,
    Group,
    Operation,
    ResourceType,
)

ACK_TIMEOUT: Final = 5.0
"""Seconds to wait for an ack before re-sending (upstream 5 s)."""
MAX_SENDS: Final = 5
"""Sends of one message id before the key is requeued with backoff (upstream: 1 + 4 retries)."""
BACKOFF_BASE: Final = 0.005
"""First requeue delay (client-go's default item limiter, 5 ms)."""
BACKOFF_CAP: Final = 1000.0
"""Longest requeue delay (client-go's default item limiter, 1000 s)."""
MAX_IN_FLIGHT: Final = 64
"""Ack-mode messages awaiting an ack at once per node (upstream: 1; larger hides the round trip)."""

NO_ACK_RESOURCE_MARKERS: Final = (
    "podlist",
    "membership",
    "twin/cloud_updated",
    "serviceaccounttoken",
    "k8s/ca.crt",
)
"""A resource containing any of these is sent without waiting for an ack (upstream's substring rule)."""
TASK_SOURCES: Final = frozenset({"taskmanager", "nodeupgradejobcontroller", "imageprepulljobcontroller"})
"""Sources of node task messages (sent once: the task manager tracks its own progress)."""
EDGECONTROLLER_NO_ACK_TYPES: Final = frozenset(
    {
        ResourceType.LEASE,
        ResourceType.NODE_PATCH,
        ResourceType.POD_PATCH,
        ResourceType.POD_STATUS,
        ResourceType.CERTIFICATE_SIGNING_REQUEST,
    }
)
"""EdgeController resource types sent once (replies to edge requests); ``node`` and pod replies are special-cased."""

_UINT64_MAX: Final = 2**64 - 1


class Mode(enum.StrEnum):
    """How a downstream message is delivered."""

    NO_ACK = "no-ack"
    ACK = "ack"


class Outcome(enum.StrEnum):
    """What :meth:`NodeDelivery.enqueue` did with a message."""

    QUEUED = "queued"
    """Queued (or replaced an older queued message for the same UID)."""
    STALE = "stale"
    """Discarded: not newer than the queued, in-flight or acknowledged version."""
    NO_VERSION = "no-version"
    """Discarded: an ack-mode message without ``resourceversion`` that is not a delete."""
    INVALID = "invalid"
    """Discarded: ack-mode but group is not ``resource``, no object UID, or a non-numeric version."""
    OVERFLOW = "overflow"
    """Refused: the ack queue is full and this is a new UID."""
    DROPPED_OLDEST = "dropped-oldest"
    """Queued on the full no-ack queue after dropping its oldest message."""


def _resource_type(resource: str) -> str:
    """The ``<type>`` token of ``[node/<node>/]<ns>/<type>[/<name>]``, or ``""``."""
    _, wire = resources.strip_node_prefix(resource)
    tokens = wire.split("/")
    return tokens[1] if len(tokens) >= 2 else ""


def classify(msg: Message) -> Mode:
    """Ack or no-ack, exactly by upstream's rules (wire notes 2.5)."""
    route = msg.route
    if any(marker in route.resource for marker in NO_ACK_RESOURCE_MARKERS):
        return Mode.NO_ACK
    if route.operation in CSI_OPERATIONS or route.operation == Operation.APPLICATION_RESPONSE:
        return Mode.NO_ACK
    if route.group == Group.USER or route.source in TASK_SOURCES:
        return Mode.NO_ACK
    if route.operation == Operation.ERROR:
        return Mode.NO_ACK
    if route.operation == Operation.RESPONSE and msg.content == ACK_CONTENT:
        return Mode.NO_ACK
    if route.source == CloudModule.EDGECONTROLLER:
        rtype = _resource_type(route.resource)
        if rtype in EDGECONTROLLER_NO_ACK_TYPES:
            return Mode.NO_ACK
        if rtype == ResourceType.NODE and route.operation != Operation.UPDATE:
            return Mode.NO_ACK
        if rtype == ResourceType.POD and route.operation == Operation.RESPONSE:
            return Mode.NO_ACK
    return Mode.ACK


def _metadata(content: Any) -> dict[str, Any]:
    if isinstance(content, dict):
        meta = content.get("metadata")
        if isinstance(meta, dict):
            return meta
        inner = content.get("Object")
        if isinstance(inner, dict) and isinstance(inner.get("metadata"), dict):
            return dict(inner["metadata"])
    return {}


def is_delete(msg: Message) -> bool:
    """Op ``delete``, or an object carrying ``metadata.deletionTimestamp``."""
    return msg.route.operation == Operation.DELETE or bool(_metadata(msg.content).get("deletionTimestamp"))


def object_uid(msg: Message) -> str:
    """``metadata.uid`` of the carried object (or of an ObjectResp's ``Object``), or ``""``."""
    uid = _metadata(msg.content).get("uid")
    return uid if isinstance(uid, str) else ""


def parse_rv(value: str) -> int | None:
    """A resourceVersion as uint64, or ``None`` if it is not one (upstream compares RVs as uint64)."""
    if not value or not value.isascii() or not value.isdigit() or len(value) > 20:
        return None
    number = int(value)
    return number if number <= _UINT64_MAX else None


@dataclass(slots=True)
class _Slot:
    """Delivery state of one UID."""

    pending: Message | None = None
    """Newest message not yet sent (or requeued after failed sends)."""
    ready_at: float = 0.0
    """When ``pending`` may be sent (backoff)."""
    inflight: Message | None = None
    """Message sent and awaiting its ack."""
    sends: int = 0
    """Times ``inflight`` has been sent."""
    resend_at: float = math.inf
    failures: int = 0
    """Consecutive rounds of ``max_sends`` unanswered sends (drives the backoff)."""
    in_ready: bool = False

    def latest(self) -> Message | None:
        return self.pending if self.pending is not None else self.inflight


@dataclass(slots=True)
class Stats:
    """Counters for metrics and logs."""

    sent: int = 0
    resent: int = 0
    acked: int = 0
    requeued: int = 0
    stale: int = 0
    overflow: int = 0
    dropped_oldest: int = 0
    invalid: int = 0


@dataclass(slots=True)
class NodeDelivery:
    """Reliable delivery state for one node's session (new per connection, as upstream).

    ``on_acked(node, msg)`` is called for every acknowledged ack-mode message (a
    SyncController records ``ObjectSync`` from it). A message for a UID with
    nothing queued is compared with the version last acked in this session (the
    ``acked_memory`` most recent UIDs), else with ``acked_version(uid)`` (the
    ObjectSync status, if wired), and discarded unless newer.
    """

    node: str
    ack_timeout: float = ACK_TIMEOUT
    max_sends: int = MAX_SENDS
    backoff_base: float = BACKOFF_BASE
    backoff_cap: float = BACKOFF_CAP
    max_in_flight: int = MAX_IN_FLIGHT
    ack_queue_size: int = limits.NODE_SEND_QUEUE
    noack_queue_size: int = limits.NODE_SEND_QUEUE
    acked_memory: int = limits.NODE_ACKED_VERSIONS
    on_acked: Callable[[str, Message], None] | None = None
    acked_version: Callable[[str], int | None] | None = None
    stats: Stats = field(default_factory=Stats)
    _noack: deque[Message] = field(default_factory=deque)
    _slots: dict[str, _Slot] = field(default_factory=dict)
    _ready: deque[str] = field(default_factory=deque)
    _timers: list[tuple[float, int, str]] = field(default_factory=list)
    _seq: itertools.count[int] = field(default_factory=itertools.count)
    _by_id: dict[str, str] = field(default_factory=dict)
    _inflight: int = 0
    _acked: OrderedDict[str, int] = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        if self.ack_timeout <= 0 or self.max_sends < 1 or self.max_in_flight < 1:
            raise ValueError("ack_timeout must be > 0, max_sends and max_in_flight >= 1")
        if not 0 < self.backoff_base <= self.backoff_cap:
            raise ValueError("backoff must satisfy 0 < backoff_base <= backoff_cap")
        if self.ack_queue_size < 1 or self.noack_queue_size < 1:
            raise ValueError("queue sizes must be >= 1")

    # --- input -------------------------------------------------------------------------------------

    def enqueue(self, msg: Message, now: float) -> Outcome:
        """Queue ``msg`` for the edge (classified by :func:`classify`)."""
        if classify(msg) is Mode.NO_ACK:
            return self.enqueue_noack(msg)
        return self._enqueue_ack(msg, now)

    def enqueue_noack(self, msg: Message) -> Outcome:
        """Queue ``msg`` to be sent once, without waiting for an ack (the oldest is dropped when full)."""
        outcome = Outcome.QUEUED
        if len(self._noack) >= self.noack_queue_size:
            self._noack.popleft()
            self.stats.dropped_oldest += 1
            outcome = Outcome.DROPPED_OLDEST
        self._noack.append(msg)
        return outcome

    def _enqueue_ack(self, msg: Message, now: float) -> Outcome:
        deleting = is_delete(msg)
        rv = parse_rv(msg.header.resource_version)
        if msg.route.operation == Operation.RESPONSE and (rv is None or not object_uid(msg)):
            # An answer that carries no versioned object (a NotFound ObjectResp, an error status) has nothing
            # to supersede or record: it still must reach the edge, which waits for it (upstream drops it and
            # leaves the edge waiting for its query timeout).
            return self.enqueue_noack(msg)
        if not msg.header.resource_version and not deleting:
            self.stats.invalid += 1
            return Outcome.NO_VERSION
        uid = object_uid(msg)
        if msg.route.group != Group.RESOURCE or not uid or (rv is None and not deleting):
            self.stats.invalid += 1
            return Outcome.INVALID
        slot = self._slots.get(uid)
        forced = deleting or msg.route.operation == Operation.RESPONSE
        if not forced:
            assert rv is not None
            latest = slot.latest() if slot else None
            if latest is not None:
                latest_rv = parse_rv(latest.header.resource_version)
                if is_delete(latest) or (latest_rv is not None and rv <= latest_rv):
                    self.stats.stale += 1
                    return Outcome.STALE
            else:
                known = self._acked.get(uid)
                if known is None and self.acked_version is not None:
                    known = self.acked_version(uid)
                if known is not None and rv <= known:
                    self.stats.stale += 1
                    return Outcome.STALE
        if slot is None:
            if len(self._slots) >= self.ack_queue_size:
                self.stats.overflow += 1
                return Outcome.OVERFLOW
            slot = self._slots[uid] = _Slot()
        if slot.inflight is not None:
            # Superseded while awaiting its ack: stop re-sending it and forget its id, so a
            # late ack cannot report the older version after the newer one.
            self._by_id.pop(slot.inflight.msg_id, None)
            slot.inflight = None
            slot.resend_at = math.inf
            self._inflight -= 1
        slot.pending = msg
        slot.failures = 0
        slot.ready_at = now
        self._mark_ready(uid, slot)
        return Outcome.QUEUED

    def ack(self, parent_msg_id: str, now: float) -> Message | None:
        """Record the edge's ack (op ``response``, ``parent_msg_id``); returns the acked message if it was ours."""
        uid = self._by_id.pop(parent_msg_id, None)
        if uid is None:
            return None
        slot = self._slots[uid]
        msg = slot.inflight
        assert msg is not None
        assert msg.msg_id == parent_msg_id
        slot.inflight = None
        slot.resend_at = math.inf
        slot.failures = 0
        self._inflight -= 1
        self.stats.acked += 1
        rv = parse_rv(msg.header.resource_version)
        if is_delete(msg):
            self._acked.pop(uid, None)
        elif rv is not None:
            self._acked[uid] = max(rv, self._acked.pop(uid, 0))
            if len(self._acked) > self.acked_memory:
                self._acked.popitem(last=False)
        if slot.pending is None:
            # Nothing newer waits: free the slot so acked objects never count against the
            # queue bound. Later duplicates are filtered by ``acked_version`` (ObjectSync).
            del self._slots[uid]
        if self.on_acked is not None:
            self.on_acked(self.node, msg)
        return msg

    # --- output ------------------------------------------------------------------------------------

    def poll(self, now: float) -> list[Message]:
        """Messages to write now, in order: no-ack first, then due re-sends, then ready ack-mode messages."""
        out: list[Message] = list(self._noack)
        self._noack.clear()
        self.stats.sent += len(out)
        timers = self._timers
        while timers and timers[0][0] <= now:
            at, _, uid = heapq.heappop(timers)
            slot = self._slots.get(uid)
            if slot is None:
                continue
            if slot.inflight is not None and slot.resend_at == at:
                if slot.sends < self.max_sends:
                    slot.sends += 1
                    slot.resend_at = now + self.ack_timeout
                    heapq.heappush(timers, (slot.resend_at, next(self._seq), uid))
                    self.stats.resent += 1
                    out.append(slot.inflight)
                else:
                    self._requeue(uid, slot, now)
            elif slot.pending is not None and slot.inflight is None and slot.ready_at == at:
                self._mark_ready(uid, slot)
        while self._ready and self._inflight < self.max_in_flight:
            uid = self._ready.popleft()
            slot = self._slots.get(uid)
            if slot is None:
                continue
            slot.in_ready = False
            msg = slot.pending
            if msg is None or slot.inflight is not None or slot.ready_at > now:
                continue
            slot.pending = None
            slot.inflight = msg
            slot.sends = 1
            slot.resend_at = now + self.ack_timeout
            heapq.heappush(timers, (slot.resend_at, next(self._seq), uid))
            self._by_id[msg.msg_id] = uid
            self._inflight += 1
            self.stats.sent += 1
            out.append(msg)
        return out

    def next_deadline(self, now: float) -> float:
        """When :meth:`poll` next has work: ``now`` if it has some already, ``math.inf`` if idle."""
        if self._noack or (self._ready and self._inflight < self.max_in_flight):
            return now
        timers = self._timers
        while timers:
            at, _, uid = timers[0]
            slot = self._slots.get(uid)
            if slot is not None and (slot.resend_at == at or (slot.inflight is None and slot.ready_at == at)):
                return at
            heapq.heappop(timers)  # stale entry
        return math.inf

    # --- introspection -----------------------------------------------------------------------------

    @property
    def ack_queue_len(self) -> int:
        """Distinct UIDs queued or in flight."""
        return sum(1 for s in self._slots.values() if s.pending is not None or s.inflight is not None)

    @property
    def noack_queue_len(self) -> int:
        """No-ack messages waiting to be written."""
        return len(self._noack)

    @property
    def in_flight(self) -> int:
        """Ack-mode messages sent and not yet acknowledged."""
        return self._inflight

    def queued(self, uid: str) -> Message | None:
        """The newest message held for ``uid`` (pending or in flight)."""
        slot = self._slots.get(uid)
        return slot.latest() if slot else None

    # --- internals ---------------------------------------------------------------------------------

    def _mark_ready(self, uid: str, slot: _Slot) -> None:
        if not slot.in_ready:
            slot.in_ready = True
            self._ready.append(uid)

    def _requeue(self, uid: str, slot: _Slot, now: float) -> None:
        msg = slot.inflight
        assert msg is not None
        self._by_id.pop(msg.msg_id, None)
        self._inflight -= 1
        slot.inflight = None
        slot.resend_at = math.inf
        slot.pending = msg
        delay = min(self.backoff_cap, self.backoff_base * 2.0 ** min(slot.failures, 64))
        slot.failures += 1
        slot.ready_at = now + delay
        heapq.heappush(self._timers, (slot.ready_at, next(self._seq), uid))
        self.stats.requeued += 1
