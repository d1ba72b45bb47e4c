"""Patch engines: JSON merge patch (RFC 7386), JSON patch (RFC 6902) and strategic merge patch.

Pure functions over decoded JSON values; inputs are never mutated (results are
fresh copies). Strategic merge knows the merge keys of the built-in kinds
(containers by name, conditions by type, ...) through :func:`merge_key`, and
honours the directives kubectl sends: ``$patch`` (replace/delete/merge),
``$retainKeys``, ``$setElementOrder/<list>`` and ``$deleteFromPrimitiveList/<list>``.
A malformed patch raises :class:`PatchError` naming the problem.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

_MISSING = object()


class PatchError(ValueError):
    """A patch that cannot be applied (bad shape, failed test, missing path)."""


# --- JSON merge patch ------------------------------------------------------------------------------


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7386 merge patch to ``target``."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# --- JSON patch --------------------------------------------------------------------------------------


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise PatchError(f"invalid JSON pointer {path!r}")
    if path == "":
        return []
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _index(container: list[Any], token: str, *, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return len(container)
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise PatchError(f"invalid array index {token!r}")
    idx = int(token)
    if idx > len(container) or (idx == len(container) and not allow_end):
        raise PatchError(f"array index {idx} out of range")
    return idx


def _parent(doc: Any, tokens: list[str]) -> Any:
    cur = doc
    for tok in tokens[:-1]:
        if isinstance(cur, dict):
            if tok not in cur:
                raise PatchError(f"path segment {tok!r} does not exist")
            cur = cur[tok]
        elif isinstance(cur, list):
            cur = cur[_index(cur, tok, allow_end=False)]
        else:
            raise PatchError(f"path segment {tok!r} is not inside an object or array")
    return cur


def _get(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        return doc
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"path /{'/'.join(tokens)} does not exist")
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, allow_end=False)]
    raise PatchError(f"path /{'/'.join(tokens)} does not exist")


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, allow_end=True), value)
    else:
        raise PatchError(f"cannot add at /{'/'.join(tokens)}")
    return doc


def _remove(doc: Any, tokens: list[str]) -> Any:
    if not tokens:
        raise PatchError("cannot remove the whole document")
    parent = _parent(doc, tokens)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"path /{'/'.join(tokens)} does not exist")
        del parent[last]
    elif isinstance(parent, list):
        del parent[_index(parent, last, allow_end=False)]
    else:
        raise PatchError(f"cannot remove /{'/'.join(tokens)}")
    return doc


def json_patch(target: Any, ops: Any) -> Any:
    """Apply an RFC 6902 JSON patch (a list of operations) to ``target``."""
    if not isinstance(ops, list):
        raise PatchError("a JSON patch must be a list of operations")
    doc = copy.deepcopy(target)
    for n, op in enumerate(ops):
        if not isinstance(op, dict) or not isinstance(op.get("op"), str):
            raise PatchError(f"operation {n} is not an object with an 'op' string")
        kind = op["op"]
        path = _pointer(op.get("path"))
        if kind in ("add", "replace", "test") and "value" not in op:
            raise PatchError(f"operation {n} ({kind}) has no 'value'")
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif kind == "remove":
            doc = _remove(doc, path)
        elif kind == "replace":
            _get(doc, path)
            if not path:
                doc = copy.deepcopy(op["value"])
            else:
                doc = _add(_remove(doc, path), path, copy.deepcopy(op["value"]))
        elif kind in ("move", "copy"):
            src = _pointer(op.get("from"))
            value = copy.deepcopy(_get(doc, src))
            if kind == "move":
                if path[: len(src)] == src and len(path) > len(src):
                    raise PatchError(f"operation {n} moves a value into itself")
                doc = _remove(doc, src)
            doc = _add(doc, path, value)
        elif kind == "test":
            if _get(doc, path) != op["value"]:
                raise PatchError(f"test operation {n} failed at {op.get('path')}")
        else:
            raise PatchError(f"operation {n} has unknown op {kind!r}")
    return doc


# --- strategic merge patch ---------------------------------------------------------------------------

PRIMITIVE_MERGE = "<primitive>"
"""Marker for lists of scalars merged as sets (``metadata.finalizers``)."""

_KEYS_ANYWHERE = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "volumes": "name",
    "conditions": "type",
    "imagePullSecrets": "name",
    "hostAliases": "ip",
    "ownerReferences": "uid",
    "finalizers": PRIMITIVE_MERGE,
}


def merge_key(kind: str, path: Sequence[str]) -> str | None:
    """The strategic merge key of the list at ``path`` (field names only) in ``kind``, if it merges."""
    if not path:
        return None
    name = path[-1]
    if name == "ports":
        if kind == "Service" and tuple(path) == ("spec", "ports"):
            return "port"
        if len(path) >= 2 and path[-2] in ("containers", "initContainers", "ephemeralContainers"):
            return "containerPort"
        return None
    if name == "addresses" and kind == "Node":
        return "type"
    if name == "secrets" and kind == "ServiceAccount":
        return "name"
    if name == "finalizers" and tuple(path) != ("metadata", "finalizers"):
        return None
    return _KEYS_ANYWHERE.get(name)


def strategic_merge(kind: str, original: Any, patch: Any) -> Any:
    """Apply a strategic merge patch for built-in ``kind`` to ``original``."""
    if not isinstance(patch, dict):
        raise PatchError("a strategic merge patch must be a JSON object")
    result = _smp_map(kind, copy.deepcopy(original) if isinstance(original, dict) else {}, patch, ())
    if result is _MISSING:
        raise PatchError("$patch: delete on the whole object is not allowed")
    return result


def _smp_map(kind: str, orig: dict[str, Any], patch: dict[str, Any], path: tuple[str, ...]) -> Any:
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return _MISSING
    if directive not in (None, "merge"):
        raise PatchError(f"unknown $patch directive {directive!r} at {'.'.join(path) or '<root>'}")
    orders: dict[str, list[Any]] = {}
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys"):
            continue
        if key.startswith("$setElementOrder/"):
            if not isinstance(value, list):
                raise PatchError(f"{key} must be a list")
            orders[key.partition("/")[2]] = value
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.partition("/")[2]
            if isinstance(orig.get(field), list) and isinstance(value, list):
                orig[field] = [v for v in orig[field] if v not in value]
            continue
        if value is None:
            orig.pop(key, None)
            continue
        sub = (*path, key)
        current = orig.get(key)
        if isinstance(value, dict):
            merged = _smp_map(kind, current if isinstance(current, dict) else {}, value, sub)
            if merged is _MISSING:
                orig.pop(key, None)
            else:
                orig[key] = merged
        elif isinstance(value, list):
            orig[key] = _smp_list(kind, current if isinstance(current, list) else [], value, sub)
        else:
            orig[key] = copy.deepcopy(value)
    for field, order in orders.items():
        if isinstance(orig.get(field), list):
            orig[field] = _reorder(orig[field], order, merge_key(kind, (*path, field)))
    retain = patch.get("$retainKeys")
    if retain is not None:
        if not isinstance(retain, list):
            raise PatchError("$retainKeys must be a list")
        orig = {k: v for k, v in orig.items() if k in retain}
    return orig


def _smp_list(kind: str, orig: list[Any], patch: list[Any], path: tuple[str, ...]) -> list[Any]:
    key = merge_key(kind, path)
    if key is None:
        return [_strip_directives(v) for v in copy.deepcopy(patch)]
    if key == PRIMITIVE_MERGE:
        out = list(orig)
        for v in patch:
            if v not in out:
                out.append(copy.deepcopy(v))
        return out
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return [copy.deepcopy(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
    out = [copy.deepcopy(i) for i in orig]
    for item in patch:
        if not isinstance(item, dict):
            raise PatchError(f"{'.'.join(path)}: list items must be objects (merge key {key!r})")
        if key not in item:
            raise PatchError(f"{'.'.join(path)}: item has no merge key {key!r}")
        idx = next((i for i, o in enumerate(out) if isinstance(o, dict) and o.get(key) == item[key]), None)
        if item.get("$patch") == "delete":
            if idx is not None:
                del out[idx]
            continue
        if idx is None:
            out.append(_strip_directives(copy.deepcopy(item)))
        else:
            merged = _smp_map(kind, out[idx], item, path)
            if merged is _MISSING:
                del out[idx]
            else:
                out[idx] = merged
    return out


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_strip_directives(v) for v in value]
    return value


def _reorder(items: list[Any], order: list[Any], key: str | None) -> list[Any]:
    def ident(v: Any) -> Any:
        if key and key != PRIMITIVE_MERGE and isinstance(v, dict):
            return v.get(key)
        return v

    wanted = [ident(v) for v in order]
    ranked: list[tuple[int, int, Any]] = []
    for pos, item in enumerate(items):
        ident_item = ident(item)
        rank = wanted.index(ident_item) if ident_item in wanted else len(wanted)
        ranked.append((rank, pos, item))
    ranked.sort(key=lambda t: (t[0], t[1]))
    return [t[2] for t in ranked]
