"""Helpers for the TUI tests: the app runs on asyncio (Textual's loop) in the test's thread, the status
server on trio in its own thread, talking over a real unix socket, as in production (two processes)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from textual.pilot import Pilot
from textual.widgets import Static

DEADLINE = 15.0


def run(coro: Coroutine[Any, Any, None], timeout: float = 60.0) -> None:
    """Run an asyncio test body with a deadline (pytest's own loop is trio's)."""

    async def bounded() -> None:
        await asyncio.wait_for(coro, timeout)

    asyncio.run(bounded())


async def wait_until(
    pilot: Pilot[Any], pred: Callable[[], bool], what: str | Callable[[], str], timeout: float = DEADLINE
) -> None:
    """Let the app run until ``pred()`` holds; fail naming ``what`` (or what it returns then) after ``timeout``
    seconds."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what() if callable(what) else what}")
        await pilot.pause(0.02)


async def first_refresh(pilot: Pilot[Any], *, data: bool = True) -> None:
    """Wait for the first refresh; with ``data``, for the first one that read the status (a loaded machine may
    time out a request, and the TUI then simply retries)."""
    app: Any = pilot.app
    if data:
        await wait_until(
            pilot, lambda: app.snapshot is not None, lambda: f"status data, last error {app.error!r}", 60
        )
    else:
        await wait_until(pilot, lambda: app.refreshes >= 1, "the first refresh")
    await pilot.pause()


def text_of(widget: Static) -> str:
    """The plain text a Static shows."""
    return str(widget.content)


Waiter = Callable[[Pilot[Any]], Awaitable[None]]
