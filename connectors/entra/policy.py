"""Entra ID policy: the Conditional Access policy for virtual assistants, and smart lockout.

Kept apart from the connector: the comparison logic over Graph's documented bodies (what the
tenant has, what the baseline wants, and the exact differences, in words an administrator can
act on) is pure and tested directly; ``EntraPolicy`` does the few Graph calls around it.

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

from connectors.base import (
    Account,
    ActionResult,
    Control,
    Outcome,
    PermanentConnectorError,
    PolicyBaseline,
    PolicySetting,
    PolicyState,
    action_result,
    sha256_hex,
    utcnow,
)
from connectors.entra.graph import GraphClient

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
    widen who the policy skips. An enforced policy stays enforced, and a stricter sign-in
    frequency already set is kept: applying the baseline never loosens the tenant.
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
    current_hours = sign_in_frequency_hours(policy) if policy else None
    hours = wanted.sign_in_frequency_hours
    if current_hours is not None and current_hours < hours:
        hours = current_hours  # a stricter frequency already set is kept
    body: dict[str, Any] = {
        "displayName": wanted.display_name,
        "state": state,
        "conditions": conditions,
        "grantControls": {"operator": "OR", "builtInControls": ["mfa"]},
        "sessionControls": {
            "signInFrequency": {
                "value": hours,
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


def lockout_target(current: Lockout, baseline: PolicyBaseline) -> tuple[int, int]:
    """(threshold, duration in seconds) to set: the baseline, unless the tenant has explicitly
    set something stricter (fewer attempts, longer lockout), which is kept."""
    threshold = baseline.lockout_threshold
    seconds = baseline.lockout_duration_minutes * 60
    if current.setting_id is not None:
        threshold = min(threshold, current.threshold)
        seconds = max(seconds, current.duration_seconds)
    return threshold, seconds


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


@dataclass(frozen=True, slots=True)
class PolicyTarget:
    """Where the connector's options say the policy lives and whom it covers."""

    policy_name: str
    va_group_id: str | None
    break_glass_ids: tuple[str, ...]
    ca_state: CaState


class EntraPolicy:
    """Reads and applies the tenant's MFA, sign-in frequency and smart lockout settings."""

    def __init__(self, graph: GraphClient, system: str, target: PolicyTarget) -> None:
        self.graph = graph
        self.system = system
        self.target = target

    def _ca_wanted(self, baseline: PolicyBaseline) -> CaWanted:
        if not self.target.va_group_id:
            raise PermanentConnectorError(
                "va_group_id is not configured: the MFA policy needs the virtual-assistant group",
                connector=self.system,
            )
        return CaWanted(
            display_name=self.target.policy_name,
            group_id=self.target.va_group_id,
            break_glass_ids=self.target.break_glass_ids,
            state=self.target.ca_state,
            mfa_required=baseline.mfa_required,
            sign_in_frequency_hours=baseline.session_max_hours,
        )

    async def _ca_policy(self) -> Mapping[str, Any] | None:
        async for policy in self.graph.pages(
            "/identity/conditionalAccess/policies",
            op="read Conditional Access policies",
            permission="Policy.Read.All",
        ):
            if policy.get("displayName") == self.target.policy_name:
                return policy
        return None

    async def _settings(self) -> list[Mapping[str, Any]]:
        return [
            s
            async for s in self.graph.pages(
                "/groupSettings",
                op="read directory settings",
                permission="GroupSettings.Read.All",
            )
        ]

    async def read(self) -> PolicyState:
        policy = await self._ca_policy()
        lockout = read_lockout(await self._settings())
        name = self.target.policy_name
        if policy is None:
            mfa: bool | str = False
            mfa_source = f"Conditional Access: no policy named {name!r}"
        else:
            wanted = self._ca_wanted(PolicyBaseline()) if self.target.va_group_id else None
            diffs = ca_differences(policy, wanted) if wanted else []
            state = policy.get("state")
            relevant = [d for d in diffs if not d.startswith("sign-in frequency")]
            # Coverage gaps make MFA not required for assistants; a missing break-glass
            # exclusion or a pending "enforce" is a finding in the source, not a gap.
            gaps = [
                d
                for d in relevant
                if not d.startswith("break-glass") and "configuration says enforce" not in d
            ]
            if "mfa" not in ((policy.get("grantControls") or {}).get("builtInControls") or []):
                gaps.append("no mfa grant")
            if gaps or state == "disabled":
                mfa = False
            else:
                mfa = True if state == ENABLED else "report-only"
            mfa_source = f"Conditional Access policy {name!r} ({policy.get('id')}) state={state}"
            if relevant:
                mfa_source += "; differs: " + "; ".join(relevant)
        setting_source = (
            f"directory setting {lockout.setting_id} (Password Rule Settings)"
            if lockout.setting_id
            else "Entra default (no Password Rule Settings directory setting)"
        )
        settings = (
            PolicySetting(Control.MFA, mfa, mfa_source),
            self._sign_in_frequency(policy),
            PolicySetting(
                Control.LOCKOUT_THRESHOLD,
                lockout.threshold,
                f"{setting_source}: LockoutThreshold",
            ),
            PolicySetting(
                Control.LOCKOUT_DURATION_MINUTES,
                lockout.duration_seconds // 60,
                f"{setting_source}: LockoutDurationInSeconds={lockout.duration_seconds}",
            ),
            PolicySetting(
                Control.LOCKOUT_WINDOW_MINUTES,
                None,
                "not configurable: Entra smart lockout has no observation window setting",
            ),
            PolicySetting(
                Control.SESSION_IDLE_MINUTES,
                None,
                "not configurable in Entra ID: idle timeout belongs to each app / Microsoft 365",
            ),
        )
        return PolicyState(system=self.system, settings=settings, read_at=utcnow())

    def _sign_in_frequency(self, policy: Mapping[str, Any] | None) -> PolicySetting:
        """Hours between forced sign-ins, counted only when the policy is enforced."""
        source = f"Conditional Access policy {self.target.policy_name!r} signInFrequency"
        if policy is None:
            return PolicySetting(Control.SESSION_MAX_HOURS, None, source + ": no such policy")
        hours = sign_in_frequency_hours(policy)
        state = policy.get("state")
        if hours is not None and state != ENABLED:
            return PolicySetting(
                Control.SESSION_MAX_HOURS,
                None,
                f"{source}: {hours} h configured but not enforced (state {state})",
            )
        return PolicySetting(Control.SESSION_MAX_HOURS, hours, source)

    async def apply(self, baseline: PolicyBaseline) -> ActionResult:
        started = utcnow()
        wanted = self._ca_wanted(baseline)
        detail: dict[str, str] = {}
        digests: list[str] = []
        policy = await self._ca_policy()
        diffs = ca_differences(policy, wanted)
        if policy is None:
            response = await self.graph.request(
                "POST",
                "/identity/conditionalAccess/policies",
                json_body=ca_body(None, wanted),
                op="create Conditional Access policy",
                permission="Policy.ReadWrite.ConditionalAccess",
            )
            created = response.json() or {}
            detail["conditional_access"] = (
                f"created {created.get('id')} in state {created.get('state')}"
            )
            digests.append(response.sha256)
        elif diffs:
            body = ca_body(policy, wanted)
            response = await self.graph.request(
                "PATCH",
                f"/identity/conditionalAccess/policies/{policy['id']}",
                json_body=body,
                op="update Conditional Access policy",
                permission="Policy.ReadWrite.ConditionalAccess",
            )
            detail["conditional_access"] = "updated: " + "; ".join(diffs)
            digests.append(response.sha256)
        all_settings = await self._settings()
        lockout = read_lockout(all_settings)
        threshold, seconds = lockout_target(lockout, baseline)
        if (lockout.threshold, lockout.duration_seconds) != (threshold, seconds):
            if lockout.setting_id is None:
                response = await self.graph.request(
                    "POST",
                    "/groupSettings",
                    json_body={
                        "templateId": PASSWORD_RULE_TEMPLATE_ID,
                        "values": lockout_values([], threshold, seconds),
                    },
                    op="create Password Rule Settings",
                    permission="GroupSettings.ReadWrite.All",
                )
            else:
                existing = next(s for s in all_settings if str(s.get("id")) == lockout.setting_id)
                response = await self.graph.request(
                    "PATCH",
                    f"/groupSettings/{lockout.setting_id}",
                    json_body={
                        "values": lockout_values(existing.get("values") or [], threshold, seconds)
                    },
                    op="update Password Rule Settings",
                    permission="GroupSettings.ReadWrite.All",
                )
            digests.append(response.sha256)
            if lockout.threshold != threshold:
                detail["lockout_threshold"] = f"{lockout.threshold} -> {threshold}"
            if lockout.duration_seconds != seconds:
                detail["lockout_duration_seconds"] = f"{lockout.duration_seconds} -> {seconds}"
        return action_result(
            "apply_policy",
            Account(self.system, "policy"),
            started,
            Outcome.DONE if detail else Outcome.ALREADY,
            response_sha256=sha256_hex("\n".join(digests).encode()) if digests else None,
            detail=detail,
        )
