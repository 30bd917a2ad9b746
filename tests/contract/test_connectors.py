"""The connector contract suite, once for every connector (see ``conftest.harness``)."""

from __future__ import annotations

from tests.contract.suite import ConnectorContract


class TestConnectorContract(ConnectorContract):
    """memory, Entra (fake Graph), FHIR and RingCentral (respx fakes), OpenLDAP (slapd),
    Active Directory (Samba AD DC) and SCIM (scim2-server, with and without PATCH/filters)."""
