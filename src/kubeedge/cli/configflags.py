"""The upstream-style config flags both daemons share: ``--config``, ``--defaultconfig``, ``--minconfig``, ``--check``.

Owns turning those flags into an action: print a generated file, check a file, or load it for the runtime.
``--defaultconfig`` and ``--minconfig`` fill host values (first non-loopback IP, hostname) like upstream; the
environment variables :data:`ENV_HOST_IP` and :data:`ENV_HOSTNAME` override them so output can be reproduced.

Failure: a config error prints ``error: <file>: <key path>: <problem>`` on stderr and exits 2.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path
from typing import Final, TypeVar

from kubeedge.cli import common
from kubeedge.kit import config

ENV_HOST_IP: Final = "KUBEEDGE_HOST_IP"
"""Overrides the host IP written by ``--defaultconfig`` / ``--minconfig``."""
ENV_HOSTNAME: Final = "KUBEEDGE_HOSTNAME"
"""Overrides the hostname written by ``--defaultconfig`` / ``--minconfig``."""

_C = TypeVar("_C", config.CloudCoreConfig, config.EdgeCoreConfig)


def add_flags(parser: argparse.ArgumentParser, default_path: str) -> None:
    """Add the config flags to a daemon's parser."""
    parser.add_argument(
        "--config",
        default=default_path,
        metavar="PATH",
        help=f"config file; '-' or /dev/stdin reads standard input (default: {default_path})",
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument(
        "--defaultconfig", action="store_true", help="print a complete, commented default config and exit"
    )
    action.add_argument("--minconfig", action="store_true", help="print a minimal commented config and exit")
    action.add_argument(
        "--check", action="store_true", help="load and validate the config, print 'config OK: PATH' and exit"
    )


def host_facts() -> config.HostFacts:
    """This host's IP and hostname for generated configs, each overridable from the environment."""
    ip = os.environ.get(ENV_HOST_IP)
    hostname = os.environ.get(ENV_HOSTNAME)
    if ip and hostname:
        return config.HostFacts(ip, hostname)
    detected = config.HostFacts.detect()
    return config.HostFacts(ip or detected.ip, hostname or detected.hostname)


def generated(
    args: argparse.Namespace,
    default: Callable[[config.HostFacts], _C],
    minimal: Callable[[config.HostFacts], _C],
) -> str | None:
    """The text ``--defaultconfig`` / ``--minconfig`` asks for, or None when neither was given."""
    if args.defaultconfig:
        return config.dump_yaml(default(host_facts()))
    if args.minconfig:
        return config.dump_yaml(minimal(host_facts()), minimal=True)
    return None


def load(args: argparse.Namespace, loader: Callable[[Path], _C]) -> _C:
    """Load ``--config``, exiting with a usage error that names the key path when it is invalid."""
    try:
        return loader(Path(args.config))
    except config.ConfigError as exc:
        where = exc.source or args.config
        common.fail(f"{where}: {exc}", code=common.EXIT_USAGE)
