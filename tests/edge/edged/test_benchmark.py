"""The edged benchmark runs end to end (tiny) and prints one JSON line with every figure."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BENCHMARK = Path(__file__).resolve().parents[3] / "benchmarks" / "edged.py"


@pytest.mark.slow
@pytest.mark.docker
def test_benchmark_tiny(docker_client: Any, busybox_image: str) -> None:
    done = subprocess.run(
        [sys.executable, str(BENCHMARK), "--pods", "2", "--messages", "200"],
        capture_output=True,
        text=True,
        timeout=180,
        check=True,
    )
    [line] = done.stdout.strip().splitlines()
    result = json.loads(line)
    assert (result["pods"], result["messages"]) == (2, 200)
    for key in ("docker_run_p50_ms", "docker_run_p99_ms", "edged_pod_start_p50_ms", "edged_pod_start_p99_ms"):
        assert 0 < result[key] < 60_000
    assert result["docker_run_p50_ms"] <= result["docker_run_p99_ms"]
    assert 0 < result["rss_idle_mib"] <= result["rss_pods_mib"] + 5
    assert 0 < result["burst_all_running_s"] < 120
    # A whole edgecore process: idle, then with the pods running (more memory or about the same).
    assert 20 < result["edgecore_rss_idle_mib"] <= result["edgecore_rss_pods_mib"] + 5
    assert result["raw_sqlite_commits_per_s"] > 0
    assert result["metamodule_durable_msgs_per_s"] > 0
