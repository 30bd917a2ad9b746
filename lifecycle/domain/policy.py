"""Policy controls compared without I/O: which value is stricter, and what a system's reported
settings say against the values it should enforce."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from connectors.base import Control, PolicyBaseline, PolicyState

CONTROLS: tuple[Control, ...] = (
    Control.MFA,
    Control.LOCKOUT_THRESHOLD,
    Control.LOCKOUT_WINDOW_MINUTES,
    Control.LOCKOUT_DURATION_MINUTES,
    Control.SESSION_IDLE_MINUTES,
    Control.SESSION_MAX_HOURS,
    Control.INACTIVE_DISABLE_DAYS,
)

#: For each numeric control: True when a smaller number is stricter.
SMALLER_IS_STRICTER: Mapping[str, bool] = {
    Control.LOCKOUT_THRESHOLD: True,
    Control.LOCKOUT_WINDOW_MINUTES: False,
    Control.LOCKOUT_DURATION_MINUTES: False,
    Control.SESSION_IDLE_MINUTES: True,
    Control.SESSION_MAX_HOURS: True,
    Control.INACTIVE_DISABLE_DAYS: True,
}


def baseline_value(baseline: PolicyBaseline, control: str) -> bool | int:
    if control == Control.MFA:
        return baseline.mfa_required
    value: int = getattr(baseline, control)
    return value


def stricter(control: str, a: bool | int, b: bool | int) -> bool | int:
    """The stricter of two values of ``control``."""
    if control == Control.MFA:
        return bool(a) or bool(b)
    return min(a, b) if SMALLER_IS_STRICTER[control] else max(a, b)


def at_least_as_strict(control: str, actual: bool | int, expected: bool | int) -> bool:
    return stricter(control, actual, expected) == actual


def baseline_from(values: Mapping[str, bool | int]) -> PolicyBaseline:
    """The baseline a system is to enforce, from per-control values (a policy run's plan)."""
    fields: dict[str, Any] = {c: v for c, v in values.items() if c != Control.MFA}
    return PolicyBaseline(mfa_required=bool(values[Control.MFA]), **fields)


@dataclass(frozen=True, slots=True)
class Finding:
    system: str
    control: str
    expected: bool | int
    expected_source: str
    actual: bool | int | str | None
    actual_source: str | None
    compliant: bool | None
    """None: the system does not report this control (or could not be read)."""
    note: str | None = None


def compare(
    system: str, expected: Mapping[str, tuple[bool | int, str]], state: PolicyState
) -> list[Finding]:
    """One finding per expected control: ``expected`` maps control -> (value, its source)."""
    reported = {s.control.value: s for s in state.settings}
    findings = []
    for control, (want, source) in expected.items():
        setting = reported.get(control)
        if setting is None or setting.value is None:
            findings.append(
                Finding(system, control, want, source, None, None, None, "not reported")
            )
            continue
        actual = setting.value
        ok = at_least_as_strict(control, actual, want) if isinstance(actual, bool | int) else None
        findings.append(Finding(system, control, want, source, actual, setting.source, ok))
    return findings
