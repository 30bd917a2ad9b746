"""Connectors to target systems, and the registry that builds them from configuration."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from connectors.base import Connector, ConnectorContext
from lifecycle.exceptions import ConfigError

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


def connector_class(kind: str) -> type[Connector]:
    """The connector class for a configured kind; imported lazily so unused SDKs stay unloaded."""
    try:
        target = KINDS[kind]
    except KeyError:
        raise ConfigError(
            f"unknown connector kind {kind!r}; expected one of {', '.join(sorted(KINDS))}"
        ) from None
    module_name, _, class_name = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"connector kind {kind!r} is not available: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Connector)):
        raise ConfigError(f"{target} is not a Connector")
    return cls


def build_connector(name: str, options: Mapping[str, Any], context: ConnectorContext) -> Connector:
    """Build one connector from its ``[connectors.<name>]`` table (``kind`` selects the class)."""
    kind = options.get("kind")
    if not isinstance(kind, str):
        raise ConfigError(f"[connectors.{name}]: 'kind' is required")
    return connector_class(kind).from_config(name, options, context)
