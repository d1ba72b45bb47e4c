"""MetaManager durable throughput next to raw SQLite commits, same file system, same pragmas, same run.

Measures, each on a fresh database file:

- ``raw_commits_per_s``: one-row ``INSERT OR REPLACE`` commits through the stdlib sqlite3 module
  (WAL, synchronous=FULL), i.e. the fsync-bound ceiling of acking one message per commit;
- ``raw_group_rows_per_s``: the same rows, committed ``group`` at a time;
- ``metamanager_msgs_per_s``: cloud insert messages through :class:`MetaManager` (store, forward to
  edged, ack to the cloud) with ``group_commit_max=1`` (one transaction per message);
- ``metamanager_group_msgs_per_s``: the same with group commit (``group_commit_max=group``).

Prints one JSON line. ``--messages`` bounds every loop.
"""

from __future__ import annotations

import argparse
import json
import math
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import trio

from kubeedge.edge.metamanager import manager as mm
from kubeedge.edge.metamanager import store as st
from kubeedge.kit import limits
from kubeedge.proto.message import Message


def _value(i: int, size: int) -> str:
    return json.dumps(
        {
            "kind": "ConfigMap",
            "metadata": {"name": f"c{i}", "resourceVersion": str(i + 1)},
            "data": {"v": "x" * size},
        }
    )


def raw_sqlite(path: Path, n: int, size: int, group: int) -> float:
    """Rows per second committed ``group`` rows per transaction (WAL, synchronous=FULL)."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute(
            "CREATE TABLE meta(key VARCHAR(256) PRIMARY KEY, type VARCHAR(32) NOT NULL, value TEXT NOT NULL)"
        )
        values = [_value(i, size) for i in range(n)]
        start = time.perf_counter()
        for lo in range(0, n, group):
            conn.execute("BEGIN IMMEDIATE")
            for i in range(lo, min(n, lo + group)):
                conn.execute(
                    "INSERT OR REPLACE INTO meta VALUES (?, ?, ?)",
                    (f"default/configmap/c{i}", "configmap", values[i]),
                )
            conn.execute("COMMIT")
        return n / (time.perf_counter() - start)
    finally:
        conn.close()


async def _metamanager(path: Path, n: int, size: int, group: int) -> float:
    store = st.MetaStore.open(path)
    inbox_send, inbox_recv = trio.open_memory_channel[Message](limits.MODULE_QUEUE)
    # Forwarded copies are discarded here; n bounds the buffer.
    edged_send, _edged_recv = trio.open_memory_channel[Message](math.inf)
    acked = trio.Event()
    count = 0

    async def to_cloud(_msg: Message) -> None:
        nonlocal count
        count += 1
        if count == n:
            acked.set()

    async def send_sync(msg: Message, timeout: float) -> Message:
        raise mm.CloudUnavailable("benchmark has no cloud")

    manager = mm.MetaManager(
        store,
        inbox=inbox_recv,
        to_edged=edged_send.send,
        to_twin=edged_send.send,
        to_cloud=to_cloud,
        send_sync=send_sync,
        config=mm.MetaManagerConfig(group_commit_max=group),
    )
    msgs = [
        Message.new(
            source="edgecontroller",
            group="resource",
            operation="insert",
            resource=f"default/configmap/c{i}",
            content=json.loads(_value(i, size)),
            now_ms=i,
            resource_version=str(i + 1),
        )
        for i in range(n)
    ]
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(manager.run)
            start = time.perf_counter()
            for m in msgs:
                await inbox_send.send(m)
            await acked.wait()
            elapsed = time.perf_counter() - start
            await inbox_send.aclose()
    finally:
        store.close()
    return n / elapsed


def main(argv: list[str] | None = None) -> dict[str, object]:
    """Run the four measurements and print them as one JSON line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--messages", type=int, default=2000, help="messages (rows) per measurement (default 2000)"
    )
    p.add_argument("--value-bytes", type=int, default=1024, help="payload bytes per object (default 1024)")
    p.add_argument("--group", type=int, default=limits.META_GROUP_COMMIT_MAX, help="group commit size")
    p.add_argument(
        "--dir", type=Path, default=None, help="directory for the database files (default: a temp dir)"
    )
    args = p.parse_args(argv)
    if not 1 <= args.messages <= 1_000_000:
        p.error("--messages must be 1..1000000")
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="mm-bench-") as d:
        base = Path(d)
        result: dict[str, object] = {
            "benchmark": "metamanager",
            "messages": args.messages,
            "value_bytes": args.value_bytes,
            "group": args.group,
            "pragmas": "journal_mode=WAL,synchronous=FULL",
            "raw_commits_per_s": round(raw_sqlite(base / "raw1.db", args.messages, args.value_bytes, 1), 1),
            "raw_group_rows_per_s": round(
                raw_sqlite(base / "rawg.db", args.messages, args.value_bytes, args.group), 1
            ),
            "metamanager_msgs_per_s": round(
                trio.run(_metamanager, base / "mm1.db", args.messages, args.value_bytes, 1), 1
            ),
            "metamanager_group_msgs_per_s": round(
                trio.run(_metamanager, base / "mmg.db", args.messages, args.value_bytes, args.group), 1
            ),
        }
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
