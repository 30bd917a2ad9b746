"""How ldap3's errors become the service's two kinds: retry (transient) or fix (permanent)."""

from __future__ import annotations

import pytest
from ldap3.core.exceptions import (
    LDAPBusyResult,
    LDAPInsufficientAccessRightsResult,
    LDAPInvalidCredentialsResult,
    LDAPNoSuchObjectResult,
    LDAPResponseTimeoutError,
    LDAPSocketOpenError,
    LDAPSocketReceiveError,
    LDAPUnwillingToPerformResult,
)

from connectors.base import PermanentConnectorError, TransientConnectorError
from connectors.ldap.errors import translate_error


def _translate(exc: Exception, what: str, account_id: str | None) -> Exception:
    return translate_error(
        exc,  # type: ignore[arg-type]
        what,
        connector="corp-ad",
        account_id=account_id,
        label="Active Directory",
        url="ldaps://dc1.example.org",
        bind_dn="CN=svc,DC=example,DC=org",
    )


def _result(cls: type, code: int, message: str = "") -> Exception:
    exc: Exception = cls(result=code, description=cls.__name__, message=message)
    return exc


def test_bad_service_credentials_name_the_option_and_the_ad_reason() -> None:
    exc = _result(
        LDAPInvalidCredentialsResult,
        49,
        "80090308: LdapErr: DSID-0C09041C, comment: AcceptSecurityContext error, data 775, v4563",
    )
    error = _translate(exc, "find the account", "W1")
    assert isinstance(error, PermanentConnectorError)
    assert "[corp-ad account W1]" in str(error)
    assert "bind_password" in str(error) and "locked out" in str(error)


@pytest.mark.parametrize(
    ("exc", "kind", "words"),
    [
        (
            _result(LDAPInsufficientAccessRightsResult, 50),
            PermanentConnectorError,
            "lacks the rights",
        ),
        (_result(LDAPNoSuchObjectResult, 32), PermanentConnectorError, "does not exist"),
        (_result(LDAPUnwillingToPerformResult, 53), PermanentConnectorError, "refused"),
        (_result(LDAPBusyResult, 51), TransientConnectorError, "busy"),
        (
            LDAPSocketOpenError("socket connection error: [Errno 111] refused"),
            TransientConnectorError,
            "unreachable",
        ),
        (LDAPSocketReceiveError("timed out"), TransientConnectorError, "unreachable"),
        (LDAPResponseTimeoutError("no response"), TransientConnectorError, "timed out"),
        (
            LDAPSocketOpenError("socket ssl wrapping error: [SSL: CERTIFICATE_VERIFY_FAILED]"),
            PermanentConnectorError,
            "ca_file",
        ),
        (
            LDAPSocketOpenError("socket ssl wrapping error: [SSL: WRONG_VERSION_NUMBER] wrong"),
            PermanentConnectorError,
            "does not speak TLS",
        ),
    ],
)
def test_translation(exc: Exception, kind: type, words: str) -> None:
    error = _translate(exc, "disable the account", "abc")
    assert type(error) is kind and isinstance(
        error, TransientConnectorError | PermanentConnectorError
    )
    assert words in str(error) and error.connector == "corp-ad" and error.account_id == "abc"


def test_busy_suggests_a_short_retry_after() -> None:
    error = _translate(_result(LDAPBusyResult, 51), "x", None)
    assert isinstance(error, TransientConnectorError) and error.retry_after == 2.0
