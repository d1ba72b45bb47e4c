"""Fixtures for the embedded API server: a real server on 127.0.0.1 port 0 in a trio thread, real clients.

One server per test module (module-scoped fixture); each has its own data
folder. Clients are the ``kubernetes`` Python package and the real ``kubectl``
from this virtualenv, both driven by the kubeconfig the server wrote.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trio

from kubeedge.apiserver import server

KUBECTL = str(Path(sys.prefix) / "bin" / "kubectl")


class ServerThread:
    """Runs ``server.serve`` under ``trio.run`` in a thread; ``stop()`` cancels it and joins."""

    def __init__(self, settings: server.Settings) -> None:
        self.settings = settings
        self.running: server.Running | None = None
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="apiserver", daemon=True)
        self._token: trio.lowlevel.TrioToken | None = None
        self._scope: trio.CancelScope | None = None

    def _run(self) -> None:
        try:
            trio.run(self._main)
        except BaseException as exc:
            self.error = exc
        finally:
            self._ready.set()

    async def _main(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        with trio.CancelScope() as scope:
            self._scope = scope
            async with trio.open_nursery() as nursery:
                self.running = await nursery.start(server.serve, self.settings)
                self._ready.set()

    def start(self) -> server.Running:
        """Start and wait (at most 30 s) until the server listens."""
        self._thread.start()
        if not self._ready.wait(30) or self.running is None:
            raise RuntimeError(f"apiserver did not start: {self.error!r}")
        return self.running

    def stop(self) -> None:
        """Cancel the server and wait for its thread."""
        if self._token is not None and self._scope is not None and self._thread.is_alive():
            trio.from_thread.run_sync(self._scope.cancel, trio_token=self._token)
        self._thread.join(15)
        assert not self._thread.is_alive(), "apiserver thread did not stop"


@dataclass
class Cluster:
    """A running server and what clients need to reach it."""

    running: server.Running
    data_dir: Path
    home: Path
    thread: ServerThread

    @property
    def kubeconfig(self) -> Path:
        return self.running.kubeconfig

    def api_client(self) -> Any:
        """A ``kubernetes.client.ApiClient`` configured from the written kubeconfig."""
        from kubernetes import config

        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def kubectl(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 60) -> str:
        """Run the real kubectl with the written kubeconfig; returns stdout (raises with stderr on failure)."""
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig), "HOME": str(self.home)}
        proc = subprocess.run(
            [KUBECTL, *args],
            input=input,
            capture_output=True,
            text=True,
            env=env,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({proc.returncode}): {proc.stderr}")
        return proc.stdout if check else proc.stdout + proc.stderr


def start_cluster(tmp: Path, **overrides: Any) -> Cluster:
    """Start a server with its data under ``tmp``."""
    settings = server.Settings(data_dir=tmp / "data", port=0, **overrides)
    thread = ServerThread(settings)
    running = thread.start()
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    return Cluster(running, settings.data_dir, home, thread)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """One running API server for the whole test module."""
    c = start_cluster(tmp_path_factory.mktemp("apiserver"), watch_window=50, bookmark_interval_s=0.5)
    try:
        yield c
    finally:
        c.thread.stop()
