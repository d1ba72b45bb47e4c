"""The Router's rule table: Rule and RuleEndpoint objects (``rules.kubeedge.io/v1``) and REST path matching.

Sans-io. Owns the parsing of the two kinds (with errors naming the object and the field), the table of
what exists, and the answer to "which rule takes this REST request, and where does it go?".

Routes (upstream's providers): a Rule whose ``source`` is a ``rest`` RuleEndpoint
(``sourceResource.path``) takes requests for ``/<node>/<namespace>/<path>[/<rest>]`` on the Router's port.
With a ``servicebus`` target (``properties.service_port``, ``targetResource.path``) they go to
``<service_port>:<target path>[/<rest>]`` on that node; with an ``eventbus`` target
(``targetResource.topic``) the body is published on ``<topic>[/<rest>]`` there. A Rule from an ``eventbus``
source (``sourceResource.topic``, ``sourceResource.node_name``) to a ``rest`` target
(``targetResource.resource``, an http:// URL) makes :class:`BusRoute`: what the node's EventBus uploads from
MQTT topic ``<namespace>/<topic>`` is POSTed to that URL. Path segments written ``{name}``
match any one segment; the most specific (longest) matching rule wins, as upstream prefers the rule that
the others contain.

Invariants: a rule is active only while both its endpoints exist with the right types; otherwise
:meth:`RuleTable.problem` says why. At most :data:`~kubeedge.kit.limits.ROUTER_MAX_RULES` rules and as many
endpoints are kept. Nothing here raises on a request; bad objects raise :class:`RuleError`.
"""

from __future__ import annotations

import enum
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from kubeedge.kit import limits

_NODE_NAME: Final = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_SEGMENT_PARAM: Final = re.compile(r"\{[-A-Za-z0-9+&@#%?=~_|!:,.;]+\}")
_MAX_FIELD: Final = 1024


class RuleError(ValueError):
    """A Rule or RuleEndpoint that cannot be used; the message names the object and the field."""


class EndpointType(enum.StrEnum):
    """``spec.ruleEndpointType``."""

    REST = "rest"
    EVENTBUS = "eventbus"
    SERVICEBUS = "servicebus"


def _key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def _parts(obj: Mapping[str, Any], kind: str) -> tuple[str, str, str, Mapping[str, Any]]:
    """``(namespace, name, "<kind> <ns>/<name>" for messages, spec)`` of an object; raises :class:`RuleError`."""
    meta = obj.get("metadata")
    if not isinstance(meta, Mapping):
        raise RuleError(f"{kind}: no metadata")
    ns, name = meta.get("namespace") or "", meta.get("name") or ""
    if not isinstance(ns, str) or not isinstance(name, str) or not ns or not name:
        raise RuleError(f"{kind}: metadata.namespace and metadata.name are required")
    where = f"{kind} {ns}/{name}"
    spec = obj.get("spec")
    if not isinstance(spec, Mapping):
        raise RuleError(f"{where}: spec is required")
    return ns, name, where, spec


def _strings(value: Any, where: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise RuleError(f"{where}: must be an object of strings")
    out: dict[str, str] = {}
    for k, v in value.items():
        if not isinstance(k, str) or not isinstance(v, str) or len(k) > _MAX_FIELD or len(v) > _MAX_FIELD:
            raise RuleError(f"{where}.{str(k)[:64]}: must be a string of at most {_MAX_FIELD} characters")
        out[k] = v
    return out


def _segments(path: str) -> tuple[str, ...]:
    """Upstream's normalisation (leading and trailing ``/`` dropped), split into segments."""
    return tuple(s for s in path.strip("/").split("/") if s)


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A RuleEndpoint."""

    namespace: str
    name: str
    type: EndpointType
    properties: Mapping[str, str]

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> Endpoint:
        """Parse a RuleEndpoint object; raises :class:`RuleError`."""
        ns, name, where, spec = _parts(obj, "RuleEndpoint")
        try:
            type_ = EndpointType(str(spec.get("ruleEndpointType")))
        except ValueError:
            raise RuleError(
                f"{where}: spec.ruleEndpointType {str(spec.get('ruleEndpointType'))[:32]!r}"
                f" is not one of {', '.join(EndpointType)}"
            ) from None
        return cls(ns, name, type_, _strings(spec.get("properties"), f"{where}: spec.properties"))


@dataclass(frozen=True, slots=True)
class Rule:
    """A Rule: from endpoint ``source`` to endpoint ``target`` (both in the rule's namespace)."""

    namespace: str
    name: str
    source: str
    source_resource: Mapping[str, str]
    target: str
    target_resource: Mapping[str, str]

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> Rule:
        """Parse a Rule object; raises :class:`RuleError`."""
        ns, name, where, spec = _parts(obj, "Rule")
        ends = {}
        for end in ("source", "target"):
            value = spec.get(end)
            if not isinstance(value, str) or not value or len(value) > 253:
                raise RuleError(f"{where}: spec.{end} must name a RuleEndpoint")
            ends[end] = value
        return cls(
            ns,
            name,
            ends["source"],
            _strings(spec.get("sourceResource"), f"{where}: spec.sourceResource"),
            ends["target"],
            _strings(spec.get("targetResource"), f"{where}: spec.targetResource"),
        )


@dataclass(frozen=True, slots=True)
class RestRoute:
    """An active rest -> servicebus or rest -> eventbus rule, compiled for matching."""

    rule: str
    """``<namespace>/<name>`` of the Rule."""
    namespace: str
    path: tuple[str, ...]
    target_type: EndpointType
    service_port: int
    """Of a servicebus target (0 for eventbus)."""
    target: str
    """The servicebus target path, or the eventbus topic."""


@dataclass(frozen=True, slots=True)
class Match:
    """Where one REST request goes."""

    rule: str
    node: str
    target_type: EndpointType
    resource: str
    """``<service_port>:<path>`` as the edge's ServiceBus reads it, or the topic to publish on."""
    path: str
    """The path (and query) the edge app is called with, or the topic."""


@dataclass(frozen=True, slots=True)
class BusRoute:
    """An active eventbus -> rest rule: MQTT messages on ``topic`` at ``node`` are POSTed to ``url``."""

    rule: str
    node: str
    topic: str
    """The MQTT topic on the node: ``<namespace>/<sourceResource.topic>`` as upstream joins them."""
    host: str
    port: int
    path: str
    """Path and query of ``targetResource.resource``."""


def _bus_route(rule: Rule, where: str) -> BusRoute:
    topic = "/".join(_segments(rule.source_resource.get("topic", "")))
    node = rule.source_resource.get("node_name", "")
    if not topic or "+" in topic or "#" in topic:
        raise RuleError(f"{where}: spec.sourceResource.topic must be an MQTT topic without wildcards")
    if not _NODE_NAME.fullmatch(node):
        raise RuleError(f"{where}: spec.sourceResource.node_name {node[:64]!r} must be a node name")
    url = rule.target_resource.get("resource", "")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port or 80
    except ValueError:
        parts, port = None, 0
    if parts is None or parts.scheme != "http" or not parts.hostname or not 0 < port < 65536:
        raise RuleError(f"{where}: spec.targetResource.resource {url[:128]!r} must be an http:// URL")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return BusRoute(
        _key(rule.namespace, rule.name), node, f"{rule.namespace}/{topic}", parts.hostname, port, path
    )


def _compile(rule: Rule, source: Endpoint, target: Endpoint) -> RestRoute | BusRoute:
    where = f"Rule {rule.namespace}/{rule.name}"
    if source.type is EndpointType.EVENTBUS and target.type is EndpointType.REST:
        return _bus_route(rule, where)
    if source.type is not EndpointType.REST or target.type is EndpointType.REST:
        raise RuleError(
            f"{where}: only rest -> servicebus, rest -> eventbus and eventbus -> rest rules are served"
            f" here (got {source.type} -> {target.type})"
        )
    path = _segments(rule.source_resource.get("path", ""))
    if not path:
        raise RuleError(f"{where}: spec.sourceResource.path is required for a rest source")
    key = _key(rule.namespace, rule.name)
    if target.type is EndpointType.EVENTBUS:
        topic = rule.target_resource.get("topic", "")
        if not topic or "+" in topic or "#" in topic:
            raise RuleError(f"{where}: spec.targetResource.topic must be an MQTT topic without wildcards")
        return RestRoute(key, rule.namespace, path, target.type, 0, topic)
    target_path = rule.target_resource.get("path", "")
    if not target_path:
        raise RuleError(f"{where}: spec.targetResource.path is required for a servicebus target")
    port_text = target.properties.get("service_port", "")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise RuleError(
            f"RuleEndpoint {target.namespace}/{target.name}: properties.service_port {port_text[:16]!r}"
            " must be a port number"
        )
    return RestRoute(key, rule.namespace, path, target.type, int(port_text), target_path)


def _segment_matches(pattern: str, segment: str) -> bool:
    if _SEGMENT_PARAM.fullmatch(pattern):
        return True
    return pattern == segment


class RuleTable:
    """The Rules and RuleEndpoints that exist, and the REST routes they make."""

    def __init__(self, max_objects: int = limits.ROUTER_MAX_RULES) -> None:
        self.max_objects = max_objects
        self.endpoints: dict[str, Endpoint] = {}
        self.rules: dict[str, Rule] = {}
        self.routes: dict[str, RestRoute] = {}
        """Active REST routes by rule key."""
        self.bus_routes: dict[str, BusRoute] = {}
        """Active eventbus -> rest routes by rule key."""
        self._problems: dict[str, str] = {}

    # --- changes ----------------------------------------------------------------------------------
    def put_endpoint(self, ep: Endpoint) -> None:
        """Add or replace a RuleEndpoint; raises :class:`RuleError` when the table is full."""
        key = _key(ep.namespace, ep.name)
        if key not in self.endpoints and len(self.endpoints) >= self.max_objects:
            raise RuleError(f"RuleEndpoint {key}: more than {self.max_objects} endpoints; refused")
        self.endpoints[key] = ep
        self._recompile()

    def remove_endpoint(self, namespace: str, name: str) -> None:
        """Forget a RuleEndpoint (rules using it become inactive)."""
        self.endpoints.pop(_key(namespace, name), None)
        self._recompile()

    def put_rule(self, rule: Rule) -> None:
        """Add or replace a Rule; raises :class:`RuleError` when the table is full."""
        key = _key(rule.namespace, rule.name)
        if key not in self.rules and len(self.rules) >= self.max_objects:
            raise RuleError(f"Rule {key}: more than {self.max_objects} rules; refused")
        self.rules[key] = rule
        self._recompile()

    def remove_rule(self, namespace: str, name: str) -> None:
        """Forget a Rule."""
        self.rules.pop(_key(namespace, name), None)
        self._recompile()

    def problem(self, namespace: str, name: str) -> str | None:
        """Why the rule is not active (``None`` when it is, or does not exist)."""
        return self._problems.get(_key(namespace, name))

    def _recompile(self) -> None:
        # Tables are small (bounded) and change rarely; recompiling everything keeps one code path.
        self.routes.clear()
        self.bus_routes.clear()
        self._problems.clear()
        for key, rule in self.rules.items():
            source = self.endpoints.get(_key(rule.namespace, rule.source))
            target = self.endpoints.get(_key(rule.namespace, rule.target))
            if source is None or target is None:
                missing = rule.source if source is None else rule.target
                self._problems[key] = f"RuleEndpoint {rule.namespace}/{missing} does not exist"
                continue
            try:
                route = _compile(rule, source, target)
            except RuleError as exc:
                self._problems[key] = str(exc)
                continue
            if isinstance(route, BusRoute):
                self.bus_routes[key] = route
            else:
                self.routes[key] = route

    # --- requests ---------------------------------------------------------------------------------
    def subscriptions(self) -> set[tuple[str, str]]:
        """``(node, topic)`` pairs the eventbus -> rest routes need subscribed."""
        return {(r.node, r.topic) for r in self.bus_routes.values()}

    def bus_targets(self, node: str, topic: str) -> list[BusRoute]:
        """The eventbus -> rest routes a message on ``topic`` from ``node`` takes (exact topic, as upstream)."""
        return [r for r in self.bus_routes.values() if r.node == node and r.topic == topic]

    def match(self, target: str) -> Match | None:
        """The route for a request target ``/<node>/<namespace>/<path>[?query]``, or ``None``."""
        raw_path, sep, query = target.partition("?")
        # Segments stay percent-encoded: they are compared as written and passed on to the app as sent.
        parts = raw_path.split("/")
        if len(parts) < 4 or parts[0] != "" or not _NODE_NAME.fullmatch(parts[1]):
            return None
        node, namespace, rest = parts[1], parts[2], tuple(p for p in parts[3:] if p)
        best: RestRoute | None = None
        for route in self.routes.values():
            if route.namespace != namespace or len(route.path) > len(rest):
                continue
            if not all(_segment_matches(p, s) for p, s in zip(route.path, rest, strict=False)):
                continue
            # The longest path wins; among equals the first rule by name, so the choice is stable.
            if best is None or (len(route.path), best.rule) > (len(best.path), route.rule):
                best = route
        if best is None:
            return None
        param = "/".join(rest[len(best.path) :])
        if best.target_type is EndpointType.EVENTBUS:
            topic = best.target if not param else best.target.rstrip("/") + "/" + param
            return Match(best.rule, node, best.target_type, topic, topic)
        path = best.target if not param else best.target.rstrip("/") + "/" + param
        if not path.startswith("/"):
            path = "/" + path
        if sep:
            path += "?" + query
        return Match(best.rule, node, best.target_type, f"{best.service_port}:{path}", path)


@dataclass
class _Counts:
    success: int = 0
    fail: int = 0
    errors: list[str] = field(default_factory=list)
    dirty: bool = False


class RuleStats:
    """Per-rule counts of forwarded and failed messages, for ``Rule.status`` as upstream keeps it.

    Counts continue from what the Rule's status already says when it is first seen (:meth:`seed`), so
    they survive a cloudcore restart. At most ``max_errors`` recent errors are kept per rule.
    """

    def __init__(self, max_errors: int = limits.ROUTER_RULE_ERRORS) -> None:
        self.max_errors = max_errors
        self._counts: dict[str, _Counts] = {}

    def seed(self, rule: str, status: Any) -> None:
        """Start ``rule``'s counts from its stored ``status`` (ignored if the rule is already counted)."""
        if rule in self._counts:
            return
        status = status if isinstance(status, Mapping) else {}
        success, fail = status.get("successMessages"), status.get("failMessages")
        errors = status.get("errors")
        self._counts[rule] = _Counts(
            success if isinstance(success, int) and success >= 0 else 0,
            fail if isinstance(fail, int) and fail >= 0 else 0,
            [str(e)[:_MAX_FIELD] for e in errors][-self.max_errors :] if isinstance(errors, list) else [],
        )

    def record(self, rule: str, *, error: str = "", when: str = "") -> None:
        """Count one message of ``rule``: a success, or a failure described by ``error`` at ``when``."""
        counts = self._counts.setdefault(rule, _Counts())
        if error:
            counts.fail += 1
            counts.errors = [*counts.errors, f"{when} {error}"[:_MAX_FIELD].strip()][-self.max_errors :]
        else:
            counts.success += 1
        counts.dirty = True

    def forget(self, rule: str) -> None:
        """Drop a deleted rule's counts."""
        self._counts.pop(rule, None)

    def take_dirty(self) -> list[tuple[str, dict[str, Any]]]:
        """``(rule, status)`` for every rule changed since the last call; they count as written."""
        out = []
        for rule, c in self._counts.items():
            if c.dirty:
                c.dirty = False
                out.append(
                    (rule, {"successMessages": c.success, "failMessages": c.fail, "errors": list(c.errors)})
                )
        return out

    def mark_dirty(self, rule: str) -> None:
        """Write ``rule`` again next time (its last write failed)."""
        if rule in self._counts:
            self._counts[rule].dirty = True
