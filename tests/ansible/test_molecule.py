"""The fleet's molecule scenarios as tests: ``molecule test -s default`` and ``molecule test -s upgrade``.

- ``default``: one cloud and two edge hosts (Debian 12 containers with systemd as PID 1): check mode on the
  fresh fleet, converge (``playbooks/site.yml``), idempotence, check mode again, verify (both nodes Ready in
  the API, a pod applied through the cloud runs on an edge host's Docker engine).
- ``upgrade``: site.yml installs release A, ``playbooks/upgrade.yml`` rolls release B out one host at a time;
  edge-2's new config fails its health gate, so it is rolled back to A (release, config, database) and is
  Ready again, and edge-3 is never touched.

The hosts' image (``kubeedge-py/debian-systemd:bookworm``) is built here when it is missing or outdated
(``molecule/build-image.sh``: debootstrap, then ``docker import``), so a fresh machine needs nothing but the
README's test command. The wheelhouse (``playbooks/wheelhouse.yml``: the kubeedge_py wheel of this tree and its
dependency wheels) is built once here and handed to both scenarios through ``KUBEEDGE_MOLECULE_DIST``; run by
hand without it, each scenario builds its own. Every run names its containers and network with its own prefix
(``KUBEEDGE_MOLECULE_PREFIX``), so runs from several checkouts on one Docker engine stay apart; molecule's own
destroy step removes them, and the fixture removes any that a crashed run left behind. A failing scenario
fails with the tail of molecule's output.
"""

from __future__ import annotations

import json
import os
import platform
import secrets
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ansible.conftest import REPO, VENV_BIN

IMAGE = "kubeedge-py/debian-systemd:bookworm"
IMAGE_BUILD_TIMEOUT = 900  # seconds; debootstrap of a minbase Debian takes ~35-100 s on a shared 2-core box
WHEELHOUSE_TIMEOUT = 600  # seconds; one wheel build and a download of the dependency wheels: ~30 s here
SCENARIO_TIMEOUT = 1500  # seconds; a scenario takes 5-10 min on a busy 2-core box: this bounds a hang
OUTPUT_TAIL = 8000  # characters of molecule's output shown when a scenario fails

pytestmark = [pytest.mark.slow, pytest.mark.docker]


@pytest.fixture(scope="module")
def systemd_image() -> str:
    """The hosts' Debian systemd image, built once per recipe (the script is a no-op when it is current)."""
    proc = subprocess.run(
        [str(REPO / "molecule" / "build-image.sh"), IMAGE],
        capture_output=True,
        text=True,
        timeout=IMAGE_BUILD_TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, (
        f"molecule/build-image.sh failed:\n{(proc.stdout + proc.stderr)[-OUTPUT_TAIL:]}"
    )
    inspect = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", IMAGE],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert inspect.returncode == 0, inspect.stderr
    assert inspect.stdout.startswith("sha256:"), inspect.stdout
    return IMAGE


def _ansible_env() -> dict[str, str]:
    """The environment for Ansible and molecule: this venv first, no colours, none of the caller's settings."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ANSIBLE_", "MOLECULE_", "KUBEEDGE_MOLECULE_"))
    }
    env["PATH"] = f"{VENV_BIN}:{env.get('PATH', '')}"
    env["PY_COLORS"] = env["ANSIBLE_FORCE_COLOR"] = "0"
    env["ANSIBLE_NOCOLOR"] = "1"
    return env


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Release A's dist/ for both scenarios, built once by ``playbooks/wheelhouse.yml`` as an operator would.

    The hosts are containers on this machine's engine, so their architecture is this machine's.
    """
    dist = tmp_path_factory.mktemp("molecule-dist")
    arch = platform.machine()
    proc = subprocess.run(
        [
            str(VENV_BIN / "ansible-playbook"),
            "--inventory",
            "localhost,",
            str(REPO / "playbooks" / "wheelhouse.yml"),
            "--extra-vars",
            json.dumps(
                {
                    "kubeedge_dist": str(dist),
                    "kubeedge_wheelhouse_arches": [arch],
                    # The controller's own Python (pip, the build), not whatever interpreter discovery finds.
                    "ansible_python_interpreter": str(VENV_BIN / "python"),
                }
            ),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=WHEELHOUSE_TIMEOUT,
        env=_ansible_env(),
        check=False,
    )
    assert proc.returncode == 0, (
        f"playbooks/wheelhouse.yml failed:\n{(proc.stdout + proc.stderr)[-OUTPUT_TAIL:]}"
    )
    wheels = sorted(p.name for p in (dist / f"wheelhouse-{arch}").glob("*.whl"))
    assert sum(name.startswith("kubeedge_py-") for name in wheels) == 1, wheels
    assert any(name.startswith("trio-") for name in wheels), wheels
    assert (dist / f"wheelhouse-{arch}.tar").stat().st_size > 0
    return dist


@pytest.fixture
def prefix() -> Iterator[str]:
    """A fresh instance-name prefix; whatever still carries it afterwards (a crashed run) is removed."""
    name = f"kubeedge-mol-{secrets.token_hex(3)}"
    yield name
    # Only this run's own containers and network: the hosts' names start with the random prefix made above, and
    # the pods' containers in the machine's engine carry their node (a host name) in io.kubeedge-py.node.
    listing = subprocess.run(
        ["docker", "ps", "--all", "--format", '{{.ID}} {{.Names}} {{.Label "io.kubeedge-py.node"}}'],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    ).stdout.splitlines()
    leftovers = [
        fields[0]
        for fields in (line.split() for line in listing)
        if any(field.startswith(f"{name}-") for field in fields[1:])
    ]
    if leftovers:
        subprocess.run(["docker", "rm", "--force", *leftovers], capture_output=True, timeout=120, check=False)
    networks = subprocess.run(
        ["docker", "network", "ls", "--quiet", "--filter", f"name=^{name}-"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    ).stdout.split()
    if networks:
        subprocess.run(["docker", "network", "rm", *networks], capture_output=True, timeout=60, check=False)
    assert not leftovers, f"molecule left containers behind: {leftovers}"


# The first test also builds the image and the wheelhouse (in its fixtures, which count against its timeout).
@pytest.mark.timeout(IMAGE_BUILD_TIMEOUT + WHEELHOUSE_TIMEOUT + SCENARIO_TIMEOUT + 120)
@pytest.mark.parametrize("scenario", ["default", "upgrade"])
def test_molecule_scenario(systemd_image: str, wheelhouse: Path, prefix: str, scenario: str) -> None:
    """``molecule test -s <scenario>`` passes: every step of its test sequence, destroy included."""
    env = _ansible_env()
    env["KUBEEDGE_MOLECULE_PREFIX"] = prefix
    env["KUBEEDGE_MOLECULE_DIST"] = str(wheelhouse)
    try:
        proc = subprocess.run(
            [str(VENV_BIN / "molecule"), "test", "--scenario-name", scenario],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=SCENARIO_TIMEOUT,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode(errors="replace") + (exc.stderr or b"").decode(errors="replace")
        pytest.fail(f"molecule test -s {scenario} ran over {SCENARIO_TIMEOUT}s:\n{out[-OUTPUT_TAIL:]}")
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, (
        f"molecule test -s {scenario} failed (rc {proc.returncode}):\n{output[-OUTPUT_TAIL:]}"
    )
    # Molecule's recap: every action of the sequence ran (none skipped as missing, none failed).
    assert f"{scenario} > verify: Executed: Successful" in output, output[-OUTPUT_TAIL:]
