"""Twin rules: key/value validation, merge and version counters, result payloads, topics."""

from __future__ import annotations

import base64

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from kubeedge.edge.devicetwin import topics, twins
from kubeedge.edge.devicetwin.twins import Origin, Twin, TwinError, Version

NOW = 1_700_000_000_000


def upd(**props: object) -> dict[str, object]:
    return dict(props)


def test_edge_update_bumps_edge_version_and_sets_actual() -> None:
    change = twins.parse_update({"temp": {"actual": {"value": "23"}, "metadata": {"type": "int"}}})
    r = twins.merge({}, change, origin=Origin.EDGE, now_ms=NOW)
    t = r.twins["temp"]
    assert (t.actual, t.attr_type, t.actual_version, t.actual_ts) == ("23", "int", Version(0, 1), NOW)
    assert r.changed == {"temp": (None, t)}
    r2 = twins.merge(
        r.twins, twins.parse_update({"temp": {"actual": {"value": "24"}}}), origin=Origin.EDGE, now_ms=NOW + 1
    )
    assert r2.twins["temp"].actual_version == Version(0, 2)
    assert r2.twins["temp"].attr_type == "int"  # type kept when the update does not name one


def test_cloud_update_bumps_cloud_version_and_delta() -> None:
    stored = {"temp": Twin("temp", actual="23", attr_type="int")}
    r = twins.merge(
        stored, twins.parse_update({"temp": {"expected": {"value": "30"}}}), origin=Origin.CLOUD, now_ms=NOW
    )
    assert r.twins["temp"].expected_version == Version(1, 0)
    assert r.delta == {"temp": "30"}
    payload = twins.delta_payload("e1", NOW, r.twins)
    assert payload is not None
    assert payload["delta"] == {"temp": "30"}
    assert payload["twin"]["temp"]["expected"]["value"] == "30"
    same = twins.merge(
        r.twins, twins.parse_update({"temp": {"actual": {"value": "30"}}}), origin=Origin.EDGE, now_ms=NOW
    )
    assert twins.delta_payload("e2", NOW, same.twins) is None


def test_cloud_sync_versions_never_go_backwards() -> None:
    stored = {"p": Twin("p", expected="1", expected_version=Version(5, 2))}
    with pytest.raises(TwinError) as err:
        twins.merge(
            stored,
            twins.parse_update(
                {"p": {"expected": {"value": "2"}, "expected_version": {"cloud": 4, "edge": 2}}}
            ),
            origin=Origin.CLOUD,
            now_ms=NOW,
        )
    assert err.value.code == twins.CONFLICT
    with pytest.raises(TwinError) as err:
        twins.merge(
            stored,
            twins.parse_update(
                {"p": {"expected": {"value": "2"}, "expected_version": {"cloud": 6, "edge": 1}}}
            ),
            origin=Origin.CLOUD,
            now_ms=NOW,
        )
    assert err.value.code == twins.CONFLICT
    ok = twins.merge(
        stored,
        twins.parse_update({"p": {"expected": {"value": "2"}, "expected_version": {"cloud": 6, "edge": 2}}}),
        origin=Origin.CLOUD,
        now_ms=NOW,
    )
    assert ok.twins["p"].expected_version == Version(6, 2)


def test_deleted_type_removes_and_document_has_last_and_current() -> None:
    stored = {"p": Twin("p", actual="1")}
    r = twins.merge(
        stored, twins.parse_update({"p": {"metadata": {"type": "deleted"}}}), origin=Origin.EDGE, now_ms=NOW
    )
    assert r.twins == {}
    doc = twins.document_payload("e", NOW, r)
    assert doc["twin"]["p"]["current"] is None
    assert doc["twin"]["p"]["last"]["actual"]["value"] == "1"


@pytest.mark.parametrize(
    ("twin", "needle"),
    [
        ({"bad key!": {"actual": {"value": "1"}}}, "bad key!"),
        ({"k" * 129: {"actual": {"value": "1"}}}, "must match"),
        ({"p": {"actual": {"value": "a b"}}}, "'a b'"),
        ({"p": {"actual": {"value": "x" * 513}}}, "must match"),
        ({"p": {"actual": {"value": "1.5"}, "metadata": {"type": "int"}}}, "not a valid int"),
        ({"p": {"actual": {"value": "abc"}, "metadata": {"type": "float"}}}, "not a valid float"),
        ({"p": {"actual": {"value": "yes"}, "metadata": {"type": "boolean"}}}, "not a valid boolean"),
        ({"p": {"actual": {"value": "1"}, "metadata": {"type": "Updated"}}}, "metadata.type"),
        ({"p": {"actual": {"value": 1}}}, "must be a string"),
        ({"p": "23"}, "must be an object"),
        ({"p": {"actual": {"value": "1"}, "actual_version": {"cloud": -1}}}, "non-negative"),
        ({}, "non-empty"),
        ("nope", "non-empty"),
    ],
)
def test_invalid_updates_name_the_problem(twin: object, needle: str) -> None:
    with pytest.raises(TwinError) as err:
        twins.parse_update(twin)
    assert err.value.code == twins.BAD_REQUEST
    assert needle in err.value.reason
    result = twins.error_result("ev", NOW, err.value)
    assert result == {"event_id": "ev", "timestamp": NOW, "code": 400, "reason": err.value.reason}


def test_invalid_update_changes_nothing() -> None:
    stored = {"a": Twin("a", actual="1")}
    with pytest.raises(TwinError):
        twins.merge(
            stored,
            twins.parse_update({"a": {"actual": {"value": "2"}}, "b": {"actual": {"value": "bad value"}}}),
            origin=Origin.EDGE,
            now_ms=NOW,
        )
    assert stored == {"a": Twin("a", actual="1")}


@given(st.text(max_size=140))
@example(key="0\n")  # a trailing newline once slipped through "$"
def test_key_rule_matches_upstream_regex(key: str) -> None:
    allowed = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.,:/@#")
    valid = 1 <= len(key) <= 128 and set(key) <= allowed
    if valid:
        assert twins.check_key(key) == key
    else:
        with pytest.raises(TwinError):
            twins.check_key(key)


def test_states_and_time() -> None:
    assert twins.check_state("Online") == "online"
    with pytest.raises(TwinError):
        twins.check_state("sleepy")
    assert twins.rfc3339(0) == "1970-01-01T00:00:00Z"


def test_topics() -> None:
    t = topics.parse("$hw/events/device/default/thermo/twin/update")
    assert t == topics.Topic(topics.Kind.TWIN_UPDATE, "default", "thermo")
    assert t.device_id == "default/thermo"
    assert topics.parse("$hw/events/device/default/thermo/twin/update/result") is None
    assert topics.parse("$hw/events/device/default/thermo/state/update") == topics.Topic(
        topics.Kind.STATE_UPDATE, "default", "thermo"
    )
    assert topics.parse("$hw/events/node/edge-1/membership/get") == topics.Topic(
        topics.Kind.MEMBERSHIP_GET, node="edge-1"
    )
    assert topics.parse("$hw/events/upload/x/y") is None
    assert topics.parse("a/b/c/d/e/f") is None
    raw = "$hw/events/device/ns/n/twin/get"
    assert topics.decode_resource(raw) == raw
    assert topics.decode_resource(base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")) == raw
    with pytest.raises(ValueError, match="not a \\$hw/ topic"):
        topics.decode_resource(base64.urlsafe_b64encode(b"other/topic").decode())
