"""The module runtime ("beehive"): named modules, their inboxes, the bus between them, and their supervisor.

Owns one bounded inbox per module (:data:`~kubeedge.kit.limits.MODULE_QUEUE` slots), the table of
modules and groups, the requests waiting for a synchronous reply, and the tasks that run the modules.

A module is any object with ``name``, ``group`` and
``async def run(ctx, *, task_status=trio.TASK_STATUS_IGNORED)`` (see :class:`Module`). Upstream names
them ``edged``, ``websocket`` (EdgeHub), ``metamanager``, ``twin``, ``eventbus``, ``servicebus`` in groups
``edged``, ``hub``, ``meta``, ``twin``, ``bus``; and ``cloudhub``, ``edgecontroller``,
``devicecontroller``, ``synccontroller`` on the cloud side.

Invariants:

- An inbox belongs to the runtime, not to a run of its module: a module that crashes and is restarted
  finds every message that was queued for it (a message already taken by the crashed run is gone: delivery
  is at most once per message taken).
- Full inbox policy: a send waits (backpressure) for at most
  :data:`~kubeedge.kit.limits.MODULE_SEND_WAIT` seconds, logging a warning when it starts waiting, then
  raises :class:`InboxFullError`. A group send delivers to every member that has room in that time and
  then raises :class:`InboxFullError` naming the members that missed the message.
- Modules start one after another in the given order; each must call ``task_status.started()`` when it
  is ready, and the next one starts only then.
- A module that raises is restarted after an exponential, fully jittered delay
  (:class:`~kubeedge.kit.backoff.Backoff`); the delay resets once a run has lasted ``stable_after``
  seconds. A module that returns is not restarted, and sends to it raise :class:`ModuleStoppedError`.
- Shutdown gives modules a grace period: cleanup code that runs under :meth:`Context.cleanup_scope` is
  shielded from the shutdown cancellation until the shutdown deadline, then cancelled. Cleanup must not
  shield itself any other way: the runtime could not bound it.

Failures are exceptions deriving from :class:`BeehiveError`, each naming the module or group concerned.
"""

from __future__ import annotations

import math
import random
import signal
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final, Protocol

import trio

from kubeedge.kit import limits, log
from kubeedge.kit.backoff import Backoff
from kubeedge.proto.message import Message

__all__ = [
    "RESTART_BACKOFF_BASE",
    "RESTART_BACKOFF_CAP",
    "RESTART_STABLE_AFTER",
    "SHUTDOWN_TIMEOUT",
    "Beehive",
    "BeehiveError",
    "Bus",
    "Context",
    "InboxFullError",
    "Module",
    "ModuleState",
    "ModuleStoppedError",
    "SyncTimeoutError",
    "UnknownGroupError",
    "UnknownModuleError",
    "run_modules",
]

_log = log.get(__name__)

RESTART_BACKOFF_BASE: Final = 1.0
"""Ceiling of the first restart delay, in seconds."""
RESTART_BACKOFF_CAP: Final = 60.0
"""Largest restart delay ceiling, in seconds: a crash-looping module still retries every minute or so."""
RESTART_STABLE_AFTER: Final = 60.0
"""A run that lasted this many seconds resets the restart backoff: the next crash is treated as a new one."""
SHUTDOWN_TIMEOUT: Final = 10.0
"""Default grace period for modules to clean up after SIGINT/SIGTERM before they are hard-cancelled."""


class BeehiveError(Exception):
    """Base of every error the module runtime raises."""


class UnknownModuleError(BeehiveError, LookupError):
    """A message was addressed to a module name that was never registered."""


class UnknownGroupError(BeehiveError, LookupError):
    """A message was addressed to a group no registered module belongs to."""


class ModuleStoppedError(BeehiveError):
    """A message was addressed to a module that has returned and will not run again."""


class InboxFullError(BeehiveError):
    """A module's inbox stayed full for the whole send wait; the message was not delivered to ``modules``."""

    def __init__(self, message: str, modules: Sequence[str]) -> None:
        super().__init__(message)
        self.modules = tuple(modules)


class SyncTimeoutError(BeehiveError, TimeoutError):
    """No reply to a synchronous request arrived in time."""


class ModuleState(StrEnum):
    """Where a module is in its life."""

    PENDING = "pending"
    """Not started yet (waiting for the modules before it)."""
    STARTING = "starting"
    """Running, but has not called ``task_status.started()`` yet."""
    RUNNING = "running"
    """Started and ready."""
    BACKOFF = "backoff"
    """Crashed; waiting for its restart delay."""
    STOPPED = "stopped"
    """Returned normally, or the runtime has shut down."""


class Module(Protocol):
    """What the runtime runs: a name, a group and an async ``run``."""

    @property
    def name(self) -> str:
        """Unique module name, the address of :meth:`Bus.send`."""
        ...

    @property
    def group(self) -> str:
        """Group name, the address of :meth:`Bus.send_to_group`."""
        ...

    async def run(
        self, ctx: Context, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve until cancelled; call ``task_status.started()`` once ready. Raising means a restart."""
        ...


@dataclass(eq=False)
class _Waiter:
    event: trio.Event = field(default_factory=trio.Event)
    reply: Message | None = None


@dataclass(eq=False)
class _Slot:
    module: Module
    inbox_in: trio.MemorySendChannel[Message]
    inbox_out: trio.MemoryReceiveChannel[Message]
    state: ModuleState = ModuleState.PENDING
    restarts: int = 0


class Bus:
    """Sending side of the runtime: what modules, and code outside them, use to address modules."""

    def __init__(self, hive: Beehive) -> None:
        self._hive = hive

    def now_ms(self) -> int:
        """Wall-clock Unix milliseconds, advancing with trio's clock (so a MockClock drives it)."""
        return self._hive.now_ms()

    async def send(self, module: str, msg: Message) -> None:
        """Queue ``msg`` in ``module``'s inbox.

        Waits while the inbox is full, at most ``MODULE_SEND_WAIT`` seconds, then raises
        :class:`InboxFullError`. Raises :class:`UnknownModuleError` / :class:`ModuleStoppedError`.
        """
        slot = self._hive._live_slot(module)
        deadline = trio.current_time() + self._hive.send_wait
        if not await self._hive._deliver(slot, msg, deadline):
            raise InboxFullError(
                f"inbox of module {module!r} stayed full for {self._hive.send_wait:g} s; message "
                f"{msg.msg_id} ({msg.route.operation} {msg.route.resource}) not delivered",
                [module],
            )

    async def send_to_group(self, group: str, msg: Message) -> None:
        """Queue ``msg`` in the inbox of every running module of ``group`` (fan-out, in registration order).

        Members that have stopped are skipped (:class:`ModuleStoppedError` if all have). Members whose
        inbox stays full until the shared ``MODULE_SEND_WAIT`` deadline miss the message;
        :class:`InboxFullError` is raised after the others got it. Raises :class:`UnknownGroupError` if
        no module has this group.
        """
        members = [slot for slot in self._hive._group(group) if slot.state is not ModuleState.STOPPED]
        if not members:
            raise ModuleStoppedError(f"every module of group {group!r} has stopped; none receives messages")
        deadline = trio.current_time() + self._hive.send_wait
        missed: list[str] = []
        for slot in members:
            if not await self._hive._deliver(slot, msg, deadline):
                missed.append(slot.module.name)
        if missed:
            raise InboxFullError(
                f"group {group!r}: inbox of {', '.join(missed)} stayed full for {self._hive.send_wait:g} s; "
                f"message {msg.msg_id} not delivered there",
                missed,
            )

    # The timeout is part of the request (upstream SendSync's), not a generic cancel: it raises the typed
    # SyncTimeoutError and unregisters the waiter, which an outer fail_after could not say as clearly.
    async def send_sync(
        self,
        module: str,
        msg: Message,
        *,
        timeout: float = limits.SYNC_TIMEOUT,  # noqa: ASYNC109
    ) -> Message:
        """Send ``msg`` (flagged ``sync``) to ``module`` and return the first reply to it.

        A reply is any message whose ``parent_msg_id`` is ``msg``'s id, handed to :meth:`send_response`.
        ``timeout`` covers queueing and the reply; when it passes, :class:`SyncTimeoutError` is raised.
        """
        request = msg.with_sync(True)
        waiters = self._hive._waiters
        if request.msg_id in waiters:
            raise BeehiveError(f"a synchronous request with id {request.msg_id} is already waiting")
        waiter = _Waiter()
        waiters[request.msg_id] = waiter
        try:
            with trio.move_on_after(timeout):
                await self.send(module, request)
                await waiter.event.wait()
        finally:
            del waiters[request.msg_id]
        if waiter.reply is None:
            raise SyncTimeoutError(
                f"no reply from module {module!r} to {request.msg_id} "
                f"({request.route.operation} {request.route.resource}) within {timeout:g} s"
            )
        return waiter.reply

    def send_response(self, reply: Message) -> None:
        """Hand ``reply`` to the :meth:`send_sync` call waiting for its ``parent_msg_id``.

        Never blocks. A reply nobody waits for (timed out, or a duplicate) is dropped and logged at debug.
        """
        waiter = self._hive._waiters.get(reply.parent_msg_id)
        if waiter is None or waiter.reply is not None:
            _log.debug(
                "reply dropped: nobody waits for it", parent_msg_id=reply.parent_msg_id, msg_id=reply.msg_id
            )
            return
        waiter.reply = reply
        waiter.event.set()


class Context(Bus):
    """What a module's ``run`` gets: its inbox, plus the :class:`Bus`.

    Iterate it (``async for msg in ctx``) or call :meth:`receive`. The inbox outlives a run of the module,
    so a restarted module keeps receiving what was queued for it.
    """

    def __init__(self, hive: Beehive, slot: _Slot) -> None:
        super().__init__(hive)
        self._slot = slot

    @property
    def name(self) -> str:
        """This module's name."""
        return self._slot.module.name

    @property
    def group(self) -> str:
        """This module's group."""
        return self._slot.module.group

    async def receive(self) -> Message:
        """Wait for the next message in this module's inbox."""
        return await self._slot.inbox_out.receive()

    def __aiter__(self) -> Context:
        return self

    async def __anext__(self) -> Message:
        return await self.receive()

    def cleanup_scope(self) -> trio.CancelScope:
        """A shielded cancel scope for cleanup, ending at the shutdown deadline.

        Use it in ``finally`` blocks that must await (closing connections, flushing a database)::

            finally:
                with ctx.cleanup_scope():
                    await conn.aclose()

        During shutdown its deadline is the shutdown deadline; otherwise (a crash) it is now plus the
        shutdown timeout. A second signal during shutdown cancels it at once.
        """
        return self._hive._cleanup_scope()


class Beehive:
    """Runs modules under one supervisor and routes messages between them.

    ``send_wait`` bounds a send into a full inbox; ``backoff_base``/``backoff_cap`` shape the restart
    delays and ``stable_after`` is the run length that resets them; ``rng`` draws the jitter.
    ``clock`` (optional) returns wall-clock Unix milliseconds for :meth:`now_ms`; by default the wall
    clock is read once and advanced with ``trio.current_time()``. Raises :class:`ValueError` on
    duplicate or empty module names and on negative or non-finite durations, naming the bad one.
    """

    def __init__(
        self,
        modules: Iterable[Module],
        *,
        shutdown_timeout: float = SHUTDOWN_TIMEOUT,
        send_wait: float = limits.MODULE_SEND_WAIT,
        backoff_base: float = RESTART_BACKOFF_BASE,
        backoff_cap: float = RESTART_BACKOFF_CAP,
        stable_after: float = RESTART_STABLE_AFTER,
        rng: random.Random | None = None,
        clock: Callable[[], int] | None = None,
    ) -> None:
        self._slots: dict[str, _Slot] = {}
        for module in modules:
            if not module.name or not module.group:
                raise ValueError(f"module {module!r}: name and group must be non-empty")
            if module.name in self._slots:
                raise ValueError(f"module name {module.name!r} is registered twice")
            # The inbox buffer is the bound itself: upstream's 1024-slot channel, so producers
            # rarely wait for a busy consumer; past it the send-wait policy applies.
            inbox_in, inbox_out = trio.open_memory_channel[Message](limits.MODULE_QUEUE)
            self._slots[module.name] = _Slot(module, inbox_in, inbox_out)
        Backoff(backoff_base, backoff_cap)  # validates early, with a clear error
        for key, value in (
            ("shutdown_timeout", shutdown_timeout),
            ("send_wait", send_wait),
            ("stable_after", stable_after),
        ):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{key} {value!r}: must be a finite number >= 0")
        self.shutdown_timeout = shutdown_timeout
        self.send_wait = send_wait
        self._backoff_base = backoff_base
        self._backoff_cap = backoff_cap
        self._stable_after = stable_after
        self._rng = rng if rng is not None else random.Random()
        self._clock = clock
        self._wall_anchor: tuple[float, float] | None = None
        self._waiters: dict[str, _Waiter] = {}
        self._cancel = trio.CancelScope()
        self._shutdown_deadline: float | None = None
        self._cleanup_scopes: weakref.WeakSet[trio.CancelScope] = weakref.WeakSet()
        self.bus = Bus(self)
        """A bus for code outside the modules (the process shell, tests)."""

    # --- public -----------------------------------------------------------------------------------------

    def now_ms(self) -> int:
        """Wall-clock Unix milliseconds (the injected clock, or the wall clock advanced by trio's clock)."""
        if self._clock is not None:
            return self._clock()
        if self._wall_anchor is None:
            self._wall_anchor = (time.time(), trio.current_time())
        wall, trio_then = self._wall_anchor
        return int((wall + trio.current_time() - trio_then) * 1000)

    def state(self, module: str) -> ModuleState:
        """The life state of ``module``. Raises :class:`UnknownModuleError`."""
        return self._slot(module).state

    def restarts(self, module: str) -> int:
        """How many times ``module`` has been restarted after a crash."""
        return self._slot(module).restarts

    def context(self, module: str) -> Context:
        """A context bound to ``module``'s inbox (what its ``run`` receives)."""
        return Context(self, self._slot(module))

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start the modules in order, each once the previous one is ready, then supervise them.

        Reports started when every module is ready. Returns after :meth:`shutdown` once every module
        has finished its cleanup (or the shutdown deadline has passed), or when every module has returned.
        Call it once per instance.
        """
        self.now_ms()  # anchor the wall clock at startup
        with self._cancel:
            try:
                async with trio.open_nursery() as nursery:
                    for slot in self._slots.values():
                        await nursery.start(self._supervise, slot)
                    _log.info("all modules started", modules=list(self._slots))
                    task_status.started()
            finally:
                for slot in self._slots.values():
                    slot.state = ModuleState.STOPPED

    @property
    def shutting_down(self) -> bool:
        """True once :meth:`shutdown` has been called."""
        return self._shutdown_deadline is not None

    def shutdown(self, *, hard: bool = False) -> None:
        """Cancel every module; cleanup scopes stay shielded until ``now + shutdown_timeout``.

        With ``hard`` (or when called a second time), cleanup scopes are cancelled at once.
        """
        now = trio.current_time()
        if self._shutdown_deadline is not None:
            hard = True
        if hard:
            self._shutdown_deadline = now
        elif self._shutdown_deadline is None:
            self._shutdown_deadline = now + self.shutdown_timeout
        for scope in list(self._cleanup_scopes):
            scope.deadline = min(scope.deadline, self._shutdown_deadline)
        self._cancel.cancel()

    # --- internals --------------------------------------------------------------------------------------

    def _slot(self, module: str) -> _Slot:
        try:
            return self._slots[module]
        except KeyError:
            known = ", ".join(self._slots) or "none"
            raise UnknownModuleError(f"no module named {module!r} (registered: {known})") from None

    def _live_slot(self, module: str) -> _Slot:
        slot = self._slot(module)
        if slot.state is ModuleState.STOPPED:
            raise ModuleStoppedError(f"module {module!r} has stopped; it no longer receives messages")
        return slot

    def _group(self, group: str) -> list[_Slot]:
        members = [slot for slot in self._slots.values() if slot.module.group == group]
        if not members:
            known = ", ".join(sorted({slot.module.group for slot in self._slots.values()})) or "none"
            raise UnknownGroupError(f"no module in group {group!r} (groups: {known})")
        return members

    async def _deliver(self, slot: _Slot, msg: Message, deadline: float) -> bool:
        await trio.lowlevel.checkpoint_if_cancelled()
        try:
            slot.inbox_in.send_nowait(msg)
        except trio.WouldBlock:
            pass
        else:
            await trio.lowlevel.cancel_shielded_checkpoint()
            return True
        _log.warning(
            "module inbox full; sender waits",
            module=slot.module.name,
            slots=limits.MODULE_QUEUE,
            max_wait_s=self.send_wait,
            msg_id=msg.msg_id,
        )
        with trio.move_on_at(deadline):
            await slot.inbox_in.send(msg)
            return True
        return False

    def _cleanup_scope(self) -> trio.CancelScope:
        if self._shutdown_deadline is not None:
            deadline = self._shutdown_deadline
        else:
            deadline = trio.current_time() + self.shutdown_timeout
        scope = trio.CancelScope(deadline=deadline, shield=True)
        self._cleanup_scopes.add(scope)
        return scope

    async def _supervise(self, slot: _Slot, *, task_status: trio.TaskStatus[None]) -> None:
        module = slot.module
        backoff = Backoff(self._backoff_base, self._backoff_cap, self._rng)
        ready = _Readiness(slot, task_status)
        ctx = Context(self, slot)
        while True:
            slot.state = ModuleState.STARTING
            began = trio.current_time()
            try:
                await module.run(ctx, task_status=ready)
            except Exception as exc:
                # Any Exception is a crash to restart from; BaseExceptions (Cancelled,
                # KeyboardInterrupt) end the runtime as usual.
                uptime = trio.current_time() - began
                if uptime >= self._stable_after:
                    backoff.reset()
                delay = backoff.next_delay()
                slot.state = ModuleState.BACKOFF
                slot.restarts += 1
                _log.exception(
                    "module crashed; restarting",
                    module=module.name,
                    error=f"{type(exc).__name__}: {exc}",
                    uptime_s=round(uptime, 3),
                    restart_in_s=round(delay, 3),
                    restarts=slot.restarts,
                )
            else:
                slot.state = ModuleState.STOPPED
                _log.info("module returned; not restarting it", module=module.name)
                ready.release()
                return
            await trio.sleep(delay)


class _Readiness:
    """The ``task_status`` a module run gets: marks it running, and releases the start order once."""

    def __init__(self, slot: _Slot, outer: trio.TaskStatus[None]) -> None:
        self._slot = slot
        self._outer: trio.TaskStatus[None] | None = outer

    def started(self, value: Any = None) -> None:
        self._slot.state = ModuleState.RUNNING
        _log.info("module started", module=self._slot.module.name, restarts=self._slot.restarts)
        self.release()

    def release(self) -> None:
        outer, self._outer = self._outer, None
        if outer is not None:
            outer.started()


async def run_modules(
    modules: Sequence[Module],
    *,
    shutdown_timeout: float = SHUTDOWN_TIMEOUT,
    signals: Sequence[int] = (signal.SIGINT, signal.SIGTERM),
) -> int:
    """The process shell of ``cloudcore``/``edgecore``: run ``modules`` until SIGINT or SIGTERM.

    On the first signal every module is cancelled and gets ``shutdown_timeout`` seconds of shielded
    cleanup (:meth:`Context.cleanup_scope`); a second signal, or the deadline, cancels the cleanup too.
    Also returns once every module has returned on its own. Returns the process exit code: 0 (a
    clean, signal-driven or natural end); a bug in the runtime itself raises. Must run in trio's main
    thread (signal handling); raises :class:`ValueError` for bad modules, as :class:`Beehive` does.
    """
    hive = Beehive(modules, shutdown_timeout=shutdown_timeout)
    with trio.open_signal_receiver(*signals) as received:
        async with trio.open_nursery() as nursery:

            async def serve() -> None:
                await hive.run()
                nursery.cancel_scope.cancel()

            nursery.start_soon(serve)
            async for signum in received:
                name = signal.Signals(signum).name
                if not hive.shutting_down:
                    _log.info("signal received; shutting down", signal=name, grace_s=shutdown_timeout)
                else:
                    _log.warning("second signal; cancelling module cleanup", signal=name)
                hive.shutdown()
    _log.info("all modules stopped")
    return 0
