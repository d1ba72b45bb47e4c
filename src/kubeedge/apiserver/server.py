"""Assembly of the embedded API server: settings, files on disk, bootstrap objects, the trio service.

``serve(settings)`` is the supervised service (``task_status.started`` gets a
:class:`Running`). Files under ``data_dir``: ``state.db`` (SQLite, all
objects), ``pki/`` (CA, serving certificate, admin token, token signing key);
the kubeconfig goes to ``settings.kubeconfig`` (default
``<data_dir>/kubeconfig.yaml``) and is rewritten on every start with the
actual port. Bootstrap creates the ``default``, ``kube-system``,
``kube-node-lease`` and ``kubeedge`` namespaces and applies the bundled CRDs
through the same REST path a client would use. Bad settings raise
:class:`ValueError` naming the field before anything is written.
"""

from __future__ import annotations

import functools
import json
import random
import time
from dataclasses import dataclass
from importlib import resources as importlib_resources
from pathlib import Path
from typing import Any

import trio
import yaml

from kubeedge.apiserver import pki as pki_mod
from kubeedge.apiserver import scheduler
from kubeedge.apiserver.api import CRD_KEY, Api, Request, Response
from kubeedge.apiserver.http import ChangeSignal, handle_stream, server_ssl_context
from kubeedge.apiserver.storage import Store
from kubeedge.kit import limits, log

_log = log.get(__name__)

BOOTSTRAP_NAMESPACES = ("default", "kube-system", "kube-node-lease", "kube-public", "kubeedge")


@dataclass(frozen=True)
class Settings:
    """What the embedded API server needs; cloudcore maps its ``embeddedAPIServer`` section onto this."""

    data_dir: Path
    """Folder for ``state.db`` and ``pki/`` (created 0700 if missing)."""
    address: str = "127.0.0.1"
    """Listen address (upstream kube-apiserver binds 0.0.0.0; we default to loopback)."""
    port: int = 6443
    """Listen port (kube-apiserver's 6443); 0 picks a free port."""
    kubeconfig: Path | None = None
    """Where to write the admin kubeconfig (default ``<data_dir>/kubeconfig.yaml``)."""
    max_body_bytes: int = limits.APISERVER_MAX_BODY
    """Largest request body accepted (413 above it)."""
    scheduler: bool = True
    """Run the built-in scheduler (embedded control plane mode)."""
    bookmark_interval_s: float = 60.0
    """Seconds between BOOKMARK events on watches that allow them (kube-apiserver: about a minute)."""
    watch_window: int = limits.APISERVER_WATCH_WINDOW
    """Change events kept for watch resumption; older resourceVersions get 410 Gone."""

    def validate(self) -> None:
        """Raise ValueError naming the first bad field."""
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535, not {self.port}")
        if not 1024 <= self.max_body_bytes <= 64 * limits.MiB:
            raise ValueError(f"maxRequestBodyBytes must be 1 KiB..64 MiB, not {self.max_body_bytes}")
        if not self.address:
            raise ValueError("address must not be empty")
        if not 1 <= self.watch_window <= 10 * limits.APISERVER_WATCH_WINDOW:
            raise ValueError(
                f"watch window must be 1..{10 * limits.APISERVER_WATCH_WINDOW}, not {self.watch_window}"
            )
        if self.bookmark_interval_s <= 0:
            raise ValueError("bookmark interval must be positive")


@dataclass(frozen=True)
class Running:
    """A started server."""

    url: str
    port: int
    kubeconfig: Path
    ca_cert: Path
    token: str


def _client_host(address: str) -> str:
    if address in ("0.0.0.0", ""):
        return "127.0.0.1"
    if address == "::":
        return "[::1]"
    return f"[{address}]" if ":" in address else address


def bundled_crds() -> list[dict[str, Any]]:
    """The CRD manifests shipped in ``kubeedge/apiserver/crds``."""
    out: list[dict[str, Any]] = []
    folder = importlib_resources.files("kubeedge.apiserver").joinpath("crds")
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.name.endswith((".yaml", ".yml")):
            out.extend(d for d in yaml.safe_load_all(entry.read_text()) if isinstance(d, dict))
    return out


def bootstrap(api: Api, token: str) -> None:
    """Create the standard namespaces and apply the bundled CRDs (create, or update when changed)."""
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}

    def call(method: str, path: str, body: Any = None) -> Response:
        req = Request(method, path, {}, headers, json.dumps(body).encode() if body is not None else b"")
        result = api.handle(req)
        assert isinstance(result, Response)
        return result

    for ns in BOOTSTRAP_NAMESPACES:
        resp = call(
            "POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
        )
        if resp.status not in (201, 409):
            raise RuntimeError(f"bootstrap of namespace {ns} failed: {resp.body[:300]!r}")
    for crd in bundled_crds():
        name = crd["metadata"]["name"]
        current = api.store.get(CRD_KEY, "", name)
        if current is None:
            resp = call("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
        elif current.get("spec") != {**current.get("spec", {}), **crd["spec"]}:
            resp = call(
                "PATCH",
                f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}",
                {"spec": crd["spec"]},
            )
        else:
            continue
        if resp.status not in (200, 201):
            raise RuntimeError(f"bootstrap of CRD {name} failed: {resp.body[:300]!r}")


async def serve(
    settings: Settings, *, task_status: trio.TaskStatus[Running] = trio.TASK_STATUS_IGNORED
) -> None:
    """Run the API server until cancelled."""
    settings.validate()
    data_dir = settings.data_dir
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    pki = await trio.to_thread.run_sync(pki_mod.ensure, data_dir / "pki", settings.address)
    store = Store(data_dir / "state.db", window=settings.watch_window)
    try:
        api = Api(
            store, token=pki.token, signing_key=pki.signing_key, now=time.time, rng=random.SystemRandom()
        )
        bootstrap(api, pki.token)
        listeners = await trio.open_tcp_listeners(settings.port, host=settings.address)
        port = int(listeners[0].socket.getsockname()[1])
        host = _client_host(settings.address)
        url = f"https://{host}:{port}"
        api.server_address = f"{host}:{port}"
        kubeconfig_path = settings.kubeconfig or data_dir / "kubeconfig.yaml"
        pki_mod.write_kubeconfig(kubeconfig_path, pki_mod.kubeconfig(pki, url))
        signal = ChangeSignal()
        store.listeners.append(signal.fire)
        ctx = server_ssl_context(str(pki.server_cert), str(pki.server_key))
        limiter = trio.CapacityLimiter(limits.APISERVER_MAX_CONNECTIONS)
        handler = functools.partial(
            handle_stream,
            ctx=ctx,
            api=api,
            signal=signal,
            limiter=limiter,
            max_body=settings.max_body_bytes,
            bookmark_interval=settings.bookmark_interval_s,
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, handler, listeners)
            if settings.scheduler:
                await nursery.start(scheduler.run, api, signal)
            _log.info("apiserver listening", url=url, kubeconfig=str(kubeconfig_path), data_dir=str(data_dir))
            task_status.started(Running(url, port, kubeconfig_path, pki.ca_cert, pki.token))
    finally:
        store.close()
