"""Any SCIM 2.0 service provider (RFC 7643/7644): ``connector`` speaks the connector contract,
``api`` the protocol, ``options`` the configuration table."""

from __future__ import annotations

from connectors.scim.connector import ScimConnector
from connectors.scim.options import ScimOptions

__all__ = ["ScimConnector", "ScimOptions"]
