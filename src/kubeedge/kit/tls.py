"""``ssl.SSLContext`` factories for the cloud-edge link, one per role, all from file paths.

Owns the TLS policy: TLS 1.2 minimum, only ECDHE-ECDSA AEAD suites for 1.2 (all KubeEdge keys are P-256;
1.3 suites are OpenSSL's defaults), no session tickets on servers (nothing resumes; tickets only cost CPU
per accept), peers verified against the KubeEdge CA (``rootCA.crt``).

- :func:`cloud_hub_context`: the websocket server; a client certificate signed by the CA is REQUIRED.
- :func:`cert_service_context`: the HTTPS certificate service; a client certificate is optional (token
  bootstrap has none; rotation presents one) but, when presented, must verify against the CA.
- :func:`edge_client_context`: EdgeHub / keadm; verifies the cloud against the CA and its SANs (the caller
  passes ``server_hostname`` = the address it dials) and presents the node certificate if given.

Unreadable or mismatched files raise ``ssl.SSLError``/``OSError`` from the stdlib, which name the problem.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Final

TLS12_CIPHERS: Final = ":".join(
    [
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
    ]
)
"""The TLS 1.2 suites offered and accepted: Go's ECDHE-ECDSA AEAD set."""


def _harden(ctx: ssl.SSLContext) -> ssl.SSLContext:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    return ctx


def _server(ca_cert: Path, cert: Path, key: Path, verify: ssl.VerifyMode) -> ssl.SSLContext:
    ctx = _harden(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    ctx.load_cert_chain(cert, key)
    ctx.load_verify_locations(cafile=ca_cert)
    ctx.verify_mode = verify
    ctx.num_tickets = 0
    return ctx


def cloud_hub_context(ca_cert: Path, cert: Path, key: Path) -> ssl.SSLContext:
    """Server context for the cloud websocket hub: mutual TLS, client certificate required."""
    return _server(ca_cert, cert, key, ssl.CERT_REQUIRED)


def cert_service_context(ca_cert: Path, cert: Path, key: Path) -> ssl.SSLContext:
    """Server context for the certificate service: client certificate optional but verified if sent."""
    return _server(ca_cert, cert, key, ssl.CERT_OPTIONAL)


def edge_client_context(ca_cert: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    """Client context for the edge: verify the cloud against ``ca_cert`` and present ``cert``/``key`` if given."""
    ctx = _harden(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    ctx.load_verify_locations(cafile=ca_cert)
    if (cert is None) != (key is None):
        raise ValueError("edge_client_context: pass both cert and key, or neither")
    if cert is not None and key is not None:
        ctx.load_cert_chain(cert, key)
    return ctx


def edge_client_context_from_pem(ca_pem: bytes) -> ssl.SSLContext:
    """Client context trusting only the CA given as PEM bytes (used right after downloading the CA)."""
    ctx = _harden(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    ctx.load_verify_locations(cadata=ca_pem.decode("ascii"))
    return ctx


def unverified_client_context() -> ssl.SSLContext:
    """A client context that does NOT verify the server.

    Only for fetching ``/ca.crt`` during a join, as upstream does: the downloaded CA is trusted only after
    its SHA-256 matches the join token, so a man in the middle gains nothing.
    """
    ctx = _harden(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx
