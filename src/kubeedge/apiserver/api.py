"""The REST layer: routes a decoded HTTP request to storage and returns a response or a watch plan.

Owns request semantics: authentication, routing of ``/api`` and ``/apis``
paths, create/get/list/update/patch/delete with optimistic concurrency,
subresources (status, binding, token), finalizers and graceful deletion,
namespace deletion, CRD registration, discovery and OpenAPI, Table output.
It does no I/O itself beyond the synchronous :class:`~kubeedge.apiserver.storage.Store`;
the HTTP shell feeds it :class:`Request` values and writes the :class:`Response`
or drives the :class:`Watch` it returns. Every failure is an
:class:`~kubeedge.apiserver.errors.ApiError` rendered as a ``Status``; a failed
request never leaves a partial write behind (each change is one store write).
"""

from __future__ import annotations

import base64
import binascii
import copy
import hmac
import json
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
import yaml

from kubeedge.apiserver import discovery, errors, machinery, patch, selectors, tables
from kubeedge.apiserver.resources import Registry, Resource
from kubeedge.apiserver.storage import Event, EventType, Expired, Store, dumps
from kubeedge.kit import limits, log

_log = log.get(__name__)

CRD_KEY = "customresourcedefinitions.apiextensions.k8s.io"
JSON = "application/json"
ANONYMOUS_PATHS = {"/healthz", "/readyz", "/livez", "/version"}
TOKEN_ISSUER = "https://kubernetes.default.svc.cluster.local"


@dataclass(frozen=True)
class Request:
    """One HTTP request, already size-checked by the shell; header names are lower case."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes = b""


@dataclass
class Response:
    """A complete HTTP response."""

    status: int
    body: bytes
    content_type: str = JSON
    headers: list[tuple[str, str]] = field(default_factory=list)


def json_response(status: int, obj: Any, headers: list[tuple[str, str]] | None = None) -> Response:
    """A JSON response of ``obj``."""
    return Response(status, dumps(obj).encode(), JSON, headers or [])


def error_response(err: errors.ApiError) -> Response:
    """The ``Status`` response of ``err``."""
    return json_response(err.code, err.status())


@dataclass(frozen=True)
class _Target:
    res: Resource
    namespace: str | None
    name: str | None
    sub: str | None


class Api:
    """Request handling over one store. Not thread-safe: call from the server's trio thread only."""

    def __init__(
        self,
        store: Store,
        *,
        token: str,
        signing_key: bytes,
        now: Callable[[], float],
        server_address: str = "127.0.0.1:6443",
        rng: random.Random | None = None,
    ) -> None:
        self.store = store
        self._token = token
        self._key = signing_key
        self.now = now
        self._rng = rng or random.SystemRandom()
        self.server_address = server_address
        self.ips = machinery.IPAllocator()
        self.registry = Registry.build([])
        self._openapi: dict[str, bytes] | None = None
        self._rebuild_registry()
        for _, _, raw in store.scan("services", None):
            ip = (json.loads(raw).get("spec") or {}).get("clusterIP")
            if ip:
                self.ips.used.add(str(ip))

    # --- plumbing --------------------------------------------------------------------------------
    def _rebuild_registry(self) -> None:
        self._crds = {name: json.loads(raw) for _, name, raw in self.store.scan(CRD_KEY, None)}
        self.registry = Registry.build(self._crds.values())
        self._openapi = None

    def _crd_for(self, res: Resource) -> dict[str, Any] | None:
        return self._crds.get(res.key) if res.crd else None

    def openapi_docs(self) -> dict[str, bytes]:
        """The OpenAPI v3 documents, rebuilt after CRD changes."""
        if self._openapi is None:
            schemas: dict[tuple[str, str, str], dict[str, Any]] = {}
            for res in self.registry:
                crd = self._crd_for(res)
                if crd is not None:
                    schema = machinery.crd_schema(crd, res.version)
                    if schema:
                        schemas[(res.group, res.version, res.kind)] = schema
            self._openapi = discovery.openapi_docs(self.registry, schemas)
        return self._openapi

    def authenticate(self, headers: Mapping[str, str]) -> bool:
        """True for the admin bearer token or a valid, unexpired service account token."""
        auth = headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return False
        if hmac.compare_digest(token.strip().encode(), self._token.encode()):
            return True
        try:
            claims = jwt.decode(token.strip(), self._key, algorithms=["HS256"], options={"verify_aud": False})
        except jwt.PyJWTError:
            return False
        sa = (claims.get("kubernetes.io") or {}).get("serviceaccount") or {}
        ns = (claims.get("kubernetes.io") or {}).get("namespace", "")
        current = self.store.get("serviceaccounts", str(ns), str(sa.get("name", "")))
        return current is not None and current["metadata"].get("uid") == sa.get("uid")

    # --- entry point -----------------------------------------------------------------------------
    def handle(self, req: Request) -> Response | Watch:
        """Serve one request."""
        try:
            if req.path not in ANONYMOUS_PATHS and not self.authenticate(req.headers):
                raise errors.unauthorized()
            return self._route(req)
        except errors.ApiError as exc:
            return error_response(exc)
        except (selectors.SelectorError, patch.PatchError) as exc:
            return error_response(errors.bad_request(str(exc)))

    def _route(self, req: Request) -> Response | Watch:
        parts = [p for p in req.path.split("/") if p]
        if req.method not in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            raise errors.method_not_allowed(f"method {req.method} is not supported")
        if not parts:
            return json_response(
                200, {"paths": ["/api", "/api/v1", "/apis", "/healthz", "/openapi/v3", "/version"]}
            )
        head = parts[0]
        if head == "version" and len(parts) == 1:
            return json_response(200, discovery.version_info())
        if head in ("healthz", "readyz", "livez"):
            return Response(200, b"ok", "text/plain")
        if head == "openapi":
            return self._openapi_route(parts[1:])
        if head == "api":
            if len(parts) == 1:
                return json_response(200, discovery.api_versions(self.server_address))
            return self._group_route(req, "", parts[1], parts[2:])
        if head == "apis":
            if len(parts) == 1:
                return json_response(200, discovery.api_group_list(self.registry))
            if len(parts) == 2:
                group = discovery.api_group(self.registry, parts[1])
                if group is None:
                    raise _page_not_found()
                return json_response(200, group)
            return self._group_route(req, parts[1], parts[2], parts[3:])
        raise _page_not_found()

    def _openapi_route(self, parts: list[str]) -> Response:
        if parts == ["v2"]:
            return Response(
                200,
                discovery.openapi_v2_protobuf(),
                "application/com.github.proto-openapi.spec.v2@v1.0+protobuf",
            )
        if parts[:1] != ["v3"]:
            raise _page_not_found()
        docs = self.openapi_docs()
        if len(parts) == 1:
            return json_response(200, discovery.openapi_root(docs))
        body = docs.get("/".join(parts[1:]))
        if body is None:
            raise _page_not_found()
        return Response(200, body, JSON)

    def _group_route(self, req: Request, group: str, version: str, rest: list[str]) -> Response | Watch:
        if not rest:
            listing = discovery.resource_list(self.registry, group, version)
            if listing is None or (group == "" and version != "v1"):
                raise _page_not_found()
            return json_response(200, listing)
        watch = req.query.get("watch") in ("true", "1", "True")
        if rest[0] == "watch":
            watch, rest = True, rest[1:]
        target = self._target(group, version, rest)
        res, ns, name, sub = target.res, target.namespace, target.name, target.sub
        if sub is not None and sub not in res.subresources:
            raise _page_not_found()
        if res.plural == "bindings":
            if req.method != "POST" or name is not None or ns is None:
                raise errors.method_not_allowed("bindings only support create")
            body = self._decode(req)
            pod_name = ((body if isinstance(body, dict) else {}).get("metadata") or {}).get("name")
            pods = self.registry.lookup("", "v1", "pods")
            assert pods is not None
            return self._bind(_Target(pods, ns, str(pod_name or ""), "binding"), body)
        if req.method == "GET":
            if name is None:
                if watch:
                    return self._watch(req, target)
                return self._list(req, target)
            return self._get(req, target)
        if watch:
            raise errors.method_not_allowed("watch supports GET only")
        if res.namespaced and ns is None and not (req.method == "DELETE" and name is None):
            raise _page_not_found()
        if req.method == "POST":
            if name is None:
                return self._create(req, target, self._decode(req))
            if sub == "binding":
                return self._bind(target, self._decode(req))
            if sub == "token":
                return self._token_request(target, self._decode(req))
            raise errors.method_not_allowed(f"POST is not supported on {res.plural}/{sub or ''}")
        if name is None:
            if req.method == "DELETE":
                return self._delete_collection(req, target)
            raise errors.method_not_allowed(f"{req.method} is not supported on a collection")
        if sub in ("binding", "token"):
            raise errors.method_not_allowed(f"{req.method} is not supported on {res.plural}/{sub}")
        if req.method == "PUT":
            return self._update(req, target, self._decode(req))
        if req.method == "PATCH":
            return self._patch(req, target)
        return self._delete(req, target)

    def _target(self, group: str, version: str, rest: list[str]) -> _Target:
        if rest[0] == "namespaces" and len(rest) >= 3:
            res = self.registry.lookup(group, version, rest[2])
            if res is not None and res.namespaced:
                if len(rest) > 5:
                    raise _page_not_found()
                return _Target(res, rest[1], _at(rest, 3), _at(rest, 4))
        res = self.registry.lookup(group, version, rest[0])
        if res is None or len(rest) > 3:
            raise _page_not_found()
        return _Target(res, None, _at(rest, 1), _at(rest, 2))

    def _decode(self, req: Request) -> Any:
        ctype = req.headers.get("content-type", JSON).split(";")[0].strip().lower()
        if not req.body:
            raise errors.bad_request("the request body is empty")
        try:
            if ctype in ("application/yaml", "application/x-yaml", "text/yaml"):
                return yaml.safe_load(req.body)
            if ctype in (JSON, "", "*/*") or ctype.endswith("+json"):
                return json.loads(req.body)
        except (ValueError, yaml.YAMLError) as exc:
            raise errors.bad_request(f"the request body is not valid {ctype}: {exc}") from None
        raise errors.unsupported_media(ctype)

    # --- helpers ---------------------------------------------------------------------------------
    def _serve(self, res: Resource, obj: dict[str, Any]) -> dict[str, Any]:
        if res.crd and obj.get("apiVersion") != res.group_version:
            obj = {**obj, "apiVersion": res.group_version}
        return obj

    def _load(self, t: _Target) -> dict[str, Any]:
        assert t.name is not None
        obj = self.store.get(t.res.key, t.namespace or "", t.name)
        if obj is None:
            raise errors.not_found(t.res.plural, t.name, t.res.group)
        return obj

    def _check_type(self, res: Resource, obj: Any) -> dict[str, Any]:
        if not isinstance(obj, dict):
            raise errors.bad_request(f"the body must be a {res.kind} object")
        kind, api_version = obj.get("kind"), obj.get("apiVersion")
        if kind is not None and kind != res.kind:
            raise errors.bad_request(
                f"the kind in the body ({kind}) does not match the expected kind ({res.kind})"
            )
        if api_version is not None and api_version != res.group_version:
            raise errors.bad_request(
                f"the API version in the data ({api_version}) does not match the expected API version"
                f" ({res.group_version})"
            )
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise errors.bad_request("metadata must be an object")
        return obj

    def _field_warnings(self, req: Request, res: Resource, obj: dict[str, Any]) -> list[tuple[str, str]]:
        mode = req.query.get("fieldValidation", "Warn")
        if mode not in ("Ignore", "Warn", "Strict"):
            raise errors.bad_request(f"fieldValidation must be Ignore, Warn or Strict, not {mode!r}")
        if mode == "Ignore":
            return []
        crd = self._crd_for(res)
        schema = machinery.crd_schema(crd, res.version) if crd else None
        unknown = machinery.unknown_fields(res, obj, schema)
        if not unknown:
            return []
        if mode == "Strict":
            text = ", ".join(f'unknown field "{u}"' for u in unknown)
            raise errors.bad_request(f"strict decoding error: {text}")
        return [("Warning", f'299 - "unknown field \\"{u}\\""') for u in unknown]

    def _namespace_ready(self, ns: str) -> None:
        obj = self.store.get("namespaces", "", ns)
        if obj is None:
            raise errors.not_found("namespaces", ns)
        if obj["metadata"].get("deletionTimestamp"):
            raise errors.forbidden(
                f"unable to create new content in namespace {ns} because it is being terminated",
                "namespaces",
                ns,
            )

    # --- read ------------------------------------------------------------------------------------
    def _wants_table(self, req: Request) -> bool:
        accept = req.headers.get("accept", "")
        return "as=Table" in accept

    def _get(self, req: Request, t: _Target) -> Response:
        obj = self._serve(t.res, self._load(t))
        if self._wants_table(req):
            meta = {"resourceVersion": obj["metadata"].get("resourceVersion", "")}
            return json_response(
                200,
                tables.table(t.res, [obj], self.now(), include_object=req.query.get("includeObject", "Metadata"),
                             list_meta=meta),
            )  # fmt: skip
        return json_response(200, obj)

    def _selectors(
        self, req: Request, res: Resource
    ) -> tuple[selectors.LabelSelector, selectors.FieldSelector]:
        labels = selectors.parse_labels(req.query.get("labelSelector"))
        fields = selectors.parse_fields(req.query.get("fieldSelector"))
        allowed = {"metadata.name", "metadata.namespace", *res.field_labels}
        for f in fields.fields():
            if f not in allowed:
                raise errors.bad_request(f"field label not supported: {f}")
        return labels, fields

    def _list(self, req: Request, t: _Target) -> Response:
        res = t.res
        labels, fields = self._selectors(req, res)
        limit = _int_param(req.query, "limit", 0)
        limit = min(limit, limits.APISERVER_MAX_LIST_LIMIT) if limit > 0 else 0
        after = _parse_continue(req.query.get("continue"))
        rv = str(self.store.rv)
        table = self._wants_table(req)
        simple = not (labels.requirements or fields.requirements or table or res.crd or limit or after)
        rows = self.store.scan(res.key, t.namespace, after=after)
        if simple:
            head = dumps(
                {"kind": res.list_kind, "apiVersion": res.group_version, "metadata": {"resourceVersion": rv}}
            )
            body = head[:-1] + ',"items":[' + ",".join(raw for _, _, raw in rows) + "]}"
            return Response(200, body.encode())
        items: list[dict[str, Any]] = []
        token = None
        for _ns, _name, raw in rows:
            obj = json.loads(raw)
            if not (labels.matches(obj["metadata"].get("labels")) and fields.matches(obj)):
                continue
            if limit and len(items) == limit:
                token = _make_continue(
                    int(rv), items[-1]["metadata"].get("namespace", ""), items[-1]["metadata"]["name"]
                )
                break
            items.append(self._serve(res, obj))
        meta: dict[str, Any] = {"resourceVersion": rv}
        if token:
            meta["continue"] = token
        if table:
            return json_response(
                200,
                tables.table(res, items, self.now(), include_object=req.query.get("includeObject", "Metadata"),
                             list_meta=meta),
            )  # fmt: skip
        return json_response(200, {"kind": res.list_kind, "apiVersion": res.group_version, "metadata": meta,
                                   "items": items})  # fmt: skip

    def _watch(self, req: Request, t: _Target) -> Watch:
        labels, fields = self._selectors(req, t.res)
        rv_text = req.query.get("resourceVersion", "")
        timeout = _int_param(req.query, "timeoutSeconds", 0)
        if timeout <= 0 or timeout > limits.APISERVER_MAX_WATCH_TIMEOUT_S:
            timeout = self._rng.randint(1800, limits.APISERVER_MAX_WATCH_TIMEOUT_S)
        send_initial = req.query.get("sendInitialEvents") == "true"
        w = Watch(
            self,
            t.res,
            t.namespace,
            labels,
            fields,
            table=self._wants_table(req),
            include_object=req.query.get("includeObject", "Metadata"),
            bookmarks=req.query.get("allowWatchBookmarks") == "true",
            timeout=float(timeout),
        )
        if rv_text in ("", "0") or send_initial:
            w.start_with_current(initial_end_bookmark=send_initial)
        else:
            try:
                start = int(rv_text)
            except ValueError:
                raise errors.bad_request(f"invalid resourceVersion {rv_text!r}") from None
            if start > self.store.rv:
                raise errors.ApiError(
                    504, "Timeout", f"Too large resource version: {start}, current: {self.store.rv}"
                )
            w.cursor = start
        return w

    # --- create ----------------------------------------------------------------------------------
    def _create(self, req: Request, t: _Target, body: Any) -> Response:
        res, ns = t.res, t.namespace or ""
        obj = self._check_type(res, body)
        meta = obj["metadata"]
        if res.namespaced and meta.get("namespace") not in (None, "", ns):
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on the request"
            )
        warnings = self._field_warnings(req, res, obj)
        if not meta.get("name"):
            prefix = meta.get("generateName")
            if not prefix:
                raise errors.invalid(res.kind, "", [("metadata.name", "Required value: name or generateName is required")],
                                     res.group)  # fmt: skip
            meta["name"] = machinery.generate_name(str(prefix), self._rng)
        if not isinstance(meta["name"], str):
            raise errors.bad_request("metadata.name must be a string")
        if res.namespaced:
            self._namespace_ready(ns)
        machinery.prepare_create(res, obj, ns, now=self.now(), rng=self._rng, allocate_ip=self.ips.allocate)
        machinery.validate_meta(res.kind, obj, group=res.group)
        if res.key == CRD_KEY:
            machinery.validate_crd(obj)
        if req.query.get("dryRun") == "All":
            return json_response(201, obj, warnings)
        stored = self.create_object(res, ns, obj)
        return json_response(201, self._serve(res, stored), warnings)

    def create_object(self, res: Resource, ns: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Store a prepared object, running the side effects of its kind (409 if it exists)."""
        name = obj["metadata"]["name"]
        stored = self.store.create(res.key, ns, name, obj)
        if stored is None:
            raise errors.already_exists(res.plural, name, res.group)
        if res.key == CRD_KEY:
            self._rebuild_registry()
        elif res.key == "namespaces":
            self._ensure_default_sa(name)
        return stored

    def _ensure_default_sa(self, ns: str) -> None:
        # What the serviceaccounts controller does for every new namespace.
        if self.store.get("serviceaccounts", ns, "default") is None:
            res = self.registry.lookup("", "v1", "serviceaccounts")
            assert res is not None
            sa: dict[str, Any] = {"metadata": {"name": "default"}}
            machinery.prepare_create(
                res, sa, ns, now=self.now(), rng=self._rng, allocate_ip=self.ips.allocate
            )
            self.store.create(res.key, ns, "default", sa)

    # --- update / patch --------------------------------------------------------------------------
    def _update(self, req: Request, t: _Target, body: Any) -> Response:
        res = t.res
        obj = self._check_type(res, body)
        current = self._load(t)
        name = obj["metadata"].get("name")
        if name not in (None, t.name):
            raise errors.bad_request(
                f"the name of the object ({name}) does not match the name on the URL ({t.name})"
            )
        rv = obj["metadata"].get("resourceVersion")
        if rv not in (None, "") and str(rv) != current["metadata"]["resourceVersion"]:
            raise errors.conflict(res.plural, str(t.name), res.group)
        warnings = self._field_warnings(req, res, obj)
        stored = self._replace(req, t, obj, current)
        return json_response(200, self._serve(res, stored), warnings)

    def _replace(
        self, req: Request, t: _Target, obj: dict[str, Any], current: dict[str, Any]
    ) -> dict[str, Any]:
        res = t.res
        new = machinery.carry_over(res, obj, current, subresource=t.sub or "")
        machinery.default(res, new, now=self.now(), allocate_ip=self.ips.allocate)
        machinery.validate_meta(res.kind, new, group=res.group)
        problems = machinery.immutable_problems(res, new, current)
        if problems:
            raise errors.invalid(res.kind, str(t.name), problems, res.group)
        if res.key == CRD_KEY:
            machinery.validate_crd(new)
            machinery.default(res, new, now=self.now(), allocate_ip=self.ips.allocate)
        if req.query.get("dryRun") == "All":
            return new
        return self.write(res, current, new)

    def write(self, res: Resource, current: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
        """Store ``new`` over ``current`` (no-op if unchanged), finishing a pending deletion it allows."""
        new["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        if new == current:
            return current
        ns = current["metadata"].get("namespace", "")
        name = current["metadata"]["name"]
        stored = self.store.update(res.key, ns, name, new, current)
        if stored is None:
            raise errors.conflict(res.plural, name, res.group)
        if res.key == CRD_KEY:
            self._rebuild_registry()
        meta = stored["metadata"]
        if (
            meta.get("deletionTimestamp")
            and not meta.get("finalizers")
            and not _graceful_pending(res, stored)
        ):
            return self._remove(res, stored)
        return stored

    def _patch(self, req: Request, t: _Target) -> Response:
        res = t.res
        ctype = req.headers.get("content-type", "").split(";")[0].strip().lower()
        body = self._decode(req)
        current = self._load(t)
        if ctype == "application/json-patch+json":
            patched = patch.json_patch(current, body)
        elif ctype == "application/merge-patch+json":
            if not isinstance(body, dict):
                raise errors.bad_request("a merge patch must be a JSON object")
            patched = patch.merge_patch(current, body)
        elif ctype == "application/strategic-merge-patch+json":
            if res.crd:
                raise errors.unsupported_media(
                    f"{ctype}: strategic merge patch is not supported for custom resources, use merge patch"
                )
            patched = patch.strategic_merge(res.kind, current, body)
        else:
            raise errors.unsupported_media(ctype or "<none>")
        if not isinstance(patched, dict) or not isinstance(patched.get("metadata"), dict):
            raise errors.bad_request("the patched object is not a valid object")
        patched.setdefault("metadata", {})
        if patched.get("kind") != res.kind or patched.get("apiVersion") not in (
            res.group_version,
            current.get("apiVersion"),
        ):
            raise errors.bad_request("a patch may not change apiVersion or kind")
        patched["apiVersion"] = current.get("apiVersion", res.group_version)
        rv = patched["metadata"].get("resourceVersion")
        if rv not in (None, "") and str(rv) != current["metadata"]["resourceVersion"]:
            raise errors.conflict(res.plural, str(t.name), res.group)
        if patched["metadata"].get("name") != t.name:
            raise errors.bad_request("a patch may not change metadata.name")
        warnings = self._field_warnings(req, res, patched)
        stored = self._replace(req, t, patched, current)
        return json_response(200, self._serve(res, stored), warnings)

    # --- delete ----------------------------------------------------------------------------------
    def _delete_options(self, req: Request) -> dict[str, Any]:
        opts: dict[str, Any] = {}
        if req.body:
            body = self._decode(req)
            if not isinstance(body, dict):
                raise errors.bad_request("DeleteOptions must be an object")
            opts = body
        if "gracePeriodSeconds" in req.query:
            opts["gracePeriodSeconds"] = _int_param(req.query, "gracePeriodSeconds", 0)
        if "propagationPolicy" in req.query:
            opts["propagationPolicy"] = req.query["propagationPolicy"]
        grace = opts.get("gracePeriodSeconds")
        if grace is not None and (not isinstance(grace, int) or grace < 0):
            raise errors.bad_request("gracePeriodSeconds must be a non-negative integer")
        return opts

    def _delete(self, req: Request, t: _Target) -> Response:
        opts = self._delete_options(req)
        current = self._load(t)
        pre = opts.get("preconditions") or {}
        if pre.get("uid") and pre["uid"] != current["metadata"].get("uid"):
            raise errors.conflict(t.res.plural, str(t.name), t.res.group)
        if pre.get("resourceVersion") and pre["resourceVersion"] != current["metadata"].get(
            "resourceVersion"
        ):
            raise errors.conflict(t.res.plural, str(t.name), t.res.group)
        if req.query.get("dryRun") == "All":
            return json_response(200, self._serve(t.res, current))
        out = self.delete_object(t.res, current, opts.get("gracePeriodSeconds"))
        return json_response(200, self._serve(t.res, out))

    def delete_object(self, res: Resource, current: dict[str, Any], grace: int | None) -> dict[str, Any]:
        """Delete now, or mark for deletion when finalizers or a pod's grace period hold it."""
        if res.key == "namespaces":
            return self._delete_namespace(current)
        meta = current["metadata"]
        if res.kind == "Pod" and not res.crd:
            if grace is None:
                grace = int((current.get("spec") or {}).get("terminationGracePeriodSeconds", 30))
            if grace > 0 and self._pod_needs_kubelet(current):
                if meta.get("deletionTimestamp"):
                    return current
                new = copy.deepcopy(current)
                new["metadata"]["deletionTimestamp"] = machinery.rfc3339(self.now() + grace)
                new["metadata"]["deletionGracePeriodSeconds"] = grace
                return self.write(res, current, new)
        if meta.get("finalizers"):
            if meta.get("deletionTimestamp"):
                return current
            new = copy.deepcopy(current)
            new["metadata"]["deletionTimestamp"] = machinery.rfc3339(self.now())
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            return self.write(res, current, new)
        return self._remove(res, current)

    def _pod_needs_kubelet(self, pod: dict[str, Any]) -> bool:
        node = (pod.get("spec") or {}).get("nodeName")
        phase = (pod.get("status") or {}).get("phase")
        return (
            bool(node)
            and phase not in ("Succeeded", "Failed")
            and self.store.get("nodes", "", str(node)) is not None
        )

    def _remove(self, res: Resource, current: dict[str, Any]) -> dict[str, Any]:
        ns = current["metadata"].get("namespace", "")
        name = current["metadata"]["name"]
        if res.key == CRD_KEY:
            for crd_res in self.registry:
                if crd_res.key == name:
                    for rns, rname, raw in list(self.store.scan(name, None)):
                        self.store.delete(name, rns, rname, json.loads(raw))
                    break
        gone = self.store.delete(res.key, ns, name, current)
        if gone is None:
            raise errors.conflict(res.plural, name, res.group)
        if res.key == CRD_KEY:
            self._rebuild_registry()
        elif res.key == "services":
            self.ips.used.discard(str((current.get("spec") or {}).get("clusterIP")))
        if ns:
            self._finish_namespace(ns)
        return gone

    def _delete_namespace(self, current: dict[str, Any]) -> dict[str, Any]:
        res = self.registry.lookup("", "v1", "namespaces")
        assert res is not None
        name = current["metadata"]["name"]
        if not current["metadata"].get("deletionTimestamp"):
            new = copy.deepcopy(current)
            new["metadata"]["deletionTimestamp"] = machinery.rfc3339(self.now())
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            new.setdefault("status", {})["phase"] = "Terminating"
            current = self.store.update("namespaces", "", name, new, current) or current
        # The namespace controller's job: contents go first (held objects are marked), then the namespace.
        by_key = {r.key: r for r in self.registry}
        for key, obj_name in self.store.namespace_contents(name):
            obj = self.store.get(key, name, obj_name)
            kind_res = by_key.get(key)
            if obj is None or kind_res is None:
                continue
            self.delete_object(kind_res, obj, 0)
        return self._finish_namespace(name) or current

    def _finish_namespace(self, ns: str) -> dict[str, Any] | None:
        obj = self.store.get("namespaces", "", ns)
        if obj is None or not obj["metadata"].get("deletionTimestamp") or self.store.namespace_contents(ns):
            return None
        res = self.registry.lookup("", "v1", "namespaces")
        assert res is not None
        return self.store.delete("namespaces", "", ns, obj)

    def _delete_collection(self, req: Request, t: _Target) -> Response:
        labels, fields = self._selectors(req, t.res)
        opts = self._delete_options(req)
        deleted = []
        for _, _, raw in list(self.store.scan(t.res.key, t.namespace)):
            obj = json.loads(raw)
            if labels.matches(obj["metadata"].get("labels")) and fields.matches(obj):
                deleted.append(
                    self._serve(t.res, self.delete_object(t.res, obj, opts.get("gracePeriodSeconds")))
                )
        return json_response(
            200,
            {"kind": t.res.list_kind, "apiVersion": t.res.group_version,
             "metadata": {"resourceVersion": str(self.store.rv)}, "items": deleted},
        )  # fmt: skip

    # --- subresource actions ---------------------------------------------------------------------
    def _bind(self, t: _Target, body: Any) -> Response:
        if (
            not isinstance(body, dict)
            or not isinstance(body.get("target"), dict)
            or not body["target"].get("name")
        ):
            raise errors.bad_request("a Binding needs target.name")
        pod_res = t.res
        current = self._load(_Target(pod_res, t.namespace, t.name, None))
        self.bind(current, str(body["target"]["name"]))
        return json_response(
            201, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "code": 201}
        )

    def bind(self, pod: dict[str, Any], node: str) -> dict[str, Any]:
        """Set ``spec.nodeName`` and the PodScheduled condition (409 if already bound)."""
        res = self.registry.lookup("", "v1", "pods")
        assert res is not None
        meta = pod["metadata"]
        bound = (pod.get("spec") or {}).get("nodeName")
        if bound:
            raise errors.ApiError(
                409, "Conflict", f'pod {meta["name"]} is already assigned to node "{bound}"'
            )
        if meta.get("deletionTimestamp"):
            raise errors.ApiError(
                409, "Conflict", f"pod {meta['name']} is being deleted, cannot be assigned to a host"
            )
        new = copy.deepcopy(pod)
        new.setdefault("spec", {})["nodeName"] = node
        set_condition(new, "PodScheduled", "True", "", "", self.now())
        return self.write(res, pod, new)

    def _token_request(self, t: _Target, body: Any) -> Response:
        if not isinstance(body, dict):
            raise errors.bad_request("the body must be a TokenRequest")
        sa = self._load(_Target(t.res, t.namespace, t.name, None))
        spec = body.get("spec") or {}
        seconds = spec.get("expirationSeconds") or 3600
        if not isinstance(seconds, int) or seconds < 600:
            raise errors.invalid("TokenRequest", str(t.name), [("spec.expirationSeconds", "Invalid value: may not specify a duration less than 10 minutes")], "authentication.k8s.io")  # fmt: skip
        seconds = min(seconds, 48 * 3600)
        audiences = spec.get("audiences") or [TOKEN_ISSUER]
        now = int(self.now())
        claims = {
            "iss": TOKEN_ISSUER,
            "sub": f"system:serviceaccount:{t.namespace}:{t.name}",
            "aud": audiences,
            "iat": now,
            "nbf": now,
            "exp": now + seconds,
            "kubernetes.io": {
                "namespace": t.namespace,
                "serviceaccount": {"name": t.name, "uid": sa["metadata"]["uid"]},
            },
        }
        token = jwt.encode(claims, self._key, algorithm="HS256")
        out = {
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": t.name, "namespace": t.namespace, "creationTimestamp": None},
            "spec": {
                "audiences": audiences,
                "expirationSeconds": seconds,
                "boundObjectRef": spec.get("boundObjectRef"),
            },
            "status": {"token": token, "expirationTimestamp": machinery.rfc3339(now + seconds)},
        }
        return json_response(201, out)

    # --- internal clients (bootstrap, scheduler) --------------------------------------------------
    def record_event(
        self, involved: dict[str, Any], reason: str, message: str, *, type_: str = "Normal", component: str
    ) -> None:
        """Create a core/v1 Event about ``involved`` (best effort: failures are logged)."""
        res = self.registry.lookup("", "v1", "events")
        assert res is not None
        meta = involved["metadata"]
        ns = meta.get("namespace") or "default"
        ev: dict[str, Any] = {
            "metadata": {"name": machinery.generate_name(f"{meta['name']}.", self._rng)},
            "involvedObject": {
                "kind": involved.get("kind"),
                "namespace": meta.get("namespace", ""),
                "name": meta["name"],
                "uid": meta.get("uid"),
                "apiVersion": involved.get("apiVersion"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "reason": reason,
            "message": message,
            "type": type_,
            "source": {"component": component},
            "reportingComponent": component,
        }
        try:
            machinery.prepare_create(
                res, ev, ns, now=self.now(), rng=self._rng, allocate_ip=self.ips.allocate
            )
            self.create_object(res, ns, ev)
        except errors.ApiError as exc:
            _log.warning("event not recorded", reason=reason, error=exc.message)


class Watch:
    """One watch request: renders stored events into stream lines, filtered to what the client asked for."""

    def __init__(
        self,
        api: Api,
        res: Resource,
        namespace: str | None,
        labels: selectors.LabelSelector,
        fields: selectors.FieldSelector,
        *,
        table: bool,
        include_object: str,
        bookmarks: bool,
        timeout: float,
    ) -> None:
        self.api = api
        self.res = res
        self.namespace = namespace
        self.labels = labels
        self.fields = fields
        self.table = table
        self.include_object = include_object
        self.bookmarks = bookmarks
        self.timeout = timeout
        self.cursor = api.store.rv
        self._pending: list[bytes] = []
        self._done = False

    @property
    def done(self) -> bool:
        """True once the stream must end (after a 410 ERROR event)."""
        return self._done

    def start_with_current(self, *, initial_end_bookmark: bool) -> None:
        """Queue synthetic ADDED events for every matching object, then stream from now."""
        self.cursor = self.api.store.rv
        for _, _, raw in self.api.store.scan(self.res.key, self.namespace):
            obj = json.loads(raw)
            if self._matches(obj):
                self._pending.append(self._line("ADDED", obj))
        if initial_end_bookmark:
            self._pending.append(self._bookmark_line({"k8s.io/initial-events-end": "true"}))

    def _matches(self, obj: dict[str, Any]) -> bool:
        return self.labels.matches(obj["metadata"].get("labels")) and self.fields.matches(obj)

    def _line(self, type_: str, obj: dict[str, Any]) -> bytes:
        obj = self.api._serve(self.res, obj)
        if self.table:
            rendered: dict[str, Any] = tables.table(
                self.res, [obj], self.api.now(), include_object=self.include_object,
                list_meta={"resourceVersion": obj["metadata"].get("resourceVersion", "")},
            )  # fmt: skip
        else:
            rendered = obj
        return dumps({"type": type_, "object": rendered}).encode() + b"\n"

    def _bookmark_line(self, annotations: dict[str, str] | None = None) -> bytes:
        meta: dict[str, Any] = {"resourceVersion": str(self.cursor)}
        if annotations:
            meta["annotations"] = annotations
        return dumps({"type": "BOOKMARK", "object": {"kind": self.res.kind, "apiVersion": self.res.group_version,
                                                     "metadata": meta}}).encode() + b"\n"  # fmt: skip

    def bookmark(self) -> bytes | None:
        """A BOOKMARK line at the current cursor, if the client allowed them."""
        return self._bookmark_line() if self.bookmarks else None

    def poll(self) -> list[bytes]:
        """Lines for everything that happened since the last poll; sets ``done`` after a 410."""
        out, self._pending = self._pending, []
        try:
            events = self.api.store.events_after(self.cursor)
        except Expired as exc:
            self._done = True
            out.append(dumps({"type": "ERROR", "object": errors.gone(str(exc)).status()}).encode() + b"\n")
            return out
        for ev in events:
            self.cursor = ev.rv
            line = self._render(ev)
            if line is not None:
                out.append(line)
        if events:
            self.cursor = max(self.cursor, events[-1].rv)
        return out

    def _render(self, ev: Event) -> bytes | None:
        if ev.resource != self.res.key or (self.namespace is not None and ev.namespace != self.namespace):
            return None
        now_match = self._matches(ev.obj)
        if ev.type is EventType.MODIFIED and ev.old is not None:
            was = self._matches(ev.old)
            if was and not now_match:
                return self._line("DELETED", ev.obj)
            if now_match and not was:
                return self._line("ADDED", ev.obj)
        if not now_match:
            return None
        if not self.table and not self.res.crd:
            return ev.encoded_line()
        return self._line(ev.type.value, ev.obj)


def set_condition(
    obj: dict[str, Any], type_: str, status: str, reason: str, message: str, now: float
) -> None:
    """Add or update a status condition of ``obj`` (mutates it), keeping lastTransitionTime if unchanged."""
    conditions = obj.setdefault("status", {}).setdefault("conditions", [])
    for cond in conditions:
        if cond.get("type") == type_:
            if cond.get("status") != status:
                cond["lastTransitionTime"] = machinery.rfc3339(now)
            cond.update(status=status, reason=reason, message=message)
            cond.setdefault("lastProbeTime", None)
            if not reason:
                cond.pop("reason", None)
            if not message:
                cond.pop("message", None)
            return
    cond = {
        "type": type_,
        "status": status,
        "lastProbeTime": None,
        "lastTransitionTime": machinery.rfc3339(now),
    }
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    conditions.append(cond)


def _graceful_pending(res: Resource, obj: dict[str, Any]) -> bool:
    meta = obj["metadata"]
    return res.kind == "Pod" and not res.crd and int(meta.get("deletionGracePeriodSeconds") or 0) > 0


def _page_not_found() -> errors.ApiError:
    return errors.ApiError(404, "NotFound", "the server could not find the requested resource")


def _at(items: list[str], idx: int) -> str | None:
    return items[idx] if len(items) > idx else None


def _int_param(query: Mapping[str, str], name: str, default: int) -> int:
    text = query.get(name)
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise errors.bad_request(f"{name} must be an integer, not {text!r}") from None


def _make_continue(rv: int, ns: str, name: str) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": [ns, name]}).encode()
    return base64.urlsafe_b64encode(raw).decode()


def _parse_continue(token: str | None) -> tuple[str, str] | None:
    if not token:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        ns, name = data["start"]
        return str(ns), str(name)
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise errors.bad_request("continue key is not valid") from None
