"""``keadm``: join an edge node, reset it, and print the cloud's join token."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from kubeedge.cli import common

PROG = "keadm"


def build_parser() -> argparse.ArgumentParser:
    """The ``keadm`` argument parser."""
    parser = common.new_parser(PROG, "KubeEdge installation tool: join edge nodes to a cloudcore.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("version", help="print the version")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``keadm`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    common.setup_logging(args)
    if args.command == "version":
        print(common.version_text(PROG))
        return 0
    parser.print_help()
    return common.EXIT_USAGE
