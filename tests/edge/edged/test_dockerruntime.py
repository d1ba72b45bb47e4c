"""The Docker runtime shell on the real engine: labels, listing only what is ours, stop semantics, images."""

from __future__ import annotations

import socket
import uuid
from pathlib import Path
from typing import Any

import pytest
import trio

from kubeedge.edge.edged import runtime as rt
from kubeedge.edge.edged.dockerruntime import DockerRuntime, parse_time
from kubeedge.kit import images
from tests.conftest import TEST_LABEL


def test_parse_docker_times() -> None:
    assert parse_time("0001-01-01T00:00:00Z") == 0.0
    assert parse_time("") == 0.0
    assert parse_time("2024-01-02T03:04:05.123456789Z") == pytest.approx(1704164645.123456789)
    assert parse_time("2024-01-02T03:04:05Z") == 1704164645.0
    assert parse_time("2024-01-02T04:04:05.5+01:00") == pytest.approx(1704164645.5)


@pytest.mark.docker
async def test_runtimes_of_two_nodes_on_one_engine_never_see_each_others_containers(
    docker_client: Any, busybox_image: str
) -> None:
    mine, theirs = DockerRuntime(docker_client, node="edge-a"), DockerRuntime(docker_client, node="edge-b")
    pod = rt.PodRef(str(uuid.uuid4()), "two-nodes", "default")
    with trio.fail_after(60):
        await mine.prepare_sandbox_image(images.PAUSE_TAG)
        sandbox = await mine.create_sandbox(rt.SandboxSpec(pod, 0, images.PAUSE_TAG, "two-nodes", False))
        try:
            assert sandbox.id in {r.id for r in await mine.list_containers()}
            assert sandbox.id not in {r.id for r in await theirs.list_containers()}
            labels = docker_client.api.inspect_container(sandbox.id)["Config"]["Labels"]
            assert labels[rt.LABEL_NODE] == "edge-a"
        finally:
            docker_client.api.remove_container(sandbox.id, force=True)


@pytest.mark.docker
async def test_runtime_creates_lists_and_stops_only_its_own(docker_client: Any, busybox_image: str) -> None:
    runtime = DockerRuntime(docker_client)
    pod = rt.PodRef(str(uuid.uuid4()), "rt-test", "default")
    foreign = docker_client.containers.run(
        busybox_image, ["sleep", "60"], detach=True, labels={TEST_LABEL: "1"}
    )
    try:
        with trio.fail_after(60):
            await runtime.prepare_sandbox_image(images.PAUSE_TAG)
            sandbox = await runtime.create_sandbox(rt.SandboxSpec(pod, 0, images.PAUSE_TAG, "rt-test", False))
            assert sandbox.running
            assert sandbox.ip
            spec = rt.CreateSpec(
                pod,
                "sleeper",
                rt.ContainerKind.APP,
                3,
                busybox_image,
                sandbox.id,
                command=("sleep", "60"),
                spec_hash="h1",
            )
            app_id = await runtime.create_container(spec)
            listed = {r.id: r for r in await runtime.list_containers() if r.pod_uid == pod.uid}
            assert set(listed) == {sandbox.id, app_id}
            assert foreign.id not in {r.id for r in await runtime.list_containers()}
            app = listed[app_id]
            assert (app.container_name, app.kind, app.attempt, app.spec_hash, app.sandbox_id) == (
                "sleeper",
                rt.ContainerKind.APP,
                3,
                "h1",
                sandbox.id,
            )
            assert app.image_id.startswith("sha256:")

            # sleep as PID 1 ignores SIGTERM: stop waits the grace period, then SIGKILLs.
            start = trio.current_time()
            await runtime.stop_container(app_id, 1)
            assert 0.9 <= trio.current_time() - start < 5
            exited = {r.id: r for r in await runtime.list_containers()}[app_id]
            assert (exited.state, exited.exit_code, exited.reason) == (rt.ContainerState.EXITED, 137, "Error")
            # The sandbox exits on SIGTERM at once.
            start = trio.current_time()
            await runtime.stop_container(sandbox.id, 30)
            assert trio.current_time() - start < 5
            await runtime.stop_container(sandbox.id, 30)  # already stopped: fine
            for record_id in (app_id, sandbox.id):
                await runtime.remove_container(record_id)
            await runtime.remove_container(app_id)  # already gone: fine
            assert not [r for r in await runtime.list_containers() if r.pod_uid == pod.uid]
            version = await runtime.version()
            assert version.name == "docker"
            assert version.version
            used, total = await runtime.image_fs_usage()
            assert 0 < used <= total
    finally:
        foreign.remove(force=True)
        for container in docker_client.containers.list(
            all=True, filters={"label": f"{rt.LABEL_POD_UID}={pod.uid}"}
        ):
            container.remove(force=True)


@pytest.mark.docker
async def test_image_policies(docker_client: Any, busybox_image: str) -> None:
    runtime = DockerRuntime(docker_client)
    with trio.fail_after(30):
        image_id = await runtime.ensure_image(busybox_image, pull_always=False, pull_allowed=False)
        assert image_id.startswith("sha256:")
        with pytest.raises(rt.ImagePullError, match="not present with pull policy of Never") as never:
            await runtime.ensure_image("kubeedge-py/absent:1", pull_always=False, pull_allowed=False)
        assert never.value.reason == "ErrImageNeverPull"
        with pytest.raises(rt.ImagePullError, match="connection refused") as refused:
            await runtime.ensure_image("127.0.0.1:1/absent:1", pull_always=False, pull_allowed=True)
        assert refused.value.reason == "ErrImagePull"
        assert busybox_image in {t for i in await runtime.list_images() for t in i.tags}


async def _dropping_engine(listener: trio.SocketListener) -> None:
    """A Docker engine that dies mid-answer: the event stream breaks inside a chunk, anything else is hung up."""
    while True:
        stream = await listener.accept()
        async with stream:
            request = await stream.receive_some(65536)
            if b"/events" in request.split(b"\r\n", 1)[0]:
                await stream.send_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b'Transfer-Encoding: chunked\r\n\r\n40\r\n{"id": "abc'
                )


async def test_an_engine_dropping_connections_is_a_runtime_failure_never_a_crash(tmp_path: Path) -> None:
    # requests/urllib3 errors are not DockerExceptions; uncaught, they used to crash (and restart) edged.
    import docker

    path = tmp_path / "docker.sock"
    sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    await sock.bind(str(path))
    sock.listen(8)
    client = docker.DockerClient(base_url=f"unix://{path}", version="1.41", timeout=5)
    try:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_dropping_engine, trio.SocketListener(sock))
            runtime = DockerRuntime(client, node="edge-a")
            with trio.fail_after(20):
                with pytest.raises(rt.RuntimeFailure, match="unreachable"):
                    await runtime.list_containers()
                with pytest.raises(rt.RuntimeFailure, match="unreachable"):
                    await runtime.remove_container("abc")
                with pytest.raises(rt.RuntimeFailure, match="event stream"):
                    await runtime.watch_events(lambda _id: None)
            nursery.cancel_scope.cancel()
    finally:
        sock.close()
        client.close()


@pytest.mark.docker
async def test_a_hung_exec_ends_at_its_timeout_and_never_holds_a_runtime_thread(
    docker_client: Any, busybox_image: str
) -> None:
    # An exec probe that hangs used to hold one of the runtime's few threads past its own timeout: enough of
    # them starved the relists, kills and removals of every pod (deletions stalled).
    target = docker_client.containers.run(
        busybox_image, ["sleep", "120"], detach=True, labels={TEST_LABEL: "1"}
    )
    runtime = DockerRuntime(docker_client, limiter=trio.CapacityLimiter(1))
    try:
        with trio.fail_after(20):
            began = trio.current_time()
            with trio.move_on_after(1) as hung:
                await runtime.exec(target.id, ("sleep", "60"))
            assert hung.cancelled_caught
            assert trio.current_time() - began < 5
            # The command still runs inside the container, yet the runtime's only thread is free...
            assert (await runtime.version()).name == "docker"
            # ...and another exec gets its answer.
            result = await runtime.exec(target.id, ("echo", "hi"))
            assert (result.exit_code, result.output) == (0, b"hi\n")
    finally:
        target.remove(force=True)
