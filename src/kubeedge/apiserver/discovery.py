"""Discovery and OpenAPI documents derived from the :class:`~kubeedge.apiserver.resources.Registry`.

Legacy discovery (``APIVersions``, ``APIGroupList``, ``APIGroup``,
``APIResourceList``) is what we serve; clients asking for aggregated discovery
fall back to it. The OpenAPI v3 documents are deliberately small: per group
version, one path per resource whose PATCH operation carries the
``x-kubernetes-group-version-kind`` and the ``fieldValidation`` parameter,
which is what kubectl reads to choose server-side field validation, and the
patch content types we accept. Strategic merge is left out of the advertised
patch types on purpose: kubectl then computes apply patches from its compiled-in
types (which carry the real merge keys) instead of from our schema stubs.
``/openapi/v2`` is a minimal protobuf document so kubectl's v2 parser succeeds.
Pure functions.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from kubeedge.apiserver.resources import Registry, Resource

KUBE_VERSION = {"major": "1", "minor": "36", "gitVersion": "v1.36.0-kubeedge-py"}


def version_info() -> dict[str, Any]:
    """The ``/version`` body."""
    return {
        **KUBE_VERSION,
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean",
        "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "python",
        "compiler": "cpython",
        "platform": "linux/amd64",
    }


def api_versions(server_address: str) -> dict[str, Any]:
    """``/api``."""
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    }


def _group(name: str, versions: list[str]) -> dict[str, Any]:
    gvs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": gvs, "preferredVersion": gvs[0]}


def api_group_list(reg: Registry) -> dict[str, Any]:
    """``/apis``."""
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group(g, vs) for g, vs in reg.group_versions().items()],
    }


def api_group(reg: Registry, group: str) -> dict[str, Any] | None:
    """``/apis/<group>``, or None if not served."""
    versions = reg.group_versions().get(group)
    if not versions:
        return None
    return {"kind": "APIGroup", "apiVersion": "v1", **_group(group, versions)}


def _entries(res: Resource) -> list[dict[str, Any]]:
    main: dict[str, Any] = {
        "name": res.plural,
        "singularName": res.singular,
        "namespaced": res.namespaced,
        "kind": res.kind,
        "verbs": list(res.verbs),
        "storageVersionHash": hashlib.sha256(res.key.encode()).hexdigest()[:11],
    }
    if res.short_names:
        main["shortNames"] = list(res.short_names)
    if res.categories:
        main["categories"] = list(res.categories)
    out = [main]
    for sub in res.subresources:
        entry: dict[str, Any] = {
            "name": f"{res.plural}/{sub}",
            "singularName": "",
            "namespaced": res.namespaced,
        }
        if sub == "binding":
            entry.update(kind="Binding", verbs=["create"])
        elif sub == "token":
            entry.update(kind="TokenRequest", group="authentication.k8s.io", version="v1", verbs=["create"])
        else:
            entry.update(kind=res.kind, verbs=["get", "patch", "update"])
        out.append(entry)
    return out


def resource_list(reg: Registry, group: str, version: str) -> dict[str, Any] | None:
    """``/api/v1`` or ``/apis/<group>/<version>``, or None if not served."""
    resources = [r for r in reg if r.group == group and r.version == version]
    if not resources:
        return None
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group}/{version}" if group else version,
        "resources": [e for r in resources for e in _entries(r)],
    }


# --- OpenAPI ----------------------------------------------------------------------------------------

_PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json")


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _param(name: str, where: str = "query") -> dict[str, Any]:
    return {"name": name, "in": where, "schema": {"type": "string"}, "required": where == "path"}


def _schema_name(res: Resource) -> str:
    group = res.group or "core"
    return f"{'.'.join(reversed(group.split('.')))}.{res.version}.{res.kind}"


def openapi_gv(reg: Registry, group: str, version: str, schemas: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The OpenAPI v3 document of one group version (``schemas`` maps kind to a CRD's schema)."""
    paths: dict[str, Any] = {}
    components: dict[str, Any] = {}
    for res in reg:
        if res.group != group or res.version != version:
            continue
        gvk = {"group": group, "version": version, "kind": res.kind}
        ref = {"$ref": f"#/components/schemas/{_schema_name(res)}"}
        base = f"/{_gv_path(group, version)}/"
        item = (
            f"{base}namespaces/{{namespace}}/{res.plural}/{{name}}"
            if res.namespaced
            else f"{base}{res.plural}/{{name}}"
        )
        params = [_param("name", "path")] + ([_param("namespace", "path")] if res.namespaced else [])
        ok = {"200": {"description": "OK", "content": {"application/json": {"schema": ref}}}}
        paths[item] = {
            "parameters": params,
            "get": {"x-kubernetes-group-version-kind": gvk, "x-kubernetes-action": "get", "responses": ok},
            "put": {
                "x-kubernetes-group-version-kind": gvk,
                "x-kubernetes-action": "put",
                "parameters": [_param("dryRun"), _param("fieldManager"), _param("fieldValidation")],
                "requestBody": {"content": {"application/json": {"schema": ref}}},
                "responses": ok,
            },
            "patch": {
                "x-kubernetes-group-version-kind": gvk,
                "x-kubernetes-action": "patch",
                "parameters": [
                    _param("dryRun"),
                    _param("fieldManager"),
                    _param("fieldValidation"),
                    _param("force"),
                ],
                "requestBody": {"content": {t: {"schema": {"type": "object"}} for t in _PATCH_TYPES}},
                "responses": ok,
            },
            "delete": {
                "x-kubernetes-group-version-kind": gvk,
                "x-kubernetes-action": "delete",
                "responses": ok,
            },
        }
        collection = (
            f"{base}namespaces/{{namespace}}/{res.plural}" if res.namespaced else f"{base}{res.plural}"
        )
        paths[collection] = {
            "post": {
                "x-kubernetes-group-version-kind": gvk,
                "x-kubernetes-action": "post",
                "parameters": [_param("dryRun"), _param("fieldManager"), _param("fieldValidation")],
                "requestBody": {"content": {"application/json": {"schema": ref}}},
                "responses": ok,
            }
        }
        schema = dict(
            schemas.get(res.kind) or {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        )
        schema["x-kubernetes-group-version-kind"] = [gvk]
        components[_schema_name(res)] = schema
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": KUBE_VERSION["gitVersion"]},
        "paths": paths,
        "components": {"schemas": components},
    }


def openapi_root(docs: dict[str, bytes]) -> dict[str, Any]:
    """``/openapi/v3``: one entry per group version path with a content hash in its URL."""
    return {
        "paths": {
            path: {
                "serverRelativeURL": f"/openapi/v3/{path}?hash={hashlib.sha512(body).hexdigest()[:64].upper()}"
            }
            for path, body in docs.items()
        }
    }


def openapi_docs(reg: Registry, crd_schemas: dict[tuple[str, str, str], dict[str, Any]]) -> dict[str, bytes]:
    """Encoded OpenAPI v3 documents by path (``api/v1``, ``apis/<group>/<version>``)."""
    gvs = sorted({(r.group, r.version) for r in reg})
    out: dict[str, bytes] = {}
    for group, version in gvs:
        schemas = {kind: s for (g, v, kind), s in crd_schemas.items() if g == group and v == version}
        out[_gv_path(group, version)] = json.dumps(
            openapi_gv(reg, group, version, schemas), separators=(",", ":")
        ).encode()
    return out


def _pb_string(field: int, text: str) -> bytes:
    data = text.encode()
    return bytes([field << 3 | 2, len(data)]) + data


def openapi_v2_protobuf() -> bytes:
    """A minimal gnostic ``openapi_v2.Document`` (swagger "2.0" and info) with no definitions."""
    info = _pb_string(1, "Kubernetes") + _pb_string(2, KUBE_VERSION["gitVersion"])
    return _pb_string(1, "2.0") + bytes([2 << 3 | 2, len(info)]) + info
