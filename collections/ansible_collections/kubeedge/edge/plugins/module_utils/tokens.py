"""Join-token parsing shared by the collection's modules (stdlib only: runs on any managed host).

A kubeedge join token is ``<hex sha256 of the CA certificate DER>.<JWT>`` (upstream's format); the JWT is
HS256-signed with the CA key and carries only ``exp``. Nothing here can verify the signature (that needs the
CA key); :func:`parse` checks the shape and reads the expiry so that a stale or mangled token is caught on
the controller, before an edge host tries to join with it. Errors are :class:`TokenShapeError` naming the
problem, never echoing the token.
"""

from __future__ import annotations

import base64
import binascii
import json
import re

MAX_TOKEN_BYTES = 4096  # real tokens are ~200 bytes; anything this large is not a token
_HASH_RE = re.compile(r"[0-9a-f]{64}")
_B64URL_RE = re.compile(r"[A-Za-z0-9_-]+")


class TokenShapeError(ValueError):
    """The text is not a well-formed join token; the message says what is wrong (without the token)."""


def _b64url_json(part, what):
    if not _B64URL_RE.fullmatch(part):
        raise TokenShapeError(f"JWT {what} is not base64url")
    try:
        raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        value = json.loads(raw.decode("utf-8"))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise TokenShapeError(f"JWT {what} is not base64url-encoded JSON") from None
    if not isinstance(value, dict):
        raise TokenShapeError(f"JWT {what} is not a JSON object")
    return value


def parse(token):
    """Split and check ``token``; return ``{"ca_hash": str, "expires": int (Unix seconds)}``."""
    if not isinstance(token, str):
        raise TokenShapeError("token is not text")
    token = token.strip()
    if not token:
        raise TokenShapeError("token is empty")
    if len(token) > MAX_TOKEN_BYTES:
        raise TokenShapeError(f"token is longer than {MAX_TOKEN_BYTES} bytes")
    ca_hash, sep, jwt = token.partition(".")
    if not sep or not _HASH_RE.fullmatch(ca_hash):
        raise TokenShapeError(
            "token must start with the 64-hex-digit SHA-256 of the CA certificate and a dot"
        )
    parts = jwt.split(".")
    if len(parts) != 3:
        raise TokenShapeError(f"token's JWT must have 3 dot-separated parts, not {len(parts)}")
    header = _b64url_json(parts[0], "header")
    if header.get("alg") != "HS256":
        raise TokenShapeError("token's JWT algorithm must be HS256, not {!r}".format(header.get("alg")))
    claims = _b64url_json(parts[1], "claims")
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, (int, float)):
        raise TokenShapeError("token's JWT has no numeric exp claim")
    return {"ca_hash": ca_hash, "expires": int(exp)}
