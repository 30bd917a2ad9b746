"""A real browser for the console tests: Debian's Chromium driven through chromedriver by
Selenium. Installed by ``scripts/install-test-servers.sh``; a missing browser is a failure,
never a skip (as for every other real server the tests use)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import (
    NoSuchElementException,
    StaleElementReferenceException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service as DriverService
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = ("/usr/bin/chromium", "chromium")
CHROMEDRIVER = ("/usr/bin/chromedriver", "chromedriver")
WAIT_SECONDS = 30
"""How long a wait for the page to reach a state may take before the test fails: a bound on a
hang, not a performance assertion."""


def _find(candidates: tuple[str, ...]) -> str | None:
    for name in candidates:
        if Path(name).is_file() or shutil.which(name):
            return shutil.which(name) or name
    return None


def require_chromium() -> tuple[str, str]:
    browser, driver = _find(CHROMIUM), _find(CHROMEDRIVER)
    if browser is None or driver is None:
        raise AssertionError(
            "the console tests need Debian's chromium and chromium-driver "
            "(scripts/install-test-servers.sh installs them as root)"
        )
    return browser, driver


class Browser:
    """One Chromium with its own profile (cookies), at a given window width."""

    def __init__(self, base_url: str, downloads: Path, width: int = 1280, height: int = 900):
        binary, driver = require_chromium()
        options = webdriver.ChromeOptions()
        options.binary_location = binary
        for arg in (
            "--headless=new",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            f"--window-size={width},{height}",
        ):
            options.add_argument(arg)
        downloads.mkdir(parents=True, exist_ok=True)
        options.add_experimental_option(
            "prefs",
            {
                "download.default_directory": str(downloads),
                "download.prompt_for_download": False,
                "safebrowsing.enabled": False,
            },
        )
        self.driver = webdriver.Chrome(options=options, service=DriverService(driver))
        self.driver.execute_cdp_cmd(
            "Browser.setDownloadBehavior",
            {"behavior": "allow", "downloadPath": str(downloads)},
        )
        self.base_url = base_url
        self.downloads = downloads
        self.width, self.height = width, height
        self.mobile = width < 600
        if self.mobile:  # a desktop window cannot be that narrow: emulate a phone's viewport
            self._metrics(height)

    def _metrics(self, height: int) -> None:
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {
                "width": self.width,
                "height": height,
                "deviceScaleFactor": 1,
                "mobile": self.mobile,
            },
        )

    def close(self) -> None:
        self.driver.quit()

    def open(self, path: str) -> None:
        self.driver.get(self.base_url + path)

    @property
    def path(self) -> str:
        url: str = self.driver.current_url
        return url.removeprefix(self.base_url)

    def css(self, selector: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, selector)

    def all(self, selector: str) -> list[WebElement]:
        return list(self.driver.find_elements(By.CSS_SELECTOR, selector))

    def link(self, text: str) -> WebElement:
        return self.driver.find_element(By.PARTIAL_LINK_TEXT, text)

    def button(self, text: str) -> WebElement:
        return self.driver.find_element(
            By.XPATH, f"//button[contains(normalize-space(.), {_xpath_literal(text)})]"
        )

    def wait(self, condition: Callable[[Any], Any], message: str = "") -> Any:
        # A page being replaced (a form posted, a fragment swapped) leaves stale elements;
        # Chromium sometimes reports one as a node that "does not belong to the document".
        def settled(driver: Any) -> Any:
            try:
                return condition(driver)
            except WebDriverException as exc:
                if "does not belong to the document" in (exc.msg or ""):
                    return False
                raise

        return WebDriverWait(
            self.driver,
            WAIT_SECONDS,
            poll_frequency=0.2,
            ignored_exceptions=(NoSuchElementException, StaleElementReferenceException),
        ).until(settled, message)

    def text(self) -> str:
        """The page's text (read again if the page was replaced while it was being read)."""
        body: str = self.wait(lambda d: d.find_element(By.CSS_SELECTOR, "body").text, "no page")
        return body

    def shows(self, text: str) -> str:
        """The page's text once it contains ``text``: after a click that posts a form or
        follows a link, the old page can still be there for a moment."""

        def shown(driver: Any) -> str | None:
            body: str = driver.find_element(By.CSS_SELECTOR, "body").text
            return body if text in body else None

        found: str = self.wait(shown, f"the page never showed {text!r}")
        return found

    def sign_in(self, token: str) -> None:
        self.open("/console/sign-in")
        self.css("#token").send_keys(token)
        self.button("Sign in").click()
        self.wait(lambda d: "/console/overview" in d.current_url, "sign-in did not land")

    def fetch(self, method: str, path: str, form: dict[str, str]) -> dict[str, Any]:
        """Send a form from inside the page (the session cookie goes along): status and body."""
        result: dict[str, Any] = self.driver.execute_async_script(
            """
            const [method, path, form, done] = arguments;
            fetch(path, {method, body: new URLSearchParams(form), redirect: "manual",
                         credentials: "same-origin"})
              .then(async r => done({status: r.status, body: await r.text()}))
              .catch(e => done({status: -1, body: String(e)}));
            """,
            method,
            path,
            form,
        )
        return result

    def screenshot(self, path: Path) -> None:
        """The whole page (not only the window) as a PNG."""
        height = self.driver.execute_script(
            "return Math.max(document.body.scrollHeight, document.documentElement.scrollHeight)"
        )
        self._metrics(max(int(height), self.height))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.driver.save_screenshot(str(path))
        finally:
            if self.mobile:
                self._metrics(self.height)
            else:
                self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


def _xpath_literal(text: str) -> str:
    if '"' not in text:
        return f'"{text}"'
    return "concat(" + ", '\"', ".join(f'"{p}"' for p in text.split('"')) + ")"
