"""Bad input gets a Status with the right code and reason and never changes stored state."""

from __future__ import annotations

import json
import ssl
from typing import Any

import pytest
import urllib3

from kubeedge.kit import limits
from tests.apiserver.conftest import Cluster


@pytest.fixture(scope="module")
def http(cluster: Cluster) -> Any:
    ctx = ssl.create_default_context(cafile=str(cluster.running.ca_cert))
    pool = urllib3.PoolManager(ssl_context=ctx, timeout=urllib3.Timeout(total=30), retries=False)
    yield pool
    pool.clear()


def _call(cluster: Cluster, http: Any, method: str, path: str, body: bytes | None = None,
          ctype: str = "application/json", token: str | None = None) -> tuple[int, dict[str, Any]]:  # fmt: skip
    headers = {"Content-Type": ctype, "Authorization": f"Bearer {token or cluster.running.token}"}
    resp = http.request(method, cluster.running.url + path, body=body, headers=headers)
    return resp.status, json.loads(resp.data)


def _rv(cluster: Cluster, http: Any) -> str:
    return _call(cluster, http, "GET", "/api/v1/namespaces/default/configmaps")[1]["metadata"][
        "resourceVersion"
    ]


@pytest.mark.parametrize(
    ("method", "path", "body", "ctype", "code", "reason", "text"),
    [
        ("POST", "/api/v1/namespaces/default/configmaps", b"{not json", "application/json", 400, "BadRequest",
         "not valid application/json"),
        ("POST", "/api/v1/namespaces/default/configmaps", b"a: [b", "application/yaml", 400, "BadRequest",
         "not valid application/yaml"),
        ("POST", "/api/v1/namespaces/default/configmaps", b"[1,2]", "application/json", 400, "BadRequest",
         "must be a ConfigMap object"),
        ("POST", "/api/v1/namespaces/default/configmaps", b'{"kind":"Secret","metadata":{"name":"x"}}',
         "application/json", 400, "BadRequest", "does not match the expected kind"),
        ("POST", "/api/v1/namespaces/default/configmaps", b'{"metadata":{"name":"Bad_Name"}}', "application/json",
         422, "Invalid", "RFC 1123 subdomain"),
        ("POST", "/api/v1/namespaces", b'{"metadata":{"name":"a.b"}}', "application/json", 422, "Invalid",
         "RFC 1123 label"),
        ("POST", "/api/v1/namespaces/default/configmaps", b'{"metadata":{"name":"x","labels":{"k":"bad value"}}}',
         "application/json", 422, "Invalid", "metadata.labels"),
        ("POST", "/api/v1/namespaces/default/pods", b'{"metadata":{"name":"p"},"spec":{"containers":[]}}',
         "application/json", 422, "Invalid", "spec.containers: Required value"),
        ("POST", "/api/v1/namespaces/nowhere/configmaps", b'{"metadata":{"name":"x"}}', "application/json", 404,
         "NotFound", 'namespaces "nowhere" not found'),
        ("GET", "/api/v1/widgets", None, "application/json", 404, "NotFound", "could not find the requested resource"),
        ("GET", "/apis/nope.io/v1/things", None, "application/json", 404, "NotFound", "could not find"),
        ("PUT", "/api/v1/namespaces/default/configmaps", b"{}", "application/json", 405, "MethodNotAllowed", "collection"),
        ("PATCH", "/api/v1/namespaces/default/configmaps/kube-root", b"{}", "text/plain", 415,
         "UnsupportedMediaType", "text/plain"),
        ("GET", "/api/v1/namespaces/default/configmaps?labelSelector=a%20in%20(b", None, "application/json", 400,
         "BadRequest", "unbalanced"),
        ("GET", "/api/v1/namespaces/default/configmaps?limit=x", None, "application/json", 400, "BadRequest", "limit"),
        ("GET", "/api/v1/namespaces/default/configmaps?continue=%%%", None, "application/json", 400, "BadRequest",
         "continue"),
    ],
)  # fmt: skip
def test_rejected_with_status(cluster: Cluster, http: Any, method: str, path: str, body: bytes | None, ctype: str,
                              code: int, reason: str, text: str) -> None:  # fmt: skip
    before = _rv(cluster, http)
    status, obj = _call(cluster, http, method, path, body, ctype)
    assert (status, obj["kind"], obj["code"], obj["reason"]) == (code, "Status", code, reason)
    assert text in obj["message"]
    assert _rv(cluster, http) == before


def test_unauthorized(cluster: Cluster, http: Any) -> None:
    status, obj = _call(cluster, http, "GET", "/api/v1/namespaces", token="wrong-token")
    assert (status, obj["reason"]) == (401, "Unauthorized")
    resp = http.request("GET", cluster.running.url + "/healthz")
    assert (resp.status, resp.data) == (200, b"ok")


def test_body_over_limit(cluster: Cluster, http: Any) -> None:
    before = _rv(cluster, http)
    big = json.dumps({"metadata": {"name": "big"}, "data": {"k": "x" * limits.APISERVER_MAX_BODY}}).encode()
    status, obj = _call(cluster, http, "POST", "/api/v1/namespaces/default/configmaps", big)
    assert (status, obj["reason"]) == (413, "RequestEntityTooLarge")
    assert _rv(cluster, http) == before
    status, _ = _call(cluster, http, "GET", "/api/v1/namespaces/default/configmaps/big")
    assert status == 404


def test_strict_field_validation(cluster: Cluster, http: Any) -> None:
    body = b'{"metadata":{"name":"strict"},"data":{},"extra":1}'
    status, obj = _call(
        cluster, http, "POST", "/api/v1/namespaces/default/configmaps?fieldValidation=Strict", body
    )
    assert status == 400
    assert 'unknown field "extra"' in obj["message"]
    resp = http.request(
        "POST", cluster.running.url + "/api/v1/namespaces/default/configmaps?fieldValidation=Warn", body=body,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {cluster.running.token}"},
    )  # fmt: skip
    assert resp.status == 201
    assert 'unknown field \\"extra\\"' in resp.headers["Warning"]
