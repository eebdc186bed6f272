"""The app in a real browser: headless Debian Chromium through selenium opens the page,
picks an example, moves the quality slider, waits for the outputs and saves a screenshot.

Runs on small copies of the shipped example photos (--examples) to stay fast on a CPU.
Skipped only when chromium or chromedriver is not installed (`make install` installs them).
"""
from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path

import pytest
from PIL import Image

from test_app import AppServer  # the subprocess server of the gradio_client tests

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.action_chains import ActionChains  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = "/usr/bin/chromedriver" if Path("/usr/bin/chromedriver").is_file() else shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="chromium and chromedriver are not installed (apt-get install chromium chromium-driver)")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    examples = tmp_path_factory.mktemp("examples")
    for name in ("budgerigar-portrait.jpg", "kitten.jpg"):
        with Image.open(ROOT / "assets" / "examples" / name) as image:
            image.thumbnail((192, 192))
            image.save(examples / name, quality=90)
    app = AppServer(tmp_path_factory.mktemp("app") / "app.log", "--examples", str(examples), "--threads", "1")
    yield app
    app.stop()


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="samic-chromium-")
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--no-first-run", f"--user-data-dir={profile}", "--window-size=1400,2400"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def text_of(driver, elem_id: str) -> str:
    return driver.find_element(By.ID, elem_id).text


def rate_shown(driver) -> float | None:
    """The bpp value in the metrics table, once it is there."""
    match = re.search(r"rate\s+([0-9.]+)\s+bpp", text_of(driver, "metrics"))
    return float(match.group(1)) if match else None


def test_pick_example_move_slider_screenshot(server, browser, tmp_path):
    browser.get(server.url)
    wait = WebDriverWait(browser, 150, poll_frequency=0.5)
    thumbnails = wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#examples button img"))
    thumbnails[0].click()  # budgerigar-portrait
    wait.until(lambda d: "budgerigar-portrait.jpg" in text_of(d, "info") and rate_shown(d) is not None)
    assert "quality 0.50" in text_of(browser, "info")
    first_rate = rate_shown(browser)

    # drag the slider to the left: the app recomputes on release only
    slider = browser.find_element(By.CSS_SELECTOR, "#quality input[type=range]")
    ActionChains(browser).click_and_hold(slider).move_by_offset(-slider.size["width"] // 3, 0).release().perform()
    wait.until(lambda d: re.search(r"quality 0\.[0-4]\d", text_of(d, "info")))
    wait.until(lambda d: rate_shown(d) is not None and rate_shown(d) < first_rate)
    # every panel filled: the comparison slider's images and the plotly charts (RD curve last)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#compare img")) >= 2)
    wait.until(lambda d: all(d.find_elements(By.CSS_SELECTOR, f"#{plot} .js-plotly-plot")
                             for plot in ("scan-path", "spectrum", "rd-plot")))
    path = tmp_path / "app.png"
    assert browser.save_screenshot(str(path))
    with Image.open(path) as image:
        assert image.width >= 1000
    print(f"screenshot: {path}")
