"""A stand-in for BambooHR's API that the service (a subprocess) can reach over HTTP: respx
cannot reach into another process. It answers ``GET /api/v1/employees/{id}`` exactly as
https://documentation.bamboohr.com/reference/get-employee documents (a flat JSON object of the
requested fields), checks HTTP Basic auth with the API key, and can be taken down (connection
refused) and brought back on the same port."""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.servers import free_port


@dataclass
class BambooHrDouble:
    api_key: str
    employees: dict[str, dict[str, Any]] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    requests: list[str] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        double = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                double.requests.append(self.path)
                expected = base64.b64encode(f"{double.api_key}:x".encode()).decode()
                if self.headers.get("Authorization") != f"Basic {expected}":
                    self._answer(401, {})
                    return
                prefix = "/api/v1/employees/"
                employee = double.employees.get(parts.path.removeprefix(prefix))
                if not parts.path.startswith(prefix) or employee is None:
                    self._answer(404, {})
                    return
                fields = parse_qs(parts.query).get("fields", [""])[0].split(",")
                self._answer(200, {"id": employee["id"], **{f: employee.get(f) for f in fields}})

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
