"""The CloudHub benchmark runs end to end with a handful of edges and prints one JSON line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "cloudhub.py"


def test_benchmark_small_n() -> None:
    out = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--nodes",
            "12",
            "--workers",
            "2",
            "--heartbeat",
            "1",
            "--settle",
            "0.2",
            "--steady",
            "1",
            "--fanout-rounds",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert result["sessions_held"] == 12
    assert result["sessions_after_steady"] == 12
    assert result["fanout_sent"] == 24
    assert result["fanout_received"] == 24
    assert result["connect_rate_per_s"] > 0
    assert 0 <= result["steady_cpu_pct_one_core"] < 100
    assert result["rss_mib"] > 0
    assert 0 <= result["latency_p50_ms"] <= result["latency_p99_ms"]
    assert result["wsproto_msgs_per_s"] > 1000
