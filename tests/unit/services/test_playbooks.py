"""Playbook files: schema, errors that name file/line/field, tighten-only policy, job codes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from connectors.base import PolicyBaseline
from lifecycle.exceptions import ConfigError
from lifecycle.services.playbooks import (
    SHIPPED,
    PlaybookLibrary,
    PolicyTightening,
    load_playbook,
    tighten,
)
from lifecycle.settings import PolicySettings

GOOD = """\
name: test-va
description: a test role
never: [ehr-break-glass]
policy:
  session_idle_minutes: 10
systems:
  idp:
    entitlements: [va-test]
  ehr:
    entitlements: [ehr-test]
"""


def write(tmp_path: Path, text: str, name: str = "test-va") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


def test_shipped_va_playbooks_follow_the_minimum_necessary_table() -> None:
    lib = PlaybookLibrary.load(SHIPPED, PolicySettings())
    assert set(lib.playbooks) == {"scheduling-va", "billing-va", "callback-va", "intake-va"}
    assert set(lib.job_codes.values()) == set(lib.playbooks)
    for book in lib.playbooks.values():
        baseline = book.baseline_for(PolicySettings().baseline())
        assert baseline.mfa_required
        assert baseline.session_idle_minutes <= 15
        assert baseline.inactive_disable_days <= 45  # all VA roles: 45 days
        never = {n.casefold() for n in book.playbook.never}
        assert {"ehr-psychotherapy-notes", "ehr-part2-records", "ehr-bulk-export"} <= never
        assert {"ehr-break-glass"} <= never
        assert len(book.sha256) == 64
    assert lib.get("intake-va").entitlements("phone") == frozenset()
    assert lib.get("billing-va").entitlements("ehr") == {"ehr-billing"}


def test_a_good_playbook_loads_with_the_sha256_of_its_bytes(tmp_path: Path) -> None:
    import hashlib

    path = write(tmp_path, GOOD)
    book = load_playbook(path, PolicySettings())
    assert book.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert book.baseline_for(PolicySettings().baseline()).session_idle_minutes == 10


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            GOOD.replace("entitlements: [ehr-test]", "entitlements: ehr-test"),
            "test-va.yaml:10: systems.ehr.entitlements: Input should be a valid list",
        ),
        (
            GOOD.replace("description:", "colour: red\ndescription:"),
            "test-va.yaml:2: colour: Extra inputs are not permitted",
        ),
        (
            GOOD.replace("session_idle_minutes: 10", "session_idle_minutes: 30"),
            "test-va.yaml:5: policy.session_idle_minutes: loosens the [policy] default",
        ),
        (
            GOOD.replace("session_idle_minutes: 10", "mfa: optional"),
            "test-va.yaml:5: policy.mfa: loosens the [policy] default",
        ),
        (
            GOOD + "    policy:\n      lockout_threshold: 10\n",
            "test-va.yaml:12: systems.ehr.policy.lockout_threshold: loosens",
        ),
        (
            GOOD.replace("[ehr-test]", "[ehr-test, ehr-break-glass]"),
            "test-va.yaml:10: systems.ehr.entitlements.1: 'ehr-break-glass' is on this role's",
        ),
        (GOOD.replace("systems:\n", "systems: [\n"), "test-va.yaml:8: invalid YAML"),
        (GOOD.replace("name: test-va", "name: other-va"), "test-va.yaml:1: name: is 'other-va'"),
    ],
)
def test_errors_name_the_file_the_line_and_the_field(
    tmp_path: Path, text: str, expected: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        load_playbook(write(tmp_path, text), PolicySettings())
    assert expected in caught.value.message


def test_stricter_service_defaults_make_a_playbook_value_a_loosening(tmp_path: Path) -> None:
    strict = PolicySettings(session_idle_minutes=5)
    with pytest.raises(ConfigError, match="session_idle_minutes: loosens"):
        load_playbook(write(tmp_path, GOOD), strict)


def test_roles_file_must_name_existing_playbooks(tmp_path: Path) -> None:
    for path in SHIPPED.glob("*.yaml"):
        shutil.copy(path, tmp_path / path.name)
    (tmp_path / "roles.yaml").write_text("job_codes:\n  VA-SCHED: scheduling-va\n  RN: nurse\n")
    with pytest.raises(ConfigError) as caught:
        PlaybookLibrary.load(tmp_path, PolicySettings())
    assert "roles.yaml:3: job_codes.RN: no playbook named 'nurse'" in caught.value.message


def test_tightening_takes_the_stricter_value_per_control() -> None:
    base = PolicyBaseline()
    result = tighten(
        base,
        PolicyTightening(lockout_threshold=3, lockout_duration_minutes=60, session_max_hours=8),
    )
    assert result.lockout_threshold == 3
    assert result.lockout_duration_minutes == 60  # longer lockout is stricter
    assert result.session_max_hours == 8
    assert result.session_idle_minutes == base.session_idle_minutes


def test_a_playbook_naming_an_unconfigured_system_cannot_be_planned() -> None:
    lib = PlaybookLibrary.load(SHIPPED, PolicySettings())
    with pytest.raises(ConfigError, match="names system\\(s\\) phone that are not configured"):
        lib.plan(lib.get("billing-va"), None, ["idp", "ehr"])
