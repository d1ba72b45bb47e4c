"""cloudcore's one road to Kubernetes: the ``kubernetes`` Python client, driven from trio.

Owns the client (built from ``kubeAPIConfig.kubeConfig``), a token bucket for
``kubeAPIConfig.qps``/``burst``, a :class:`trio.CapacityLimiter` for the worker
threads that run blocking requests, and :class:`Reflector`, a list-then-watch
cache of one kind of object that resumes from the last resourceVersion and
relists on 410 Gone.

Invariants:

* Every request runs in a worker thread (``trio.to_thread.run_sync``) under the
  request limiter and the token bucket; watch streams run in their own threads
  (their own limiter) and hand events to trio with ``trio.from_thread.run``.
* Objects are plain JSON dicts (raw responses, no client models), so what goes
  to the edge is exactly what the API server returned, with ``apiVersion`` and
  ``kind`` filled in for list items.
* A :class:`Reflector` hands each change to its handler once, in resourceVersion
  order: an event at or below the cached version of that object is dropped, and
  a relist is turned into the difference against the cache.

Failures: a non-2xx answer raises :class:`KubeError` with the status, reason
and message the server gave; transport problems raise :class:`KubeError` with
status 0. Response bodies and watch lines are size-bounded.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import socket
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

import trio

from kubeedge.kit import limits, log

_log = log.get(__name__)

JSON: Final = "application/json"
MERGE_PATCH: Final = "application/merge-patch+json"
STRATEGIC_PATCH: Final = "application/strategic-merge-patch+json"


class KubeError(Exception):
    """A request the API server refused (``status`` > 0) or that never got an answer (``status`` 0)."""

    def __init__(self, status: int, reason: str, message: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.body = body

    @property
    def not_found(self) -> bool:
        """404: the object does not exist."""
        return self.status == 404

    @property
    def gone(self) -> bool:
        """410: the resourceVersion asked for has been compacted away."""
        return self.status == 410

    @property
    def conflict(self) -> bool:
        """409: already exists, or a resourceVersion precondition failed."""
        return self.status == 409

    def status_object(self) -> dict[str, Any]:
        """The ``metav1.Status`` the server sent, or one built from this error."""
        if self.body and self.body.get("kind") == "Status":
            return self.body
        return {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.status,
        }


@dataclass(frozen=True, slots=True)
class Kind:
    """One API resource: where it lives and what its objects are called."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        """``apiVersion`` of its objects (``v1`` for the core group)."""
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str = "", name: str = "", subresource: str = "") -> str:
        """REST path: the collection (all namespaces when ``namespace`` is empty), an object, a subresource."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
            if subresource:
                base += f"/{subresource}"
        return base


PODS: Final = Kind("", "v1", "pods", "Pod", True)
NODES: Final = Kind("", "v1", "nodes", "Node", False)
CONFIGMAPS: Final = Kind("", "v1", "configmaps", "ConfigMap", True)
SECRETS: Final = Kind("", "v1", "secrets", "Secret", True)
SERVICEACCOUNTS: Final = Kind("", "v1", "serviceaccounts", "ServiceAccount", True)
EVENTS: Final = Kind("", "v1", "events", "Event", True)
LEASES: Final = Kind("coordination.k8s.io", "v1", "leases", "Lease", True)
OBJECTSYNCS: Final = Kind("reliablesyncs.kubeedge.io", "v1alpha1", "objectsyncs", "ObjectSync", True)
CLUSTEROBJECTSYNCS: Final = Kind(
    "reliablesyncs.kubeedge.io", "v1alpha1", "clusterobjectsyncs", "ClusterObjectSync", False
)


def object_key(obj: dict[str, Any]) -> str:
    """``<namespace>/<name>`` (``/<name>`` for cluster-scoped objects)."""
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace', '')}/{meta.get('name', '')}"


def rv_of(obj: dict[str, Any]) -> int:
    """The object's resourceVersion as an integer (upstream compares them as uint64); -1 if absent or odd."""
    text = (obj.get("metadata") or {}).get("resourceVersion", "")
    try:
        return int(text)
    except (TypeError, ValueError):
        return -1


class TokenBucket:
    """Sans-io token bucket: ``delay(now)`` takes one token and says how long to wait for it."""

    def __init__(self, qps: float, burst: int, now: float) -> None:
        if not (math.isfinite(qps) and qps > 0) or burst < 1:
            raise ValueError(f"qps {qps!r} must be > 0 and burst {burst!r} >= 1")
        self.qps = qps
        self.burst = burst
        self._tokens = float(burst)
        self._at = now

    def delay(self, now: float) -> float:
        """Take a token; 0 if one was there, else the seconds until the debt is paid."""
        self._tokens = min(self.burst, self._tokens + (now - self._at) * self.qps)
        self._at = now
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self.qps


class KubeAPI:
    """Async facade over one ``kubernetes.client.ApiClient``."""

    def __init__(
        self, api_client: Any, *, qps: float, burst: int, threads: int = limits.KUBE_CLIENT_THREADS
    ) -> None:
        self.client = api_client
        self._bucket = TokenBucket(qps, burst, 0.0)
        self._requests = trio.CapacityLimiter(threads)
        self._watches = trio.CapacityLimiter(limits.KUBE_MAX_WATCHES)

    @classmethod
    def from_kubeconfig(cls, path: str, *, qps: float, burst: int) -> KubeAPI:
        """Build from a kubeconfig file (``kubeAPIConfig.kubeConfig``)."""
        from kubernetes import config

        client = config.new_client_from_config(config_file=path)  # type: ignore[no-untyped-call]
        # The pool must hold at least as many connections as threads may use at once.
        client.rest_client.pool_manager.connection_pool_kw["maxsize"] = limits.KUBE_CLIENT_THREADS
        return cls(client, qps=qps, burst=burst)

    def ca_cert(self) -> str:
        """The cluster CA bundle (PEM) from the kubeconfig, or '' if none is configured."""
        path = self.client.configuration.ssl_ca_cert
        if not path:
            return ""
        with open(path, encoding="ascii") as f:
            return f.read(limits.KUBE_MAX_BODY)

    def close(self) -> None:
        """Release the client's connection pool."""
        self.client.close()

    # --- requests ------------------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        query: Iterable[tuple[str, str]] = (),
        body: Any = None,
        content_type: str = JSON,
    ) -> Any:
        """One request; returns the decoded JSON answer or raises :class:`KubeError`."""
        wait = self._bucket.delay(trio.current_time())
        if wait > 0:
            await trio.sleep(wait)
        return await trio.to_thread.run_sync(
            self._request_blocking, method, path, list(query), body, content_type, limiter=self._requests
        )

    def _request_blocking(
        self, method: str, path: str, query: list[tuple[str, str]], body: Any, content_type: str
    ) -> Any:
        headers = {"Accept": JSON}
        if body is not None:
            headers["Content-Type"] = content_type
        try:
            m, url, hdrs, data, _ = self.client.param_serialize(
                method=method,
                resource_path=path,
                query_params=query,
                header_params=headers,
                body=body,
                auth_settings=["BearerToken"],
            )
            resp = self.client.call_api(
                m, url, header_params=hdrs, body=data, _request_timeout=limits.KUBE_REQUEST_TIMEOUT
            )
            raw = resp.response.read(limits.KUBE_MAX_BODY + 1, decode_content=True)
            status = resp.status
            resp.response.release_conn()
        except Exception as exc:  # urllib3 and ssl raise many kinds; all mean "no answer"
            raise KubeError(0, "ConnectionError", f"{method} {path}: {exc}") from exc
        if len(raw) > limits.KUBE_MAX_BODY:
            raise KubeError(
                0, "ResponseTooLarge", f"{method} {path}: answer over {limits.KUBE_MAX_BODY} bytes"
            )
        try:
            decoded = json.loads(raw) if raw else None
        except ValueError:
            decoded = None
        if not 200 <= status <= 299:
            body_obj = decoded if isinstance(decoded, dict) else None
            message = (body_obj or {}).get("message") or raw[:200].decode("utf-8", "replace")
            reason = (body_obj or {}).get("reason") or _REASONS.get(status, "Error")
            raise KubeError(status, reason, message, body_obj)
        return decoded

    async def get(self, kind: Kind, namespace: str, name: str, subresource: str = "") -> dict[str, Any]:
        """GET one object (with ``apiVersion``/``kind``)."""
        obj: dict[str, Any] = await self.request("GET", kind.path(namespace, name, subresource))
        return obj

    async def create(
        self, kind: Kind, namespace: str, obj: dict[str, Any], subresource: str = "", name: str = ""
    ) -> Any:
        """POST ``obj`` into the collection (or to ``name``'s ``subresource``)."""
        return await self.request("POST", kind.path(namespace, name, subresource), body=obj)

    async def patch(
        self, kind: Kind, namespace: str, name: str, body: Any, *, content_type: str, subresource: str = ""
    ) -> dict[str, Any]:
        """PATCH one object; ``body`` is the patch document (a dict, or a JSON string)."""
        if isinstance(body, str | bytes):
            body = json.loads(body)
        obj: dict[str, Any] = await self.request(
            "PATCH", kind.path(namespace, name, subresource), body=body, content_type=content_type
        )
        return obj

    async def update(
        self, kind: Kind, namespace: str, name: str, obj: dict[str, Any], subresource: str = ""
    ) -> Any:
        """PUT ``obj``."""
        return await self.request("PUT", kind.path(namespace, name, subresource), body=obj)

    async def delete(
        self, kind: Kind, namespace: str, name: str, options: dict[str, Any] | None = None
    ) -> Any:
        """DELETE one object with optional DeleteOptions."""
        return await self.request("DELETE", kind.path(namespace, name), body=options)

    async def list_objects(
        self, kind: Kind, *, namespace: str = "", label_selector: str = "", field_selector: str = ""
    ) -> tuple[list[dict[str, Any]], str]:
        """LIST a collection; returns the items (with apiVersion/kind) and the list's resourceVersion."""
        query = _selectors(label_selector, field_selector)
        answer = await self.request("GET", kind.path(namespace), query=query)
        items = [_typed(kind, item) for item in answer.get("items") or []]
        return items, str((answer.get("metadata") or {}).get("resourceVersion", ""))

    # --- watches -------------------------------------------------------------------------------------

    async def watch(
        self,
        kind: Kind,
        resource_version: str,
        events: trio.MemorySendChannel[dict[str, Any]],
        *,
        label_selector: str = "",
        field_selector: str = "",
        timeout_s: int = limits.KUBE_WATCH_TIMEOUT_S,
    ) -> None:
        """Stream watch events (decoded lines) into ``events`` until the server ends the watch.

        The stream is read in a thread; cancelling this call closes the response, which ends the thread.
        """
        query = _selectors(label_selector, field_selector)
        query += [
            ("watch", "true"),
            ("resourceVersion", resource_version),
            ("allowWatchBookmarks", "true"),
            ("timeoutSeconds", str(timeout_s)),
        ]
        wait = self._bucket.delay(trio.current_time())
        if wait > 0:
            await trio.sleep(wait)
        holder: list[Any] = []
        try:
            await trio.to_thread.run_sync(
                self._watch_blocking, kind.path(), query, timeout_s, events, holder,
                limiter=self._watches, abandon_on_cancel=True,
            )  # fmt: skip
        finally:
            for resp in holder:
                _abort(resp.response)

    def _watch_blocking(
        self,
        path: str,
        query: list[tuple[str, str]],
        timeout_s: int,
        events: trio.MemorySendChannel[dict[str, Any]],
        holder: list[Any],
    ) -> None:
        try:
            m, url, hdrs, _, _ = self.client.param_serialize(
                method="GET", resource_path=path, query_params=query,
                header_params={"Accept": JSON}, auth_settings=["BearerToken"],
            )  # fmt: skip
            resp = self.client.call_api(m, url, header_params=hdrs, _request_timeout=(10, timeout_s + 30))
        except Exception as exc:
            raise KubeError(0, "ConnectionError", f"watch {path}: {exc}") from exc
        holder.append(resp)
        if not 200 <= resp.status <= 299:
            raw = resp.response.read(limits.KUBE_MAX_BODY)
            try:
                body = json.loads(raw)
            except ValueError:
                body = {}
            raise KubeError(resp.status, body.get("reason", "Error"), body.get("message", ""), body)
        try:
            for line in _lines(resp.response.stream(None, decode_content=True)):
                event = json.loads(line)
                trio.from_thread.run(events.send, event)
        except (trio.BrokenResourceError, trio.ClosedResourceError, trio.RunFinishedError, trio.Cancelled):
            return
        except ValueError as exc:
            raise KubeError(0, "BadWatchLine", f"watch {path}: {exc}") from exc
        except Exception as exc:
            raise KubeError(0, "ConnectionError", f"watch {path}: {exc}") from exc
        finally:
            # Closed here, in the reading thread: closing it from trio would wait for the read's lock.
            resp.response.close()


_REASONS: Final = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound", 409: "Conflict",
                   410: "Expired", 422: "Invalid", 429: "TooManyRequests", 500: "InternalError"}  # fmt: skip


def _selectors(label_selector: str, field_selector: str) -> list[tuple[str, str]]:
    query: list[tuple[str, str]] = []
    if label_selector:
        query.append(("labelSelector", label_selector))
    if field_selector:
        query.append(("fieldSelector", field_selector))
    return query


def _typed(kind: Kind, obj: dict[str, Any]) -> dict[str, Any]:
    obj.setdefault("apiVersion", kind.api_version)
    obj.setdefault("kind", kind.kind)
    return obj


def _abort(response: Any) -> None:
    """End a watch whose reading thread may be blocked in a read, without blocking the caller.

    ``response.close()`` would wait for the buffered reader's lock, which the blocked read holds until
    the server sends something (up to the watch timeout): that froze cancellation and shutdown. Shutting
    the socket down makes the blocked read return at once; the reading thread then closes the response.
    """
    conn = getattr(response, "connection", None)
    sock = getattr(conn, "sock", None)
    if sock is None:
        return
    # Already closed or never connected (OSError): nothing is blocked on it. The plain socket's shutdown
    # is used because SSLSocket.shutdown would also drop the TLS object from under the reader.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def _lines(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Split a byte stream into lines, refusing a line longer than the watch line bound."""
    buf = b""
    for chunk in chunks:
        buf += chunk
        while True:
            cut = buf.find(b"\n")
            if cut < 0:
                break
            line, buf = buf[:cut], buf[cut + 1 :]
            if line.strip():
                yield line
        if len(buf) > limits.KUBE_MAX_BODY:
            raise ValueError(f"watch line over {limits.KUBE_MAX_BODY} bytes")
    if buf.strip():
        yield buf


# --- reflector -----------------------------------------------------------------------------------------


class EventType(StrEnum):
    """What happened to an object."""

    ADDED = "ADDED"
    MODIFIED = "MODIFIED"
    DELETED = "DELETED"


Handler = Callable[[EventType, dict[str, Any], dict[str, Any] | None], Awaitable[None]]
"""``handler(type, obj, old)``: ``old`` is the cached previous version (None for ADDED)."""


def relist_diff(
    cache: dict[str, dict[str, Any]], items: Iterable[dict[str, Any]]
) -> list[tuple[EventType, dict[str, Any], dict[str, Any] | None]]:
    """Sans-io: the events that turn ``cache`` into ``items`` (changes by resourceVersion; deletes last)."""
    out: list[tuple[EventType, dict[str, Any], dict[str, Any] | None]] = []
    seen: set[str] = set()
    for obj in items:
        key = object_key(obj)
        seen.add(key)
        old = cache.get(key)
        if old is None:
            out.append((EventType.ADDED, obj, None))
        elif old["metadata"].get("uid") != obj["metadata"].get("uid"):
            out.append((EventType.DELETED, old, None))
            out.append((EventType.ADDED, obj, None))
        elif rv_of(obj) > rv_of(old):
            out.append((EventType.MODIFIED, obj, old))
    out.extend((EventType.DELETED, old, None) for key, old in cache.items() if key not in seen)
    return out


class Reflector:
    """List, then watch from the list's resourceVersion, keeping a cache and calling a handler per change.

    ``run`` calls ``task_status.started()`` after the first list has been handed to the handler. The
    cache and resourceVersion survive a cancelled ``run``: running again resumes the watch where it
    stopped (and relists on 410).
    """

    def __init__(
        self,
        api: KubeAPI,
        kind: Kind,
        *,
        label_selector: str = "",
        field_selector: str = "",
        rng: random.Random | None = None,
    ) -> None:
        self.api = api
        self.kind = kind
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.cache: dict[str, dict[str, Any]] = {}
        self.resource_version = ""
        self.relists = 0
        self._rng = rng or random.Random()

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        """The cached object, if any."""
        return self.cache.get(f"{namespace}/{name}")

    async def run(
        self, handler: Handler, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Keep the cache current forever; transient errors are retried with a jittered delay."""
        started = False
        delay = 0.5
        while True:
            try:
                if not self.resource_version:
                    await self._relist(handler)
                if not started:
                    task_status.started()
                    started = True
                await self._watch_once(handler)
                delay = 0.5
            except KubeError as exc:
                if exc.gone:
                    _log.info("watch expired; relisting", kind=self.kind.plural, rv=self.resource_version)
                    self.resource_version = ""
                    continue
                _log.warning(
                    "watch failed; retrying", kind=self.kind.plural, error=str(exc), delay_s=round(delay, 2)
                )
                await trio.sleep(delay * (0.5 + self._rng.random()))
                delay = min(delay * 2, 30.0)

    async def _relist(self, handler: Handler) -> None:
        items, rv = await self.api.list_objects(
            self.kind, label_selector=self.label_selector, field_selector=self.field_selector
        )
        self.relists += 1
        for type_, obj, old in relist_diff(self.cache, items):
            self._apply(type_, obj)
            await handler(type_, obj, old)
        self.resource_version = rv

    def _apply(self, type_: EventType, obj: dict[str, Any]) -> None:
        if type_ is EventType.DELETED:
            self.cache.pop(object_key(obj), None)
        else:
            self.cache[object_key(obj)] = obj

    async def _watch_once(self, handler: Handler) -> None:
        send, receive = trio.open_memory_channel[dict[str, Any]](0)
        # Errors are carried out of the nursery by hand so callers see a KubeError, not an ExceptionGroup.
        errors: list[KubeError] = []
        async with trio.open_nursery() as nursery:

            async def stream() -> None:
                async with send:
                    try:
                        await self.api.watch(
                            self.kind, self.resource_version, send,
                            label_selector=self.label_selector, field_selector=self.field_selector,
                            timeout_s=self._rng.randint(limits.KUBE_WATCH_TIMEOUT_S // 2, limits.KUBE_WATCH_TIMEOUT_S),
                        )  # fmt: skip
                    except KubeError as exc:
                        errors.append(exc)

            nursery.start_soon(stream)
            try:
                async with receive:
                    async for event in receive:
                        await self._event(event, handler)
            except KubeError as exc:
                errors.append(exc)
            nursery.cancel_scope.cancel()
        if errors:
            raise errors[-1]

    async def _event(self, event: dict[str, Any], handler: Handler) -> None:
        type_text = event.get("type")
        obj = event.get("object")
        if not isinstance(obj, dict):
            raise KubeError(0, "BadWatchEvent", f"watch {self.kind.plural}: event without an object")
        if type_text == "ERROR":
            raise KubeError(
                int(obj.get("code") or 0), obj.get("reason", "Error"), obj.get("message", ""), obj
            )
        rv = (obj.get("metadata") or {}).get("resourceVersion", "")
        if type_text == "BOOKMARK":
            if rv:
                self.resource_version = rv
            return
        try:
            type_ = EventType(str(type_text))
        except ValueError:
            raise KubeError(
                0, "BadWatchEvent", f"watch {self.kind.plural}: event type {type_text!r}"
            ) from None
        obj = _typed(self.kind, obj)
        key = object_key(obj)
        old = self.cache.get(key)
        if rv:
            self.resource_version = rv
        if type_ is EventType.DELETED:
            if old is None:
                return
            self._apply(type_, obj)
            await handler(type_, obj, None)
            return
        if (
            old is not None
            and old["metadata"].get("uid") == obj["metadata"].get("uid")
            and rv_of(obj) <= rv_of(old)
        ):
            return  # already seen (a relist got there first): never apply an event twice
        if old is not None and old["metadata"].get("uid") != obj["metadata"].get("uid"):
            self._apply(EventType.DELETED, old)
            await handler(EventType.DELETED, old, None)
            old = None
        self._apply(type_, obj)
        await handler(EventType.ADDED if old is None else EventType.MODIFIED, obj, old)
