"""Pilot tests of the edge status TUI against a real status server (trio, own thread) on a real unix socket:
every tab and key binding, detail screens, the filter, in-place refreshes and the offline behaviour."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
from typing import Any

import pytest
from textual.widgets import DataTable, Input, Static, TabbedContent

from kubeedge.kit import status as s
from kubeedge.tui.app import DeviceScreen, EdgeStatusApp, HelpScreen, KeyedTable, PodScreen
from kubeedge.tui.client import StatusClient, StatusUnavailable
from tests.status_support import NOW, offline_board, realistic_board, serving, short_socket_dir

from .conftest import first_refresh, run, text_of, wait_until


def cells(table: DataTable[Any], column: int) -> list[str]:
    return [str(table.get_row_at(i)[column]) for i in range(table.row_count)]


def app_for(path: str, **kwargs: Any) -> EdgeStatusApp:
    kwargs.setdefault("logs", None)
    return EdgeStatusApp(path, clock=lambda: NOW, **kwargs)


def test_every_tab_and_key_binding() -> None:
    async def body(path: str) -> None:
        app = app_for(path)
        async with app.run_test(size=(80, 24)) as pilot:
            await first_refresh(pilot)
            header = text_of(app.query_one("#header", Static))
            assert header == "edge-rpi-07 │ cloud connected 12m34s │ kubeedge-py 0.1.0 (edgecore v1.20.0)"
            assert not app.query_one("#header").has_class("offline")
            overview = text_of(app.query_one("#overview-text", Static))
            assert "3 (3 running, 15 restarts)  not ready: temp-collector" in overview
            assert "2 (1 online, 1 twins out of sync)" in overview
            assert "queued upstream 0" in overview
            tabs = app.query_one("#tabs", TabbedContent)

            await pilot.press("2")
            assert tabs.active == "pods"
            pods = app.query_one("#pods-table", KeyedTable)
            assert app.focused is pods
            assert cells(pods, 1) == ["nginx-edge", "temp-collector", "kube-vip (static)"]
            assert cells(pods, 3) == ["Running", "CrashLoopBackOff", "Running"]
            assert cells(pods, 2) == ["1/1", "0/1", "1/1"]
            await pilot.press("down")
            assert pods.cursor_row == 1
            await pilot.press("enter")
            assert isinstance(app.screen, PodScreen)
            containers = app.screen.query_one("#containers", KeyedTable)
            assert cells(containers, 0) == ["wait-broker (init)", "collector"]
            assert cells(containers, 4) == ["-", "Error exit 2"]
            assert cells(containers, 5) == ["-", "live:FAIL"]
            assert text_of(app.screen.query_one("#log-text", Static)) == "log lines are not available here"
            await pilot.press("escape")
            assert not isinstance(app.screen, PodScreen)

            await pilot.press("3")
            assert tabs.active == "devices"
            devices = app.query_one("#devices-table", KeyedTable)
            assert cells(devices, 0) == ["thermo-hall", "door-sensor"]
            assert cells(devices, 4) == ["online", "offline"]
            assert cells(devices, 5) == ["2/3", "1/1"]
            await pilot.press("enter")
            assert isinstance(app.screen, DeviceScreen)
            twins = app.screen.query_one("#twins", KeyedTable)
            assert cells(twins, 0) == ["temperature", "target", "fan"]
            assert cells(twins, 3) == ["yes", "yes", "NO"]
            await pilot.press("q")  # q closes a detail screen, it does not quit
            assert not isinstance(app.screen, DeviceScreen)
            assert app.is_running

            await pilot.press("4")
            link = dict(
                zip(
                    cells(app.query_one("#link-table", KeyedTable), 0),
                    cells(app.query_one("#link-table", KeyedTable), 1),
                    strict=True,
                )
            )
            assert link["state"] == "connected"
            assert link["reconnects"] == "3"
            assert link["last heartbeat"] == "23.4 ms round trip, 6s ago"
            assert link["expires"] == "2027-09-14T11:06:40Z (in 300d)"

            await pilot.press("5")
            events = app.query_one("#events-table", KeyedTable)
            assert cells(events, 3) == [
                "TwinUpdated",
                "BackOff",
                "OutboxDrained",
                "CloudConnected",
                "CloudDisconnected",
            ]
            await pilot.press("down", "enter")  # the whole event, however long its message
            await pilot.pause()
            shown = [(n.title, n.message) for n in app._notifications]
            assert (
                "warning from edged",
                "BackOff pod iot/temp-collector\nback-off restarting failed container collector",
            ) in shown

            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)
            assert "filter the rows" in text_of(app.screen.query_one("#help-text", Static))
            await pilot.press("escape")
            assert not isinstance(app.screen, HelpScreen)

            before = app.refreshes
            await pilot.press("r")
            await wait_until(pilot, lambda: app.refreshes > before, "a manual refresh")

            await pilot.press("1")
            assert tabs.active == "overview"
            await pilot.press("q")
            await pilot.pause()
        assert not app.is_running

    with serving(realistic_board()) as server:
        run(body(server.socket_path))


def test_filter_narrows_the_current_table_and_escape_clears_it() -> None:
    async def body(path: str) -> None:
        app = app_for(path)
        async with app.run_test(size=(80, 24)) as pilot:
            await first_refresh(pilot)
            filt = app.query_one("#filter", Input)
            await pilot.press("slash")  # nothing to filter on the Overview
            assert not filt.has_class("shown")
            assert app.focused is not filt
            await pilot.press("2", "slash")
            assert filt.has_class("shown")
            assert app.focused is filt
            await pilot.press(*"COLLECT")  # case-insensitive
            pods = app.query_one("#pods-table", KeyedTable)
            assert cells(pods, 1) == ["temp-collector"]
            await pilot.press("enter")
            assert app.focused is pods
            assert filt.has_class("shown")
            await pilot.press("enter")  # the filtered row opens
            assert isinstance(app.screen, PodScreen)
            assert app.screen.pod.name == "temp-collector"
            await pilot.press("escape")
            await pilot.press("3")  # the filter belongs to the pods table
            assert app.query_one("#devices-table", KeyedTable).row_count == 2
            assert not filt.has_class("shown")
            await pilot.press("2")
            assert filt.value == "COLLECT"
            assert pods.row_count == 1
            await pilot.press("escape")
            assert pods.row_count == 3
            assert not filt.has_class("shown")
            assert filt.disabled

    with serving(realistic_board()) as server:
        run(body(server.socket_path))


def test_refresh_updates_cells_in_place_and_keeps_the_cursor() -> None:
    async def body(server: Any) -> None:
        app = app_for(server.socket_path, interval=0.1)
        async with app.run_test(size=(80, 24)) as pilot:
            await first_refresh(pilot)
            await pilot.press("2", "down", "down")
            pods = app.query_one("#pods-table", KeyedTable)
            assert pods.selected_key() == "static-kube-vip-edge-rpi-07"
            rebuilds = pods.rebuilds
            board = server.board
            crashing = board.pods[1]
            collector = dataclasses.replace(crashing.containers[1], restarts=15)
            board.pods = (
                board.pods[0],
                dataclasses.replace(crashing, containers=(crashing.containers[0], collector)),
                board.pods[2],
            )
            await wait_until(pilot, lambda: cells(pods, 4)[1] == "15", "the restart count to change")
            assert pods.rebuilds == rebuilds  # only the cell changed
            assert pods.selected_key() == "static-kube-vip-edge-rpi-07"
            # A pod that goes away rebuilds the rows; the cursor stays on its pod.
            board.pods = (board.pods[0], board.pods[2])
            await wait_until(pilot, lambda: pods.row_count == 2, "the deleted pod to disappear")
            assert pods.rebuilds == rebuilds + 1
            assert pods.selected_key() == "static-kube-vip-edge-rpi-07"

    with serving(realistic_board()) as server:
        run(body(server))


def test_cloud_offline_is_red_with_its_duration() -> None:
    async def body(path: str) -> None:
        app = app_for(path)
        async with app.run_test(size=(80, 24)) as pilot:
            await first_refresh(pilot)
            header = app.query_one("#header", Static)
            assert (
                text_of(header) == "edge-rpi-07 │ CLOUD OFFLINE 5m12s │ kubeedge-py 0.1.0 (edgecore v1.20.0)"
            )
            assert header.has_class("offline")
            assert header.styles.background.rgb == (255, 0, 0)
            assert "queued upstream 27" in text_of(app.query_one("#overview-text", Static))

    with serving(offline_board()) as server:
        run(body(server.socket_path))


def test_edgecore_down_then_up_then_down_again() -> None:
    path = os.path.join(short_socket_dir(), "status.sock")

    async def body() -> None:
        app = app_for(path, interval=0.1)
        async with app.run_test(size=(80, 24)) as pilot:
            await first_refresh(pilot, data=False)
            header = app.query_one("#header", Static)
            banner = app.query_one("#banner", Static)
            assert header.has_class("offline")
            assert text_of(header) == "node unknown │ EDGECORE UNREACHABLE"
            assert text_of(banner).startswith(f"no status socket at {path}: is edgecore running")
            assert "retrying every 0.1 s" in text_of(banner)
            assert (
                text_of(app.query_one("#overview-text", Static))
                == "edgecore is not reachable; no status yet."
            )
            await pilot.press(
                "2", "enter", "slash", "escape", "3", "enter"
            )  # nothing to open; nothing breaks
            assert app.screen is app.screen_stack[0]

            with serving(realistic_board(), path):
                await wait_until(pilot, lambda: app.error is None, "edgecore to be reachable")
                await pilot.pause()
                assert not header.has_class("offline")
                assert not banner.has_class("shown")
                assert app.query_one("#devices-table", KeyedTable).row_count == 2

            await wait_until(pilot, lambda: app.error is not None, "edgecore to go away")
            await pilot.pause()
            assert header.has_class("offline")
            assert banner.has_class("shown")
            # The last data stays on screen while the TUI retries.
            assert app.query_one("#devices-table", KeyedTable).row_count == 2
            count = app.refreshes
            await wait_until(pilot, lambda: app.refreshes >= count + 2, "retries")

    run(body())


@pytest.mark.parametrize(
    ("answer", "message"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", "cannot read: <document>: not JSON"),
        (b'HTTP/1.1 200 OK\r\nContent-Length: 15\r\n\r\n{"schema":"v9"}', "expected 'v1', got 'v9'"),
        (b'HTTP/1.1 500 Oops\r\nContent-Length: 18\r\n\r\n{"error":"broken"}', "HTTP 500: broken"),
        (b"SSH-2.0-OpenSSH\r\n", "malformed HTTP answer"),
        (b"", "malformed HTTP answer"),
    ],
)
def test_client_turns_every_bad_answer_into_a_clear_error(answer: bytes, message: str) -> None:
    path = os.path.join(short_socket_dir(), "fake.sock")

    async def body() -> None:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(answer)
            await writer.drain()
            writer.close()

        server = await asyncio.start_unix_server(handle, path)
        async with server:
            with pytest.raises(StatusUnavailable) as info:
                await StatusClient(path).get(s.Snapshot)
        assert message in str(info.value)

    run(body())


def test_client_times_out_on_a_silent_server() -> None:
    path = os.path.join(short_socket_dir(), "silent.sock")

    async def body() -> None:
        release = asyncio.Event()
        done = asyncio.Event()

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                await reader.read(1)
                await release.wait()  # never answers while the client waits
            finally:
                writer.close()
                done.set()

        server = await asyncio.start_unix_server(handle, path)
        async with server:
            with pytest.raises(StatusUnavailable, match=r"did not answer on .* within 0\.3 s"):
                await StatusClient(path, timeout=0.3).get(s.Snapshot)
            release.set()
            await done.wait()

    run(body())


def test_command_lines() -> None:
    edgecore = "import sys; from kubeedge.cli.edgecore import main; sys.exit(main())"
    for argv in (["-m", "kubeedge.tui.app", "--help"], ["-c", edgecore, "tui", "--help"]):
        result = subprocess.run(
            [sys.executable, *argv], capture_output=True, text=True, timeout=60, check=False
        )
        assert result.returncode == 0, result.stderr
        assert "--socket" in result.stdout
        assert "--ansi" in result.stdout
    bad = subprocess.run(
        [sys.executable, "-c", edgecore, "--config", "/nonexistent", "tui", "--interval", "0"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert "--interval must be a positive number of seconds, got 0" in bad.stderr
