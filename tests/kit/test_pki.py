"""The CA is made once and never again (even by racing creators), server certs follow their SANs, CSRs are
checked, node certs copy only CN/O/SANs, join tokens verify and expire on an explicit clock, and the TLS
contexts enforce mutual TLS on real loopback handshakes."""

from __future__ import annotations

import datetime as dt
import ipaddress
import ssl
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import jwt
import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubeedge.kit import jointoken, pki, tls
from tests.pki_support import make_cloud_pki

NOW = dt.datetime(2026, 11, 27, 6, 0, tzinfo=dt.UTC)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# --- CA --------------------------------------------------------------------------------------------------------


def test_ca_is_created_as_upstream_and_loaded_unchanged(tmp_path: Path) -> None:
    cert_path, key_path = tmp_path / "ca" / "rootCA.crt", tmp_path / "ca" / "rootCA.key"
    ca = pki.load_or_create_ca(cert_path, key_path, now=NOW)

    assert ca.cert.subject.rfc4514_string() == "CN=KubeEdge"
    assert ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert isinstance(ca.key.curve, ec.SECP256R1)
    assert ca.cert.not_valid_after_utc - NOW == dt.timedelta(days=364 * 100)
    assert key_path.read_bytes().startswith(b"-----BEGIN EC PRIVATE KEY-----")
    assert mode(key_path) == 0o600
    assert cert_path.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")

    again = pki.load_or_create_ca(cert_path, key_path, now=NOW + dt.timedelta(days=1))
    assert again.cert_der == ca.cert_der
    assert again.key_der == ca.key_der


def test_racing_threads_agree_on_one_ca(tmp_path: Path) -> None:
    n = 8
    barrier = threading.Barrier(n)
    results: list[str] = []
    errors: list[BaseException] = []

    def create() -> None:
        try:
            barrier.wait(timeout=10)
            ca = pki.load_or_create_ca(tmp_path / "rootCA.crt", tmp_path / "rootCA.key")
            results.append(ca.hash)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors
    assert len(results) == n
    on_disk = pki.load_ca(tmp_path / "rootCA.crt", tmp_path / "rootCA.key").hash
    assert set(results) == {on_disk}
    assert sorted(p.name for p in tmp_path.iterdir()) == [".pki.lock", "rootCA.crt", "rootCA.key"]


def test_racing_processes_agree_on_one_ca(tmp_path: Path) -> None:
    # Each process waits for a start file, so they really race (bounded by the subprocess timeout).
    go = tmp_path / "go"
    code = (
        "import os, sys, time\n"
        "from pathlib import Path\n"
        "from kubeedge.kit import pki\n"
        "d = Path(sys.argv[1])\n"
        "deadline = time.monotonic() + 20\n"
        "while not (d / 'go').exists() and time.monotonic() < deadline: time.sleep(0.001)\n"
        "print(pki.load_or_create_ca(d / 'ca' / 'rootCA.crt', d / 'ca' / 'rootCA.key').hash)\n"
    )
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    go.touch()
    hashes_seen = set()
    for p in procs:
        out, _ = p.communicate(timeout=60)
        assert p.returncode == 0
        hashes_seen.add(out.strip())
    on_disk = pki.load_ca(tmp_path / "ca" / "rootCA.crt", tmp_path / "ca" / "rootCA.key").hash
    assert hashes_seen == {on_disk}


def test_half_present_or_mismatched_ca_is_an_error_not_a_new_ca(tmp_path: Path) -> None:
    cert_path, key_path = tmp_path / "rootCA.crt", tmp_path / "rootCA.key"
    ca = pki.load_or_create_ca(cert_path, key_path)
    key_path.unlink()
    with pytest.raises(pki.PKIError, match="refusing to create a new CA"):
        pki.load_or_create_ca(cert_path, key_path)
    assert cert_path.read_bytes() == pki.cert_to_pem(ca.cert)

    key_path.write_bytes(pki.key_to_pem(pki.new_key()))
    with pytest.raises(pki.PKIError, match="does not match"):
        pki.load_or_create_ca(cert_path, key_path)

    cert_path.unlink()
    with pytest.raises(pki.PKIError, match="does not appear"):
        pki.load_or_create_ca(cert_path, key_path, wait_for_peer=0.1)
    assert not cert_path.exists()


def test_oversized_and_garbage_files_are_refused(tmp_path: Path) -> None:
    cert_path, key_path = tmp_path / "rootCA.crt", tmp_path / "rootCA.key"
    pki.load_or_create_ca(cert_path, key_path)
    cert_path.write_bytes(b"x" * (pki.limits.PKI_MAX_FILE_BYTES + 1))
    with pytest.raises(pki.PKIError, match="larger than"):
        pki.load_ca(cert_path, key_path)
    cert_path.write_bytes(b"not pem")
    with pytest.raises(pki.PKIError, match="not a PEM certificate"):
        pki.load_ca(cert_path, key_path)


# --- server certificate ----------------------------------------------------------------------------------------


def test_server_cert_is_kept_then_reissued_when_sans_change(tmp_path: Path) -> None:
    ca = pki.load_or_create_ca(tmp_path / "ca.crt", tmp_path / "ca.key")
    crt, key = tmp_path / "certs" / "server.crt", tmp_path / "certs" / "server.key"
    sans = pki.SubjectAltNames.from_config(["10.0.0.1", ""], ["", "cloud.example"])
    first = pki.load_or_issue_server_cert(ca, sans, crt, key, now=NOW)

    assert first.cert.subject.rfc4514_string() == "O=KubeEdge,CN=KubeEdge"
    san = first.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.1")]
    assert san.get_values_for_type(x509.DNSName) == ["cloud.example"]
    eku = first.cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert ExtendedKeyUsageOID.SERVER_AUTH in eku
    assert ca.issued(first.cert)
    assert mode(key) == 0o600
    assert key.read_bytes().startswith(b"-----BEGIN EC PRIVATE KEY-----")

    same = pki.load_or_issue_server_cert(ca, sans, crt, key, now=NOW)
    assert same.cert.serial_number == first.cert.serial_number

    moved = pki.SubjectAltNames.from_config(["10.0.0.2"], ["cloud.example"])
    second = pki.load_or_issue_server_cert(ca, moved, crt, key, now=NOW)
    assert second.cert.serial_number != first.cert.serial_number
    assert pki.SubjectAltNames.of(second.cert) == moved
    assert ca.issued(second.cert)
    assert pki.load_cert_pem(crt.read_bytes(), source="x").serial_number == second.cert.serial_number

    other_ca = pki.new_ca(now=NOW)
    third = pki.load_or_issue_server_cert(other_ca, moved, crt, key, now=NOW)
    assert other_ca.issued(third.cert)
    assert not ca.issued(third.cert)


def test_advertise_address_must_be_an_ip() -> None:
    with pytest.raises(pki.PKIError, match=r"advertiseAddress 'cloud\.example'"):
        pki.SubjectAltNames.from_config(["cloud.example"], [])


# --- CSRs and node certificates ---------------------------------------------------------------------------------


def csr_der(
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey, cn: str, org: str, sans: list[str] = ()
) -> bytes:  # type: ignore[assignment]
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
                x509.NameAttribute(NameOID.COMMON_NAME, cn),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
                x509.NameAttribute(NameOID.LOCALITY_NAME, "Hangzhou"),
            ]
        )
    )
    if sans:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(s) for s in sans]), critical=False
        )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def test_node_csr_checks() -> None:
    key = pki.new_key()
    good = csr_der(key, "system:node:edge-1", "system:nodes")
    assert pki.validate_node_csr(good, "edge-1").subject.rfc4514_string().startswith("L=Hangzhou")

    with pytest.raises(pki.PKIError, match="does not match node 'edge-2'"):
        pki.validate_node_csr(good, "edge-2")
    with pytest.raises(pki.PKIError, match="organization"):
        pki.validate_node_csr(csr_der(key, "system:node:edge-1", "KubeEdge"), "edge-1")
    with pytest.raises(pki.PKIError, match="P-256"):
        pki.validate_node_csr(
            csr_der(ec.generate_private_key(ec.SECP384R1()), "system:node:e", "system:nodes"), "e"
        )
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(pki.PKIError, match="P-256"):
        pki.validate_node_csr(csr_der(rsa_key, "system:node:e", "system:nodes"), "e")
    with pytest.raises(pki.PKIError, match="not a DER certificate signing request"):
        pki.validate_node_csr(b"\x30\x03garbage", "edge-1")
    tampered = bytearray(good)
    tampered[-5] ^= 0xFF  # inside the signature
    with pytest.raises(pki.PKIError, match=r"signature|DER"):
        pki.validate_node_csr(bytes(tampered), "edge-1")


def test_signed_node_cert_copies_only_cn_o_and_sans() -> None:
    ca = pki.new_ca(now=NOW)
    csr = pki.validate_node_csr(csr_der(pki.new_key(), "system:node:n1", "system:nodes", ["n1.local"]), "n1")
    cert = ca.sign_csr(
        csr,
        usages=[pki.ExtKeyUsage.SERVER_AUTH, pki.ExtKeyUsage.CLIENT_AUTH],
        validity=dt.timedelta(days=7),
        now=NOW,
    )
    assert cert.subject.rfc4514_string() == "O=system:nodes,CN=system:node:n1"
    assert cert.not_valid_after_utc - NOW == dt.timedelta(days=7)
    assert pki.SubjectAltNames.of(cert).dns == {"n1.local"}
    eku = list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)
    assert eku == [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert ca.issued(cert)


# --- join tokens ------------------------------------------------------------------------------------------------


def test_token_layout_and_verification() -> None:
    ca = pki.new_ca(now=NOW)
    t0 = NOW.timestamp()
    token = jointoken.make(ca.key_der, ca.cert_der, now=t0, refresh=dt.timedelta(hours=12))
    parsed = jointoken.parse(token)
    assert parsed.ca_hash == ca.hash
    assert str(parsed) == token
    assert jwt.get_unverified_header(parsed.bearer)["alg"] == "HS256"
    assert set(jwt.decode(parsed.bearer, options={"verify_signature": False})) == {"exp"}
    expiry = jointoken.verify_bearer(parsed.bearer, ca.key_der, now=t0)
    assert expiry.timestamp() == t0 + 24 * 3600
    assert jointoken.unverified_expiry(parsed.bearer) == expiry

    with pytest.raises(jointoken.TokenError, match="expired"):
        jointoken.verify_bearer(parsed.bearer, ca.key_der, now=t0 + 24 * 3600)
    with pytest.raises(jointoken.TokenError, match="expired"):
        jointoken.check_not_expired(parsed.bearer, now=t0 + 24 * 3600 + 1)
    with pytest.raises(jointoken.TokenError, match="signature"):
        jointoken.verify_bearer(parsed.bearer, pki.new_ca(now=NOW).key_der, now=t0)
    forged = jwt.encode({"exp": int(t0) + 100}, ca.key_der, algorithm="HS512")
    with pytest.raises(jointoken.TokenError, match="algorithm 'HS512'"):
        jointoken.verify_bearer(forged, ca.key_der, now=t0)
    unsigned = jwt.encode({"exp": int(t0) + 100}, None, algorithm="none")
    with pytest.raises(jointoken.TokenError, match="algorithm 'none'"):
        jointoken.verify_bearer(unsigned, ca.key_der, now=t0)
    no_exp = jwt.encode({"sub": "x"}, ca.key_der, algorithm="HS256")
    with pytest.raises(jointoken.TokenError, match="exp"):
        jointoken.verify_bearer(no_exp, ca.key_der, now=t0)


@pytest.mark.parametrize(
    ("token", "match"),
    [
        ("abc", "got 1"),
        ("a.b.c", "got 3"),
        ("a.b.c.d.e", "got 5"),
        ("a..c.d", "non-empty"),
        ("zz.b.c.d", "64 hex digits"),
        ("x" * 5000, "longer than"),
    ],
)
def test_malformed_tokens(token: str, match: str) -> None:
    with pytest.raises(jointoken.TokenError, match=match) as info:
        jointoken.parse(token)
    assert str(info.value).startswith("malformed token")


def test_issuer_refreshes_on_schedule() -> None:
    ca = pki.new_ca(now=NOW)
    issuer = jointoken.TokenIssuer(ca.key_der, ca.cert_der, refresh=dt.timedelta(hours=12))
    t0 = 1_800_000_000.0
    first = issuer.tick(t0)
    assert first is not None
    assert issuer.next_refresh == t0 + 12 * 3600
    assert issuer.tick(t0 + 12 * 3600 - 1) is None
    assert issuer.current(t0 + 12 * 3600 - 1) == first
    second = issuer.tick(t0 + 12 * 3600)
    assert second is not None
    assert second != first
    assert issuer.next_refresh == t0 + 24 * 3600
    old_bearer = jointoken.parse(first).bearer
    # The previous token stays valid until its own exp (issue + 2 x refresh), then not.
    issuer.verify(old_bearer, now=t0 + 24 * 3600 - 1)
    with pytest.raises(jointoken.TokenError, match="expired"):
        issuer.verify(old_bearer, now=t0 + 24 * 3600)
    with pytest.raises(ValueError, match="positive"):
        jointoken.TokenIssuer(ca.key_der, ca.cert_der, refresh=dt.timedelta(0))


def test_token_file_roundtrip(tmp_path: Path) -> None:
    path = tmp_path / "tokens" / "tokendata"
    jointoken.write_token_file(path, "abc.d.e.f")
    assert mode(path) == 0o600
    assert jointoken.read_token_file(path) == "abc.d.e.f"
    path.write_text("\n")
    with pytest.raises(jointoken.TokenError, match="empty"):
        jointoken.read_token_file(path)


# --- TLS contexts on real loopback handshakes --------------------------------------------------------------------


async def _handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> str:
    """Run one TLS handshake over loopback; returns the negotiated version or "refused"."""
    with trio.fail_after(10):
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
        port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:

            async def serve_one() -> None:
                stream = await listeners[0].accept()
                ssl_stream = trio.SSLStream(stream, server_ctx, server_side=True)
                try:
                    await ssl_stream.do_handshake()
                    await ssl_stream.send_all(b"ok")
                except trio.BrokenResourceError:
                    pass
                finally:
                    await trio.aclose_forcefully(ssl_stream)

            nursery.start_soon(serve_one)
            client = trio.SSLStream(
                await trio.open_tcp_stream("127.0.0.1", port), client_ctx, server_hostname="127.0.0.1"
            )
            try:
                await client.do_handshake()
                data = await client.receive_some(10)
                return str(client.version()) if data == b"ok" else "refused"
            except trio.BrokenResourceError:
                return "refused"
            finally:
                await trio.aclose_forcefully(client)
                await listeners[0].aclose()


async def test_hub_context_requires_a_client_cert_from_the_ca(tmp_path: Path) -> None:
    cloud = make_cloud_pki(tmp_path / "cloud")
    hub = tls.cloud_hub_context(cloud.ca_cert, cloud.server_cert, cloud.server_key)
    assert hub.num_tickets == 0
    assert hub.minimum_version == ssl.TLSVersion.TLSv1_2

    # A node certificate signed by the CA.
    node_key = pki.new_key()
    node_cert = cloud.ca.sign_csr(pki.new_node_csr(node_key, "edge-1"), now=pki.utcnow())
    (tmp_path / "n.crt").write_bytes(pki.cert_to_pem(node_cert))
    (tmp_path / "n.key").write_bytes(pki.key_to_pem(node_key))
    client = tls.edge_client_context(cloud.ca_cert, tmp_path / "n.crt", tmp_path / "n.key")
    assert await _handshake(hub, client) == "TLSv1.3"

    tls12 = tls.edge_client_context(cloud.ca_cert, tmp_path / "n.crt", tmp_path / "n.key")
    tls12.maximum_version = ssl.TLSVersion.TLSv1_2
    assert await _handshake(hub, tls12) == "TLSv1.2"

    anonymous = tls.edge_client_context(cloud.ca_cert)
    assert await _handshake(hub, anonymous) == "refused"

    # The TLS 1.2 suites on offer are ECDHE-ECDSA only.
    assert {c["name"] for c in hub.get_ciphers() if c["protocol"] == "TLSv1.2"} == {
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
    }

    # The edge refuses a cloud whose certificate comes from another CA.
    stranger = make_cloud_pki(tmp_path / "stranger")
    stranger_hub = tls.cloud_hub_context(stranger.ca_cert, stranger.server_cert, stranger.server_key)
    assert await _handshake(stranger_hub, client) == "refused"


def test_a_creator_that_finds_a_published_key_waits_for_and_loads_the_winners_ca(tmp_path: Path) -> None:
    # Simulates a concurrent creator on a filesystem without flock: its key is published, its cert lags.
    winner = pki.new_ca(now=NOW)
    cert_path, key_path = tmp_path / "rootCA.crt", tmp_path / "rootCA.key"
    assert pki.write_new(key_path, pki.key_to_pem(winner.key), mode=pki.KEY_FILE_MODE)
    assert not pki.write_new(key_path, b"loser", mode=pki.KEY_FILE_MODE)

    def publish_cert_late() -> None:
        time.sleep(0.2)  # the slow winner, not a wait for a condition
        pki.write_replace(cert_path, pki.cert_to_pem(winner.cert), mode=pki.CERT_FILE_MODE)

    writer = threading.Thread(target=publish_cert_late)
    writer.start()
    try:
        loaded = pki.load_or_create_ca(cert_path, key_path, wait_for_peer=10)
    finally:
        writer.join(timeout=10)
    assert loaded.hash == winner.hash
    assert loaded.key_der == winner.key_der
    assert sorted(p.name for p in tmp_path.iterdir()) == [".pki.lock", "rootCA.crt", "rootCA.key"]


# --- replacing a node's certificate and key as a pair ---------------------------------------------------------


def _node_pair(ca: pki.CertificateAuthority) -> tuple[bytes, bytes]:
    key = pki.new_key()
    cert = ca.sign_csr(pki.new_node_csr(key, "edge-1"), now=NOW)
    return pki.cert_to_pem(cert), pki.key_to_pem(key)


def _pair_matches(crt: Path, key: Path) -> bool:
    cert = pki.load_cert_pem(crt.read_bytes(), source=str(crt))
    return pki.same_public_key(pki.load_key_pem(key.read_bytes(), source=str(key)), cert)


def test_install_pair_replaces_both_files_with_modes_and_no_leftovers(tmp_path: Path) -> None:
    ca = pki.new_ca(now=NOW)
    crt, key = tmp_path / "server.crt", tmp_path / "server.key"
    old_cert, old_key = _node_pair(ca)
    crt.write_bytes(old_cert)
    key.write_bytes(old_key)
    new_cert, new_key = _node_pair(ca)
    pki.install_pair(crt, new_cert, key, new_key)
    assert (crt.read_bytes(), key.read_bytes()) == (new_cert, new_key)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(crt.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["server.crt", "server.key"]
    assert pki.complete_pair(crt, key) == ""


@pytest.mark.parametrize(
    ("crashed_after", "outcome", "expect_new"),
    [
        ("staging the key", "discarded a staged key", False),
        ("staging both", "installed the staged certificate and key", True),
        ("renaming the key", "installed the staged certificate", True),
        ("a stale certificate stage", "discarded a staged certificate", False),
    ],
)
def test_complete_pair_repairs_every_crash_point_of_install_pair(
    tmp_path: Path, crashed_after: str, outcome: str, expect_new: bool
) -> None:
    ca = pki.new_ca(now=NOW)
    crt, key = tmp_path / "server.crt", tmp_path / "server.key"
    old_cert, old_key = _node_pair(ca)
    new_cert, new_key = _node_pair(ca)
    crt.write_bytes(old_cert)
    key.write_bytes(old_key)
    staged_crt, staged_key = tmp_path / "server.crt.new", tmp_path / "server.key.new"
    # Recreate the files install_pair leaves when interrupted at each point.
    if crashed_after == "staging the key":
        staged_key.write_bytes(new_key)
    elif crashed_after == "staging both":
        staged_key.write_bytes(new_key)
        staged_crt.write_bytes(new_cert)
    elif crashed_after == "renaming the key":
        key.write_bytes(new_key)
        staged_crt.write_bytes(new_cert)
    else:  # a staged certificate that belongs to no key on disk
        staged_crt.write_bytes(_node_pair(ca)[0])
    assert pki.complete_pair(crt, key).startswith(outcome)
    assert _pair_matches(crt, key)
    assert crt.read_bytes() == (new_cert if expect_new else old_cert)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["server.crt", "server.key"]
