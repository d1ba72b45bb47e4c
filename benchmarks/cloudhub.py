"""CloudHub at scale: N simulated edges over mTLS websockets against one CloudHub process.

Runs three kinds of process: this orchestrator, one CloudHub (``--role cloud``)
and ``--workers`` edge processes (``--role edges``), each holding a share of the
N EdgeHub instances with real keepalives and pings. Prints ONE JSON line:

* ``sessions_held`` and ``connect_rate_per_s`` (handshakes per second while all
  N dial with at most ``--dial-concurrency`` in flight per worker),
* ``steady_cpu_pct_one_core`` and ``rss_mib`` of the CloudHub process over
  ``--steady`` seconds with N sessions idle but for keepalives,
* ``fanout_msgs_per_s`` and ``latency_p50_ms``/``latency_p99_ms`` for
  ``--fanout-rounds`` messages sent to every node (no-ack, group ``user``),
* ``wsproto_msgs_per_s``: bare wsproto encode+decode of a 128-byte text
  message in this process, the same run's yardstick for the machine.

Usage: ``python benchmarks/cloudhub.py --nodes 5000`` (the test suite runs it
with a handful of nodes). Node authorization is switched off so every edge
can share one client certificate; the TLS work per handshake is unchanged.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import random
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_NODE_CN = "system:node:bench"


# --- PKI -------------------------------------------------------------------------------------------------


def make_pki(directory: Path) -> None:
    """CA, server cert (127.0.0.1) and one client cert, all ECDSA P-256, as PEM files in ``directory``."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "KubeEdge")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    (directory / "ca.crt").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    for stem, cn, san in (("server", "cloudhub", True), ("client", BENCH_NODE_CN, False)):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )
        if san:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False,
            )
        (directory / f"{stem}.crt").write_bytes(
            builder.sign(ca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
        )
        (directory / f"{stem}.key").write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            )
        )


def server_context(pki: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / "server.crt"), str(pki / "server.key"))
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.num_tickets = 0  # no resumption is ever used; tickets only cost CPU
    return ctx


def client_context(pki: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=str(pki / "ca.crt"))
    ctx.load_cert_chain(str(pki / "client.crt"), str(pki / "client.key"))
    return ctx


# --- cloud role ------------------------------------------------------------------------------------------


def run_cloud(args: argparse.Namespace) -> None:
    """Serve CloudHub; answer line commands on stdin (``sessions``, ``freeze``, ``fanout K``, ``quit``)."""
    import trio

    from kubeedge.cloud.cloudhub.hub import CloudHub, HubSettings
    from kubeedge.proto.message import Message

    async def main() -> None:
        send, receive = trio.open_memory_channel[Message](0)
        hub = CloudHub(
            server_context(Path(args.pki)),
            send,
            HubSettings(
                address="127.0.0.1",
                port=0,
                node_limit=args.nodes + 10,
                keepalive_interval=2 * args.heartbeat,
                authorize_nodes=False,
            ),
        )

        async def drain() -> None:
            async for _ in receive:
                pass

        async with trio.open_nursery() as nursery:
            nursery.start_soon(drain)
            await nursery.start(hub.run)
            print(json.dumps({"port": hub.port}), flush=True)
            stdin = trio.lowlevel.FdStream(os.dup(0))
            buffer = b""
            while True:
                chunk = await stdin.receive_some(4096)
                if not chunk:
                    break
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    cmd = line.decode().split()
                    if not cmd:
                        continue
                    if cmd[0] == "sessions":
                        print(json.dumps({"sessions": len(hub.nodes)}), flush=True)
                    elif cmd[0] == "freeze":
                        # After the bulk of long-lived session objects exist, keep full GCs from
                        # rescanning them (ENVIRONMENT.md: 0.7-1.2 s pauses at 10k connections).
                        gc.collect()
                        gc.freeze()
                        print(json.dumps({"frozen": gc.get_freeze_count()}), flush=True)
                    elif cmd[0] == "fanout":
                        rounds = int(cmd[1])
                        nodes = hub.nodes
                        start = time.perf_counter()
                        sent = 0
                        for r in range(rounds):
                            for node in nodes:
                                msg = Message.new(
                                    source="router_eventbus",
                                    group="user",
                                    operation="publish",
                                    resource=f"node/{node}/bench/topic",
                                    content={"t": time.time(), "r": r},
                                    now_ms=0,
                                )
                                if hub.send_to_node(node, msg) is not None:
                                    sent += 1
                            await trio.sleep(0)
                        print(
                            json.dumps({"sent": sent, "enqueue_s": time.perf_counter() - start}), flush=True
                        )
                    elif cmd[0] == "quit":
                        nursery.cancel_scope.cancel()
                        return

    if args.profile:
        import cProfile

        cProfile.runctx("trio.run(main)", globals(), {"trio": trio, "main": main}, args.profile)
    else:
        trio.run(main)


# --- edges role ------------------------------------------------------------------------------------------


def run_edges(args: argparse.Namespace) -> None:
    """Hold ``--count`` EdgeHubs; print ``connected`` when all are up; answer ``report`` / ``quit``."""
    import trio

    from kubeedge.edge.edgehub.hub import EdgeHub, EdgeHubSettings, is_connect_event

    latencies: list[float] = []
    last_rx = [0.0]
    connected = 0

    async def main() -> None:
        nonlocal connected
        ctx = client_context(Path(args.pki))
        limiter = trio.CapacityLimiter(args.dial_concurrency)
        all_up = trio.Event()
        first_dial = time.time()

        async def one(i: int, nursery: trio.Nursery) -> None:
            nonlocal connected
            edge = EdgeHub(
                ctx,
                EdgeHubSettings(
                    server=args.server,
                    node_name=f"bench-{args.start + i}",
                    heartbeat=args.heartbeat,
                    handshake_timeout=120.0,
                    reconnect_base=1.0,
                    reconnect_cap=10.0,
                ),
                rng=random.Random(args.start + i),
            )
            async with limiter:
                await nursery.start(edge.run)
                first = await edge.receive()
                assert is_connect_event(first)
            connected += 1
            if connected == args.count:
                all_up.set()
            while True:
                msg = await edge.receive()
                if not is_connect_event(msg) and isinstance(msg.content, dict):
                    now = time.time()
                    latencies.append(now - msg.content["t"])
                    last_rx[0] = max(last_rx[0], now)

        async with trio.open_nursery() as nursery:
            for i in range(args.count):
                nursery.start_soon(one, i, nursery)
            await all_up.wait()
            gc.collect()
            gc.freeze()
            print(
                json.dumps({"connected": connected, "first_dial": first_dial, "all_up": time.time()}),
                flush=True,
            )
            stdin = trio.lowlevel.FdStream(os.dup(0))
            buffer = b""
            while True:
                chunk = await stdin.receive_some(4096)
                if not chunk:
                    break
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    cmd = line.decode().strip()
                    if cmd == "count":
                        print(json.dumps({"received": len(latencies)}), flush=True)
                    elif cmd == "report":
                        print(json.dumps({"latencies": latencies, "last_rx": last_rx[0]}), flush=True)
                    elif cmd == "quit":
                        nursery.cancel_scope.cancel()
                        return

    trio.run(main)


# --- orchestrator ----------------------------------------------------------------------------------------


def proc_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def proc_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def wsproto_rate(duration: float = 1.0) -> float:
    """Bare wsproto: encode a 128-byte text message on one side, decode it on the other, per second."""
    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, Request, TextMessage

    client, server = WSConnection(ConnectionType.CLIENT), WSConnection(ConnectionType.SERVER)
    server.receive_data(client.send(Request(host="x", target="/")))
    next(server.events())
    client.receive_data(server.send(AcceptConnection()))
    next(client.events())
    payload = "x" * 128
    count, deadline = 0, time.perf_counter() + duration
    start = time.perf_counter()
    while time.perf_counter() < deadline:
        for _ in range(1000):
            server.receive_data(client.send(TextMessage(data=payload)))
            for _event in server.events():
                pass
        count += 1000
    return count / (time.perf_counter() - start)


class Child:
    """A child process speaking JSON lines."""

    def __init__(self, argv: list[str]) -> None:
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1, env=os.environ.copy()
        )

    def send(self, line: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"child {self.proc.args!r} exited with {self.proc.wait()}")
        result: dict[str, Any] = json.loads(line)
        return result

    def ask(self, line: str) -> dict[str, Any]:
        self.send(line)
        return self.read()

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send("quit")
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def orchestrate(args: argparse.Namespace) -> dict[str, Any]:
    me = [sys.executable, os.path.abspath(__file__)]
    with tempfile.TemporaryDirectory(prefix="bench-cloudhub-") as tmp:
        pki = Path(tmp)
        make_pki(pki)
        cloud = Child(
            [
                *me,
                "--role",
                "cloud",
                "--pki",
                str(pki),
                "--nodes",
                str(args.nodes),
                "--heartbeat",
                str(args.heartbeat),
            ]
        )
        workers: list[Child] = []
        try:
            port = cloud.read()["port"]
            share, extra = divmod(args.nodes, args.workers)
            start = 0
            for w in range(args.workers):
                count = share + (1 if w < extra else 0)
                if count == 0:
                    continue
                workers.append(
                    Child(
                        [
                            *me,
                            "--role",
                            "edges",
                            "--pki",
                            str(pki),
                            "--server",
                            f"127.0.0.1:{port}",
                            "--start",
                            str(start),
                            "--count",
                            str(count),
                            "--heartbeat",
                            str(args.heartbeat),
                            "--dial-concurrency",
                            str(args.dial_concurrency),
                        ]
                    )
                )
                start += count
            ups = [w.read() for w in workers]
            connect_s = max(u["all_up"] for u in ups) - min(u["first_dial"] for u in ups)
            sessions = cloud.ask("sessions")["sessions"]
            cloud.ask("freeze")
            time.sleep(args.settle)
            cpu0, t0 = proc_cpu_seconds(cloud.proc.pid), time.monotonic()
            time.sleep(args.steady)
            cpu1, t1 = proc_cpu_seconds(cloud.proc.pid), time.monotonic()
            rss = proc_rss_mib(cloud.proc.pid)
            sessions_after = cloud.ask("sessions")["sessions"]

            fan_start = time.time()
            enqueue = cloud.ask(f"fanout {args.fanout_rounds}")
            expected = enqueue["sent"]
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                if sum(w.ask("count")["received"] for w in workers) >= expected:
                    break
                time.sleep(0.1)
            reports = [w.ask("report") for w in workers]
            latencies = [x for r in reports for x in r["latencies"]]
            received = len(latencies)
            fan_elapsed = max(r["last_rx"] for r in reports) - fan_start
            ws_rate = wsproto_rate()
            return {
                "nodes": args.nodes,
                "workers": len(workers),
                "heartbeat_s": args.heartbeat,
                "sessions_held": sessions,
                "sessions_after_steady": sessions_after,
                "connect_seconds": round(connect_s, 2),
                "connect_rate_per_s": round(sessions / connect_s, 1) if connect_s > 0 else None,
                "steady_seconds": round(t1 - t0, 1),
                "steady_cpu_pct_one_core": round(100 * (cpu1 - cpu0) / (t1 - t0), 2),
                "rss_mib": round(rss, 1),
                "rss_kib_per_session": round(1024 * rss / sessions, 1) if sessions else None,
                "fanout_sent": expected,
                "fanout_received": received,
                "fanout_enqueue_s": round(enqueue["enqueue_s"], 3),
                "fanout_msgs_per_s": round(received / fan_elapsed, 1) if fan_elapsed > 0 else None,
                "latency_p50_ms": round(1000 * percentile(latencies, 0.50), 2),
                "latency_p99_ms": round(1000 * percentile(latencies, 0.99), 2),
                "wsproto_msgs_per_s": round(ws_rate, 0),
            }
        finally:
            for w in workers:
                w.stop()
            cloud.stop()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1000, help="simulated edge nodes (default 1000)")
    parser.add_argument("--workers", type=int, default=2, help="edge processes (default 2)")
    parser.add_argument("--heartbeat", type=float, default=15.0, help="edge heartbeat seconds (default 15)")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds to wait before measuring CPU")
    parser.add_argument("--steady", type=float, default=30.0, help="seconds of steady-state CPU measurement")
    parser.add_argument("--fanout-rounds", type=int, default=3, help="messages sent to every node")
    parser.add_argument("--dial-concurrency", type=int, default=64, help="dials in flight per worker")
    parser.add_argument(
        "--role", choices=["orchestrator", "cloud", "edges"], default="orchestrator", help=argparse.SUPPRESS
    )
    parser.add_argument("--pki", help=argparse.SUPPRESS)
    parser.add_argument("--profile", help=argparse.SUPPRESS)
    parser.add_argument("--server", help=argparse.SUPPRESS)
    parser.add_argument("--start", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.nodes < 1 or args.workers < 1:
        parser.error("--nodes and --workers must be >= 1")
    if args.nodes > 19_000:
        parser.error("--nodes above 19000 cannot fit the open-file hard limit of 20000 in one process")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.role == "cloud":
        run_cloud(args)
    elif args.role == "edges":
        run_edges(args)
    else:
        print(json.dumps(orchestrate(args)), flush=True)


if __name__ == "__main__":
    main()
