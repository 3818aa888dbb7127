"""A real browser for the dashboard's tests and `make screenshots`: Debian's Chromium, headless,
driven through Debian's chromium-driver with Selenium; and the web app served on 127.0.0.1
by the same server the daemon uses."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.support.ui import WebDriverWait

from tests.web.serving import serve_web  # noqa: F401  (the browser tests' server)

CHROMIUM = "/usr/bin/chromium"
DRIVER = "/usr/bin/chromedriver"
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = Path(os.environ.get("WEB_SCREENSHOTS_DIR", ROOT / "test-artifacts" / "screenshots"))


def browser_missing() -> str | None:
    for path, package in ((CHROMIUM, "chromium"), (DRIVER, "chromium-driver")):
        if shutil.which(path) is None:
            return f"{path} is missing: install Debian's {package} (`make system-deps`)"
    return None


@contextmanager
def chromium(width: int = 1280, height: int = 900) -> Iterator[webdriver.Chrome]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # containers and root: Chromium's sandbox needs namespaces
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=Service(DRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def sign_in(driver: webdriver.Chrome, base: str, token: str) -> None:
    driver.get(base + "/login")
    driver.find_element("id", "token").send_keys(token)
    driver.find_element("id", "sign-in").click()
    WebDriverWait(driver, 10).until(lambda d: "/login" not in d.current_url)


def wait_until(
    driver: webdriver.Chrome, check: Callable[[webdriver.Chrome], object], timeout: float = 30.0
) -> object:
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(check)


def screenshot(driver: webdriver.Chrome, name: str, folder: Path = SCREENSHOTS) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    # The whole page, not the window: as tall as its content.
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1280, max(int(height), 600))
    driver.save_screenshot(str(path))
    driver.set_window_size(1280, 900)
    return path
