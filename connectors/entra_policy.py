"""Entra ID policy: the Conditional Access policy for virtual assistants, and smart lockout.

Kept apart from the connector because it is pure comparison logic over Graph's documented
bodies: what the tenant has, what the baseline wants, and the exact differences, in words an
administrator can act on. The connector does the I/O.

- MFA and sign-in frequency: one Conditional Access policy (``conditionalAccessPolicy``) that
  targets the virtual-assistant group, grants with ``{"operator": "OR", "builtInControls":
  ["mfa"]}`` and sets ``sessionControls.signInFrequency``. Configured break-glass accounts are
  always in ``excludeUsers`` (Microsoft's guidance: never lock every administrator out). A new
  policy starts in report-only (``enabledForReportingButNotEnforced``) unless the configuration
  says enforce; an enforced policy is never downgraded.
- Smart lockout: the tenant-wide directory setting made from the "Password Rule Settings"
  template, values ``LockoutThreshold`` and ``LockoutDurationInSeconds`` (strings in Graph).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

PASSWORD_RULE_TEMPLATE_ID = "5cf42378-d67d-4f36-ba46-e8b86229381d"  # noqa: S105 - template id
ENTRA_DEFAULT_LOCKOUT_THRESHOLD = 10
ENTRA_DEFAULT_LOCKOUT_SECONDS = 60

REPORT_ONLY = "enabledForReportingButNotEnforced"
ENABLED = "enabled"

CaState = Literal["report-only", "enforce"]


@dataclass(frozen=True, slots=True)
class CaWanted:
    """The Conditional Access policy the baseline asks for."""

    display_name: str
    group_id: str
    break_glass_ids: tuple[str, ...]
    state: CaState
    mfa_required: bool
    sign_in_frequency_hours: int


def sign_in_frequency_hours(policy: Mapping[str, Any]) -> int | None:
    """The policy's sign-in frequency in hours, ``None`` when it sets none."""
    freq = ((policy.get("sessionControls") or {}).get("signInFrequency")) or {}
    if not freq.get("isEnabled") or freq.get("value") is None:
        return None
    value = int(freq["value"])
    return value * 24 if freq.get("type") == "days" else value


def ca_differences(policy: Mapping[str, Any] | None, wanted: CaWanted) -> list[str]:
    """Each way in which ``policy`` falls short of ``wanted``; empty when it conforms."""
    if policy is None:
        return [f"no Conditional Access policy named {wanted.display_name!r}"]
    diffs: list[str] = []
    state = policy.get("state")
    if state == "disabled":
        diffs.append("policy is disabled")
    elif wanted.state == "enforce" and state != ENABLED:
        diffs.append(f"policy state is {state}, configuration says enforce")
    users = ((policy.get("conditions") or {}).get("users")) or {}
    if wanted.group_id not in (users.get("includeGroups") or []):
        diffs.append(f"virtual-assistant group {wanted.group_id} is not in includeGroups")
    excluded = set(users.get("excludeUsers") or [])
    missing = [b for b in wanted.break_glass_ids if b not in excluded]
    if missing:
        diffs.append(f"break-glass accounts not excluded: {', '.join(missing)}")
    apps = ((policy.get("conditions") or {}).get("applications")) or {}
    if "All" not in (apps.get("includeApplications") or []):
        diffs.append("policy does not cover all cloud apps (includeApplications lacks 'All')")
    grant = policy.get("grantControls") or {}
    controls = grant.get("builtInControls") or []
    if wanted.mfa_required and "mfa" not in controls:
        diffs.append(f"grant controls {controls} do not require mfa")
    elif wanted.mfa_required and grant.get("operator") == "OR" and len(controls) > 1:
        diffs.append(f"grant controls {controls} with OR let users avoid mfa")
    hours = sign_in_frequency_hours(policy)
    if hours is None or hours > wanted.sign_in_frequency_hours:
        shown = "not set" if hours is None else f"{hours} h"
        diffs.append(f"sign-in frequency {shown}, baseline {wanted.sign_in_frequency_hours} h")
    return diffs


def ca_body(policy: Mapping[str, Any] | None, wanted: CaWanted) -> dict[str, Any]:
    """The body to POST (``policy`` is None) or PATCH so that the policy conforms.

    Existing exclusions and extra included groups are kept: we add what is missing and never
    widen who the policy skips. An enforced policy stays enforced.
    """
    current_state = (policy or {}).get("state")
    enforce = current_state == ENABLED or wanted.state == "enforce"
    state = ENABLED if enforce else REPORT_ONLY
    users = dict((((policy or {}).get("conditions") or {}).get("users")) or {})
    include_groups = list(users.get("includeGroups") or [])
    if wanted.group_id not in include_groups:
        include_groups.append(wanted.group_id)
    exclude_users = list(users.get("excludeUsers") or [])
    exclude_users += [b for b in wanted.break_glass_ids if b not in exclude_users]
    users.update(
        {
            "includeGroups": include_groups,
            "excludeUsers": exclude_users,
        }
    )
    users.setdefault("includeUsers", [])
    users.pop("@odata.type", None)
    apps = dict((((policy or {}).get("conditions") or {}).get("applications")) or {})
    apps["includeApplications"] = ["All"]
    conditions = {
        "clientAppTypes": ((policy or {}).get("conditions") or {}).get("clientAppTypes") or ["all"],
        "applications": apps,
        "users": users,
    }
    body: dict[str, Any] = {
        "displayName": wanted.display_name,
        "state": state,
        "conditions": conditions,
        "grantControls": {"operator": "OR", "builtInControls": ["mfa"]},
        "sessionControls": {
            "signInFrequency": {
                "value": wanted.sign_in_frequency_hours,
                "type": "hours",
                "isEnabled": True,
                "authenticationType": "primaryAndSecondaryAuthentication",
                "frequencyInterval": "timeBased",
            }
        },
    }
    return body


@dataclass(frozen=True, slots=True)
class Lockout:
    threshold: int
    duration_seconds: int
    setting_id: str | None
    """``None``: no directory setting exists, the tenant runs on Entra's defaults."""


def read_lockout(settings: Sequence[Mapping[str, Any]]) -> Lockout:
    for setting in settings:
        if setting.get("templateId") == PASSWORD_RULE_TEMPLATE_ID:
            values = {v.get("name"): v.get("value") for v in setting.get("values") or []}
            return Lockout(
                threshold=int(values.get("LockoutThreshold") or ENTRA_DEFAULT_LOCKOUT_THRESHOLD),
                duration_seconds=int(
                    values.get("LockoutDurationInSeconds") or ENTRA_DEFAULT_LOCKOUT_SECONDS
                ),
                setting_id=str(setting.get("id")),
            )
    return Lockout(ENTRA_DEFAULT_LOCKOUT_THRESHOLD, ENTRA_DEFAULT_LOCKOUT_SECONDS, None)


def lockout_values(
    existing: Sequence[Mapping[str, Any]], threshold: int, duration_seconds: int
) -> list[dict[str, str]]:
    """The full ``values`` list for a PATCH: Graph replaces the collection, so keep the rest."""
    wanted = {"LockoutThreshold": str(threshold), "LockoutDurationInSeconds": str(duration_seconds)}
    values = [
        {"name": str(v.get("name")), "value": str(v.get("value"))}
        for v in existing
        if v.get("name") not in wanted
    ]
    values += [{"name": k, "value": v} for k, v in wanted.items()]
    return values
