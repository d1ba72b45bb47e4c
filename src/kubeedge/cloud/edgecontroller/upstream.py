"""Requests from edge nodes: who may touch what, and how each is applied to Kubernetes.

Owns :func:`authorize` (sans-io: a node may only read and write its own Node and
Lease, the pods bound to it, the configmaps/secrets/service accounts those pods
use, and events about them) and :class:`Upstream`, which applies an authorized
request through :class:`~kubeedge.cloud.kubeapi.KubeAPI` and builds the reply
in upstream's shapes: ObjectResp ``{"Object","Err"}`` for node/lease/podpatch/
nodepatch/events, the bare object (or ``{"ErrStatus": Status}``) for
configmap/secret/token queries, ``"OK"`` for legacy status updates and pod
deletes, the CA bundle string for ``k8s/ca.crt``.

Failures: a refused request gets op ``error`` with a message naming the node and
resource (and is logged); a malformed one gets op ``error`` naming what is
wrong; Kubernetes errors travel back in the reply, never raise out.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Final

from kubeedge.cloud import kubeapi
from kubeedge.cloud.edgecontroller.locations import Locations, Ref, RefKind
from kubeedge.kit import limits, log
from kubeedge.proto import resource as resources
from kubeedge.proto.message import Message
from kubeedge.proto.resource import ResourceKey, Shape
from kubeedge.proto.vocab import Operation, ResourceType

_log = log.get(__name__)

EDGE_LABEL: Final = "node-role.kubernetes.io/edge"
CLOUDCORE_ANNOTATION: Final = "cloudcore"
OK: Final = "OK"


class Refused(Exception):
    """The node may not do this; the message says what and why."""


class BadRequest(Exception):
    """The request is malformed; the message names what is wrong."""


@dataclass(frozen=True, slots=True)
class Reply:
    """What to send back: op ``response`` or ``error``, content, and the resource (internal spelling)."""

    operation: str
    content: Any
    resource: str


@dataclass(frozen=True, slots=True)
class Effects:
    """Downstream work a request causes (pods to delete at the edge: unknown pod in a status report)."""

    delete_pods: tuple[dict[str, Any], ...] = ()


def authorize(node: str, key: ResourceKey, op: str, locations: Locations, content: Any = None) -> None:
    """Raise :class:`Refused` unless ``node`` may do ``op`` on ``key``."""
    if key.shape is Shape.CA_CERT:
        return
    if key.shape is not Shape.OBJECT:
        raise Refused(f"node {node!r} may not {op} {key.wire!r}: not an object resource")
    rtype, ns, name = key.type, key.namespace, key.name
    if rtype in (ResourceType.NODE, ResourceType.NODE_PATCH, ResourceType.NODE_STATUS):
        if name != node:
            raise Refused(f"node {node!r} may not {op} node {name!r}")
        return
    if rtype == ResourceType.LEASE:
        if ns != resources.LEASE_NAMESPACE or name != node:
            raise Refused(f"node {node!r} may only use its own lease, not {ns}/{name}")
        return
    if rtype in (ResourceType.POD, ResourceType.POD_PATCH, ResourceType.POD_STATUS):
        if rtype == ResourceType.POD and op == Operation.INSERT:
            bound = ((content or {}).get("spec") or {}).get("nodeName") if isinstance(content, dict) else None
            if bound != node:
                raise Refused(f"node {node!r} may only create mirror pods bound to itself, not to {bound!r}")
            return
        if not name or rtype == ResourceType.POD_STATUS:
            return  # legacy status: each entry is checked by the handler (unknown pods are deleted at the edge)
        if not locations.node_has_pod(node, ns, name):
            raise Refused(f"node {node!r} may not {op} pod {ns}/{name}: it is not bound to that node")
        return
    if rtype in (ResourceType.CONFIGMAP, ResourceType.SECRET):
        if op != Operation.QUERY:
            raise Refused(f"node {node!r} may only query {rtype}s")
        if not locations.node_uses(node, Ref(RefKind(rtype), ns, name)):
            raise Refused(f"node {node!r} may not read {rtype} {ns}/{name}: no pod on that node uses it")
        return
    if rtype == ResourceType.SERVICE_ACCOUNT_TOKEN:
        if not locations.node_uses_service_account(node, ns, name):
            raise Refused(
                f"node {node!r} may not get a token for {ns}/{name}: no pod on that node runs as it"
            )
        return
    if rtype == ResourceType.EVENT:
        event = content.get("event") if isinstance(content, dict) and "event" in content else content
        involved = (event or {}).get("involvedObject") if isinstance(event, dict) else None
        if op == Operation.PATCH and involved is None:
            return  # a patch names only the event; the API server keeps the original involvedObject
        if not isinstance(involved, dict):
            raise Refused(f"node {node!r}: event {ns}/{name} has no involvedObject")
        if involved.get("kind") == "Node" and involved.get("name") == node:
            return
        if involved.get("kind") == "Pod" and locations.node_has_pod(node, involved.get("namespace", ns),
                                                                       involved.get("name", "")):  # fmt: skip
            return
        raise Refused(
            f"node {node!r} may not report events about {involved.get('kind')} {involved.get('name')}"
        )
    raise Refused(f"node {node!r} may not {op} {rtype}: not served")


def object_resp(obj: Any = None, err: kubeapi.KubeError | None = None) -> dict[str, Any]:
    """Upstream's ObjectResp (untagged Go fields)."""
    return {"Object": obj, "Err": err.status_object() if err is not None else None}


def err_status(err: kubeapi.KubeError) -> dict[str, Any]:
    """A Kubernetes error as upstream marshals a StatusError."""
    return {"ErrStatus": err.status_object()}


def strip_kube_labels(labels: dict[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    """Split labels into (kept, held back): keys under ``*kubernetes.io/`` are held back at create time."""
    kept: dict[str, str] = {}
    held: dict[str, str] = {}
    for key, value in labels.items():
        prefix = key.split("/", 1)[0] if "/" in key else ""
        (held if prefix == "kubernetes.io" or prefix.endswith(".kubernetes.io") else kept)[key] = value
    return kept, held


def _text(content: Any, what: str) -> str:
    if isinstance(content, bytes | bytearray):
        content = content.decode("utf-8", "replace")
    if not isinstance(content, str):
        raise BadRequest(f"{what}: content must be a patch string")
    if len(content) > limits.KUBE_MAX_BODY:
        raise BadRequest(f"{what}: patch too large")
    try:
        json.loads(content)
    except ValueError as exc:
        raise BadRequest(f"{what}: patch is not JSON ({exc})") from None
    return content


def _dict(content: Any, what: str) -> dict[str, Any]:
    if not isinstance(content, dict):
        raise BadRequest(f"{what}: content must be a JSON object")
    return content


def _field(obj: dict[str, Any], name: str) -> Any:
    """Untagged Go fields: accept ``UID``/``uid``/``Uid`` alike."""
    for key, value in obj.items():
        if key.lower() == name.lower():
            return value
    return None


class Upstream:
    """Applies authorized edge requests to Kubernetes."""

    def __init__(
        self,
        api: kubeapi.KubeAPI,
        locations: Locations,
        *,
        lookup: Callable[[kubeapi.Kind, str, str], dict[str, Any] | None],
        cloudcore_id: str,
        now: Callable[[], dt.datetime],
    ) -> None:
        self.api = api
        self.locations = locations
        self.lookup = lookup
        self.cloudcore_id = cloudcore_id
        self.now = now
        self._ca: str | None = None

    async def handle(self, node: str, key: ResourceKey, msg: Message) -> tuple[Reply | None, Effects]:
        """Authorize and apply one request; returns the reply (None: nothing to answer) and effects."""
        op = msg.route.operation
        internal = msg.route.resource
        try:
            authorize(node, key, op, self.locations, msg.content)
            return await self._apply(node, key, op, msg.content, internal)
        except Refused as exc:
            _log.warning("edge request refused", node=node, operation=op, resource=key.wire, reason=str(exc))
            return Reply(Operation.ERROR, str(exc), internal), Effects()
        except BadRequest as exc:
            _log.warning("bad edge request", node=node, operation=op, resource=key.wire, reason=str(exc))
            return Reply(Operation.ERROR, str(exc), internal), Effects()

    async def _apply(
        self, node: str, key: ResourceKey, op: str, content: Any, internal: str
    ) -> tuple[Reply | None, Effects]:
        if key.shape is Shape.CA_CERT:
            return Reply(Operation.RESPONSE, self._ca_cert(), internal), Effects()
        handler = _HANDLERS.get((key.type, op))
        if handler is None:
            raise BadRequest(f"operation {op!r} on {key.type!r} is not supported")
        return await handler(self, node, key, content, internal)

    def _ca_cert(self) -> str:
        if self._ca is None:
            self._ca = self.api.ca_cert()
        return self._ca

    async def _guard(self, call: Awaitable[Any]) -> tuple[Any, kubeapi.KubeError | None]:
        try:
            return await call, None
        except kubeapi.KubeError as exc:
            return None, exc

    # --- nodes ---------------------------------------------------------------------------------------

    async def node_insert(
        self, node: str, key: ResourceKey, content: Any, internal: str
    ) -> tuple[Reply, Effects]:
        """Register: create the Node without ``*kubernetes.io/`` labels, then merge them back (as upstream)."""
        obj = dict(_dict(content, "node registration"))
        meta = dict(obj.get("metadata") or {})
        if meta.get("name", node) != node:
            raise Refused(f"node {node!r} may not register node {meta.get('name')!r}")
        meta["name"] = node
        kept, held = strip_kube_labels(dict(meta.get("labels") or {}))
        meta["labels"] = kept
        meta["annotations"] = {**(meta.get("annotations") or {}), CLOUDCORE_ANNOTATION: self.cloudcore_id}
        for drop in ("resourceVersion", "uid", "creationTimestamp"):
            meta.pop(drop, None)
        obj.update(metadata=meta, apiVersion="v1", kind="Node")
        created, err = await self._guard(self.api.create(kubeapi.NODES, "", obj))
        if err is not None and not err.conflict:
            return Reply(Operation.RESPONSE, object_resp(err=err), internal), Effects()
        patch = {"metadata": {"labels": held, "annotations": {CLOUDCORE_ANNOTATION: self.cloudcore_id}}}
        if err is not None:
            patch["metadata"]["labels"] = {**kept, **held}
        result, err = await self._guard(
            self.api.patch(kubeapi.NODES, "", node, patch, content_type=kubeapi.MERGE_PATCH)
        )
        return Reply(Operation.RESPONSE, object_resp(result or created, err), internal), Effects()

    async def node_update(
        self, node: str, key: ResourceKey, content: Any, internal: str
    ) -> tuple[Reply, Effects]:
        """Labels and annotations merged into the Node."""
        meta = _dict(content, "node update").get("metadata") or {}
        patch = {
            "metadata": {"labels": meta.get("labels") or {}, "annotations": meta.get("annotations") or {}}
        }
        _, err = await self._guard(
            self.api.patch(kubeapi.NODES, "", node, patch, content_type=kubeapi.MERGE_PATCH)
        )
        return Reply(Operation.RESPONSE, OK if err is None else err_status(err), internal), Effects()

    async def node_query(
        self, node: str, key: ResourceKey, content: Any, internal: str
    ) -> tuple[Reply, Effects]:
        """The Node, as ObjectResp."""
        obj, err = await self._guard(self.api.get(kubeapi.NODES, "", node))
        return Reply(Operation.RESPONSE, object_resp(obj, err), internal), Effects()

    async def nodepatch(
        self, node: str, key: ResourceKey, content: Any, internal: str
    ) -> tuple[Reply, Effects]:
        """Strategic merge patch of nodes/<node>/status."""
        body = _text(content, "nodepatch")
        obj, err = await self._guard(self.api.patch(
            kubeapi.NODES, "", node, body, content_type=kubeapi.STRATEGIC_PATCH, subresource="status"))  # fmt: skip
        return Reply(Operation.RESPONSE, object_resp(obj, err), internal), Effects()

    async def nodestatus(
        self, node: str, key: ResourceKey, content: Any, internal: str
    ) -> tuple[Reply, Effects]:
        """Legacy ``{"UID","Status","ExtendResources"}``: replace the status; answered "OK" on the node resource."""
        body = _dict(content, "nodestatus")
        status = _field(body, "Status")
        if not isinstance(status, dict):
            raise BadRequest("nodestatus: Status must be an object")
        stamp = _now_text(self.now())
        for cond in status.get("conditions") or []:
            if isinstance(cond, dict) and not cond.get("lastHeartbeatTime"):
                cond["lastHeartbeatTime"] = stamp
        _, err = await self._guard(self.api.patch(kubeapi.NODES, "", node, {"status": status},
                                                  content_type=kubeapi.STRATEGIC_PATCH, subresource="status"))  # fmt: skip
        reply_resource = resources.ResourceKey.object(
            key.namespace, ResourceType.NODE, node, node=node
        ).internal
        return Reply(Operation.RESPONSE, OK if err is None else err_status(err), reply_resource), Effects()

    # --- pods ----------------------------------------------------------------------------------------

    async def podpatch(
        self, node: str, key: ResourceKey, content: Any, internal: str
    ) -> tuple[Reply, Effects]:
        """Strategic merge patch of pods/<name>/status."""
        body = _text(content, "podpatch")
        obj, err = await self._guard(self.api.patch(kubeapi.PODS, key.namespace, key.name, body,
                                                    content_type=kubeapi.STRATEGIC_PATCH, subresource="status"))  # fmt: skip
        return Reply(Operation.RESPONSE, object_resp(obj, err), internal), Effects()

    async def podstatus(
        self, node: str, key: ResourceKey, content: Any, internal: str
    ) -> tuple[Reply, Effects]:
        """Legacy ``{"UID","Name","Status"}`` (or a list of them): unknown pods are deleted at the edge."""
        entries = content if isinstance(content, list) else [_dict(content, "podstatus")]
        deletes: list[dict[str, Any]] = []
        for entry in entries[: limits.CONTROLLER_MAX_QUERY_WORKERS * 4]:
            if not isinstance(entry, dict):
                raise BadRequest("podstatus: entries must be objects")
            name, uid, status = (
                _field(entry, "Name") or key.name,
                _field(entry, "UID"),
                _field(entry, "Status"),
            )
            if not isinstance(name, str) or not isinstance(status, dict):
                raise BadRequest("podstatus: Name and Status are required")
            current = self.lookup(kubeapi.PODS, key.namespace, name)
            if current is None or (uid and current["metadata"].get("uid") != uid):
                stub = {"apiVersion": "v1", "kind": "Pod",
                        "metadata": {"namespace": key.namespace, "name": name, "uid": uid or ""}}  # fmt: skip
                deletes.append(stub)
                continue
            if not self.locations.node_has_pod(node, key.namespace, name):
                raise Refused(f"node {node!r} may not update pod {key.namespace}/{name}: not bound to it")
            status = _keep_times(current.get("status") or {}, status)
            _, err = await self._guard(self.api.patch(kubeapi.PODS, key.namespace, name, {"status": status},
                                                      content_type=kubeapi.MERGE_PATCH, subresource="status"))  # fmt: skip
            if err is not None and not err.not_found:
                return Reply(Operation.RESPONSE, err_status(err), internal), Effects(tuple(deletes))
        return Reply(Operation.RESPONSE, OK, internal), Effects(tuple(deletes))

    async def pod_delete(
        self, node: str, key: ResourceKey, content: Any, internal: str
    ) -> tuple[Reply, Effects]:
        """The edge confirms a pod is gone: delete it with the DeleteOptions it sent."""
        options = content if isinstance(content, dict) else None
        _, err = await self._guard(self.api.delete(kubeapi.PODS, key.namespace, key.name, options))
        if err is not None and not err.not_found:
            return Reply(Operation.ERROR, err.message, internal), Effects()
        return Reply(Operation.RESPONSE, OK, internal), Effects()

    async def pod_insert(
        self, node: str, key: ResourceKey, content: Any, internal: str
    ) -> tuple[Reply, Effects]:
        """A mirror pod bound to the node itself."""
        obj, err = await self._guard(self.api.create(kubeapi.PODS, key.namespace, _dict(content, "pod")))
        return Reply(Operation.RESPONSE, object_resp(obj, err), internal), Effects()

    # --- leases, events --------------------------------------------------------------------------------

    async def lease_write(
        self, node: str, key: ResourceKey, content: Any, internal: str
    ) -> tuple[Reply, Effects]:
        """Create or update the node's lease in kube-node-lease."""
        obj = dict(_dict(content, "lease"))
        obj.update(apiVersion="coordination.k8s.io/v1", kind="Lease")
        obj["metadata"] = {
            **(obj.get("metadata") or {}),
            "name": node,
            "namespace": resources.LEASE_NAMESPACE,
        }
        result, err = await self._guard(self.api.update(kubeapi.LEASES, resources.LEASE_NAMESPACE, node, obj))
        if err is not None and err.not_found:
            obj["metadata"].pop("resourceVersion", None)
            result, err = await self._guard(self.api.create(kubeapi.LEASES, resources.LEASE_NAMESPACE, obj))
        return Reply(Operation.RESPONSE, object_resp(result, err), internal), Effects()

    async def lease_query(
        self, node: str, key: ResourceKey, content: Any, internal: str
    ) -> tuple[Reply, Effects]:
        """The node's lease."""
        obj, err = await self._guard(self.api.get(kubeapi.LEASES, resources.LEASE_NAMESPACE, node))
        return Reply(Operation.RESPONSE, object_resp(obj, err), internal), Effects()

    async def event_write(
        self, node: str, key: ResourceKey, content: Any, internal: str
    ) -> tuple[Reply, Effects]:
        """Create (insert) or replace (update) an event."""
        obj = dict(_dict(content, "event"))
        obj.update(apiVersion="v1", kind="Event")
        obj["metadata"] = {**(obj.get("metadata") or {}), "namespace": key.namespace}
        result, err = await self._guard(self.api.create(kubeapi.EVENTS, key.namespace, obj))
        if err is not None and err.conflict:
            result, err = await self._guard(self.api.update(kubeapi.EVENTS, key.namespace, key.name, obj))
        return Reply(Operation.RESPONSE, object_resp(result, err), internal), Effects()

    async def event_patch(
        self, node: str, key: ResourceKey, content: Any, internal: str
    ) -> tuple[Reply, Effects]:
        """``{"event","patchData"}``: strategic merge patch of the event."""
        body = _dict(content, "event patch")
        patch = _text(body.get("patchData"), "event patchData")
        result, err = await self._guard(self.api.patch(kubeapi.EVENTS, key.namespace, key.name, patch,
                                                       content_type=kubeapi.STRATEGIC_PATCH))  # fmt: skip
        return Reply(Operation.RESPONSE, object_resp(result, err), internal), Effects()

    # --- queries -------------------------------------------------------------------------------------

    async def object_query(
        self, node: str, key: ResourceKey, content: Any, internal: str
    ) -> tuple[Reply, Effects]:
        """A configmap or secret the node's pods use: the object, or a NotFound StatusError."""
        kind = kubeapi.CONFIGMAPS if key.type == ResourceType.CONFIGMAP else kubeapi.SECRETS
        obj = self.lookup(kind, key.namespace, key.name)
        if obj is None:
            obj, err = await self._guard(self.api.get(kind, key.namespace, key.name))
            if err is not None:
                return Reply(Operation.RESPONSE, err_status(err), internal), Effects()
        return Reply(Operation.RESPONSE, obj, internal), Effects()

    async def token_query(
        self, node: str, key: ResourceKey, content: Any, internal: str
    ) -> tuple[Reply, Effects]:
        """A TokenRequest for the service account (bound to the requesting pod when the edge names it)."""
        request = dict(content) if isinstance(content, dict) else {}
        request.update(apiVersion="authentication.k8s.io/v1", kind="TokenRequest")
        request.setdefault("spec", {})
        result, err = await self._guard(
            self.api.create(
                kubeapi.SERVICEACCOUNTS, key.namespace, request, subresource="token", name=key.name
            )
        )
        return Reply(Operation.RESPONSE, result if err is None else err_status(err), internal), Effects()


def _now_text(now: dt.datetime) -> str:
    return now.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _keep_times(current: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Legacy podstatus: keep Ready/Initialized transition times when the status did not change, and StartTime."""
    new = dict(new)
    old = {c.get("type"): c for c in current.get("conditions") or [] if isinstance(c, dict)}
    conds = []
    for cond in new.get("conditions") or []:
        if isinstance(cond, dict) and cond.get("type") in ("Ready", "Initialized"):
            prev = old.get(cond["type"])
            if (
                prev is not None
                and prev.get("status") == cond.get("status")
                and prev.get("lastTransitionTime")
            ):
                cond = {**cond, "lastTransitionTime": prev["lastTransitionTime"]}
        conds.append(cond)
    if conds:
        new["conditions"] = conds
    if current.get("startTime") and not new.get("startTime"):
        new["startTime"] = current["startTime"]
    return new


_Handler = Callable[[Upstream, str, ResourceKey, Any, str], Awaitable[tuple[Reply, Effects]]]

_HANDLERS: Final[dict[tuple[str, str], _Handler]] = {
    (ResourceType.NODE, Operation.INSERT): Upstream.node_insert,
    (ResourceType.NODE, Operation.UPDATE): Upstream.node_update,
    (ResourceType.NODE, Operation.QUERY): Upstream.node_query,
    (ResourceType.NODE, Operation.GET): Upstream.node_query,
    (ResourceType.NODE_PATCH, Operation.PATCH): Upstream.nodepatch,
    (ResourceType.NODE_STATUS, Operation.UPDATE): Upstream.nodestatus,
    (ResourceType.POD_PATCH, Operation.PATCH): Upstream.podpatch,
    (ResourceType.POD_STATUS, Operation.UPDATE): Upstream.podstatus,
    (ResourceType.POD, Operation.DELETE): Upstream.pod_delete,
    (ResourceType.POD, Operation.INSERT): Upstream.pod_insert,
    (ResourceType.LEASE, Operation.INSERT): Upstream.lease_write,
    (ResourceType.LEASE, Operation.UPDATE): Upstream.lease_write,
    (ResourceType.LEASE, Operation.QUERY): Upstream.lease_query,
    (ResourceType.EVENT, Operation.INSERT): Upstream.event_write,
    (ResourceType.EVENT, Operation.UPDATE): Upstream.event_write,
    (ResourceType.EVENT, Operation.PATCH): Upstream.event_patch,
    (ResourceType.CONFIGMAP, Operation.QUERY): Upstream.object_query,
    (ResourceType.SECRET, Operation.QUERY): Upstream.object_query,
    (ResourceType.SERVICE_ACCOUNT_TOKEN, Operation.QUERY): Upstream.token_query,
}
