"""Connector kind -> class, and building connectors from ``[connectors.<name>]`` tables."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from connectors.base import Connector, ConnectorConfigError, ConnectorContext

#: kind (as written in ``[connectors.<name>] kind = ...``) -> "module:Class"
KINDS: Mapping[str, str] = {
    "memory": "connectors.memory:MemoryConnector",
    "entra": "connectors.entra:EntraConnector",
    "ad": "connectors.ldap:LdapConnector",
    "openldap": "connectors.ldap:LdapConnector",
    "scim": "connectors.scim:ScimConnector",
    "ringcentral": "connectors.ringcentral:RingCentralConnector",
    "fhir": "connectors.fhir:FhirConnector",
}


def connector_class(kind: str, name: str = "?") -> type[Connector]:
    """The connector class for a configured kind; imported lazily so unused SDKs stay unloaded.

    Raises ConnectorConfigError for an unknown or unavailable kind.
    """
    try:
        target = KINDS[kind]
    except KeyError:
        raise ConnectorConfigError(
            f"[connectors.{name}]: unknown connector kind {kind!r}; expected one of "
            f"{', '.join(sorted(KINDS))}",
            connector=name,
        ) from None
    module_name, _, class_name = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ConnectorConfigError(
            f"[connectors.{name}]: connector kind {kind!r} is not available: {exc}",
            connector=name,
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, Connector)):
        raise ConnectorConfigError(f"{target} is not a Connector", connector=name)
    return cls


def build_connector(name: str, options: Mapping[str, Any], context: ConnectorContext) -> Connector:
    """Build one connector from its ``[connectors.<name>]`` table (``kind`` selects the class).

    Raises ConnectorConfigError when the table is invalid.
    """
    kind = options.get("kind")
    if not isinstance(kind, str):
        raise ConnectorConfigError(f"[connectors.{name}]: 'kind' is required", connector=name)
    return connector_class(kind, name).from_config(name, options, context)
