"""The device twin benchmark runs (tiny) and prints one JSON line with every measurement."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.mqtt
def test_benchmark_runs_tiny(tmp_path: Path) -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "devicetwin.py"),
            "--mappers",
            "2",
            "--updates",
            "5",
            "--dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1, out.stdout
    result = json.loads(lines[0])
    assert (result["mappers"], result["updates"], result["total_updates"]) == (2, 5, 10)
    for key in ("edge_updates_per_s", "cloud_updates_per_s", "mapper_to_api_ms_p50", "mapper_to_api_ms_p99"):
        assert result[key] > 0, key
    assert 2 <= result["observed"] <= 10  # at least each device's last value reached the API
    assert result["mapper_to_api_ms_p99"] >= result["mapper_to_api_ms_p50"]
    assert list(tmp_path.iterdir()) == []  # the benchmark cleans up after itself
