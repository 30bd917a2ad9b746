"""Screenshots of the console's main pages for docs/console.md, at 1280 px and 390 px wide.

Starts ``lifecycle serve`` on a throwaway demo-shaped configuration (as the acceptance tests
do), gives it a little history (terminations, one that ends incomplete, an unmapped HR event)
and photographs each page in Debian's Chromium. Run from the repository root:

    uv run python scripts/console_screenshots.py [OUT_DIR]      # default docs/img
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from tests.acceptance.browser import Browser  # noqa: E402
from tests.acceptance.service import Service, config_text  # noqa: E402

INCOMPLETE_WORKER = "W0007"
DESKTOP_ONLY = ("workers", "policy", "hr-inbox", "restore-confirm", "tokens")


def main(out: Path) -> None:
    faults = {"ehr": [{"op": "disable", "worker": INCOMPLETE_WORKER, "mode": "permanent"}]}
    with tempfile.TemporaryDirectory() as tmp:
        svc = Service(Path(tmp), config_text(faults=faults))
        svc.start()
        try:
            run_ids = []
            for worker in ("W0003", "W0004", "W0005", INCOMPLETE_WORKER):
                run_ids.append(svc.send_event(worker).json()["run_id"])
            for run_id in run_ids:
                svc.wait_run(run_id)
            svc.send_event("X9999")  # a termination of nobody in the roster: unmapped
            restore = httpx.post(
                f"{svc.url}/v1/restore",
                json={"worker_id": "W0005", "reason": "terminated by mistake"},
                headers={"Authorization": f"Bearer {svc.admin_token}"},
            )
            restore.raise_for_status()
            second = svc.cli("tokens", "create", "--role", "admin", "--name", "admin-2", check=True)
            shoot(svc, out, run_ids[0], second.stdout.strip().splitlines()[-1])
        finally:
            svc.stop()


def shoot(svc: Service, out: Path, run_id: str, second_admin: str) -> None:
    for width in (1280, 390):
        for role, token in (
            ("admin", svc.admin_token),
            ("second admin", second_admin),
            ("auditor", svc.auditor_token),
        ):
            browser = Browser(svc.url, Path(tempfile.mkdtemp()), width=width)
            try:
                if role == "admin" and width == 1280:
                    browser.open("/console/sign-in")
                    browser.screenshot(out / "console-sign-in-1280.png")
                browser.sign_in(token)
                pages = (
                    {
                        "overview": "/console/overview",
                        "worker": "/console/workers/W0042",
                        "offboard-confirm": "/console/workers/W0042/offboard",
                        "run": f"/console/runs/{run_id}",
                        "hr-inbox": "/console/hr",
                        "policy": "/console/policy",
                        "workers": "/console/workers?q=W001",
                        "restore-confirm": "/console/workers/W0004/restore",
                        "tokens": "/console/tokens",
                    }
                    if role == "admin"
                    else {"approvals": "/console/approvals"}
                    if role == "second admin"
                    else {"evidence": "/console/evidence"}
                )
                for name, path in pages.items():
                    if width == 390 and name in (
                        "workers",
                        "policy",
                        "hr-inbox",
                        "restore-confirm",
                    ):
                        continue
                    browser.open(path)
                    browser.screenshot(out / f"console-{name}-{width}.png")
                if role == "auditor":
                    browser.button("Download bundle").click()
                    bundle = browser.wait(
                        lambda _, b=browser: next(iter(b.downloads.glob("evidence-*.zip")), None)
                    )
                    browser.css("#bundle").send_keys(str(bundle))
                    browser.button("Verify").click()
                    browser.wait(lambda _, b=browser: b.all("#verify-result"))
                    browser.screenshot(out / f"console-evidence-verified-{width}.png")
            finally:
                browser.close()


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "docs" / "img")
