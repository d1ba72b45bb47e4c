"""The status API over a real unix socket: endpoints and schema, read-only methods, bounds, file permissions,
socket-path safety, connection limits and provider failures."""

from __future__ import annotations

import dataclasses
import grp
import json
import os
import socket
import stat
from pathlib import Path

import pytest
import trio

from kubeedge.edge.status.board import StatusBoard
from kubeedge.edge.status.server import SOCKET_MODE, StatusServer, StatusServerError, resolve_group
from kubeedge.kit import limits
from kubeedge.kit import status as s
from tests.status_support import NOW, realistic_board

from .conftest import DEADLINE, get, request, serving


@pytest.mark.parametrize("path", sorted(s.ENDPOINTS))
async def test_every_endpoint_serves_its_documented_type(sock_path: str, path: str) -> None:
    board = realistic_board()
    with trio.fail_after(DEADLINE):
        async with serving(board, sock_path):
            answer = await get(sock_path, path)
    assert answer.status == 200
    assert answer.headers["content-type"] == "application/json"
    assert answer.headers["connection"] == "close"
    assert int(answer.headers["content-length"]) == len(answer.body)
    doc = s.loads(s.ENDPOINTS[path], answer.body)
    assert doc == s.documents(board.snapshot())[path]


async def test_status_document_carries_every_section(sock_path: str) -> None:
    with trio.fail_after(DEADLINE):
        async with serving(realistic_board(), sock_path):
            doc = s.loads(s.Snapshot, (await get(sock_path, "/v1/status")).body)
    assert doc.generated_at == NOW
    assert doc.node.name == "edge-rpi-07"
    assert [c.type for c in doc.node.conditions] == ["Ready", "MemoryPressure", "DiskPressure"]
    assert doc.link.state is s.LinkState.CONNECTED
    assert doc.link.certificate.not_after == NOW + 300 * 86400
    assert {p.name for p in doc.pods} == {"nginx-edge", "temp-collector", "kube-vip"}
    assert doc.pods[1].containers[1].last_termination_reason == "Error"
    assert doc.devices[0].twins[2] == s.TwinStatus("fan", "on", "off", NOW - 20, NOW - 400)
    assert doc.mqtt.messages_in == 18234
    assert doc.meta.db_bytes == 3_407_872
    assert [e.reason for e in doc.events][-1] == "TwinUpdated"


async def test_query_strings_and_trailing_slashes_are_ignored(sock_path: str) -> None:
    with trio.fail_after(DEADLINE):
        async with serving(realistic_board(), sock_path):
            answer = await get(sock_path, "/v1/pods/?watch=true")
    assert answer.status == 200
    assert len(s.loads(s.PodList, answer.body).pods) == 3


async def test_head_has_headers_and_no_body(sock_path: str) -> None:
    with trio.fail_after(DEADLINE):
        async with serving(realistic_board(), sock_path):
            head = await get(sock_path, "/v1/link", method="HEAD")
            full = await get(sock_path, "/v1/link")
    assert head.status == 200
    assert head.body == b""
    assert head.headers["content-length"] == str(len(full.body))


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
async def test_write_methods_are_refused(sock_path: str, method: str) -> None:
    board = realistic_board()
    before = board.snapshot()
    with trio.fail_after(DEADLINE):
        async with serving(board, sock_path):
            raw = f"{method} /v1/pods HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{{}}".encode()
            answer = await request(sock_path, raw, method)
    assert answer.status == 405
    assert answer.headers["allow"] == "GET, HEAD"
    assert "read-only" in json.loads(answer.body)["error"]
    assert board.snapshot() == before


async def test_unknown_paths_get_404_listing_the_endpoints(sock_path: str) -> None:
    with trio.fail_after(DEADLINE):
        async with serving(realistic_board(), sock_path):
            answer = await get(sock_path, "/v2/status")
    assert answer.status == 404
    data = json.loads(answer.body)
    assert data["endpoints"] == sorted(s.ENDPOINTS)
    assert "/v2/status" in data["error"]


async def test_garbage_and_oversized_requests_are_answered_and_dropped(sock_path: str) -> None:
    with trio.fail_after(DEADLINE):
        async with serving(realistic_board(), sock_path) as server:
            bad = await request(sock_path, b"\x16\x03\x01 not http at all\r\n\r\n")
            huge = b"GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Fill: " + b"a" * (
                limits.STATUS_MAX_REQUEST_BYTES * 2
            )
            big = await request(sock_path, huge + b"\r\n\r\n")
            # A client that connects and says nothing is closed after the request timeout, others go on.
            silent = await trio.open_unix_socket(sock_path)
            ok = await get(sock_path, "/v1/status")
            await silent.aclose()
    assert bad.status == 400
    assert big.status in (400, 431)
    assert ok.status == 200
    assert server.served == 3


async def test_connections_beyond_the_limit_get_503(sock_path: str) -> None:
    with trio.fail_after(DEADLINE):
        async with serving(realistic_board(), sock_path) as server:
            idle = [await trio.open_unix_socket(sock_path) for _ in range(limits.STATUS_MAX_CONNECTIONS)]
            # Wait until the server has accepted every idle connection.
            while server._active < limits.STATUS_MAX_CONNECTIONS:
                await trio.sleep(0.005)
            refused = await get(sock_path, "/v1/status")
            for stream in idle:
                await stream.aclose()
            while server._active:
                await trio.sleep(0.005)
            ok = await get(sock_path, "/v1/status")
    assert refused.status == 503
    assert server.refused == 1
    assert ok.status == 200


async def test_responses_are_bounded_for_a_huge_board(sock_path: str) -> None:
    board = realistic_board()
    base = board.pods[1]
    board.pods = tuple(
        dataclasses.replace(base, uid=f"u{i}", name=f"pod-{i}" + "n" * 2000, message="m" * 5000)
        for i in range(2000)
    )
    board.devices = tuple(
        dataclasses.replace(board.devices[0], id=f"d{i}", twins=board.devices[0].twins * 100)
        for i in range(3000)
    )
    for i in range(1000):
        board.event(s.Severity.WARNING, "edged", "BackOff", "x" * 10_000, f"pod {i}")
    with trio.fail_after(DEADLINE * 3):
        async with serving(board, sock_path):
            answers = {path: await get(sock_path, path) for path in s.ENDPOINTS}
    for path, answer in answers.items():
        assert answer.status == 200, path
        assert len(answer.body) <= limits.STATUS_MAX_RESPONSE_BYTES, path
    doc = s.loads(s.Snapshot, answers["/v1/status"].body)
    assert {"pods", "devices"} <= set(doc.truncated)
    assert len(doc.pods) <= limits.STATUS_MAX_PODS
    assert all(len(d.twins) <= limits.STATUS_MAX_TWINS for d in doc.devices)
    assert all(len(p.name) <= limits.STATUS_MAX_STRING for p in doc.pods)
    assert len(doc.events) <= limits.STATUS_EVENTS
    assert doc.events[-1].object == "pod 999"  # newest events survive


# --- the socket file -----------------------------------------------------------------------------------------


async def test_socket_is_0660_root_and_the_configured_group(sock_path: str) -> None:
    group = grp.getgrgid(1).gr_name  # Debian's "daemon": any group other than root's shows the chown
    with trio.fail_after(DEADLINE):
        async with serving(realistic_board(), sock_path, group=group):
            st = os.stat(sock_path)
            parent = os.stat(os.path.dirname(sock_path))
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == SOCKET_MODE == 0o660
    assert st.st_uid == os.geteuid() == 0
    assert st.st_gid == 1
    assert stat.S_IMODE(parent.st_mode) == 0o755
    assert not os.path.exists(sock_path)  # removed on exit
    assert not [p for p in os.listdir(os.path.dirname(sock_path)) if p.endswith(".tmp")]


async def test_numeric_group_and_unknown_group(sock_path: str) -> None:
    assert resolve_group("50") == 50
    assert resolve_group("root") == 0
    with pytest.raises(StatusServerError, match="no group named 'no-such-group-x'"):
        await StatusServer(StatusBoard(), sock_path, group="no-such-group-x").serve()
    assert not os.path.exists(sock_path)


async def test_a_regular_file_at_the_path_is_never_replaced(sock_path: str) -> None:
    Path(sock_path).parent.mkdir(parents=True)
    Path(sock_path).write_text("important")
    with pytest.raises(StatusServerError, match="exists and is not a socket"):
        await StatusServer(StatusBoard(), sock_path).serve()
    assert Path(sock_path).read_text() == "important"


async def test_a_stale_socket_is_replaced_but_a_live_one_is_refused(sock_path: str) -> None:
    Path(sock_path).parent.mkdir(parents=True)
    stale = socket.socket(socket.AF_UNIX)
    stale.bind(sock_path)
    stale.close()  # the file stays, nobody listens: what a crashed edgecore leaves
    with trio.fail_after(DEADLINE):
        async with serving(realistic_board(), sock_path):
            assert (await get(sock_path, "/v1/link")).status == 200
            with pytest.raises(StatusServerError, match="served by another process"):
                await StatusServer(StatusBoard(), sock_path).serve()
            assert (await get(sock_path, "/v1/link")).status == 200


# --- providers -----------------------------------------------------------------------------------------------


async def test_providers_refresh_before_rendering_at_most_once_per_interval(sock_path: str) -> None:
    board = realistic_board()
    calls: list[float] = []

    async def mqtt_counter(b: StatusBoard) -> None:
        calls.append(trio.current_time())
        b.mqtt = dataclasses.replace(b.mqtt, messages_in=len(calls))

    board.add_provider("mqtt", mqtt_counter)
    with trio.fail_after(DEADLINE):
        async with serving(board, sock_path):
            first = s.loads(s.Snapshot, (await get(sock_path, "/v1/status")).body)
            second = s.loads(s.Snapshot, (await get(sock_path, "/v1/status")).body)
            board._refreshed_at = None  # as if min_refresh had passed
            third = s.loads(s.Snapshot, (await get(sock_path, "/v1/status")).body)
    assert (first.mqtt.messages_in, second.mqtt.messages_in, third.mqtt.messages_in) == (1, 1, 2)


async def test_a_failing_provider_is_a_warning_event_not_an_error(sock_path: str) -> None:
    board = realistic_board()

    async def broken(b: StatusBoard) -> None:
        raise OSError("disk on fire")

    board.add_provider("meta", broken)
    board.min_refresh = 0
    with trio.fail_after(DEADLINE):
        async with serving(board, sock_path):
            answers = [await get(sock_path, "/v1/events") for _ in range(3)]
    assert [a.status for a in answers] == [200, 200, 200]
    events = s.loads(s.EventList, answers[-1].body).events
    failures = [e for e in events if e.reason == "ProviderFailed"]
    assert len(failures) == 1  # reported once while it keeps failing the same way
    assert failures[0].severity is s.Severity.WARNING
    assert failures[0].message == "meta: OSError: disk on fire"
