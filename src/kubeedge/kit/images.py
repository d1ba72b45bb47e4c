"""Local container images without a registry: busybox and pause images made from the host's busybox-static.

No registry is reachable on the machines we build and test on, so the demo and
the tests import a ~1 MB image from a root filesystem folder: ``/bin/busybox``
plus one symlink per applet. The pod sandbox ("pause") image is the same root
filesystem whose command only waits for SIGTERM, tagged with edged's
``podSandboxImage`` name. Building is idempotent: an existing image with the
same tag is reused. Raises :class:`ImageBuildError` naming what is missing.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any, Final

BUSYBOX_TAG: Final = "kubeedge-py/busybox:latest"
BUSYBOX_CANDIDATES: Final = ("/bin/busybox", "/usr/bin/busybox")
PAUSE_TAG: Final = "kubeedge/pause:3.6"
"""Upstream edgecore's ``podSandboxImage`` default."""
PAUSE_CMD: Final = '["/bin/sh", "-c", "trap \'exit 0\' TERM INT; sleep 2147483647 & wait"]'
"""Wait for ever, exit at once on SIGTERM/SIGINT (a bare ``sleep`` as PID 1 would ignore SIGTERM)."""


class ImageBuildError(RuntimeError):
    """A local image could not be built."""


def find_busybox() -> Path:
    """Path of a statically linked busybox on this host (Debian package ``busybox-static``)."""
    for candidate in BUSYBOX_CANDIDATES:
        path = Path(candidate)
        if path.is_file():
            return path
    found = shutil.which("busybox")
    if found:
        return Path(found)
    raise ImageBuildError("no busybox binary found: install the Debian package busybox-static")


def busybox_rootfs_tar(busybox: Path) -> bytes:
    """A tar archive of a minimal root filesystem: busybox, its applet links, /tmp, /etc/passwd."""
    applets = subprocess.run(
        [str(busybox), "--list"], check=True, capture_output=True, text=True, timeout=30
    ).stdout.split()
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for folder in ("bin", "tmp", "etc", "proc", "sys", "dev", "var", "root"):
            info = tarfile.TarInfo(folder)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if folder == "tmp" else 0o755
            tar.addfile(info)
        tar.add(str(busybox), arcname="bin/busybox")
        for applet in applets:
            if applet == "busybox":
                continue
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type = tarfile.SYMTYPE
            link.linkname = "busybox"
            tar.addfile(link)
        passwd = b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n"
        info = tarfile.TarInfo("etc/passwd")
        info.size = len(passwd)
        info.mode = 0o644
        tar.addfile(info, io.BytesIO(passwd))
    return buf.getvalue()


def ensure_busybox_image(client: Any, tag: str = BUSYBOX_TAG, cmd: str = '["/bin/sh"]') -> str:
    """Make sure ``tag`` exists in the Docker engine behind ``client``; return its image id.

    ``client`` is a ``docker.DockerClient``; ``cmd`` is the image's JSON ``CMD``.
    """
    import docker.errors

    try:
        return str(client.images.get(tag).id)
    except docker.errors.ImageNotFound:
        pass
    data = busybox_rootfs_tar(find_busybox())
    repository, _, version = tag.rpartition(":")
    if not repository or "/" in version:
        repository, version = tag, "latest"
    client.api.import_image_from_data(data, repository=repository, tag=version, changes=[f"CMD {cmd}"])
    return str(client.images.get(tag).id)


def ensure_pause_image(client: Any, tag: str = PAUSE_TAG) -> str:
    """Make sure a pod sandbox image named ``tag`` exists (built locally from busybox-static); return its id."""
    return ensure_busybox_image(client, tag, PAUSE_CMD)
