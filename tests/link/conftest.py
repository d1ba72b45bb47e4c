"""Fixtures for the cloud-edge link: a throwaway P-256 PKI, ssl contexts, and a running CloudHub.

The PKI is the production one (:mod:`kubeedge.kit.pki` issues, :mod:`kubeedge.kit.tls`
builds the contexts): a KubeEdge CA, a server certificate for 127.0.0.1, node client
certificates with CN ``system:node:<node>``, and a second, unrelated CA for a foreign
certificate. Everything is made once per session in a temporary directory.
"""

from __future__ import annotations

import datetime
import random
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import trio
import trio_websocket
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID

from kubeedge.cloud.cloudhub.hub import CloudHub, HubSettings
from kubeedge.edge.edgehub.hub import EdgeHub, EdgeHubSettings
from kubeedge.kit import pki as kit_pki
from kubeedge.kit import tls
from kubeedge.proto.message import Message

TEST_VALIDITY = datetime.timedelta(days=1)
"""Lifetime of every certificate the fixtures issue (long enough for any test run)."""


@dataclass
class CA:
    """A KubeEdge CA (:func:`kubeedge.kit.pki.new_ca`) that issues P-256 certificates into ``directory``."""

    directory: Path
    name: str
    """Prefix of the files this CA writes (two CAs may share a directory)."""
    authority: kit_pki.CertificateAuthority = field(init=False)

    def __post_init__(self) -> None:
        self.authority = kit_pki.new_ca(now=kit_pki.utcnow())
        self.ca_path.write_bytes(kit_pki.cert_to_pem(self.authority.cert))

    @property
    def ca_path(self) -> Path:
        return self.directory / f"{self.name}-ca.crt"

    def issue(self, cn: str, *, server: bool = False) -> tuple[Path, Path]:
        """A certificate and key (PEM files): a node's for CN ``cn``, or with ``server`` the cloud's (SANs
        127.0.0.1 and localhost)."""
        key = kit_pki.new_key()
        if server:
            sans = kit_pki.SubjectAltNames.from_config(["127.0.0.1"], ["localhost"])
            cert = self.authority.issue_server_cert(key, sans, now=kit_pki.utcnow(), validity=TEST_VALIDITY)
        else:
            subject = x509.Name(
                [
                    x509.NameAttribute(NameOID.COMMON_NAME, cn),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, kit_pki.NODE_ORGANIZATION),
                ]
            )
            csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
            cert = self.authority.sign_csr(csr, now=kit_pki.utcnow(), validity=TEST_VALIDITY)
        stem = cn.replace(":", "_")
        cert_path = self.directory / f"{self.name}-{stem}.crt"
        key_path = self.directory / f"{self.name}-{stem}.key"
        cert_path.write_bytes(kit_pki.cert_to_pem(cert))
        key_path.write_bytes(kit_pki.key_to_pem(key))
        return cert_path, key_path


@dataclass
class PKI:
    """The link's test PKI: builds server and client ssl contexts with :mod:`kubeedge.kit.tls`."""

    ca: CA
    foreign: CA
    server_cert: tuple[Path, Path]

    def server_context(self) -> ssl.SSLContext:
        return tls.cloud_hub_context(self.ca.ca_path, *self.server_cert)

    def client_context(self, node: str | None, *, ca: CA | None = None) -> ssl.SSLContext:
        """Client context trusting our CA, with a cert for ``node`` (CN ``system:node:<node>``) from ``ca``."""
        if node is None:
            return tls.edge_client_context(self.ca.ca_path)
        return tls.edge_client_context(
            self.ca.ca_path, *(ca or self.ca).issue(kit_pki.node_common_name(node))
        )


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    directory = tmp_path_factory.mktemp("link-pki")
    ca = CA(directory, "KubeEdge")
    foreign = CA(directory, "Foreign")
    return PKI(ca=ca, foreign=foreign, server_cert=ca.issue("cloudhub-server", server=True))


@dataclass
class RunningCloud:
    """A CloudHub serving on 127.0.0.1 and the receiving end of its upstream channel."""

    hub: CloudHub
    upstream: trio.MemoryReceiveChannel[Message]
    nursery: trio.Nursery

    @property
    def server(self) -> str:
        return f"127.0.0.1:{self.hub.port}"

    async def next_upstream(self, predicate: Callable[[Message], bool] = lambda m: True) -> Message:
        """The next upstream message matching ``predicate`` (others are skipped)."""
        async for msg in self.upstream:
            if predicate(msg):
                return msg
        raise AssertionError("upstream channel closed")


async def start_cloud(nursery: trio.Nursery, pki: PKI, **settings: object) -> RunningCloud:
    """Start a CloudHub on 127.0.0.1:0 in ``nursery``."""
    # A buffer keeps tests that only watch for one kind of event from stalling the hub's reader.
    send, receive = trio.open_memory_channel[Message](1000)
    hub = CloudHub(
        pki.server_context(),
        send,
        HubSettings(address="127.0.0.1", port=0, **settings),  # type: ignore[arg-type]
    )
    await nursery.start(hub.run)
    return RunningCloud(hub, receive, nursery)


def make_edge(
    pki: PKI, server: str, node: str, *, ctx: ssl.SSLContext | None = None, **settings: object
) -> EdgeHub:
    """An EdgeHub for ``node`` with short test timings unless overridden."""
    defaults: dict[str, object] = {
        "heartbeat": 1.0,
        "reconnect_base": 0.05,
        "reconnect_cap": 0.2,
        "handshake_timeout": 5.0,
    }
    defaults.update(settings)
    return EdgeHub(
        ctx or pki.client_context(node),
        EdgeHubSettings(server=server, node_name=node, **defaults),  # type: ignore[arg-type]
        rng=random.Random(node),
    )


@pytest.fixture
async def cloud(pki: PKI, nursery: trio.Nursery) -> RunningCloud:
    return await start_cloud(nursery, pki)


@asynccontextmanager
async def raw_client(
    pki: PKI,
    server: str,
    node: str,
    *,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> AsyncIterator[Any]:
    """A bare trio-websocket client with ``node``'s certificate (no keepalives, no EdgeHub logic)."""
    host, _, port = server.rpartition(":")
    if headers is None:
        headers = [(b"node_id", node.encode()), (b"project_id", b"p"), (b"ConnectionUse", b"msg")]
    tcp = await trio.open_tcp_stream(host, int(port))
    tls = trio.SSLStream(tcp, pki.client_context(node), server_hostname=host)
    try:
        async with trio.open_nursery() as nursery:
            ws = await trio_websocket.wrap_client_stream(
                nursery,
                tls,
                host,
                f"/p/{node}/events",
                extra_headers=headers,
                max_message_size=64 * 1024 * 1024,
            )
            yield ws
            nursery.cancel_scope.cancel()
    finally:
        await trio.aclose_forcefully(tls)


class FaultyProxy:
    """A TCP proxy on 127.0.0.1 that can silently swallow traffic in both directions (a half-open link)."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.dropping = False
        self.port = 0

    async def run(self, *, task_status: trio.TaskStatus[FaultyProxy] = trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            await nursery.start(trio.serve_listeners, self._handle, listeners)
            task_status.started(self)

    async def _handle(self, client: trio.SocketStream) -> None:
        upstream = await trio.open_tcp_stream("127.0.0.1", self.target_port)
        async with client, upstream, trio.open_nursery() as nursery:
            nursery.start_soon(self._pump, client, upstream, nursery)
            nursery.start_soon(self._pump, upstream, client, nursery)

    async def _pump(self, src: trio.SocketStream, dst: trio.SocketStream, nursery: trio.Nursery) -> None:
        try:
            while data := await src.receive_some(65536):
                if not self.dropping:
                    await dst.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        # Only a real end of stream is passed on; while dropping, nothing is (no FIN, no RST).
        if not self.dropping:
            nursery.cancel_scope.cancel()
        else:
            await trio.sleep_forever()
