"""Pure parsing of resources and cloud answers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as hs

from kubeedge.edge.metamanager import resources as res


def test_parse_resource() -> None:
    r = res.Resource.parse("default/pod/nginx")
    assert (r.namespace, r.type, r.name) == ("default", "pod", "nginx")
    assert res.Resource.parse("default/pod").name == ""
    assert res.Resource.parse("null/node/edge-1").namespace == "null"
    assert res.Resource.parse("ns/device/a/b").name == "a/b"


@pytest.mark.parametrize(
    "bad", ["", "pod", "/pod/x", "ns//x", "ns/pod/", "ns/" + "t" * 40 + "/x", "a/b/" + "c" * 300]
)
def test_parse_rejects(bad: str) -> None:
    with pytest.raises(ValueError, match="resource"):
        res.Resource.parse(bad)


@given(hs.text(max_size=300))
def test_parse_never_crashes(text: str) -> None:
    try:
        r = res.Resource.parse(text)
    except ValueError:
        return
    rebuilt = f"{r.namespace}/{r.type}" + (f"/{r.name}" if r.name else "")
    assert rebuilt == text == r.raw


def test_resource_version_and_uid() -> None:
    obj = {"metadata": {"resourceVersion": "12", "uid": "u-1"}}
    assert res.resource_version_of("", obj) == "12"
    assert res.resource_version_of("15", obj) == "15"
    assert res.resource_version_of("", "text") == ""
    with pytest.raises(ValueError, match="resourceVersion"):
        res.resource_version_of("", {"metadata": {"resourceVersion": 12}})
    assert res.uid_of(obj) == "u-1"
    assert res.uid_of({"gracePeriodSeconds": 0, "preconditions": {"uid": "u-2"}}) == "u-2"
    assert res.uid_of({"UID": "u-3", "Status": {}}) == "u-3"
    assert res.uid_of(None) == ""


def test_decode_answer() -> None:
    cm = {"kind": "ConfigMap"}
    assert res.decode_answer("response", {"Object": cm, "Err": None}) == res.RemoteAnswer(cm)
    assert res.decode_answer("response", {"object": cm}) == res.RemoteAnswer(cm)
    assert res.decode_answer("response", cm) == res.RemoteAnswer(cm)
    assert res.decode_answer("response", {"Object": None, "Err": {}}).error == "remote error"
    assert res.decode_answer("response", {"Object": None, "Err": "boom"}).error == "boom"
    nf = {"ErrStatus": {"message": 'configmaps "c" not found', "code": 404}}
    assert res.decode_answer("response", nf).error == 'configmaps "c" not found'
    assert res.decode_answer("response", {"Err": nf}).error == 'configmaps "c" not found'
    assert res.decode_answer("error", "link lost") == res.RemoteAnswer(None, "link lost")


def test_meta_v2_ref() -> None:
    ref = res.meta_v2_ref(res.Resource.parse("null/persistentvolume/pv1"))
    assert ref is not None
    assert ref.key == "/core/v1/persistentvolumes/null/pv1"
    assert res.meta_v2_ref(res.Resource.parse("default/podstatus/p")) is None
    assert res.meta_v2_ref(res.Resource.parse("default/pod")) is None
