"""One Settings class: a TOML file (``--config`` / ``LIFECYCLE_CONFIG``) overlaid by environment
variables with the ``LIFECYCLE_`` prefix (nested with ``__``, e.g.
``LIFECYCLE_SERVICE__DATABASE_URL``)."""

from __future__ import annotations

import ipaddress
import os
import re
import tomllib
from datetime import UTC, tzinfo
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from connectors.base import PolicyBaseline
from lifecycle.exceptions import ConfigError
from lifecycle.retry import RetryPolicy
from lifecycle.validation import summary

MIB = 1024 * 1024


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServiceSettings(_Section):
    database_url: str = "sqlite:///./lifecycle.db"
    evidence_key: Path = Path("./keys/evidence.ed25519")
    log_origin: str = "lifecycle.example.org/evidence"
    termination_sla_seconds: int = Field(default=3600, gt=0)
    demo: bool = False
    """Demo mode: inline secrets allowed, the evidence key is created on first start."""
    max_body_bytes: int = Field(default=MIB, gt=0)
    lease_seconds: float = Field(default=30.0, gt=0)
    """How long a replica owns a claimed run without renewing; after a crash another (or the
    restarted) replica takes the run over once the lease has expired."""
    poll_seconds: float = Field(default=1.0, gt=0)
    step_timeout_seconds: float = Field(default=30.0, gt=0)
    max_parallel_runs: int = Field(default=256, gt=0)
    connector_concurrency: int = Field(default=32, gt=0)
    """Default for connectors that do not set ``max_concurrency`` in their own table."""
    instance_id: str | None = None
    """This replica's name in run leases (default: the host name). A restarted service with the
    same instance id resumes the runs it held at once; replicas sharing a host need their own."""
    restore_requires_approval: bool = True
    """Two-person rule: a restore waits as ``awaiting_approval`` until an admin other than the
    requester approves it."""
    timezone: str = "UTC"
    """The organisation's time zone (IANA name): a date-only effective or termination date from
    an HR source means the start of that day here."""

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        zone_of(value)
        return value

    def zone(self) -> tzinfo:
        return zone_of(self.timezone)


def zone_of(name: str) -> tzinfo:
    """The IANA time zone ``name`` (``UTC`` needs no time zone database)."""
    if name in ("UTC", "Etc/UTC"):
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(
            f"unknown time zone {name!r} (use an IANA name such as America/New_York)"
        ) from exc


class RetrySettings(_Section):
    attempts: int = Field(default=5, ge=1)
    initial_seconds: float = Field(default=0.5, ge=0)
    max_seconds: float = Field(default=30.0, ge=0)
    max_retry_after_seconds: float = Field(default=300.0, ge=0)
    horizon_seconds: float | None = Field(default=None, ge=0)
    """How long a run keeps retrying an unreachable system, durably, before that step fails
    and the run ends ``incomplete``: default half of ``[service] termination_sla_seconds``;
    0 gives up after the in-process ``attempts``."""

    def policy(self) -> RetryPolicy:
        return RetryPolicy(
            attempts=self.attempts,
            initial_seconds=self.initial_seconds,
            max_seconds=self.max_seconds,
            max_retry_after_seconds=self.max_retry_after_seconds,
        )


class AlertSettings(_Section):
    webhook_url: str | None = None
    """Optional: every escalation is also POSTed here as JSON."""
    timeout_seconds: float = 5.0


HrSourceKind = Literal["standardwebhooks", "bamboohr", "deel", "gusto", "hibob", "rippling"]
SUBDOMAIN = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")


class HrSourceSettings(_Section):
    """``[hr.sources.<name>]``: one HR system that posts webhooks to ``/v1/hr/<name>/events``."""

    kind: HrSourceKind
    secret: SecretStr
    """``env:NAME`` or ``file:PATH``; an inline value only in demo mode. What it is depends on the
    kind: the signing secret (Standard Webhooks, BambooHR private key, Deel signing key, HiBob
    secret), Gusto's subscription ``verification_token``, or Rippling's bearer token."""
    tolerance_seconds: int = Field(default=300, gt=0)
    """How far a signed delivery time may be from now (sources that sign one)."""
    # --- vendor API look-ups (BambooHR event-based webhooks carry no field values)
    api_key: SecretStr | None = None
    """BambooHR: the API key (HTTP Basic user), ``env:NAME`` or ``file:PATH``."""
    subdomain: str | None = None
    """BambooHR: the company subdomain (``https://<subdomain>.bamboohr.com``)."""
    api_base_url: str | None = None
    """Overrides the vendor's API URL (a test double); https, or http on loopback only."""
    lookup_timeout_seconds: float = Field(default=5.0, gt=0)
    lookup_attempts: int = Field(default=2, ge=1, le=10)
    """Attempts of one look-up while the webhook waits (transient errors only)."""
    retry_initial_seconds: float = Field(default=30.0, gt=0)
    """A delivery whose look-up failed is retried from the store after this, doubling..."""
    retry_max_seconds: float = Field(default=900.0, gt=0)
    """...up to this interval, for as long as it takes."""
    escalate_after_seconds: float = Field(default=3600.0, gt=0)
    """A delivery still unresolved this long after receipt is escalated through the alert sink
    (once; the retries go on)."""
    # --- BambooHR field names
    field_aliases: dict[str, str] = Field(default_factory=dict)
    """Field-based webhooks: the names the payload uses, by meaning (``employment_status``,
    ``status``, ``termination_date``, ``hire_date``, ``work_email``, ``job_title``,
    ``department``, ``division``, ``location``, ``first_name``, ``last_name``,
    ``employee_number``, ``job_code``); default BambooHR's English field names."""
    terminated_statuses: list[str] = Field(default_factory=lambda: ["Terminated"])
    """BambooHR employment status values that mean the engagement ended."""
    job_code_field: str = "jobTitle"
    """BambooHR API field whose value is the worker's job code (``roles.yaml`` maps it)."""
    # --- Gusto
    effective_events_only: bool = True
    """Gusto: terminate on ``*.termination_effective`` / ``contractor.deactivation_effective``
    (the day the change takes effect); with false, also on the record-time events
    (``employee.terminated``, ``contractor.deactivated``)."""

    @field_validator("subdomain")
    @classmethod
    def _subdomain(cls, value: str | None) -> str | None:
        if value is not None and not SUBDOMAIN.match(value):
            raise ValueError("must be the BambooHR company subdomain (letters, digits, -)")
        return value

    @field_validator("api_base_url")
    @classmethod
    def _api_base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        host = parts.hostname or ""
        if parts.scheme == "https" and host:
            return value.rstrip("/")
        if parts.scheme == "http" and _loopback(host):
            return value.rstrip("/")
        raise ValueError("must be an https URL (http only on a loopback address)")

    @model_validator(mode="after")
    def _vendor_api(self) -> HrSourceSettings:
        if self.kind == "bamboohr" and (
            self.api_key is None or not (self.subdomain or self.api_base_url)
        ):
            raise ValueError(
                "a bamboohr source needs api_key and subdomain (its event-based webhooks "
                "carry no field values: the employee is read through the API)"
            )
        return self

    def api_url(self) -> str:
        """The vendor API's base URL (BambooHR)."""
        if self.api_base_url:
            return self.api_base_url
        return f"https://{self.subdomain}.bamboohr.com"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class HrSettings(_Section):
    sources: dict[str, HrSourceSettings] = Field(default_factory=dict)
    retry_poll_seconds: float = Field(default=5.0, gt=0)
    """How often deliveries awaiting a vendor look-up are checked for a due retry."""


class PolicySettings(_Section):
    mfa: Literal["required", "optional"] = "required"
    lockout_threshold: int = 5
    lockout_window_minutes: int = 15
    lockout_duration_minutes: int = 30
    session_idle_minutes: int = 15
    session_max_hours: int = 12
    inactive_disable_days: int = 90
    contractor_inactive_disable_days: int = 45

    def baseline(self) -> PolicyBaseline:
        return PolicyBaseline(
            mfa_required=self.mfa == "required",
            lockout_threshold=self.lockout_threshold,
            lockout_window_minutes=self.lockout_window_minutes,
            lockout_duration_minutes=self.lockout_duration_minutes,
            session_idle_minutes=self.session_idle_minutes,
            session_max_hours=self.session_max_hours,
            inactive_disable_days=self.inactive_disable_days,
        )


class PlaybookSettings(_Section):
    directory: Path | None = None
    """Where the role playbooks (``*.yaml``) and ``roles.yaml`` live; default: the shipped
    ``playbooks/`` directory."""


class SchedulerSettings(_Section):
    """``[scheduler]``: cron expressions are UTC, five fields (minute hour day month weekday)."""

    enabled: bool = True
    reverify_after_minutes: list[int] = Field(default_factory=lambda: [5, 1440])
    """Re-verify every termination this long after it finished (default +5 min and +24 h)."""
    reverify_every_seconds: int = Field(default=60, gt=0)
    """How often the re-verification job looks for terminations that are due."""
    reverify_catch_up_days: int = Field(default=7, gt=0)
    """After downtime, terminations that finished up to this long ago are still re-verified."""
    inactivity_cron: str = "0 3 * * *"
    reconcile_cron: str = "30 3 * * *"
    policy_check_cron: str = "0 * * * *"
    checkpoint_every_seconds: int = Field(default=300, gt=0)
    disable_orphans: bool = False
    sweep_ignore: list[str] = Field(default_factory=list)
    """Shell-style patterns of logins or account ids that are not workers' accounts (service,
    break-glass): the inactivity sweep and reconciliation never report or disable them."""
    """Reconciliation disables accounts that belong to no active worker (else only reports)."""
    enforce_policy: bool = False
    """The hourly policy check also remediates (else it reports and alerts)."""
    misfire_grace_seconds: int = Field(default=3600, gt=0)
    leader_retry_seconds: float = Field(default=15.0, gt=0)


class ConsoleSettings(_Section):
    """``[console]``: the web console at ``/console``."""

    session_idle_minutes: int = Field(default=15, gt=0)
    """A console session ends after this long without a request (the policy default)."""
    trust_forwarded_proto: bool = False
    """Behind a TLS-terminating proxy: take ``X-Forwarded-Proto: https`` as a TLS request, so
    the session cookie is marked ``Secure``. Leave off when clients reach the service directly
    (they could send the header themselves)."""


class DemoSettings(_Section):
    workers: int = Field(default=0, ge=0)
    """Seed the roster with W0001..W<n> (the memory connectors seed the same ids)."""
    domain: str = "example.org"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="LIFECYCLE_", env_nested_delimiter="__", extra="forbid"
    )

    service: ServiceSettings = Field(default_factory=ServiceSettings)
    hr: HrSettings = Field(default_factory=HrSettings)
    connectors: dict[str, dict[str, Any]] = Field(default_factory=dict)
    policy: PolicySettings = Field(default_factory=PolicySettings)
    alerts: AlertSettings = Field(default_factory=AlertSettings)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    demo: DemoSettings = Field(default_factory=DemoSettings)
    playbooks: PlaybookSettings = Field(default_factory=PlaybookSettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)
    _base_dir: Path = PrivateAttr(default_factory=Path.cwd)
    _source: Path | None = PrivateAttr(default=None)

    @property
    def base_dir(self) -> Path:
        """The folder relative paths resolve against: the configuration file's, else the
        working directory."""
        return self._base_dir

    @property
    def source(self) -> Path | None:
        """The configuration file these settings were read from (None: defaults and
        environment only)."""
        return self._source

    def sqlite_path(self) -> Path | None:
        """The SQLite database file (None: another database, or SQLite in memory)."""
        return sqlite_file(self.service.database_url)

    @field_validator("connectors")
    @classmethod
    def _connectors_have_kind(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        for name, table in value.items():
            if "kind" not in table:
                raise ValueError(f"[connectors.{name}] needs a 'kind'")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment beats the file, so an operator can override one value without editing it.
        return (env_settings, init_settings)


def config_path(explicit: str | Path | None = None) -> Path | None:
    """The configuration file: ``--config``, else ``LIFECYCLE_CONFIG``, else none (defaults)."""
    chosen = explicit or os.environ.get("LIFECYCLE_CONFIG")
    return Path(chosen) if chosen else None


ENVIRONMENT_ONLY = "LIFECYCLE_SERVICE__DATABASE_URL"
"""With this variable set, a command may run without a configuration file (every key from the
environment, relative paths against the working directory)."""


def configuration_found(explicit: str | Path | None = None) -> bool:
    """Whether a configuration was named: a file (``--config`` / ``LIFECYCLE_CONFIG``), or a
    database in the environment (``LIFECYCLE_SERVICE__DATABASE_URL``)."""
    return config_path(explicit) is not None or bool(os.environ.get(ENVIRONMENT_ONLY))


def sqlite_file(url: str) -> Path | None:
    """The file of a ``sqlite:///path`` URL; None for other databases and in-memory SQLite."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def _resolved_url(url: str, base: Path) -> str:
    path = sqlite_file(url)
    if path is None or path.is_absolute():
        return url
    return make_url(url).set(database=str(base / path)).render_as_string(hide_password=False)


def _resolve(path: Path, base: Path) -> Path:
    return path if path.is_absolute() else base / path


def resolve_paths(settings: Settings, base: Path) -> Settings:
    """Make every relative path of ``settings`` absolute against ``base`` (the configuration
    file's folder), so that where files land never depends on the working directory. Paths
    inside ``[connectors.*]`` tables are resolved by each connector (``ConnectorContext``) with
    the same base."""
    base = base.resolve()
    service = settings.service
    service.database_url = _resolved_url(service.database_url, base)
    service.evidence_key = _resolve(service.evidence_key, base)
    if settings.playbooks.directory is not None:
        settings.playbooks.directory = _resolve(settings.playbooks.directory, base)
    settings._base_dir = base
    return settings


def load_settings(path: str | Path | None = None) -> Settings:
    """Read and validate the configuration; ConfigError names the file and the field. Relative
    paths come back absolute, resolved against the file's folder (without a file: the working
    directory)."""
    resolved = config_path(path)
    data: dict[str, Any] = {}
    if resolved is not None:
        try:
            data = tomllib.loads(resolved.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read configuration {resolved}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{resolved}: invalid TOML: {exc}") from exc
    try:
        settings = Settings(**data)
    except ValidationError as exc:
        raise ConfigError(f"{resolved or 'configuration'}: {summary(exc)}") from exc
    settings._source = resolved
    return resolve_paths(settings, resolved.parent if resolved is not None else Path.cwd())
