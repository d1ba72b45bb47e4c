"""Pod log lines in the TUI come from the real Docker engine, found by edged's pod-UID label."""

from __future__ import annotations

import dataclasses
import os
import uuid
from typing import Any

import pytest
from textual.widgets import Static

from kubeedge.kit import status as s
from kubeedge.tui.app import EdgeStatusApp, PodScreen
from kubeedge.tui.logs import CONTAINER_NAME_LABEL, TAIL_LINES, ContainerLog, docker_logs
from tests.conftest import TEST_LABEL
from tests.status_support import NOW, realistic_board, serving, short_socket_dir

from .conftest import first_refresh, run, text_of, wait_until

pytestmark = pytest.mark.docker


def crashed_container(client: Any, image: str, uid: str, name: str, script: str) -> Any:
    container = client.containers.run(
        image,
        ["sh", "-c", script],
        labels={TEST_LABEL: "1", s.POD_UID_LABEL: uid, CONTAINER_NAME_LABEL: name},
        detach=True,
    )
    container.wait(timeout=30)
    return container


def test_pod_detail_shows_the_last_log_lines_of_its_containers(
    docker_client: Any, busybox_image: str
) -> None:
    uid = str(uuid.uuid4())
    lines = "; ".join(f"echo reading sensor {i}" for i in range(40))
    container = crashed_container(
        docker_client, busybox_image, uid, "collector", f"{lines}; echo 'panic: sensor timeout'; exit 2"
    )
    board = realistic_board()
    board.pods = (board.pods[0], dataclasses.replace(board.pods[1], uid=uid), board.pods[2])

    async def body(path: str) -> None:
        app = EdgeStatusApp(path, clock=lambda: NOW, logs=docker_logs)
        async with app.run_test(size=(80, 24)) as pilot:
            await first_refresh(pilot)
            await pilot.press("2", "down", "enter")
            assert isinstance(app.screen, PodScreen)
            log = app.screen.query_one("#log-text", Static)
            # The Docker engine is shared and can be slow under load: a generous deadline.
            await wait_until(
                pilot,
                lambda: "panic" in text_of(log),
                lambda: f"log lines from Docker, saw {text_of(log)!r}",
                60,
            )
            text = text_of(log)
            assert text.startswith("── collector ──\n")
            assert text.rstrip("\n").endswith("panic: sensor timeout")
            assert text.count("reading sensor") == TAIL_LINES - 1  # the tail, not the whole log
            assert "reading sensor 39" in text
            assert "reading sensor 0\n" not in text

    try:
        with serving(board) as server:
            run(body(server.socket_path))
    finally:
        container.remove(force=True)


def test_docker_problems_are_explained_not_raised(
    docker_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert docker_logs(str(uuid.uuid4())) == [
        ContainerLog("docker", error="no Docker containers carry this pod's UID label")
    ]
    missing = os.path.join(short_socket_dir(), "docker.sock")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{missing}")
    assert docker_logs("x") == [
        ContainerLog("docker", error=f"Docker is not reachable: no socket at {missing}")
    ]
