"""Every message MetaManager acked survives SIGKILL: a real child process, a real file, reopened afterwards."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

from kubeedge.edge.metamanager import store as st

ROOT = Path(__file__).resolve().parents[3]


def test_acked_messages_survive_sigkill(db_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.edge.metamanager.durability_child", str(db_path), "1000000"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    assert proc.stdout is not None
    acked: list[str] = []
    buf = b""
    deadline = time.monotonic() + 60
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        try:
            # Kill at an arbitrary point after a few hundred acks: mid-stream, likely mid-transaction.
            while len(acked) < 500:
                assert time.monotonic() < deadline, "child did not ack 500 messages in time"
                if not sel.select(timeout=1):
                    assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                    continue
                chunk = os.read(proc.stdout.fileno(), 65536)
                assert chunk, "child closed stdout early"
                buf += chunk
                *lines, buf = buf.split(b"\n")
                acked.extend(line.decode().removeprefix("acked ") for line in lines)
        finally:
            proc.send_signal(signal.SIGKILL)
            rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    # Acks already in the pipe when the child died count too.
    acked.extend(line.decode().removeprefix("acked ") for line in (buf + rest).split(b"\n") if line)
    assert len(acked) >= 500
    with st.MetaStore.open(db_path) as store:
        present = set(store.keys())
        missing = [r for r in acked if r not in present]
        assert not missing, f"{len(missing)} acked messages lost, e.g. {missing[:3]}"
        last = acked[-1]
        value = json.loads(store.get(last) or "null")
        assert value["metadata"]["name"] == last.rsplit("/", 1)[1]
