"""Log lines that say what failed: every line written while a run executes carries the run, the
worker, the system, the action, the attempt and the error class, in text and in JSON.

The engine binds those fields with ``bound(...)`` (a context variable, so concurrent chains never
see each other's fields: anyio copies the context into each task it starts); ``ContextFilter``
puts them on every record, including the records of connectors and the retry policy. Nothing is
logged here that callers did not put in a field: secrets, tokens and vendor bodies stay out
because no field carries them.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from enum import StrEnum
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


#: The fields a line about a run carries, in the order the text format prints them.
FIELDS = (
    "run_id",
    "worker_id",
    "kind",
    "system",
    "action",
    "attempt",
    "error_class",
    "error_code",
    "wait_seconds",
    "status",
    "time_to_revoke_ms",
    "source",
    "outcome",
)
_context: ContextVar[dict[str, Any]] = ContextVar("lifecycle_log_context", default={})  # noqa: B039 - never mutated


class bound:  # lower case: used like a function, ``with bound(run_id=...):``
    """Add ``fields`` to every log record written inside the block (and the tasks it starts).

    A class rather than a ``@contextmanager`` generator: the engine enters one around every
    connector call, and a generator-based context manager costs several times as much."""

    __slots__ = ("_fields", "_token")

    def __init__(self, **fields: Any) -> None:
        self._fields = fields

    def __enter__(self) -> None:
        self._token = _context.set({**_context.get(), **self._fields})

    def __exit__(self, *exc: object) -> None:
        _context.reset(self._token)


def bind(**fields: Any) -> None:
    """Add ``fields`` for the rest of the current task (its context is its own)."""
    _context.set({**_context.get(), **fields})


class ContextFilter(logging.Filter):
    """Copies the bound fields onto each record; a field given with ``extra=`` wins."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class TextFormatter(logging.Formatter):
    """``time LEVEL logger message key=value ...`` with the run fields that are set."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = [
            f"{key}={value}" for key in FIELDS if (value := getattr(record, key, None)) is not None
        ]
        if not fields:
            return line
        head, newline, rest = line.partition("\n")  # keep a traceback below the fields
        return f"{head} {' '.join(fields)}{newline}{rest}"


def json_formatter() -> logging.Formatter:
    """One JSON object per line: time, level, logger, message, the run fields, extras."""
    return JsonFormatter(
        "{asctime}{levelname}{name}{message}",
        style="{",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        # uvicorn adds an ANSI-coloured copy of its message: not for a JSON reader.
        reserved_attrs=[*RESERVED_ATTRS, "color_message"],
        json_ensure_ascii=False,
    )


def configure(level: str = "info", fmt: LogFormat = LogFormat.TEXT) -> None:
    """Set up the root logger once, for ``serve`` and the CLI."""
    handler = logging.StreamHandler()
    handler.setFormatter(json_formatter() if fmt is LogFormat.JSON else TextFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
