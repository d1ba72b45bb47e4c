"""Blocking client of the cloud's certificate service (``https://<cloud>:10002``), for keadm and EdgeHub.

Owns the edge side of ``GET /ca.crt`` and ``GET /edge.crt``: explicit timeouts on every request, responses
read with a bound (:data:`kubeedge.kit.limits.CERT_HTTP_MAX_RESPONSE`), errors turned into
:class:`CertServiceError` carrying the HTTP status and the server's text reason. These calls block; async
callers run them with ``trio.to_thread.run_sync``.
"""

from __future__ import annotations

import ipaddress
import json
import ssl
import urllib.error
import urllib.request
from collections.abc import Sequence
from typing import Final

from kubeedge.kit import limits, pki, tls

DEFAULT_TIMEOUT: Final = 30.0
"""Seconds for connect and for each socket read of one request."""


class CertServiceError(Exception):
    """The certificate service could not be reached or refused a request."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status
        """The HTTP status when the server answered, else None."""


def service_url(host: str, port: int) -> str:
    """``https://host:port`` with IPv6 literals bracketed."""
    try:
        if isinstance(ipaddress.ip_address(host.strip("[]")), ipaddress.IPv6Address):
            host = f"[{host.strip('[]')}]"
    except ValueError:
        pass
    return f"https://{host}:{port}"


def _call(request: urllib.request.Request, context: ssl.SSLContext, timeout: float) -> bytes:
    try:
        with urllib.request.urlopen(request, context=context, timeout=timeout) as resp:
            data: bytes = resp.read(limits.CERT_HTTP_MAX_RESPONSE + 1)
    except urllib.error.HTTPError as exc:
        # The error carries the open response: close it, or its socket lingers until garbage collection.
        with exc:
            reason = exc.read(4096).decode("utf-8", errors="replace").strip() or exc.reason
        raise CertServiceError(f"{request.full_url}: HTTP {exc.code}: {reason}", status=exc.code) from exc
    except (urllib.error.URLError, OSError) as exc:
        why = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise CertServiceError(f"{request.full_url}: {why}") from exc
    if len(data) > limits.CERT_HTTP_MAX_RESPONSE:
        raise CertServiceError(
            f"{request.full_url}: response larger than {limits.CERT_HTTP_MAX_RESPONSE} bytes"
        )
    return data


def fetch_ca(base_url: str, *, timeout: float = DEFAULT_TIMEOUT) -> bytes:
    """Download the CA certificate DER from ``<base_url>/ca.crt`` WITHOUT verifying the server.

    The caller must compare its SHA-256 with the join token before trusting it (as upstream does).
    """
    request = urllib.request.Request(f"{base_url}/ca.crt", method="GET")
    der = _call(request, tls.unverified_client_context(), timeout)
    pki.load_cert_der(der, source=f"{base_url}/ca.crt")
    return der


def request_node_cert(
    base_url: str,
    csr_der: bytes,
    node_name: str,
    *,
    context: ssl.SSLContext,
    bearer: str | None = None,
    usages: Sequence[pki.ExtKeyUsage] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> bytes:
    """Have the cloud sign ``csr_der`` for ``node_name`` via ``GET <base_url>/edge.crt``; returns DER.

    ``context`` must verify the server against the KubeEdge CA; it presents the node's current certificate
    for rotation (then ``bearer`` may be None), else ``bearer`` is the join token's JWT.
    """
    headers = {"NodeName": node_name, "Content-Type": "application/octet-stream"}
    if bearer is not None:
        headers["Authorization"] = f"Bearer {bearer}"
    if usages is not None:
        headers["ExtKeyUsages"] = json.dumps([int(u) for u in usages])
    request = urllib.request.Request(f"{base_url}/edge.crt", data=csr_der, headers=headers, method="GET")
    der = _call(request, context, timeout)
    pki.load_cert_der(der, source=f"{base_url}/edge.crt")
    return der
