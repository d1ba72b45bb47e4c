"""The status schema: JSON round trips, decode errors naming the path, and every bound (strings, lists, bytes)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kubeedge.kit import limits
from kubeedge.kit import status as s
from tests.status_support import NOW, realistic_board


def snapshot() -> s.Snapshot:
    return realistic_board().snapshot()


@pytest.mark.parametrize("path", sorted(s.ENDPOINTS))
def test_every_document_round_trips_through_json(path: str) -> None:
    doc = s.documents(snapshot())[path]
    body = s.render(doc)
    assert s.loads(s.ENDPOINTS[path], body) == doc


def test_json_shape_is_snake_case_with_unix_seconds_and_enum_strings() -> None:
    data = json.loads(s.render(snapshot()))
    assert data["schema"] == "v1"
    assert data["generated_at"] == NOW
    assert data["link"]["state"] == "connected"
    assert data["link"]["certificate"]["not_after"] == NOW + 300 * 86400
    pod = data["pods"][1]
    assert pod["containers"][1]["reason"] == "CrashLoopBackOff"
    assert pod["containers"][1]["probes"][0] == {
        "kind": "liveness",
        "result": "failure",
        "message": "HTTP 500",
        "at": NOW - 40,
    }
    assert data["devices"][0]["twins"][0] == {
        "name": "temperature",
        "expected": None,
        "actual": "21.5",
        "expected_at": None,
        "actual_at": NOW - 3,
    }
    assert data["node"]["conditions"][0]["status"] == "True"
    assert data["truncated"] == []


def test_decoder_ignores_unknown_keys_and_defaults_missing_ones() -> None:
    data = json.loads(s.render(snapshot()))
    data["future_field"] = {"x": 1}
    data["link"]["new_counter"] = 7
    del data["mqtt"]
    del data["pods"][0]["containers"][0]["probes"]
    doc = s.decode(s.Snapshot, data)
    assert doc.mqtt == s.MqttStatus()
    assert doc.pods[0].containers[0].probes == ()
    assert doc.link == snapshot().link


@pytest.mark.parametrize(
    ("mutate", "path", "problem"),
    [
        (
            lambda d: d["pods"][1]["containers"][1].update(restarts="14"),
            "pods[1].containers[1].restarts",
            "integer",
        ),
        (lambda d: d["pods"][0].update(ready=1), "pods[0].ready", "boolean"),
        (lambda d: d["link"].update(state="flapping"), "link.state", "connected"),
        (lambda d: d["devices"][0].pop("id"), "devices[0].id", "missing"),
        (lambda d: d.update(events={}), "events", "list"),
        (lambda d: d["node"].update(started_at="yesterday"), "node.started_at", "number"),
        (lambda d: d.update(meta=[]), "meta", "object"),
    ],
)
def test_decode_errors_name_the_json_path(mutate: Any, path: str, problem: str) -> None:
    data = json.loads(s.render(snapshot()))
    mutate(data)
    with pytest.raises(s.SchemaError) as info:
        s.decode(s.Snapshot, data)
    assert info.value.path == path
    assert problem in info.value.problem


def test_loads_refuses_other_schemas_and_non_json() -> None:
    with pytest.raises(s.SchemaError, match="expected 'v1', got 'v2'"):
        s.loads(s.Snapshot, b'{"schema": "v2"}')
    with pytest.raises(s.SchemaError, match="not JSON"):
        s.loads(s.Snapshot, b"\xff<html>")


# --- bounds --------------------------------------------------------------------------------------------------


def test_long_strings_are_clipped_with_an_ellipsis() -> None:
    long = "x" * (limits.STATUS_MAX_STRING * 3)
    board = realistic_board()
    board.link = dataclasses.replace(board.link, last_error=long)
    doc = s.loads(s.Snapshot, s.render(board.snapshot()))
    assert len(doc.link.last_error) == limits.STATUS_MAX_STRING
    assert doc.link.last_error.endswith(s.ELLIPSIS)
    assert doc.truncated == ()  # strings are cut in place; only cut lists are named


def test_lists_are_cut_to_their_bounds_and_named() -> None:
    board = realistic_board()
    pod = board.pods[1]
    many = tuple(dataclasses.replace(pod.containers[1], name=f"c{i}") for i in range(100))
    board.pods = tuple(
        dataclasses.replace(pod, uid=f"uid-{i}", name=f"p{i}", containers=many) for i in range(400)
    )
    for i in range(limits.STATUS_EVENTS + 50):
        board.event(s.Severity.INFO, "edged", "Tick", f"event {i}")
    doc = s.clip(board.snapshot())
    assert len(doc.pods) == limits.STATUS_MAX_PODS
    assert doc.pods[0].name == "p0"  # the head of ordinary lists is kept
    assert all(len(p.containers) == limits.STATUS_MAX_CONTAINERS for p in doc.pods)
    assert doc.truncated == ("pods",)
    assert len(doc.events) == limits.STATUS_EVENTS  # the ring itself never holds more
    assert doc.events[-1].message == f"event {limits.STATUS_EVENTS + 49}"


def test_events_beyond_the_bound_keep_the_newest() -> None:
    events = tuple(
        s.Event(NOW + i, s.Severity.INFO, "x", "R", str(i)) for i in range(limits.STATUS_EVENTS + 10)
    )
    doc = s.clip(s.EventList(events=events))
    assert [e.message for e in doc.events][:1] == ["10"]
    assert doc.events[-1].message == str(limits.STATUS_EVENTS + 9)
    assert doc.truncated == ("events",)


def test_render_caps_the_body_by_halving_the_longest_list() -> None:
    board = realistic_board()
    base = board.pods[1]
    board.pods = tuple(
        dataclasses.replace(base, uid=f"u{i}", name=f"pod-{i}", message="m" * 500) for i in range(256)
    )
    cap = 64 * 1024
    full = s.render(board.snapshot())
    assert len(full) > cap
    body = s.render(board.snapshot(), max_bytes=cap)
    assert len(body) <= cap
    doc = s.loads(s.Snapshot, body)
    assert "pods" in doc.truncated
    assert 0 < len(doc.pods) < 256
    assert doc.pods[0].name == "pod-0"
    assert doc.devices == board.devices  # short lists survive


def test_render_refuses_a_document_that_cannot_fit() -> None:
    with pytest.raises(ValueError, match="does not fit in 10 bytes"):
        s.render(s.Snapshot(), max_bytes=10)


# --- fuzz ----------------------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30,
)


@given(data=st.dictionaries(st.sampled_from(["schema", "pods", "link", "events", "node", "x"]), json_values))
def test_decode_of_arbitrary_json_raises_only_schema_errors(data: dict[str, Any]) -> None:
    error: s.SchemaError | None = None
    try:
        doc = s.decode(s.Snapshot, data)
    except s.SchemaError as exc:
        error = exc
    if error is None:
        assert isinstance(doc, s.Snapshot)
    else:  # the error names a key that is really in the document
        assert error.path.split(".")[0].split("[")[0] in data
