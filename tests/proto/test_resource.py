"""Resource keys: both spellings, the special shapes, CloudHub's prefix rule and rejection of bad keys."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kubeedge.proto import resource, vocab
from kubeedge.proto.resource import ResourceError, ResourceKey, Shape

TOKEN = st.text(
    st.characters(codec="utf-8", exclude_characters="/", min_codepoint=0x20, exclude_categories=["Cs"]),
    min_size=1,
    max_size=20,
).filter(lambda t: t not in {".", ".."} and "\x7f" not in t)


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("default/pod/nginx", ResourceKey(Shape.OBJECT, "default", "pod", "nginx")),
        ("null/node/edge-1", ResourceKey(Shape.OBJECT, "null", "node", "edge-1")),
        ("default/podstatus", ResourceKey(Shape.OBJECT, "default", "podstatus")),
        ("kube-node-lease/lease/edge-1", ResourceKey(Shape.OBJECT, "kube-node-lease", "lease", "edge-1")),
        (
            "device/ns/d1/twin/edge_updated",
            ResourceKey(Shape.DEVICE, "ns", name="d1", event="twin/edge_updated"),
        ),
        ("device/d1/twin/cloud_updated", ResourceKey(Shape.DEVICE, name="d1", event="twin/cloud_updated")),
        ("device/ns/d1/state/update", ResourceKey(Shape.DEVICE, "ns", name="d1", event="state/update")),
        ("membership", ResourceKey(Shape.MEMBERSHIP)),
        ("membership/detail", ResourceKey(Shape.MEMBERSHIP_DETAIL)),
        ("k8s/ca.crt", ResourceKey(Shape.CA_CERT)),
        ("node/connection", ResourceKey(Shape.CONNECTION)),
        ("node", ResourceKey(Shape.NODE)),
    ],
)
def test_wire_shapes_parse_and_format_back(text: str, key: ResourceKey) -> None:
    assert resource.parse_wire(text) == key
    assert resource.parse(text) == key
    assert key.wire == text
    assert str(key) == text
    internal = resource.add_node_prefix(text, "edge-1")
    parsed = resource.parse(internal)
    assert parsed == key.with_node("edge-1")
    assert parsed.internal == internal == str(parsed)
    assert resource.parse_internal(internal) == parsed
    assert resource.strip_node_prefix(internal) == ("edge-1", text)


def test_internal_forms_from_the_notes() -> None:
    key = resource.parse("node/edge-1/default/pod/nginx")
    assert (key.node, key.namespace, key.type, key.name) == ("edge-1", "default", "pod", "nginx")
    assert key.type == vocab.ResourceType.POD
    assert key.wire == "default/pod/nginx"
    assert resource.parse("node/edge-1/null/node/edge-1").cluster_scoped
    twin = resource.parse("node/edge-1/device/ns/d/twin/edge_updated")
    assert twin.shape is Shape.DEVICE
    assert twin.wire == "device/ns/d/twin/edge_updated"
    assert resource.lease_key("edge-1").wire == "kube-node-lease/lease/edge-1"
    assert resource.node_key("edge-1").wire == "null/node/edge-1"
    assert ResourceKey.fixed(Shape.MEMBERSHIP, node="n").internal == "node/n/membership"


def test_strip_node_prefix_is_cloudhubs_string_rule() -> None:
    assert resource.strip_node_prefix("node/n1/default/pod/p") == ("n1", "default/pod/p")
    assert resource.strip_node_prefix("node/n1/membership") == ("n1", "membership")
    assert resource.strip_node_prefix("node/n1/") == ("n1", "")  # three tokens, the last empty
    # fewer than three tokens, or not starting with the token "node": unchanged
    for text in ("node", "node/connection", "nodes/a/b", "default/node/n1", ""):
        assert resource.strip_node_prefix(text) == ("", text)


@given(TOKEN, TOKEN, TOKEN, st.one_of(st.just(""), TOKEN))
@settings(max_examples=200, deadline=None)
def test_object_keys_round_trip(node: str, ns: str, kind: str, name: str) -> None:
    key = ResourceKey.object(ns, kind, name, node=node)
    assert resource.parse_internal(key.internal) == key
    assert resource.add_node_prefix(key.wire, node) == key.internal
    assert resource.strip_node_prefix(key.internal) == (node, key.wire)


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "namespace"),
        ("default", "expected"),
        ("default//nginx", "empty type"),
        ("/pod/nginx", "empty namespace"),
        ("default/pod/", "empty name"),
        ("a/b/c/d", "expected"),
        ("default/pod/..", "not a name"),
        ("default/pod/ng\x00inx", "control character"),
        ("default/pod/ng\ninx", "control character"),
        ("default/pod/" + "x" * 254, "over 253"),
        ("x" * 1025, "over the limit"),
        ("device/ns/d//edge_updated", "empty"),
    ],
)
def test_bad_keys_are_rejected(text: str, needle: str) -> None:
    with pytest.raises(ResourceError, match=needle):
        resource.parse(text)


def test_bad_constructions_are_rejected() -> None:
    with pytest.raises(ResourceError, match="no node"):
        _ = resource.parse_wire("default/pod/p").internal
    with pytest.raises(ResourceError, match="prefix"):
        resource.parse_internal("default/pod/p")
    with pytest.raises(ResourceError, match="contains '/'"):
        resource.add_node_prefix("default/pod/p", "a/b")
    with pytest.raises(ResourceError, match="empty node"):
        resource.add_node_prefix("default/pod/p", "")
    with pytest.raises(ResourceError, match="contains '/'"):
        ResourceKey.object("default", "pod", "a/b")
    with pytest.raises(ResourceError, match="device"):
        ResourceKey.device("ns", "d", "edge_updated")
    with pytest.raises(ResourceError, match="fixed"):
        ResourceKey.fixed(Shape.OBJECT)
    with pytest.raises(ResourceError, match="string"):
        resource.parse(5)  # type: ignore[arg-type]


@given(st.text(max_size=80))
@settings(max_examples=500, deadline=None)
def test_fuzz_parse_raises_only_resource_error(text: str) -> None:
    try:
        key = resource.parse(text)
    except ResourceError:
        return
    assert str(key) == text


def test_vocabulary_values_are_upstream_spelling() -> None:
    assert vocab.Operation("applicationResponse") is vocab.Operation.APPLICATION_RESPONSE
    assert vocab.Operation.parse("nonsense") is None
    assert vocab.Operation.parse("keepalive") == "keepalive"
    assert vocab.EdgeModule.EDGEHUB == "websocket"
    assert vocab.CloudModule.CLOUDSTREAM == "cloudStream"
    assert {g.value for g in vocab.Group} == {
        "resource",
        "twin",
        "user",
        "meta",
        "func",
        "taskmanager",
        "hub",
    }
    assert vocab.CONNECT_RESOURCE == "node/connection"
    assert (vocab.CLOUD_CONNECTED, vocab.CLOUD_DISCONNECTED) == ("cloud_connected", "cloud_disconnected")
    assert f"{vocab.ResourceType.SERVICE_ACCOUNT_TOKEN}" == "serviceaccounttoken"
