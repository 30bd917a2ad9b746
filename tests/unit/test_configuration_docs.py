"""docs/configuration.md describes every key the code reads, and no key the code does not have.

The keys come from the models themselves: ``lifecycle.settings.Settings`` for the sections, and,
for each connector kind in the registry, the options model found next to its class. A key added
to the code without a line in the reference (or a line left behind after a rename) fails here.
"""

from __future__ import annotations

import re
import sys
import types
import typing
from pathlib import Path

import pytest
from pydantic import BaseModel

from connectors import KINDS, connector_class
from connectors._config import ConnectorOptions
from lifecycle.settings import HrSourceSettings, Settings

DOC = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"
ROW = re.compile(r"^\| `([a-z_]+)` \|", re.MULTILINE)


def _sections() -> dict[str, str]:
    """Heading line -> the text up to the next heading."""
    parts = re.split(r"^(#{2,3} .*)$", DOC.read_text(encoding="utf-8"), flags=re.MULTILINE)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts) - 1, 2)}


def _section(marker: str) -> str:
    found = [body for heading, body in _sections().items() if marker in heading]
    assert len(found) == 1, f"docs/configuration.md: one heading with {marker} expected"
    return found[0]


def _models(annotation: object) -> list[type[BaseModel]]:
    """The pydantic models inside an annotation (``X | None``, ``list[X]``, ...)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for arg in typing.get_args(annotation) for m in _models(arg)]


def _keys(model: type[BaseModel]) -> set[str]:
    """Every key of a table, those of its nested tables included."""
    keys = set(model.model_fields)
    for field in model.model_fields.values():
        for nested in _models(field.annotation):
            keys |= _keys(nested)
    return keys


def _options_model(kind: str) -> type[BaseModel]:
    module = sys.modules[connector_class(kind).__module__]
    assert isinstance(module, types.ModuleType)
    found = {
        value
        for value in vars(module).values()
        if isinstance(value, type)
        and issubclass(value, BaseModel)
        and "kind" in value.model_fields
        and kind in typing.get_args(value.model_fields["kind"].annotation)
    }
    assert len(found) == 1, f"no single options model for connector kind {kind!r}: {found}"
    return found.pop()


def _sections_of_settings() -> list[tuple[str, type[BaseModel]]]:
    tables: list[tuple[str, type[BaseModel]]] = [("`[hr.sources.<name>]`", HrSourceSettings)]
    for name, field in Settings.model_fields.items():
        for model in _models(field.annotation):
            if name != "hr":
                tables.append((f"`[{name}]`", model))
    return tables


@pytest.mark.parametrize(("marker", "model"), _sections_of_settings())
def test_every_key_of_each_section_is_documented(marker: str, model: type[BaseModel]) -> None:
    body = _section(marker)

    assert set(ROW.findall(body)) == set(model.model_fields)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_option_of_each_connector_kind_is_documented(kind: str) -> None:
    body = _section(f'`kind = "{kind}"`')
    keys = _keys(_options_model(kind)) - {"kind"}
    # What every kind accepts is documented once, under [connectors.<name>] (and again where a
    # kind gives it another default).
    common = set(ConnectorOptions.model_fields)

    missing = sorted(key for key in keys - common if f"`{key}`" not in body)
    assert not missing, f"{kind}: undocumented options {missing}"
    assert set(ROW.findall(body)) <= keys, f"{kind}: documented options the code does not have"


def test_options_every_connector_accepts_are_documented_once() -> None:
    body = _section("`[connectors.<name>]`")
    for key in ConnectorOptions.model_fields:
        assert f"`{key}`" in body


def test_every_section_is_documented() -> None:
    headings = "\n".join(_sections())

    for name in Settings.model_fields:
        assert f"[{name}" in headings, f"no heading for [{name}]"
