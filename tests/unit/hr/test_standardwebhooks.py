"""Standard Webhooks sources: signatures, tolerance, normalisation, and refusal of bad input."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import SecretStr
from standardwebhooks.webhooks import Webhook

from lifecycle.exceptions import PayloadError, SecretError, SignatureError, UnknownSourceError
from lifecycle.hr import Delivery, HrEvent, HrEventType, parse_delivery
from lifecycle.settings import HrSettings, HrSourceSettings

SECRET = "whsec_c2VjcmV0LWZvci10ZXN0cy1vbmx5"
# The tolerance is checked against the service clock (``now``), which the tests pass as NOW.
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def hr(monkeypatch: pytest.MonkeyPatch) -> HrSettings:
    monkeypatch.setenv("TEST_WH_SECRET", SECRET)
    return HrSettings(
        sources={
            "workday": HrSourceSettings(
                kind="standardwebhooks", secret=SecretStr("env:TEST_WH_SECRET")
            ),
        }
    )


def one(delivery: Delivery) -> HrEvent:
    assert len(delivery.items) == 1
    event = delivery.items[0]
    assert isinstance(event, HrEvent)
    return event


def parse_event(
    hr: HrSettings,
    source: str,
    body: bytes,
    headers: dict[str, str],
    now: datetime,
    *,
    allow_inline_secrets: bool = False,
) -> HrEvent:
    return one(
        parse_delivery(hr, source, body, headers, now, allow_inline_secrets=allow_inline_secrets)
    )


def signed(
    body: dict[str, object] | bytes,
    *,
    at: datetime = NOW,
    msg_id: str = "msg_1",
    secret: str = SECRET,
) -> tuple[bytes, dict[str, str]]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    signature = Webhook(secret).sign(msg_id, at, raw.decode())
    return raw, {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
    }


def termination(**data: object) -> dict[str, object]:
    return {
        "type": "worker.terminated",
        "timestamp": NOW.isoformat(),
        "data": {"worker_id": "W0042", **data},
    }


def test_standard_webhook_termination_is_normalised(hr: HrSettings) -> None:
    effective = "2026-11-26T17:00:00+00:00"
    body, headers = signed(
        termination(
            effective_at=effective,
            reason="contract_end",
            engagement="contractor",
            vendor="Acme Staffing",
        )
    )
    event = parse_event(hr, "workday", body, headers, NOW)
    assert event.type is HrEventType.TERMINATION
    assert event.worker_id == "W0042"
    assert event.event_id == "msg_1"
    assert event.effective_at == datetime(2026, 11, 26, 17, tzinfo=UTC)
    assert event.engagement == "contractor"
    assert event.payload_sha256 == hashlib.sha256(body).hexdigest()


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("worker.hired", HrEventType.HIRE),
        ("worker.transferred", HrEventType.TRANSFER),
        ("worker.updated", HrEventType.UPDATE),
    ],
)
def test_other_standard_webhook_types(hr: HrSettings, kind: str, expected: HrEventType) -> None:
    body, headers = signed(
        {
            "type": kind,
            "timestamp": NOW.isoformat(),
            "data": {"worker_id": "W0042", "job_code": "VA-BILL"},
        }
    )
    assert parse_event(hr, "workday", body, headers, NOW).type is expected


def test_wrong_secret_is_refused(hr: HrSettings) -> None:
    body, headers = signed(termination(), secret="whsec_b3RoZXItc2VjcmV0")
    with pytest.raises(SignatureError):
        parse_event(hr, "workday", body, headers, NOW)


def test_tampered_body_is_refused(hr: HrSettings) -> None:
    body, headers = signed(termination())
    with pytest.raises(SignatureError):
        parse_event(hr, "workday", body.replace(b"W0042", b"W0043"), headers, NOW)


def test_stale_timestamp_is_refused(hr: HrSettings) -> None:
    body, headers = signed(termination(), at=NOW - timedelta(minutes=6))
    with pytest.raises(SignatureError, match=r"timestamp|old"):
        parse_event(hr, "workday", body, headers, NOW)


def test_tolerance_seconds_bounds_the_window(hr: HrSettings) -> None:
    """The configured tolerance, not a fixed five minutes, decides (both ways)."""
    body, headers = signed(termination(), at=NOW - timedelta(minutes=20))
    with pytest.raises(SignatureError, match="300 s"):
        parse_event(hr, "workday", body, headers, NOW)
    hr.sources["workday"].tolerance_seconds = 1800
    assert parse_event(hr, "workday", body, headers, NOW).worker_id == "W0042"
    hr.sources["workday"].tolerance_seconds = 60
    body, headers = signed(termination(), at=NOW - timedelta(minutes=2))
    with pytest.raises(SignatureError, match="60 s"):
        parse_event(hr, "workday", body, headers, NOW)


def test_a_rotated_key_is_accepted_among_several_signatures(hr: HrSettings) -> None:
    body, headers = signed(termination())
    old = Webhook("whsec_b3RoZXItc2VjcmV0").sign("msg_1", NOW, body.decode())
    headers["webhook-signature"] = f"{old} {headers['webhook-signature']}"
    assert parse_event(hr, "workday", body, headers, NOW).worker_id == "W0042"


def test_standard_webhooks_honour_the_configured_tolerance(hr: HrSettings) -> None:
    hr.sources["workday"].tolerance_seconds = 30
    body, headers = signed(termination(), at=NOW - timedelta(seconds=45))
    with pytest.raises(SignatureError, match="30 s"):
        parse_event(hr, "workday", body, headers, NOW)
    hr.sources["workday"].tolerance_seconds = 900  # longer than the library's fixed 5 minutes
    body, headers = signed(termination(), at=NOW - timedelta(minutes=10))
    assert parse_event(hr, "workday", body, headers, NOW).worker_id == "W0042"


@pytest.mark.parametrize("header", ["garbage", "v1,not-base64!!", "", "v2,abc"])
def test_malformed_signature_header_is_refused(hr: HrSettings, header: str) -> None:
    body, headers = signed(termination(), at=datetime.now(UTC))
    headers["webhook-signature"] = header
    with pytest.raises(SignatureError):
        parse_event(hr, "workday", body, headers, datetime.now(UTC))


@pytest.mark.parametrize(
    "payload",
    [
        b"{not json",
        b'{"type": "worker.fired", "timestamp": "2026-11-25T10:00:00Z", "data": {}}',
        b'{"type": "worker.terminated", "timestamp": "2026-11-25T10:00:00Z", "data": {}}',
        b'{"type": "worker.terminated", "timestamp": "2026-11-25T10:00:00", '
        b'"data": {"worker_id": "W1"}}',
        b'{"type": "worker.terminated", "timestamp": "2026-11-25T10:00:00Z", '
        b'"data": {"worker_id": "*)(uid=*"}}',
    ],
)
def test_malformed_body_is_refused_after_the_signature(hr: HrSettings, payload: bytes) -> None:
    now = datetime.now(UTC)
    body, headers = signed(payload, at=now)
    with pytest.raises(PayloadError):
        parse_event(hr, "workday", body, headers, now)


def test_unknown_source(hr: HrSettings) -> None:
    with pytest.raises(UnknownSourceError):
        parse_event(hr, "adp", b"{}", {}, NOW)


def test_missing_secret_names_the_variable_not_a_value(
    hr: HrSettings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TEST_WH_SECRET")
    body, headers = signed(termination())
    with pytest.raises(SecretError, match="TEST_WH_SECRET"):
        parse_event(hr, "workday", body, headers, NOW)


def test_inline_secret_is_refused_outside_demo_mode() -> None:
    hr = HrSettings(
        sources={"w": HrSourceSettings(kind="standardwebhooks", secret=SecretStr(SECRET))}
    )
    body, headers = signed(termination())
    with pytest.raises(SecretError, match="inline"):
        parse_event(hr, "w", body, headers, NOW)
    assert parse_event(hr, "w", body, headers, NOW, allow_inline_secrets=True).worker_id == "W0042"
