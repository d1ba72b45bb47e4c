"""The README demo as a test: ``scripts/demo.py --free-ports`` runs the whole chain and shows the pod Running.

The demo starts cloudcore, joins a node with keadm, starts edgecore, applies ``examples/demo-pod.yaml``
with kubectl and waits for the pod on Docker; then it deletes the pod and stops both processes.
"""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.docker
def test_demo_script_shows_the_pod_running_on_the_edge_node(tmp_path: Path) -> None:
    node = f"demo-{uuid.uuid4().hex[:8]}"
    result = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "demo.py"),
            "--free-ports",
            "--timeout",
            "90",
            "--workdir",
            str(tmp_path / "demo"),
            "--node-name",
            node,
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        cwd=REPO,
    )
    out = result.stdout
    assert result.returncode == 0, f"demo failed (rc {result.returncode})\n{out}\n{result.stderr}"
    assert "demo: done" in out
    # kubectl get nodes: the joined node is Ready; kubectl get pods -o wide: 1/1 Running on that node.
    assert re.search(rf"^{node}\s+Ready\s", out, re.MULTILINE), out
    assert re.search(rf"^demo-web\s+1/1\s+Running\s+\d+\s+\S+\s+\S+\s+{node}\s", out, re.MULTILINE), out
    # docker ps: the app container and the sandbox were up.
    assert re.search(r"^k8s_web_demo-web_default_\S+\s+kubeedge-py/busybox:latest\s+Up", out, re.MULTILINE), (
        out
    )
