"""Shared pieces of the PKI, certificate-service and keadm tests: a cloud's CA and server cert on disk, and
the certificate service running in a trio nursery on 127.0.0.1 with port 0."""

from __future__ import annotations

import datetime as dt
import functools
from dataclasses import dataclass
from pathlib import Path

import trio

from kubeedge.cloud.cloudhub import certserver
from kubeedge.kit import pki, tls


@dataclass(frozen=True)
class CloudPKI:
    """A cloud's CA and server certificate as files, like /etc/kubeedge on a cloudcore host."""

    root: Path
    ca: pki.CertificateAuthority

    @property
    def ca_cert(self) -> Path:
        return self.root / "ca" / "rootCA.crt"

    @property
    def ca_key(self) -> Path:
        return self.root / "ca" / "rootCA.key"

    @property
    def server_cert(self) -> Path:
        return self.root / "certs" / "server.crt"

    @property
    def server_key(self) -> Path:
        return self.root / "certs" / "server.key"


def make_cloud_pki(root: Path) -> CloudPKI:
    """CA + server certificate for 127.0.0.1 / localhost under ``root``."""
    ca = pki.load_or_create_ca(root / "ca" / "rootCA.crt", root / "ca" / "rootCA.key")
    cloud = CloudPKI(root, ca)
    sans = pki.SubjectAltNames.from_config(["127.0.0.1"], ["localhost"])
    pki.load_or_issue_server_cert(ca, sans, cloud.server_cert, cloud.server_key)
    return cloud


async def start_cert_service(
    nursery: trio.Nursery,
    cloud: CloudPKI,
    *,
    read_timeout: float = 5.0,
    edge_cert_validity: dt.timedelta = pki.EDGE_CERT_VALIDITY,
    max_connections: int = 64,
) -> str:
    """Start the certificate service; returns its base URL (https://127.0.0.1:<port>)."""
    ctx = tls.cert_service_context(cloud.ca_cert, cloud.server_cert, cloud.server_key)
    serve = functools.partial(
        certserver.serve_certificates,
        cloud.ca,
        ctx,
        host="127.0.0.1",
        port=0,
        read_timeout=read_timeout,
        edge_cert_validity=edge_cert_validity,
        max_connections=max_connections,
    )
    port = await nursery.start(serve)
    return f"https://127.0.0.1:{port}"
