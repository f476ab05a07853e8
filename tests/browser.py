"""Debian's Chromium and its driver for the browser tests, installed when missing, and a headless
Selenium driver on them. A failed install fails the tests that need it, with apt's words."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
PACKAGES = ("chromium", "chromium-driver")


class BrowserUnavailable(RuntimeError):
    pass


def ensure_chromium() -> tuple[Path, Path]:
    """The browser and driver paths; runs ``apt-get update`` and ``apt-get install`` (as root) first
    when either is missing."""
    if CHROMIUM.exists() and CHROMEDRIVER.exists():
        return CHROMIUM, CHROMEDRIVER
    if os.geteuid() != 0:
        raise BrowserUnavailable(f"{CHROMIUM} or {CHROMEDRIVER} is missing and installing {PACKAGES} needs root "
                                 f"(run: sudo apt-get update && sudo apt-get install -y {' '.join(PACKAGES)})")
    environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", *PACKAGES]):
        result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=900)
        if result.returncode != 0:
            raise BrowserUnavailable(f"`{' '.join(command)}` failed ({result.returncode}):\n"
                                     f"{(result.stderr or result.stdout)[-2000:]}")
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        raise BrowserUnavailable(f"installed {PACKAGES} but {CHROMIUM} / {CHROMEDRIVER} are still missing")
    return CHROMIUM, CHROMEDRIVER


def headless_chrome(chromium: Path, chromedriver: Path, *, width: int = 1400, height: int = 1000):
    """A fresh headless Chromium (its own profile directory, removed on quit)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="workbench-chrome-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(chromium)
    for argument in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--no-first-run",
                     "--disable-dev-shm-usage", f"--user-data-dir={profile}", f"--window-size={width},{height}",
                     "--lang=id"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(str(chromedriver)), options=options)
    original_quit = driver.quit

    def quit_and_clean():
        try:
            original_quit()
        finally:
            shutil.rmtree(profile, ignore_errors=True)
    driver.quit = quit_and_clean
    return driver
