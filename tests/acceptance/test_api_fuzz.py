"""Property-based: every route of the running service, driven with input generated from its own
OpenAPI document (schemathesis), answers without a server error, and only as the document
declares (checked at the end of the session, ``openapi_check``). Authenticated as an admin, so
the generated requests reach the handlers instead of stopping at the 401."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.generation.modes import GenerationMode

from tests.acceptance import openapi_check
from tests.acceptance.service import Service, config_text

pytestmark = pytest.mark.acceptance


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    svc = Service(tmp_path_factory.mktemp("fuzz"), config_text())
    svc.start()
    yield svc
    svc.stop()


def _first(value: str | list[str] | None) -> str:
    if isinstance(value, list):
        return value[0] if value else ""
    return value or ""


def test_no_route_answers_with_a_server_error(fuzzed: Service) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzzed.url}/openapi.json")
    auth = {"Authorization": f"Bearer {fuzzed.admin_token}"}
    failures: list[str] = []
    sent: list[int] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(
            case=operation.as_strategy(GenerationMode.POSITIVE)
            | operation.as_strategy(GenerationMode.NEGATIVE)
        )
        @settings(
            max_examples=40,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def probe(case: schemathesis.Case) -> None:
            sent.append(1)
            response = case.call(base_url=fuzzed.url, headers=auth, timeout=30)
            headers = {k.lower(): v for k, v in response.headers.items()}
            openapi_check.note(
                case.method,
                case.formatted_path,
                response.status_code,
                _first(headers.get("content-type")),
                _first(headers.get("allow")) or None,
            )
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path} {case.query or ''} -> "
                    f"{response.status_code}: {response.text[:300]}"
                )

        probe()
    assert operations >= 15  # the whole API was walked, not an empty document
    assert len(sent) >= 20 * operations
    assert not failures, "\n".join(failures[:20])
