"""Decoding of the Kubernetes protobuf envelope for the few kinds kubectl's typed commands send.

``kubectl create namespace|configmap|secret|serviceaccount|token`` and ``kubectl run`` encode request
bodies as ``application/vnd.kubernetes.protobuf`` (magic ``k8s\\0`` plus a
``runtime.Unknown`` wrapping the object). We decode exactly those kinds into
their JSON form (pods only for the fields ``kubectl run`` sets; any other
non-empty field is refused, never dropped); anything else raises :class:`ProtobufError` and the API
answers 415, so the client can send JSON instead. Pure functions; every
length is checked against the input, so malformed bytes fail cleanly.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

MAGIC = b"k8s\x00"
CONTENT_TYPE = "application/vnd.kubernetes.protobuf"
_MAX_DEPTH = 16


class ProtobufError(ValueError):
    """Bytes that are not a supported Kubernetes protobuf object."""


Fields = dict[int, list[Any]]


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise ProtobufError("truncated varint")
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def parse(data: bytes) -> Fields:
    """Field number to the list of its values (ints for varints, bytes for length-delimited)."""
    out: Fields = {}
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            out.setdefault(field, []).append(value)
        elif wire == 2:
            length, pos = _varint(data, pos)
            if pos + length > len(data):
                raise ProtobufError("truncated length-delimited field")
            out.setdefault(field, []).append(data[pos : pos + length])
            pos += length
        elif wire == 5:
            pos += 4
        elif wire == 1:
            pos += 8
        else:
            raise ProtobufError(f"unsupported wire type {wire}")
        if pos > len(data):
            raise ProtobufError("truncated field")
    return out


def _str(f: Fields, n: int) -> str | None:
    v = f.get(n)
    return v[-1].decode() if v else None


def _strs(f: Fields, n: int) -> list[str]:
    return [v.decode() for v in f.get(n, [])]


def _map(f: Fields, n: int, value: Callable[[bytes], Any]) -> dict[str, Any] | None:
    if n not in f:
        return None
    out: dict[str, Any] = {}
    for entry in f[n]:
        e = parse(entry)
        out[(e.get(1) or [b""])[-1].decode()] = value((e.get(2) or [b""])[-1])
    return out


def _meta(raw: bytes) -> dict[str, Any]:
    f = parse(raw)
    meta: dict[str, Any] = {}
    for n, key in ((1, "name"), (2, "generateName"), (3, "namespace"), (6, "resourceVersion")):
        if s := _str(f, n):  # gogo-proto writes empty strings; empty means unset here
            meta[key] = s
    for n, key in ((11, "labels"), (12, "annotations")):
        if (m := _map(f, n, bytes.decode)) is not None:
            meta[key] = m
    if 14 in f:
        meta["finalizers"] = _strs(f, 14)
    return meta


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _namespace(f: Fields) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    finalizers = _strs(parse(f[2][-1]), 1) if 2 in f else []
    if finalizers:
        obj["spec"] = {"finalizers": finalizers}
    return obj


def _configmap(f: Fields) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    if (data := _map(f, 2, bytes.decode)) is not None:
        obj["data"] = data
    if (binary := _map(f, 3, _b64)) is not None:
        obj["binaryData"] = binary
    if 4 in f:
        obj["immutable"] = bool(f[4][-1])
    return obj


def _secret(f: Fields) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    if (data := _map(f, 2, _b64)) is not None:
        obj["data"] = data
    if kind := _str(f, 3):
        obj["type"] = kind
    if (string_data := _map(f, 4, bytes.decode)) is not None:
        obj["stringData"] = string_data
    if 5 in f:
        obj["immutable"] = bool(f[5][-1])
    return obj


def _serviceaccount(f: Fields) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    if 4 in f:
        obj["automountServiceAccountToken"] = bool(f[4][-1])
    return obj


def _token_request(f: Fields) -> dict[str, Any]:
    spec: dict[str, Any] = {}
    if 2 in f:
        s = parse(f[2][-1])
        if 1 in s:
            spec["audiences"] = _strs(s, 1)
        if 4 in s:
            spec["expirationSeconds"] = int(s[4][-1])
    return {"spec": spec}


def _only(f: Fields, known: set[int], what: str) -> None:
    """Refuse messages carrying fields we do not decode, rather than silently dropping them."""
    for n, values in f.items():
        if n not in known and any(v not in (0, b"") for v in values):
            raise ProtobufError(f"{what} field {n} is not supported in protobuf bodies; send JSON")


def _quantity(raw: bytes) -> str:
    return _str(parse(raw), 1) or "0"


def _container(raw: bytes) -> dict[str, Any]:
    f = parse(raw)
    _only(f, {1, 2, 3, 4, 5, 6, 7, 8, 13, 14, 16, 17, 18, 20}, "Container")
    c: dict[str, Any] = {}
    for n, key in ((1, "name"), (2, "image"), (5, "workingDir"), (13, "terminationMessagePath"),
                   (14, "imagePullPolicy"), (20, "terminationMessagePolicy")):  # fmt: skip
        if v := _str(f, n):
            c[key] = v
    for n, key in ((3, "command"), (4, "args")):
        if n in f:
            c[key] = _strs(f, n)
    ports = []
    for p in f.get(6, []):
        pf = parse(p)
        _only(pf, {1, 2, 3, 4, 5}, "ContainerPort")
        port: dict[str, Any] = {"containerPort": int((pf.get(3) or [0])[-1])}
        if name := _str(pf, 1):
            port["name"] = name
        if proto := _str(pf, 4):
            port["protocol"] = proto
        ports.append(port)
    if ports:
        c["ports"] = ports
    env = []
    for e in f.get(7, []):
        ef = parse(e)
        _only(ef, {1, 2}, "EnvVar")
        env.append({"name": _str(ef, 1) or "", "value": _str(ef, 2) or ""})
    if env:
        c["env"] = env
    if 8 in f:
        rf = parse(f[8][-1])
        _only(rf, {1, 2}, "ResourceRequirements")
        res: dict[str, Any] = {}
        for n, key in ((1, "limits"), (2, "requests")):
            if (m := _map(rf, n, _quantity)) is not None:
                res[key] = m
        c["resources"] = res
    for n, key in ((16, "stdin"), (17, "stdinOnce"), (18, "tty")):
        if f.get(n) and f[n][-1]:
            c[key] = True
    return c


def _pod(f: Fields) -> dict[str, Any]:
    _only(f, {1, 2, 3}, "Pod")
    spec: dict[str, Any] = {}
    if 2 in f:
        sf = parse(f[2][-1])
        _only(sf, {2, 3, 4, 6, 7, 8, 10}, "PodSpec")
        spec["containers"] = [_container(c) for c in sf.get(2, [])]
        for n, key in ((3, "restartPolicy"), (6, "dnsPolicy"), (8, "serviceAccountName"), (10, "nodeName")):
            if v := _str(sf, n):
                spec[key] = v
        if 4 in sf:
            spec["terminationGracePeriodSeconds"] = int(sf[4][-1])
        if (sel := _map(sf, 7, bytes.decode)) is not None:
            spec["nodeSelector"] = sel
    return {"spec": spec}


_KINDS: dict[tuple[str, str], Callable[[Fields], dict[str, Any]]] = {
    ("v1", "Namespace"): _namespace,
    ("v1", "ConfigMap"): _configmap,
    ("v1", "Secret"): _secret,
    ("v1", "ServiceAccount"): _serviceaccount,
    ("v1", "Pod"): _pod,
    ("authentication.k8s.io/v1", "TokenRequest"): _token_request,
}


def decode(body: bytes) -> dict[str, Any]:
    """The JSON form of a protobuf-encoded Namespace, ConfigMap, Secret or ServiceAccount."""
    if not body.startswith(MAGIC):
        raise ProtobufError("missing the k8s protobuf magic prefix")
    try:
        unknown = parse(body[len(MAGIC) :])
        type_meta = parse((unknown.get(1) or [b""])[-1])
        api_version, kind = _str(type_meta, 1) or "", _str(type_meta, 2) or ""
        decoder = _KINDS.get((api_version, kind))
        if decoder is None:
            raise ProtobufError(f"protobuf bodies of {api_version}/{kind} are not supported; send JSON")
        fields = parse((unknown.get(2) or [b""])[-1])
        obj = {"apiVersion": api_version, "kind": kind, "metadata": _meta((fields.get(1) or [b""])[-1])}
        obj.update(decoder(fields))
        return obj
    except ProtobufError:
        raise
    except (ValueError, TypeError) as exc:  # bad UTF-8, a varint where bytes belong, ...
        raise ProtobufError(f"malformed protobuf body: {exc}") from None
