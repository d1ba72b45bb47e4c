"""The certificate service over real TLS on 127.0.0.1: CA download, token and certificate authenticated
signing, every refusal with its status, bounded bodies, slow clients, and the token file maintainer."""

from __future__ import annotations

import datetime as dt
import functools
import json
import ssl
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
import trio
import trio.testing
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import given, settings
from hypothesis import strategies as st

from kubeedge.cloud.cloudhub import certserver
from kubeedge.cloud.cloudhub import token as cloud_token
from kubeedge.kit import certclient, jointoken, limits, pki, tls
from tests.pki_support import CloudPKI, make_cloud_pki, start_cert_service

T = TypeVar("T")


@pytest.fixture
def cloud(tmp_path: Path) -> CloudPKI:
    return make_cloud_pki(tmp_path / "cloud")


async def in_thread(fn: Callable[[], T]) -> T:
    return await trio.to_thread.run_sync(fn)


def bearer_for(cloud: CloudPKI, *, now: float | None = None) -> str:
    token = jointoken.make(cloud.ca.key_der, cloud.ca.cert_der, now=now or pki.utcnow().timestamp())
    return jointoken.parse(token).bearer


def csr_for(node: str, key: object = None) -> tuple[bytes, object]:
    key = key or pki.new_key()
    assert isinstance(key, pki.ec.EllipticCurvePrivateKey)
    return pki.new_node_csr(key, node).public_bytes(serialization.Encoding.DER), key


def trusting(cloud: CloudPKI, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    return tls.edge_client_context(cloud.ca_cert, cert, key)


async def sign(
    base: str,
    cloud: CloudPKI,
    node: str,
    *,
    csr: bytes | None = None,
    bearer: str | None = None,
    context: ssl.SSLContext | None = None,
    usages: list[pki.ExtKeyUsage] | None = None,
) -> bytes:
    body = csr if csr is not None else csr_for(node)[0]
    return await in_thread(
        lambda: certclient.request_node_cert(
            base, body, node, context=context or trusting(cloud), bearer=bearer, usages=usages, timeout=10
        )
    )


async def expect_status(status: int, fn: Callable[[], object], match: str = "") -> str:
    with pytest.raises(certclient.CertServiceError) as info:
        await in_thread(fn)
    assert info.value.status == status, str(info.value)
    assert match in str(info.value)
    return str(info.value)


async def test_ca_download_and_token_signing(cloud: CloudPKI) -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            base = await start_cert_service(nursery, cloud, edge_cert_validity=dt.timedelta(days=30))
            ca_der = await in_thread(lambda: certclient.fetch_ca(base, timeout=10))
            assert ca_der == cloud.ca.cert_der

            der = await sign(base, cloud, "edge-1", bearer=bearer_for(cloud))
            cert = x509.load_der_x509_certificate(der)
            assert cert.subject.rfc4514_string() == "O=system:nodes,CN=system:node:edge-1"
            assert cloud.ca.issued(cert)
            lifetime = cert.not_valid_after_utc - pki.utcnow()
            assert dt.timedelta(days=29, hours=23) < lifetime <= dt.timedelta(days=30)
            eku = list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
            assert eku == [ExtendedKeyUsageOID.CLIENT_AUTH]

            both = x509.load_der_x509_certificate(
                await sign(
                    base,
                    cloud,
                    "edge-1",
                    bearer=bearer_for(cloud),
                    usages=[pki.ExtKeyUsage.SERVER_AUTH, pki.ExtKeyUsage.CLIENT_AUTH],
                )
            )
            eku = list(both.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
            assert eku == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            nursery.cancel_scope.cancel()


async def test_bad_tokens_are_401(cloud: CloudPKI, tmp_path: Path) -> None:
    other = make_cloud_pki(tmp_path / "other")
    now = pki.utcnow().timestamp()
    csr, _ = csr_for("edge-1")
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            base = await start_cert_service(nursery, cloud)
            ctx = trusting(cloud)

            def call(bearer: str | None) -> Callable[[], object]:
                return lambda: certclient.request_node_cert(base, csr, "edge-1", context=ctx, bearer=bearer)

            await expect_status(401, call(None), "missing Authorization")
            await expect_status(401, call(bearer_for(other)), "signature does not verify")
            await expect_status(401, call(bearer_for(cloud, now=now - 25 * 3600)), "expired")
            await expect_status(401, call("not-a-jwt"), "token refused")
            nursery.cancel_scope.cancel()


async def test_bad_requests_are_400_with_reasons(cloud: CloudPKI) -> None:
    bearer = bearer_for(cloud)
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            base = await start_cert_service(nursery, cloud)
            ctx = trusting(cloud)
            csr_b, _ = csr_for("edge-b")

            def call(node: str, body: bytes, usages: list[int] | None = None) -> Callable[[], object]:
                def do() -> object:
                    if usages is None:
                        return certclient.request_node_cert(base, body, node, context=ctx, bearer=bearer)
                    return certclient.request_node_cert(
                        base,
                        body,
                        node,
                        context=ctx,
                        bearer=bearer,
                        usages=[pki.ExtKeyUsage(u) for u in usages],
                    )

                return do

            await expect_status(400, call("edge-a", csr_b), "does not match node 'edge-a'")
            await expect_status(400, call("edge-a", b"garbage"), "not a DER certificate signing request")
            await expect_status(400, call("Bad_Name", csr_b), "not a valid node name")
            nursery.cancel_scope.cancel()


async def raw_request(port: int, request: bytes, *, read_limit: int = 1 << 20) -> bytes:
    """Send raw bytes over TLS and read one response (headers + Content-Length body) as a client would."""
    stream = await trio.open_ssl_over_tcp_stream(
        "127.0.0.1", port, ssl_context=tls.unverified_client_context(), https_compatible=True
    )
    try:
        await stream.send_all(request)
        data = b""
        while len(data) < read_limit:
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep:
                lengths = [ln for ln in head.split(b"\r\n") if ln.lower().startswith(b"content-length:")]
                if lengths and len(body) >= int(lengths[0].split(b":")[1]):
                    return data
            chunk = await stream.receive_some(65536)
            if not chunk:
                break
            data += chunk
        return data
    finally:
        await trio.aclose_forcefully(stream)


def port_of(base: str) -> int:
    return int(base.rsplit(":", 1)[1])


async def test_paths_methods_and_headers(cloud: CloudPKI) -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            base = await start_cert_service(nursery, cloud)
            port = port_of(base)

            def req(line: str, extra: str = "") -> bytes:
                return f"{line}\r\nHost: x\r\n{extra}Content-Length: 0\r\n\r\n".encode()

            assert (await raw_request(port, req("GET /nope HTTP/1.1"))).startswith(b"HTTP/1.1 404 ")
            node = await raw_request(port, req("GET /node/edge-1 HTTP/1.1"))
            assert node.startswith(b"HTTP/1.1 404 ")
            assert b"edge-1" in node
            post_ca = await raw_request(port, req("POST /ca.crt HTTP/1.1"))
            assert post_ca.startswith(b"HTTP/1.1 405 ")
            assert b"Allow: GET" in post_ca
            assert (await raw_request(port, req("DELETE /edge.crt HTTP/1.1"))).startswith(b"HTTP/1.1 405 ")
            no_node = await raw_request(port, req("GET /edge.crt HTTP/1.1"))
            assert no_node.startswith(b"HTTP/1.1 400 ")
            assert b"missing NodeName" in no_node
            bad_eku = await raw_request(
                port,
                req(
                    "GET /edge.crt HTTP/1.1",
                    f"NodeName: edge-1\r\nAuthorization: Bearer {bearer_for(cloud)}\r\nExtKeyUsages: [5]\r\n",
                ),
            )
            assert bad_eku.startswith(b"HTTP/1.1 400 ")
            assert b"ExtKeyUsages" in bad_eku
            assert (await raw_request(port, b"NOT HTTP AT ALL\r\n\r\n")).startswith(b"HTTP/1.1 400 ")
            huge_header = b"GET /ca.crt HTTP/1.1\r\nHost: x\r\nX: " + b"a" * (100 * limits.KiB) + b"\r\n\r\n"
            assert (await raw_request(port, huge_header)).startswith(b"HTTP/1.1 431 ")
            ca = await raw_request(port, req("GET /ca.crt HTTP/1.1"))
            assert ca.startswith(b"HTTP/1.1 200 ")
            assert ca.endswith(cloud.ca.cert_der)
            nursery.cancel_scope.cancel()


async def test_oversized_body_is_413_and_the_service_stays_healthy(cloud: CloudPKI) -> None:
    big = limits.CERT_HTTP_MAX_BODY + 1
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            base = await start_cert_service(nursery, cloud)
            port = port_of(base)
            declared = await raw_request(
                port,
                f"GET /edge.crt HTTP/1.1\r\nHost: x\r\nNodeName: e\r\nContent-Length: {big}\r\n\r\n".encode(),
            )
            assert declared.startswith(b"HTTP/1.1 413 ")
            chunked_head = (
                b"GET /edge.crt HTTP/1.1\r\nHost: x\r\nNodeName: e\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            chunk = b"%x\r\n" % (64 * 1024) + b"z" * (64 * 1024) + b"\r\n"
            counted = await raw_request(port, chunked_head + chunk * (big // (64 * 1024) + 1))
            assert counted.startswith(b"HTTP/1.1 413 ")
            # A real client that sends the whole oversized body reads the refusal, not a reset.
            await expect_status(
                413,
                lambda: certclient.request_node_cert(
                    base, b"\0" * big, "edge-1", context=trusting(cloud), bearer=bearer_for(cloud)
                ),
                "exceeds",
            )
            assert await in_thread(lambda: certclient.fetch_ca(base, timeout=10)) == cloud.ca.cert_der
            nursery.cancel_scope.cancel()


async def test_slow_clients_do_not_block_others_and_time_out(cloud: CloudPKI) -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            base = await start_cert_service(nursery, cloud, read_timeout=1.0)
            port = port_of(base)
            # One client that never starts TLS, one that stops half-way through its headers.
            silent = await trio.open_tcp_stream("127.0.0.1", port)
            partial = await trio.open_ssl_over_tcp_stream(
                "127.0.0.1", port, ssl_context=tls.unverified_client_context(), https_compatible=True
            )
            await partial.send_all(b"GET /ca.crt HTTP/1.1\r\nHost: x\r\n")
            t0 = trio.current_time()
            assert await in_thread(lambda: certclient.fetch_ca(base, timeout=10)) == cloud.ca.cert_der
            assert trio.current_time() - t0 < 1.0
            # Both are then dropped by the per-connection deadline: the half-sent request gets a 408.
            assert await silent.receive_some(100) == b""
            answer = await partial.receive_some(4096)
            assert answer.startswith(b"HTTP/1.1 408 ")
            await silent.aclose()
            await trio.aclose_forcefully(partial)
            nursery.cancel_scope.cancel()


async def test_connection_limit_closes_extra_connections(cloud: CloudPKI) -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            base = await start_cert_service(nursery, cloud, read_timeout=5.0, max_connections=2)
            port = port_of(base)
            idle = [await trio.open_tcp_stream("127.0.0.1", port) for _ in range(2)]
            # The server may not have accepted both idle connections yet: retry, each probe bounded.
            closed = False
            for _ in range(50):
                extra = await trio.open_tcp_stream("127.0.0.1", port)
                with trio.move_on_after(0.2):
                    closed = await extra.receive_some(10) == b""
                await extra.aclose()
                if closed:
                    break
            assert closed, "a connection over the limit was never closed"
            for s in idle:
                await s.aclose()
            nursery.cancel_scope.cancel()


async def test_rotation_with_client_certificate(cloud: CloudPKI, tmp_path: Path) -> None:
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            base = await start_cert_service(nursery, cloud)
            csr, key = csr_for("edge-a")
            cert_der = await sign(base, cloud, "edge-a", csr=csr, bearer=bearer_for(cloud))
            assert isinstance(key, pki.ec.EllipticCurvePrivateKey)
            crt, keyfile = tmp_path / "a.crt", tmp_path / "a.key"
            crt.write_bytes(pki.cert_to_pem(x509.load_der_x509_certificate(cert_der)))
            keyfile.write_bytes(pki.key_to_pem(key))
            mtls = trusting(cloud, crt, keyfile)

            new_csr, _ = csr_for("edge-a")
            renewed = x509.load_der_x509_certificate(
                await sign(base, cloud, "edge-a", csr=new_csr, context=mtls)
            )
            assert pki.common_name(renewed.subject) == "system:node:edge-a"
            assert renewed.serial_number != x509.load_der_x509_certificate(cert_der).serial_number

            # Node A's certificate cannot obtain node B's, even with a valid token alongside.
            b_csr, _ = csr_for("edge-b")
            await expect_status(
                401,
                lambda: certclient.request_node_cert(
                    base, b_csr, "edge-b", context=mtls, bearer=bearer_for(cloud), timeout=10
                ),
                "may not renew node 'edge-b'",
            )

            # A certificate from another CA does not even complete the TLS handshake.
            other = make_cloud_pki(tmp_path / "other")
            okey = pki.new_key()
            ocert = other.ca.sign_csr(pki.new_node_csr(okey, "edge-a"), now=pki.utcnow())
            (tmp_path / "o.crt").write_bytes(pki.cert_to_pem(ocert))
            (tmp_path / "o.key").write_bytes(pki.key_to_pem(okey))
            foreign = trusting(cloud, tmp_path / "o.crt", tmp_path / "o.key")
            with pytest.raises(certclient.CertServiceError) as info:
                await in_thread(
                    lambda: certclient.request_node_cert(base, new_csr, "edge-a", context=foreign, timeout=10)
                )
            assert info.value.status is None
            assert await in_thread(lambda: certclient.fetch_ca(base, timeout=10)) == cloud.ca.cert_der
            nursery.cancel_scope.cancel()


def test_core_refuses_expired_client_certificate(cloud: CloudPKI) -> None:
    service = certserver.CertService(cloud.ca)
    key = pki.new_key()
    past = pki.utcnow() - dt.timedelta(days=10)
    cert = cloud.ca.sign_csr(pki.new_node_csr(key, "edge-a"), validity=dt.timedelta(days=1), now=past)
    csr, _ = csr_for("edge-a")
    req = certserver.CertRequest("GET", "/edge.crt", {"nodename": "edge-a"}, csr, peer_cert=cert)
    resp = service.handle(req, now=pki.utcnow())
    assert resp.status == 401
    assert b"expired" in resp.body
    ok = service.handle(req, now=past + dt.timedelta(hours=1))
    assert ok.status == 200
    assert certserver.parse_ext_key_usages(json.dumps([])) == [pki.ExtKeyUsage.CLIENT_AUTH]


async def test_maintain_token_writes_and_renews(
    cloud: CloudPKI, tmp_path: Path, autojump_clock: object
) -> None:
    path = tmp_path / "tokens" / "tokendata"
    issuer = jointoken.TokenIssuer(cloud.ca.key_der, cloud.ca.cert_der, refresh=dt.timedelta(hours=12))
    base = 1_800_000_000.0

    def clock() -> float:
        return base + trio.current_time()

    start = trio.current_time()
    with trio.fail_after(3 * 24 * 3600):  # mock-clock seconds
        async with trio.open_nursery() as nursery:
            await nursery.start(functools.partial(cloud_token.maintain_token, issuer, path, clock=clock))
            first = path.read_text().strip()
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            exp = jointoken.verify_bearer(jointoken.parse(first).bearer, cloud.ca.key_der, now=clock())
            assert exp.timestamp() == pytest.approx(clock() + 24 * 3600, abs=1)
            await trio.sleep(12 * 3600 - 60)
            assert path.read_text().strip() == first
            await trio.sleep(120)
            second = path.read_text().strip()
            assert second != first
            assert trio.current_time() - start == pytest.approx(12 * 3600 + 60, abs=1)
            nursery.cancel_scope.cancel()


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)


@settings(max_examples=100, deadline=None)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "HEAD", "X"]),
    target=st.sampled_from(["/ca.crt", "/edge.crt", "/node/a", "/", "/edge.crt?x=1"]) | st.text(max_size=40),
    headers=st.dictionaries(
        st.sampled_from(["nodename", "authorization", "extkeyusages", "x"]), st.text(max_size=60), max_size=4
    ),
    body=st.binary(max_size=300),
)
def test_core_answers_any_request_with_a_known_status(
    method: str, target: str, headers: dict[str, str], body: bytes
) -> None:
    resp = _FUZZ_SERVICE.handle(certserver.CertRequest(method, target, headers, body), now=pki.utcnow())
    assert resp.status in {200, 400, 401, 404, 405}
    # Without a valid token or certificate the only success is the public CA.
    if resp.status == 200:
        assert (method, target.split("?")[0]) == ("GET", "/ca.crt")
        assert resp.body == _FUZZ_CA.cert_der
    else:
        assert resp.body.endswith(b"\n")
        assert resp.content_type.startswith("text/plain")


_FUZZ_CA = pki.new_ca(now=pki.utcnow())
_FUZZ_SERVICE = certserver.CertService(_FUZZ_CA)
