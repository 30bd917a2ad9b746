"""What every ``[connectors.<name>]`` table shares, and the one place options are parsed.

Every connector's ``from_config`` validates its table with ``parse_options``: a mistake becomes
a ConnectorConfigError naming the table and the option, never echoing the value (pydantic's own
text repeats the input, and a secret typed under a misspelt key would end up in the logs).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connectors.base import ConnectorConfigError

OptionsT = TypeVar("OptionsT", bound=BaseModel)


class ConnectorOptions(BaseModel):
    """Options every connector accepts besides its own (unknown keys are refused)."""

    model_config = ConfigDict(extra="forbid")

    max_concurrency: int | None = Field(default=None, ge=1, le=256)
    """Calls in flight at once to this system, enforced by the service's executor (default:
    ``[service] connector_concurrency``)."""


def summary(exc: ValidationError) -> str:
    """``option.path: problem; ...`` (the offending values are not echoed: they may be secret)."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'options'}: {err['msg']}" for err in exc.errors()
    )


def parse_options(model: type[OptionsT], name: str, options: Mapping[str, Any]) -> OptionsT:
    """``options`` validated as ``model``; raises ConnectorConfigError naming what to fix."""
    try:
        return model.model_validate(dict(options))
    except ValidationError as exc:
        raise ConnectorConfigError(f"[connectors.{name}]: {summary(exc)}", connector=name) from None
