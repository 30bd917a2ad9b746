"""Where the configuration's files are: relative paths against the configuration file's folder
(never the working directory), and no database made where none was meant to be."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from lifecycle.exceptions import DatabaseNotReadyError
from lifecycle.service import open_store
from lifecycle.settings import configuration_found, load_settings, sqlite_file

CONFIG = """
[service]
database_url = "sqlite:///./state/lifecycle.db"
evidence_key = "keys/evidence.ed25519"
[playbooks]
directory = "../books"
"""


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The working directory: not the configuration's folder."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("LIFECYCLE_CONFIG", raising=False)
    monkeypatch.delenv("LIFECYCLE_SERVICE__DATABASE_URL", raising=False)
    return cwd


def test_relative_paths_resolve_against_the_configuration_folder(
    tmp_path: Path, elsewhere: Path
) -> None:
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "lifecycle.toml").write_text(CONFIG)

    settings = load_settings(Path("..") / "etc" / "lifecycle.toml")

    assert settings.sqlite_path() == folder / "state" / "lifecycle.db"
    assert settings.service.evidence_key == folder / "keys" / "evidence.ed25519"
    assert settings.playbooks.directory == folder / ".." / "books"
    assert settings.base_dir == folder
    assert settings.source == Path("..") / "etc" / "lifecycle.toml"


def test_absolute_paths_and_other_databases_are_left_alone(tmp_path: Path, elsewhere: Path) -> None:
    (tmp_path / "a.toml").write_text(
        '[service]\ndatabase_url = "postgresql+psycopg://u:p%40ss@db/lc"\n'
        'evidence_key = "/srv/keys/k"\n'
    )
    settings = load_settings(tmp_path / "a.toml")
    assert settings.service.database_url == "postgresql+psycopg://u:p%40ss@db/lc"
    assert settings.service.evidence_key == Path("/srv/keys/k")
    assert settings.sqlite_path() is None
    assert sqlite_file("sqlite://") is None
    assert sqlite_file("sqlite:///:memory:") is None
    assert sqlite_file("sqlite:////abs/x.db") == Path("/abs/x.db")


def test_without_a_file_paths_resolve_against_the_working_directory(elsewhere: Path) -> None:
    settings = load_settings(None)
    assert settings.sqlite_path() == elsewhere / "lifecycle.db"


def test_a_configuration_is_a_file_or_a_database_in_the_environment(
    elsewhere: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not configuration_found(None)
    assert configuration_found(Path("x.toml"))
    monkeypatch.setenv("LIFECYCLE_CONFIG", "x.toml")
    assert configuration_found(None)
    monkeypatch.delenv("LIFECYCLE_CONFIG")
    monkeypatch.setenv("LIFECYCLE_SERVICE__DATABASE_URL", "sqlite:///x.db")
    assert configuration_found(None)


def test_only_create_makes_a_database(tmp_path: Path, elsewhere: Path) -> None:
    (tmp_path / "lifecycle.toml").write_text('[service]\ndatabase_url = "sqlite:///db/l.db"\n')
    settings = load_settings(tmp_path / "lifecycle.toml")
    (tmp_path / "db").mkdir()

    with pytest.raises(DatabaseNotReadyError, match="lifecycle db upgrade"):
        open_store(settings)
    assert not (tmp_path / "db" / "l.db").exists()
    assert os.listdir(elsewhere) == []

    open_store(settings, create=True).dispose()
    open_store(settings).dispose()
    assert (tmp_path / "db" / "l.db").is_file()


def test_a_database_at_an_older_schema_is_not_upgraded_behind_the_operators_back(
    tmp_path: Path, elsewhere: Path
) -> None:
    import sqlite3

    db = tmp_path / "l.db"
    sqlite3.connect(db).close()  # exists, but no schema at all
    (tmp_path / "lifecycle.toml").write_text('[service]\ndatabase_url = "sqlite:///l.db"\n')

    with pytest.raises(DatabaseNotReadyError, match="revision none"):
        open_store(load_settings(tmp_path / "lifecycle.toml"))
