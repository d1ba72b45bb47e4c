"""kubeedge.edge.release_info on a real release layout, with the real ``keadm`` answering ``--version``."""

from __future__ import annotations

import os
from pathlib import Path

import kubeedge
from tests.ansible.conftest import VENV_BIN


def _release(root: Path, version: str, *, complete: bool = True) -> None:
    """A release folder whose commands are this venv's real ones (symlinked), like a venv install."""
    bin_dir = root / "releases" / version / "bin"
    bin_dir.mkdir(parents=True)
    names = ("python", "cloudcore", "edgecore", "keadm") if complete else ("python",)
    for name in names:
        (bin_dir / name).symlink_to(VENV_BIN / name)


def test_fresh_host_reports_nothing_installed(module, tmp_path) -> None:
    run = module(
        "release_info", {"root": str(tmp_path / "opt"), "backup_root": str(tmp_path / "bak"), "query": True}
    )
    assert not run.failed, run.result
    assert run.result["current"] is None
    assert run.result["previous"] is None
    assert run.result["releases"] == []
    assert run.result["snapshots"] == []
    assert run.result["reported_version"] is None
    assert run.result["changed"] is False


def test_current_previous_snapshots_and_reported_version(module, tmp_path) -> None:
    root, backups = tmp_path / "opt", tmp_path / "bak"
    _release(root, "0.1.0")
    _release(root, kubeedge.__version__)
    _release(root, "0.3.0rc1", complete=False)
    (root / "current").symlink_to(f"releases/{kubeedge.__version__}")
    (root / "previous").symlink_to("releases/0.1.0")
    (backups / "0.1.0").mkdir(parents=True)
    (backups / "0.1.0" / "snapshot.tar").write_bytes(b"")
    run = module("release_info", {"root": str(root), "backup_root": str(backups), "query": True})
    assert not run.failed, run.result
    result = run.result
    assert result["current"] == kubeedge.__version__
    assert result["previous"] == "0.1.0"
    assert result["releases"] == sorted(["0.1.0", kubeedge.__version__, "0.3.0rc1"])
    assert result["complete"] == {"0.1.0": True, kubeedge.__version__: True, "0.3.0rc1": False}
    assert result["snapshots"] == ["0.1.0"]
    # The real keadm of this checkout answers for the current release.
    assert result["reported_version"] == kubeedge.__version__


def test_links_outside_releases_are_not_reported_as_installed(module, tmp_path) -> None:
    root = tmp_path / "opt"
    _release(root, "0.1.0")
    (root / "current").symlink_to(str(tmp_path))
    os.symlink("releases/../../etc", root / "previous")
    run = module("release_info", {"root": str(root), "backup_root": str(tmp_path / "bak")}, check_mode=True)
    assert not run.failed, run.result
    assert run.result["current"] is None
    assert run.result["previous"] is None
    assert run.result["releases"] == ["0.1.0"]


def test_broken_current_release_fails_the_query_naming_keadm(module, tmp_path) -> None:
    root = tmp_path / "opt"
    bin_dir = root / "releases" / "0.2.0" / "bin"
    bin_dir.mkdir(parents=True)
    keadm = bin_dir / "keadm"
    keadm.write_text("#!/bin/sh\necho 'ImportError: no module named kubeedge' >&2\nexit 1\n")
    keadm.chmod(0o755)
    (root / "current").symlink_to("releases/0.2.0")
    run = module("release_info", {"root": str(root), "backup_root": str(tmp_path / "bak"), "query": True})
    assert run.failed
    assert "keadm --version failed (1)" in run.result["msg"]
    assert "ImportError" in run.result["msg"]
    assert run.result["current"] == "0.2.0"
