"""The beehive message: one struct for in-process module traffic and the cloud-edge wire.

Owns :class:`Header`, :class:`Route` and :class:`Message`, all frozen. A message
is never mutated: derive a new one with :func:`dataclasses.replace` or the
helpers here. Correlation is only through ``parent_msg_id``; ``sync`` is an
in-process flag and is forced false when a message is written to a socket.

Sans-io: ids and timestamps come from the caller (``new_id``/``now_ms``
arguments) or from :func:`make_id`, never from a hidden clock.
"""

from __future__ import annotations

import dataclasses
import uuid
from dataclasses import dataclass
from typing import Any


def make_id() -> str:
    """A fresh message id (uuid4 text, as upstream)."""
    return str(uuid.uuid4())


@dataclass(frozen=True, slots=True)
class Header:
    """Message header: identity, correlation and the object's resourceVersion."""

    msg_id: str
    """uuid4 of this message (``msg_id`` on the wire, always present)."""
    timestamp: int
    """Unix milliseconds when the message was made (always present)."""
    parent_msg_id: str = ""
    """Id of the request this message answers (``parent_msg_id``, omitted when empty)."""
    resource_version: str = ""
    """resourceVersion of the carried object (``resourceversion``, omitted when empty)."""
    sync: bool = False
    """In-process: the sender waits for a reply. Always false on the wire."""
    message_type: str = ""
    """Upstream's optional ``type`` field (omitted when empty)."""


@dataclass(frozen=True, slots=True)
class Route:
    """Where a message comes from, which module group it goes to, what it does to which resource."""

    source: str = ""
    group: str = ""
    operation: str = ""
    resource: str = ""
    destination: str = ""


@dataclass(frozen=True, slots=True)
class Message:
    """Header, route and JSON content (any JSON value; ``None`` is ``null`` on the wire)."""

    header: Header
    route: Route
    content: Any = None

    @classmethod
    def new(
        cls,
        *,
        source: str,
        group: str,
        operation: str,
        resource: str,
        content: Any = None,
        now_ms: int,
        resource_version: str = "",
        msg_id: str | None = None,
        parent_msg_id: str = "",
    ) -> Message:
        """Build a new message with a fresh id (unless ``msg_id`` is given)."""
        return cls(
            Header(
                msg_id=msg_id or make_id(),
                timestamp=now_ms,
                parent_msg_id=parent_msg_id,
                resource_version=resource_version,
            ),
            Route(source=source, group=group, operation=operation, resource=resource),
            content,
        )

    @property
    def msg_id(self) -> str:
        """Shortcut for ``header.msg_id``."""
        return self.header.msg_id

    @property
    def parent_msg_id(self) -> str:
        """Shortcut for ``header.parent_msg_id``."""
        return self.header.parent_msg_id

    def with_sync(self, sync: bool) -> Message:
        """A copy with ``header.sync`` set."""
        return dataclasses.replace(self, header=dataclasses.replace(self.header, sync=sync))

    def reply(self, content: Any, *, now_ms: int, operation: str = "response") -> Message:
        """Beehive's ``NewRespByMessage``: new id, parent = this id, source/group/resource/type copied, op ``response``."""
        return Message(
            Header(
                msg_id=make_id(),
                timestamp=now_ms,
                parent_msg_id=self.header.msg_id,
                message_type=self.header.message_type,
            ),
            Route(
                source=self.route.source,
                group=self.route.group,
                operation=operation,
                resource=self.route.resource,
            ),
            content,
        )
