"""MQTT 3.1.1 codec: round trips, incremental decoding, bounds, malformed input, topic rules."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubeedge.kit import limits
from kubeedge.proto import mqtt

# Characters the codec accepts in topics: no wildcards, no controls, no surrogates or non-characters.
_topic_chars = st.characters(
    blacklist_categories=("Cs", "Cc"),
    blacklist_characters="+#\ufffe\uffff",
)
_level = st.text(_topic_chars.filter(lambda c: c != "/"), max_size=8)
topics = (
    st.lists(_level, min_size=1, max_size=6)
    .map("/".join)
    .filter(
        lambda t: (
            t != ""
            and len(t.encode()) <= mqtt.MAX_TOPIC_BYTES
            and not any(0xFDD0 <= ord(c) <= 0xFDEF for c in t)
        )
    )
)
filters = (
    st.lists(st.one_of(_level, st.just("+")), min_size=1, max_size=6)
    .flatmap(lambda levels: st.sampled_from(["/".join(levels), "/".join([*levels, "#"])]))
    .filter(lambda t: bool(t) and not any(0xFDD0 <= ord(c) <= 0xFDEF for c in t))
)
pids = st.integers(1, 0xFFFF)
client_ids = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=40)


@st.composite
def publishes(draw: st.DrawFn) -> mqtt.Publish:
    qos = draw(st.integers(0, 2))
    return mqtt.Publish(
        draw(topics),
        draw(st.binary(max_size=64)),
        qos,
        draw(st.booleans()),
        draw(st.booleans()) if qos else False,
        draw(pids) if qos else None,
    )


@st.composite
def connects(draw: st.DrawFn) -> mqtt.Connect:
    will = draw(
        st.none() | st.builds(mqtt.Will, topics, st.binary(max_size=16), st.integers(0, 2), st.booleans())
    )
    username = draw(st.none() | st.text(_topic_chars, max_size=10))
    password = draw(st.none() | st.binary(max_size=10)) if username is not None else None
    return mqtt.Connect(
        draw(client_ids), draw(st.booleans()), draw(st.integers(0, 0xFFFF)), will, username, password
    )


packets = st.one_of(
    connects(),
    st.builds(mqtt.ConnAck, st.booleans(), st.integers(0, 5)),
    publishes(),
    st.builds(mqtt.PubAck, pids),
    st.builds(mqtt.PubRec, pids),
    st.builds(mqtt.PubRel, pids),
    st.builds(mqtt.PubComp, pids),
    st.builds(
        mqtt.Subscribe,
        pids,
        st.lists(st.tuples(filters, st.integers(0, 2)), min_size=1, max_size=4).map(tuple),
    ),
    st.builds(
        mqtt.SubAck, pids, st.lists(st.sampled_from([0, 1, 2, 0x80]), min_size=1, max_size=4).map(tuple)
    ),
    st.builds(mqtt.Unsubscribe, pids, st.lists(filters, min_size=1, max_size=4).map(tuple)),
    st.builds(mqtt.UnsubAck, pids),
    st.just(mqtt.PingReq()),
    st.just(mqtt.PingResp()),
    st.just(mqtt.Disconnect()),
)


def test_limits_mirror_the_codec() -> None:
    assert mqtt.MAX_TOPIC_BYTES == limits.MQTT_MAX_TOPIC_BYTES
    assert mqtt.MAX_CLIENT_ID_BYTES == limits.MQTT_MAX_CLIENT_ID_BYTES


@given(st.lists(packets, min_size=1, max_size=5), st.integers(1, 7))
def test_round_trip_whole_and_byte_by_byte(items: list[mqtt.Packet], chunk: int) -> None:
    wire = b"".join(mqtt.encode(p) for p in items)
    assert mqtt.Decoder(1 << 20).feed(wire) == items
    decoder = mqtt.Decoder(1 << 20)
    out: list[mqtt.Packet] = []
    for start in range(0, len(wire), chunk):
        out += decoder.feed(wire[start : start + chunk])
    assert out == items
    assert decoder.buffered == 0


@given(st.binary(max_size=300))
def test_arbitrary_bytes_raise_only_malformed(data: bytes) -> None:
    decoder = mqtt.Decoder(256)
    try:
        for packet in decoder.feed(data):
            mqtt.encode(packet)  # decoded packets obey the encoder's rules too
    except mqtt.MalformedPacketError:
        with pytest.raises(mqtt.MalformedPacketError):
            decoder.feed(b"\xc0\x00")  # poisoned: the connection must go
    assert decoder.buffered <= 256 + 5


@given(publishes(), st.binary(min_size=1, max_size=4), st.integers(0, 30))
def test_mutated_packets_raise_only_malformed(pub: mqtt.Publish, noise: bytes, at: int) -> None:
    wire = bytearray(mqtt.encode(pub))
    at = at % len(wire)
    wire[at : at + len(noise)] = noise
    try:
        decoded = mqtt.Decoder(1 << 16).feed(bytes(wire))
    except mqtt.MalformedPacketError:
        return
    # Whatever decodes is a valid packet: it encodes back to the bytes it came from.
    assert (
        b"".join(mqtt.encode(p) for p in decoded) == bytes(wire)[: sum(len(mqtt.encode(p)) for p in decoded)]
    )


def test_remaining_length_bound_is_checked_before_the_body() -> None:
    decoder = mqtt.Decoder(1000)
    with pytest.raises(mqtt.MalformedPacketError, match="exceeds the limit of 1000"):
        decoder.feed(b"\x30\xe9\x07")  # PUBLISH announcing 1001 bytes, none sent yet


def test_five_byte_remaining_length_is_malformed() -> None:
    with pytest.raises(mqtt.MalformedPacketError, match="longer than four bytes"):
        mqtt.Decoder(mqtt.MAX_PACKET_BYTES).feed(b"\x30\xff\xff\xff\xff\x01")


@pytest.mark.parametrize(
    ("wire", "reason"),
    [
        (b"\x00\x00", "reserved packet type 0"),
        (b"\xf0\x00", "reserved packet type 15"),
        (b"\x36\x05\x00\x01a\x00\x01", "QoS 3"),
        (b"\x38\x03\x00\x01a", "DUP set on a QoS 0"),
        (b"\x30\x04\x00\x02a+", "wildcard"),
        (b"\x30\x04\x00\x02a\x00", "U+0000"),
        (b"\x30\x04\x00\x02\xc3\x28", "not valid UTF-8"),
        (b"\x30\x05\x00\x03\xed\xa0\x80", "not valid UTF-8"),  # an encoded surrogate
        (b"\x30\x04\x00\x02a\x01", "U+0001"),
        (b"\x30\x02\x00\x00", "topic name is empty"),
        (b"\x32\x05\x00\x01a\x00\x00", "packet id 0"),
        (b"\x80\x06\x00\x01\x00\x01a\x00", "fixed header flags"),
        (b"\x82\x02\x00\x01", "no topic filter"),
        (b"\x82\x06\x00\x01\x00\x01a\x03", "requested QoS"),
        (b"\x82\x08\x00\x01\x00\x03a#b\x00", "'#' must be the whole last level"),
        (b"\x82\x08\x00\x01\x00\x03a+b\x00", "'+' must be a whole level"),
        (b"\x40\x03\x00\x01\x00", "trailing bytes"),
        (b"\x40\x01\x00", "truncated"),
        (b"\xc0\x01\x00", "trailing bytes"),
        (b"\x10\x0c\x00\x04MQTT\x04\x03\x00\x3c\x00\x00", "reserved flag"),
        (b"\x10\x0c\x00\x04MQTT\x04\x18\x00\x3c\x00\x00", "without a will"),
        (b"\x10\x0c\x00\x04MQTT\x04\x42\x00\x3c\x00\x00", "password flag without user name"),
        (b"\x10\x0c\x00\x04HTTP\x04\x02\x00\x3c\x00\x00", "unknown protocol name"),
    ],
)
def test_malformed_packets_name_the_problem(wire: bytes, reason: str) -> None:
    with pytest.raises(mqtt.MalformedPacketError, match=re.escape(reason)):
        mqtt.Decoder(1 << 16).feed(wire)


def test_client_id_bound() -> None:
    long_id = "x" * (mqtt.MAX_CLIENT_ID_BYTES + 1)
    with pytest.raises(mqtt.MalformedPacketError, match="client id"):
        mqtt.encode(mqtt.Connect(long_id))
    ok = mqtt.encode(mqtt.Connect("x" * mqtt.MAX_CLIENT_ID_BYTES))
    body = ok.replace(b"x" * mqtt.MAX_CLIENT_ID_BYTES, b"x" * (mqtt.MAX_CLIENT_ID_BYTES + 1))
    body = body[:1] + bytes([body[1] + 1]) + body[2:]
    body = body.replace(b"\x01\x00x", b"\x01\x01x")  # patch the client id length
    with pytest.raises(mqtt.MalformedPacketError, match="client id longer than"):
        mqtt.Decoder(1 << 16).feed(body)


def test_topic_length_bound() -> None:
    mqtt.validate_topic_name("a" * mqtt.MAX_TOPIC_BYTES)
    with pytest.raises(mqtt.MalformedPacketError, match="longer than"):
        mqtt.validate_topic_name("a" * (mqtt.MAX_TOPIC_BYTES + 1))


def test_encoder_refuses_what_the_decoder_refuses() -> None:
    with pytest.raises(mqtt.MalformedPacketError):
        mqtt.encode(mqtt.Publish("a/+", b""))
    with pytest.raises(mqtt.MalformedPacketError):
        mqtt.encode(mqtt.Publish("a", b"", qos=1))  # no packet id
    with pytest.raises(mqtt.MalformedPacketError):
        mqtt.encode(mqtt.Subscribe(1, ()))
    with pytest.raises(mqtt.MalformedPacketError):
        mqtt.encode(mqtt.PubAck(0))


def test_known_bytes() -> None:
    assert mqtt.encode(mqtt.PingReq()) == b"\xc0\x00"
    assert mqtt.encode(mqtt.Publish("a/b", b"hi", qos=1, packet_id=10)) == b"\x32\x09\x00\x03a/b\x00\x0ahi"
    big = mqtt.encode(mqtt.Publish("t", b"x" * 200))
    assert big[:3] == b"\x30\xcb\x01"  # 203 = 0x4b + 1*128


@pytest.mark.parametrize(
    ("topic_filter", "topic", "expected"),
    [
        ("a/b", "a/b", True),
        ("a/+", "a/b", True),
        ("a/+", "a/b/c", False),
        ("a/#", "a", True),
        ("a/#", "a/b/c", True),
        ("+/+", "a/b", True),
        ("+", "a/b", False),
        ("#", "a/b", True),
        ("+/user/#", "default/user/x", True),
        ("/+", "/x", True),
        ("+/+", "/x", True),
        # Section 4.7.2: first-level wildcards never match $-topics...
        ("#", "$hw/events/device/ns/d/twin/update", False),
        ("+/events/#", "$hw/events/x", False),
        ("+/user/#", "$hw/user/x", False),
        # ...but $-filters do.
        ("$hw/#", "$hw/events/device/ns/d/twin/update", True),
        ("$hw/events/device/+/+/twin/+", "$hw/events/device/ns/d/twin/update", True),
        ("$hw/events/device/+/+/twin/+", "$hw/events/device/ns/d/twin/update/result", False),
        ("$hw/events/device/ns/d/twin/update", "$hw/events/device/ns/d/twin/update", True),
        ("$SYS/#", "$hw/x", False),
    ],
)
def test_topic_matching(topic_filter: str, topic: str, expected: bool) -> None:
    mqtt.validate_topic_filter(topic_filter)
    mqtt.validate_topic_name(topic)
    assert mqtt.topic_matches(topic_filter, topic) is expected


@given(topics)
def test_a_topic_used_as_filter_matches_itself(topic: str) -> None:
    mqtt.validate_topic_filter(topic)
    assert mqtt.topic_matches(topic, topic)
    if not topic.startswith("$"):
        assert mqtt.topic_matches("#", topic)
