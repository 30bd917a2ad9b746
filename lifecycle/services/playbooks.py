"""Role playbooks: minimum-necessary access per role, as YAML files validated with pydantic.

A playbook (``playbooks/<name>.yaml``) names, per connector, the entitlements (groups, roles,
queues) the role needs, and may tighten the service's ``[policy]`` defaults, never loosen them.
``playbooks/roles.yaml`` maps HR job codes to playbooks. Every error names the file, the line
and the field, because whoever edits these files is rarely the person reading the log.

Each playbook's identity in evidence is the SHA-256 of its file bytes: an auditor can match a
run to the exact text of the role definition that produced it.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from connectors.base import Control, PolicyBaseline
from lifecycle.domain import OnboardPlan, SystemTarget, TransferPlan, VersionRef
from lifecycle.domain.policy import (
    SMALLER_IS_STRICTER,
    at_least_as_strict,
    baseline_value,
    stricter,
)
from lifecycle.exceptions import ConfigError
from lifecycle.settings import PolicySettings

log = logging.getLogger("lifecycle.playbooks")
SHIPPED = Path(__file__).resolve().parents[2] / "playbooks"
"""The repository's ``playbooks/`` (a source checkout or an editable install)."""
PACKAGED = Path(__file__).resolve().parents[1] / "shipped_playbooks"
"""The same files inside an installed wheel (``pyproject.toml`` force-includes them there)."""
ROLES_FILE = "roles.yaml"
NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


def shipped_playbooks() -> Path | None:
    """Where the playbooks that ship with lifecycle are: the source tree's, else the wheel's."""
    for directory in (SHIPPED, PACKAGED):
        if directory.is_dir():
            return directory
    return None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PolicyTightening(_Strict):
    """Controls a playbook may set; each must be at least as strict as ``[policy]``."""

    mfa: Literal["required", "optional"] | None = None
    lockout_threshold: int | None = Field(default=None, gt=0)
    lockout_window_minutes: int | None = Field(default=None, gt=0)
    lockout_duration_minutes: int | None = Field(default=None, gt=0)
    session_idle_minutes: int | None = Field(default=None, gt=0)
    session_max_hours: int | None = Field(default=None, gt=0)
    inactive_disable_days: int | None = Field(default=None, gt=0)


class SystemAccess(_Strict):
    entitlements: list[str] = Field(default_factory=list)
    """Groups / roles / queues the role holds in this system."""
    policy: PolicyTightening = Field(default_factory=PolicyTightening)

    @field_validator("entitlements")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("entitlements are listed twice")
        if any(not e.strip() for e in value):
            raise ValueError("an entitlement is empty")
        return value


class Playbook(_Strict):
    name: str
    description: str = ""
    needs: list[str] = Field(default_factory=list)
    """What the role needs to see (documentation for reviewers)."""
    never: list[str] = Field(default_factory=list)
    """Entitlements this role must never hold; an entitlement listed here is refused."""
    policy: PolicyTightening = Field(default_factory=PolicyTightening)
    systems: dict[str, SystemAccess] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME.match(value):
            raise ValueError("use lower-case letters, digits and '-'")
        return value


class RoleMap(_Strict):
    job_codes: dict[str, str]


# ---------------------------------------------------------------------- tightening


def loosened(tightening: PolicyTightening, base: PolicyBaseline) -> list[tuple[str, str]]:
    """(field, message) for every control the tightening would loosen."""
    problems = []
    for control, value in tightening.model_dump(exclude_none=True).items():
        wanted: bool | int = value == "required" if control == Control.MFA else value
        default = baseline_value(base, control)
        if not at_least_as_strict(control, wanted, default):
            problems.append(
                (control, f"loosens the [policy] default ({value!r} is weaker than {default!r})")
            )
    return problems


def tighten(base: PolicyBaseline, tightening: PolicyTightening) -> PolicyBaseline:
    values: dict[str, Any] = {
        "mfa_required": base.mfa_required,
        **{c: getattr(base, c) for c in SMALLER_IS_STRICTER},
    }
    for control, value in tightening.model_dump(exclude_none=True).items():
        if control == Control.MFA:
            values["mfa_required"] = stricter(control, base.mfa_required, value == "required")
        else:
            values[control] = stricter(control, getattr(base, control), value)
    return PolicyBaseline(**values)


# ---------------------------------------------------------------------- YAML with line numbers


def _line_of(node: yaml.Node | None, loc: Sequence[int | str]) -> int | None:
    """The line (1-based) of the node at ``loc``, or of its nearest existing ancestor."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for key in loc:
        child: yaml.Node | None = None
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == str(key):
                    child = v
                    break
        elif (
            isinstance(node, yaml.SequenceNode)
            and isinstance(key, int)
            and 0 <= key < len(node.value)
        ):
            child = node.value[key]
        if child is None:
            return line
        node, line = child, child.start_mark.line + 1
    return line


def _where(path: Path, root: yaml.Node | None, loc: Sequence[int | str]) -> str:
    line = _line_of(root, loc)
    fieldname = ".".join(str(p) for p in loc) or "(document)"
    return f"{path}:{line or 1}: {fieldname}"


def _read_yaml(path: Path) -> tuple[Any, yaml.Node | None, bytes]:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    text = raw.decode("utf-8", errors="replace")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else 1
        raise ConfigError(f"{path}:{line}: invalid YAML: {exc.problem or exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from exc
    return data, root, raw


def _validate(model: type[BaseModel], path: Path, data: Any, root: yaml.Node | None) -> Any:
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as exc:
        problems = [f"{_where(path, root, e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ConfigError("; ".join(problems)) from exc


@dataclass(frozen=True, slots=True)
class LoadedPlaybook:
    playbook: Playbook
    path: Path
    sha256: str

    @property
    def name(self) -> str:
        return self.playbook.name

    def entitlements(self, system: str) -> frozenset[str]:
        access = self.playbook.systems.get(system)
        return frozenset(access.entitlements) if access else frozenset()

    def baseline_for(self, base: PolicyBaseline, system: str | None = None) -> PolicyBaseline:
        """The defaults tightened by this playbook (and by its ``system`` section)."""
        result = tighten(base, self.playbook.policy)
        access = self.playbook.systems.get(system) if system else None
        return tighten(result, access.policy) if access else result


def load_playbook(path: Path, policy: PolicySettings) -> LoadedPlaybook:
    """Read, validate and check one playbook against the policy defaults."""
    data, root, raw = _read_yaml(path)
    playbook: Playbook = _validate(Playbook, path, data, root)
    if playbook.name != path.stem:
        raise ConfigError(
            f"{_where(path, root, ['name'])}: is {playbook.name!r} but the file is "
            f"{path.name}; they must match"
        )
    base = policy.baseline()
    problems = [
        f"{_where(path, root, ['policy', c])}: {msg}" for c, msg in loosened(playbook.policy, base)
    ]
    never = {n.casefold() for n in playbook.never}
    for system, access in playbook.systems.items():
        problems += [
            f"{_where(path, root, ['systems', system, 'policy', c])}: {msg}"
            for c, msg in loosened(access.policy, base)
        ]
        for index, entitlement in enumerate(access.entitlements):
            if entitlement.casefold() in never:
                where = _where(path, root, ["systems", system, "entitlements", index])
                problems.append(f"{where}: {entitlement!r} is on this role's 'never' list")
    if problems:
        raise ConfigError("; ".join(problems))
    return LoadedPlaybook(playbook, path, hashlib.sha256(raw).hexdigest())


# ---------------------------------------------------------------------- the library


@dataclass(frozen=True, slots=True)
class SystemDiff:
    """What applying a playbook would do in one system."""

    system: str
    account_id: str | None
    create: bool
    add: tuple[str, ...]
    remove: tuple[str, ...]
    keep: tuple[str, ...]
    error: str | None = None


@dataclass
class PlaybookLibrary:
    playbooks: dict[str, LoadedPlaybook] = field(default_factory=dict)
    job_codes: dict[str, str] = field(default_factory=dict)
    directory: Path | None = None

    @classmethod
    def load(cls, directory: Path, policy: PolicySettings) -> PlaybookLibrary:
        """Every ``*.yaml`` but ``roles.yaml`` is a playbook; ``roles.yaml`` maps job codes."""
        if not directory.is_dir():
            raise ConfigError(f"playbook directory {directory} does not exist")
        books: dict[str, LoadedPlaybook] = {}
        for path in sorted(directory.glob("*.yaml")):
            if path.name != ROLES_FILE:
                book = load_playbook(path, policy)
                books[book.name] = book
        job_codes: dict[str, str] = {}
        roles = directory / ROLES_FILE
        if roles.exists():
            data, root, _ = _read_yaml(roles)
            role_map: RoleMap = _validate(RoleMap, roles, data, root)
            for code, name in role_map.job_codes.items():
                if name not in books:
                    raise ConfigError(
                        f"{_where(roles, root, ['job_codes', code])}: no playbook named {name!r} "
                        f"(known: {', '.join(sorted(books)) or 'none'})"
                    )
            job_codes = dict(role_map.job_codes)
        return cls(books, job_codes, directory)

    def get(self, name: str) -> LoadedPlaybook:
        try:
            return self.playbooks[name]
        except KeyError:
            raise ConfigError(
                f"no playbook named {name!r} (known: {', '.join(sorted(self.playbooks)) or 'none'})"
            ) from None

    def for_job_code(self, job_code: str | None) -> LoadedPlaybook | None:
        name = self.job_codes.get(job_code or "")
        return self.playbooks.get(name) if name else None

    def managed(self, system: str) -> frozenset[str]:
        """Entitlements some playbook grants in ``system``: the ones roles own. Others (e.g. a
        site-wide group) are left alone by joiners and movers."""
        return frozenset().union(*(b.entitlements(system) for b in self.playbooks.values()))

    def check_systems(self, book: LoadedPlaybook, configured: Sequence[str]) -> None:
        missing = sorted(set(book.playbook.systems) - set(configured))
        if missing:
            raise ConfigError(
                f"{book.path}: names system(s) {', '.join(missing)} that are not configured "
                f"under [connectors] ({', '.join(configured)})"
            )

    def plan(
        self,
        target: LoadedPlaybook,
        previous: LoadedPlaybook | None,
        configured: Sequence[str],
    ) -> OnboardPlan | TransferPlan:
        """The joiner (no ``previous``) or mover plan: one chain per system either role names."""
        self.check_systems(target, configured)
        systems = sorted(
            (set(target.playbook.systems) | set(previous.playbook.systems if previous else ()))
            & set(configured)
        )
        targets = {
            s: SystemTarget(
                entitlements=tuple(target.entitlements(s)),
                account=s in target.playbook.systems,
                managed=tuple(self.managed(s)),
            )
            for s in systems
        }
        playbook = VersionRef(name=target.name, sha256=target.sha256)
        if previous is None:
            return OnboardPlan(target_playbook=playbook, targets=targets)
        moved_from = VersionRef(name=previous.name, sha256=previous.sha256)
        return TransferPlan(target_playbook=playbook, targets=targets, moved_from=moved_from)
