"""The JSON codec: round trips, fuzzing, bounds, and golden wire documents from the upstream notes."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kubeedge.kit import limits
from kubeedge.proto import codec, resource, vocab
from kubeedge.proto.codec import CodecError
from kubeedge.proto.message import Header, Message, Route

from .conftest import messages

MAX = 1 << 20
FUZZ = settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_proto_bounds_mirror_kit_limits() -> None:
    assert codec.MAX_JSON_DEPTH == limits.MAX_JSON_DEPTH
    assert resource.MAX_RESOURCE_CHARS == limits.MAX_RESOURCE_CHARS


# --- round trips -------------------------------------------------------------------------------------


@given(messages)
@settings(max_examples=300, deadline=None)
def test_round_trip(msg: Message) -> None:
    data = codec.encode(msg)
    assert codec.decode(data, max_size=MAX) == msg
    assert codec.decode(data.decode("utf-8"), max_size=MAX) == msg


@given(messages)
@settings(max_examples=200, deadline=None)
def test_encoding_is_valid_utf8_json_with_upstream_presence_rules(msg: Message) -> None:
    doc = json.loads(codec.encode(msg).decode("utf-8"))
    assert list(doc) == ["header", "route", "content"]
    header = doc["header"]
    assert header["msg_id"] == msg.header.msg_id
    assert header["timestamp"] == msg.header.timestamp
    assert "sync" not in header
    for key, value in [
        ("parent_msg_id", msg.header.parent_msg_id),
        ("resourceversion", msg.header.resource_version),
        ("type", msg.header.message_type),
    ]:
        assert (key in header) == bool(value)
    for key in ["source", "destination", "group", "operation", "resource"]:
        assert (key in doc["route"]) == bool(getattr(msg.route, key))


def test_sync_is_never_written_and_never_read() -> None:
    msg = Message(Header("id-1", 5, sync=True), Route(), "x")
    data = codec.encode(msg)
    assert b"sync" not in data
    assert codec.decode(data, max_size=MAX).header.sync is False
    wire = b'{"header":{"msg_id":"a","timestamp":1,"sync":true},"route":{},"content":null}'
    assert codec.decode(wire, max_size=MAX).header.sync is False


def test_go_html_escaping_and_lone_surrogates() -> None:
    msg = Message(Header("a", 1), Route(), {"k": "<a&b>\u2028\u2029"})
    assert codec.encode(msg).endswith(b'"content":{"k":"\\u003ca\\u0026b\\u003e\\u2028\\u2029"}}')
    odd = Message(Header("a", 1), Route(), "\ud800x")
    data = codec.encode(odd)
    data.decode("utf-8")
    assert codec.decode(data, max_size=MAX) == odd


def test_decode_is_tolerant_like_go() -> None:
    wire = (
        '{"Header":{"MSG_ID":"m","Timestamp":7,"parent_msg_id":null,"extra":[1]},'
        '"ROUTE":{"Source":"edged","group":"meta","unknown":"x"},"more":{"deep":1}}'
    )
    msg = codec.decode(wire, max_size=MAX)
    assert msg == Message(Header("m", 7), Route(source="edged", group="meta"), None)
    # route missing entirely, exact key wins over a case-folded one that comes first
    msg = codec.decode('{"header":{"MSG_ID":"x","msg_id":"y"}}', max_size=MAX)
    assert msg.header.msg_id == "y"
    assert msg.route == Route()


# --- bad input ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (b"\xff\xfe", "UTF-8"),
        ("\ud800", "surrogate"),
        (b"{", "invalid JSON"),
        (b"[]", "JSON object"),
        (b"null", "JSON object"),
        (b"{}", "msg_id"),
        (b'{"header":{"msg_id":""}}', "msg_id"),
        (b'{"header":{"msg_id":5}}', "header.msg_id must be a string"),
        (b'{"header":[]}', "header must be an object"),
        (b'{"header":{"msg_id":"a","timestamp":1.0}}', "timestamp"),
        (b'{"header":{"msg_id":"a","timestamp":"1"}}', "timestamp"),
        (b'{"header":{"msg_id":"a","timestamp":true}}', "timestamp"),
        (b'{"header":{"msg_id":"a","timestamp":9223372036854775808}}', "int64"),
        (b'{"header":{"msg_id":"a","sync":"yes"}}', "sync"),
        (b'{"header":{"msg_id":"a"},"route":"x"}', "route must be an object"),
        (b'{"header":{"msg_id":"a"},"route":{"group":1}}', "route.group"),
        (b'{"header":{"msg_id":"a"},"content":NaN}', "NaN"),
        (b'{"header":{"msg_id":"a"},"content":-Infinity}', "Infinity"),
        (b'{"header":{"msg_id":"a"},"content":' + b"9" * 5000 + b"}", "invalid JSON"),
    ],
)
def test_bad_input_is_a_codec_error(data: bytes | str, needle: str) -> None:
    with pytest.raises(CodecError, match=needle):
        codec.decode(data, max_size=MAX)


@pytest.mark.parametrize("bad", [None, 5, 1.5, ["x"], {"header": {}}, memoryview(b"{}")])
def test_non_frame_types_are_a_codec_error(bad: Any) -> None:
    with pytest.raises(CodecError, match="bytes or str"):
        codec.decode(bad, max_size=MAX)


def test_oversized_input_is_rejected_before_parsing() -> None:
    # Not JSON at all: only a size check that runs before parsing can say "over the limit".
    for data in (b"\xff" * 101, "x" * 101, "\u00e9" * 51):
        with pytest.raises(CodecError, match="over the limit of 100"):
            codec.decode(data, max_size=100)
    ok = codec.encode(Message(Header("a", 1), Route(), None))
    assert codec.decode(ok, max_size=len(ok)).msg_id == "a"
    with pytest.raises(CodecError, match="over the limit"):
        codec.decode(ok, max_size=len(ok) - 1)


def test_encode_limits_and_bad_content() -> None:
    with pytest.raises(CodecError, match="over the limit"):
        codec.encode(Message(Header("a", 1), Route(), "x" * 100), max_size=50)
    for content in (float("nan"), {1: object()}, {"s": {1, 2}}):
        with pytest.raises(CodecError, match="JSON"):
            codec.encode(Message(Header("a", 1), Route(), content))
    cyclic: list[Any] = []
    cyclic.append(cyclic)
    with pytest.raises(CodecError):
        codec.encode(Message(Header("a", 1), Route(), cyclic))
    deep: Any = "leaf"
    for _ in range(100_000):
        deep = [deep]
    with pytest.raises(CodecError):
        codec.encode(Message(Header("a", 1), Route(), deep))


@pytest.mark.parametrize(
    "text",
    [
        "[" * 65,
        "{" * 200_000,
        '{"a":' * 70 + "1" + "}" * 70,
        '{"header":{"msg_id":"a"},"content":' + "[" * 65 + "]" * 65 + "}",
        '"\\"\\"' * 50_000 + "[" * 100,
    ],
)
def test_deep_nesting_is_rejected(text: str) -> None:
    with pytest.raises(CodecError):
        codec.decode(text, max_size=4 * limits.MiB)


def test_depth_bound_is_exact_and_ignores_brackets_in_strings() -> None:
    inner = "[" * 63 + "]" * 63  # the content array is at depth 1 + 63 = 64
    msg = codec.decode('{"header":{"msg_id":"a"},"content":' + inner + "}", max_size=MAX)
    assert msg.content is not None
    with pytest.raises(CodecError, match="deeper than the limit of 64"):
        codec.decode('{"header":{"msg_id":"a"},"content":[' + inner + "]}", max_size=MAX)
    strings = json.dumps("[{" * 500)
    assert (
        codec.decode('{"header":{"msg_id":"a"},"content":' + strings + "}", max_size=MAX).content
        == "[{" * 500
    )
    with pytest.raises(CodecError, match="deeper than the limit of 2"):
        codec.decode('{"header":{"msg_id":"a"},"content":[[]]}', max_size=MAX, max_depth=2)


# --- fuzz ---------------------------------------------------------------------------------------------


JSON_SAMPLES: list[Any] = [
    None,
    True,
    False,
    0,
    -1,
    2**63,
    1.5,
    "",
    "x",
    "\ud800",
    [],
    [1, "a"],
    {},
    {"msg_id": "m"},
    {"msg_id": 1, "timestamp": "t"},
    {"MSG_ID": "m", "TIMESTAMP": 2**64},
    {"source": [], "group": None},
    {"a": {"b": [{"c": None}]}},
]
"""One value of every JSON type and the near-misses that matter, cheap to draw 2000 times."""


def _decode_or_codec_error(data: Any) -> None:
    try:
        msg = codec.decode(data, max_size=64 * 1024)
    except CodecError:
        return
    # Whatever decodes must encode again and decode to the same message.
    assert codec.decode(codec.encode(msg), max_size=1 << 20) == msg


@given(st.binary(max_size=512))
@FUZZ
def test_fuzz_arbitrary_bytes(data: bytes) -> None:
    _decode_or_codec_error(data)


_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=6)
_KEYS = st.sampled_from(["header", "route", "content", "msg_id", "timestamp", "Header", "x"]) | st.text(
    max_size=4
)
_FLAT_JSON = (
    _SCALARS
    | st.lists(_SCALARS, max_size=3)
    | st.dictionaries(_KEYS, _SCALARS | st.dictionaries(_KEYS, _SCALARS, max_size=3), max_size=3)
)


@given(_FLAT_JSON)
@FUZZ
def test_fuzz_arbitrary_json_values(value: Any) -> None:
    _decode_or_codec_error(json.dumps(value))


@given(
    st.sampled_from(JSON_SAMPLES),
    st.sampled_from(JSON_SAMPLES),
    st.sampled_from(JSON_SAMPLES),
    st.sampled_from(["header", "route", "content"]),
)
@FUZZ
def test_fuzz_wrong_types_in_every_field(header: Any, route: Any, content: Any, drop: str) -> None:
    doc = {"header": header, "route": route, "content": content}
    del doc[drop]
    _decode_or_codec_error(json.dumps(doc))
    if isinstance(header, dict):
        for key in ["msg_id", "timestamp", "parent_msg_id", "resourceversion", "sync", "type"]:
            _decode_or_codec_error(json.dumps({"header": {"msg_id": "a", key: content}, "route": route}))


BASE_MESSAGES: list[bytes] = [
    codec.encode(
        Message(Header("m1", 1717000000000), Route("websocket", "resource", "keepalive", "node"), "ping")
    ),
    codec.encode(
        Message(
            Header("m2", 1, parent_msg_id="p", resource_version="9", message_type="t"),
            Route("edgecontroller", "resource", "response", "default/pod/a", "edged"),
            {
                "Object": {"metadata": {"name": "a", "labels": {"k": "v"}}, "spec": [1, 2.5, None]},
                "Err": None,
            },
        )
    ),
    codec.encode(Message(Header("m3", -5), Route(), ["\u00e9\ud83d\ude00", {"<&>": True}])),
]
"""Valid encodings to mutate: cheaper to draw than generated messages, and they cover every field."""


MUTATIONS = st.lists(
    st.tuples(
        st.sampled_from(["flip", "delete", "insert", "truncate"]),
        st.integers(0, 1 << 16),
        st.sampled_from([b"{", b"[", b'"', b"\\", b",", b":", b"\xc3", b"null", b"\x01", b"1e999"]),
    ),
    min_size=1,
    max_size=4,
)


@given(st.sampled_from(BASE_MESSAGES), MUTATIONS)
@FUZZ
def test_fuzz_mutated_valid_messages(encoded: bytes, mutations: list[tuple[str, int, bytes]]) -> None:
    raw = bytearray(encoded)
    for action, where, chunk in mutations:
        pos = where % max(len(raw), 1)
        if action == "flip" and raw:
            raw[pos] ^= 1 << (where % 8)
        elif action == "delete" and raw:
            del raw[pos]
        elif action == "insert":
            raw[pos:pos] = chunk
        else:
            del raw[pos:]
    _decode_or_codec_error(bytes(raw))
    _decode_or_codec_error(bytes(raw).decode("utf-8", "replace"))


# --- golden documents from the wire notes ---------------------------------------------------------------


def _golden(msg: Message, expected: str) -> None:
    assert codec.encode(msg) == expected.encode("utf-8")
    assert codec.decode(expected, max_size=MAX) == msg


def test_golden_section1_example() -> None:
    msg = Message(
        Header(
            "6a8d6f70-0000-4000-8000-000000000001",
            1717000000000,
            parent_msg_id="req-1",
            resource_version="12345",
        ),
        Route(source="edgecontroller", group="resource", operation="insert", resource="default/pod/nginx"),
        {"apiVersion": "v1", "kind": "Pod"},
    )
    _golden(
        msg,
        '{"header":{"msg_id":"6a8d6f70-0000-4000-8000-000000000001","parent_msg_id":"req-1",'
        '"timestamp":1717000000000,"resourceversion":"12345"},'
        '"route":{"source":"edgecontroller","group":"resource","operation":"insert","resource":"default/pod/nginx"},'
        '"content":{"apiVersion":"v1","kind":"Pod"}}',
    )


def test_golden_keepalive() -> None:
    msg = Message.new(
        source=vocab.KEEPALIVE_SOURCE,
        group=vocab.Group.RESOURCE,
        operation=vocab.Operation.KEEPALIVE,
        resource=vocab.KEEPALIVE_RESOURCE,
        content=vocab.KEEPALIVE_CONTENT,
        now_ms=1717000000123,
        msg_id="k1",
    )
    _golden(
        msg,
        '{"header":{"msg_id":"k1","timestamp":1717000000123},'
        '"route":{"source":"websocket","group":"resource","operation":"keepalive","resource":"node"},'
        '"content":"ping"}',
    )


def test_golden_membership_update() -> None:
    content = {
        "event_id": "e1",
        "timestamp": 1717000000000,
        "added_devices": [{"id": "default/sensor", "name": "sensor", "description": ""}],
        "removed_devices": None,
    }
    msg = Message(
        Header("m1", 1717000000000),
        Route(source="devicecontroller", group="twin", operation="update", resource="membership"),
        content,
    )
    _golden(
        msg,
        '{"header":{"msg_id":"m1","timestamp":1717000000000},'
        '"route":{"source":"devicecontroller","group":"twin","operation":"update","resource":"membership"},'
        '"content":{"event_id":"e1","timestamp":1717000000000,'
        '"added_devices":[{"id":"default/sensor","name":"sensor","description":""}],"removed_devices":null}}',
    )
    assert resource.parse_wire(msg.route.resource).shape is resource.Shape.MEMBERSHIP


def test_golden_twin_edge_updated_and_its_internal_form() -> None:
    key = resource.ResourceKey.device("default", "sensor", "twin/edge_updated")
    msg = Message(
        Header("t1", 1717000000000),
        Route(source="twin", group="resource", operation="update", resource=key.wire),
        {"event_id": "e2", "timestamp": 1717000000000, "twin": {"temp": {"actual": {"value": "23"}}}},
    )
    _golden(
        msg,
        '{"header":{"msg_id":"t1","timestamp":1717000000000},'
        '"route":{"source":"twin","group":"resource","operation":"update",'
        '"resource":"device/default/sensor/twin/edge_updated"},'
        '"content":{"event_id":"e2","timestamp":1717000000000,"twin":{"temp":{"actual":{"value":"23"}}}}}',
    )
    internal = resource.add_node_prefix(msg.route.resource, "edge-1")
    assert internal == "node/edge-1/device/default/sensor/twin/edge_updated"
    assert resource.strip_node_prefix(internal) == ("edge-1", msg.route.resource)


def test_golden_object_resp_reply() -> None:
    query = Message(
        Header("q1", 1717000000000),
        Route(source="edged", group="meta", operation="query", resource="kube-node-lease/lease/edge-1"),
        None,
    )
    lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "edge-1"}}
    reply = Message(
        Header("r1", 1717000000500, parent_msg_id=query.msg_id, resource_version="77"),
        Route(source="edgecontroller", group="resource", operation="response", resource=query.route.resource),
        codec.ObjectResp(object=lease, err=None).to_json(),
    )
    _golden(
        reply,
        '{"header":{"msg_id":"r1","parent_msg_id":"q1","timestamp":1717000000500,"resourceversion":"77"},'
        '"route":{"source":"edgecontroller","group":"resource","operation":"response",'
        '"resource":"kube-node-lease/lease/edge-1"},'
        '"content":{"Object":{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"edge-1"}},'
        '"Err":null}}',
    )
    assert codec.ObjectResp.from_json({"object": lease, "err": "boom"}) == codec.ObjectResp(lease, "boom")


def test_golden_edge_local_connect() -> None:
    msg = Message.new(
        source=vocab.CONNECT_SOURCE,
        group=vocab.EdgeGroup.META,
        operation=vocab.CONNECT_OPERATION,
        resource=vocab.CONNECT_RESOURCE,
        content=vocab.CLOUD_CONNECTED,
        now_ms=1,
        msg_id="c1",
    )
    _golden(
        msg,
        '{"header":{"msg_id":"c1","timestamp":1},'
        '"route":{"source":"edgehub","group":"meta","operation":"connect","resource":"node/connection"},'
        '"content":"cloud_connected"}',
    )
    assert resource.parse(msg.route.resource).shape is resource.Shape.CONNECTION


def test_reply_follows_new_resp_by_message() -> None:
    req = Message(
        Header("q", 1, message_type="channel"), Route("edged", "meta", "query", "ns/configmap/c"), None
    )
    resp = req.reply(vocab.ACK_CONTENT, now_ms=2)
    assert resp.parent_msg_id == "q"
    assert resp.msg_id != "q"
    assert resp.route == Route("edged", "meta", "response", "ns/configmap/c")
    assert resp.header.message_type == "channel"
    assert b'"content":"OK"' in codec.encode(resp)


# --- case-lenient Go structs -----------------------------------------------------------------------------


def test_lenient_get_prefers_exact_then_last_fold() -> None:
    assert codec.lenient_get({"object": 1, "Object": 2}, "Object") == 2
    assert codec.lenient_get({"OBJECT": 1, "object": 3}, "Object") == 3
    assert codec.lenient_get({"x": 1}, "Object", "d") == "d"


def test_legacy_status_shapes_round_trip() -> None:
    pod = codec.LegacyPodStatus.from_json({"uid": "u1", "NAME": "p", "status": {"phase": "Running"}})
    assert pod == codec.LegacyPodStatus("u1", "p", {"phase": "Running"})
    assert pod.to_json() == {"UID": "u1", "Name": "p", "Status": {"phase": "Running"}}
    assert codec.LegacyPodStatus.from_json(pod.to_json()) == pod
    node = codec.LegacyNodeStatus.from_json(
        {"UID": "n", "Status": {"phase": "x"}, "extendresources": {"a": []}}
    )
    assert node.extend_resources == {"a": []}
    assert codec.LegacyNodeStatus.from_json(node.to_json()) == node
    state = codec.DeviceState.from_json({"state": "online", "lastOnlineTime": "2026-01-01T00:00:00Z"})
    assert state == codec.DeviceState("online", "2026-01-01T00:00:00Z")
    assert codec.DeviceState.from_json(state.to_json()) == state
    for bad in (None, [], "x", {"UID": 5}, {"Status": "no"}):
        with pytest.raises(CodecError):
            codec.LegacyPodStatus.from_json(bad)
    with pytest.raises(CodecError):
        codec.ObjectResp.from_json([1])


def test_out_of_range_number_literals_are_a_codec_error() -> None:
    # Found by the mutation fuzzer: 1e999 parsed to inf, which could not be encoded again.
    doc = '{"header":{"msg_id":"a","timestamp":1},"route":{},"content":{"v":1e999}}'
    with pytest.raises(CodecError, match="out of range"):
        codec.decode(doc, max_size=MAX)
