"""ldap3 exceptions -> TransientConnectorError (retry) or PermanentConnectorError (fix this).

No ldap3 exception leaves a connector; each becomes one of the two, with a message that says
what is wrong and what to change, and never the bind password.
"""

from __future__ import annotations

from ldap3.core.exceptions import (
    LDAPCommunicationError,
    LDAPException,
    LDAPOperationResult,
    LDAPResponseTimeoutError,
    LDAPStartTLSError,
)

from connectors.base import PermanentConnectorError, TransientConnectorError
from connectors.ldap.values import ad_bind_diagnosis

#: LDAP result codes worth retrying: busy, unavailable, time/admin limit, server-side timeout.
TRANSIENT_CODES = frozenset({3, 11, 51, 52, 81, 85})
RETRY_AFTER_BUSY = 2.0


def translate_error(
    exc: LDAPException,
    what: str,
    *,
    connector: str,
    account_id: str | None,
    label: str,
    url: str,
    bind_dn: str,
) -> TransientConnectorError | PermanentConnectorError:
    """The service's error for an ldap3 exception raised while doing ``what``.

    Transient: busy, unavailable, timeouts, dropped sockets. Permanent, with what to fix:
    credentials, rights, TLS trust, a missing entry, anything else the server refused.
    """
    text = str(exc)
    if isinstance(exc, LDAPOperationResult):
        code = exc.result
        detail = f"{exc.description} ({code})" + (f": {exc.message}" if exc.message else "")
        if code in TRANSIENT_CODES:
            retry_after = RETRY_AFTER_BUSY if code in (51, 52) else None
            return TransientConnectorError(
                f"{label} at {url} is busy or unavailable during {what}: {detail}",
                connector=connector,
                account_id=account_id,
                retry_after=retry_after,
            )
        if code == 49:
            diagnosis = ad_bind_diagnosis(exc.message)
            why = f" ({diagnosis.reason}, data {diagnosis.code})" if diagnosis else ""
            message = (
                f"{label} at {url} refused the bind as bind_dn{why}: check bind_dn and "
                "bind_password, and that the service account is enabled and not locked"
            )
        elif code == 50:
            message = (
                f"{label}: bind_dn {bind_dn} lacks the rights to {what}: "
                f"grant it write access to the accounts and groups in scope ({detail})"
            )
        elif code == 8:
            message = f"{label} at {url} wants an encrypted connection: use ldaps:// ({detail})"
        elif code == 32:
            message = f"{label}: {what}: the entry does not exist ({detail})"
        else:
            message = f"{label} at {url} refused {what}: {detail}"
        return PermanentConnectorError(message, connector=connector, account_id=account_id)
    lowered = text.lower()
    if "certificate" in lowered or isinstance(exc, LDAPStartTLSError):
        return PermanentConnectorError(
            f"{label} at {url}: TLS failed ({text}): set ca_file to the CA that issued the "
            "server certificate (and tls_server_name if it names another host)",
            connector=connector,
            account_id=account_id,
        )
    if "wrong_version_number" in lowered or "unknown protocol" in lowered:
        return PermanentConnectorError(
            f"{label} at {url}: the port does not speak TLS ({text}): use the LDAPS port "
            "(636) for ldaps://, or ldap:// with start_tls = true",
            connector=connector,
            account_id=account_id,
        )
    if isinstance(exc, LDAPCommunicationError | LDAPResponseTimeoutError):
        return TransientConnectorError(
            f"{label} at {url} unreachable or timed out during {what}: {text}",
            connector=connector,
            account_id=account_id,
        )
    return PermanentConnectorError(
        f"{label} at {url}: {what} failed: {text}", connector=connector, account_id=account_id
    )
