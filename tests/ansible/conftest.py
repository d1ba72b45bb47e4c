"""Fixtures for the kubeedge.edge Ansible collection: run its modules the way Ansible does.

A module runs as its own Python process with its arguments in a JSON file (``{"ANSIBLE_MODULE_ARGS": ...}``),
exactly as ``ansible`` hands it over on a managed host, and its one line of JSON output is the result. The
collection is importable from the repository's ``collections/`` folder, which is also what ``ansible.cfg``
points ``collections_path`` at.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
COLLECTIONS = REPO / "collections"
COLLECTION = COLLECTIONS / "ansible_collections" / "kubeedge" / "edge"
MODULES = COLLECTION / "plugins" / "modules"
VENV_BIN = Path(sys.executable).parent


@dataclass(frozen=True)
class ModuleRun:
    """What a module run printed and how it exited."""

    rc: int
    result: dict[str, Any]
    stdout: str
    stderr: str

    @property
    def failed(self) -> bool:
        """Whether the module reported failure."""
        return bool(self.result.get("failed"))


def run_module(
    tmp_path: Path, name: str, args: dict[str, Any], *, check_mode: bool = False, timeout: float = 60
) -> ModuleRun:
    """Run ``kubeedge.edge.<name>`` with ``args`` in a fresh Python process; return its parsed result."""
    args = dict(args)
    if check_mode:
        args["_ansible_check_mode"] = True
    args_file = tmp_path / f"{name}-args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    env = dict(os.environ, PYTHONPATH=str(COLLECTIONS))
    proc = subprocess.run(
        [sys.executable, str(MODULES / f"{name}.py"), str(args_file)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    assert lines, f"{name} printed no JSON result: stdout={proc.stdout!r} stderr={proc.stderr!r}"
    return ModuleRun(proc.returncode, json.loads(lines[-1]), proc.stdout, proc.stderr)


@pytest.fixture
def module(tmp_path: Path):  # type: ignore[no-untyped-def]
    """``module(name, args, check_mode=False)`` runs a collection module in a subprocess."""

    def run(name: str, args: dict[str, Any], *, check_mode: bool = False, timeout: float = 60) -> ModuleRun:
        return run_module(tmp_path, name, args, check_mode=check_mode, timeout=timeout)

    return run
