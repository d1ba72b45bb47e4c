"""Fixtures for the cloud-edge link: a throwaway P-256 PKI, ssl contexts, and a running CloudHub.

The PKI is real (``cryptography``): a KubeEdge-style CA, a server certificate
for 127.0.0.1, node client certificates with CN ``system:node:<node>``, and a
second, unrelated CA for a foreign certificate. Everything is made once per
session in a temporary directory.
"""

from __future__ import annotations

import datetime
import ipaddress
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
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubeedge.cloud.cloudhub.hub import CloudHub, HubSettings
from kubeedge.edge.edgehub.hub import EdgeHub, EdgeHubSettings
from kubeedge.proto.message import Message


def _name(cn: str, org: str | None = None) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, cn)]
    if org:
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, org))
    return x509.Name(attrs)


@dataclass
class CA:
    """A certificate authority that issues P-256 certificates into ``directory``."""

    directory: Path
    cn: str
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))
    cert: x509.Certificate | None = None

    def __post_init__(self) -> None:
        now = datetime.datetime.now(datetime.UTC)
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(_name(self.cn))
            .issuer_name(_name(self.cn))
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )
        self.ca_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))

    @property
    def ca_path(self) -> Path:
        return self.directory / f"{self.cn}-ca.crt"

    def issue(self, cn: str, *, org: str | None = None, server: bool = False) -> tuple[Path, Path]:
        """A leaf certificate and key (PEM files); ``server`` adds 127.0.0.1/localhost SANs."""
        assert self.cert is not None
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(cn, org))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH] if server else [ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                critical=False,
            )
        cert = builder.sign(self.key, hashes.SHA256())
        stem = cn.replace(":", "_")
        cert_path = self.directory / f"{self.cn}-{stem}.crt"
        key_path = self.directory / f"{self.cn}-{stem}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )
        return cert_path, key_path


@dataclass
class PKI:
    """The link's test PKI: builds server and client ssl contexts."""

    ca: CA
    foreign: CA
    server_cert: tuple[Path, Path]

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(self.ca.ca_path))
        ctx.load_cert_chain(*map(str, self.server_cert))
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.num_tickets = 0
        return ctx

    def client_context(
        self, node: str | None, *, ca: CA | None = None, cn: str | None = None
    ) -> ssl.SSLContext:
        """Client context trusting our CA, with a cert for ``node`` (CN ``system:node:<node>``) from ``ca``."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(self.ca.ca_path))
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if node is not None or cn is not None:
            issuer = ca or self.ca
            cert, key = issuer.issue(cn or f"system:node:{node}", org="system:nodes")
            ctx.load_cert_chain(str(cert), str(key))
        return ctx


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    directory = tmp_path_factory.mktemp("link-pki")
    ca = CA(directory, "KubeEdge")
    foreign = CA(directory, "Foreign")
    return PKI(ca=ca, foreign=foreign, server_cert=ca.issue("cloudhub-server", org="KubeEdge", server=True))


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
