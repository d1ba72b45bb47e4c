"""Edge certificate rotation: when to renew (sans-io) and the renewal itself (trio shell).

Owns the node certificate's life after ``keadm join``. :class:`RotationSchedule` picks the renewal instant
uniformly in [70 %, 90 %] of the certificate's lifetime (so that nodes joined together do not renew
together), and after a failure the retry instant with capped full-jitter backoff. :func:`check_issued` judges
the cloud's answer. :class:`CertRotator` runs next to :class:`~kubeedge.edge.edgehub.hub.EdgeHub`: at the
instant it makes a new P-256 key and CSR, asks ``GET <httpServer>/edge.crt`` over mutual TLS with the
current certificate (no token), checks the answer, installs key and certificate as a pair
(:func:`kubeedge.kit.pki.install_pair`) and hands EdgeHub an ssl context rebuilt from the new files, which
makes it reconnect at once presenting the new certificate.

Invariants: the files on disk always hold a matching pair (old or new); the old certificate stays in use
until the new one is installed and checked; times are wall-clock seconds since the epoch because
certificate validity is wall-clock time. Failure: any problem (cloud unreachable, 401, a bad answer,
unwritable files) is logged with its reason and retried with backoff; :meth:`CertRotator.run` only returns
by cancellation. A certificate that has already expired cannot authenticate a renewal: this is logged as an
error on every attempt (the node must be joined again with ``keadm join --force``).
"""

from __future__ import annotations

import datetime as dt
import random
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

import trio
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from kubeedge.kit import certclient, log, pki, tls
from kubeedge.kit.backoff import Backoff

if TYPE_CHECKING:
    from kubeedge.edge.edgehub.hub import EdgeHub

_log = log.get(__name__)

ROTATE_FROM: Final = 0.7
"""Earliest renewal point, as a fraction of the lifetime (client-go's certificate manager uses the same)."""
ROTATE_UNTIL: Final = 0.9
"""Latest renewal point, as a fraction of the lifetime."""
OVERDUE_SPREAD: Final = 30.0
"""A certificate already past :data:`ROTATE_UNTIL` is renewed within this many seconds (never after half of
what is left), spread so that a fleet restarted together does not hit the cloud in one burst."""
RETRY_BASE: Final = 5.0
"""Ceiling of the first retry delay after a failed renewal (seconds)."""
RETRY_CAP: Final = 300.0
"""Largest retry delay ceiling (seconds): an unreachable cloud is asked at least every 5 minutes."""
MAX_SLEEP: Final = 300.0
"""Longest single sleep while waiting for the renewal instant: the wall clock is re-read at least this
often, so a clock step or a suspended machine delays a renewal by at most this much."""


class RotationError(Exception):
    """A renewal attempt failed; the message says which step and why."""


class RotationSchedule:
    """When to renew: a sans-io policy with an explicit ``now`` and a caller-provided random source."""

    def __init__(
        self,
        rng: random.Random,
        *,
        retry_base: float = RETRY_BASE,
        retry_cap: float = RETRY_CAP,
        overdue_spread: float = OVERDUE_SPREAD,
    ) -> None:
        if overdue_spread < 0:
            raise ValueError(f"overdue spread must be >= 0, got {overdue_spread}")
        self._rng = rng
        self._backoff = Backoff(retry_base, retry_cap, rng)
        self._overdue_spread = overdue_spread

    def plan(self, not_before: float, not_after: float, now: float) -> float:
        """The renewal instant for a certificate valid ``[not_before, not_after)``; resets the retry backoff.

        Uniform in [70 %, 90 %] of the lifetime; if ``now`` is already inside that window, uniform in the
        rest of it; if past 90 %, within :data:`OVERDUE_SPREAD` seconds (at most half the time left).
        Raises :class:`ValueError` for an empty lifetime.
        """
        lifetime = not_after - not_before
        if not lifetime > 0:
            raise ValueError(
                f"certificate lifetime must be positive (notBefore {not_before}, notAfter {not_after})"
            )
        self._backoff.reset()
        low = max(now, not_before + ROTATE_FROM * lifetime)
        high = not_before + ROTATE_UNTIL * lifetime
        if low < high:
            return self._rng.uniform(low, high)
        spread = min(self._overdue_spread, max(0.0, (not_after - now) / 2))
        return now + self._rng.uniform(0.0, spread)

    def failed(self, now: float) -> float:
        """The retry instant after a failed attempt at ``now`` (full jitter, ceiling doubling up to the cap)."""
        return now + self._backoff.next_delay()


def check_issued(
    der: bytes, *, ca: x509.Certificate, key: ec.EllipticCurvePrivateKey, node: str, now: dt.datetime
) -> x509.Certificate:
    """Accept the cloud's answer only if it is a usable certificate for ``node`` and ``key``.

    It must be DER, signed by ``ca``, have CN ``system:node:<node>``, certify ``key``'s public half, allow
    client authentication and be valid at ``now``. Raises :class:`RotationError` naming the first problem.
    """
    try:
        cert = pki.load_cert_der(der, source="the certificate service's answer")
    except pki.PKIError as exc:
        raise RotationError(str(exc)) from exc
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature) as exc:
        raise RotationError(f"new certificate is not issued by the CA ({type(exc).__name__}: {exc})") from exc
    cn = pki.common_name(cert.subject)
    if cn != pki.node_common_name(node):
        raise RotationError(f"new certificate has CN {cn!r}, want {pki.node_common_name(node)!r}")
    if not pki.same_public_key(key, cert):
        raise RotationError("new certificate does not certify the key this node just generated")
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usages = None
    if usages is not None and ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
        raise RotationError("new certificate does not allow client authentication")
    if not cert.not_valid_before_utc <= now < cert.not_valid_after_utc:
        raise RotationError(
            f"new certificate is not valid now ({cert.not_valid_before_utc} .. {cert.not_valid_after_utc})"
        )
    return cert


def read_cert(path: Path) -> x509.Certificate:
    """The PEM certificate at ``path`` (bounded read); raises :class:`RotationError` naming the file."""
    try:
        return pki.load_cert_pem(pki.read_bounded(path), source=str(path))
    except (OSError, pki.PKIError) as exc:
        raise RotationError(f"cannot read the node certificate: {exc}") from exc


@dataclass(frozen=True, slots=True)
class RotationSettings:
    """Where the node's files and the certificate service are (upstream ``edgeHub`` keys in comments)."""

    service_url: str
    """``httpServer``: ``https://<cloud>:10002``."""
    ca_file: Path
    """``tlsCaFile``: the KubeEdge CA the answer must chain to."""
    cert_file: Path
    """``tlsCertFile``: replaced by each renewal."""
    key_file: Path
    """``tlsPrivateKeyFile``: replaced by each renewal (mode 0600)."""
    retry_base: float = RETRY_BASE
    retry_cap: float = RETRY_CAP
    overdue_spread: float = OVERDUE_SPREAD
    request_timeout: float = certclient.DEFAULT_TIMEOUT
    """Seconds for connecting to the certificate service and for each read."""

    def __post_init__(self) -> None:
        if not self.service_url.startswith("https://"):
            raise ValueError(f"edgeHub.httpServer {self.service_url!r}: expected https://host:port")


class CertRotator:
    """Renews the node certificate of ``hub`` before it expires; run :meth:`run` in a nursery.

    ``on_rotated`` is called with each installed certificate and ``on_failed`` with the reason and the
    retry delay of each failed attempt (e.g. to publish them on the status board); neither may block.
    """

    def __init__(
        self,
        hub: EdgeHub,
        settings: RotationSettings,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
        on_rotated: Callable[[x509.Certificate], None] | None = None,
        on_failed: Callable[[str, float], None] | None = None,
    ) -> None:
        self.settings = settings
        self._hub = hub
        self._node = hub.settings.node_name
        self._schedule = RotationSchedule(
            rng or random.Random(),
            retry_base=settings.retry_base,
            retry_cap=settings.retry_cap,
            overdue_spread=settings.overdue_spread,
        )
        self._clock = clock
        self._on_rotated = on_rotated
        self._on_failed = on_failed
        self.rotations = 0
        """Certificates installed since start."""
        self.failures = 0
        """Failed attempts since start."""
        self.last_error = ""
        """Reason of the last failed attempt ("" before any)."""
        self.next_attempt: float | None = None
        """Wall-clock instant of the next attempt, once planned."""

    async def run(self, *, task_status: trio.TaskStatus[CertRotator] = trio.TASK_STATUS_IGNORED) -> None:
        """Renew forever: plan from the certificate on disk, renew at the instant, retry failures."""
        s = self.settings
        try:
            await self._settle_pair()
            cert: x509.Certificate | None = await trio.to_thread.run_sync(read_cert, s.cert_file)
        except RotationError as exc:
            # Without a readable certificate EdgeHub cannot connect either; keep trying so a fixed file is used.
            self._failed(str(exc))
            cert = None
        if cert is not None:
            self._plan(cert)
        task_status.started(self)
        while True:
            assert self.next_attempt is not None
            await self._sleep_until(self.next_attempt)
            try:
                cert = await self.rotate_once()
            except RotationError as exc:
                self._failed(str(exc))
            else:
                self._plan(cert)

    async def rotate_once(self) -> x509.Certificate:
        """One renewal: new key and CSR, signed over mutual TLS, checked, installed, EdgeHub reconnected.

        Returns the installed certificate; raises :class:`RotationError`, after which the files on disk are
        still a matching pair (the old one, or at worst staged files that the next attempt settles).
        """
        s = self.settings
        await self._settle_pair()
        current = await trio.to_thread.run_sync(read_cert, s.cert_file)
        if pki.utcnow() >= current.not_valid_after_utc:
            raise RotationError(
                f"{s.cert_file} expired at {current.not_valid_after_utc}: it cannot authenticate a renewal; "
                "join the node again (keadm join --force)"
            )
        _log.info("renewing node certificate", node=self._node, expires=str(current.not_valid_after_utc))
        key = pki.new_key()
        csr_der = pki.new_node_csr(key, self._node).public_bytes(serialization.Encoding.DER)
        try:
            context = tls.edge_client_context(s.ca_file, s.cert_file, s.key_file)
            ca = await trio.to_thread.run_sync(read_cert, s.ca_file)
        except (OSError, ssl.SSLError, ValueError) as exc:
            raise RotationError(f"cannot load the current certificate files: {exc}") from exc
        try:
            der = await trio.to_thread.run_sync(
                lambda: certclient.request_node_cert(
                    s.service_url, csr_der, self._node, context=context, timeout=s.request_timeout
                ),
                abandon_on_cancel=True,
            )
        except (certclient.CertServiceError, pki.PKIError) as exc:
            raise RotationError(f"certificate request failed: {exc}") from exc
        cert = check_issued(der, ca=ca, key=key, node=self._node, now=pki.utcnow())
        _log.info("new node certificate received", serial=f"{cert.serial_number:x}")
        try:
            await trio.to_thread.run_sync(
                pki.install_pair, s.cert_file, pki.cert_to_pem(cert), s.key_file, pki.key_to_pem(key)
            )
            new_context = tls.edge_client_context(s.ca_file, s.cert_file, s.key_file)
        except (OSError, ssl.SSLError) as exc:
            raise RotationError(f"cannot install the new certificate: {exc}") from exc
        self.rotations += 1
        _log.info(
            "installed new node certificate; reconnecting with it",
            cert=str(s.cert_file),
            serial=f"{cert.serial_number:x}",
            expires=str(cert.not_valid_after_utc),
        )
        self._hub.use_ssl_context(new_context)
        if self._on_rotated is not None:
            self._on_rotated(cert)
        return cert

    async def _settle_pair(self) -> None:
        """Finish or discard a renewal interrupted by a crash or a failed write (see ``pki.complete_pair``)."""
        s = self.settings
        try:
            done = await trio.to_thread.run_sync(pki.complete_pair, s.cert_file, s.key_file)
        except OSError as exc:
            raise RotationError(f"cannot settle an interrupted renewal: {exc}") from exc
        if done:
            _log.warning("finished an interrupted certificate renewal", action=done, cert=str(s.cert_file))

    def _plan(self, cert: x509.Certificate) -> None:
        due = self._schedule.plan(
            cert.not_valid_before_utc.timestamp(), cert.not_valid_after_utc.timestamp(), self._clock()
        )
        self.next_attempt = due
        _log.info(
            "certificate renewal planned",
            at=dt.datetime.fromtimestamp(due, dt.UTC).isoformat(timespec="seconds"),
            expires=str(cert.not_valid_after_utc),
        )

    def _failed(self, reason: str) -> None:
        now = self._clock()
        self.failures += 1
        self.last_error = reason
        self.next_attempt = self._schedule.failed(now)
        retry_in = self.next_attempt - now
        _log.error("certificate renewal failed", reason=reason, retry_in=round(retry_in, 3))
        if self._on_failed is not None:
            self._on_failed(reason, retry_in)

    async def _sleep_until(self, due: float) -> None:
        while True:
            left = due - self._clock()
            if left <= 0:
                return
            await trio.sleep(min(left, MAX_SLEEP))
