"""Kubernetes ``Status`` errors: one exception type carrying code, reason and details.

Every failure the API layer reports to a client is an :class:`ApiError`; the
HTTP shell turns it into a ``metav1.Status`` body with the same HTTP code.
Nothing here does I/O.
"""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    """A failed API request, rendered as a ``Status`` object with ``code`` and ``reason``."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        """The ``metav1.Status`` body for this error."""
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details:
            body["details"] = self.details
        return body


def _details(resource: str, name: str, group: str) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name, "kind": resource}
    if group:
        details["group"] = group
    return details


def _qualified(resource: str, group: str) -> str:
    return f"{resource}.{group}" if group else resource


def not_found(resource: str, name: str, group: str = "") -> ApiError:
    """404 NotFound for ``resource`` ``name``."""
    return ApiError(
        404,
        "NotFound",
        f'{_qualified(resource, group)} "{name}" not found',
        details=_details(resource, name, group),
    )


def already_exists(resource: str, name: str, group: str = "") -> ApiError:
    """409 AlreadyExists for ``resource`` ``name``."""
    return ApiError(
        409,
        "AlreadyExists",
        f'{_qualified(resource, group)} "{name}" already exists',
        details=_details(resource, name, group),
    )


def conflict(resource: str, name: str, group: str = "") -> ApiError:
    """409 Conflict: the client's resourceVersion is stale."""
    return ApiError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {_qualified(resource, group)} "{name}": the object has been modified;'
        " please apply your changes to the latest version and try again",
        details=_details(resource, name, group),
    )


def invalid(kind: str, name: str, causes: list[tuple[str, str]], group: str = "") -> ApiError:
    """422 Invalid with one cause per ``(field, message)``."""
    text = "; ".join(f"{field}: {msg}" for field, msg in causes)
    details: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "causes": [{"reason": "FieldValueInvalid", "message": msg, "field": field} for field, msg in causes],
    }
    if group:
        details["group"] = group
    return ApiError(422, "Invalid", f'{kind} "{name}" is invalid: {text}', details=details)


def bad_request(message: str) -> ApiError:
    """400 BadRequest."""
    return ApiError(400, "BadRequest", message)


def unauthorized() -> ApiError:
    """401 Unauthorized."""
    return ApiError(401, "Unauthorized", "Unauthorized")


def forbidden(message: str, resource: str = "", name: str = "") -> ApiError:
    """403 Forbidden."""
    return ApiError(403, "Forbidden", message, details={"name": name, "kind": resource} if resource else None)


def method_not_allowed(message: str) -> ApiError:
    """405 MethodNotAllowed."""
    return ApiError(405, "MethodNotAllowed", message)


def gone(message: str) -> ApiError:
    """410 Expired: the requested resourceVersion is no longer in the watch window."""
    return ApiError(410, "Expired", message)


def too_large(limit: int) -> ApiError:
    """413 RequestEntityTooLarge."""
    return ApiError(413, "RequestEntityTooLarge", f"request entity too large: limit is {limit} bytes")


def unsupported_media(content_type: str) -> ApiError:
    """415 UnsupportedMediaType."""
    return ApiError(
        415, "UnsupportedMediaType", f"the body of the request was in an unknown format: {content_type}"
    )
