"""The wheel carries the shipped playbooks (an installed lifecycle finds them by default)."""

from __future__ import annotations

import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


def test_the_wheel_holds_every_shipped_playbook(tmp_path: Path) -> None:
    # scripts/test runs the suite under `uv run`, which names itself in $UV; uv is how the
    # project builds, so its absence is a failure, never a skip.
    uv = os.environ.get("UV") or shutil.which("uv")
    if uv is None:
        pytest.fail("uv is neither in $UV nor on PATH: the wheel cannot be built", pytrace=False)
    subprocess.run(
        [uv, "build", "--wheel", "--out-dir", str(tmp_path), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {p.name for p in (REPO / "playbooks").glob("*.yaml")}
    assert shipped
    assert {f"lifecycle/shipped_playbooks/{name}" for name in shipped} <= names
