"""Label and field selectors: parsing from query strings and matching against objects.

Pure functions. Grammar follows Kubernetes: label requirements ``k``, ``!k``,
``k=v``, ``k==v``, ``k!=v``, ``k in (a,b)``, ``k notin (a,b)``, ``k>n``, ``k<n``
joined by commas; field requirements ``f=v``, ``f==v``, ``f!=v`` with ``\\``
escapes. Parse errors raise :class:`SelectorError` naming the bad term; the
API layer turns them into 400 BadRequest.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

_KEY_RE = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_VALUE_RE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


class SelectorError(ValueError):
    """A selector string that does not parse."""


class Op(StrEnum):
    """Label requirement operators."""

    EQ = "="
    NE = "!="
    IN = "in"
    NOTIN = "notin"
    EXISTS = "exists"
    NOT_EXISTS = "!"
    GT = ">"
    LT = "<"


@dataclass(frozen=True)
class Requirement:
    """One label requirement."""

    key: str
    op: Op
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """True when ``labels`` satisfy this requirement."""
        present = self.key in labels
        value = labels.get(self.key)
        match self.op:
            case Op.EXISTS:
                return present
            case Op.NOT_EXISTS:
                return not present
            case Op.EQ | Op.IN:
                return present and value in self.values
            case Op.NE | Op.NOTIN:
                return not present or value not in self.values
            case Op.GT | Op.LT:
                if not present:
                    return False
                try:
                    have = int(str(value))
                except ValueError:
                    return False
                want = int(self.values[0])
                return have > want if self.op is Op.GT else have < want


@dataclass(frozen=True)
class LabelSelector:
    """A conjunction of label requirements; empty matches everything."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        """True when every requirement holds for ``labels``."""
        have = labels or {}
        return all(r.matches(have) for r in self.requirements)


def _split_top(text: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts: list[str] = []
    depth = 0
    cur: list[str] = []
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise SelectorError(f"unbalanced parenthesis in {text!r}")
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth != 0:
        raise SelectorError(f"unbalanced parenthesis in {text!r}")
    parts.append("".join(cur))
    return parts


def _check_key(key: str, term: str) -> str:
    if not _KEY_RE.match(key) or len(key.split("/")[-1]) > 63:
        raise SelectorError(f"invalid label key {key!r} in {term!r}")
    return key


def _check_value(value: str, term: str) -> str:
    if not _VALUE_RE.match(value) or len(value) > 63:
        raise SelectorError(f"invalid label value {value!r} in {term!r}")
    return value


_SET_RE = re.compile(r"^\s*(\S+)\s+(in|notin)\s*\((.*)\)\s*$")


def parse_labels(text: str | None) -> LabelSelector:
    """Parse a ``labelSelector`` query value."""
    if text is None or not text.strip():
        return LabelSelector()
    reqs: list[Requirement] = []
    for raw in _split_top(text):
        term = raw.strip()
        if not term:
            raise SelectorError(f"empty requirement in {text!r}")
        if m := _SET_RE.match(term):
            key = _check_key(m.group(1), term)
            values = tuple(_check_value(v.strip(), term) for v in m.group(3).split(","))
            reqs.append(Requirement(key, Op(m.group(2)), values))
            continue
        for token, op in (("!=", Op.NE), ("==", Op.EQ), ("=", Op.EQ), (">", Op.GT), ("<", Op.LT)):
            if token in term:
                key, _, value = term.partition(token)
                key, value = key.strip(), value.strip()
                _check_key(key, term)
                if op in (Op.GT, Op.LT):
                    if not re.fullmatch(r"-?[0-9]+", value):
                        raise SelectorError(f"value of {term!r} must be an integer")
                else:
                    _check_value(value, term)
                reqs.append(Requirement(key, op, (value,)))
                break
        else:
            if term.startswith("!"):
                reqs.append(Requirement(_check_key(term[1:].strip(), term), Op.NOT_EXISTS))
            else:
                reqs.append(Requirement(_check_key(term, term), Op.EXISTS))
    return LabelSelector(tuple(reqs))


@dataclass(frozen=True)
class FieldRequirement:
    """One field requirement: ``field == value`` or ``field != value``."""

    field: str
    value: str
    negate: bool = False


@dataclass(frozen=True)
class FieldSelector:
    """A conjunction of field requirements; empty matches everything."""

    requirements: tuple[FieldRequirement, ...] = ()

    def matches(self, obj: Mapping[str, Any]) -> bool:
        """True when every requirement holds for ``obj``."""
        for req in self.requirements:
            equal = field_value(obj, req.field) == req.value
            if equal == req.negate:
                return False
        return True

    def fields(self) -> set[str]:
        """The field paths this selector reads."""
        return {r.field for r in self.requirements}


def field_value(obj: Mapping[str, Any], path: str) -> str:
    """The string form of a dotted field of ``obj``; missing fields read as empty."""
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, Mapping):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    if isinstance(cur, dict):
        # Event source is a struct; upstream matches on its component.
        return str(cur.get("component", ""))
    return str(cur)


def _split_escaped(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    cur: list[str] = []
    it = iter(text)
    for ch in it:
        if ch == "\\":
            nxt = next(it, "")
            cur.append("\\" + nxt)
        elif ch == sep:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def parse_fields(text: str | None) -> FieldSelector:
    """Parse a ``fieldSelector`` query value."""
    if text is None or not text.strip():
        return FieldSelector()
    reqs: list[FieldRequirement] = []
    for term in _split_escaped(text, ","):
        term = term.strip()
        for token, negate in (("!=", True), ("==", False), ("=", False)):
            idx = _find_unescaped(term, token)
            if idx >= 0:
                key = term[:idx].strip()
                if not key:
                    raise SelectorError(f"invalid field selector term {term!r}: empty field")
                reqs.append(FieldRequirement(key, _unescape(term[idx + len(token) :]), negate))
                break
        else:
            raise SelectorError(f"invalid field selector term {term!r}: expected field=value or field!=value")
    return FieldSelector(tuple(reqs))


def _find_unescaped(text: str, token: str) -> int:
    i = 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text.startswith(token, i):
            return i
        i += 1
    return -1
