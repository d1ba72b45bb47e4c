"""The codec benchmark script runs and prints its one JSON line (timings are not asserted)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "codec.py"


def test_codec_benchmark_prints_one_json_line() -> None:
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--iterations", "20"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    lines = out.stdout.splitlines()
    assert len(lines) == 1
    result = json.loads(lines[0])
    assert set(result) == {"benchmark", "python", "iterations", "small", "pod_8k"}
    assert result["iterations"] == 20
    for case in ("small", "pod_8k"):
        assert set(result[case]) == {"bytes", "codec_msgs_per_s", "json_msgs_per_s", "ratio"}
    assert 150 <= result["small"]["bytes"] <= 260
    assert 7 * 1024 <= result["pod_8k"]["bytes"] <= 9 * 1024
