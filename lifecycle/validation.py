"""Turning pydantic validation errors into messages that say what to fix."""

from __future__ import annotations

import json
from typing import TypeVar

from pydantic import BaseModel, ValidationError

from lifecycle.exceptions import MalformedBodyError, PayloadError

M = TypeVar("M", bound=BaseModel)


def summary(exc: ValidationError) -> str:
    """``field.path: problem; ...`` (the offending values are not echoed: they may be secret)."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}" for err in exc.errors()
    )


def parse_json_body(model: type[M], body: bytes, schema: str) -> M:
    """Parse an HR body into ``model``; PayloadError says whether JSON or the schema failed."""
    try:
        return model.model_validate(json.loads(body))
    except UnicodeDecodeError as exc:
        raise MalformedBodyError(f"body is not valid UTF-8 (byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise PayloadError(f"body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        # json.loads recurses once per nesting level; no HR system nests anywhere near this.
        raise MalformedBodyError("body is JSON nested too deeply") from exc
    except ValidationError as exc:
        raise PayloadError(f"body does not match the {schema} schema: {summary(exc)}") from exc
