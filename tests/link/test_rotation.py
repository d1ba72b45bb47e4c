"""Edge certificate rotation: the schedule (sans-io), the answer check, and renewal end to end over real mTLS."""

from __future__ import annotations

import collections
import dataclasses
import datetime as dt
import functools
import os
import random
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from kubeedge.cloud.cloudhub import certserver
from kubeedge.edge import app
from kubeedge.edge.edgehub.hub import EdgeHub
from kubeedge.edge.edgehub.rotation import (
    OVERDUE_SPREAD,
    CertRotator,
    RotationError,
    RotationSchedule,
    RotationSettings,
    check_issued,
)
from kubeedge.edge.status import providers
from kubeedge.kit import config as kconfig
from kubeedge.kit import pki as kit_pki
from kubeedge.kit import tls
from kubeedge.kit.config.edgecore import EdgeCoreConfig

from .conftest import PKI, RunningCloud, make_edge, start_cloud

YEAR = 365 * 86400.0

# --- schedule --------------------------------------------------------------------------------------------


def test_plan_is_uniform_over_70_to_90_percent_of_the_lifetime() -> None:
    schedule = RotationSchedule(random.Random(7))
    not_before, lifetime = 1_700_000_000.0, YEAR
    fractions = [
        (schedule.plan(not_before, not_before + lifetime, not_before) - not_before) / lifetime
        for _ in range(20_000)
    ]
    assert all(0.7 <= f <= 0.9 for f in fractions)
    assert min(fractions) < 0.701
    assert max(fractions) > 0.899
    # four equal slices of the window each get a quarter of the draws
    slices = collections.Counter(min(3, int((f - 0.7) / 0.05)) for f in fractions)
    assert sorted(slices) == [0, 1, 2, 3]
    assert all(abs(n / len(fractions) - 0.25) < 0.02 for n in slices.values())


def test_plan_inside_the_window_draws_from_what_is_left_of_it() -> None:
    schedule = RotationSchedule(random.Random(1))
    now = 0.8 * YEAR
    draws = [schedule.plan(0.0, YEAR, now) for _ in range(2000)]
    assert all(now <= d <= 0.9 * YEAR for d in draws)
    assert max(draws) - min(draws) > 0.09 * YEAR


def test_plan_past_90_percent_renews_soon_and_before_expiry() -> None:
    schedule = RotationSchedule(random.Random(2))
    now = 0.95 * YEAR
    draws = [schedule.plan(0.0, YEAR, now) for _ in range(2000)]
    assert all(now <= d <= now + OVERDUE_SPREAD for d in draws)
    assert max(draws) - min(draws) > OVERDUE_SPREAD / 2  # spread, not a fleet-wide stampede
    # 10 s left: never plan past half of them
    assert all(100.0 <= schedule.plan(0.0, 110.0, 100.0) <= 105.0 for _ in range(500))
    # already expired: at once
    assert schedule.plan(0.0, 110.0, 200.0) == 200.0


def test_plan_rejects_an_empty_lifetime() -> None:
    with pytest.raises(ValueError, match="lifetime must be positive"):
        RotationSchedule(random.Random()).plan(10.0, 10.0, 0.0)


def test_retries_back_off_with_full_jitter_up_to_the_cap_and_plan_resets() -> None:
    schedule = RotationSchedule(random.Random(3), retry_base=5.0, retry_cap=300.0)
    schedule.plan(0.0, YEAR, 0.0)
    delays = [schedule.failed(1000.0) - 1000.0 for _ in range(12)]
    ceilings = [min(300.0, 5.0 * 2**n) for n in range(12)]
    assert all(0.0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    many = [schedule.failed(0.0) for _ in range(5000)]  # long outage: capped, and still jittered
    assert max(many) <= 300.0
    assert max(many) > 290.0
    assert min(many) < 10.0
    schedule.plan(0.0, YEAR, 0.0)  # a new certificate starts the backoff over
    assert schedule.failed(0.0) <= 5.0


# --- checking the cloud's answer ---------------------------------------------------------------------------


def _issue(
    ca: kit_pki.CertificateAuthority,
    node: str = "edge-1",
    *,
    key: ec.EllipticCurvePrivateKey | None = None,
    usages: tuple[kit_pki.ExtKeyUsage, ...] = (kit_pki.ExtKeyUsage.CLIENT_AUTH,),
    validity: dt.timedelta = dt.timedelta(days=1),
) -> bytes:
    key = key or kit_pki.new_key()
    cert = ca.sign_csr(
        kit_pki.new_node_csr(key, node), usages=usages, validity=validity, now=kit_pki.utcnow()
    )
    return kit_pki.cert_to_der(cert)


def test_check_issued_accepts_only_a_valid_certificate_for_this_node_and_key() -> None:
    ca = kit_pki.new_ca(now=kit_pki.utcnow())
    other_ca = kit_pki.new_ca(now=kit_pki.utcnow())
    key = kit_pki.new_key()
    now = kit_pki.utcnow()
    good = check_issued(_issue(ca, key=key), ca=ca.cert, key=key, node="edge-1", now=now)
    assert kit_pki.common_name(good.subject) == "system:node:edge-1"
    cases = {
        "not a DER certificate": b"\x30\x03junk",
        "not issued by the CA": _issue(other_ca, key=key),
        "CN 'system:node:edge-2'": _issue(ca, "edge-2", key=key),
        "does not certify the key": _issue(ca),
        "client authentication": _issue(ca, key=key, usages=(kit_pki.ExtKeyUsage.SERVER_AUTH,)),
    }
    for reason, der in cases.items():
        with pytest.raises(RotationError, match=reason):
            check_issued(der, ca=ca.cert, key=key, node="edge-1", now=now)
    with pytest.raises(RotationError, match="not valid now"):
        check_issued(_issue(ca, key=key), ca=ca.cert, key=key, node="edge-1", now=now + dt.timedelta(days=2))


# --- end to end ----------------------------------------------------------------------------------------------


@dataclass
class EdgeFiles:
    root: Path

    @property
    def ca(self) -> Path:
        return self.root / "ca" / "rootCA.crt"

    @property
    def cert(self) -> Path:
        return self.root / "certs" / "server.crt"

    @property
    def key(self) -> Path:
        return self.root / "certs" / "server.key"

    def read_cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert.read_bytes())


def _joined_edge(
    pki: PKI,
    root: Path,
    node: str,
    *,
    validity: dt.timedelta,
    backdate: dt.timedelta,
    cn_node: str | None = None,
) -> EdgeFiles:
    """What ``keadm join`` leaves on an edge, with a node certificate of the given validity window."""
    files = EdgeFiles(root)
    kit_pki.write_replace(files.ca, pki.ca.ca_path.read_bytes(), mode=kit_pki.CERT_FILE_MODE)
    key = kit_pki.new_key()
    csr = kit_pki.new_node_csr(key, cn_node or node)
    cert = pki.ca.authority.sign_csr(csr, now=kit_pki.utcnow(), validity=validity, backdate=backdate)
    kit_pki.write_replace(files.key, kit_pki.key_to_pem(key), mode=kit_pki.KEY_FILE_MODE)
    kit_pki.write_replace(files.cert, kit_pki.cert_to_pem(cert), mode=kit_pki.CERT_FILE_MODE)
    return files


async def _cert_service(nursery: trio.Nursery, pki: PKI) -> str:
    ctx = tls.cert_service_context(pki.ca.ca_path, *pki.server_cert)
    serve = functools.partial(
        certserver.serve_certificates, pki.ca.authority, ctx, host="127.0.0.1", port=0, read_timeout=5.0
    )
    port = await nursery.start(serve)
    return f"https://127.0.0.1:{port}"


def _rotator(
    hub: EdgeHub, url: str, files: EdgeFiles, *, overdue_spread: float = OVERDUE_SPREAD
) -> tuple[CertRotator, list[x509.Certificate], list[str]]:
    """A rotator with test timings; returns it, the certificates it installed and its failure reasons."""
    rotated: list[x509.Certificate] = []
    failed: list[str] = []
    settings = RotationSettings(
        service_url=url,
        ca_file=files.ca,
        cert_file=files.cert,
        key_file=files.key,
        retry_base=0.05,
        retry_cap=0.2,
        overdue_spread=overdue_spread,
    )
    rotator = CertRotator(
        hub,
        settings,
        rng=random.Random(5),
        on_rotated=rotated.append,
        on_failed=lambda reason, delay: failed.append(reason),
    )
    return rotator, rotated, failed


async def _until(check: object, what: str, timeout: float = 10.0) -> None:
    assert callable(check)
    with trio.move_on_after(timeout):
        while not check():
            await trio.sleep(0.01)
        return
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


async def test_short_lived_certificate_is_renewed_installed_and_presented(
    pki: PKI, cloud: RunningCloud, nursery: trio.Nursery, tmp_path: Path
) -> None:
    # Valid 6 s ago to 4 s from now: the renewal falls 1-3 s from now, before the certificate expires.
    files = _joined_edge(
        pki, tmp_path, "edge-rot", validity=dt.timedelta(seconds=4), backdate=dt.timedelta(seconds=6)
    )
    old = files.read_cert()
    with trio.fail_after(20):
        url = await _cert_service(nursery, pki)
        hub = make_edge(
            pki, cloud.server, "edge-rot", ctx=tls.edge_client_context(files.ca, files.cert, files.key)
        )
        await nursery.start(hub.run)
        await _until(lambda: hub.connected, "the first session")
        first = cloud.hub.session("edge-rot")
        assert first is not None
        assert first.cert_serial == old.serial_number
        rotator, rotated, _ = _rotator(hub, url, files)
        await nursery.start(rotator.run)
        assert rotator.next_attempt is not None
        lifetime = old.not_valid_after_utc.timestamp() - old.not_valid_before_utc.timestamp()
        fraction = (rotator.next_attempt - old.not_valid_before_utc.timestamp()) / lifetime
        assert 0.7 <= fraction <= 0.9

        await _until(lambda: rotated, "a renewal")
        new = rotated[0]
        # the cloud sees a new session opened with the new certificate
        await _until(
            lambda: (s := cloud.hub.session("edge-rot")) is not None and s.cert_serial == new.serial_number,
            "a session presenting the new certificate",
        )
        await _until(lambda: hub.connected, "the new session announced")
    assert new.serial_number != old.serial_number
    assert kit_pki.common_name(new.subject) == "system:node:edge-rot"
    assert new.not_valid_after_utc > old.not_valid_after_utc + dt.timedelta(days=300)
    on_disk = files.read_cert()
    assert on_disk.serial_number == new.serial_number
    key = kit_pki.load_key_pem(files.key.read_bytes(), source="server.key")
    assert kit_pki.same_public_key(key, on_disk)
    assert stat.S_IMODE(os.stat(files.key).st_mode) == 0o600
    assert sorted(p.name for p in files.cert.parent.iterdir()) == ["server.crt", "server.key"]
    assert rotator.rotations == 1
    assert rotator.failures == 0
    assert hub.dials == 2  # one redial, made at once for the new certificate
    # the next renewal is planned inside 70-90 % of the new certificate's life
    assert rotator.next_attempt is not None
    life = new.not_valid_after_utc.timestamp() - new.not_valid_before_utc.timestamp()
    assert 0.7 <= (rotator.next_attempt - new.not_valid_before_utc.timestamp()) / life <= 0.9


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("failure", ["unreachable", "refused"])
async def test_failed_renewals_are_retried_while_the_session_stays_up(
    pki: PKI, nursery: trio.Nursery, tmp_path: Path, failure: str
) -> None:
    # Past 90 % of its life: renewal is due at once. "refused": the certificate names another node, so the
    # certificate service answers 401 (the hub runs with node authorization off to keep the session).
    files = _joined_edge(
        pki,
        tmp_path,
        "edge-f",
        validity=dt.timedelta(minutes=10),
        backdate=dt.timedelta(days=1),
        cn_node="edge-other" if failure == "refused" else None,
    )
    before = files.cert.read_bytes(), files.key.read_bytes()
    with trio.fail_after(20):
        cloud = await start_cloud(nursery, pki, authorize_nodes=False)
        url = (
            f"https://127.0.0.1:{_closed_port()}"
            if failure == "unreachable"
            else await _cert_service(nursery, pki)
        )
        hub = make_edge(
            pki, cloud.server, "edge-f", ctx=tls.edge_client_context(files.ca, files.cert, files.key)
        )
        await nursery.start(hub.run)
        await _until(lambda: hub.connected, "the session")
        session = cloud.hub.session("edge-f")
        rotator, rotated, failed = _rotator(hub, url, files, overdue_spread=0.0)
        await nursery.start(rotator.run)
        await _until(lambda: rotator.failures >= 4, "four failed attempts")
        assert hub.connected
        assert hub.dials == 1
        assert cloud.hub.session("edge-f") is session
    assert rotated == []
    assert (files.cert.read_bytes(), files.key.read_bytes()) == before
    assert rotator.last_error.startswith("certificate request failed")
    assert ("HTTP 401" if failure == "refused" else "Connection refused") in rotator.last_error
    assert len(failed) == rotator.failures
    assert rotator.next_attempt is not None


def _edgecore_config(files: EdgeFiles, **edge_hub: object) -> EdgeCoreConfig:
    cfg = kconfig.default_edgecore()
    hub_cfg = dataclasses.replace(
        cfg.modules.edge_hub,
        tls_ca_file=str(files.ca),
        tls_cert_file=str(files.cert),
        tls_private_key_file=str(files.key),
        **edge_hub,  # type: ignore[arg-type]
    )
    modules = dataclasses.replace(cfg.modules, edge_hub=hub_cfg)
    return dataclasses.replace(cfg, modules=modules)


async def test_edgecore_wiring_publishes_renewals_on_the_status_board(
    pki: PKI, nursery: trio.Nursery, tmp_path: Path
) -> None:
    files = _joined_edge(pki, tmp_path, "edge-w", validity=dt.timedelta(days=1), backdate=dt.timedelta(0))
    with trio.fail_after(20):
        url = await _cert_service(nursery, pki)
        cfg = _edgecore_config(files, http_server=url)
        board = providers.board_from_config(cfg, started_at=0.0)
        hub = make_edge(pki, "127.0.0.1:1", "edge-w", ctx=app.tls_context(cfg))
        assert app.cert_rotator(_edgecore_config(files, rotate_certificates=False), hub, board) is None
        assert app.cert_rotator(_edgecore_config(files, http_server=""), hub, board) is None
        rotator = app.cert_rotator(cfg, hub, board)
        assert rotator is not None
        assert rotator.settings.cert_file == files.cert
        cert = await rotator.rotate_once()
    assert board.certificate.not_after == cert.not_valid_after_utc.timestamp()
    assert board.certificate.path == str(files.cert)
    assert "system:node:edge-w" in board.certificate.subject
    rotated_events = [e for e in board.events if e.reason == "CertificateRotated"]
    assert len(rotated_events) == 1
    assert f"{cert.serial_number:x}" in rotated_events[0].message
    assert files.read_cert().serial_number == cert.serial_number
