"""Fixtures for real services: the Docker engine and a mosquitto broker on a free loopback port.

The test command (scripts/test) installs and starts what these need. A test
that needs a service which cannot be reached fails; it never skips.
Everything a test creates in Docker carries the label ``io.kubeedge-py.test``.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

TEST_LABEL = "io.kubeedge-py.test"

settings.register_profile("ci", max_examples=200, deadline=None)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile("ci" if os.environ.get("CI") == "true" else "dev")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free on ``host`` a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, timeout: float) -> None:
    """Poll until ``host:port`` accepts a TCP connection or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    """A ``docker.DockerClient`` for the real engine; fails the test if the engine is unreachable."""
    import docker

    try:
        client = docker.from_env(timeout=60)
        client.ping()
    except Exception as exc:
        pytest.fail(f"the Docker engine is not reachable ({exc}); scripts/test starts dockerd")
    yield client
    for container in client.containers.list(all=True, filters={"label": TEST_LABEL}):
        container.remove(force=True)
    client.close()


@pytest.fixture(scope="session")
def busybox_image(docker_client: Any) -> str:
    """Tag of a local busybox image built from the host's busybox-static (no registry needed)."""
    from kubeedge.kit import images

    images.ensure_busybox_image(docker_client)
    return images.BUSYBOX_TAG


@dataclass(frozen=True)
class Broker:
    """A running mosquitto broker on loopback."""

    host: str
    port: int

    @property
    def url(self) -> str:
        """``tcp://host:port`` as upstream's ``mqttServerExternal`` spells it."""
        return f"tcp://{self.host}:{self.port}"


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A private mosquitto on a free 127.0.0.1 port for the whole session."""
    binary = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None
    )
    if binary is None:
        pytest.fail("mosquitto is not installed; scripts/test installs the Debian package")
    folder = tmp_path_factory.mktemp("mosquitto")
    port = free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        f"log_dest file {folder / 'mosquitto.log'}\n"
    )
    stderr_path = folder / "stderr.log"
    with stderr_path.open("wb") as stderr:
        proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        wait_for_port("127.0.0.1", port, timeout=15)
    except OSError:
        proc.kill()
        proc.wait(timeout=5)
        pytest.fail(f"mosquitto did not start on 127.0.0.1:{port}: {stderr_path.read_text(errors='replace')}")
    yield Broker("127.0.0.1", port)
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)
