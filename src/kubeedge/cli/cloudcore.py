"""``cloudcore``: the cloud side (CloudHub, EdgeController, DeviceController, SyncController).

For now the command handles its config (generate, check, load and summarise); the module runtime is wired in
separately.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from kubeedge.cli import common, configflags
from kubeedge.kit import config, log

PROG = "cloudcore"


def build_parser() -> argparse.ArgumentParser:
    """The ``cloudcore`` argument parser."""
    parser = common.new_parser(
        PROG, "KubeEdge cloud side: serves edge nodes over CloudHub and syncs them with Kubernetes."
    )
    configflags.add_flags(parser, config.DEFAULT_CLOUDCORE_PATH)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_apiserver_command(commands)
    return parser


def _add_apiserver_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = commands.add_parser(
        "apiserver", help="run the embedded Kubernetes-API-compatible server standalone"
    )
    cmd.add_argument("--data-dir", required=True, type=Path, help="folder for state.db and pki/")
    cmd.add_argument("--address", default="127.0.0.1", help="listen address (default: 127.0.0.1)")
    cmd.add_argument(
        "--port", type=int, default=6443, help="listen port, 0 for any free port (default: 6443)"
    )
    cmd.add_argument(
        "--kubeconfig",
        type=Path,
        default=None,
        help="kubeconfig to write (default: DATA_DIR/kubeconfig.yaml)",
    )
    cmd.add_argument("--no-scheduler", action="store_true", help="do not bind pending pods to nodes")


def _run_apiserver(args: argparse.Namespace) -> int:
    import trio

    from kubeedge.apiserver import server

    settings = server.Settings(
        data_dir=args.data_dir,
        address=args.address,
        port=args.port,
        kubeconfig=args.kubeconfig,
        scheduler=not args.no_scheduler,
    )
    try:
        settings.validate()
    except ValueError as exc:
        common.fail(str(exc), code=common.EXIT_USAGE)
    try:
        trio.run(server.serve, settings)
    except KeyboardInterrupt:
        return 0
    except OSError as exc:
        common.fail(f"apiserver: {exc}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cloudcore`` console script."""
    args = build_parser().parse_args(argv)
    common.setup_logging(args)
    if args.command == "apiserver":
        return _run_apiserver(args)
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
