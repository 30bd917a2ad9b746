from __future__ import annotations

import pytest
from pydantic import SecretStr

from lifecycle.settings import HrSettings, HrSourceSettings

DEEL_KEY = "deel-signing-key"
GUSTO_TOKEN = "6590f590-3dba-495e-9bea-c361e1e2efc0"
HIBOB_SECRET = "hibob-webhook-secret"
RIPPLING_TOKEN = "rippling-static-token"


@pytest.fixture
def vendors(monkeypatch: pytest.MonkeyPatch) -> HrSettings:
    """One source of each signed kind, secrets from the environment."""
    for name, value in {
        "T_DEEL": DEEL_KEY,
        "T_GUSTO": GUSTO_TOKEN,
        "T_HIBOB": HIBOB_SECRET,
        "T_RIPPLING": RIPPLING_TOKEN,
    }.items():
        monkeypatch.setenv(name, value)
    return HrSettings(
        sources={
            "deel": HrSourceSettings(kind="deel", secret=SecretStr("env:T_DEEL")),
            "gusto": HrSourceSettings(kind="gusto", secret=SecretStr("env:T_GUSTO")),
            "hibob": HrSourceSettings(kind="hibob", secret=SecretStr("env:T_HIBOB")),
            "rippling": HrSourceSettings(kind="rippling", secret=SecretStr("env:T_RIPPLING")),
        }
    )
