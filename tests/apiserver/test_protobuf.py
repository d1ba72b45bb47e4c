"""The Kubernetes protobuf envelope decoder: round trips of hand-built messages and clean failures."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubeedge.apiserver import protobuf


def _field(n: int, payload: bytes) -> bytes:
    return _varint(n << 3 | 2) + _varint(len(payload)) + payload


def _varint(v: int) -> bytes:
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def _entry(n: int, k: str, v: bytes) -> bytes:
    return _field(n, _field(1, k.encode()) + _field(2, v))


def test_configmap_round_trip() -> None:
    meta = _field(1, b"cfg") + _field(3, b"ns") + _entry(11, "app", b"x")
    obj = _field(1, meta) + _entry(2, "k", b"v") + _entry(3, "bin", b"\x00\x01")
    body = protobuf.MAGIC + _field(1, _field(1, b"v1") + _field(2, b"ConfigMap")) + _field(2, obj)
    assert protobuf.decode(body) == {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cfg", "namespace": "ns", "labels": {"app": "x"}},
        "data": {"k": "v"}, "binaryData": {"bin": "AAE="},
    }  # fmt: skip


def test_unsupported_kind_and_garbage() -> None:
    body = protobuf.MAGIC + _field(1, _field(1, b"apps/v1") + _field(2, b"Deployment"))
    with pytest.raises(protobuf.ProtobufError, match="send JSON"):
        protobuf.decode(body)
    with pytest.raises(protobuf.ProtobufError):
        protobuf.decode(b"{}")
    with pytest.raises(protobuf.ProtobufError):
        protobuf.decode(protobuf.MAGIC + b"\x0a\xff\xff")


def test_pod_with_unsupported_field_is_refused_not_trimmed() -> None:
    container = (
        _field(1, b"c") + _field(2, b"img") + _field(9, _field(1, b"vol"))
    )  # volumeMounts: unsupported
    spec = _field(2, container)
    body = (
        protobuf.MAGIC
        + _field(1, _field(1, b"v1") + _field(2, b"Pod"))
        + _field(2, _field(1, b"") + _field(2, spec))
    )
    with pytest.raises(protobuf.ProtobufError, match="Container field 9"):
        protobuf.decode(body)
    ok = _field(2, _field(2, _field(1, b"c") + _field(2, b"img")))
    pod = protobuf.decode(protobuf.MAGIC + _field(1, _field(1, b"v1") + _field(2, b"Pod")) + _field(2, ok))
    assert pod["spec"] == {"containers": [{"name": "c", "image": "img"}]}


@given(st.binary(max_size=64))
def test_random_bytes_fail_cleanly(data: bytes) -> None:
    with contextlib.suppress(protobuf.ProtobufError):
        protobuf.decode(protobuf.MAGIC + data)
