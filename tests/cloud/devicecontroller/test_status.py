"""DeviceController's sans-io rules: edge reports into Device status, membership entries."""

from __future__ import annotations

import json

import pytest

from kubeedge.cloud.devicecontroller import status as st


def test_twin_report_merges_into_existing_status() -> None:
    report = st.parse_twin_report(
        {
            "event_id": "e",
            "timestamp": 1,
            "twin": {
                "temp": {
                    "actual": {"value": "23", "metadata": {"timestamp": 1700}},
                    "metadata": {"type": "int"},
                },
                "setpoint": {"expected": {"value": "20"}, "actual": {"value": "19"}},
                "ignored": {"optional": True},
            },
        }
    )
    status = {
        "twins": [{"propertyName": "setpoint", "reported": {"value": "1"}}, {"propertyName": "other"}],
        "state": "ok",
    }
    twins = st.merge_twins(status, report)
    assert twins == [
        {
            "propertyName": "setpoint",
            "reported": {"value": "19", "metadata": {}},
            "observedDesired": {"value": "20", "metadata": {}},
        },
        {"propertyName": "other"},
        {
            "propertyName": "temp",
            "reported": {"value": "23", "metadata": {"timestamp": "1700", "type": "int"}},
        },
    ]
    assert status["twins"][0]["reported"] == {"value": "1"}  # input not mutated


def test_state_report_is_upstreams_json_string() -> None:
    body = json.dumps(
        {
            "event_id": "e",
            "device": {"name": "d", "state": "online", "lastOnlineTime": "2026-01-01T00:00:00Z"},
        }
    )
    assert st.parse_state_report(body) == st.StateReport("online", "2026-01-01T00:00:00Z")
    assert st.parse_state_report({"device": {"state": "offline"}}) == st.StateReport("offline", "")


@pytest.mark.parametrize(
    ("fn", "content", "needle"),
    [
        (st.parse_twin_report, "{bad", "not valid JSON"),
        (st.parse_twin_report, {"twin": []}, "'twin' must be an object"),
        (st.parse_twin_report, {"twin": {"p": 3}}, "property 'p'"),
        (st.parse_twin_report, [1], "JSON object"),
        (st.parse_state_report, {"device": {"state": ""}}, "device.state"),
        (st.parse_state_report, {"nodevice": 1}, "'device'"),
        (st.parse_state_report, "x" * 300_000, "larger than"),
    ],
)
def test_bad_reports_name_the_problem(fn: object, content: object, needle: str) -> None:
    with pytest.raises(st.ReportError, match=None) as err:
        fn(content)  # type: ignore[operator]
    assert needle in str(err.value)


def test_device_helpers() -> None:
    dev = {
        "metadata": {"namespace": "ns", "name": "d"},
        "spec": {"nodeName": "n1", "deviceModelRef": {"name": "m"}},
    }
    assert (st.node_of(dev), st.model_of(dev)) == ("n1", "m")
    assert st.member(dev) == {"id": "ns/d", "name": "d", "description": ""}
    assert (st.node_of({}), st.model_of({"spec": {"deviceModelRef": None}})) == ("", "")
