"""Kubernetes resource quantities ("100m", "128Mi", "1.5G", "2e3") as exact numbers.

Pure. :func:`parse` raises :class:`ValueError` naming the bad text.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal, InvalidOperation
from typing import Final

_SUFFIXES: Final = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
    "Pi": Decimal(2**50),
    "Ei": Decimal(2**60),
}
_PATTERN: Final = re.compile(r"^([+-]?[0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]?)$")


def parse(text: str | int | float) -> Decimal:
    """The value of a quantity; raises ``ValueError`` for anything Kubernetes would reject."""
    if isinstance(text, bool):
        raise ValueError(f"quantity {text!r}: not a number")
    if isinstance(text, int | float):
        return Decimal(str(text))
    if len(text) > 64:
        raise ValueError(f"quantity {text[:64]!r}...: too long")
    match = _PATTERN.match(text.strip())
    if match is None:
        raise ValueError(f"quantity {text!r}: not a Kubernetes quantity")
    try:
        number = Decimal(match.group(1))
    except InvalidOperation as exc:
        raise ValueError(f"quantity {text!r}: not a number") from exc
    return number * _SUFFIXES[match.group(2)]


def millicores(text: str | int | float) -> int:
    """CPU quantity in millicores, rounded up as kubelet does."""
    return math.ceil(parse(text) * 1000)


def to_bytes(text: str | int | float) -> int:
    """Memory/storage quantity in bytes, rounded up."""
    return math.ceil(parse(text))
