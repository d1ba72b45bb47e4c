"""The typed vocabulary of beehive routes: operations, resource types, groups and module names.

Owns the upstream string values as :class:`enum.StrEnum` members, so code says
``Operation.UPDATE`` and still compares equal to (and serialises as) the plain
``"update"`` that upstream peers send. Values are exactly upstream's spelling,
including its odd casing (``applicationResponse``, ``cloudStream``,
``UpdateNodeActionStatus``).

Decoded messages keep ``route`` fields as plain ``str``: a peer may send a value
this table does not know, and that must reach the module (and its error path)
instead of failing the codec. Use :meth:`Operation.parse` and friends to get a
member or ``None``.
"""

from __future__ import annotations

import enum
from typing import Final, Self


class _Vocab(enum.StrEnum):
    """A StrEnum with a total lookup: unknown strings give ``None`` instead of raising."""

    @classmethod
    def parse(cls, value: str) -> Self | None:
        """The member whose value is ``value``, or ``None`` if upstream has no such value."""
        try:
            return cls(value)
        except ValueError:
            return None


class Operation(_Vocab):
    """``route.operation`` values."""

    # resource operations
    INSERT = "insert"
    UPDATE = "update"
    DELETE = "delete"
    QUERY = "query"
    RESPONSE = "response"
    ERROR = "error"
    PATCH = "patch"
    UPLOAD = "upload"
    KEEPALIVE = "keepalive"
    UNHOLD_UPGRADE = "unhold-upgrade"
    GET = "get"
    # eventbus / servicebus
    SUBSCRIBE = "subscribe"
    UNSUBSCRIBE = "unsubscribe"
    MESSAGE = "message"
    PUBLISH = "publish"
    GET_RESULT = "get_result"
    START = "start"
    STOP = "stop"
    # edge-local link state
    CONNECT = "connect"
    # cloud-internal
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    APPLICATION_RESPONSE = "applicationResponse"
    # node tasks
    PREPULL = "prepull"
    UPGRADE = "upgrade"
    UPDATE_NODE_ACTION_STATUS = "UpdateNodeActionStatus"
    # CSI (cloud to edge, answered by the edge)
    CREATE_VOLUME = "createvolume"
    DELETE_VOLUME = "deletevolume"
    CONTROLLER_PUBLISH_VOLUME = "controllerpublishvolume"
    CONTROLLER_UNPUBLISH_VOLUME = "controllerunpublishvolume"
    # answered by viaduct itself
    CONFIG = "config"
    PING = "ping"
    PONG = "pong"


CSI_OPERATIONS: Final = frozenset(
    {
        Operation.CREATE_VOLUME,
        Operation.DELETE_VOLUME,
        Operation.CONTROLLER_PUBLISH_VOLUME,
        Operation.CONTROLLER_UNPUBLISH_VOLUME,
    }
)
"""Volume operations CloudHub sends without waiting for an ack."""

TASK_OPERATIONS: Final = frozenset(
    {Operation.PREPULL, Operation.UPGRADE, Operation.UPDATE_NODE_ACTION_STATUS}
)
"""Node task operations (image pre-pull, upgrade, their status)."""


class ResourceType(_Vocab):
    """The ``<type>`` token of a ``<namespace>/<type>[/<name>]`` resource."""

    POD = "pod"
    EVENT = "event"
    CONFIGMAP = "configmap"
    SECRET = "secret"
    SERVICE_ACCOUNT_TOKEN = "serviceaccounttoken"
    NODE = "node"
    POD_LIST = "podlist"
    POD_STATUS = "podstatus"
    POD_PATCH = "podpatch"
    NODE_STATUS = "nodestatus"
    NODE_PATCH = "nodepatch"
    LEASE = "lease"
    CERTIFICATE_SIGNING_REQUEST = "certificatesigningrequest"
    PERSISTENT_VOLUME = "persistentvolume"
    PERSISTENT_VOLUME_CLAIM = "persistentvolumeclaim"
    VOLUME_ATTACHMENT = "volumeattachment"
    DEVICE = "device"
    DEVICE_MODEL = "devicemodel"
    RULE = "rule"
    RULE_ENDPOINT = "ruleendpoint"
    RULE_STATUS = "rulestatus"
    SERVICE = "service"
    ENDPOINTS = "endpoints"


class Group(_Vocab):
    """``route.group`` values that cross the cloud-edge link."""

    RESOURCE = "resource"
    TWIN = "twin"
    USER = "user"
    META = "meta"
    FUNC = "func"
    TASK_MANAGER = "taskmanager"
    HUB = "hub"


class EdgeModule(_Vocab):
    """Module names of edgecore (also used as ``route.source`` by edge modules)."""

    EDGED = "edged"
    EDGEHUB = "websocket"
    """EdgeHub registers under upstream's historical name ``websocket``."""
    METAMANAGER = "metamanager"
    TWIN = "twin"
    EVENTBUS = "eventbus"
    SERVICEBUS = "servicebus"
    EDGESTREAM = "edgestream"
    TASK_MANAGER = "taskmanager"


class EdgeGroup(_Vocab):
    """Module groups of edgecore (beehive fans ``SendToGroup`` out to all members)."""

    EDGED = "edged"
    HUB = "hub"
    META = "meta"
    TWIN = "twin"
    BUS = "bus"
    """eventbus and servicebus."""
    EDGESTREAM = "edgestream"
    TASK_MANAGER = "taskmanager"


class CloudModule(_Vocab):
    """Module names of cloudcore (also used as ``route.source`` by cloud modules)."""

    CLOUDHUB = "cloudhub"
    EDGECONTROLLER = "edgecontroller"
    DEVICECONTROLLER = "devicecontroller"
    SYNCCONTROLLER = "synccontroller"
    DYNAMICCONTROLLER = "dynamiccontroller"
    CLOUDSTREAM = "cloudStream"
    ROUTER = "router"
    POLICYCONTROLLER = "policycontroller"
    TASK_MANAGER = "taskmanager"


class CloudGroup(_Vocab):
    """Module groups of cloudcore: each cloud module is alone in a group of its own name."""

    CLOUDHUB = "cloudhub"
    EDGECONTROLLER = "edgecontroller"
    DEVICECONTROLLER = "devicecontroller"
    SYNCCONTROLLER = "synccontroller"
    DYNAMICCONTROLLER = "dynamiccontroller"
    CLOUDSTREAM = "cloudStream"
    ROUTER = "router"
    POLICYCONTROLLER = "policycontroller"
    TASK_MANAGER = "taskmanager"


class Source(_Vocab):
    """``route.source`` values that are not a module name."""

    EDGEHUB = "edgehub"
    """Source of the edge-local connect broadcast (not the module name ``websocket``)."""
    METASERVER = "metaserver"
    """Edge MetaServer requests; CloudHub hands them to DynamicController."""


# --- edge-local link state broadcast ----------------------------------------------------------------
CONNECT_SOURCE: Final = Source.EDGEHUB
CONNECT_RESOURCE: Final = "node/connection"
CONNECT_OPERATION: Final = Operation.CONNECT
CLOUD_CONNECTED: Final = "cloud_connected"
"""Content of the connect broadcast after a session to the cloud is up."""
CLOUD_DISCONNECTED: Final = "cloud_disconnected"
"""Content of the connect broadcast after the session to the cloud is lost."""
CONNECT_GROUPS: Final = (EdgeGroup.TWIN, EdgeGroup.META, EdgeGroup.BUS, EdgeGroup.TASK_MANAGER)
"""Edge groups EdgeHub tells about link state changes."""

# --- keepalive -----------------------------------------------------------------------------------
KEEPALIVE_SOURCE: Final = EdgeModule.EDGEHUB
KEEPALIVE_RESOURCE: Final = "node"
KEEPALIVE_CONTENT: Final = "ping"
"""The edge's heartbeat: source ``websocket``, group ``resource``, resource ``node``, op ``keepalive``."""

ACK_CONTENT: Final = "OK"
"""Content of beehive acks (``response`` to a cloud message)."""
