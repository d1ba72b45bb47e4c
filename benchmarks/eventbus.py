"""Edge MQTT broker throughput: the internal broker next to mosquitto, same machine, same clients, same run.

Each broker runs in its own process (mosquitto; the internal broker through ``--serve-internal``), so
neither shares a CPU with the clients more than the other. The clients are the same C programs for
both: one ``mosquitto_sub`` (counts ``--messages`` then exits) and one ``mosquitto_pub -l`` (publishes
one message per stdin line, as fast as the broker takes them, QoS 1 with its in-flight window of 20).
Both brokers get a session queue of ``--messages`` so that nothing is dropped and the counts match.

Measures, per broker and per QoS (0 and 1): ``<broker>_qos<n>_msgs_per_s``, end-to-end messages per
second from the publisher's start to the subscriber's last message; plus ``internal_vs_mosquitto_qos<n>``
(the ratio). Prints ONE JSON line. ``--messages`` bounds every loop.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOPIC = "$hw/events/device/default/bench/twin/update"
DEADLINE_S = 300.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"broker exited early with code {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"broker did not listen on 127.0.0.1:{port}")


def _start_mosquitto(folder: Path, queue: int) -> tuple[subprocess.Popen[bytes], int]:
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    port = _free_port()
    conf = folder / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        f"max_queued_messages {queue}\nlog_dest none\n"
    )
    proc = subprocess.Popen([binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_port(port, proc)
    return proc, port


def _start_internal(queue: int) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    cmd = [sys.executable, __file__, "--serve-internal", str(port), "--messages", str(queue)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _wait_port(port, proc)
    return proc, port


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def _run(port: int, messages: int, qos: int, payload: bytes) -> float:
    """Messages per second through the broker on ``port``, end to end."""
    sub_cmd = ["stdbuf", "-oL", "mosquitto_sub", "-d", "-p", str(port), "-q", str(qos), "-t", TOPIC]
    sub = subprocess.Popen([*sub_cmd, "-C", str(messages)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert sub.stdout is not None
    try:
        # mosquitto_sub -d says "Subscribed" once its SUBACK is in: only then may the clock start.
        deadline = time.monotonic() + 15
        while b"Subscribed" not in sub.stdout.readline():
            if time.monotonic() > deadline or sub.poll() is not None:
                raise RuntimeError("mosquitto_sub did not subscribe")
        lines = b"".join(payload + b"\n" for _ in range(messages))
        began = time.perf_counter()
        pub = subprocess.run(
            ["mosquitto_pub", "-p", str(port), "-q", str(qos), "-t", TOPIC, "-l"],
            input=lines,
            capture_output=True,
            timeout=DEADLINE_S,
            check=False,
        )
        if pub.returncode:
            raise RuntimeError(f"mosquitto_pub failed: {pub.stderr.decode(errors='replace')}")
        # Drain the subscriber's output (one debug line and one payload line per message) until it exits.
        for _ in sub.stdout:
            pass
        sub.wait(timeout=DEADLINE_S)
        elapsed = time.perf_counter() - began
        if sub.returncode:
            raise RuntimeError(f"mosquitto_sub exited with {sub.returncode}")
    finally:
        if sub.poll() is None:
            sub.kill()
            sub.wait(timeout=5)
    return messages / elapsed


def _serve_internal(port: int, queue: int) -> None:
    import trio

    from kubeedge.edge.eventbus.broker import Broker

    async def serve() -> None:
        await Broker(session_queue_size=queue).serve("127.0.0.1", port)

    trio.run(serve)


def main(argv: list[str] | None = None) -> dict[str, object]:
    """Run the benchmark and print its JSON line (also returned)."""
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--messages", type=int, default=20_000, help="messages per measurement (default 20000)")
    p.add_argument("--payload", type=int, default=128, help="payload bytes (default 128)")
    p.add_argument("--serve-internal", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if not 1 <= args.messages <= 1_000_000:
        p.error("--messages must be in 1..1000000")
    if not 1 <= args.payload <= 65_536:
        p.error("--payload must be in 1..65536")
    if args.serve_internal is not None:
        _serve_internal(args.serve_internal, args.messages)
        return {}
    payload = b"x" * args.payload
    result: dict[str, object] = {
        "messages": args.messages,
        "payload_bytes": args.payload,
        "clients": "mosquitto_pub -l / mosquitto_sub",
        "cpus": os.cpu_count(),
    }
    with tempfile.TemporaryDirectory() as tmp:
        for name, start in (
            ("mosquitto", lambda: _start_mosquitto(Path(tmp), args.messages)),
            ("internal", lambda: _start_internal(args.messages)),
        ):
            proc, port = start()
            try:
                for qos in (0, 1):
                    result[f"{name}_qos{qos}_msgs_per_s"] = round(_run(port, args.messages, qos, payload), 1)
            finally:
                _stop(proc)
    for qos in (0, 1):
        internal = result[f"internal_qos{qos}_msgs_per_s"]
        mosquitto = result[f"mosquitto_qos{qos}_msgs_per_s"]
        assert isinstance(internal, float)
        assert isinstance(mosquitto, float)
        result[f"internal_vs_mosquitto_qos{qos}"] = round(internal / mosquitto, 3)
    print(json.dumps(result), flush=True)
    return result


if __name__ == "__main__":
    main()
