"""``cloudcore``: the cloud side (CloudHub, EdgeController, DeviceController, SyncController)."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from kubeedge.cli import common

PROG = "cloudcore"


def build_parser() -> argparse.ArgumentParser:
    """The ``cloudcore`` argument parser."""
    parser = common.new_parser(
        PROG, "KubeEdge cloud side: serves edge nodes over CloudHub and syncs them with Kubernetes."
    )
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cloudcore`` console script."""
    args = build_parser().parse_args(argv)
    common.setup_logging(args)
    return 0
