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

    __slots__ = ("_fields", "positional", "sql")

    def __init__(self, statement: ClauseElement, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        assert isinstance(compiled, SQLCompiler)
        self.sql: str = compiled.string
        self.positional: bool = bool(compiled.positional)
        names: Sequence[str] = (
            list(compiled.positiontup or ()) if self.positional else list(compiled.binds)
        )
        timestamp = _sqlite_timestamp if dialect.name == "sqlite" else _aware_timestamp
        fields: list[tuple[str, Converter | None, Any]] = []
        for name in names:
            bind = compiled.binds[name]
            if isinstance(bind.type, UTCDateTime):
                convert: Converter | None = timestamp
            else:
                convert = bind.type.dialect_impl(dialect).bind_processor(dialect)
            default = _REQUIRED if bind.required or bind.callable is not None else bind.value
            fields.append((name, convert, default))
        self._fields = tuple(fields)

    def params(self, row: Mapping[str, Any]) -> tuple[Any, ...] | dict[str, Any]:
        values = []
        for name, convert, default in self._fields:
            value = row[name] if default is _REQUIRED else row.get(name, default)
            values.append(value if convert is None else convert(value))
        if self.positional:
            return tuple(values)
        return {name: value for (name, _, _), value in zip(self._fields, values, strict=True)}

    def executemany(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        if rows:
            conn.exec_driver_sql(self.sql, [self.params(row) for row in rows])


class _Required:
    def __repr__(self) -> str:
        return "<required>"


_REQUIRED: Any = _Required()
