"""The ``$hw/events/...`` MQTT topics DeviceTwin answers and publishes, parsed into :class:`Topic`.

Owns the topic spelling (device id ``<namespace>/<name>`` since upstream v1.16) and the mapping from
what EventBus hands over (a raw topic, or upstream's URL-safe base64 of it) back to a topic.
Sans-io. A topic that is not one of DeviceTwin's yields ``None``; nothing here raises on bad input
except :func:`decode_resource`, which raises ``ValueError`` naming the resource.
"""

from __future__ import annotations

import base64
import binascii
import enum
from dataclasses import dataclass
from typing import Final

PREFIX: Final = "$hw/events"
DEVICE_PREFIX: Final = f"{PREFIX}/device"
NODE_PREFIX: Final = f"{PREFIX}/node"


class Kind(enum.StrEnum):
    """Requests a mapper (or app) sends to DeviceTwin."""

    TWIN_UPDATE = "twin/update"
    TWIN_GET = "twin/get"
    STATE_UPDATE = "state/update"
    MEMBERSHIP_GET = "membership/get"


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed request topic: what, and for which device (``namespace``/``name``) or node."""

    kind: Kind
    namespace: str = ""
    name: str = ""
    node: str = ""

    @property
    def device_id(self) -> str:
        """``<namespace>/<name>``."""
        return f"{self.namespace}/{self.name}"


def parse(topic: str) -> Topic | None:
    """The request named by ``topic``, or ``None`` for any other topic (results, deltas, foreign topics)."""
    parts = topic.split("/")
    if len(parts) < 5 or parts[0] != "$hw" or parts[1] != "events" or any(not p for p in parts):
        return None
    if parts[2] == "device" and len(parts) in {6, 7}:
        rest = "/".join(parts[5:])
        try:
            kind = Kind(rest)
        except ValueError:
            return None
        if kind is Kind.MEMBERSHIP_GET:
            return None
        return Topic(kind, namespace=parts[3], name=parts[4])
    if parts[2] == "node" and len(parts) == 6 and "/".join(parts[4:]) == Kind.MEMBERSHIP_GET:
        return Topic(Kind.MEMBERSHIP_GET, node=parts[3])
    return None


def device_topic(device_id: str, suffix: str) -> str:
    """``$hw/events/device/<ns>/<name>/<suffix>``."""
    return f"{DEVICE_PREFIX}/{device_id}/{suffix}"


def node_topic(node: str, suffix: str) -> str:
    """``$hw/events/node/<node>/<suffix>``."""
    return f"{NODE_PREFIX}/{node}/{suffix}"


def decode_resource(resource: str) -> str:
    """The MQTT topic EventBus put in ``route.resource``: raw (``$hw/...``) or URL-safe base64 of it."""
    if resource.startswith("$hw/"):
        return resource
    try:
        padded = resource + "=" * (-len(resource) % 4)
        topic = base64.urlsafe_b64decode(padded.encode("ascii")).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        raise ValueError(f"resource {resource[:80]!r}: neither an MQTT topic nor base64 of one") from None
    if not topic.startswith("$hw/"):
        raise ValueError(f"resource {resource[:80]!r}: decodes to {topic[:80]!r}, not a $hw/ topic")
    return topic
