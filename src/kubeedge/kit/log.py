"""One logging setup for every command: level from flag or environment, logfmt or JSON lines.

Owns the root ``kubeedge`` logger's handler and formatters. Call :func:`setup`
once per process (the CLIs do); library code only calls :func:`get` and logs
with keyword fields::

    log = kit.log.get(__name__)
    log.info("session opened", node="edge-1", remote="127.0.0.1:50000")

Text output is ``key=value`` (logfmt) on stderr; ``json`` output is one JSON
object per line. Field values are never allowed to break a line: newlines and
quotes are escaped in both formats.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Mapping
from typing import Any, Final, TextIO

ENV_LEVEL: Final = "KUBEEDGE_LOG_LEVEL"
ENV_FORMAT: Final = "KUBEEDGE_LOG_FORMAT"
FORMATS: Final = ("text", "json")
LEVELS: Final = ("debug", "info", "warning", "error", "critical")

_FIELDS_ATTR: Final = "kubeedge_fields"


class KVLogger:
    """A thin wrapper over :class:`logging.Logger` whose methods take keyword fields."""

    __slots__ = ("_logger",)

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger

    @property
    def name(self) -> str:
        """The underlying logger's name."""
        return self._logger.name

    def isEnabledFor(self, level: int) -> bool:
        """True when a record at ``level`` would be emitted."""
        return self._logger.isEnabledFor(level)

    def _log(self, level: int, msg: str, fields: Mapping[str, Any], exc_info: bool = False) -> None:
        if self._logger.isEnabledFor(level):
            self._logger.log(level, msg, extra={_FIELDS_ATTR: dict(fields)}, exc_info=exc_info, stacklevel=3)

    def debug(self, msg: str, **fields: Any) -> None:
        """Log at DEBUG with ``fields``."""
        self._log(logging.DEBUG, msg, fields)

    def info(self, msg: str, **fields: Any) -> None:
        """Log at INFO with ``fields``."""
        self._log(logging.INFO, msg, fields)

    def warning(self, msg: str, **fields: Any) -> None:
        """Log at WARNING with ``fields``."""
        self._log(logging.WARNING, msg, fields)

    def error(self, msg: str, **fields: Any) -> None:
        """Log at ERROR with ``fields``."""
        self._log(logging.ERROR, msg, fields)

    def exception(self, msg: str, **fields: Any) -> None:
        """Log at ERROR with ``fields`` and the current exception's traceback."""
        self._log(logging.ERROR, msg, fields, exc_info=True)


def get(name: str) -> KVLogger:
    """Return the keyword-field logger for ``name`` (usually ``__name__``)."""
    return KVLogger(logging.getLogger(name))


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, _FIELDS_ATTR, None)
    return fields if isinstance(fields, dict) else {}


def _logfmt_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if text and not any(c in text for c in ' ="\n\r\t\\'):
        return text
    return json.dumps(text)


def _timestamp(created: float) -> str:
    ms = int(created * 1000) % 1000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created)) + f".{ms:03d}Z"


class LogfmtFormatter(logging.Formatter):
    """``ts=… level=… logger=… msg="…" key=value …`` on one line."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [
            f"ts={_timestamp(record.created)}",
            f"level={record.levelname.lower()}",
            f"logger={record.name}",
            f"msg={_logfmt_value(record.getMessage())}",
        ]
        parts.extend(f"{k}={_logfmt_value(v)}" for k, v in _fields(record).items())
        if record.exc_info:
            parts.append(f"exc={_logfmt_value(self.formatException(record.exc_info))}")
        return " ".join(parts)


class JSONFormatter(logging.Formatter):
    """One JSON object per line with ``ts``, ``level``, ``logger``, ``msg`` and the fields."""

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {
            "ts": _timestamp(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in _fields(record).items():
            obj.setdefault(key, value)
        if record.exc_info:
            obj["exc"] = self.formatException(record.exc_info)
        return json.dumps(obj, default=str)


def setup(level: str | None = None, fmt: str | None = None, stream: TextIO | None = None) -> None:
    """Configure process-wide logging.

    ``level`` and ``fmt`` fall back to ``$KUBEEDGE_LOG_LEVEL`` / ``$KUBEEDGE_LOG_FORMAT``,
    then to ``info`` / ``text``. Raises :class:`ValueError` naming the bad value.
    """
    level = (level or os.environ.get(ENV_LEVEL) or "info").lower()
    fmt = (fmt or os.environ.get(ENV_FORMAT) or "text").lower()
    if level not in LEVELS:
        raise ValueError(f"log level {level!r}: must be one of {', '.join(LEVELS)}")
    if fmt not in FORMATS:
        raise ValueError(f"log format {fmt!r}: must be one of {', '.join(FORMATS)}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JSONFormatter() if fmt == "json" else LogfmtFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
