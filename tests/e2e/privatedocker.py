"""A private Docker engine for one test: its own dockerd, containerd, bridge and folders, and a power cut.

The shared engine at /var/run/docker.sock serves every other test and must never be restarted; a test that
simulates a host reboot starts this one instead. It owns, and removes at :meth:`PrivateDockerd.destroy`:
- a bridge ``kep<hex>`` holding a /24 of 10.0.0.0/8 that no route of the host uses (pod traffic stays on it;
  no iptables rules, no masquerading, no forwarding sysctl change),
- a folder under /tmp (short, because unix socket paths are limited to 107 bytes) with the daemon's
  socket, pid file, log, ``data-root`` (vfs storage) and ``exec-root`` (its containerd lives there).

:meth:`PrivateDockerd.power_cut` is what a host reboot does to the engine: every process of its containers,
its containerd shims, containerd and dockerd get SIGKILL (found through their cgroups and command lines,
which name this daemon's folder, so no other process is touched), and the ``exec-root`` (tmpfs ``/run`` on a
real host) is wiped. :meth:`PrivateDockerd.start` then boots the engine again on the same ``data-root``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

START_TIMEOUT = 30.0
"""Seconds the daemon gets to answer on its socket."""


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=60, check=False)
    if check and result.returncode != 0:
        pytest.fail(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    return result


def _free_subnet() -> ipaddress.IPv4Network:
    """A /24 of 10.0.0.0/8 overlapping no route of this host."""
    routes = _run("ip", "-4", "route", "show", "table", "all").stdout.split()
    used = []
    for word in routes:
        try:
            used.append(ipaddress.ip_network(word, strict=False))
        except ValueError:
            continue
    rng = random.Random()
    for _ in range(100):  # bounded: the host would have to route most of 10/8 for this to run out
        net = ipaddress.ip_network(f"10.{rng.randrange(200, 250)}.{rng.randrange(0, 256)}.0/24")
        if not any(net.overlaps(u) for u in used if u.version == 4):
            return net
    pytest.fail("no free /24 in 10.200.0.0-10.249.255.0 for the private bridge")


def _mounts_under(root: Path) -> list[str]:
    """Mount points at or below ``root``, deepest first."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == str(root) or point.startswith(f"{root}/"):
            found.append(point)
    return sorted(found, key=len, reverse=True)


def _pids_matching(root: Path, container_ids: list[str]) -> set[int]:
    """Processes whose cgroup names one of ``container_ids`` or whose command line names ``root``."""
    found = set()
    needle = str(root).encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            cgroup = (entry / "cgroup").read_text()
        except OSError:
            continue  # exited meanwhile
        if needle in cmdline or any(cid in cgroup for cid in container_ids):
            found.add(int(entry.name))
    return found


class PrivateDockerd:
    """One private Docker engine; see the module docstring."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="kep-", dir="/tmp"))
        self.bridge = f"kep{uuid.uuid4().hex[:8]}"
        self.subnet = _free_subnet()
        self.host = f"unix://{self.root}/d.sock"
        self.log = self.root / "dockerd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._bridge_made = False

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """The docker CLI on this daemon."""
        return _run("docker", "-H", self.host, *args, check=check)

    def make_bridge(self) -> None:
        gateway = next(self.subnet.hosts())
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        self._bridge_made = True
        _run("ip", "addr", "add", f"{gateway}/{self.subnet.prefixlen}", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")

    def start(self) -> None:
        """Start dockerd on this folder and bridge; returns once it answers."""
        argv = [
            "dockerd",
            f"--data-root={self.root / 'data'}",
            f"--exec-root={self.root / 'x'}",
            f"--host={self.host}",
            f"--pidfile={self.root / 'd.pid'}",
            "--storage-driver=vfs",
            f"--bridge={self.bridge}",
            "--iptables=false",
            "--ip6tables=false",
            "--ip-masq=false",
            "--ip-forward=false",
            "--userland-proxy=false",
            "--shutdown-timeout=2",
        ]
        with self.log.open("ab") as out:
            out.write(b"===== start dockerd =====\n")
            out.flush()
            self.proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while self.docker("version", check=False).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"private dockerd did not come up\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)  # polling the daemon's socket, under the deadline above

    def load_images(self, *tags: str) -> None:
        """``docker save`` from the shared engine piped into ``docker load`` here (no registry is reachable)."""
        with subprocess.Popen(["docker", "save", *tags], stdout=subprocess.PIPE) as save:
            loaded = subprocess.run(
                ["docker", "-H", self.host, "load"],
                stdin=save.stdout,
                capture_output=True,
                timeout=120,
                check=False,
            )
            assert save.stdout is not None
            save.stdout.close()
            save.wait(timeout=60)
        if save.returncode != 0 or loaded.returncode != 0:
            pytest.fail(f"loading {tags} into the private dockerd failed: {loaded.stderr.decode()[-2000:]}")

    def power_cut(self) -> None:
        """SIGKILL everything of this engine (containers first), then wipe its exec-root like a reboot."""
        ids = self.docker("ps", "-q", "--no-trunc", check=False).stdout.split()
        deadline = time.monotonic() + 30
        while pids := _pids_matching(self.root, ids):
            if time.monotonic() > deadline:
                pytest.fail(f"processes of the private dockerd survive SIGKILL: {sorted(pids)}")
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)  # letting the kernel reap them, under the deadline above
        if self.proc is not None:
            self.proc.wait(timeout=10)
            self.proc = None
        self._unmount()
        shutil.rmtree(self.root / "x", ignore_errors=True)

    def _unmount(self) -> None:
        for point in _mounts_under(self.root):
            _run("umount", "-l", point, check=False)

    def destroy(self) -> None:
        """Stop the daemon and its containers and remove the bridge and every file; safe to call twice."""
        if self.proc is not None and self.proc.poll() is None:
            for cid in self.docker("ps", "-aq", check=False).stdout.split():
                self.docker("rm", "-f", cid, check=False)
        self.power_cut()
        if self._bridge_made:
            _run("ip", "link", "del", self.bridge, check=False)
            self._bridge_made = False
        shutil.rmtree(self.root, ignore_errors=True)
