"""The web console in a real browser (Chromium through Selenium) against ``lifecycle serve``
running as a subprocess: sign-in, an admin's termination watched live, an auditor's bundle
verified offline, and the refusals (role, CSRF)."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.keys import Keys

from tests.acceptance.browser import Browser
from tests.acceptance.service import Service, config_text

pytestmark = pytest.mark.acceptance

SLOW_WORKER = "W0011"
"""Its first two disables in ``idp`` fail transiently with Retry-After 2 s: its termination
cannot finish in under 4 s, so the run page is seen running before it is seen verified."""

REFUSED_ONCE = "W0017"
"""Its first disable in ``ehr`` is refused for good: its termination ends incomplete, and a
retry succeeds."""


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Service]:
    faults = {
        "idp": [{"op": "disable", "worker": SLOW_WORKER, "times": 2, "retry_after": 2}],
        "ehr": [{"op": "disable", "worker": REFUSED_ONCE, "times": 1, "mode": "permanent"}],
    }
    svc = Service(tmp_path_factory.mktemp("console"), config_text(faults=faults))
    svc.start()
    yield svc
    svc.stop()


@pytest.fixture
def browser(service: Service, tmp_path: Path) -> Iterator[Browser]:
    b = Browser(service.url, tmp_path / "downloads")
    yield b
    b.close()


def run_count(service: Service, worker: str) -> int:
    with sqlite3.connect(service.workdir / "lifecycle.db") as db:
        row = db.execute("SELECT count(*) FROM runs WHERE worker_id = ?", (worker,)).fetchone()
        return int(row[0])


def test_an_admin_offboards_a_worker_and_watches_the_run_verify_without_a_reload(
    service: Service, browser: Browser
) -> None:
    browser.sign_in(service.admin_token)
    browser.link("Workers").click()
    browser.css("#q").send_keys(SLOW_WORKER)
    browser.button("Search").click()
    # The unsearched list links the worker too: wait for the search's page before clicking.
    browser.wait(lambda d: f"q={SLOW_WORKER}" in d.current_url, "the search never loaded")
    browser.link(SLOW_WORKER).click()
    browser.wait(lambda _: browser.path == f"/console/workers/{SLOW_WORKER}", "no worker page")
    # Live state, read from each system: the account is on everywhere.
    assert browser.text().count("enabled") >= 3

    browser.link("Offboard").click()
    confirm = browser.shows(f"Offboard Demo Worker {SLOW_WORKER[1:]} ({SLOW_WORKER})?")
    for system in ("idp", "ehr", "phone"):
        assert f"{system}:" in confirm
    browser.css("#reason").send_keys("contract ended")
    browser.button(f"Offboard {SLOW_WORKER} now").click()

    browser.wait(lambda d: "/console/runs/" in d.current_url, "no run page after offboard")
    browser.driver.execute_script("window.__sameDocument = true;")
    first = browser.css("#run-status").get_attribute("data-status")
    assert first in ("pending", "running")
    browser.wait(
        lambda _: browser.css("#run-status").get_attribute("data-status") == "verified",
        "the run page never showed the run verified",
    )
    # The page updated itself: the marker set before is still there (no reload, no navigation).
    assert browser.driver.execute_script("return window.__sameDocument === true;")
    text = browser.text()
    assert "verified" in text
    # The retried disable shows its attempts in the per-system timeline.
    idp = next(s for s in browser.all("section.system") if s.text.startswith("idp"))
    assert "attempts: 3" in idp.text
    assert "read back:" in idp.text
    assert service.account("idp", SLOW_WORKER)["enabled"] is False


def test_a_form_without_its_csrf_token_is_refused(service: Service, browser: Browser) -> None:
    browser.sign_in(service.admin_token)
    before = run_count(service, "W0012")
    answer = browser.fetch("POST", "/console/workers/W0012/offboard", {"reason": "forged"})
    assert answer["status"] == 403
    assert "CSRF" in answer["body"]
    wrong = browser.fetch(
        "POST", "/console/workers/W0012/offboard", {"reason": "forged", "csrf_token": "guess"}
    )
    assert wrong["status"] == 403
    assert run_count(service, "W0012") == before
    assert service.account("idp", "W0012")["enabled"] is True


def test_an_auditor_sees_no_action_and_a_forged_post_is_refused(
    service: Service, browser: Browser
) -> None:
    browser.sign_in(service.auditor_token)
    nav = browser.css("header nav").text
    assert "HR inbox" not in nav  # admin-only, as GET /v1/hr/events
    browser.open("/console/workers/W0013")
    assert "Accounts per system" in browser.text()
    assert not browser.all("a[href$='/offboard']")
    assert "Actions" not in browser.text()
    # The auditor's own session and CSRF token, on a form they were never shown.
    csrf = browser.css("form.who input[name=csrf_token]").get_attribute("value")
    assert csrf
    forged = browser.fetch(
        "POST", "/console/workers/W0013/offboard", {"reason": "forged", "csrf_token": csrf}
    )
    assert forged["status"] == 403
    assert "needs admin" in forged["body"]
    assert run_count(service, "W0013") == 0
    assert service.account("idp", "W0013")["enabled"] is True
    browser.open("/console/workers/W0013/offboard")
    assert "needs admin" in browser.text()
    browser.open("/console/hr")
    assert "needs admin" in browser.text()


def test_an_auditor_downloads_a_bundle_that_verifies_offline_and_in_the_console(
    service: Service, browser: Browser, tmp_path: Path
) -> None:
    reply = service.send_event("W0014")
    assert reply.status_code == 202
    assert service.wait_run(reply.json()["run_id"])["status"] == "verified"

    browser.sign_in(service.auditor_token)
    browser.link("Evidence").click()
    browser.shows("Latest signed checkpoint")
    browser.button("Download bundle").click()
    bundle = browser.wait(
        lambda _: next(iter(browser.downloads.glob("evidence-*.zip")), None),
        "no bundle was downloaded",
    )
    result = service.cli(
        "evidence",
        "verify",
        str(bundle),
        "--key",
        str(service.workdir / "keys" / "evidence.ed25519.pub"),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "OK:" in result.stdout

    # The same bundle, uploaded to the console's verifier.
    browser.css("#bundle").send_keys(str(bundle))
    browser.button("Verify").click()
    browser.wait(lambda _: browser.all("#verify-result"), "no verification result")
    assert "Verified" in browser.css("#verify-result").text

    # A tampered copy fails, and says so.
    tampered = tmp_path / "tampered.zip"
    data = bytearray(bundle.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tampered.write_bytes(bytes(data))
    browser.css("#bundle").send_keys(str(tampered))
    browser.button("Verify").click()
    browser.wait(lambda _: "FAILED" in browser.css("#verify-result").text, "tampering not reported")


def test_an_admin_gets_no_bundle_download(service: Service, browser: Browser) -> None:
    browser.sign_in(service.admin_token)
    browser.open("/console/evidence")
    assert not browser.all("form[action='/console/evidence/bundle']")
    browser.open("/console/evidence/bundle")
    assert "needs auditor" in browser.text()


def test_sign_in_with_a_wrong_token_fails_and_sign_out_ends_the_session(
    service: Service, browser: Browser
) -> None:
    browser.open("/console/sign-in")
    browser.css("#token").send_keys("lct_not-a-token")
    browser.button("Sign in").click()
    browser.shows("unknown, revoked or expired")

    browser.sign_in(service.admin_token)
    cookie = browser.driver.get_cookie("lifecycle_session")
    assert cookie is not None
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert cookie["secure"] is False  # plain http here; https gets Secure (tests/console)
    assert service.admin_token not in cookie["value"]
    browser.button("Sign out").click()
    browser.wait(lambda d: d.current_url.endswith("/console/sign-in"), "no sign-in page")
    # The old cookie is dead on the server, not only forgotten by this browser.
    stale = httpx.get(
        f"{service.url}/console/overview",
        cookies={"lifecycle_session": cookie["value"]},
        follow_redirects=False,
    )
    assert stale.status_code == 303
    assert stale.headers["location"] == "/console/sign-in"


def test_the_console_and_docs_load_nothing_from_another_host(
    service: Service, browser: Browser
) -> None:
    browser.sign_in(service.admin_token)
    external = re.compile(r"""(?:src|href|action)\s*=\s*["']?(?:https?:)?//""", re.I)
    for path in (
        "/console/overview",
        "/console/workers",
        "/console/workers/W0001",
        "/console/runs",
        "/console/hr",
        "/console/policy",
        "/console/evidence",
    ):
        browser.open(path)
        html = browser.driver.page_source
        assert not external.search(html), path
    docs = httpx.get(f"{service.url}/docs")
    assert docs.status_code == 200
    assert not re.search(r"https?://", docs.text), docs.text
    assets = re.findall(r"""(?:src|href)=["'](/[^"']+)["']""", docs.text)
    assert any(a.endswith(".js") for a in assets)
    assert any(a.endswith(".css") for a in assets)
    for asset in assets:
        assert httpx.get(service.url + asset).status_code == 200, asset
    # Swagger UI renders the API from the packaged assets alone.
    browser.open("/docs")
    browser.wait(lambda _: browser.all(".swagger-ui .info .title"), "Swagger UI did not render")
    assert "lifecycle" in browser.css(".swagger-ui .info .title").text
    assert browser.all(".opblock")


def test_an_admin_can_do_it_all_from_the_keyboard(service: Service, browser: Browser) -> None:
    browser.open("/console/sign-in")
    active = browser.driver.switch_to.active_element
    assert active.get_attribute("id") == "token"  # focused on arrival
    active.send_keys(service.admin_token + Keys.ENTER)
    browser.wait(lambda d: "/console/overview" in d.current_url, "no overview after Enter")

    browser.open("/console/workers/W0015")
    body = browser.css("body")
    body.send_keys(Keys.TAB)
    first = browser.driver.switch_to.active_element
    assert first.text == "Skip to content"
    assert first.value_of_css_property("outline-style") != "none"  # focus is visible
    for _ in range(40):
        ActionChains(browser.driver).send_keys(Keys.TAB).perform()
        if browser.driver.switch_to.active_element.text.startswith("Offboard"):
            break
    else:
        raise AssertionError("the Offboard action is not reachable with Tab")
    ActionChains(browser.driver).send_keys(Keys.ENTER).perform()
    browser.wait(lambda d: d.current_url.endswith("/W0015/offboard"), "no confirmation page")
    for _ in range(40):
        ActionChains(browser.driver).send_keys(Keys.TAB).perform()
        if browser.driver.switch_to.active_element.get_attribute("id") == "reason":
            break
    else:
        raise AssertionError("the reason field is not reachable with Tab")
    ActionChains(browser.driver).send_keys("keyboard only", Keys.ENTER).perform()
    browser.wait(lambda d: "/console/runs/" in d.current_url, "the form did not submit")
    browser.wait(
        lambda _: browser.css("#run-status").get_attribute("data-status") == "verified",
        "the run never showed verified",
    )


def test_a_restore_requested_by_one_admin_is_approved_by_another(
    service: Service, browser: Browser, tmp_path: Path
) -> None:
    worker = "W0016"
    groups = sorted(service.account("idp", worker)["groups"])
    assert groups
    reply = service.send_event(worker)
    assert service.wait_run(reply.json()["run_id"])["status"] == "verified"
    assert service.account("idp", worker)["groups"] == []

    browser.sign_in(service.admin_token)
    browser.open(f"/console/workers/{worker}")
    browser.link("Restore").click()
    confirm = browser.shows(f"Restore Demo Worker {worker[1:]} ({worker})?")
    assert f"give back {', '.join(groups)}" in confirm
    assert "Another admin must approve" in confirm
    browser.css("#reason").send_keys("terminated by mistake")
    browser.button(f"Request restore of {worker}").click()
    browser.wait(lambda d: "/console/runs/" in d.current_url, "no run page after the request")
    run_path = browser.path
    run_id = run_path.rsplit("/", 1)[-1]
    assert browser.css("#run-status").get_attribute("data-status") == "awaiting_approval"
    browser.driver.execute_script("window.__sameDocument = true;")

    # The requester cannot approve: no button for them, and the server refuses a forged post.
    mine = Browser(service.url, tmp_path / "mine")
    try:
        mine.sign_in(service.admin_token)
        mine.link("Approvals").click()
        card = mine.wait(
            lambda _: next((c for c in mine.all("section.approval") if run_id in c.text), None),
            "no approval card",
        )
        assert "You requested this" in card.text
        assert not card.find_elements("css selector", f"form[action$='{run_id}/approve']")
        csrf = mine.css("form.who input[name=csrf_token]").get_attribute("value")
        forged = mine.fetch("POST", f"/console/approvals/{run_id}/approve", {"csrf_token": csrf})
        assert forged["status"] == 403
        assert "another admin must" in forged["body"]
    finally:
        mine.close()
    assert service.account("idp", worker)["enabled"] is False

    second_token = (
        service.cli("tokens", "create", "--role", "admin", "--name", "admin-2", check=True)
        .stdout.strip()
        .splitlines()[-1]
    )
    second = Browser(service.url, tmp_path / "second")
    try:
        second.sign_in(second_token)
        second.link("Approvals").click()
        card = second.wait(
            lambda _: next((c for c in second.all("section.approval") if run_id in c.text), None),
            "no approval card",
        )
        assert "admin:admin-1" in card.text
        card.find_element("css selector", "input[name=reason]").send_keys("confirmed with HR")
        card.find_element("css selector", f"form[action$='{run_id}/approve'] button").click()
        second.wait(lambda d: d.current_url.endswith(run_path), "no run page after approval")
        second.wait(
            lambda _: second.css("#run-status").get_attribute("data-status") == "verified",
            "the approved restore never showed verified",
        )
        assert "by admin:admin-2" in second.text()
    finally:
        second.close()

    # The requester's page followed along by itself.
    browser.wait(
        lambda _: browser.css("#run-status").get_attribute("data-status") == "verified",
        "the requester's run page never showed the restore verified",
    )
    assert browser.driver.execute_script("return window.__sameDocument === true;")
    account = service.account("idp", worker)
    assert account["enabled"] is True
    assert sorted(account["groups"]) == groups


def test_an_admin_retries_an_incomplete_run_and_cancels_a_future_one(
    service: Service, browser: Browser, tmp_path: Path
) -> None:
    first = service.send_event(REFUSED_ONCE).json()["run_id"]
    assert service.wait_run(first)["status"] == "incomplete"
    later = datetime.now(UTC) + timedelta(days=3)
    future = service.send_event("W0018", effective_at=later).json()["run_id"]

    auditor = Browser(service.url, tmp_path / "auditor")
    try:
        auditor.sign_in(service.auditor_token)
        for run_id in (first, future):
            auditor.open(f"/console/runs/{run_id}")
            assert not auditor.all("form[action$='/retry'], form[action$='/cancel']")
        csrf = auditor.css("form.who input[name=csrf_token]").get_attribute("value")
        forged = auditor.fetch(
            "POST", f"/console/runs/{first}/retry", {"csrf_token": csrf, "reason": "x"}
        )
        assert forged["status"] == 403
    finally:
        auditor.close()

    browser.sign_in(service.admin_token)
    browser.open("/console/overview")
    attention = browser.css("#overview-live").text
    assert first[:8] in attention  # the incomplete run needs attention
    browser.link(first[:8]).click()
    ehr = browser.wait(
        lambda _: next(
            (s for s in browser.all("section.system") if s.text.startswith("ehr")), None
        ),
        "no run page",
    )
    assert "injected permanent fault" in ehr.text
    browser.css("#retry-reason").send_keys("the EHR was fixed")
    browser.button("Retry this run").click()
    browser.wait(lambda d: first not in d.current_url, "no new run page after retry")
    browser.wait(
        lambda _: browser.css("#run-status").get_attribute("data-status") == "verified",
        "the retry never showed verified",
    )
    retries = browser.css(f"#run-live a[href='/console/runs/{first}']")  # "Retries" links back
    assert retries.text == first[:8]
    assert service.account("ehr", REFUSED_ONCE)["enabled"] is False

    browser.open(f"/console/runs/{future}")
    assert browser.css("#run-status").get_attribute("data-status") == "pending"
    browser.css("#cancel-reason").send_keys("the engagement was extended")
    browser.button("Cancel this run").click()
    browser.wait(
        lambda _: browser.css("#run-status").get_attribute("data-status") == "cancelled",
        "the future termination was not cancelled",
    )
    assert "the engagement was extended" in browser.text()
    assert service.account("idp", "W0018")["enabled"] is True


def test_revoking_a_token_on_the_tokens_page_ends_its_console_session(
    service: Service, browser: Browser, tmp_path: Path
) -> None:
    doomed = (
        service.cli("tokens", "create", "--role", "auditor", "--name", "auditor-3", check=True)
        .stdout.strip()
        .splitlines()[-1]
    )
    auditor = Browser(service.url, tmp_path / "auditor")
    try:
        auditor.sign_in(doomed)
        assert "Tokens" not in auditor.css("header nav").text
        auditor.open("/console/tokens")
        assert "needs admin" in auditor.text()

        browser.sign_in(service.admin_token)
        browser.link("Tokens").click()
        browser.shows("auditor-3")
        assert doomed not in browser.driver.page_source
        browser.css("button[aria-label='Revoke token auditor-3']").click()
        # The answer is the tokens page again: wait for the new one, not the page clicked on.
        browser.wait(
            lambda _: any(
                r.text.startswith("auditor-3") and "revoked" in r.text
                for r in browser.all("tbody tr")
            ),
            "the token is not shown revoked",
        )

        auditor.open("/console/overview")
        assert auditor.path == "/console/sign-in"
    finally:
        auditor.close()
    assert service.get("/v1/runs", token=doomed).status_code == 401
