"""Building connectors from ``[connectors.<name>]`` tables (connectors/registry.py), and the
library's independence from the service."""

from __future__ import annotations

import subprocess
import sys

import pytest

from connectors import build_connector
from connectors.base import OFFBOARDING, REVERSAL, ConnectorConfigError, ConnectorContext
from connectors.memory import MemoryConnector
from connectors.registry import KINDS, connector_class


def test_memory_accepts_the_executor_concurrency_like_every_connector() -> None:
    connector = build_connector("idp", {"kind": "memory", "max_concurrency": 4}, ConnectorContext())
    assert isinstance(connector, MemoryConnector)
    with pytest.raises(ConnectorConfigError, match=r"^\[connectors\.idp\]: max_concurrency"):
        build_connector("idp", {"kind": "memory", "max_concurrency": 0}, ConnectorContext())


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_declares_max_concurrency(kind: str) -> None:
    cls = connector_class(kind)
    # Each from_config validates its table with a ConnectorOptions subclass: an invalid
    # max_concurrency is named as such (an unknown key would say "Extra inputs").
    with pytest.raises(ConnectorConfigError) as info:
        cls.from_config("sys", {"kind": kind, "max_concurrency": 0}, ConnectorContext())
    assert "max_concurrency: Input should be greater than or equal to 1" in info.value.message


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_kind_can_undo_a_termination(kind: str) -> None:
    assert connector_class(kind).capabilities >= OFFBOARDING | REVERSAL


def test_unknown_or_missing_kind_is_a_config_error() -> None:
    with pytest.raises(ConnectorConfigError, match="unknown connector kind 'nope'") as info:
        build_connector("x", {"kind": "nope"}, ConnectorContext())
    assert info.value.connector == "x" and "memory" in info.value.message
    with pytest.raises(ConnectorConfigError, match=r"\[connectors\.x\]: 'kind' is required"):
        build_connector("x", {}, ConnectorContext())


def test_the_connector_library_imports_nothing_from_the_service() -> None:
    code = (
        "import sys, connectors, connectors.registry, connectors.memory, connectors.entra, "
        "connectors.ldap, connectors.scim, connectors.fhir, connectors.ringcentral\n"
        "print(sorted(m for m in sys.modules if m == 'lifecycle' or m.startswith('lifecycle.')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
