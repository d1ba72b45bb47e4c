#!/usr/bin/env bash
# Builds (once) the Debian image with systemd as PID 1 that the molecule scenarios run as "hosts".
#
# No registry can be reached, so the image is made from a debootstrap rootfs and `docker import`. The result is
# cached: the image carries a label with the hash of this script and is rebuilt only when the script changes
# (or with --force). Needs root, debootstrap and a running Docker engine.
#
# Usage: molecule/build-image.sh [--force] [IMAGE]   (default IMAGE: kubeedge-py/debian-systemd:bookworm)
# Env:   KUBEEDGE_DEBIAN_MIRROR (default http://deb.debian.org/debian), KUBEEDGE_DEBIAN_SUITE (default bookworm)
set -euo pipefail

force=0
if [ "${1:-}" = "--force" ]; then force=1; shift; fi
image="${1:-kubeedge-py/debian-systemd:bookworm}"
suite="${KUBEEDGE_DEBIAN_SUITE:-bookworm}"
mirror="${KUBEEDGE_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
recipe="$(sha256sum "$0" | cut -c1-16)-$suite"

if [ "$force" -eq 0 ] && [ "$(docker image inspect -f '{{ index .Config.Labels "org.kubeedge-py.recipe" }}' "$image" 2>/dev/null)" = "$recipe" ]; then
    echo "build-image: $image is up to date (recipe $recipe)" >&2
    exit 0
fi

if ! command -v debootstrap >/dev/null; then
    echo "build-image: installing debootstrap" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

# What Ansible needs on a managed host, plus python3-venv, which the release role needs on every host, and
# mosquitto, which the edgecore role needs on every edge host: baked in so that converging needs no package
# index (the roles still install them on a bare host; the default scenario takes mosquitto off one edge host
# to keep that path covered). The Docker engine is left out: the scenarios' pods use the machine's engine.
include=systemd,systemd-sysv,dbus,python3,python3-apt,python3-venv,mosquitto,ca-certificates,iproute2,procps,sudo,curl

rootfs="$(mktemp -d /var/tmp/kubeedge-rootfs.XXXXXX)"
# mktemp makes the folder 0700 and it becomes the image's /: services running as other users need 0755.
chmod 0755 "$rootfs"
trap 'rm -rf --one-file-system "$rootfs"' EXIT
echo "build-image: debootstrap $suite into $rootfs (about a minute)" >&2
debootstrap --variant=minbase --include="$include" "$suite" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 || {
    tail -n 30 "$rootfs.log" >&2
    exit 1
}
rm -f "$rootfs.log"

# systemd in a container: units that need real hardware or a console only fail and slow the boot.
for unit in getty@tty1.service serial-getty@.service systemd-remount-fs.service systemd-udevd.service \
    systemd-udev-trigger.service systemd-firstboot.service systemd-modules-load.service \
    sys-kernel-config.mount sys-kernel-debug.mount sys-kernel-tracing.mount systemd-logind.service \
    getty.target console-getty.service; do
    ln -sf /dev/null "$rootfs/etc/systemd/system/$unit"
done
# An empty machine-id makes systemd generate a fresh one in every container.
: >"$rootfs/etc/machine-id"
rm -f "$rootfs/var/lib/dbus/machine-id"
cp /etc/apt/sources.list.d/debian.sources "$rootfs/etc/apt/sources.list.d/" 2>/dev/null || true
if [ -f "$rootfs/etc/apt/sources.list.d/debian.sources" ]; then rm -f "$rootfs/etc/apt/sources.list"; fi
chroot "$rootfs" apt-get clean
rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin
mkdir -p "$rootfs/var/lib/apt/lists/partial"
chroot "$rootfs" chown _apt:root /var/lib/apt/lists/partial
# The package lists were dropped: an old mtime makes `apt: cache_valid_time` refresh them on first use.
touch -d @0 "$rootfs/var/lib/apt/lists"

echo "build-image: importing as $image" >&2
tar -C "$rootfs" -c . | docker import \
    --change 'ENV container=docker' \
    --change 'CMD ["/sbin/init"]' \
    --change "LABEL org.kubeedge-py.recipe=$recipe" \
    - "$image" >/dev/null
echo "build-image: built $image" >&2
