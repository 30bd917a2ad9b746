"""Active Directory and OpenLDAP through ldap3: ``connector`` speaks the connector contract for
both; ``ad`` and ``openldap`` are the two dialects behind ``dialect``; ``pool`` bounds the
connections, ``errors`` translates ldap3's exceptions, ``values`` escapes and converts, and
``options`` is the configuration table."""

from __future__ import annotations

from connectors.ldap.connector import LdapConnector
from connectors.ldap.options import LdapOptions

__all__ = ["LdapConnector", "LdapOptions"]
