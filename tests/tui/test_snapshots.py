"""Snapshot tests (pytest-textual-snapshot) of the main screens at 80x24, fed by a real status server serving
the deterministic board (fixed clock, fixed data). Update with ``pytest tests/tui --snapshot-update``."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from textual.pilot import Pilot

from kubeedge.tui.app import EdgeStatusApp
from tests.status_support import NOW, ServerThread, offline_board, realistic_board, serving

from .conftest import first_refresh

SIZE = (80, 24)


@pytest.fixture
def live() -> Iterator[ServerThread]:
    with serving(realistic_board()) as server:
        yield server


def app_on(path: str) -> EdgeStatusApp:
    # Later refreshes may happen while the picture is taken: the board and the clock are fixed, so they draw
    # the same screen.
    return EdgeStatusApp(path, clock=lambda: NOW, logs=None, ansi=False)


def after_refresh(*keys: str, data: bool = True) -> Callable[[Pilot[Any]], Any]:
    async def run_before(pilot: Pilot[Any]) -> None:
        await first_refresh(pilot, data=data)
        await pilot.press(*keys)
        await pilot.pause()

    return run_before


def test_overview(snap_compare: Any, live: ServerThread) -> None:
    assert snap_compare(app_on(live.socket_path), terminal_size=SIZE, run_before=after_refresh())


def test_pods(snap_compare: Any, live: ServerThread) -> None:
    assert snap_compare(app_on(live.socket_path), terminal_size=SIZE, run_before=after_refresh("2", "down"))


def test_pod_detail(snap_compare: Any, live: ServerThread) -> None:
    assert snap_compare(
        app_on(live.socket_path), terminal_size=SIZE, run_before=after_refresh("2", "down", "enter")
    )


def test_devices(snap_compare: Any, live: ServerThread) -> None:
    assert snap_compare(app_on(live.socket_path), terminal_size=SIZE, run_before=after_refresh("3"))


def test_device_detail(snap_compare: Any, live: ServerThread) -> None:
    assert snap_compare(app_on(live.socket_path), terminal_size=SIZE, run_before=after_refresh("3", "enter"))


def test_link(snap_compare: Any, live: ServerThread) -> None:
    assert snap_compare(app_on(live.socket_path), terminal_size=SIZE, run_before=after_refresh("4"))


def test_events(snap_compare: Any, live: ServerThread) -> None:
    assert snap_compare(app_on(live.socket_path), terminal_size=SIZE, run_before=after_refresh("5"))


def test_cloud_offline(snap_compare: Any) -> None:
    with serving(offline_board()) as server:
        assert snap_compare(app_on(server.socket_path), terminal_size=SIZE, run_before=after_refresh())


def test_edgecore_unreachable(snap_compare: Any) -> None:
    # A fixed path, so that the message on screen (which names it) is the same on every run.
    path = "/tmp/kubeedge-tui-snapshot-test/missing.sock"
    assert not os.path.exists(path)
    assert snap_compare(app_on(path), terminal_size=SIZE, run_before=after_refresh(data=False))


def test_cloud_offline_in_16_colours(snap_compare: Any) -> None:
    with serving(offline_board()) as server:
        app = EdgeStatusApp(server.socket_path, clock=lambda: NOW, logs=None, ansi=True)
        assert snap_compare(app, terminal_size=SIZE, run_before=after_refresh())
        assert app.theme == "ansi-dark"
