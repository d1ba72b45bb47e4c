"""``keadm join`` / ``keadm reset``: bootstrap an edge node's certificates and edgecore.yaml from a token.

Owns the files a join writes under the config dir (default ``/etc/kubeedge``): ``ca/rootCA.crt``,
``certs/server.crt``, ``certs/server.key`` (0600, ``EC PRIVATE KEY``) and ``config/edgecore.yaml``;
:func:`reset` removes exactly those (and the three sub-directories when left empty).

Join order is chosen so that nothing is written unless everything succeeded: parse the token (malformed or
expired: stop), fetch ``/ca.crt`` without verification, trust it only if its SHA-256 equals the token's first
part, get a certificate for a fresh P-256 key over TLS verified against that CA, check the certificate, then
write all files. Failures raise :class:`JoinError` with an operator-facing message.

:func:`edgecore_config` is a small template of a complete EdgeCore v1alpha2 document; it is meant to be
replaced by the EdgeCore config model's dumper once that exists.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from kubeedge.kit import certclient, jointoken, pki, tls

DEFAULT_CONFIG_DIR: Final = Path("/etc/kubeedge")
DEFAULT_CERT_PORT: Final = 10002
DEFAULT_DB_PATH: Final = Path("/var/lib/kubeedge/edgecore.db")
DEFAULT_PROJECT_ID: Final = "e632aba927ea4ac2b575ec1603d56f10"

_NODE_NAME_RE: Final = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_LABEL_KEY_RE: Final = re.compile(
    r"([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
)
_LABEL_VALUE_RE: Final = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")


class JoinError(Exception):
    """A join or reset step failed; the message says which and why."""


@dataclass(frozen=True)
class JoinPaths:
    """Where a join writes, all under one config dir."""

    config_dir: Path

    @property
    def ca_cert(self) -> Path:
        """``<dir>/ca/rootCA.crt``."""
        return self.config_dir / "ca" / "rootCA.crt"

    @property
    def cert(self) -> Path:
        """``<dir>/certs/server.crt`` (the node's client certificate, upstream's name)."""
        return self.config_dir / "certs" / "server.crt"

    @property
    def key(self) -> Path:
        """``<dir>/certs/server.key``."""
        return self.config_dir / "certs" / "server.key"

    @property
    def config(self) -> Path:
        """``<dir>/config/edgecore.yaml``."""
        return self.config_dir / "config" / "edgecore.yaml"

    def files(self) -> list[Path]:
        """Every file a join writes, in writing order."""
        return [self.ca_cert, self.key, self.cert, self.config]


def parse_host_port(value: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` / ``[v6]:PORT``; raises :class:`JoinError` naming the bad value."""
    host, sep, port_text = value.rpartition(":")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise JoinError(f"--cloudcore-ipport {value!r}: expected HOST:PORT, e.g. 192.168.1.10:10000")
    if host.startswith("["):
        if not host.endswith("]"):
            raise JoinError(f"--cloudcore-ipport {value!r}: unbalanced brackets")
        host = host[1:-1]
    elif ":" in host:
        raise JoinError(f"--cloudcore-ipport {value!r}: write IPv6 addresses as [ADDR]:PORT")
    return host, int(port_text)


def host_port(host: str, port: int) -> str:
    """``host:port`` with IPv6 literals bracketed."""
    try:
        if isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address):
            return f"[{host}]:{port}"
    except ValueError:
        pass
    return f"{host}:{port}"


def validate_node_name(name: str) -> str:
    """Insist on a Kubernetes node name (lower-case RFC 1123 subdomain, at most 253 characters)."""
    if not _NODE_NAME_RE.fullmatch(name):
        raise JoinError(
            f"--edgenode-name {name!r}: must be a lower-case RFC 1123 subdomain (a-z, 0-9, '-', '.'; ≤253)"
        )
    return name


def parse_labels(value: str | None) -> dict[str, str]:
    """``k=v,k2=v2`` into a dict; keys and values checked against Kubernetes label syntax."""
    labels: dict[str, str] = {}
    if not value:
        return labels
    for item in value.split(","):
        key, sep, val = item.strip().partition("=")
        if not sep or not _LABEL_KEY_RE.fullmatch(key) or not _LABEL_VALUE_RE.fullmatch(val):
            raise JoinError(f"--labels: {item!r} is not a valid key=value label")
        labels[key] = val
    return labels


def edgecore_config(
    *,
    cloud_host: str,
    websocket_port: int,
    cert_port: int,
    node_name: str,
    labels: Mapping[str, str],
    paths: JoinPaths,
    db_path: Path = DEFAULT_DB_PATH,
) -> dict[str, Any]:
    """A complete EdgeCore v1alpha2 document with upstream defaults, pointing at the joined files."""
    return {
        "apiVersion": "edgecore.config.kubeedge.io/v1alpha2",
        "kind": "EdgeCore",
        "database": {"aliasName": "default", "driverName": "sqlite3", "dataSource": str(db_path)},
        "modules": {
            "edged": {
                "enable": True,
                "hostnameOverride": node_name,
                "nodeLabels": dict(labels),
                "registerNodeNamespace": "default",
                "registerSchedulable": True,
                "reportEvent": False,
                "tailoredKubeletConfig": {},
            },
            "edgeHub": {
                "enable": True,
                "heartbeat": 15,
                "messageQPS": 30,
                "messageBurst": 60,
                "projectID": DEFAULT_PROJECT_ID,
                "rotateCertificates": True,
                "httpServer": certclient.service_url(cloud_host, cert_port),
                "tlsCaFile": str(paths.ca_cert),
                "tlsCertFile": str(paths.cert),
                "tlsPrivateKeyFile": str(paths.key),
                # The certificates exist already, so the token has no further use (upstream wipes it too).
                "token": "",
                "websocket": {
                    "enable": True,
                    "server": host_port(cloud_host, websocket_port),
                    "handshakeTimeout": 30,
                    "readDeadline": 15,
                    "writeDeadline": 15,
                },
                "quic": {"enable": False},
            },
            "eventBus": {
                "enable": True,
                "mqttMode": 2,
                "mqttServerExternal": "tcp://127.0.0.1:1883",
                "mqttServerInternal": "tcp://127.0.0.1:1884",
                "mqttQOS": 0,
                "mqttRetain": False,
                "mqttSessionQueueSize": 100,
            },
            "metaManager": {
                "enable": True,
                "contextSendGroup": "hub",
                "contextSendModule": "websocket",
                "remoteQueryTimeout": 60,
                "metaServer": {"enable": False},
            },
            "serviceBus": {"enable": False, "server": "127.0.0.1", "port": 9060, "timeout": 60},
            "deviceTwin": {"enable": True},
            "edgeStream": {"enable": False, "server": "127.0.0.1:10004"},
            "taskManager": {"enable": False},
        },
    }


def _check_issued(ca: x509.Certificate, cert: x509.Certificate, key_pub: bytes, node_name: str) -> None:
    try:
        cert.verify_directly_issued_by(ca)
    except Exception as exc:
        raise JoinError(f"the certificate returned by the cloud is not signed by its CA ({exc})") from exc
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    if spki != key_pub:
        raise JoinError("the certificate returned by the cloud is for another key")
    if pki.common_name(cert.subject) != pki.node_common_name(node_name):
        raise JoinError(f"the certificate returned by the cloud has CN {pki.common_name(cert.subject)!r}")


def join(
    *,
    cloudcore: str,
    token: str,
    node_name: str,
    cert_port: int = DEFAULT_CERT_PORT,
    labels: Mapping[str, str] | None = None,
    config_dir: Path = DEFAULT_CONFIG_DIR,
    db_path: Path = DEFAULT_DB_PATH,
    force: bool = False,
    timeout: float = certclient.DEFAULT_TIMEOUT,
    progress: Callable[[str], None] = lambda _line: None,
    now: Callable[[], float] = time.time,
) -> JoinPaths:
    """Join this node to the cloudcore at ``cloudcore`` (``HOST:PORT`` of its websocket); returns the paths."""
    host, ws_port = parse_host_port(cloudcore)
    validate_node_name(node_name)
    paths = JoinPaths(config_dir)
    existing = [p for p in paths.files() if p.exists()]
    if existing and not force:
        raise JoinError(
            f"this node is already joined ({existing[0]} exists); run `keadm reset` first or pass --force"
        )
    try:
        parsed = jointoken.parse(token)
        expiry = jointoken.check_not_expired(parsed.bearer, now=now())
    except jointoken.TokenError as exc:
        raise JoinError(str(exc)) from exc
    progress(f"token valid until {expiry.isoformat()}")

    base = certclient.service_url(host, cert_port)
    progress(f"fetching the CA from {base}/ca.crt")
    try:
        ca_der = certclient.fetch_ca(base, timeout=timeout)
    except (certclient.CertServiceError, pki.PKIError) as exc:
        raise JoinError(f"cannot fetch the CA: {exc}") from exc
    got = pki.ca_hash(ca_der)
    if got != parsed.ca_hash:
        raise JoinError(
            f"CA hash mismatch: the token expects sha256 {parsed.ca_hash} but {base}/ca.crt served {got}; "
            "the token belongs to another cloudcore, or someone is intercepting the connection. Nothing was written."
        )
    ca_cert = x509.load_der_x509_certificate(ca_der)
    ca_pem = pki.cert_to_pem(ca_cert)

    progress(f"requesting a certificate for node {node_name} from {base}/edge.crt")
    key = pki.new_key()
    csr = pki.new_node_csr(key, node_name)
    try:
        cert_der = certclient.request_node_cert(
            base,
            csr.public_bytes(serialization.Encoding.DER),
            node_name,
            context=tls.edge_client_context_from_pem(ca_pem),
            bearer=parsed.bearer,
            timeout=timeout,
        )
    except (certclient.CertServiceError, pki.PKIError) as exc:
        raise JoinError(f"cannot get a node certificate: {exc}") from exc
    cert = x509.load_der_x509_certificate(cert_der)
    _check_issued(
        ca_cert,
        cert,
        key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        node_name,
    )
    progress(
        f"certificate valid until {cert.not_valid_after_utc.isoformat()}; writing files under {config_dir}"
    )

    document = edgecore_config(
        cloud_host=host,
        websocket_port=ws_port,
        cert_port=cert_port,
        node_name=node_name,
        labels=labels or {},
        paths=paths,
        db_path=db_path,
    )
    pki.write_replace(paths.ca_cert, ca_pem, mode=pki.CERT_FILE_MODE)
    pki.write_replace(paths.key, pki.key_to_pem(key), mode=pki.KEY_FILE_MODE)
    pki.write_replace(paths.cert, pki.cert_to_pem(cert), mode=pki.CERT_FILE_MODE)
    pki.write_replace(
        paths.config, yaml.safe_dump(document, sort_keys=False).encode(), mode=pki.CERT_FILE_MODE
    )
    return paths


def reset(config_dir: Path = DEFAULT_CONFIG_DIR) -> list[Path]:
    """Remove what :func:`join` wrote under ``config_dir``; returns the files removed."""
    paths = JoinPaths(config_dir)
    removed = []
    for path in paths.files():
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        removed.append(path)
    for directory in {p.parent for p in paths.files()}:
        # Not empty means other files belong to someone else; keep the directory then.
        with contextlib.suppress(OSError):
            directory.rmdir()
    return removed
