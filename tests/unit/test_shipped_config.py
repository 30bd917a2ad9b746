"""The configuration files shipped in config/: valid, and the container's is the demo's twin.

config/container.toml is what the image runs (LIFECYCLE_CONFIG in the Dockerfile): the demo of
config/demo.toml with absolute paths (state in the volume /var/lib/lifecycle, playbooks in
/etc/lifecycle/playbooks). A change to the demo that is not made to the container's copy fails
here, not in a container nobody rebuilt.
"""

from __future__ import annotations

import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from lifecycle.settings import load_settings

CONFIG = Path(__file__).resolve().parents[2] / "config"
STATE = "/var/lib/lifecycle/"


def _read(name: str) -> dict[str, Any]:
    return tomllib.loads((CONFIG / name).read_text(encoding="utf-8"))


def _as_demo(value: Any) -> Any:
    """The container's value with its absolute state paths written as the demo's relative ones."""
    if isinstance(value, dict):
        return {key: _as_demo(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_as_demo(item) for item in value]
    if isinstance(value, str):
        return value.replace(f"sqlite:///{STATE}", "sqlite:///../").replace(STATE, "../")
    return value


@pytest.mark.parametrize("name", ["demo.toml", "container.toml"])
def test_shipped_configuration_is_valid(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LIFECYCLE_CONFIG", raising=False)

    settings = load_settings(CONFIG / name)

    assert settings.service.demo
    assert settings.connectors


def test_container_configuration_is_the_demo_with_absolute_paths() -> None:
    demo = _read("demo.toml")
    container = _read("container.toml")

    assert container.pop("playbooks") == {"directory": "/etc/lifecycle/playbooks"}
    assert _as_demo(container) == demo


def test_container_configuration_writes_only_into_the_volume() -> None:
    container = _read("container.toml")
    written = [
        container["service"]["database_url"].removeprefix("sqlite:///"),
        container["service"]["evidence_key"],
        *(table["state_file"] for table in container["connectors"].values()),
    ]

    assert all(path.startswith(STATE) for path in written), written


@pytest.mark.anyio
async def test_policy_check_passes_on_a_fresh_demo(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`lifecycle policy check` on a fresh demo: its systems start as its playbooks ask."""
    from lifecycle.service import build_connectors, load_playbooks
    from lifecycle.services.policy import check, expectations

    monkeypatch.delenv("LIFECYCLE_CONFIG", raising=False)
    (tmp_path / "config").mkdir()
    copy = tmp_path / "config" / "demo.toml"
    copy.write_text((CONFIG / "demo.toml").read_text(encoding="utf-8"))  # fresh state in tmp
    settings = load_settings(copy)
    connectors = build_connectors(settings, settings.base_dir)
    expected = expectations(settings.policy, load_playbooks(settings), sorted(connectors))

    report = await check(connectors, expected, datetime.now(UTC))

    assert report.failing == []
    assert report.findings
    assert (tmp_path / "demo-state" / "idp.json").is_file()
