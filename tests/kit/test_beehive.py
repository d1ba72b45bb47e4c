"""The module runtime: addressing, fan-out, sync requests, inbox bounds, supervision, shutdown.

Everything runs on trio's MockClock with autojump (virtual time, exact), except the signal tests,
which run a real child process and send it a real SIGTERM/SIGINT.
"""

from __future__ import annotations

import itertools
import logging
import random
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from kubeedge.kit import beehive, limits
from kubeedge.kit.backoff import Backoff
from kubeedge.kit.beehive import Beehive, Context, ModuleState
from kubeedge.proto.message import Message

SEED = 1234


def make_msg(n: int = 0, *, source: str = "test", group: str = "resource") -> Message:
    return Message.new(
        source=source, group=group, operation="update", resource=f"default/pod/p{n}", content=n, now_ms=0
    )


@dataclass
class Recorder:
    """Records what it receives; answers sync requests with an echo."""

    name: str
    group: str
    seen: list[Message] = field(default_factory=list)

    async def run(
        self, ctx: Context, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        task_status.started()
        async for msg in ctx:
            self.seen.append(msg)
            if msg.header.sync:
                ctx.send_response(msg.reply({"echo": msg.content}, now_ms=ctx.now_ms()))


@dataclass
class Scripted:
    """A module whose run is a test-supplied coroutine function."""

    name: str
    group: str
    body: Callable[[Context, trio.TaskStatus[None]], Awaitable[None]]

    async def run(
        self, ctx: Context, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        await self.body(ctx, task_status)


@asynccontextmanager
async def running(*modules: Any, **options: Any) -> AsyncIterator[Beehive]:
    options.setdefault("rng", random.Random(SEED))
    hive = Beehive(modules, **options)
    async with trio.open_nursery() as nursery:
        await nursery.start(hive.run)
        yield hive
        hive.shutdown()


# --- addressing ------------------------------------------------------------------------------------------


async def test_send_delivers_in_order(autojump_clock: trio.testing.MockClock) -> None:
    meta = Recorder("metamanager", "meta")
    async with running(meta) as hive:
        sent = [make_msg(n) for n in range(5)]
        for msg in sent:
            await hive.bus.send("metamanager", msg)
        await trio.testing.wait_all_tasks_blocked()
        assert meta.seen == sent


async def test_group_send_fans_out_to_every_member_only(autojump_clock: trio.testing.MockClock) -> None:
    eventbus, servicebus = Recorder("eventbus", "bus"), Recorder("servicebus", "bus")
    twin = Recorder("twin", "twin")
    async with running(eventbus, twin, servicebus) as hive:
        msg = make_msg(1)
        await hive.bus.send_to_group("bus", msg)
        await trio.testing.wait_all_tasks_blocked()
        assert eventbus.seen == [msg]
        assert servicebus.seen == [msg]
        assert twin.seen == []


async def test_unknown_module_and_group_are_clear_errors(autojump_clock: trio.testing.MockClock) -> None:
    async with running(Recorder("twin", "twin")) as hive:
        with pytest.raises(beehive.UnknownModuleError, match=r"no module named 'edged' \(registered: twin\)"):
            await hive.bus.send("edged", make_msg())
        with pytest.raises(beehive.UnknownGroupError, match=r"no module in group 'hub' \(groups: twin\)"):
            await hive.bus.send_to_group("hub", make_msg())
        with pytest.raises(beehive.UnknownModuleError):
            await hive.bus.send_sync("edged", make_msg(), timeout=1)
        assert hive._waiters == {}


def test_duplicate_and_empty_names_are_refused() -> None:
    with pytest.raises(ValueError, match="'twin' is registered twice"):
        Beehive([Recorder("twin", "twin"), Recorder("twin", "bus")])
    with pytest.raises(ValueError, match="name and group must be non-empty"):
        Beehive([Recorder("", "twin")])
    with pytest.raises(ValueError, match=r"send_wait -1\.0: must be a finite number >= 0"):
        Beehive([], send_wait=-1.0)
    with pytest.raises(ValueError, match=r"backoff cap 0\.5: must be a finite number >= base"):
        Beehive([], backoff_base=1.0, backoff_cap=0.5)


async def test_module_sends_to_another_module(autojump_clock: trio.testing.MockClock) -> None:
    edged = Recorder("edged", "edged")

    async def forward(ctx: Context, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        async for msg in ctx:
            await ctx.send("edged", msg)

    async with running(edged, Scripted("metamanager", "meta", forward)) as hive:
        msg = make_msg(7)
        await hive.bus.send("metamanager", msg)
        await trio.testing.wait_all_tasks_blocked()
        assert edged.seen == [msg]


# --- synchronous requests --------------------------------------------------------------------------------


async def test_send_sync_returns_the_reply(autojump_clock: trio.testing.MockClock) -> None:
    meta = Recorder("metamanager", "meta")
    async with running(meta) as hive:
        request = make_msg(3)
        reply = await hive.bus.send_sync("metamanager", request, timeout=5)
        assert reply.parent_msg_id == request.msg_id
        assert reply.content == {"echo": 3}
        assert reply.route.operation == "response"
        assert meta.seen[0].header.sync is True
        assert meta.seen[0].msg_id == request.msg_id
        assert hive._waiters == {}


async def test_replies_are_matched_by_parent_id_not_order(autojump_clock: trio.testing.MockClock) -> None:
    async def answer_in_reverse(ctx: Context, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        first, second = await ctx.receive(), await ctx.receive()
        for msg in (second, first):
            ctx.send_response(msg.reply(msg.content * 10, now_ms=ctx.now_ms()))
        await trio.sleep_forever()

    replies: dict[int, Message] = {}
    async with running(Scripted("twin", "twin", answer_in_reverse)) as hive:

        async def ask(n: int) -> None:
            replies[n] = await hive.bus.send_sync("twin", make_msg(n), timeout=5)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(ask, 1)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(ask, 2)
    assert replies[1].content == 10
    assert replies[2].content == 20


async def test_send_sync_times_out_and_late_reply_is_dropped(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    held: list[Message] = []

    async def never_answer(ctx: Context, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        async for msg in ctx:
            held.append(msg)

    async with running(Scripted("edged", "edged", never_answer)) as hive:
        start = trio.current_time()
        with pytest.raises(beehive.SyncTimeoutError, match=r"no reply from module 'edged' to .* within 5 s"):
            await hive.bus.send_sync("edged", make_msg(), timeout=5)
        assert trio.current_time() - start == pytest.approx(5)
        assert hive._waiters == {}
        with caplog.at_level(logging.DEBUG, logger="kubeedge.kit.beehive"):
            hive.bus.send_response(held[0].reply("late", now_ms=0))
        assert "reply dropped: nobody waits for it" in caplog.text


async def test_duplicate_reply_is_dropped(autojump_clock: trio.testing.MockClock) -> None:
    async def answer_twice(ctx: Context, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        async for msg in ctx:
            ctx.send_response(msg.reply("first", now_ms=0))
            ctx.send_response(msg.reply("second", now_ms=0))

    async with running(Scripted("twin", "twin", answer_twice)) as hive:
        reply = await hive.bus.send_sync("twin", make_msg(), timeout=5)
        assert reply.content == "first"


# --- bounded inboxes -------------------------------------------------------------------------------------


async def test_full_inbox_makes_sender_wait_then_fail(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    async def stuck(ctx: Context, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        await trio.sleep_forever()

    async with running(Scripted("edged", "edged", stuck), send_wait=3.0) as hive:
        start = trio.current_time()
        for n in range(limits.MODULE_QUEUE):
            await hive.bus.send("edged", make_msg(n))
        assert trio.current_time() == start  # free slots never wait
        with pytest.raises(
            beehive.InboxFullError, match=r"inbox of module 'edged' stayed full for 3 s"
        ) as info:
            await hive.bus.send("edged", make_msg(-1))
        assert info.value.modules == ("edged",)
        assert trio.current_time() - start == pytest.approx(3.0)
        assert "module inbox full; sender waits" in caplog.text


async def test_full_inbox_applies_backpressure_until_consumer_drains(
    autojump_clock: trio.testing.MockClock,
) -> None:
    go = trio.Event()
    seen: list[int] = []

    async def slow(ctx: Context, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        await go.wait()
        async for msg in ctx:
            seen.append(msg.content)

    async with running(Scripted("edged", "edged", slow), send_wait=10.0) as hive:
        for n in range(limits.MODULE_QUEUE):
            await hive.bus.send("edged", make_msg(n))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(hive.bus.send, "edged", make_msg(limits.MODULE_QUEUE))
            await trio.sleep(2)
            go.set()
        await trio.testing.wait_all_tasks_blocked()
    assert seen == list(range(limits.MODULE_QUEUE + 1))


async def test_group_send_reaches_members_with_room_and_names_the_full_one(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def stuck(ctx: Context, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        await trio.sleep_forever()

    servicebus = Recorder("servicebus", "bus")
    async with running(Scripted("eventbus", "bus", stuck), servicebus, send_wait=1.0) as hive:
        for n in range(limits.MODULE_QUEUE):
            await hive.bus.send("eventbus", make_msg(n))
        msg = make_msg(-1)
        with pytest.raises(
            beehive.InboxFullError, match=r"group 'bus': inbox of eventbus stayed full"
        ) as info:
            await hive.bus.send_to_group("bus", msg)
        assert info.value.modules == ("eventbus",)
        await trio.testing.wait_all_tasks_blocked()
        assert servicebus.seen == [msg]


# --- supervision -----------------------------------------------------------------------------------------


async def test_modules_start_in_order_each_after_the_previous_is_ready(
    autojump_clock: trio.testing.MockClock,
) -> None:
    events: list[tuple[str, str, float]] = []

    def slow_starter(name: str, startup: float) -> Scripted:
        async def body(ctx: Context, task_status: trio.TaskStatus[None]) -> None:
            events.append((name, "run", trio.current_time()))
            await trio.sleep(startup)
            events.append((name, "ready", trio.current_time()))
            task_status.started()
            await trio.sleep_forever()

        return Scripted(name, name, body)

    t0 = trio.current_time()
    async with running(
        slow_starter("metamanager", 2), slow_starter("edged", 1), slow_starter("websocket", 3)
    ) as hive:
        assert [(n, e, t - t0) for n, e, t in events] == [
            ("metamanager", "run", 0),
            ("metamanager", "ready", 2),
            ("edged", "run", 2),
            ("edged", "ready", 3),
            ("websocket", "run", 3),
            ("websocket", "ready", 6),
        ]
        assert {hive.state(n) for n in ("metamanager", "edged", "websocket")} == {ModuleState.RUNNING}


async def test_crash_loop_restarts_with_jittered_backoff_and_resets_after_stability(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    base, cap, stable = 1.0, 8.0, 100.0
    starts: list[float] = []
    crashes_before_stable = 6

    async def crashy(ctx: Context, task_status: trio.TaskStatus[None]) -> None:
        starts.append(trio.current_time())
        task_status.started()
        run = len(starts)
        if run == crashes_before_stable + 1:
            await trio.sleep(stable + 1)  # a long healthy run, then one more crash
        elif run > crashes_before_stable + 2:
            await trio.sleep_forever()
        raise RuntimeError(f"boom {run}")

    module = Scripted("twin", "twin", crashy)
    async with running(module, backoff_base=base, backoff_cap=cap, stable_after=stable) as hive:
        with trio.fail_after(1000):
            while len(starts) < crashes_before_stable + 3:
                await trio.testing.wait_all_tasks_blocked()
                await trio.sleep(0.5)
        assert hive.restarts("twin") == crashes_before_stable + 2

    # The same seeded draws, replayed: the supervisor's delays are exactly these.
    twin = Backoff(base, cap, random.Random(SEED))
    expected = [twin.next_delay() for _ in range(crashes_before_stable)]
    twin.reset()
    expected.append(twin.next_delay())

    gaps = [b - a for a, b in itertools.pairwise(starts)]
    quick_gaps = gaps[:crashes_before_stable]
    for n, gap in enumerate(quick_gaps):
        assert 0.0 <= gap <= min(cap, base * 2**n)
        assert gap == pytest.approx(expected[n])
    assert len(set(quick_gaps)) == len(quick_gaps)  # jittered, not a fixed ladder
    # Run 7 lasted stable+1 s, so the delay after its crash starts from base again.
    after_stable = gaps[crashes_before_stable] - (stable + 1)
    assert 0.0 <= after_stable <= base
    assert after_stable == pytest.approx(expected[-1])

    crash_logs = [r for r in caplog.records if r.getMessage() == "module crashed; restarting"]
    assert len(crash_logs) == crashes_before_stable + 2
    fields = crash_logs[0].kubeedge_fields  # type: ignore[attr-defined]
    assert fields["module"] == "twin"
    assert fields["error"] == "RuntimeError: boom 1"
    assert crash_logs[0].exc_info is not None
    assert "RuntimeError: boom 1" in caplog.text


async def test_crash_before_ready_is_restarted_and_start_order_waits(
    autojump_clock: trio.testing.MockClock,
) -> None:
    attempts: list[float] = []
    later = Recorder("edged", "edged")

    async def flaky_start(ctx: Context, task_status: trio.TaskStatus[None]) -> None:
        attempts.append(trio.current_time())
        if len(attempts) < 3:
            raise OSError("database locked")
        task_status.started()
        await trio.sleep_forever()

    async with running(
        Scripted("metamanager", "meta", flaky_start), later, backoff_base=1, backoff_cap=4
    ) as hive:
        assert len(attempts) == 3
        assert hive.state("metamanager") is ModuleState.RUNNING
        assert hive.state("edged") is ModuleState.RUNNING
        assert hive.restarts("metamanager") == 2


async def test_module_that_returns_is_not_restarted(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="kubeedge.kit.beehive")
    runs: list[int] = []

    async def one_shot(ctx: Context, task_status: trio.TaskStatus[None]) -> None:
        runs.append(1)
        task_status.started()

    other = Recorder("edged", "edged")
    async with running(Scripted("servicebus", "bus", one_shot), other) as hive:
        await trio.sleep(3600)
        assert runs == [1]
        assert hive.state("servicebus") is ModuleState.STOPPED
        assert hive.restarts("servicebus") == 0
        with pytest.raises(beehive.ModuleStoppedError, match="module 'servicebus' has stopped"):
            await hive.bus.send("servicebus", make_msg())
        with pytest.raises(beehive.ModuleStoppedError, match="every module of group 'bus' has stopped"):
            await hive.bus.send_to_group("bus", make_msg())
        await hive.bus.send("edged", make_msg())
        await trio.testing.wait_all_tasks_blocked()
        assert len(other.seen) == 1
    assert "module returned; not restarting it" in caplog.text


async def test_no_message_is_lost_across_consumer_crashes(autojump_clock: trio.testing.MockClock) -> None:
    total, crash_every = 300, 25
    handled: list[int] = []

    async def fragile(ctx: Context, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        async for msg in ctx:
            handled.append(msg.content)
            if msg.content % crash_every == crash_every - 1:
                raise RuntimeError("consumer crash")

    async with running(Scripted("metamanager", "meta", fragile), backoff_base=0.5, backoff_cap=2) as hive:
        for n in range(total):
            await hive.bus.send("metamanager", make_msg(n))
        with trio.fail_after(600):
            while len(handled) < total:
                await trio.sleep(1)
        assert hive.restarts("metamanager") == total // crash_every
    assert handled == list(range(total))


# --- clock -----------------------------------------------------------------------------------------------


async def test_now_ms_follows_trio_clock(autojump_clock: trio.testing.MockClock) -> None:
    async with running(Recorder("edged", "edged")) as hive:
        ctx = hive.context("edged")
        before = ctx.now_ms()
        await trio.sleep(90)
        assert ctx.now_ms() - before == 90_000
        reply = await hive.bus.send_sync("edged", make_msg(), timeout=1)
        assert reply.header.timestamp == ctx.now_ms()


async def test_injected_clock_is_used(autojump_clock: trio.testing.MockClock) -> None:
    async with running(Recorder("edged", "edged"), clock=lambda: 1_700_000_000_000) as hive:
        assert hive.context("edged").now_ms() == 1_700_000_000_000


# --- shutdown --------------------------------------------------------------------------------------------


def cleaning_module(cleanup_seconds: float, outcome: list[str]) -> Scripted:
    async def body(ctx: Context, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()
        try:
            await trio.sleep_forever()
        finally:
            with ctx.cleanup_scope():
                try:
                    await trio.sleep(cleanup_seconds)
                    outcome.append("done")
                except trio.Cancelled:
                    outcome.append("cancelled")
                    raise

    return Scripted("edged", "edged", body)


@pytest.mark.parametrize(("cleanup", "grace", "result", "took"), [(2, 5, "done", 2), (60, 5, "cancelled", 5)])
async def test_shutdown_grants_grace_then_hard_cancels(
    autojump_clock: trio.testing.MockClock, cleanup: float, grace: float, result: str, took: float
) -> None:
    outcome: list[str] = []
    hive = Beehive([cleaning_module(cleanup, outcome)], shutdown_timeout=grace)
    async with trio.open_nursery() as nursery:
        await nursery.start(hive.run)
        start = trio.current_time()
        hive.shutdown()
    assert trio.current_time() - start == pytest.approx(took)
    assert outcome == [result]
    assert hive.state("edged") is ModuleState.STOPPED


async def test_second_shutdown_cancels_cleanup_at_once(autojump_clock: trio.testing.MockClock) -> None:
    outcome: list[str] = []
    hive = Beehive([cleaning_module(60, outcome)], shutdown_timeout=30)
    async with trio.open_nursery() as nursery:
        await nursery.start(hive.run)
        start = trio.current_time()
        hive.shutdown()
        await trio.sleep(1)
        hive.shutdown()
    assert trio.current_time() - start == pytest.approx(1)
    assert outcome == ["cancelled"]


CHILD = """
import functools, sys, trio
from kubeedge.kit import beehive

class Sleeper:
    name = "edged"
    group = "edged"

    async def run(self, ctx, *, task_status=trio.TASK_STATUS_IGNORED):
        task_status.started()
        print("ready", flush=True)
        try:
            await trio.sleep_forever()
        finally:
            with ctx.cleanup_scope():
                try:
                    await trio.sleep(float(sys.argv[1]))
                    print("cleanup done", flush=True)
                except trio.Cancelled:
                    print("cleanup cancelled", flush=True)
                    raise

run = functools.partial(beehive.run_modules, [Sleeper()], shutdown_timeout=float(sys.argv[2]))
sys.exit(trio.run(run))
"""


async def run_child_until_signal(
    tmp_path: Path, signum: int, cleanup: float, grace: float
) -> tuple[int, str, float]:
    stderr_path = tmp_path / "stderr"
    with stderr_path.open("wb") as stderr:
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-c", CHILD, str(cleanup), str(grace)], stdout=subprocess.PIPE, stderr=stderr
        )
    assert proc.stdout is not None
    output = b""
    try:
        with trio.fail_after(30):
            while b"ready\n" not in output:
                chunk = await proc.stdout.receive_some()
                assert chunk, f"child exited before it was ready: {stderr_path.read_text()}"
                output += chunk
        proc.send_signal(signum)
        start = trio.current_time()
        with trio.fail_after(grace + 10):
            while chunk := await proc.stdout.receive_some():
                output += chunk
            code = await proc.wait()
        return code, output.decode(), trio.current_time() - start
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_signal_shuts_the_process_down_cleanly(tmp_path: Path, signum: int) -> None:
    code, output, took = await run_child_until_signal(tmp_path, signum, cleanup=0.2, grace=5)
    assert code == 0
    assert "cleanup done" in output
    assert took < 5


async def test_signal_shutdown_hard_cancels_after_the_deadline(tmp_path: Path) -> None:
    code, output, took = await run_child_until_signal(tmp_path, signal.SIGTERM, cleanup=60, grace=0.5)
    assert code == 0
    assert "cleanup cancelled" in output
    assert "cleanup done" not in output
    assert 0.5 <= took < 5


async def test_run_modules_returns_when_every_module_has_returned(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def one_shot(ctx: Context, task_status: trio.TaskStatus[None]) -> None:
        task_status.started()

    with trio.fail_after(5):
        code = await beehive.run_modules([Scripted("servicebus", "bus", one_shot)], shutdown_timeout=1)
    assert code == 0
