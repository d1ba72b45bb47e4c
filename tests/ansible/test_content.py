"""The collection's documentation and the playbooks parse as Ansible reads them, from a clone (ansible.cfg)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.ansible.conftest import MODULES, REPO, VENV_BIN

PLAYBOOKS = sorted((REPO / "playbooks").glob("*.yml"))


def _ansible(*argv: str) -> subprocess.CompletedProcess[str]:
    # From the repository top so that ./ansible.cfg (collections_path = ./collections) applies, as for users.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["ANSIBLE_CONFIG"] = str(REPO / "ansible.cfg")
    env["ANSIBLE_LOCAL_TEMP"] = env["ANSIBLE_REMOTE_TEMP"] = "/tmp"
    return subprocess.run(
        [str(VENV_BIN / argv[0]), *argv[1:]],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )


def test_every_module_documents_options_examples_and_return_values() -> None:
    names = sorted(p.stem for p in MODULES.glob("*.py"))
    assert names == ["join_token", "node_ready", "release_info"]
    proc = _ansible("ansible-doc", "--json", *(f"kubeedge.edge.{n}" for n in names))
    assert proc.returncode == 0, proc.stderr
    docs = json.loads(proc.stdout)
    for name in names:
        entry = docs[f"kubeedge.edge.{name}"]
        assert entry["doc"]["short_description"], name
        assert entry["doc"]["attributes"]["check_mode"]["support"] == "full", name
        assert entry["examples"].strip(), name
        assert entry["return"], name
        assert all("description" in opt for opt in entry["doc"]["options"].values()), name


@pytest.mark.parametrize("playbook", PLAYBOOKS, ids=[p.name for p in PLAYBOOKS])
def test_playbook_syntax_with_the_example_inventory(playbook: Path) -> None:
    proc = _ansible("ansible-playbook", "--syntax-check", "-i", "inventory.example", str(playbook))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_example_inventory_groups() -> None:
    proc = _ansible("ansible-inventory", "-i", "inventory.example", "--list")
    assert proc.returncode == 0, proc.stderr
    inventory = json.loads(proc.stdout)
    assert inventory["cloud"]["hosts"] == ["cloud-1"]
    assert sorted(inventory["edge"]["children"]) == ["edge_amd64", "edge_arm64"]
    assert inventory["edge_arm64"]["hosts"] == ["edge-arm-1"]
