"""The benchmark runs end to end at a tiny size and prints one well-formed JSON line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_benchmark_tiny() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "apiserver.py"), "--pods", "20", "--watch-events", "5"],
        capture_output=True, text=True, timeout=180, check=False, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert result["pods"] == 20
    assert result["watchers"] == 10
    assert result["watch_delivered"] == 50
    for key in ("creates_per_s", "gets_per_s", "watch_p50_ms", "watch_p99_ms", "list_ms", "rss_mib",
                "sqlite_inserts_per_s", "creates_vs_sqlite_ratio"):  # fmt: skip
        assert result[key] > 0, key
    assert result["watch_p99_ms"] >= result["watch_p50_ms"]
