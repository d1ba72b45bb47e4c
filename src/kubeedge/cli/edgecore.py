"""``edgecore``: the edge side (EdgeHub, MetaManager, Edged, EventBus, DeviceTwin, ServiceBus).

Generates and checks its config, or loads it and runs the enabled modules (see :mod:`kubeedge.edge.app`) until
SIGINT/SIGTERM. Start-up problems the operator can fix (bad config, unreadable certificates, a corrupt database)
exit with one clear line, never a traceback. ``edgecore tui`` opens the status TUI on the socket
``modules.statusServer.socketPath`` names.
"""

from __future__ import annotations

import argparse
import functools
import os
import ssl
from collections.abc import Sequence

import trio

from kubeedge.cli import common, configflags
from kubeedge.edge import app
from kubeedge.edge.metamanager.store import StoreError
from kubeedge.kit import beehive, config, log
from kubeedge.kit.config.edgecore import DEFAULT_STATUS_SOCKET

PROG = "edgecore"


def build_parser() -> argparse.ArgumentParser:
    """The ``edgecore`` argument parser."""
    parser = common.new_parser(PROG, "KubeEdge edge side: runs pods and devices, keeps working offline.")
    configflags.add_flags(parser, config.DEFAULT_EDGECORE_PATH)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    tui = commands.add_parser("tui", help="terminal view of this node's status (reads the status socket)")
    tui.add_argument(
        "--socket",
        default=None,
        metavar="PATH",
        help="status socket (default: modules.statusServer.socketPath of --config when it exists, "
        f"else {DEFAULT_STATUS_SOCKET})",
    )
    tui.add_argument("--interval", type=float, default=2.0, help="seconds between refreshes (default: 2)")
    tui.add_argument(
        "--ansi",
        action="store_true",
        help="draw with the terminal's 16 ANSI colours (automatic on 16-colour terminals)",
    )
    return parser


def _tui(args: argparse.Namespace) -> int:
    if not args.interval > 0:
        common.fail(
            f"--interval must be a positive number of seconds, got {args.interval:g}", code=common.EXIT_USAGE
        )
    socket_path = args.socket
    if socket_path is None:
        socket_path = DEFAULT_STATUS_SOCKET
        if args.config not in ("-", "/dev/stdin") and os.path.exists(args.config):
            socket_path = configflags.load(args, config.load_edgecore).modules.status_server.socket_path
    from kubeedge.tui import app as tui_app  # Textual is imported only by this subcommand

    return tui_app.run(socket_path, args.interval, ansi=args.ansi)


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``edgecore`` console script."""
    args = build_parser().parse_args(argv)
    common.setup_logging(args)
    if args.command == "tui":
        return _tui(args)
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
    # Certificates first: a node that has not joined yet must fail before anything is written to disk.
    try:
        context = app.tls_context(cfg)
    except (OSError, ssl.SSLError) as exc:
        common.fail(f"cannot start edgecore: {exc}")
    try:
        store = app.open_store(cfg)
    except (StoreError, OSError) as exc:
        common.fail(f"cannot open the edge database: {exc}")
    try:
        try:
            built = app.build_modules(cfg, store, context)
        except (OSError, ValueError) as exc:
            common.fail(f"cannot start edgecore: {exc}")
        return trio.run(functools.partial(beehive.run_modules, built))
    finally:
        store.close()
