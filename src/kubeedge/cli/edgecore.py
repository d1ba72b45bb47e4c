"""``edgecore``: the edge side (EdgeHub, MetaManager, Edged, EventBus, DeviceTwin, ServiceBus)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from kubeedge.cli import common

PROG = "edgecore"


def build_parser() -> argparse.ArgumentParser:
    """The ``edgecore`` argument parser."""
    parser = common.new_parser(PROG, "KubeEdge edge side: runs pods and devices, keeps working offline.")
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``edgecore`` console script."""
    args = build_parser().parse_args(argv)
    common.setup_logging(args)
    return 0
