"""docs/problems.md lists every problem type the service answers with, at its status."""

from __future__ import annotations

import re
from pathlib import Path

from lifecycle.web.problems import KINDS

DOC = Path(__file__).resolve().parents[2] / "docs" / "problems.md"
ROW = re.compile(r"^\| `(/problems/[a-z-]+)` \| (\d{3}) \|", re.MULTILINE)


def test_every_problem_type_is_documented_with_its_status() -> None:
    documented = {kind: int(status) for kind, status in ROW.findall(DOC.read_text())}
    assert documented == {k.type: k.status for k in KINDS.values()}
