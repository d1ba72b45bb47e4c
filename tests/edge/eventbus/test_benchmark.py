"""The EventBus broker benchmark runs (tiny) and prints one JSON line with both brokers' figures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_benchmark_runs_tiny() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "eventbus.py"), "--messages", "50", "--payload", "16"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert result["messages"] == 50
    assert result["payload_bytes"] == 16
    for broker in ("internal", "mosquitto"):
        for qos in (0, 1):
            assert result[f"{broker}_qos{qos}_msgs_per_s"] > 0
    for qos in (0, 1):
        ratio = result[f"internal_qos{qos}_msgs_per_s"] / result[f"mosquitto_qos{qos}_msgs_per_s"]
        assert abs(result[f"internal_vs_mosquitto_qos{qos}"] - ratio) < 0.01
