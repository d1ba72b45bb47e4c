"""Patch engines: RFC 7386 merge patch, RFC 6902 JSON patch, strategic merge (pure, with Hypothesis)."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubeedge.apiserver import patch

scalars = st.one_of(st.integers(-5, 5), st.text(max_size=3), st.booleans())
json_values = st.recursive(
    scalars, lambda inner: st.dictionaries(st.text(max_size=3), inner, max_size=4) | st.lists(inner, max_size=3),
    max_leaves=12,
)  # fmt: skip
objects = st.dictionaries(st.text(max_size=3), json_values, max_size=5)


def _diff(src: dict[str, Any], dst: dict[str, Any]) -> dict[str, Any]:
    """A merge patch turning src into dst (nulls delete)."""
    out: dict[str, Any] = {k: None for k in src if k not in dst}
    for k, v in dst.items():
        if isinstance(v, dict) and isinstance(src.get(k), dict) and v:
            sub = _diff(src[k], v)
            if sub:
                out[k] = sub
        elif src.get(k, object()) != v or k not in src:
            out[k] = v
    return out


def _no_null_or_empty(v: Any) -> bool:
    if isinstance(v, dict):
        return bool(v) and all(_no_null_or_empty(x) for x in v.values())
    return v is not None


@given(objects, objects)
def test_merge_patch_from_diff_reaches_target(src: dict[str, Any], dst: dict[str, Any]) -> None:
    if not all(_no_null_or_empty(v) for v in dst.values()):
        return
    before = copy.deepcopy(src)
    assert patch.merge_patch(src, _diff(src, dst)) == dst
    assert src == before


@given(objects, objects)
def test_merge_patch_is_idempotent(src: dict[str, Any], p: dict[str, Any]) -> None:
    once = patch.merge_patch(src, p)
    assert patch.merge_patch(once, p) == once


@given(objects, st.text(max_size=4), json_values)
def test_json_patch_add_then_remove_restores(doc: dict[str, Any], key: str, value: Any) -> None:
    if key in doc:
        return
    ptr = "/" + key.replace("~", "~0").replace("/", "~1")
    added = patch.json_patch(
        doc, [{"op": "add", "path": ptr, "value": value}, {"op": "test", "path": ptr, "value": value}]
    )
    assert added[key] == value
    assert patch.json_patch(added, [{"op": "remove", "path": ptr}]) == doc


def test_json_patch_ops() -> None:
    doc = {"a": [1, 2], "b": {"c": 1}}
    out = patch.json_patch(doc, [
        {"op": "add", "path": "/a/-", "value": 3},
        {"op": "replace", "path": "/b/c", "value": 2},
        {"op": "copy", "from": "/b", "path": "/d"},
        {"op": "move", "from": "/a/0", "path": "/e"},
    ])  # fmt: skip
    assert out == {"a": [2, 3], "b": {"c": 2}, "d": {"c": 2}, "e": 1}
    for bad in ([{"op": "remove", "path": "/zz"}], [{"op": "test", "path": "/a", "value": 0}],
                [{"op": "nope", "path": "/a"}], {"op": "add"}, [{"op": "add", "path": "a", "value": 1}]):  # fmt: skip
        with pytest.raises(patch.PatchError):
            patch.json_patch(doc, bad)


def test_strategic_merge_by_merge_keys() -> None:
    pod = {
        "metadata": {"finalizers": ["a"]},
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "a:1",
                    "env": [{"name": "X", "value": "1"}],
                    "ports": [{"containerPort": 80}],
                },
                {"name": "side", "image": "s:1"},
            ],
            "tolerations": [{"key": "k"}],
        },
        "status": {
            "conditions": [{"type": "Ready", "status": "False"}, {"type": "Initialized", "status": "True"}]
        },
    }
    out = patch.strategic_merge("Pod", pod, {
        "metadata": {"finalizers": ["b"]},
        "spec": {
            "containers": [{"name": "app", "image": "a:2", "env": [{"name": "Y", "value": "2"}]},
                           {"name": "side", "$patch": "delete"}],
            "tolerations": [{"key": "new"}],
        },
        "status": {"conditions": [{"type": "Ready", "status": "True"}]},
    })  # fmt: skip
    app = out["spec"]["containers"][0]
    assert [c["name"] for c in out["spec"]["containers"]] == ["app"]
    assert app["image"] == "a:2"
    assert app["env"] == [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]
    assert app["ports"] == [{"containerPort": 80}]
    assert out["spec"]["tolerations"] == [{"key": "new"}]  # no merge key: replaced
    assert out["metadata"]["finalizers"] == ["a", "b"]
    assert {c["type"]: c["status"] for c in out["status"]["conditions"]} == {
        "Ready": "True",
        "Initialized": "True",
    }


def test_strategic_directives() -> None:
    node = {"status": {"addresses": [{"type": "InternalIP", "address": "1"}, {"type": "Hostname", "address": "h"}]},
            "spec": {"x": {"a": 1, "b": 2}}, "metadata": {"finalizers": ["a", "b"]}}  # fmt: skip
    out = patch.strategic_merge("Node", node, {
        "status": {"$setElementOrder/addresses": [{"type": "Hostname"}, {"type": "InternalIP"}],
                   "addresses": [{"type": "InternalIP", "address": "2"}]},
        "spec": {"x": {"$patch": "replace", "c": 3}},
        "metadata": {"$deleteFromPrimitiveList/finalizers": ["a"]},
    })  # fmt: skip
    assert out["status"]["addresses"] == [
        {"type": "Hostname", "address": "h"},
        {"type": "InternalIP", "address": "2"},
    ]
    assert out["spec"]["x"] == {"c": 3}
    assert out["metadata"]["finalizers"] == ["b"]
    svc = patch.strategic_merge("Service", {"spec": {"ports": [{"port": 80, "name": "a"}]}},
                                {"spec": {"ports": [{"port": 443, "name": "b"}]}})  # fmt: skip
    assert [p["port"] for p in svc["spec"]["ports"]] == [80, 443]
    with pytest.raises(patch.PatchError):
        patch.strategic_merge("Pod", {}, {"spec": {"containers": [{"image": "no-name"}]}})


@given(objects, objects)
def test_strategic_equals_merge_patch_without_lists(src: dict[str, Any], p: dict[str, Any]) -> None:
    def no_lists(v: Any) -> bool:
        if isinstance(v, dict):
            return all(no_lists(x) and not str(k).startswith("$") for k, x in v.items())
        return not isinstance(v, list)

    if not (no_lists(src) and no_lists(p)):
        return
    assert patch.strategic_merge("ConfigMap", src, p) == patch.merge_patch(src, p)
