"""An auditor pulls a bundle (CLI or API) and verifies it offline with the published key."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pytest

from tests.acceptance.service import Service

pytestmark = pytest.mark.acceptance


def terminate(service: Service, *workers: str) -> None:
    for worker in workers:
        service.wait_run(service.send_event(worker).json()["run_id"])


def pub_key(service: Service) -> str:
    return str(service.workdir / "keys" / "evidence.ed25519.pub")


def test_cli_export_then_offline_verify(service: Service, tmp_path: Path) -> None:
    terminate(service, "W0031", "W0032")
    out = tmp_path / "bundle.zip"
    exported = service.cli("evidence", "export", "--out", str(out), check=True)
    assert "records" in exported.stdout
    names = zipfile.ZipFile(out).namelist()
    assert {"manifest.json", "checkpoint", "terminations.csv", "report.pdf"} <= set(names)
    assert any(n.startswith("records/") for n in names)
    assert any(n.startswith("proofs/") for n in names)
    verified = service.cli("evidence", "verify", str(out), "--key", pub_key(service))
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout.startswith("OK:")


def test_a_changed_byte_fails_verification_naming_the_record(
    service: Service, tmp_path: Path
) -> None:
    terminate(service, "W0033")
    good = tmp_path / "good.zip"
    service.cli("evidence", "export", "--out", str(good), "--worker", "W0033", check=True)
    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bad, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.startswith("records/"):
                data = data.replace(b"W0033", b"W0034", 1)
            dst.writestr(info, data)
    result = service.cli("evidence", "verify", str(bad), "--key", pub_key(service))
    assert result.returncode == 1
    assert "verification FAILED" in result.stderr
    assert "record" in result.stderr


def test_consistency_with_a_checkpoint_kept_from_last_time(
    service: Service, tmp_path: Path
) -> None:
    terminate(service, "W0035")
    old = tmp_path / "old-checkpoint"
    old.write_text(service.get("/v1/evidence/checkpoint", token="").text)
    terminate(service, "W0036")
    out = tmp_path / "later.zip"
    service.cli(
        "evidence", "export", "--out", str(out), "--previous-checkpoint", str(old), check=True
    )
    result = service.cli(
        "evidence", "verify", str(out), "--key", pub_key(service), "--previous-checkpoint", str(old)
    )
    assert result.returncode == 0, result.stderr


def test_api_bundle_is_for_auditors_only(service: Service) -> None:
    terminate(service, "W0037")
    assert service.get("/v1/evidence/bundle", token="").status_code == 401
    assert service.get("/v1/evidence/bundle", token=service.admin_token).status_code == 403
    response = service.get("/v1/evidence/bundle?worker=W0037", token=service.auditor_token)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(response.content)) as bundle:
        records = [n for n in bundle.namelist() if n.startswith("records/")]
        assert len(records) == 1
        assert b"W0037" in bundle.read(records[0])


def test_auditor_cannot_change_anything(service: Service) -> None:
    spec = service.get("/openapi.json", token="").json()
    for path, methods in spec["paths"].items():
        if "evidence" in path:
            assert set(methods) == {"get"}, path  # no route deletes or rewrites evidence
