"""``keadm``: join an edge node, reset it, and print the cloud's join token.

- ``keadm join --cloudcore-ipport HOST:PORT --token T --edgenode-name N``: see :mod:`kubeedge.cli.join`.
- ``keadm reset``: removes exactly the files ``join`` wrote (asks on a terminal, else needs ``--force``).
- ``keadm gettoken``: prints the token cloudcore keeps in its token file; with ``--ca-dir`` and no token
  file it computes a fresh token from the CA key in that directory (valid 2 x ``--refresh-hours``) without
  writing anything.

Progress goes to stderr, results to stdout. Exit codes as in :mod:`kubeedge.cli.common`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from kubeedge.cli import common, join
from kubeedge.kit import certclient, jointoken, pki

PROG = "keadm"


def build_parser() -> argparse.ArgumentParser:
    """The ``keadm`` argument parser."""
    parser = common.new_parser(PROG, "KubeEdge installation tool: join edge nodes to a cloudcore.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("version", help="print the version")

    p = sub.add_parser("join", help="join this edge node to a cloudcore (certificates + edgecore.yaml)")
    p.add_argument(
        "--cloudcore-ipport", required=True, metavar="HOST:PORT", help="cloudcore websocket address"
    )
    p.add_argument("--token", required=True, help="join token printed by `keadm gettoken` on the cloud")
    p.add_argument("--edgenode-name", required=True, metavar="NAME", help="this node's name")
    p.add_argument(
        "--certport",
        type=int,
        default=join.DEFAULT_CERT_PORT,
        help="cloudcore certificate service port (10002)",
    )
    p.add_argument("--labels", default=None, metavar="K=V,...", help="node labels, comma separated")
    p.add_argument(
        "--config-dir",
        type=Path,
        default=join.DEFAULT_CONFIG_DIR,
        help="where to write (default /etc/kubeedge)",
    )
    p.add_argument("--db-path", type=Path, default=join.DEFAULT_DB_PATH, help="edgecore SQLite database path")
    p.add_argument(
        "--timeout", type=float, default=certclient.DEFAULT_TIMEOUT, help="seconds per HTTP request"
    )
    p.add_argument("--force", action="store_true", help="overwrite an existing join")

    r = sub.add_parser("reset", help="remove the files `keadm join` wrote")
    r.add_argument("--config-dir", type=Path, default=join.DEFAULT_CONFIG_DIR)
    r.add_argument("--force", action="store_true", help="do not ask for confirmation")

    g = sub.add_parser("gettoken", help="print the current join token")
    g.add_argument(
        "--token-file",
        type=Path,
        default=jointoken.DEFAULT_TOKEN_FILE,
        help=f"token file cloudcore maintains (default {jointoken.DEFAULT_TOKEN_FILE})",
    )
    g.add_argument(
        "--ca-dir",
        type=Path,
        default=None,
        help="if the token file is missing, compute a token from DIR/rootCA.crt and DIR/rootCA.key",
    )
    g.add_argument("--refresh-hours", type=float, default=12.0, help="tokenRefreshDuration for --ca-dir (12)")
    return parser


def _progress(line: str) -> None:
    print(f"keadm: {line}", file=sys.stderr, flush=True)


def _join(args: argparse.Namespace) -> int:
    try:
        labels = join.parse_labels(args.labels)
        paths = join.join(
            cloudcore=args.cloudcore_ipport,
            token=args.token,
            node_name=args.edgenode_name,
            cert_port=args.certport,
            labels=labels,
            config_dir=args.config_dir,
            db_path=args.db_path,
            force=args.force,
            timeout=args.timeout,
            progress=_progress,
        )
    except join.JoinError as exc:
        common.fail(str(exc))
    except OSError as exc:
        common.fail(f"cannot write the join files: {exc}")
    print(f"node {args.edgenode_name} joined; edgecore config: {paths.config}")
    return 0


def _reset(args: argparse.Namespace) -> int:
    paths = join.JoinPaths(args.config_dir)
    present = [p for p in paths.files() if p.exists()]
    if not present:
        print(f"nothing to reset under {args.config_dir}")
        return 0
    if not args.force:
        if not sys.stdin.isatty():
            common.fail(
                f"refusing to remove {len(present)} files under {args.config_dir} without --force", code=2
            )
        answer = input(f"remove {', '.join(map(str, present))}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            common.fail("reset aborted")
    for path in join.reset(args.config_dir):
        print(f"removed {path}")
    return 0


def _gettoken(args: argparse.Namespace) -> int:
    try:
        if args.token_file.exists() or args.ca_dir is None:
            token = jointoken.read_token_file(args.token_file)
        else:
            if args.refresh_hours <= 0:
                common.fail("--refresh-hours must be positive", code=common.EXIT_USAGE)
            ca = pki.load_ca(args.ca_dir / "rootCA.crt", args.ca_dir / "rootCA.key")
            token = jointoken.make(
                ca.key_der, ca.cert_der, now=time.time(), refresh=dt.timedelta(hours=args.refresh_hours)
            )
    except FileNotFoundError as exc:
        common.fail(f"{exc.filename}: not found (is cloudcore running here? or pass --ca-dir)")
    except (OSError, pki.PKIError, jointoken.TokenError) as exc:
        common.fail(str(exc))
    print(token)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``keadm`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    common.setup_logging(args)
    if args.command == "version":
        print(common.version_text(PROG))
        return 0
    if args.command == "join":
        return _join(args)
    if args.command == "reset":
        return _reset(args)
    if args.command == "gettoken":
        return _gettoken(args)
    parser.print_help()
    return common.EXIT_USAGE
