"""EventBus to an external mosquitto over mutual TLS (eventBusTLS), and its config errors."""

from __future__ import annotations

import dataclasses
import datetime
import ipaddress
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kubeedge.edge.eventbus.eventbus import EventBus
from kubeedge.edge.metamanager.store import MetaStore
from kubeedge.kit import beehive
from kubeedge.kit.config import edgecore as config
from tests.conftest import free_port, wait_for_port

from .conftest import DEADLINE, Edge, Recorder


def _issue(
    folder: Path,
    name: str,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    *,
    server: bool,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=issuer is None, path_length=None), critical=True)
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
    cert = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    (folder / f"{name}.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (folder / f"{name}.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert, key


@pytest.fixture
def tls_mosquitto(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    ca = _issue(tmp_path, "ca", None, server=False)
    _issue(tmp_path, "server", ca, server=True)
    _issue(tmp_path, "edge", ca, server=False)
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        f"cafile {tmp_path / 'ca.crt'}\ncertfile {tmp_path / 'server.crt'}\nkeyfile {tmp_path / 'server.key'}\n"
        f"require_certificate true\nlog_dest file {tmp_path / 'mosquitto.log'}\n"
        # Started as root, mosquitto switches to user "mosquitto", who cannot read pytest's 0700 tmp_path.
        "user root\n"
    )
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for_port("127.0.0.1", port, timeout=15)
        yield port, tmp_path
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _tls_config(folder: Path, url: str) -> config.EventBus:
    tls = config.EventBusTLS(
        enable=True,
        tls_mqtt_ca_file=str(folder / "ca.crt"),
        tls_mqtt_cert_file=str(folder / "edge.crt"),
        tls_mqtt_private_key_file=str(folder / "edge.key"),
    )
    return dataclasses.replace(config.EventBus(), mqtt_server_external=url, event_bus_tls=tls)


async def test_mutual_tls_to_external_broker(
    nursery: trio.Nursery, tls_mosquitto: tuple[int, Path], store: MetaStore
) -> None:
    port, folder = tls_mosquitto
    bus = EventBus(_tls_config(folder, f"ssl://127.0.0.1:{port}"), store=store)
    twin = Recorder("twin", "twin")
    hive = beehive.Beehive([twin, Recorder("websocket", "hub"), bus])
    with trio.fail_after(DEADLINE):
        await nursery.start(hive.run)
    edge = Edge(hive, bus, twin, Recorder("x", "y"), "127.0.0.1", port, "tls", store)
    await edge.connected()
    tls_args = [
        "--cafile",
        str(folder / "ca.crt"),
        "--cert",
        str(folder / "edge.crt"),
        "--key",
        str(folder / "edge.key"),
    ]
    topic = "$hw/events/device/ns/secure/twin/update"
    with trio.fail_after(DEADLINE):
        await trio.run_process(
            [
                "mosquitto_pub",
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                *tls_args,
                "-q",
                "1",
                "-t",
                topic,
                "-m",
                "{}",
            ]
        )
    msg = await twin.next()
    assert msg.content == "{}"
    hive.shutdown(hard=True)


def test_missing_tls_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"eventBusTLS\.tlsMqttCAFile .*No such file"):
        EventBus(_tls_config(tmp_path, "ssl://127.0.0.1:8883"))


def test_internal_broker_url_must_be_plain() -> None:
    cfg = dataclasses.replace(config.EventBus(), mqtt_mode=0, mqtt_server_internal="ssl://127.0.0.1:1884")
    with pytest.raises(ValueError, match="mqttServerInternal"):
        EventBus(cfg)


async def test_username_and_password(nursery: trio.Nursery, tmp_path: Path, store: MetaStore) -> None:
    passwords = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(passwords), "edge", "s3cret"], check=True, timeout=30)
    port = free_port()
    conf = tmp_path / "auth.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous false\npassword_file {passwords}\npersistence false\n"
        "user root\n"  # see tls_mosquitto
    )
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await trio.to_thread.run_sync(wait_for_port, "127.0.0.1", port, 15)
        cfg = dataclasses.replace(
            config.EventBus(),
            mqtt_server_external=f"tcp://127.0.0.1:{port}",
            mqtt_username="edge",
            mqtt_password="s3cret",
        )
        bus = EventBus(cfg, store=store)
        hub = Recorder("websocket", "hub")
        hive = beehive.Beehive([Recorder("twin", "twin"), hub, bus])
        with trio.fail_after(DEADLINE):
            await nursery.start(hive.run)
        edge = Edge(hive, bus, Recorder("t", "t"), hub, "127.0.0.1", port, "auth", store)
        await edge.connected()
        with trio.fail_after(DEADLINE):
            cmd = ["mosquitto_pub", "-h", "127.0.0.1", "-p", str(port), "-u", "edge", "-P", "s3cret"]
            await trio.run_process([*cmd, "-q", "1", "-t", "ns/user/x", "-m", "authed"])
        msg = await hub.next()
        assert msg.content == "authed"
        hive.shutdown(hard=True)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
