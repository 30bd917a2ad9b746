"""Connectors to target systems: a library of its own (it imports nothing from ``lifecycle``).

``connectors.base`` holds the contract (the ``Connector`` ABC, value types, the error tree);
``connectors.registry`` maps a configured ``kind`` to its class and builds connectors.
"""

from __future__ import annotations

from connectors.registry import KINDS, build_connector, connector_class

__all__ = ["KINDS", "build_connector", "connector_class"]
