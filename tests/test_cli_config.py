"""The daemons' config flags, run as real processes: generate, pipe back in, check, and fail on a bad key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

DAEMONS = ["cloudcore", "edgecore"]
HOST_ENV = {"KUBEEDGE_HOST_IP": "192.0.2.7", "KUBEEDGE_HOSTNAME": "edge-test-1"}


def run(prog: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    code = f"import sys; from kubeedge.cli.{prog} import main; sys.exit(main())"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, **HOST_ENV},
    )


@pytest.mark.parametrize("prog", DAEMONS)
@pytest.mark.parametrize("source", ["/dev/stdin", "-"])
def test_defaultconfig_pipes_into_check(prog: str, source: str) -> None:
    generated = run(prog, "--defaultconfig")
    assert generated.returncode == 0, generated.stderr
    checked = run(prog, "--config", source, "--check", stdin=generated.stdout)
    assert checked.returncode == 0, checked.stderr
    assert checked.stdout == f"config OK: {source}\n"


@pytest.mark.parametrize("prog", DAEMONS)
def test_minconfig_pipes_into_check(prog: str) -> None:
    generated = run(prog, "--minconfig")
    assert generated.returncode == 0, generated.stderr
    assert run(prog, "--config", "/dev/stdin", "--check", stdin=generated.stdout).returncode == 0


def test_defaultconfig_is_commented_deterministic_and_uses_the_host_override() -> None:
    first = run("edgecore", "--defaultconfig").stdout
    assert first == run("edgecore", "--defaultconfig").stdout
    data = yaml.safe_load(first)
    assert data["modules"]["edged"]["hostnameOverride"] == "edge-test-1"
    assert data["modules"]["edgeHub"]["websocket"]["server"] == "192.0.2.7:10000"
    lines = first.splitlines()
    assert sum(line.lstrip().startswith("#") for line in lines) > 150
    cloud = yaml.safe_load(run("cloudcore", "--defaultconfig").stdout)
    assert cloud["modules"]["cloudHub"]["advertiseAddress"] == ["192.0.2.7"]
    assert cloud["embeddedAPIServer"]["port"] == 6443


@pytest.mark.parametrize(
    ("prog", "text", "key"),
    [
        ("cloudcore", "modules: {cloudHub: {nodeLimt: 3}}\n", "modules.cloudHub.nodeLimt"),
        ("edgecore", "modules: {edgeHub: {heartbeat: 0}}\n", "modules.edgeHub.heartbeat"),
    ],
)
def test_broken_config_names_the_key_and_exits_2(prog: str, text: str, key: str) -> None:
    head = run(prog, "--minconfig").stdout.split("modules:")[0]
    result = run(prog, "--config", "-", "--check", stdin=head + text)
    assert result.returncode == 2
    assert key in result.stderr
    assert result.stderr.startswith("error: <stdin>: ")
    assert result.stdout == ""


@pytest.mark.parametrize("prog", DAEMONS)
def test_missing_file_is_a_config_error(prog: str, tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    result = run(prog, "--config", str(missing), "--check")
    assert result.returncode == 2
    assert str(missing) in result.stderr
    assert "cannot read" in result.stderr


def test_run_without_check_loads_the_upstream_file_then_stops_at_a_clear_preflight_error(
    tmp_path: Path,
) -> None:
    # Running for real needs a cluster and certificates; with neither, both daemons log what they loaded and
    # stop with one line naming the missing file, before anything is written to disk.
    fixtures = Path(__file__).parent / "kit" / "fixtures"
    cloud = yaml.safe_load((fixtures / "cloudcore-min.yaml").read_text())
    cloud["kubeAPIConfig"] = {"kubeConfig": str(tmp_path / "missing.kubeconfig")}
    cloud_file = tmp_path / "cloudcore.yaml"
    cloud_file.write_text(yaml.safe_dump(cloud))
    result = run("cloudcore", "--config", str(cloud_file))
    assert result.returncode == 1, result.stderr
    assert "config loaded" in result.stderr
    assert "node_limit=1000" in result.stderr
    assert f"kubeAPIConfig.kubeConfig: {tmp_path / 'missing.kubeconfig'}: no such file" in result.stderr

    edge = yaml.safe_load((fixtures / "edgecore-default.yaml").read_text())
    edge["modules"]["edgeHub"]["tlsCaFile"] = str(tmp_path / "ca" / "rootCA.crt")
    edge["database"]["dataSource"] = str(tmp_path / "edgecore.db")
    edge_file = tmp_path / "edgecore.yaml"
    edge_file.write_text(yaml.safe_dump(edge))
    result = run("edgecore", "--config", str(edge_file))
    assert result.returncode == 1, result.stderr
    assert "node=vm" in result.stderr
    assert "modules.edgeHub.tlsCaFile" in result.stderr
    assert "keadm join" in result.stderr
    assert not (tmp_path / "edgecore.db").exists()


@pytest.mark.parametrize("prog", DAEMONS)
def test_generate_and_check_are_exclusive(prog: str) -> None:
    result = run(prog, "--defaultconfig", "--check")
    assert result.returncode == 2
    assert "not allowed with" in result.stderr
