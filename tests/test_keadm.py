"""``keadm join``/``reset``/``gettoken`` against a real certificate service on 127.0.0.1 (in-process trio
server; keadm as a subprocess or in a thread), including every refusal a user can hit."""

from __future__ import annotations

import datetime as dt
import logging
import os
import stat
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest
import trio
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from kubeedge.cli import keadm
from kubeedge.kit import jointoken, pki
from tests.pki_support import CloudPKI, make_cloud_pki, start_cert_service


@pytest.fixture
def cloud(tmp_path: Path) -> CloudPKI:
    return make_cloud_pki(tmp_path / "cloud")


def token_for(cloud: CloudPKI, *, now: float | None = None) -> str:
    return jointoken.make(cloud.ca.key_der, cloud.ca.cert_der, now=now or pki.utcnow().timestamp())


async def run_keadm(*args: str) -> subprocess.CompletedProcess[bytes]:
    code = "import sys; from kubeedge.cli.keadm import main; sys.exit(main())"
    return await trio.run_process(
        [sys.executable, "-c", code, *args], capture_stdout=True, capture_stderr=True, check=False, stdin=b""
    )


def join_args(base: str, token: str, config_dir: Path, node: str = "edge-1", *extra: str) -> list[str]:
    port = base.rsplit(":", 1)[1]
    return [
        "join",
        "--cloudcore-ipport",
        "127.0.0.1:10000",
        "--certport",
        port,
        "--token",
        token,
        "--edgenode-name",
        node,
        "--config-dir",
        str(config_dir),
        "--timeout",
        "10",
        *extra,
    ]


def files_under(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()} if root.exists() else set()


async def test_join_reset_end_to_end_as_subprocess(cloud: CloudPKI, tmp_path: Path) -> None:
    edge = tmp_path / "edge"
    edge.mkdir()
    (edge / "keep.txt").write_text("not ours")
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            base = await start_cert_service(nursery, cloud)
            args = join_args(base, token_for(cloud), edge, "edge-1", "--labels", "zone=a,tier=edge")
            result = await run_keadm(*args)
            assert result.returncode == 0, result.stderr.decode()
            assert b"fetching the CA" in result.stderr
            assert b"edge-1 joined" in result.stdout

            assert files_under(edge) == {
                "keep.txt",
                "ca/rootCA.crt",
                "certs/server.crt",
                "certs/server.key",
                "config/edgecore.yaml",
            }
            assert (edge / "ca" / "rootCA.crt").read_bytes() == pki.cert_to_pem(cloud.ca.cert)
            key_file = edge / "certs" / "server.key"
            assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
            assert key_file.read_bytes().startswith(b"-----BEGIN EC PRIVATE KEY-----")
            cert = x509.load_pem_x509_certificate((edge / "certs" / "server.crt").read_bytes())
            assert cloud.ca.issued(cert)
            assert cert.subject.rfc4514_string() == "O=system:nodes,CN=system:node:edge-1"
            key = pki.load_key_pem(key_file.read_bytes(), source="server.key")
            spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
            assert key.public_key().public_bytes(*spki) == cert.public_key().public_bytes(*spki)

            config = yaml.safe_load((edge / "config" / "edgecore.yaml").read_text())
            assert config["apiVersion"] == "edgecore.config.kubeedge.io/v1alpha2"
            assert config["kind"] == "EdgeCore"
            hub = config["modules"]["edgeHub"]
            assert hub["httpServer"] == base
            assert hub["websocket"]["server"] == "127.0.0.1:10000"
            assert hub["tlsCaFile"] == str(edge / "ca" / "rootCA.crt")
            assert hub["tlsCertFile"] == str(edge / "certs" / "server.crt")
            assert hub["tlsPrivateKeyFile"] == str(edge / "certs" / "server.key")
            assert hub["token"] == ""
            assert config["modules"]["edged"]["hostnameOverride"] == "edge-1"
            assert config["modules"]["edged"]["nodeLabels"] == {"zone": "a", "tier": "edge"}
            assert config["database"]["dataSource"] == "/var/lib/kubeedge/edgecore.db"

            # A second join is refused without --force and leaves the files alone.
            before = (edge / "certs" / "server.crt").read_bytes()
            again = await run_keadm(*join_args(base, token_for(cloud), edge))
            assert again.returncode == 1
            assert b"already joined" in again.stderr
            assert b"--force" in again.stderr
            assert (edge / "certs" / "server.crt").read_bytes() == before
            forced = await run_keadm(*join_args(base, token_for(cloud), edge, "edge-1", "--force"))
            assert forced.returncode == 0, forced.stderr.decode()
            assert (edge / "certs" / "server.crt").read_bytes() != before
            nursery.cancel_scope.cancel()

    refused = await run_keadm("reset", "--config-dir", str(edge))
    assert refused.returncode == 2
    assert b"--force" in refused.stderr
    assert len(files_under(edge)) == 5
    done = await run_keadm("reset", "--config-dir", str(edge), "--force")
    assert done.returncode == 0, done.stderr.decode()
    assert files_under(edge) == {"keep.txt"}
    assert sorted(p.name for p in edge.iterdir()) == ["keep.txt"]


async def keadm_in_thread(argv: Sequence[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    def call() -> int:
        try:
            return keadm.main(list(argv))
        except SystemExit as exc:
            return int(exc.code or 0)

    # keadm.main sets up process-wide logging; give pytest its own handlers back afterwards.
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        code = await trio.to_thread.run_sync(call)
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    out, err = capsys.readouterr()
    return code, out, err


async def test_join_refusals_write_nothing(
    cloud: CloudPKI, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = make_cloud_pki(tmp_path / "other")
    edge = tmp_path / "edge"
    now = pki.utcnow().timestamp()
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            base = await start_cert_service(nursery, cloud)

            # A token for another cloud: the CA served here does not match its hash.
            code, _, err = await keadm_in_thread(join_args(base, token_for(other), edge), capsys)
            assert code == 1
            assert "CA hash mismatch" in err
            assert other.ca.hash in err
            assert cloud.ca.hash in err
            assert not edge.exists()

            # Same CA hash but a JWT signed by another key: the cloud refuses it.
            forged = f"{cloud.ca.hash}.{jointoken.parse(token_for(other)).bearer}"
            code, _, err = await keadm_in_thread(join_args(base, forged, edge), capsys)
            assert code == 1
            assert "HTTP 401" in err
            assert not edge.exists()

            code, _, err = await keadm_in_thread(
                join_args(base, token_for(cloud, now=now - 25 * 3600), edge), capsys
            )
            assert code == 1
            assert "token expired at" in err
            assert "keadm gettoken" in err

            code, _, err = await keadm_in_thread(join_args(base, "abc.def", edge), capsys)
            assert code == 1
            assert "malformed token" in err

            code, _, err = await keadm_in_thread(join_args(base, token_for(cloud), edge, "Edge_1"), capsys)
            assert code == 1
            assert "--edgenode-name 'Edge_1'" in err

            code, _, err = await keadm_in_thread(
                join_args(base, token_for(cloud), edge, "edge-1", "--labels", "novalue"), capsys
            )
            assert code == 1
            assert "--labels" in err
            assert not edge.exists()
            nursery.cancel_scope.cancel()

    # Nobody listening: a clear connection error, nothing written.
    code, _, err = await keadm_in_thread(join_args("https://127.0.0.1:1", token_for(cloud), edge), capsys)
    assert code == 1
    assert "cannot fetch the CA" in err
    assert not edge.exists()


async def test_gettoken(cloud: CloudPKI, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    token_file = tmp_path / "tokens" / "tokendata"
    code, _, err = await keadm_in_thread(["gettoken", "--token-file", str(token_file)], capsys)
    assert code == 1
    assert str(token_file) in err
    assert "--ca-dir" in err

    code, out, _ = await keadm_in_thread(
        [
            "gettoken",
            "--token-file",
            str(token_file),
            "--ca-dir",
            str(cloud.ca_cert.parent),
            "--refresh-hours",
            "1",
        ],
        capsys,
    )
    assert code == 0
    computed = jointoken.parse(out.strip())
    assert computed.ca_hash == cloud.ca.hash
    expiry = jointoken.verify_bearer(computed.bearer, cloud.ca.key_der, now=pki.utcnow().timestamp())
    assert expiry - pki.utcnow() <= dt.timedelta(hours=2)
    assert not token_file.exists()

    jointoken.write_token_file(token_file, token_for(cloud))
    code, out, _ = await keadm_in_thread(
        ["gettoken", "--token-file", str(token_file), "--ca-dir", str(cloud.ca_cert.parent)], capsys
    )
    assert code == 0
    assert out.strip() == token_file.read_text().strip()


def test_reset_with_nothing_joined(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert keadm.main(["reset", "--config-dir", str(tmp_path)]) == 0
    assert "nothing to reset" in capsys.readouterr().out
    assert os.listdir(tmp_path) == []
