"""ServiceBus round trip through the cloud on real processes: HTTP client -> Router -> CloudHub -> EdgeHub ->
ServiceBus -> an HTTP app on loopback, and the answer back.

cloudcore runs its Router (``modules.router``, restTimeout 3 s here) and edgecore its ServiceBus. The Rule
and RuleEndpoints are created with the real ``kubectl``. The app is a real HTTP server in this process
(the edge node is this host). Cases: a POST with a body, query and headers round trips; an unknown path is
404; a body over 12 MiB is 413; an app slower than restTimeout gives 408 (its late answer is dropped); a
rest -> eventbus rule publishes the body on edgecore's (internal) MQTT broker, and an eventbus -> rest rule
POSTs what a device publishes to an URL. The rules' status counts what they routed.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import yaml

from kubeedge.kit import limits
from tests.devicekit import Mapper
from tests.e2e.conftest import EdgeCluster, start_edge_cluster, wait_until
from tests.e2e.test_mapper import kubectl

pytestmark = [pytest.mark.slow, pytest.mark.docker]

REST_TIMEOUT = 3


class App:
    """A loopback HTTP app: ``/api/echo`` echoes the request; ``/api/slow`` answers once released."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.seen: list[dict[str, Any]] = []
        app = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                seen = {
                    "method": self.command,
                    "path": self.path,
                    "body": body.decode(),
                    "x-caller": self.headers.get("X-Caller"),
                }
                app.seen.append(seen)
                if self.path.startswith("/api/slow"):
                    app.release.wait(30)
                data = json.dumps(seen).encode()
                self.send_response(201)
                self.send_header("Content-Type", "application/json")
                self.send_header("X-App", "echo")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EdgeCluster]:
    c = start_edge_cluster(
        tmp_path_factory.mktemp("e2e-router"), router=True, router_rest_timeout=REST_TIMEOUT
    )
    try:
        yield c
    finally:
        c.teardown()


@pytest.fixture(scope="module")
def app() -> Iterator[App]:
    a = App()
    try:
        yield a
    finally:
        a.close()


def rules(app_port: int, node: str) -> str:
    def ep(name: str, type_: str, props: dict[str, str]) -> dict[str, Any]:
        return {
            "apiVersion": "rules.kubeedge.io/v1",
            "kind": "RuleEndpoint",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"ruleEndpointType": type_, "properties": props},
        }

    rule = {
        "apiVersion": "rules.kubeedge.io/v1",
        "kind": "Rule",
        "metadata": {"name": "rest-to-app", "namespace": "default"},
        "spec": {
            "source": "my-rest",
            "sourceResource": {"path": "/app"},
            "target": "my-servicebus",
            "targetResource": {"path": "/api"},
        },
    }
    to_bus = {
        "apiVersion": "rules.kubeedge.io/v1",
        "kind": "Rule",
        "metadata": {"name": "rest-to-bus", "namespace": "default"},
        "spec": {
            "source": "my-rest",
            "sourceResource": {"path": "/events"},
            "target": "my-eventbus",
            "targetResource": {"topic": "router/out"},
        },
    }
    from_bus = {
        "apiVersion": "rules.kubeedge.io/v1",
        "kind": "Rule",
        "metadata": {"name": "bus-to-rest", "namespace": "default"},
        "spec": {
            "source": "my-eventbus",
            "sourceResource": {"topic": "sensors/t", "node_name": node},
            "target": "my-rest",
            "targetResource": {"resource": f"http://127.0.0.1:{app_port}/api/ingest"},
        },
    }
    return yaml.safe_dump_all(
        [
            ep("my-rest", "rest", {}),
            ep("my-servicebus", "servicebus", {"service_port": str(app_port)}),
            ep("my-eventbus", "eventbus", {}),
            rule,
            to_bus,
            from_bus,
        ]
    )


def request(
    c: EdgeCluster, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", c.router_port, timeout=30)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def test_rest_to_edge_app_through_router_cloudhub_edgehub_servicebus(cluster: EdgeCluster, app: App) -> None:
    c = cluster
    logs = (c.cloud_log, c.edge_log)
    base = f"/{c.node}/default/app"
    status, _, body = request(c, "GET", base + "/echo")
    assert (status, body) == (404, b"No rule match")

    kubectl(c, "apply", "-f", "-", stdin=rules(app.port, c.node))
    # The rule is live once a request stops being a 404 (the Router watches Rules and RuleEndpoints).
    first = wait_until(
        "the rule to route",
        lambda: (r := request(c, "GET", base + "/echo?probe=1"))[0] != 404 and r,
        30,
        *logs,
    )
    assert first[0] == 201, first

    status, headers, body = request(
        c,
        "POST",
        base + "/echo?x=1",
        b'{"hello": "edge"}',
        {"X-Caller": "e2e", "Content-Type": "application/json"},
    )
    assert status == 201
    assert headers["X-App"] == "echo"
    assert headers["Content-Type"] == "application/json"
    seen = json.loads(body)
    assert seen == {"method": "POST", "path": "/api/echo?x=1", "body": '{"hello": "edge"}', "x-caller": "e2e"}

    # A node without a CloudHub session: 500 naming it, as upstream.
    status, _, body = request(c, "GET", "/no-such-node/default/app/echo")
    assert (status, body) == (500, b"cloudcore doesn't have session for node:no-such-node")

    # Paths no rule covers: another namespace, or a prefix of the rule's path.
    assert request(c, "GET", f"/{c.node}/other/app/echo")[0] == 404
    assert request(c, "GET", f"/{c.node}/default/ap")[0] == 404

    # A body over the 12 MiB bound is refused before it is read (raw socket: the client stops sending).
    with socket.create_connection(("127.0.0.1", c.router_port), timeout=30) as sock:
        head = f"POST {base}/echo HTTP/1.1\r\nHost: x\r\nContent-Length: {limits.ROUTER_MAX_BODY + 1}\r\n\r\n"
        sock.sendall(head.encode() + b"x" * 65536)
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = sock.recv(65536)
            assert chunk, f"connection closed before a response: {reply!r}"
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 413 "), reply[:200]

    # An app slower than restTimeout: 408 as upstream; its late answer is dropped and the Router still serves.
    app.release.clear()
    status, _, body = request(c, "GET", base + "/slow")
    assert (status, body) == (408, b"wait to get response time out")
    app.release.set()
    assert request(c, "GET", base + "/echo")[0] == 201

    # rest -> eventbus: the body is published on the node's broker (edgecore's internal one here).
    mapper = Mapper("127.0.0.1", c.mqtt_port, client_id=f"router-{c.node}", subscribe="router/#")
    try:
        status, _, body = request(c, "POST", f"/{c.node}/default/events/room-1", b"lights on")
        assert (status, body) == (200, b"message delivered")
        assert mapper.wait_for("router/out/room-1", timeout=15) == b"lights on"

        # eventbus -> rest: the node subscribed <namespace>/<topic> for the rule; what a device publishes
        # there is POSTed to the rule's URL. Published until seen, as the subscription is asynchronous.
        def posted() -> bool:
            mapper.publish("default/sensors/t", "21.5")
            return any(s["path"] == "/api/ingest" and s["body"] == "21.5" for s in app.seen)

        wait_until("an MQTT message POSTed by the eventbus -> rest rule", posted, 30, *logs)
        (ingest, *_) = [s for s in app.seen if s["path"] == "/api/ingest"]
        assert ingest["method"] == "POST"
    finally:
        mapper.close()

    # Every routed message counts in its Rule's status, as upstream keeps it (written every few seconds).
    def rule_status(name: str) -> dict[str, Any]:
        return dict(
            json.loads(kubectl(c, "get", "rules.rules.kubeedge.io", name, "-o", "json")).get("status") or {}
        )

    app_status = wait_until(
        "the rules' counts in their status",
        lambda: (
            (st := rule_status("rest-to-app")).get("failMessages") == 2
            and st.get("successMessages", 0) >= 3
            and rule_status("bus-to-rest").get("successMessages", 0) >= 1
            and st
        ),
        30,
        *logs,
    )
    errors = app_status["errors"]
    assert len(errors) == 2
    assert "cloudcore doesn't have session for node:no-such-node" in errors[0]
    assert errors[1].endswith("wait to get response time out")
    c.alive("cloudcore")
    c.alive("edgecore")
