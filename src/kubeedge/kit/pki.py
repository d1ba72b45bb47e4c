"""The KubeEdge certificate authority, the cloudcore server certificate and edge node certificates.

Owns every X.509 object of the cloud-edge link: the self-signed ECDSA P-256 CA (CN ``KubeEdge``, no O,
364x100 days, as upstream), the cloudcore server certificate (CN/O ``KubeEdge``, SANs from
``advertiseAddress`` and ``dnsNames``), node CSRs (CN ``system:node:<node>``, O ``system:nodes``) and the
certificates signed from them. All keys are P-256 and stored as PEM ``EC PRIVATE KEY`` files with mode 0600.

Invariants:
- An existing CA is never regenerated. Creation is race-safe: files are written to a temporary name and
  published with ``os.link`` (which fails if the target exists) under an advisory ``flock``; a concurrent
  creator that loses loads the winner's files. Two cloudcores pointed at the same files therefore agree.
- A CA whose key does not match its certificate, that is not a P-256 CA, or that is only half present is an
  error (:class:`PKIError` naming the file), never a reason to make a new one.
- A server certificate is reissued (from the same CA) when it is missing, unreadable, not issued by the CA,
  expired, or its SANs differ from the configured ones; otherwise it is loaded unchanged.
- A node certificate and its key are replaced as a pair (:func:`install_pair`): after any crash,
  :func:`complete_pair` restores a matching pair, old or new.
- Every file read is bounded by :data:`kubeedge.kit.limits.PKI_MAX_FILE_BYTES`.

Functions take an explicit ``now`` (timezone-aware UTC) so that validity windows are testable.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import hashlib
import ipaddress
import os
import secrets
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from kubeedge.kit import limits, log

_log = log.get(__name__)

# --- upstream paths and names (all overridable by parameters) -----------------------------------------------
DEFAULT_CA_CERT: Final = Path("/etc/kubeedge/ca/rootCA.crt")
DEFAULT_CA_KEY: Final = Path("/etc/kubeedge/ca/rootCA.key")
DEFAULT_SERVER_CERT: Final = Path("/etc/kubeedge/certs/server.crt")
DEFAULT_SERVER_KEY: Final = Path("/etc/kubeedge/certs/server.key")

CA_COMMON_NAME: Final = "KubeEdge"
SERVER_COMMON_NAME: Final = "KubeEdge"
SERVER_ORGANIZATION: Final = "KubeEdge"
NODE_CN_PREFIX: Final = "system:node:"
NODE_ORGANIZATION: Final = "system:nodes"

CA_VALIDITY: Final = dt.timedelta(days=364 * 100)
"""Upstream's self-signed CA lifetime (``24h * 364 * 100``)."""

SERVER_VALIDITY: Final = dt.timedelta(days=365 * 100)
"""Lifetime of the cloudcore server certificate; upstream signs it for 100 years as well."""

EDGE_CERT_VALIDITY: Final = dt.timedelta(days=365)
"""Default ``edgeCertSigningDuration`` (365 days)."""

CLOCK_SKEW: Final = dt.timedelta(minutes=5)
"""Certificates start this long before ``now`` so an edge whose clock lags a little accepts them at once."""

KEY_FILE_MODE: Final = 0o600
CERT_FILE_MODE: Final = 0o644

_CURVE_NAME: Final = "secp256r1"


class PKIError(Exception):
    """A certificate or key file is unusable, or a CSR or certificate is not acceptable; the text says why."""


class ExtKeyUsage(IntEnum):
    """Go ``x509.ExtKeyUsage`` numbers, as sent in the certificate service's ``ExtKeyUsages`` header."""

    SERVER_AUTH = 1
    CLIENT_AUTH = 2


_EKU_OIDS: Final = {
    ExtKeyUsage.SERVER_AUTH: ExtendedKeyUsageOID.SERVER_AUTH,
    ExtKeyUsage.CLIENT_AUTH: ExtendedKeyUsageOID.CLIENT_AUTH,
}


def utcnow() -> dt.datetime:
    """The current time as a timezone-aware UTC datetime (the ``now`` shells pass in)."""
    return dt.datetime.now(dt.UTC)


# --- keys ----------------------------------------------------------------------------------------------------


def new_key() -> ec.EllipticCurvePrivateKey:
    """A fresh ECDSA P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def key_to_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """``-----BEGIN EC PRIVATE KEY-----`` PEM (SEC 1), the upstream key file format."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def key_to_der(key: ec.EllipticCurvePrivateKey) -> bytes:
    """SEC 1 DER of ``key``: upstream's ``cakeydata`` bytes, also the join token's HMAC key."""
    return key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )


def load_key_pem(data: bytes, *, source: str) -> ec.EllipticCurvePrivateKey:
    """Parse a PEM private key and insist on P-256; ``source`` names the file in errors."""
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise PKIError(f"{source}: not an unencrypted PEM private key ({exc})") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != _CURVE_NAME:
        raise PKIError(f"{source}: key must be ECDSA P-256")
    return key


def _is_p256(public: object) -> bool:
    return isinstance(public, ec.EllipticCurvePublicKey) and public.curve.name == _CURVE_NAME


def same_public_key(a: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> bool:
    """True when ``cert`` certifies the public half of ``a``."""
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return a.public_key().public_bytes(*fmt) == cert.public_key().public_bytes(*fmt)


# --- certificates --------------------------------------------------------------------------------------------


def cert_to_pem(cert: x509.Certificate) -> bytes:
    """PEM encoding of ``cert``."""
    return cert.public_bytes(serialization.Encoding.PEM)


def cert_to_der(cert: x509.Certificate) -> bytes:
    """DER encoding of ``cert``."""
    return cert.public_bytes(serialization.Encoding.DER)


def load_cert_pem(data: bytes, *, source: str) -> x509.Certificate:
    """Parse one PEM certificate; ``source`` names the file in errors."""
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise PKIError(f"{source}: not a PEM certificate ({exc})") from exc


def load_cert_der(data: bytes, *, source: str) -> x509.Certificate:
    """Parse one DER certificate; ``source`` names where it came from in errors."""
    try:
        return x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise PKIError(f"{source}: not a DER certificate ({exc})") from exc


def ca_hash(ca_der: bytes) -> str:
    """Lower-case hex SHA-256 of the CA certificate's DER: the first part of a join token."""
    return hashlib.sha256(ca_der).hexdigest()


def common_name(name: x509.Name) -> str | None:
    """The first CN of ``name``, or None."""
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else None


def organizations(name: x509.Name) -> list[str]:
    """All O values of ``name``, in order."""
    return [str(a.value) for a in name.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]


def node_common_name(node_name: str) -> str:
    """``system:node:<node_name>``, the CN of a node's certificate."""
    return NODE_CN_PREFIX + node_name


def _serial() -> int:
    # RFC 5280 allows 20 octets; 159 random bits keep it positive and unguessable.
    return secrets.randbits(159) | 1


@dataclass(frozen=True)
class SubjectAltNames:
    """The IP and DNS SANs of a certificate, comparable as sets."""

    ips: frozenset[ipaddress.IPv4Address | ipaddress.IPv6Address]
    dns: frozenset[str]

    @classmethod
    def from_config(cls, advertise_address: Iterable[str], dns_names: Iterable[str]) -> SubjectAltNames:
        """SANs from ``cloudHub.advertiseAddress`` (IPs) and ``cloudHub.dnsNames``; empty strings are skipped.

        Raises :class:`PKIError` for an advertise address that is not an IP literal.
        """
        ips: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
        for addr in advertise_address:
            if not addr:
                continue
            try:
                ips.add(ipaddress.ip_address(addr))
            except ValueError as exc:
                raise PKIError(
                    f"advertiseAddress {addr!r} is not an IP address (put names in dnsNames)"
                ) from exc
        return cls(frozenset(ips), frozenset(d for d in dns_names if d))

    @classmethod
    def of(cls, obj: x509.Certificate | x509.CertificateSigningRequest) -> SubjectAltNames:
        """The SANs carried by a certificate or CSR (empty when it has no SAN extension)."""
        try:
            ext = obj.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            return cls(frozenset(), frozenset())
        ips = frozenset(
            ip
            for ip in ext.get_values_for_type(x509.IPAddress)
            if isinstance(ip, ipaddress.IPv4Address | ipaddress.IPv6Address)
        )
        return cls(ips, frozenset(ext.get_values_for_type(x509.DNSName)))

    def general_names(self) -> list[x509.GeneralName]:
        """The SANs as a sorted, deterministic list of general names."""
        names: list[x509.GeneralName] = [
            x509.IPAddress(ip) for ip in sorted(self.ips, key=lambda i: (i.version, i))
        ]
        names.extend(x509.DNSName(d) for d in sorted(self.dns))
        return names


@dataclass(frozen=True)
class KeyPair:
    """A certificate and its private key."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class CertificateAuthority:
    """The KubeEdge CA: signs the server certificate, node certificates and (via its key) join tokens."""

    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey

    @property
    def cert_der(self) -> bytes:
        """The CA certificate's DER (what ``GET /ca.crt`` serves)."""
        return cert_to_der(self.cert)

    @property
    def key_der(self) -> bytes:
        """The CA key's SEC 1 DER (the join token's HMAC key)."""
        return key_to_der(self.key)

    @property
    def hash(self) -> str:
        """Hex SHA-256 of the CA DER (the join token's first part)."""
        return ca_hash(self.cert_der)

    def _builder(
        self,
        subject: x509.Name,
        public: ec.EllipticCurvePublicKey,
        now: dt.datetime,
        validity: dt.timedelta,
        backdate: dt.timedelta = CLOCK_SKEW,
    ) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.cert.subject)
            .public_key(public)
            .serial_number(_serial())
            .not_valid_before(now - backdate)
            .not_valid_after(now + validity)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False
            )
        )

    def issue_server_cert(
        self,
        key: ec.EllipticCurvePrivateKey,
        sans: SubjectAltNames,
        *,
        now: dt.datetime,
        validity: dt.timedelta = SERVER_VALIDITY,
    ) -> x509.Certificate:
        """The cloudcore server certificate: CN/O ``KubeEdge``, ServerAuth + ClientAuth, ``sans``."""
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COMMON_NAME, SERVER_COMMON_NAME),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, SERVER_ORGANIZATION),
            ]
        )
        builder = self._builder(subject, key.public_key(), now, validity).add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        names = sans.general_names()
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(self.key, hashes.SHA256())

    def sign_csr(
        self,
        csr: x509.CertificateSigningRequest,
        *,
        usages: Sequence[ExtKeyUsage] = (ExtKeyUsage.CLIENT_AUTH,),
        validity: dt.timedelta = EDGE_CERT_VALIDITY,
        now: dt.datetime,
        backdate: dt.timedelta = CLOCK_SKEW,
    ) -> x509.Certificate:
        """Sign an already validated CSR, copying only its CN, O and SANs (as upstream).

        The certificate is valid from ``now - backdate`` (tolerating edges whose clock lags) to ``now + validity``.
        """
        public = csr.public_key()
        if not isinstance(public, ec.EllipticCurvePublicKey) or public.curve.name != _CURVE_NAME:
            raise PKIError("CSR key must be ECDSA P-256")
        attrs = [a for a in csr.subject if a.oid in (NameOID.COMMON_NAME, NameOID.ORGANIZATION_NAME)]
        builder = self._builder(x509.Name(attrs), public, now, validity, backdate).add_extension(
            x509.ExtendedKeyUsage([_EKU_OIDS[u] for u in dict.fromkeys(usages)]), critical=False
        )
        names = SubjectAltNames.of(csr).general_names()
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(self.key, hashes.SHA256())

    def issued(self, cert: x509.Certificate) -> bool:
        """True when ``cert`` carries this CA's signature."""
        try:
            cert.verify_directly_issued_by(self.cert)
        except (ValueError, TypeError, InvalidSignature):
            return False
        return True


def new_ca(*, now: dt.datetime, key: ec.EllipticCurvePrivateKey | None = None) -> CertificateAuthority:
    """A fresh self-signed CA (CN ``KubeEdge``, no O, valid :data:`CA_VALIDITY`)."""
    key = key or new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_COMMON_NAME)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(_serial())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(now + CA_VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return CertificateAuthority(cert, key)


# --- CSRs ----------------------------------------------------------------------------------------------------


def new_node_csr(key: ec.EllipticCurvePrivateKey, node_name: str) -> x509.CertificateSigningRequest:
    """A node's CSR: CN ``system:node:<node_name>``, O ``system:nodes``, signed by ``key``."""
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, node_common_name(node_name)),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, NODE_ORGANIZATION),
        ]
    )
    return x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())


def validate_node_csr(der: bytes, node_name: str) -> x509.CertificateSigningRequest:
    """Parse a DER CSR and check that ``node_name`` may have it signed.

    The CSR must be DER, self-signed correctly, carry an ECDSA P-256 key, CN ``system:node:<node_name>`` and
    O ``system:nodes``. Raises :class:`PKIError` with the reason otherwise.
    """
    try:
        csr = x509.load_der_x509_csr(der)
    except ValueError as exc:
        raise PKIError(f"body is not a DER certificate signing request ({exc})") from exc
    if not csr.is_signature_valid:
        raise PKIError("CSR signature does not verify")
    if not _is_p256(csr.public_key()):
        raise PKIError("CSR key must be ECDSA P-256")
    cn = common_name(csr.subject)
    if cn != node_common_name(node_name):
        raise PKIError(
            f"CSR common name {cn!r} does not match node {node_name!r} (want {node_common_name(node_name)!r})"
        )
    if organizations(csr.subject) != [NODE_ORGANIZATION]:
        raise PKIError(
            f"CSR organization {organizations(csr.subject)!r} must be exactly [{NODE_ORGANIZATION!r}]"
        )
    return csr


# --- files ---------------------------------------------------------------------------------------------------


def read_bounded(path: Path, *, limit: int = limits.PKI_MAX_FILE_BYTES) -> bytes:
    """Read a whole file, refusing one larger than ``limit`` (raises :class:`PKIError`)."""
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise PKIError(f"{path}: larger than {limit} bytes")
    return data


def _write_temp(path: Path, data: bytes, mode: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        os.fchmod(fd, mode)  # the umask may have narrowed or widened nothing, but be explicit
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    return tmp


def write_new(path: Path, data: bytes, *, mode: int) -> bool:
    """Create ``path`` with ``data`` atomically, but only if it does not exist; True if this call created it.

    The content appears all at once (written to a temporary file, then hard-linked into place) and an
    existing file is never touched, which makes it safe against a concurrent creator.
    """
    tmp = _write_temp(path, data, mode)
    try:
        os.link(tmp, path)
    except FileExistsError:
        return False
    finally:
        tmp.unlink()
    return True


def write_replace(path: Path, data: bytes, *, mode: int) -> None:
    """Atomically create or replace ``path`` with ``data`` (temporary file + rename)."""
    tmp = _write_temp(path, data, mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _fsync_dir(directory: Path) -> None:
    # A rename is durable only once its directory is: without this a power cut can undo the order of renames.
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _staged(path: Path) -> Path:
    return path.with_name(f"{path.name}.new")


def install_pair(cert_path: Path, cert_pem: bytes, key_path: Path, key_pem: bytes) -> None:
    """Replace a certificate and its key so that no crash leaves a certificate beside a foreign key.

    Both files are first staged complete and fsynced as ``<name>.new`` (key first, then certificate), then
    renamed into place (key first, then certificate) and the directories fsynced. A crash in between leaves
    staged files that :func:`complete_pair` finishes or discards; call it before loading the pair.
    """
    key_stage, cert_stage = _staged(key_path), _staged(cert_path)
    write_replace(key_stage, key_pem, mode=KEY_FILE_MODE)
    write_replace(cert_stage, cert_pem, mode=CERT_FILE_MODE)
    for directory in {key_path.parent, cert_path.parent}:
        _fsync_dir(directory)
    os.replace(key_stage, key_path)
    _fsync_dir(key_path.parent)
    os.replace(cert_stage, cert_path)
    _fsync_dir(cert_path.parent)


def complete_pair(cert_path: Path, key_path: Path) -> str:
    """Finish or discard an :func:`install_pair` interrupted by a crash; returns what was done.

    The staged certificate is written only after the staged key is complete, so: both staged means both
    are whole (install them); only the certificate staged means the key was already renamed (install the
    certificate if it matches the key in place, else drop it); only the key staged means the certificate
    never got written (drop the key, the old pair is intact). Returns ``""`` when nothing was pending.
    """
    key_stage, cert_stage = _staged(key_path), _staged(cert_path)
    if cert_stage.exists():
        if key_stage.exists():
            os.replace(key_stage, key_path)
            _fsync_dir(key_path.parent)
            os.replace(cert_stage, cert_path)
            _fsync_dir(cert_path.parent)
            return "installed the staged certificate and key"
        try:
            cert = load_cert_pem(read_bounded(cert_stage), source=str(cert_stage))
            key = load_key_pem(read_bounded(key_path), source=str(key_path))
            matches = same_public_key(key, cert)
        except (OSError, PKIError):
            matches = False
        if matches:
            os.replace(cert_stage, cert_path)
            _fsync_dir(cert_path.parent)
            return "installed the staged certificate"
        cert_stage.unlink()
        return "discarded a staged certificate that does not match the key"
    if key_stage.exists():
        key_stage.unlink()
        return "discarded a staged key without its certificate"
    return ""


@contextlib.contextmanager
def _dir_lock(directory: Path) -> Iterator[None]:
    """An advisory exclusive ``flock`` on ``<directory>/.pki.lock`` (also excludes threads: one fd each)."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / ".pki.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            # Some network filesystems refuse flock; os.link publication alone still keeps creation safe.
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                raise
        yield
    finally:
        os.close(fd)


def load_ca(cert_path: Path = DEFAULT_CA_CERT, key_path: Path = DEFAULT_CA_KEY) -> CertificateAuthority:
    """Load and check an existing CA (P-256, a CA certificate, key matching). Raises :class:`PKIError`."""
    cert = load_cert_pem(read_bounded(cert_path), source=str(cert_path))
    key = load_key_pem(read_bounded(key_path), source=str(key_path))
    if not same_public_key(key, cert):
        raise PKIError(f"{key_path} does not match the certificate {cert_path}")
    try:
        ca_flag = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        ca_flag = False
    if not ca_flag:
        raise PKIError(f"{cert_path}: not a CA certificate (basicConstraints CA:TRUE missing)")
    return CertificateAuthority(cert, key)


def load_or_create_ca(
    cert_path: Path = DEFAULT_CA_CERT,
    key_path: Path = DEFAULT_CA_KEY,
    *,
    now: dt.datetime | None = None,
    wait_for_peer: float = 10.0,
) -> CertificateAuthority:
    """Load the CA from ``cert_path``/``key_path``, creating both if neither exists.

    Never overwrites: the key is published first with ``os.link``; a creator that finds the key already
    published drops its own CA and waits up to ``wait_for_peer`` seconds for the winner's certificate.
    A certificate without a key, or a key whose certificate never appears, is a :class:`PKIError`.
    """
    with _dir_lock(key_path.parent):
        if not key_path.exists() and not cert_path.exists():
            ca = new_ca(now=now or utcnow())
            if write_new(key_path, key_to_pem(ca.key), mode=KEY_FILE_MODE):
                write_replace(cert_path, cert_to_pem(ca.cert), mode=CERT_FILE_MODE)
                _log.info("created CA", cert=str(cert_path), key=str(key_path), sha256=ca.hash)
                return ca
        elif cert_path.exists() and not key_path.exists():
            raise PKIError(f"{cert_path} exists but its key {key_path} does not; refusing to create a new CA")
        # Someone else created (or is creating) the CA: wait for its certificate, bounded.
        deadline = time.monotonic() + wait_for_peer
        while not cert_path.exists():
            if time.monotonic() > deadline:
                raise PKIError(
                    f"{key_path} exists but {cert_path} does not appear; refusing to create a new CA"
                )
            time.sleep(0.02)
        return load_ca(cert_path, key_path)


def load_or_issue_server_cert(
    ca: CertificateAuthority,
    sans: SubjectAltNames,
    cert_path: Path = DEFAULT_SERVER_CERT,
    key_path: Path = DEFAULT_SERVER_KEY,
    *,
    now: dt.datetime | None = None,
    validity: dt.timedelta = SERVER_VALIDITY,
) -> KeyPair:
    """Load the cloudcore server certificate, (re)issuing it from ``ca`` when it no longer fits.

    It is reissued when missing, unreadable, not signed by ``ca``, expired, not matching its key, or when
    its SANs differ from ``sans``. A new key is generated with every issue.
    """
    now = now or utcnow()
    reason = None
    try:
        cert = load_cert_pem(read_bounded(cert_path), source=str(cert_path))
        key = load_key_pem(read_bounded(key_path), source=str(key_path))
    except (OSError, PKIError) as exc:
        reason = f"unreadable: {exc}"
    else:
        if not ca.issued(cert):
            reason = "not issued by the CA"
        elif not same_public_key(key, cert):
            reason = "key does not match certificate"
        elif now >= cert.not_valid_after_utc:
            reason = "expired"
        elif SubjectAltNames.of(cert) != sans:
            reason = "subject alternative names changed"
        else:
            return KeyPair(cert, key)
    key = new_key()
    cert = ca.issue_server_cert(key, sans, now=now, validity=validity)
    with _dir_lock(key_path.parent):
        write_replace(key_path, key_to_pem(key), mode=KEY_FILE_MODE)
        write_replace(cert_path, cert_to_pem(cert), mode=CERT_FILE_MODE)
    _log.info(
        "issued server certificate",
        cert=str(cert_path),
        reason=reason,
        sans=[str(n.value) for n in sans.general_names()],
    )
    return KeyPair(cert, key)
