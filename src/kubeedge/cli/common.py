"""Shared pieces of the three commands: version text, logging flags, error exit.

Every command exits 0 on success, 1 on a runtime failure and 2 on a usage or
config error, printing one clear line on stderr (never a traceback for input
the user can fix).
"""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

import kubeedge
from kubeedge.kit import log

EXIT_FAILURE = 1
EXIT_USAGE = 2


def version_text(prog: str) -> str:
    """The ``--version`` line: our version and the upstream release we follow."""
    return f"{prog} kubeedge-py {kubeedge.__version__} (upstream KubeEdge {kubeedge.UPSTREAM_VERSION})"


def new_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """A parser with ``--version``, ``--log-level`` and ``--log-format``."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--version", action="version", version=version_text(prog))
    parser.add_argument(
        "--log-level", choices=log.LEVELS, default=None, help=f"log level (default: ${log.ENV_LEVEL} or info)"
    )
    parser.add_argument(
        "--log-format",
        choices=log.FORMATS,
        default=None,
        help=f"log format (default: ${log.ENV_FORMAT} or text)",
    )
    return parser


def setup_logging(args: argparse.Namespace) -> None:
    """Apply the logging flags, exiting with a usage error on a bad environment value."""
    try:
        log.setup(args.log_level, args.log_format)
    except ValueError as exc:
        fail(str(exc), code=EXIT_USAGE)


def fail(message: str, *, code: int = EXIT_FAILURE) -> NoReturn:
    """Print ``error: message`` on stderr and exit with ``code``."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)
