"""Join tokens: ``<hex sha256 of CA DER>.<JWT>``, the JWT being HS256 keyed with the CA key DER, only ``exp``.

Owns making, persisting, parsing and verifying tokens, for both sides: the cloud's :class:`TokenIssuer`
(sans-io: every call takes ``now`` in Unix seconds) makes a new token every ``tokenRefreshDuration`` hours,
valid for twice that; the certificate service verifies bearer JWTs with :func:`verify_bearer` (signature,
``exp``, algorithm pinned to HS256); the edge and keadm split a token with :func:`parse` and read its expiry
with :func:`unverified_expiry` (the edge cannot check the signature: it has no CA key).

Failures are :class:`TokenError` with a message fit for an operator ("malformed token: ...", "token
expired at ...", "token signature does not verify").
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import jwt

from kubeedge.kit import limits, pki

DEFAULT_TOKEN_FILE: Final = Path("/etc/kubeedge/tokens/tokendata")
"""Where cloudcore keeps the current token for ``keadm gettoken`` (upstream: Secret ``tokensecret``)."""

DEFAULT_REFRESH: Final = dt.timedelta(hours=12)
"""Upstream ``tokenRefreshDuration`` default (12 hours)."""

ALGORITHM: Final = "HS256"
TOKEN_FILE_MODE: Final = 0o600

_HASH_RE: Final = re.compile(r"[0-9a-f]{64}")


class TokenError(Exception):
    """A token is malformed, expired or forged; the message says which."""


@dataclass(frozen=True)
class JoinToken:
    """A join token split into the CA hash and the bearer JWT."""

    ca_hash: str
    """Lower-case hex SHA-256 of the CA certificate DER the node must find at ``/ca.crt``."""
    bearer: str
    """The JWT (``header.payload.signature``) sent as ``Authorization: Bearer``."""

    def __str__(self) -> str:
        return f"{self.ca_hash}.{self.bearer}"


def make(ca_key_der: bytes, ca_der: bytes, *, now: float, refresh: dt.timedelta = DEFAULT_REFRESH) -> str:
    """A fresh token whose JWT expires at ``now + 2 x refresh`` (Unix seconds)."""
    exp = int(now + 2 * refresh.total_seconds())
    bearer = jwt.encode({"exp": exp}, ca_key_der, algorithm=ALGORITHM)
    return f"{pki.ca_hash(ca_der)}.{bearer}"


def parse(token: str) -> JoinToken:
    """Split a token as the edge does: exactly four dot-separated parts, the first a hex SHA-256."""
    token = token.strip()
    if len(token) > limits.TOKEN_MAX_BYTES:
        raise TokenError(f"malformed token: longer than {limits.TOKEN_MAX_BYTES} bytes")
    parts = token.split(".")
    if len(parts) != 4 or not all(parts):
        raise TokenError(
            f"malformed token: expected 4 non-empty dot-separated parts "
            f"<ca-sha256>.<jwt-header>.<jwt-payload>.<jwt-signature>, got {len(parts)} "
            "(copy the whole output of `keadm gettoken`)"
        )
    if not _HASH_RE.fullmatch(parts[0].lower()):
        raise TokenError("malformed token: the first part must be the CA's hex SHA-256 (64 hex digits)")
    return JoinToken(parts[0].lower(), ".".join(parts[1:]))


def unverified_expiry(bearer: str) -> dt.datetime:
    """The JWT's ``exp`` as UTC datetime, read without checking the signature (the edge has no key)."""
    try:
        claims = jwt.decode(bearer, options={"verify_signature": False, "verify_exp": False})
    except jwt.PyJWTError as exc:
        raise TokenError(f"malformed token: the JWT does not decode ({exc})") from exc
    return _exp(claims)


def _exp(claims: dict[str, object]) -> dt.datetime:
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        raise TokenError("malformed token: the JWT has no numeric exp claim")
    try:
        return dt.datetime.fromtimestamp(exp, dt.UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise TokenError(f"malformed token: exp {exp!r} is out of range") from exc


def check_not_expired(bearer: str, *, now: float) -> dt.datetime:
    """Raise :class:`TokenError` if the (unverified) JWT has expired at ``now``; return its expiry."""
    expiry = unverified_expiry(bearer)
    if expiry.timestamp() <= now:
        raise TokenError(f"token expired at {expiry.isoformat()}; get a fresh one with `keadm gettoken`")
    return expiry


def verify_bearer(bearer: str, ca_key_der: bytes, *, now: float) -> dt.datetime:
    """Verify a bearer JWT: HS256 only, signature with the CA key, ``exp`` after ``now``. Returns ``exp``."""
    if len(bearer) > limits.TOKEN_MAX_BYTES:
        raise TokenError("token too long")
    try:
        header = jwt.get_unverified_header(bearer)
    except jwt.PyJWTError as exc:
        raise TokenError(f"malformed token ({exc})") from exc
    if header.get("alg") != ALGORITHM:
        raise TokenError(f"token algorithm {header.get('alg')!r} is not {ALGORITHM}")
    try:
        # exp is checked below against the caller's now, not PyJWT's clock.
        claims = jwt.decode(
            bearer, ca_key_der, algorithms=[ALGORITHM], options={"verify_exp": False, "require": ["exp"]}
        )
    except jwt.InvalidSignatureError as exc:
        raise TokenError("token signature does not verify (issued by another CA?)") from exc
    except jwt.PyJWTError as exc:
        raise TokenError(f"invalid token ({exc})") from exc
    expiry = _exp(claims)
    if expiry.timestamp() <= now:
        raise TokenError(f"token expired at {expiry.isoformat()}")
    return expiry


def write_token_file(path: Path, token: str) -> None:
    """Atomically store ``token`` (plus newline) at ``path`` with mode 0600."""
    pki.write_replace(path, token.encode() + b"\n", mode=TOKEN_FILE_MODE)


def read_token_file(path: Path) -> str:
    """The token stored at ``path`` (bounded read, whitespace stripped); :class:`TokenError` if empty."""
    try:
        data = pki.read_bounded(path, limit=limits.TOKEN_MAX_BYTES)
    except pki.PKIError as exc:
        raise TokenError(str(exc)) from exc
    token = data.decode("ascii", errors="replace").strip()
    if not token:
        raise TokenError(f"{path}: empty token file")
    return token


class TokenIssuer:
    """Keeps the current join token and renews it every ``refresh`` (sans-io: the caller passes ``now``).

    Tokens stay verifiable until their own ``exp`` even after renewal, because they share the CA key; the
    overlap (``exp`` = issue time + 2 x ``refresh``) lets a token copied just before a renewal still work.
    """

    def __init__(self, ca_key_der: bytes, ca_der: bytes, *, refresh: dt.timedelta = DEFAULT_REFRESH) -> None:
        if refresh <= dt.timedelta(0):
            raise ValueError(f"tokenRefreshDuration must be positive, got {refresh}")
        self._key = ca_key_der
        self._ca_der = ca_der
        self._refresh = refresh
        self._token: str | None = None
        self._next_refresh = float("-inf")

    @property
    def next_refresh(self) -> float:
        """Unix time at which :meth:`tick` will make a new token (``-inf`` before the first tick)."""
        return self._next_refresh

    def tick(self, now: float) -> str | None:
        """Renew the token if it is due at ``now``; return the new token (to persist), else None."""
        if now < self._next_refresh:
            return None
        self._token = make(self._key, self._ca_der, now=now, refresh=self._refresh)
        self._next_refresh = now + self._refresh.total_seconds()
        return self._token

    def current(self, now: float) -> str:
        """The current token, renewing first if due."""
        self.tick(now)
        assert self._token is not None
        return self._token

    def verify(self, bearer: str, *, now: float) -> dt.datetime:
        """Verify a bearer JWT against this issuer's CA key (see :func:`verify_bearer`)."""
        return verify_bearer(bearer, self._key, now=now)
