"""The HTTPS certificate service (cloudHub ``https``, port 10002): hands out the CA and signs node CSRs.

Owns two layers. :class:`CertService` is the sans-io core: it takes a parsed :class:`CertRequest` (method,
path, headers, body, the verified client certificate if any) and ``now`` and returns a
:class:`CertResponse`. :func:`serve_certificates` is the trio shell: TLS (client certificate optional,
see :func:`kubeedge.kit.tls.cert_service_context`), HTTP/1.1 parsing with h11, one request per connection.

Endpoints (upstream wire):
- ``GET /ca.crt`` -> 200, the CA certificate DER.
- ``GET /edge.crt`` (``POST`` accepted too), body = DER CSR, headers ``NodeName``, ``Authorization: Bearer
  <jwt>`` or a client certificate with CN ``system:node:<NodeName>`` (the certificate wins when both are
  sent), optional ``ExtKeyUsages`` (JSON array of Go ``x509.ExtKeyUsage`` ints: 1 ServerAuth, 2 ClientAuth;
  default ClientAuth) -> 200, the signed certificate DER (only CN, O and SANs copied from the CSR).
- ``GET /node/<name>`` -> 404 (this service keeps no node registry).

Failures: 400 bad request/CSR/headers, 401 bad or expired token or certificate, 404 unknown path, 405 wrong
method, 408 request not received within ``read_timeout``, 413 body over
:data:`kubeedge.kit.limits.CERT_HTTP_MAX_BODY` (checked from Content-Length and by counting bytes),
431 headers over :data:`kubeedge.kit.limits.CERT_HTTP_MAX_HEADER`, 500 signing error; each with a one-line
``text/plain`` reason. Every connection has its own deadline and at most
:data:`kubeedge.kit.limits.CERT_HTTP_MAX_CONNECTIONS` are served at once, so a slow or hostile client
costs one task, never the service.
"""

from __future__ import annotations

import datetime as dt
import http
import json
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

import h11
import trio
from cryptography import x509

from kubeedge.kit import jointoken, limits, log, pki

_log = log.get(__name__)

DEFAULT_PORT: Final = 10002
DEFAULT_READ_TIMEOUT: Final = 10.0
"""Seconds a client has to finish the TLS handshake and send its whole request, and to take the answer."""

LINGER_SECONDS: Final = 2.0
"""After refusing a request mid-read (400/413/431) what the client still sends is drained this long (bounded
in bytes too) before closing, so that it reads the refusal instead of a connection reset."""

LINGER_MAX_BYTES: Final = 2 * limits.CERT_HTTP_MAX_BODY

_RECV_BYTES: Final = 64 * limits.KiB
# Kubernetes node names are DNS subdomains (RFC 1123), at most 253 characters.
_NODE_NAME_RE: Final = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")


@dataclass(frozen=True)
class CertRequest:
    """One parsed request as the core sees it."""

    method: str
    target: str
    headers: Mapping[str, str]
    """Header names lower-cased; repeated headers joined with ``, ``."""
    body: bytes = b""
    peer_cert: x509.Certificate | None = None
    """The client certificate, already verified against the CA by the TLS layer."""
    peer: str = ""


@dataclass(frozen=True)
class CertResponse:
    """What the shell sends back."""

    status: int
    body: bytes
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = field(default=())

    @classmethod
    def text(cls, status: int, reason: str) -> CertResponse:
        """A ``text/plain`` answer of one line."""
        return cls(status, reason.encode() + b"\n")

    @classmethod
    def der(cls, data: bytes) -> CertResponse:
        """A 200 carrying DER bytes."""
        return cls(200, data, "application/octet-stream")


class CertService:
    """Sans-io request handler of the certificate service."""

    def __init__(
        self,
        ca: pki.CertificateAuthority,
        *,
        edge_cert_validity: dt.timedelta = pki.EDGE_CERT_VALIDITY,
    ) -> None:
        self._ca = ca
        self._ca_der = ca.cert_der
        self._ca_key_der = ca.key_der
        self._validity = edge_cert_validity

    def handle(self, req: CertRequest, *, now: dt.datetime) -> CertResponse:
        """Answer ``req`` at ``now``."""
        path = req.target.split("?", 1)[0]
        if path == "/ca.crt":
            if req.method != "GET":
                return _not_allowed("GET")
            return CertResponse.der(self._ca_der)
        if path == "/edge.crt":
            if req.method not in ("GET", "POST"):
                return _not_allowed("GET, POST")
            return self._edge_cert(req, now)
        if path.startswith("/node/"):
            if req.method != "GET":
                return _not_allowed("GET")
            return CertResponse.text(404, f"node {path.removeprefix('/node/')!r} not found")
        return CertResponse.text(404, f"no such path {path!r}")

    def _edge_cert(self, req: CertRequest, now: dt.datetime) -> CertResponse:
        node = req.headers.get("nodename", "")
        if not node:
            return CertResponse.text(400, "missing NodeName header")
        if not _NODE_NAME_RE.fullmatch(node):
            return CertResponse.text(
                400, f"NodeName {node[:64]!r} is not a valid node name (RFC 1123 subdomain)"
            )
        if req.peer_cert is not None:
            cn = pki.common_name(req.peer_cert.subject)
            if cn != pki.node_common_name(node):
                _log.warning("certificate refused", node=node, peer=req.peer, cert_cn=cn)
                return CertResponse.text(
                    401,
                    f"client certificate CN {cn!r} may not renew node {node!r} (want {pki.node_common_name(node)!r})",
                )
            if now >= req.peer_cert.not_valid_after_utc:
                return CertResponse.text(401, "client certificate expired")
            via = "certificate"
        else:
            auth = req.headers.get("authorization", "")
            scheme, _, bearer = auth.partition(" ")
            if scheme.lower() != "bearer" or not bearer.strip():
                return CertResponse.text(
                    401, "missing Authorization: Bearer <token> (or a client certificate)"
                )
            try:
                jointoken.verify_bearer(bearer.strip(), self._ca_key_der, now=now.timestamp())
            except jointoken.TokenError as exc:
                _log.warning("token refused", node=node, peer=req.peer, reason=str(exc))
                return CertResponse.text(401, f"token refused: {exc}")
            via = "token"
        try:
            usages = parse_ext_key_usages(req.headers.get("extkeyusages"))
            csr = pki.validate_node_csr(req.body, node)
        except pki.PKIError as exc:
            return CertResponse.text(400, str(exc))
        try:
            cert = self._ca.sign_csr(csr, usages=usages, validity=self._validity, now=now)
        except Exception as exc:  # a signing failure is our fault: answer 500 and keep serving
            _log.exception("signing failed", node=node)
            return CertResponse.text(500, f"signing failed: {exc}")
        _log.info(
            "signed node certificate", node=node, via=via, peer=req.peer, serial=f"{cert.serial_number:x}"
        )
        return CertResponse.der(pki.cert_to_der(cert))


def parse_ext_key_usages(value: str | None) -> list[pki.ExtKeyUsage]:
    """Parse the ``ExtKeyUsages`` header (JSON int array); absent or ``[]`` means ClientAuth."""
    if value is None or not value.strip():
        return [pki.ExtKeyUsage.CLIENT_AUTH]
    try:
        raw = json.loads(value)
    except ValueError as exc:
        raise pki.PKIError(f"ExtKeyUsages is not a JSON array of integers: {exc}") from exc
    if not isinstance(raw, list) or not all(type(u) is int for u in raw) or len(raw) > 8:
        raise pki.PKIError("ExtKeyUsages must be a JSON array of at most 8 integers")
    try:
        usages = [pki.ExtKeyUsage(u) for u in raw]
    except ValueError as exc:
        raise pki.PKIError(
            f"ExtKeyUsages: only 1 (ServerAuth) and 2 (ClientAuth) are allowed: {exc}"
        ) from exc
    return usages or [pki.ExtKeyUsage.CLIENT_AUTH]


def _not_allowed(allow: str) -> CertResponse:
    return CertResponse(405, f"method not allowed (use {allow})\n".encode(), headers=(("Allow", allow),))


def encode_response(resp: CertResponse) -> bytes:
    """Serialize ``resp`` as an HTTP/1.1 response that closes the connection."""
    try:
        phrase = http.HTTPStatus(resp.status).phrase
    except ValueError:
        phrase = "Status"
    lines = [
        f"HTTP/1.1 {resp.status} {phrase}",
        f"Content-Type: {resp.content_type}",
        f"Content-Length: {len(resp.body)}",
        "Connection: close",
        *(f"{k}: {v}" for k, v in resp.headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + resp.body


class _Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.response = CertResponse.text(status, reason)


async def _read_request(stream: trio.abc.Stream) -> tuple[h11.Request, bytes] | None:
    """Read one request with h11, bounded in header and body size; None if the client left first."""
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.CERT_HTTP_MAX_HEADER)
    request: h11.Request | None = None
    body = bytearray()
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            raise _Refused(exc.error_status_hint, f"bad HTTP request: {exc}") from exc
        if event is h11.NEED_DATA:
            conn.receive_data(bytes(await stream.receive_some(_RECV_BYTES)))
        elif isinstance(event, h11.Request):
            request = event
            length = _content_length(event)
            if length is not None and length > limits.CERT_HTTP_MAX_BODY:
                raise _Refused(413, f"body of {length} bytes exceeds {limits.CERT_HTTP_MAX_BODY}")
        elif isinstance(event, h11.Data):
            body += event.data
            if len(body) > limits.CERT_HTTP_MAX_BODY:
                raise _Refused(413, f"body exceeds {limits.CERT_HTTP_MAX_BODY} bytes")
        elif isinstance(event, h11.EndOfMessage):
            assert request is not None
            return request, bytes(body)
        elif isinstance(event, h11.ConnectionClosed):
            return None


def _content_length(req: h11.Request) -> int | None:
    for name, value in req.headers:
        if name == b"content-length":
            return int(value)  # h11 has already validated it as digits
    return None


def _headers(req: h11.Request) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in req.headers:
        key = name.decode("ascii").lower()
        text = value.decode("latin-1")
        out[key] = f"{out[key]}, {text}" if key in out else text
    return out


def _peer(stream: trio.SSLStream[trio.SocketStream]) -> str:
    try:
        host, port, *_ = stream.transport_stream.socket.getpeername()
    except (OSError, ValueError):
        return "?"
    return f"{host}:{port}"


async def _linger(stream: trio.abc.Stream) -> None:
    """Drain what the client is still sending, bounded in time and bytes, so it can read our refusal."""
    drained = 0
    with trio.move_on_after(LINGER_SECONDS):
        while drained < LINGER_MAX_BYTES:
            chunk = await stream.receive_some(_RECV_BYTES)
            if not chunk:
                break
            drained += len(chunk)


async def _serve_one(
    stream: trio.SSLStream[trio.SocketStream], service: CertService, read_timeout: float
) -> None:
    peer = _peer(stream)
    response: CertResponse | None = None
    linger = handshaken = False
    with trio.move_on_after(read_timeout) as scope:
        try:
            await stream.do_handshake()
            handshaken = True
            parsed = await _read_request(stream)
        except _Refused as exc:
            response, linger = exc.response, True
        else:
            if parsed is None:
                return
            request, body = parsed
            der = stream.getpeercert(binary_form=True)
            peer_cert = x509.load_der_x509_certificate(der) if der else None
            req = CertRequest(
                method=request.method.decode("ascii", errors="replace"),
                target=request.target.decode("ascii", errors="replace"),
                headers=_headers(request),
                body=body,
                peer_cert=peer_cert,
                peer=peer,
            )
            response = service.handle(req, now=pki.utcnow())
    if scope.cancelled_caught and response is None:
        _log.info("request timed out", peer=peer, handshaken=handshaken)
        if not handshaken:
            return
        response = CertResponse.text(408, f"request not received within {read_timeout:g} s")
    assert response is not None
    with trio.move_on_after(read_timeout):
        await stream.send_all(encode_response(response))
        if linger:
            await _linger(stream)
        await stream.aclose()


async def _handle_connection(
    stream: trio.SSLStream[trio.SocketStream],
    service: CertService,
    read_timeout: float,
    limiter: trio.CapacityLimiter,
) -> None:
    try:
        try:
            limiter.acquire_nowait()
        except trio.WouldBlock:
            _log.warning("connection limit reached, closing", limit=limiter.total_tokens, peer=_peer(stream))
            return
        try:
            await _serve_one(stream, service, read_timeout)
        finally:
            limiter.release()
    except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError) as exc:
        _log.debug("connection dropped", peer=_peer(stream), error=repr(exc))
    except Exception:
        # One connection's surprise must never take the listener (and every other client) down with it.
        _log.exception("connection handler failed", peer=_peer(stream))
    finally:
        await trio.aclose_forcefully(stream)


async def serve_certificates(
    ca: pki.CertificateAuthority,
    ssl_context: ssl.SSLContext,
    *,
    host: str = "0.0.0.0",
    port: int = DEFAULT_PORT,
    edge_cert_validity: dt.timedelta = pki.EDGE_CERT_VALIDITY,
    read_timeout: float = DEFAULT_READ_TIMEOUT,
    max_connections: int = limits.CERT_HTTP_MAX_CONNECTIONS,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve the certificate service on ``host:port`` until cancelled.

    ``ssl_context`` comes from :func:`kubeedge.kit.tls.cert_service_context`. ``task_status.started`` gets
    the bound port (useful with ``port=0``). Runs forever; cancellation stops it.
    """
    service = CertService(ca, edge_cert_validity=edge_cert_validity)
    limiter = trio.CapacityLimiter(max_connections)
    listeners = await trio.open_ssl_over_tcp_listeners(port, ssl_context, host=host, https_compatible=True)
    transport = listeners[0].transport_listener
    assert isinstance(transport, trio.SocketListener)
    bound = int(transport.socket.getsockname()[1])
    _log.info("certificate service listening", address=host, port=bound)

    async def handler(stream: trio.SSLStream[trio.SocketStream]) -> None:
        await _handle_connection(stream, service, read_timeout, limiter)

    async with trio.open_nursery() as nursery:
        await nursery.start(trio.serve_listeners, handler, listeners)
        task_status.started(bound)
