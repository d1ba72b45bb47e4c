"""Typed, validated ``cloudcore.yaml`` and ``edgecore.yaml``: load, defaults, and (commented) dumps.

Owns reading config files (size-bounded by :data:`kubeedge.kit.limits.MAX_CONFIG_BYTES`, parsed with
``yaml.safe_load``, aliases bounded by :data:`~kubeedge.kit.limits.MAX_CONFIG_NODES`) and the public accessors::

    cfg = config.load_cloudcore(pathlib.Path("/etc/kubeedge/config/cloudcore.yaml"))
    cfg.modules.cloud_hub.node_limit            # 500
    cfg.embedded_api_server_enabled             # kubeedge-py extension, resolved
    print(config.dump_yaml(config.default_edgecore(config.HostFacts.detect())))

The models live in :mod:`.cloudcore` and :mod:`.edgecore` (every default in one place each); the engine in
:mod:`._schema`. Loading a file starts from the defaults and applies the file's keys, as upstream does.

Failure: anything wrong with the input (unreadable, too big, not UTF-8, invalid YAML, not a mapping, unknown key,
wrong type, out of range, wrong apiVersion/kind, conflicting keys) raises :class:`ConfigError` naming the key
path; no other exception escapes the loaders.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import sys
from collections.abc import Mapping
from typing import Any, Final, TypeVar

import yaml

import kubeedge
from kubeedge.kit import limits
from kubeedge.kit.config import cloudcore, edgecore
from kubeedge.kit.config._schema import (
    ConfigError,
    decode,
    describe,
    format_duration,
    parse_duration,
    select,
    to_commented_yaml,
    to_plain,
)
from kubeedge.kit.config.cloudcore import CloudCoreConfig
from kubeedge.kit.config.edgecore import EdgeCoreConfig

__all__ = [
    "DEFAULT_CLOUDCORE_PATH",
    "DEFAULT_EDGECORE_PATH",
    "CloudCoreConfig",
    "ConfigError",
    "EdgeCoreConfig",
    "HostFacts",
    "default_cloudcore",
    "default_edgecore",
    "dump_yaml",
    "format_duration",
    "load_cloudcore",
    "load_edgecore",
    "minimal_cloudcore",
    "minimal_edgecore",
    "parse_duration",
    "read_source",
]

DEFAULT_CLOUDCORE_PATH: Final = "/etc/kubeedge/config/cloudcore.yaml"
"""Where cloudcore looks for its config (upstream's path)."""
DEFAULT_EDGECORE_PATH: Final = "/etc/kubeedge/config/edgecore.yaml"
"""Where edgecore looks for its config (upstream's path)."""

Source = str | bytes | os.PathLike[str]
"""A config source: a path (``os.PathLike``; ``-`` means stdin) or the YAML itself (``str`` or ``bytes``)."""

_T = TypeVar("_T")


# --- host facts ----------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class HostFacts:
    """The host values upstream's ``--defaultconfig`` writes in: its first non-loopback IP and its hostname."""

    ip: str
    hostname: str

    @classmethod
    def detect(cls) -> HostFacts:
        """This host's facts; the IP falls back to 127.0.0.1 when the host has no other address."""
        hostname = socket.gethostname().lower()
        return cls(_first_ip(hostname), hostname)


def _first_ip(hostname: str) -> str:
    try:
        infos = socket.getaddrinfo(hostname, None, socket.AF_INET, socket.SOCK_DGRAM)
    except OSError:
        infos = []
    for info in infos:
        address = str(info[4][0])
        if not address.startswith("127."):
            return address
    # Connecting a UDP socket sends nothing; it only asks the kernel which source address the default route uses.
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))
            address = str(probe.getsockname()[0])
    except OSError:
        return "127.0.0.1"
    return address if address != "0.0.0.0" else "127.0.0.1"


def _hostport(ip: str, port: int) -> str:
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


# --- defaults ------------------------------------------------------------------------------------------------


def default_cloudcore(host: HostFacts | None = None) -> CloudCoreConfig:
    """The default cloudcore config; with ``host``, ``advertiseAddress`` is its IP as upstream writes it."""
    cfg = CloudCoreConfig()
    if host is None:
        return cfg
    hub = dataclasses.replace(cfg.modules.cloud_hub, advertise_address=(host.ip,))
    return dataclasses.replace(cfg, modules=dataclasses.replace(cfg.modules, cloud_hub=hub))


def default_edgecore(host: HostFacts | None = None) -> EdgeCoreConfig:
    """The default edgecore config; with ``host``, the cloud address and node name are filled like upstream's.

    Upstream's generator points ``edgeHub`` at the host's own IP (to be edited, or set by ``keadm join``) and sets
    ``edged.hostnameOverride`` to the hostname.
    """
    cfg = EdgeCoreConfig()
    if host is None:
        return cfg
    hub = cfg.modules.edge_hub
    hub = dataclasses.replace(
        hub,
        http_server=f"https://{_hostport(host.ip, edgecore.CLOUDHUB_HTTPS_PORT)}",
        websocket=dataclasses.replace(
            hub.websocket, server=_hostport(host.ip, edgecore.CLOUDHUB_WEBSOCKET_PORT)
        ),
        quic=dataclasses.replace(hub.quic, server=_hostport(host.ip, edgecore.CLOUDHUB_QUIC_PORT)),
    )
    edged = dataclasses.replace(cfg.modules.edged, hostname_override=host.hostname)
    return dataclasses.replace(cfg, modules=dataclasses.replace(cfg.modules, edge_hub=hub, edged=edged))


def minimal_cloudcore(host: HostFacts | None = None) -> CloudCoreConfig:
    """The config upstream's ``cloudcore --minconfig`` describes: defaults with its larger ``nodeLimit``.

    Equal to what loading ``dump_yaml(minimal_cloudcore(host), minimal=True)`` gives.

    Upstream's minimal file also says ``cloudHub.enable: false`` (an unset field in its generator) which would
    leave cloudcore without a hub; kubeedge-py writes ``true``.
    """
    cfg = default_cloudcore(host)
    hub = dataclasses.replace(cfg.modules.cloud_hub, node_limit=cloudcore.MIN_NODE_LIMIT)
    return dataclasses.replace(cfg, modules=dataclasses.replace(cfg.modules, cloud_hub=hub))


def minimal_edgecore(host: HostFacts | None = None) -> EdgeCoreConfig:
    """The config upstream's ``edgecore --minconfig`` describes: defaults without DeviceTwin and EventBus.

    Equal to what loading ``dump_yaml(minimal_edgecore(host), minimal=True)`` gives.

    Upstream's minimal file also says ``edgeHub.enable: false`` (an unset field in its generator) which would cut
    the node off the cloud; kubeedge-py writes ``true``.
    """
    cfg = default_edgecore(host)
    modules = cfg.modules
    hub = modules.edge_hub
    modules = dataclasses.replace(
        modules,
        # The minimal file has no quic section, so the host value must not linger in the model either.
        edge_hub=dataclasses.replace(
            hub, quic=dataclasses.replace(hub.quic, server=EdgeCoreConfig().modules.edge_hub.quic.server)
        ),
        device_twin=dataclasses.replace(modules.device_twin, enable=False),
        event_bus=dataclasses.replace(modules.event_bus, enable=False),
    )
    return dataclasses.replace(cfg, modules=modules)


# --- dumping -------------------------------------------------------------------------------------------------


def dump_yaml(cfg: CloudCoreConfig | EdgeCoreConfig, *, commented: bool = True, minimal: bool = False) -> str:
    """``cfg`` as YAML with upstream keys, sorted like upstream's output; loads back to an equal config.

    ``commented`` puts a short ``#`` comment above every key; ``minimal`` writes only the keys of upstream's
    ``--minconfig``.
    """
    model = cloudcore if isinstance(cfg, CloudCoreConfig) else edgecore
    only = model.MIN_PATHS if minimal else None
    if commented:
        name = "cloudcore" if model is cloudcore else "edgecore"
        what = "minimal" if minimal else "complete"
        header = [
            f"{name}.yaml ({what}) written by kubeedge-py {kubeedge.__version__}.",
            "Keys and defaults follow upstream KubeEdge; keys left out take their defaults.",
            "",
        ]
        return to_commented_yaml(cfg, header, only)
    plain = to_plain(cfg)
    if only is not None:
        plain = select(plain, only)
    return yaml.safe_dump(plain, default_flow_style=False, sort_keys=True, allow_unicode=False)


# --- loading -------------------------------------------------------------------------------------------------


def read_source(source: Source) -> tuple[bytes | str, str]:
    """The raw YAML of ``source`` and a name for messages; a path is read with the size bound.

    ``-`` (as a path) and ``/dev/stdin`` read standard input.
    """
    if isinstance(source, bytes | str):
        size = len(source.encode() if isinstance(source, str) else source)
        if size > limits.MAX_CONFIG_BYTES:
            raise ConfigError([], f"config is {size} bytes, more than the {limits.MAX_CONFIG_BYTES} allowed")
        return source, "<text>"
    name = os.fspath(source)
    try:
        if name == "-":
            data = sys.stdin.buffer.read(limits.MAX_CONFIG_BYTES + 1)
            name = "<stdin>"
        else:
            with open(name, "rb") as stream:
                data = stream.read(limits.MAX_CONFIG_BYTES + 1)
    except OSError as exc:
        raise ConfigError([], f"cannot read: {exc.strerror or exc}", source=name) from None
    if len(data) > limits.MAX_CONFIG_BYTES:
        raise ConfigError([], f"file is larger than the {limits.MAX_CONFIG_BYTES} bytes allowed", source=name)
    return data, name


def _parse(raw: bytes | str) -> Mapping[str, Any]:
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ConfigError([], f"not UTF-8 text (byte {exc.start})") from None
    try:
        document = yaml.safe_load(raw)
    except yaml.YAMLError as exc:
        detail = " ".join(str(exc).split())
        raise ConfigError([], f"invalid YAML: {detail}") from None
    except (ValueError, OverflowError) as exc:  # e.g. a date such as 2024-02-30
        raise ConfigError([], f"invalid YAML value: {exc}") from None
    except RecursionError:
        raise ConfigError([], "invalid YAML: nested too deeply") from None
    _check_size(document)
    if not isinstance(document, Mapping):
        shown = "an empty document" if document is None else describe(document)
        hint = ""
        if isinstance(document, str) and "\n" not in document and "/" in document:
            hint = " (to load a file, pass a pathlib.Path)"
        raise ConfigError([], f"top level must be a mapping, got {shown}{hint}")
    return document


def _check_size(document: object) -> None:
    """Bound the parsed tree: aliases can make a small file expand into a huge one (billion laughs)."""
    budget = limits.MAX_CONFIG_NODES
    stack: list[tuple[object, int]] = [(document, 0)]
    while stack:
        node, depth = stack.pop()
        budget -= 1
        if budget < 0:
            raise ConfigError([], f"document has more than {limits.MAX_CONFIG_NODES} values (after aliases)")
        if depth > limits.MAX_CONFIG_DEPTH:
            raise ConfigError([], f"document is nested deeper than {limits.MAX_CONFIG_DEPTH} levels")
        if isinstance(node, Mapping):
            stack.extend((child, depth + 1) for pair in node.items() for child in pair)
        elif isinstance(node, list | tuple | set | frozenset):
            stack.extend((child, depth + 1) for child in node)


def _load(cls: type[_T], source: Source) -> _T:
    raw, name = read_source(source)
    try:
        document = _parse(raw)
        cfg: _T = decode(cls, document)
        if isinstance(cfg, CloudCoreConfig):
            cloudcore.check(cfg)
        elif isinstance(cfg, EdgeCoreConfig):
            edgecore.check(cfg)
    except ConfigError as exc:
        exc.source = name if name != "<text>" else None
        raise
    return cfg


def load_cloudcore(source: Source) -> CloudCoreConfig:
    """Load and validate a ``cloudcore.yaml``: a path (``os.PathLike``, ``-`` = stdin) or its text.

    Raises :class:`ConfigError` naming the offending key path.
    """
    return _load(CloudCoreConfig, source)


def load_edgecore(source: Source) -> EdgeCoreConfig:
    """Load and validate an ``edgecore.yaml``: a path (``os.PathLike``, ``-`` = stdin) or its text.

    Raises :class:`ConfigError` naming the offending key path.
    """
    return _load(EdgeCoreConfig, source)
