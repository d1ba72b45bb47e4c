"""The Router's rule table (sans-io): parsing with named errors, activation, and REST path matching."""

from __future__ import annotations

import re
from typing import Any

import pytest

from kubeedge.cloud.router import rules
from kubeedge.cloud.router.module import answer_from_reply
from kubeedge.proto.message import Message


def endpoint(name: str, type_: str, ns: str = "default", **props: str) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": ns},
        "spec": {"ruleEndpointType": type_, "properties": props},
    }


def rule(name: str, path: str, target_path: str = "/api", ns: str = "default") -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": ns},
        "spec": {
            "source": "rest",
            "sourceResource": {"path": path},
            "target": "sb",
            "targetResource": {"path": target_path},
        },
    }


def table(*rule_objs: dict[str, Any]) -> rules.RuleTable:
    t = rules.RuleTable()
    t.put_endpoint(rules.Endpoint.from_object(endpoint("rest", "rest")))
    t.put_endpoint(rules.Endpoint.from_object(endpoint("sb", "servicebus", service_port="8080")))
    for obj in rule_objs:
        t.put_rule(rules.Rule.from_object(obj))
    return t


def test_match_longest_rule_with_params_and_query() -> None:
    t = table(rule("short", "/a"), rule("long", "/a/{id}/b", "/deep/"), rule("other", "a", ns="prod"))
    m = t.match("/node-1/default/a/x/y?q=1")
    sb = rules.EndpointType.SERVICEBUS
    assert m == rules.Match("default/short", "node-1", sb, "8080:/api/x/y?q=1", "/api/x/y?q=1")
    m = t.match("/node-1/default/a/42/b/tail")
    assert m is not None
    assert (m.rule, m.resource) == ("default/long", "8080:/deep/tail")
    exact = t.match("/node-1/default/a")
    assert exact is not None
    assert exact.path == "/api"
    assert t.match("/node-1/default/ab") is None
    assert t.match("/node-1/kube-system/a") is None
    assert t.match("/Bad_Node/default/a") is None
    assert t.match("/node-1") is None
    assert t.match("node-1/default/a") is None


def test_eventbus_target_publishes_on_topic_and_param() -> None:
    t = table()
    t.put_endpoint(rules.Endpoint.from_object(endpoint("bus", "eventbus")))
    obj = rule("ev", "/events")
    obj["spec"]["target"] = "bus"
    obj["spec"]["targetResource"] = {"topic": "router/out"}
    t.put_rule(rules.Rule.from_object(obj))
    assert t.match("/n1/default/events/a/b?ignored=1") == rules.Match(
        "default/ev", "n1", rules.EndpointType.EVENTBUS, "router/out/a/b", "router/out/a/b"
    )
    assert t.match("/n1/default/events") == rules.Match(
        "default/ev", "n1", rules.EndpointType.EVENTBUS, "router/out", "router/out"
    )
    obj["spec"]["targetResource"] = {"topic": "a/#"}
    t.put_rule(rules.Rule.from_object(obj))
    assert "without wildcards" in (t.problem("default", "ev") or "")


def test_eventbus_to_rest_routes_and_subscriptions() -> None:
    t = rules.RuleTable()
    t.put_endpoint(rules.Endpoint.from_object(endpoint("bus", "eventbus")))
    t.put_endpoint(rules.Endpoint.from_object(endpoint("web", "rest")))
    obj = {
        "metadata": {"name": "up", "namespace": "prod"},
        "spec": {
            "source": "bus",
            "sourceResource": {"topic": "/sensors/t/", "node_name": "edge-1"},
            "target": "web",
            "targetResource": {"resource": "http://collector.local:8080/in?src=edge"},
        },
    }
    t.put_endpoint(rules.Endpoint.from_object(endpoint("bus", "eventbus", ns="prod")))
    t.put_endpoint(rules.Endpoint.from_object(endpoint("web", "rest", ns="prod")))
    t.put_rule(rules.Rule.from_object(obj))
    route = rules.BusRoute("prod/up", "edge-1", "prod/sensors/t", "collector.local", 8080, "/in?src=edge")
    assert t.bus_routes == {"prod/up": route}
    assert t.subscriptions() == {("edge-1", "prod/sensors/t")}
    assert t.bus_targets("edge-1", "prod/sensors/t") == [route]
    assert t.bus_targets("edge-2", "prod/sensors/t") == []
    assert t.bus_targets("edge-1", "prod/sensors") == []
    for bad, message in [
        ({"resource": "https://x/"}, "must be an http:// URL"),
        ({"resource": "http://x:99999/"}, "must be an http:// URL"),
    ]:
        obj["spec"]["targetResource"] = bad
        t.put_rule(rules.Rule.from_object(obj))
        assert message in (t.problem("prod", "up") or "")
        assert t.subscriptions() == set()
    obj["spec"]["targetResource"] = {"resource": "http://x/"}
    obj["spec"]["sourceResource"] = {"topic": "a/+", "node_name": "edge-1"}
    t.put_rule(rules.Rule.from_object(obj))
    assert "sourceResource.topic must be an MQTT topic" in (t.problem("prod", "up") or "")
    obj["spec"]["sourceResource"] = {"topic": "a"}
    t.put_rule(rules.Rule.from_object(obj))
    assert "node_name '' must be a node name" in (t.problem("prod", "up") or "")


def test_rules_activate_with_their_endpoints_and_say_why_not() -> None:
    t = rules.RuleTable()
    t.put_rule(rules.Rule.from_object(rule("r", "/a")))
    assert t.match("/n/default/a") is None
    assert t.problem("default", "r") == "RuleEndpoint default/rest does not exist"
    t.put_endpoint(rules.Endpoint.from_object(endpoint("rest", "rest")))
    t.put_endpoint(rules.Endpoint.from_object(endpoint("sb", "servicebus", service_port="99999")))
    problem = t.problem("default", "r")
    assert problem is not None
    assert "service_port '99999'" in problem
    t.put_endpoint(rules.Endpoint.from_object(endpoint("sb", "servicebus", service_port="80")))
    assert t.problem("default", "r") is None
    assert t.match("/n/default/a") is not None
    t.put_endpoint(rules.Endpoint.from_object(endpoint("sb", "rest")))
    assert "only rest -> servicebus, rest -> eventbus and eventbus -> rest" in (
        t.problem("default", "r") or ""
    )
    t.put_endpoint(rules.Endpoint.from_object(endpoint("sb", "eventbus")))
    assert "targetResource.topic must be an MQTT topic" in (t.problem("default", "r") or "")
    t.remove_rule("default", "r")
    assert t.problem("default", "r") is None
    assert t.routes == {}


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"spec": {}}, "no metadata"),
        ({"metadata": {"name": "x"}, "spec": {}}, "metadata.namespace and metadata.name"),
        ({"metadata": {"name": "x", "namespace": "d"}}, "RuleEndpoint d/x: spec is required"),
        (endpoint("x", "mqtt"), "spec.ruleEndpointType 'mqtt' is not one of rest, eventbus, servicebus"),
        (
            {**endpoint("x", "rest"), "spec": {"ruleEndpointType": "rest", "properties": {"p": 1}}},
            "properties.p",
        ),
    ],
)
def test_bad_endpoints_are_named(obj: dict[str, Any], message: str) -> None:
    with pytest.raises(rules.RuleError, match=re.escape(message)):
        rules.Endpoint.from_object(obj)


def test_bad_rules_are_named_and_the_table_is_bounded() -> None:
    bad = rule("r", "/a")
    bad["spec"]["target"] = ""
    with pytest.raises(
        rules.RuleError, match=re.escape("Rule default/r: spec.target must name a RuleEndpoint")
    ):
        rules.Rule.from_object(bad)
    t = rules.RuleTable(max_objects=1)
    t.put_rule(rules.Rule.from_object(rule("r1", "/a")))
    t.put_rule(rules.Rule.from_object(rule("r1", "/b")))  # a replacement takes no new slot
    with pytest.raises(rules.RuleError, match="more than 1 rules"):
        t.put_rule(rules.Rule.from_object(rule("r2", "/a")))


def test_answer_from_edge_reply() -> None:
    def reply(content: Any) -> Message:
        return Message.new(
            source="servicebus", group="user", operation="upload", resource="", content=content, now_ms=1
        )

    ok = answer_from_reply(
        reply({"status_code": 201, "body": "aGk=", "header": {"Content-Type": ["text/x"], "X-A": ["1", "2"]}})
    )
    assert (ok.status, ok.body, ok.content_type, ok.headers) == (
        201,
        b"hi",
        "text/x",
        [("X-A", "1"), ("X-A", "2")],
    )
    for broken in (
        {"status_code": "200"},
        {"status_code": 200, "body": "not base64!"},
        "text",
        {"status_code": 99},
    ):
        assert (answer_from_reply(reply(broken)).status, answer_from_reply(reply(broken)).body) == (
            500,
            b"invalid response",
        )


def test_rule_stats_continue_from_status_and_bound_errors() -> None:
    stats = rules.RuleStats(max_errors=2)
    stats.seed("ns/r", {"successMessages": 5, "failMessages": 1, "errors": ["old"]})
    stats.seed("ns/r", {"successMessages": 99})  # already counted: ignored
    assert stats.take_dirty() == []
    stats.record("ns/r")
    stats.record("ns/r", error="boom", when="2026-01-01T00:00:00Z")
    stats.record("ns/r", error="bang", when="2026-01-01T00:00:01Z")
    assert stats.take_dirty() == [
        (
            "ns/r",
            {
                "successMessages": 6,
                "failMessages": 3,
                "errors": ["2026-01-01T00:00:00Z boom", "2026-01-01T00:00:01Z bang"],
            },
        )
    ]
    assert stats.take_dirty() == []
    stats.mark_dirty("ns/r")
    assert [rule for rule, _ in stats.take_dirty()] == ["ns/r"]
    stats.seed("ns/bad", {"successMessages": -3, "failMessages": "x", "errors": "nope"})
    stats.record("ns/bad")
    assert stats.take_dirty() == [("ns/bad", {"successMessages": 1, "failMessages": 0, "errors": []})]
    stats.forget("ns/bad")
    stats.mark_dirty("ns/bad")
    assert stats.take_dirty() == []
