"""``cloudcore``: the cloud side (CloudHub, EdgeController, DeviceController, SyncController).

For now the command handles its config (generate, check, load and summarise); the module runtime is wired in
separately.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from kubeedge.cli import common, configflags
from kubeedge.kit import config, log

PROG = "cloudcore"


def build_parser() -> argparse.ArgumentParser:
    """The ``cloudcore`` argument parser."""
    parser = common.new_parser(
        PROG, "KubeEdge cloud side: serves edge nodes over CloudHub and syncs them with Kubernetes."
    )
    configflags.add_flags(parser, config.DEFAULT_CLOUDCORE_PATH)
    parser.add_subparsers(dest="command", metavar="COMMAND")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cloudcore`` console script."""
    args = build_parser().parse_args(argv)
    common.setup_logging(args)
    text = configflags.generated(args, config.default_cloudcore, config.minimal_cloudcore)
    if text is not None:
        print(text, end="")
        return 0
    cfg = configflags.load(args, config.load_cloudcore)
    if args.check:
        print(f"config OK: {args.config}")
        return 0
    modules = cfg.modules
    hub = modules.cloud_hub
    log.get(__name__).info(
        "config loaded",
        path=args.config,
        websocket=f"{hub.websocket.address}:{hub.websocket.port}" if hub.websocket.enable else "off",
        https=f"{hub.https.address}:{hub.https.port}" if hub.https.enable else "off",
        node_limit=hub.node_limit,
        embedded_api_server=cfg.embedded_api_server_enabled,
        modules=",".join(
            name
            for name, enabled in (
                ("cloudHub", hub.enable),
                ("edgeController", modules.edge_controller.enable),
                ("deviceController", modules.device_controller.enable),
                ("syncController", modules.sync_controller.enable),
                ("dynamicController", modules.dynamic_controller.enable),
                ("cloudStream", modules.cloud_stream.enable),
                ("router", modules.router.enable),
                ("iptablesManager", modules.iptables_manager.enable),
                ("taskManager", modules.task_manager.enable),
            )
            if enabled
        ),
    )
    return 0
