"""The configuration is found, not guessed: relative paths against the file's folder, exit 2
without one, and no database made by any command but `serve` and `db upgrade`."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.acceptance.service import BIN, Service

pytestmark = pytest.mark.acceptance


def _run(cwd: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("LIFECYCLE_")}
    return subprocess.run(
        [str(BIN), *args],
        cwd=cwd,
        env={**clean, **env},
        text=True,
        capture_output=True,
        timeout=60,
        check=False,
    )


def test_a_token_made_from_another_folder_works_on_the_service(
    service: Service, tmp_path: Path
) -> None:
    config = service.workdir / "lifecycle.toml"
    made = _run(tmp_path, "tokens", "create", "--role", "auditor", "--name", "elsewhere",
                "--config", str(config))  # fmt: skip
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]

    assert service.get("/v1/runs", token).status_code == 200
    assert list(tmp_path.iterdir()) == []  # no database, key or state here


@pytest.mark.parametrize(
    "args",
    [
        ("tokens", "create", "--role", "admin", "--name", "x"),
        ("tokens", "list"),
        ("db", "upgrade"),
        ("keys", "init"),
        ("evidence", "export", "--out", "b.zip"),
    ],
)
def test_a_command_without_a_configuration_exits_2_naming_how_to_give_one(
    tmp_path: Path, args: tuple[str, ...]
) -> None:
    done = _run(tmp_path, *args)

    assert done.returncode == 2, done.stderr
    assert "--config" in done.stderr
    assert "LIFECYCLE_CONFIG" in done.stderr
    assert "Wrong key" not in done.stderr
    assert list(tmp_path.iterdir()) == []


def test_only_db_upgrade_creates_the_database(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    config = tmp_path / "etc" / "lifecycle.toml"
    config.write_text('[service]\ndatabase_url = "sqlite:///state/lifecycle.db"\n')
    (tmp_path / "etc" / "state").mkdir()

    refused = _run(tmp_path, "tokens", "list", LIFECYCLE_CONFIG=str(config))
    assert refused.returncode == 2
    assert "lifecycle db upgrade" in refused.stderr
    assert not (tmp_path / "etc" / "state" / "lifecycle.db").exists()

    upgraded = _run(tmp_path, "db", "upgrade", LIFECYCLE_CONFIG=str(config))
    assert upgraded.returncode == 0, upgraded.stderr
    assert (tmp_path / "etc" / "state" / "lifecycle.db").is_file()
    listed = _run(tmp_path, "tokens", "list", "--json", LIFECYCLE_CONFIG=str(config))
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == {"tokens": []}


def test_evidence_export_through_the_service_with_a_token(service: Service, tmp_path: Path) -> None:
    sent = service.send_event("W0044")
    service.wait_run(sent.json()["run_id"])

    done = _run(tmp_path, "evidence", "export", "--out", "b.zip", "--json",
                LIFECYCLE_URL=service.url, LIFECYCLE_TOKEN=service.auditor_token)  # fmt: skip

    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["records"] >= 1
    verified = _run(tmp_path, "evidence", "verify", "b.zip",
                    "--key", str(service.workdir / "keys" / "evidence.ed25519.pub"))  # fmt: skip
    assert verified.returncode == 0, verified.stderr


def test_version(tmp_path: Path) -> None:
    done = _run(tmp_path, "--version")
    assert done.returncode == 0
    assert done.stdout.startswith("lifecycle ")
