"""The MetaManager benchmark runs (tiny) and prints one JSON line with every measurement."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_benchmark_runs_tiny(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "metamanager.py"),
            "--messages",
            "30",
            "--group",
            "8",
            "--dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert result["messages"] == 30
    assert result["group"] == 8
    for key in (
        "raw_commits_per_s",
        "raw_group_rows_per_s",
        "metamanager_msgs_per_s",
        "metamanager_group_msgs_per_s",
    ):
        assert result[key] > 0, key
    assert list(tmp_path.iterdir()) == []  # the benchmark cleans up its database files
