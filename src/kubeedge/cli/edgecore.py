"""``edgecore``: the edge side (EdgeHub, MetaManager, Edged, EventBus, DeviceTwin, ServiceBus).

Generates and checks its config, or loads it and runs the enabled modules (see :mod:`kubeedge.edge.app`) until
SIGINT/SIGTERM. Start-up problems the operator can fix (bad config, unreadable certificates, a corrupt database)
exit with one clear line, never a traceback.
"""

from __future__ import annotations

import argparse
import functools
import ssl
from collections.abc import Sequence

import trio

from kubeedge.cli import common, configflags
from kubeedge.edge import app
from kubeedge.edge.metamanager.store import StoreError
from kubeedge.kit import beehive, config, log

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
    if modules.edge_hub.enable and not modules.edge_hub.websocket.server:
        common.fail(
            f"{args.config}: modules.edgeHub.websocket.server: must be set to CloudHub's host:port "
            "(keadm join writes it)",
            code=common.EXIT_USAGE,
        )
    try:
        store = app.open_store(cfg)
    except (StoreError, OSError) as exc:
        common.fail(f"cannot open the edge database: {exc}")
    try:
        try:
            built = app.build_modules(cfg, store)
        except (OSError, ssl.SSLError, ValueError) as exc:
            common.fail(f"cannot start edgecore: {exc}")
        return trio.run(functools.partial(beehive.run_modules, built))
    finally:
        store.close()
