"""report.html in a real headless Chromium (Debian ``chromium`` + ``chromium-driver``, driven by selenium).

Checks what only a browser can: the page loads from file:// without console errors, every
inlined map image decodes (``naturalWidth > 0``), the values table has a row per word, and
the rendered page is not blank. Skipped when chromium, chromedriver or selenium is missing
(``.ci/run`` installs them).
"""

from __future__ import annotations

import io
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from diffpid.report.save import save_explanation

from report_fixtures import synthetic_explanation

CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser") if Path(p).exists()), None)
CHROMEDRIVER = "/usr/bin/chromedriver"

webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install selenium)")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None or not Path(CHROMEDRIVER).exists(),
    reason="chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)",
)


@pytest.fixture(scope="module")
def driver():
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="diffpid-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--window-size=1280,2000", f"--user-data-dir={profile}"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    d = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=opts)
    d.set_page_load_timeout(60)
    try:
        yield d
    finally:
        d.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    expl = synthetic_explanation(prompt='a red cat on the table <i>&</i> "quoted"')
    return expl, save_explanation(expl, tmp_path_factory.mktemp("browser") / "out") / "report.html"


def test_report_renders_in_chromium(driver, report):
    expl, html = report
    driver.get(html.as_uri())
    assert driver.execute_script("return document.readyState") == "complete"
    severe = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    assert not severe, severe

    maps = driver.execute_script(
        "return Array.from(document.querySelectorAll('img.map')).map(i => "
        "[i.dataset.kind, i.dataset.name, i.complete, i.naturalWidth, i.naturalHeight])")
    assert len(maps) == 3 * 3 + 2 * 4
    for kind, name, complete, w, h in maps:
        assert complete and w > 0 and h > 0, (kind, name)
    others = driver.execute_script(
        "return Array.from(document.querySelectorAll('img:not(.map)')).map(i => [i.id || i.className, i.naturalWidth])")
    assert others and all(w > 0 for _, w in others), others

    words = driver.execute_script(
        "return Array.from(document.querySelectorAll('#values tr.word-row')).map(r => r.dataset.word)")
    assert words == list(expl.words)
    prompt = driver.execute_script("return document.getElementById('prompt').textContent")
    assert expl.prompt in prompt  # the escaped prompt reads back as the original text
    assert driver.execute_script("return document.querySelectorAll('i').length") == 0  # no injected markup

    shot = np.asarray(Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB"))
    colours = np.unique(shot.reshape(-1, 3), axis=0)
    assert len(colours) > 50, f"the screenshot has only {len(colours)} colours"
