"""Microsoft Entra ID through Microsoft Graph: ``connector`` speaks the connector contract,
``graph`` the transport (msal tokens, requests, ``$batch``), ``model`` the meaning of Graph's
bodies, ``policy`` Conditional Access and smart lockout, ``options`` the configuration table."""

from __future__ import annotations

from connectors.entra.connector import EntraConnector
from connectors.entra.options import EntraOptions

__all__ = ["EntraConnector", "EntraOptions"]
