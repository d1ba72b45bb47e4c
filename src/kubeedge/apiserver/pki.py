"""The embedded API server's own CA, serving certificate, admin token, signing key and kubeconfig.

Owns the files under the data directory's ``pki/`` folder. On first start it
creates an ECDSA P-256 CA (10 years) and a serving certificate (1 year) whose
SANs cover localhost, 127.0.0.1, ::1 and the listen address; later starts
reuse them and only re-issue the serving certificate when the address is not
covered or it expires within 30 days. Secrets are written 0600 through a
temporary file and rename, so a crash never leaves half a key. Unreadable or
corrupt files raise :class:`PkiError` naming the file.
"""

from __future__ import annotations

import base64
import datetime as dt
import ipaddress
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubeedge.kit import limits

CONTEXT_NAME = "kubeedge-py"


class PkiError(Exception):
    """A PKI file is unreadable or corrupt."""


@dataclass(frozen=True)
class Pki:
    """Paths and secrets of one server."""

    ca_cert: Path
    server_cert: Path
    server_key: Path
    token: str
    signing_key: bytes


def _write_private(path: Path, data: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def _read(path: Path) -> bytes:
    try:
        if path.stat().st_size > limits.MAX_CONFIG_BYTES:
            raise PkiError(f"{path} is larger than {limits.MAX_CONFIG_BYTES} bytes")
        return path.read_bytes()
    except OSError as exc:
        raise PkiError(f"cannot read {path}: {exc}") from None


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _sans(address: str) -> list[x509.GeneralName]:
    names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.DNSName("kubernetes"),
        x509.DNSName("kubernetes.default"),
        x509.DNSName("kubernetes.default.svc"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    if address and address not in ("0.0.0.0", "::", "127.0.0.1", "::1", "localhost"):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(address)))
        except ValueError:
            names.append(x509.DNSName(address))
    return names


def ensure(pki_dir: Path, address: str, *, now: dt.datetime | None = None) -> Pki:
    """Create or load the CA, serving certificate, admin token and signing key in ``pki_dir``."""
    now = now or dt.datetime.now(dt.UTC)
    pki_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    ca_cert_p, ca_key_p = pki_dir / "ca.crt", pki_dir / "ca.key"
    srv_cert_p, srv_key_p = pki_dir / "apiserver.crt", pki_dir / "apiserver.key"
    token_p, sign_p = pki_dir / "admin.token", pki_dir / "serviceaccount.key"
    try:
        if not ca_cert_p.exists():
            key = ec.generate_private_key(ec.SECP256R1())
            cert = (
                x509.CertificateBuilder()
                .subject_name(_name("kubeedge-py-ca"))
                .issuer_name(_name("kubeedge-py-ca"))
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=3650))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(
                    x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
                )
                .sign(key, hashes.SHA256())
            )
            _write_private(
                ca_key_p,
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ),
            )
            _write_private(ca_cert_p, cert.public_bytes(serialization.Encoding.PEM))
            srv_cert_p.unlink(missing_ok=True)
        ca_cert = x509.load_pem_x509_certificate(_read(ca_cert_p))
        ca_key = serialization.load_pem_private_key(_read(ca_key_p), None)
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise PkiError(f"{ca_key_p} is not an EC private key")
        if _needs_new_serving(srv_cert_p, address, now):
            key = ec.generate_private_key(ec.SECP256R1())
            cert = (
                x509.CertificateBuilder()
                .subject_name(_name("kube-apiserver"))
                .issuer_name(ca_cert.subject)
                .public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - dt.timedelta(minutes=5))
                .not_valid_after(now + dt.timedelta(days=365))
                .add_extension(x509.SubjectAlternativeName(_sans(address)), critical=False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
                .sign(ca_key, hashes.SHA256())
            )
            _write_private(
                srv_key_p,
                key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                ),
            )
            _write_private(srv_cert_p, cert.public_bytes(serialization.Encoding.PEM))
        if not token_p.exists():
            _write_private(token_p, secrets.token_urlsafe(32).encode())
        if not sign_p.exists():
            _write_private(sign_p, secrets.token_bytes(32))
        token = _read(token_p).decode().strip()
        signing = _read(sign_p)
    except ValueError as exc:
        raise PkiError(f"corrupt PKI file in {pki_dir}: {exc}") from None
    if len(token) < 16 or len(signing) < 32:
        raise PkiError(f"{token_p} or {sign_p} is too short; delete it to regenerate")
    return Pki(ca_cert_p, srv_cert_p, srv_key_p, token, signing)


def _needs_new_serving(path: Path, address: str, now: dt.datetime) -> bool:
    if not path.exists():
        return True
    cert = x509.load_pem_x509_certificate(_read(path))
    if cert.not_valid_after_utc - now < dt.timedelta(days=30):
        return True
    have = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return any(name not in have for name in _sans(address))


def kubeconfig(pki: Pki, server_url: str) -> str:
    """A kubeconfig (like k3s.yaml) for the admin token, embedding the CA."""
    ca = base64.b64encode(_read(pki.ca_cert)).decode()
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": CONTEXT_NAME, "cluster": {"server": server_url, "certificate-authority-data": ca}}
        ],
        "users": [{"name": f"{CONTEXT_NAME}-admin", "user": {"token": pki.token}}],
        "contexts": [
            {"name": CONTEXT_NAME, "context": {"cluster": CONTEXT_NAME, "user": f"{CONTEXT_NAME}-admin"}}
        ],
        "current-context": CONTEXT_NAME,
        "preferences": {},
    }
    return yaml.safe_dump(doc, sort_keys=False)


def write_kubeconfig(path: Path, text: str) -> None:
    """Write the kubeconfig 0600 atomically, creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    _write_private(path, text.encode())
