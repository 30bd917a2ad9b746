"""Core statements compiled once for the engine's dialect and executed with plain parameters.

The executor's progress writes run the same few statements thousands of times a minute in a
burst; through ``Connection.execute`` each row's parameters pass SQLAlchemy's per-execution
machinery (cache key, ``construct_params``, a bind processor call per value) at several
microseconds per row. A ``Prepared`` statement does that work once: its SQL text in the
driver's parameter style, and for each parameter a converter (the column type's own bind
processor, or a faster one for ``UTCDateTime`` that gives the same values). It still executes
through SQLAlchemy's connection (``exec_driver_sql``), inside the caller's transaction, so
errors are SQLAlchemy's (``OperationalError`` and the rest) as before.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler

from lifecycle.store.sql.tables import UTCDateTime

Converter = Callable[[Any], Any]


def _sqlite_timestamp(value: datetime | None) -> str | None:
    """``UTCDateTime`` on SQLite: naive UTC in SQLAlchemy's storage format
    (``YYYY-MM-DD HH:MM:SS.ffffff``), as its bind processors would write it."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(" ", "microseconds")


def _aware_timestamp(value: datetime | None) -> datetime | None:
    """``UTCDateTime`` elsewhere (PostgreSQL): the aware datetime in UTC."""
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime given to a UTC column")
    return value.astimezone(UTC)


class Prepared:
    """One statement, compiled for ``dialect``; ``executemany`` takes rows keyed by its bind
    names (absent keys take the value the statement was built with, e.g. ``lease_owner=None``)."""

    __slots__ = ("_converters", "_defaults", "_get", "_names", "positional", "sql")

    def __init__(self, statement: ClauseElement, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        self.sql: str = compiled.string
        self.positional: bool = bool(compiled.positional)
        names: Sequence[str] = (
            list(compiled.positiontup or ()) if self.positional else list(compiled.binds)
        )
        timestamp = _sqlite_timestamp if dialect.name == "sqlite" else _aware_timestamp
        converters: list[tuple[int, Converter]] = []
        defaults: dict[str, Any] = {}
        for index, name in enumerate(names):
            bind = compiled.binds[name]
            convert: Converter | None
            if isinstance(bind.type, UTCDateTime):
                convert = timestamp
            else:
                convert = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if convert is not None:
                converters.append((index, convert))
            if not bind.required and bind.callable is None:
                defaults[name] = bind.value  # e.g. ``lease_owner=None`` in the statement
        self._names = tuple(names)
        self._converters = tuple(converters)
        self._defaults = defaults
        # One C call takes a row's values in the statement's order (a one-element tuple too).
        get = itemgetter(*names)
        self._get: Callable[[Mapping[str, Any]], tuple[Any, ...]] = (
            get if len(names) > 1 else lambda row: (get(row),)
        )

    def params(self, row: Mapping[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        if self._defaults:
            row = {**self._defaults, **row}
        values = list(self._get(row))
        for index, convert in self._converters:
            values[index] = convert(values[index])
        if self.positional:
            return tuple(values)
        return dict(zip(self._names, values, strict=True))

    def executemany(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            conn.exec_driver_sql(self.sql, [self.params(row) for row in rows])
