"""A connector's configuration error reaches the service's callers as its ConfigError.

The connector library has its own error tree (it imports nothing from ``lifecycle``), so the
one place the service builds connectors turns ConnectorConfigError into ConfigError, which the
CLI and the API already report cleanly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from lifecycle.exceptions import ConfigError, ConnectorConfigError
from lifecycle.service import Service
from lifecycle.settings import Settings


def _settings(tmp_path: Path, connector: dict[str, Any]) -> Settings:
    return Settings(
        **{
            "service": {
                "database_url": f"sqlite:///{tmp_path}/lifecycle.db",
                "evidence_key": f"{tmp_path}/keys/evidence.ed25519",
            },
            "connectors": {"idp": connector},
        }
    )


@pytest.mark.parametrize(
    ("connector", "words"),
    [
        ({"kind": "memory", "tennant": "typo"}, "[connectors.idp]: tennant: Extra inputs"),
        ({"kind": "nope"}, "unknown connector kind 'nope'"),
        (
            {"kind": "scim", "base_url": "https://ehr.example.org/v2", "token": "inline-tok"},
            "[connectors.idp] token: inline secrets are refused",
        ),
    ],
)
def test_connector_config_errors_become_config_errors(
    tmp_path: Path, connector: dict[str, Any], words: str
) -> None:
    with pytest.raises(ConfigError) as info:
        Service.build(_settings(tmp_path, connector))
    assert words in info.value.message
    assert isinstance(info.value.__cause__, ConnectorConfigError)
    assert "inline-tok" not in info.value.message


def test_memory_with_max_concurrency_builds_and_limits_the_executor(tmp_path: Path) -> None:
    service = Service.build(_settings(tmp_path, {"kind": "memory", "max_concurrency": 3}))
    try:
        assert service.connector_names == ["idp"]
        assert service.executor.config.connector_concurrency == {"idp": 3}
    finally:
        service.store.dispose()
