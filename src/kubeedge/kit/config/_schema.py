"""The config schema engine: typed settings, strict decoding from YAML data, plain and commented dumping.

Owns :class:`ConfigError`, the :func:`setting` / :func:`section` field helpers the models are written with,
Go duration parsing and formatting, and the walk that turns parsed YAML into frozen dataclasses.

Invariants: a model is a tree of frozen dataclasses whose every field carries its upstream YAML key and a one
line doc; decoding never returns a half-checked object. Keys are camelCase exactly as upstream spells them; a
missing key or an explicit ``null`` keeps the default (as Go's JSON decoding does).

Failure: every problem raises :class:`ConfigError` with the path of the offending key (``modules.edgeHub.heartbeat``)
and what is wrong with it; nothing else escapes, whatever the input.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import json
import math
import re
import types
from collections.abc import Callable, Iterator, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any, Final, Union, get_args, get_origin, get_type_hints

import yaml

PathPart = str | int
"""One step of a key path: a mapping key or a list index."""

EXTRAS_FIELD: Final = "extras"
"""Name of the field holding known-but-uninterpreted upstream keys (see :func:`extras`)."""


class ConfigError(ValueError):
    """A config file is unreadable, malformed or invalid.

    ``path`` is the list of keys (and list indexes) leading to the offending value, empty for file-level
    problems; ``problem`` says what is wrong; ``source`` names the file when known.
    """

    def __init__(self, path: Sequence[PathPart], problem: str, *, source: str | None = None) -> None:
        self.path: list[PathPart] = list(path)
        self.problem = problem
        self.source = source
        super().__init__(str(self))

    @property
    def dotted_path(self) -> str:
        """The path as users write it: ``modules.cloudHub.authorization.modes[0].node``."""
        return format_path(self.path)

    def __str__(self) -> str:
        where = self.dotted_path
        return f"{where}: {self.problem}" if where else self.problem


_PLAIN_KEY = re.compile(r"[A-Za-z0-9_./-]+")


def format_path(path: Sequence[PathPart]) -> str:
    """Render a key path as ``a.b[0].c``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
            continue
        # A key that is not a plain word is quoted, so control characters and dots can't blur the path.
        text = part if _PLAIN_KEY.fullmatch(part) else json.dumps(part)
        out += f".{text}" if out else text
    return out


# --- field declaration ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class Meta:
    """What the engine knows about one field besides its type."""

    doc: str
    key: str | None = None
    gt: float | None = None
    ge: float | None = None
    le: float | None = None
    choices: tuple[object, ...] | None = None
    duration: bool = False
    hostport: bool = False
    ip: bool = False
    known_keys: frozenset[str] = frozenset()


def setting(
    default: Any,
    doc: str,
    *,
    key: str | None = None,
    gt: float | None = None,
    ge: float | None = None,
    le: float | None = None,
    choices: tuple[object, ...] | None = None,
    duration: bool = False,
    hostport: bool = False,
    ip: bool = False,
) -> Any:
    """A scalar or immutable field: its default, a one-line doc and its checks.

    ``key`` is the upstream YAML key when camelCasing the attribute name would not give it. ``duration`` fields
    are ``float`` seconds written as Go durations (``1m0s``); ``hostport`` strings must be ``host:port``; ``ip``
    strings (or each string of a tuple) must be IP addresses.
    """
    meta = Meta(doc, key, gt, ge, le, choices, duration, hostport, ip)
    if isinstance(default, dict):
        frozen = dict(default)
        return dataclasses.field(default_factory=lambda: dict(frozen), metadata={"meta": meta})
    return dataclasses.field(default=default, metadata={"meta": meta})


def port_number(default: int, doc: str, *, key: str | None = None) -> Any:
    """A TCP/UDP port field (1..65535)."""
    return setting(default, doc, key=key, ge=1, le=65535)


def positive(default: int, doc: str, *, key: str | None = None) -> Any:
    """A positive integer field (a size, a worker count, an interval in whole units)."""
    return setting(default, doc, key=key, gt=0)


def section(factory: Callable[[], Any], doc: str, *, key: str | None = None) -> Any:
    """A nested mapping field whose default is built by ``factory`` (usually the section class)."""
    return dataclasses.field(default_factory=factory, metadata={"meta": Meta(doc, key)})


def extras(defaults: Mapping[str, Any], doc: str, *, also_known: Sequence[str] = ()) -> Any:
    """The field of known upstream keys that are accepted and kept, but not interpreted.

    ``defaults`` holds such keys with their upstream defaults; ``also_known`` names further keys that have no
    default (absent unless a file sets them). A file's values replace the defaults key by key. Any other key is
    an unknown key (an error), so a typo is still caught.
    """
    frozen = dict(defaults)
    meta = Meta(doc, known_keys=frozenset(frozen) | frozenset(also_known))
    return dataclasses.field(default_factory=lambda: dict(frozen), metadata={"meta": meta})


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


@dataclasses.dataclass(frozen=True, slots=True)
class _Field:
    name: str
    key: str
    hint: Any
    meta: Meta


_FIELDS_CACHE: dict[type, tuple[_Field, ...]] = {}


def _fields(cls: type) -> tuple[_Field, ...]:
    cached = _FIELDS_CACHE.get(cls)
    if cached is not None:
        return cached
    hints = get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        meta = f.metadata.get("meta")
        if not isinstance(meta, Meta):
            raise TypeError(f"{cls.__name__}.{f.name} is not declared with setting()/section()/extras()")
        out.append(_Field(f.name, meta.key or _camel(f.name), hints[f.name], meta))
    _FIELDS_CACHE[cls] = result = tuple(out)
    return result


def _extras_field(cls: type) -> _Field | None:
    for f in _fields(cls):
        if f.name == EXTRAS_FIELD:
            return f
    return None


# --- Go durations --------------------------------------------------------------------------------------------

_DURATION_PART: Final = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_NS: Final = {
    "ns": 1,
    "us": 1_000,
    "µs": 1_000,
    "μs": 1_000,
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}
_MAX_NS: Final = 2**63 - 1  # Go's time.Duration is an int64 of nanoseconds


def parse_duration(text: str) -> float:
    """Parse a Go duration (``1h2m3.5s``, ``100ms``, ``-5s``, ``0``) into seconds.

    Raises ``ValueError`` with a short reason on anything Go's ``time.ParseDuration`` would reject.
    """
    body = text
    sign = 1
    if body[:1] in ("+", "-"):
        sign = -1 if body[0] == "-" else 1
        body = body[1:]
    if body == "0":
        return 0.0
    if not body:
        raise ValueError("empty duration")
    total = Decimal(0)
    pos = 0
    while pos < len(body):
        match = _DURATION_PART.match(body, pos)
        if match is None or match.group(1) in ("", "."):
            raise ValueError("not a Go duration (examples: 10s, 1m30s, 100ms)")
        try:
            total += Decimal(match.group(1)) * _UNIT_NS[match.group(2)]
        except InvalidOperation as exc:  # pragma: no cover - the regex admits only decimal numbers
            raise ValueError("not a Go duration") from exc
        if total > _MAX_NS:
            raise ValueError("duration out of range (Go durations end near 292 years)")
        pos = match.end()
    return sign * int(total) / 1e9


def _fraction(value: int, size: int) -> str:
    whole, part = divmod(value, size)
    if part == 0:
        return str(whole)
    digits = str(part).rjust(len(str(size)) - 1, "0").rstrip("0")
    return f"{whole}.{digits}"


def format_duration(seconds: float) -> str:
    """Format seconds the way Go's ``time.Duration.String`` does (``4h0m0s``, ``1m0s``, ``100ms``, ``0s``)."""
    ns = round(seconds * 1e9)
    if ns == 0:
        return "0s"
    sign = "-" if ns < 0 else ""
    ns = abs(ns)
    if ns < 1_000_000_000:
        for unit, size in (("ms", 1_000_000), ("µs", 1_000), ("ns", 1)):
            if ns >= size:
                return f"{sign}{_fraction(ns, size)}{unit}"
    hours, rest = divmod(ns, _UNIT_NS["h"])
    minutes, rest = divmod(rest, _UNIT_NS["m"])
    secs = _fraction(rest, _UNIT_NS["s"]) + "s"
    if hours:
        return f"{sign}{hours}h{minutes}m{secs}"
    if minutes:
        return f"{sign}{minutes}m{secs}"
    return sign + secs


# --- decoding ------------------------------------------------------------------------------------------------


def describe(value: object) -> str:
    """How a YAML value is named in an error: ``'abc'``, ``12``, ``true``, ``null``, ``a mapping``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _unknown_key(key: str, known: Sequence[str]) -> str:
    close = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
    if close:
        return f"unknown key (did you mean {close[0]}?)"
    if len(known) <= 30:
        return f"unknown key (known keys here: {', '.join(sorted(known))})"
    return "unknown key"


def decode(cls: type[Any], data: object, path: tuple[PathPart, ...] = ()) -> Any:
    """Build the dataclass ``cls`` from parsed YAML ``data``, checking every key and value."""
    if data is None:
        return cls()
    if not isinstance(data, Mapping):
        raise ConfigError(path, f"expected a mapping, got {describe(data)}")
    fields = {f.key: f for f in _fields(cls)}
    extra = _extras_field(cls)
    known_extra = extra.meta.known_keys if extra is not None else frozenset()
    kwargs: dict[str, Any] = {}
    kept: dict[str, Any] = {}
    for key, value in data.items():
        if not isinstance(key, str):
            raise ConfigError(path, f"keys must be strings, got {describe(key)}")
        here = (*path, key)
        field = fields.get(key)
        if field is None or field.name == EXTRAS_FIELD:
            if key in known_extra:
                if value is not None:
                    kept[key] = value
                continue
            candidates = [k for k, f in fields.items() if f.name != EXTRAS_FIELD] + sorted(known_extra)
            raise ConfigError(here, _unknown_key(key, candidates))
        if value is None:
            continue  # like Go's JSON decoding: null leaves the default in place
        kwargs[field.name] = _convert(field.hint, field.meta, value, here)
    if extra is not None:
        kwargs[EXTRAS_FIELD] = {**cls().extras, **kept}
    return cls(**kwargs)


_TYPE_NAMES: Final = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _convert(hint: Any, meta: Meta, value: object, path: tuple[PathPart, ...]) -> Any:
    origin = get_origin(hint)
    if origin in (Union, types.UnionType):
        inner = [arg for arg in get_args(hint) if arg is not type(None)]
        return _convert(inner[0], meta, value, path)
    if meta.duration:
        if not isinstance(value, str):
            raise ConfigError(path, f"expected a Go duration such as '10s' or '1m0s', got {describe(value)}")
        try:
            result: Any = parse_duration(value)
        except ValueError as exc:
            raise ConfigError(path, f"{exc}, got {describe(value)}") from None
    elif hint is Any:
        result = value
    elif dataclasses.is_dataclass(hint):
        return decode(hint, value, path)  # type: ignore[arg-type]
    elif origin is tuple:
        if not isinstance(value, list):
            raise ConfigError(path, f"expected a list, got {describe(value)}")
        item = get_args(hint)[0]
        # Item checks (ip, hostport, ranges) come from the list's own setting.
        return tuple(_convert(item, meta, v, (*path, i)) for i, v in enumerate(value))
    elif origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(path, f"expected a mapping, got {describe(value)}")
        value_type = get_args(hint)[1]
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConfigError(path, f"keys must be strings, got {describe(k)}")
            out[k] = _convert(value_type, Meta(meta.doc), v, (*path, k))
        return out
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(path, f"expected a number, got {describe(value)}")
        result = float(value)
        if not math.isfinite(result):
            raise ConfigError(path, f"expected a finite number, got {describe(value)}")
    elif hint in (bool, int, str):
        ok = isinstance(value, hint) and not (hint is int and isinstance(value, bool))
        if not ok:
            raise ConfigError(path, f"expected {_TYPE_NAMES[hint]}, got {describe(value)}")
        result = value
    else:  # pragma: no cover - a model declared with a type the engine does not know
        raise TypeError(f"unsupported config field type {hint!r}")
    _check(meta, result, path)
    return result


def _bound(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def _check(meta: Meta, value: Any, path: tuple[PathPart, ...]) -> None:
    # Comparisons are written so that NaN fails them.
    if meta.choices is not None and value not in meta.choices:
        allowed = ", ".join(describe(c) for c in meta.choices)
        raise ConfigError(path, f"must be one of {allowed}, got {describe(value)}")
    if isinstance(value, int | float) and not isinstance(value, bool):
        shown = format_duration(value) if meta.duration else describe(value)
        if meta.ge is not None and meta.le is not None and not (meta.ge <= value <= meta.le):
            raise ConfigError(path, f"must be between {_bound(meta.ge)} and {_bound(meta.le)}, got {shown}")
        if meta.gt is not None and not value > meta.gt:
            raise ConfigError(path, f"must be > {_bound(meta.gt)}, got {shown}")
        if meta.ge is not None and not value >= meta.ge:
            raise ConfigError(path, f"must be >= {_bound(meta.ge)}, got {shown}")
        if meta.le is not None and not value <= meta.le:
            raise ConfigError(path, f"must be <= {_bound(meta.le)}, got {shown}")
    if isinstance(value, str) and value:
        if meta.hostport:
            _check_hostport(value, path)
        if meta.ip:
            try:
                ipaddress.ip_address(value)
            except ValueError:
                raise ConfigError(path, f"expected an IP address, got {describe(value)}") from None


def _check_hostport(value: str, path: tuple[PathPart, ...]) -> None:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(path, f"expected host:port with a port between 1 and 65535, got {describe(value)}")


# --- encoding ------------------------------------------------------------------------------------------------


def _plain_value(meta: Meta, value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_plain(value)
    if meta.duration and isinstance(value, float):
        return format_duration(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)  # as Go prints a whole float32 (qps: 2500); loads back to the same float
    if isinstance(value, tuple):
        return [_plain_value(meta, v) for v in value]
    if isinstance(value, dict):
        return dict(value)
    return value


def _items(obj: Any) -> Iterator[tuple[str, Meta, Any]]:
    """The (key, meta, value) entries of a section in upstream's order: keys sorted bytewise."""
    entries: list[tuple[str, Meta, Any]] = []
    for f in _fields(type(obj)):
        value = getattr(obj, f.name)
        if f.name == EXTRAS_FIELD:
            entries.extend((k, Meta(f.meta.doc), v) for k, v in value.items())
        else:
            entries.append((f.key, f.meta, value))
    return iter(sorted(entries, key=lambda entry: entry[0]))


def to_plain(obj: Any) -> dict[str, Any]:
    """A config dataclass as plain YAML data (mappings, lists, scalars) with upstream keys."""
    return {key: _plain_value(meta, value) for key, meta, value in _items(obj)}


def _comment(doc: str, indent: str) -> list[str]:
    return [f"{indent}# {line}".rstrip() for line in doc.splitlines() or [""]]


def to_commented_yaml(obj: Any, header: Sequence[str] = (), only: Sequence[str] | None = None) -> str:
    """A config dataclass as YAML text with a ``#`` comment line above every key.

    ``only`` limits the output to the given dotted key paths (a key names its whole subtree).
    """
    lines = [f"# {line}".rstrip() for line in header]
    _emit(obj, "", lines, None if only is None else frozenset(only), "")
    return "\n".join(lines) + "\n"


def _wanted(only: frozenset[str] | None, dotted: str) -> tuple[bool, frozenset[str] | None]:
    """Whether ``dotted`` is emitted, and the filter for its children (None: everything below)."""
    if only is None or dotted in only:
        return True, None
    return any(p.startswith(dotted + ".") for p in only), only


def _emit(obj: Any, indent: str, lines: list[str], only: frozenset[str] | None, prefix: str) -> None:
    for key, meta, value in _items(obj):
        wanted, below = _wanted(only, prefix + key)
        if not wanted:
            continue
        lines.extend(_comment(meta.doc, indent))
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            lines.append(f"{indent}{key}:")
            _emit(value, indent + "  ", lines, below, f"{prefix}{key}.")
            continue
        text = yaml.safe_dump(
            {key: _plain_value(meta, value)}, default_flow_style=False, sort_keys=True, allow_unicode=False
        )
        # ASCII output: PyYAML mangles NEL and other line-break characters written raw in quoted scalars.
        # split on "\n" only: str.splitlines() would also split inside a scalar holding NEL or U+2028.
        lines.extend(indent + line for line in text.rstrip("\n").split("\n"))


def select(plain: Mapping[str, Any], paths: Sequence[str]) -> dict[str, Any]:
    """The part of ``plain`` reached by the dotted ``paths`` (a key names its whole subtree)."""
    out: dict[str, Any] = {}
    for dotted in paths:
        keys = dotted.split(".")
        src: Any = plain
        dst = out
        for key in keys[:-1]:
            src = src[key]
            dst = dst.setdefault(key, {})
        dst[keys[-1]] = src[keys[-1]]
    return out
