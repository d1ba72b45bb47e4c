"""``edgecore``: the edge side (EdgeHub, MetaManager, Edged, EventBus, DeviceTwin, ServiceBus).

For now the command handles its config (generate, check, load and summarise); the module runtime is wired in
separately.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from kubeedge.cli import common, configflags
from kubeedge.kit import config, log

PROG = "edgecore"


def build_parser() -> argparse.ArgumentParser:
    """The ``edgecore`` argument parser."""
    parser = common.new_parser(PROG, "KubeEdge edge side: runs pods and devices, keeps working offline.")
    configflags.add_flags(parser, config.DEFAULT_EDGECORE_PATH)
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``edgecore`` console script."""
    args = build_parser().parse_args(argv)
    common.setup_logging(args)
    text = configflags.generated(args, config.default_edgecore, config.minimal_edgecore)
    if text is not None:
        print(text, end="")
        return 0
    cfg = configflags.load(args, config.load_edgecore)
    if args.check:
        print(f"config OK: {args.config}")
        return 0
    modules = cfg.modules
    log.get(__name__).info(
        "config loaded",
        path=args.config,
        node=modules.edged.hostname_override or "<hostname>",
        cloud=modules.edge_hub.websocket.server or "<unset>",
        database=cfg.database.data_source,
        modules=",".join(
            name
            for name, enabled in (
                ("edgeHub", modules.edge_hub.enable),
                ("edged", modules.edged.enable),
                ("metaManager", modules.meta_manager.enable),
                ("eventBus", modules.event_bus.enable),
                ("deviceTwin", modules.device_twin.enable),
                ("serviceBus", modules.service_bus.enable),
                ("edgeStream", modules.edge_stream.enable),
                ("taskManager", modules.task_manager.enable),
                ("dbTest", modules.db_test.enable),
            )
            if enabled
        ),
    )
    return 0
