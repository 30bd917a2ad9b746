from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.acceptance import openapi_check
from tests.acceptance.service import Service, config_text


@pytest.fixture(scope="session", autouse=True)
def responses_match_the_openapi_document(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[None]:
    """Note every response of a lifecycle service the suite sees; at the end, each must be
    declared in the service's OpenAPI document (``openapi_check``)."""
    send = httpx.Client.send

    def noting(client: httpx.Client, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        response = send(client, request, **kwargs)
        if request.url.host == "127.0.0.1" and request.url.port in openapi_check.PORTS:
            openapi_check.note(
                request.method,
                request.url.path,
                response.status_code,
                response.headers.get("content-type", ""),
                response.headers.get("allow"),
            )
        return response

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(httpx.Client, "send", noting)
        yield
    if not openapi_check.SEEN:
        return
    document = openapi_check.document_of(tmp_path_factory.mktemp("openapi"), config_text())
    missing = openapi_check.undeclared(document, openapi_check.SEEN)
    assert not missing, "responses the OpenAPI document does not declare:\n" + "\n".join(missing)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    """One running service on the demo-shaped configuration, shared by a module's tests
    (each test uses its own workers)."""
    svc = Service(tmp_path_factory.mktemp("svc"), config_text())
    svc.start()
    yield svc
    svc.stop()


@pytest.fixture
def fresh_service(tmp_path: Path) -> Iterator[Service]:
    """A service of the test's own; configure ``.config`` then call ``.start()``."""
    svc = Service(tmp_path, config_text())
    yield svc
    svc.stop(kill=True)
