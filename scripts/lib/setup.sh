# Sourced by scripts/test and scripts/demo: idempotent machine set-up on Debian/Ubuntu.
# Installs missing Debian packages, makes .venv with the project and its dev tools, starts dockerd.

DEB_PACKAGES=(docker.io mosquitto mosquitto-clients busybox-static iproute2 iptables git)
VENV="${KUBEEDGE_VENV:-$PWD/.venv}"

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

ensure_system_packages() {
    local missing=()
    for pkg in "${DEB_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        echo "setup: installing Debian packages: ${missing[*]}" >&2
        as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
        as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

ensure_venv() {
    local stamp="$VENV/.kubeedge-installed"
    if [ ! -x "$VENV/bin/python" ]; then
        echo "setup: creating $VENV" >&2
        python3 -m venv "$VENV"
    fi
    # Reinstall when pyproject.toml changed since the last install.
    if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
        echo "setup: installing kubeedge-py and dev tools into $VENV" >&2
        "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e ".[dev]" 2> >(grep -v "is ignored: it is neither" >&2)
        touch "$stamp"
    fi
}

ensure_dockerd() {
    if docker info >/dev/null 2>&1; then
        return 0
    fi
    if ! pgrep -x dockerd >/dev/null; then
        echo "setup: starting dockerd (vfs storage driver), log in /var/log/dockerd.log" >&2
        as_root sh -c 'nohup setsid dockerd --storage-driver=vfs >/var/log/dockerd.log 2>&1 &'
    fi
    local deadline=$((SECONDS + 90))
    until docker info >/dev/null 2>&1; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "setup: dockerd did not come up within 90 s; tail of /var/log/dockerd.log:" >&2
            tail -n 20 /var/log/dockerd.log >&2 || true
            return 1
        fi
        sleep 0.5
    done
}
