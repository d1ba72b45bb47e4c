"""The EdgeController benchmark runs end to end with a few nodes and pods and prints one JSON line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "edgecontroller.py"


def test_benchmark_tiny() -> None:
    out = subprocess.run(
        [sys.executable, str(BENCH), "--nodes", "3", "--pods", "12", "--timeout", "60"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert result["pods_delivered"] == 12
    assert result["statuses_seen"] == 12
    assert result["objectsyncs"] == 12
    assert 0 < result["create_to_edge_p50_ms"] <= result["create_to_edge_p99_ms"]
    assert 0 < result["status_roundtrip_p50_ms"] <= result["status_roundtrip_p99_ms"]
    assert result["cloudcore_cpu_s_per_1000_pods"] > 0
