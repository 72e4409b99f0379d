"""The report and the explorer in a real browser (headless Chromium through selenium).

- the report renders at 800 and 1,600 px without horizontal overflow or console errors;
- every word's raw heat map on the page, decoded from its PNG data URI and read back through the
  colour map, equals the map saved in ``maps.npz`` (on both colour scales; the switch works);
- the word selector, the quantity toggles and the hover readout work;
- the explorer: type a prompt, run the embedded model with few samples, wait for the maps, switch
  a word, and see input errors (an unknown word, a word not in the prompt, an unreadable image) in the page.

Skipped when chromium, chromium-driver or selenium are missing.
"""

from __future__ import annotations

import base64
import io
import shutil
import tempfile
import threading
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
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic",
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


def _viewport(driver, width: int) -> None:
    """Make the page's viewport ``width`` CSS pixels wide (the window adds its frame)."""
    driver.set_window_size(width, 1400)
    inner = driver.execute_script("return window.innerWidth")
    driver.set_window_size(2 * width - inner, 1400)
    assert driver.execute_script("return window.innerWidth") == width


def _severe(driver) -> list:
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


@pytest.mark.parametrize("width", [800, 1600])
def test_report_renders_without_overflow_or_errors(driver, report, width):
    expl, html = report
    _viewport(driver, width)
    driver.get(html.as_uri())
    assert driver.execute_script("return document.readyState") == "complete"
    assert not _severe(driver)
    page = driver.execute_script("return [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
    assert page[0] <= page[1], f"horizontal overflow at {width} px: {page}"
    # no table is cut off inside its scroll box, no figure sticks out of the page
    clipped = driver.execute_script(
        "return Array.from(document.querySelectorAll('.scroll')).filter(s => s.scrollWidth > s.clientWidth + 1)"
        ".map(s => s.firstElementChild.id)")
    assert not clipped, f"tables wider than the page at {width} px: {clipped}"
    outside = driver.execute_script(
        "return Array.from(document.querySelectorAll('figure, table, p, h2')).filter(e => "
        "e.getBoundingClientRect().right > window.innerWidth + 1).map(e => e.tagName + '#' + e.id)")
    assert not outside, outside
    maps = driver.execute_script(
        "return Array.from(document.querySelectorAll('img')).map(i => [i.className, i.complete, i.naturalWidth])")
    assert maps and all(complete and w > 0 for _, complete, w in maps), maps
    words = driver.execute_script(
        "return Array.from(document.querySelectorAll('#values tr.word-row')).map(r => r.dataset.word)")
    assert words == list(expl.words)
    prompt = driver.execute_script("return document.getElementById('prompt').textContent")
    assert expl.prompt in prompt  # the escaped prompt reads back as the original text
    assert driver.execute_script("return document.querySelectorAll('i').length") == 0  # no injected markup
    shot = np.asarray(Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB"))
    assert len(np.unique(shot.reshape(-1, 3), axis=0)) > 50


def _decode(uri: str) -> np.ndarray:
    assert uri.startswith("data:image/png;base64,")
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB"), dtype=float)


def _read_back(rgb: np.ndarray, colormap: str, vmin: float, vmax: float) -> np.ndarray:
    """Values of a heat map's pixels: the nearest of 1,024 colours of the colour map, on [vmin, vmax]."""
    from matplotlib import colormaps

    t = np.linspace(0, 1, 1024)
    lut = colormaps[colormap](t)[:, :3] * 255
    nearest = np.argmin(((rgb.reshape(-1, 1, 3) - lut[None]) ** 2).sum(-1), axis=1)
    return (vmin + t[nearest] * (vmax - vmin)).reshape(rgb.shape[:2])


def _raw_maps(driver) -> list[dict]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('img.map.raw')).map(i => {const f = i.closest('figure');"
        "const m = f.dataset.scale; return {key: i.dataset.key, src: i.src, scale: m, name: i.dataset.name,"
        "vmin: parseFloat(f.getAttribute('data-' + m + '-vmin')), vmax: parseFloat(f.getAttribute('data-' + m + '-vmax')),"
        "lo: f.querySelector('.lo').textContent, hi: f.querySelector('.hi').textContent};})")


def _check_maps_match_npz(maps: list[dict], npz: dict, scale: str) -> int:
    checked = 0
    for m in maps:
        assert m["scale"] == scale
        values = npz[m["key"]]
        kind = m["key"].split("/")[0]
        colormap = "PuOr_r" if m["vmin"] < 0 else ("viridis" if kind == "attention" else "inferno")
        got = _read_back(_decode(m["src"]), colormap, m["vmin"], m["vmax"])
        want = np.clip(values, m["vmin"], m["vmax"])
        assert got.shape == values.shape, m["key"]
        assert np.corrcoef(got.ravel(), want.ravel())[0, 1] > 0.99, m["key"]
        assert np.abs(got - want).max() <= 0.02 * (m["vmax"] - m["vmin"]), m["key"]
        checked += 1
    return checked


def test_raw_heat_maps_on_the_page_are_the_saved_maps(driver, report):
    expl, html = report
    _viewport(driver, 1600)
    driver.get(html.as_uri())
    with np.load(html.parent / "maps.npz") as z:
        npz = {k: z[k] for k in z.files}
    maps = _raw_maps(driver)
    words = {m["name"] for m in maps if m["key"].startswith(("mi/", "cmi/"))}
    assert words == set(expl.words)
    assert _check_maps_match_npz(maps, npz, "own") == 3 * 3 + 2 * 4
    # switch to the shared scale: every picture and limit changes in place, nothing is recomputed
    driver.find_element("css selector", "input[name=scale][value=shared]").click()
    shared = _raw_maps(driver)
    assert _check_maps_match_npz(shared, npz, "shared") == len(maps)
    mi = [m for m in shared if m["key"].startswith("mi/")]
    assert len({m["vmax"] for m in mi}) == 1  # one top for the MI maps
    assert {m["hi"] for m in mi} != {m["hi"] for m in maps if m["key"].startswith("mi/")}
    driver.find_element("css selector", "input[name=scale][value=own]").click()
    assert [m["src"] for m in _raw_maps(driver)] == [m["src"] for m in maps]
    assert not _severe(driver)


def test_word_selector_toggles_and_hover_readout(driver, report):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.support.ui import Select

    expl, html = report
    _viewport(driver, 1600)
    driver.get(html.as_uri())
    Select(driver.find_element("css selector", "select.word-select")).select_by_value("cat")
    visible = driver.execute_script("return Array.from(document.querySelectorAll('.maprow[data-word]'))"
                                    ".filter(r => r.offsetParent !== null).map(r => r.dataset.word)")
    assert visible == ["cat"]
    driver.find_element("css selector", "input.kind-toggle[value=mi]").click()
    shown = driver.execute_script("return Array.from(document.querySelectorAll('.maprow[data-word=cat] figure.mapfig'))"
                                  ".filter(f => f.offsetParent !== null).map(f => f.dataset.kind)")
    assert shown == ["cmi", "attention"]
    # hover the raw CMI(cat) map over map pixel (row 2, column 5): the readout gives its value
    img = driver.find_element("css selector", "img.map.raw[data-key='cmi/cat']")
    w, h = img.size["width"], img.size["height"]
    ActionChains(driver).move_to_element_with_offset(img, int((5.5 / 8 - 0.5) * w), int((2.5 / 8 - 0.5) * h)).perform()
    text = driver.find_element("css selector", ".readout").text
    value = expl.cmi["cat"].pixel_map[2, 5]
    assert text.startswith("CMI(cat) at map pixel (2, 5): ") and text.endswith(" nats")
    assert float(text.split(": ")[1].split()[0]) == pytest.approx(value, rel=2e-3)
    assert not _severe(driver)


# ----- the explorer ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def explorer_url(tmp_path_factory):
    from diffpid.shapes.model import load_shapes_model
    from diffpid.report.jobs import Explorer
    from diffpid.report.serve import start
    from diffpid.settings import Settings

    explorer = Explorer(load_shapes_model(device="cpu"), Settings(samples=2, threads=1),
                        tmp_path_factory.mktemp("explorer"))
    srv = start(explorer, "127.0.0.1", 0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/"
    finally:
        srv.shutdown()
        srv.server_close()


def _fill(driver, field: str, text: str) -> None:
    el = driver.find_element("id", field)
    el.clear()
    el.send_keys(text)


def _error_text(driver, timeout: float = 60) -> str:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(lambda d: d.find_element("id", "error").is_displayed())
    return driver.find_element("id", "error").text


def test_explorer_runs_switches_words_and_shows_input_errors(driver, explorer_url, tmp_path):
    from selenium.webdriver.support.ui import Select, WebDriverWait

    _viewport(driver, 1280)
    driver.get(explorer_url)
    assert driver.find_element("id", "model").text == "shapes"
    _fill(driver, "prompt", "a red circle above a blue box")
    _fill(driver, "words", "red circle blue")
    _fill(driver, "pair", "red blue")
    _fill(driver, "samples", "2")
    driver.find_element("id", "run").click()
    WebDriverWait(driver, 30).until(lambda d: d.find_element("id", "stage").text)  # progress is shown
    WebDriverWait(driver, 600).until(lambda d: d.find_element("id", "report").is_displayed()
                                     or d.find_element("id", "error").is_displayed())
    assert not driver.find_element("id", "error").is_displayed(), driver.find_element("id", "error").text
    href = driver.find_element("id", "download").get_attribute("href")
    assert href.endswith("/report.zip")
    driver.switch_to.frame(driver.find_element("id", "report"))
    WebDriverWait(driver, 30).until(lambda d: d.find_elements("css selector", "img.map.raw"))
    rows = driver.execute_script("return Array.from(document.querySelectorAll('.maprow[data-word]'))"
                                 ".map(r => r.dataset.word)")
    assert sorted(rows) == ["blue", "circle", "red"]
    assert all(driver.execute_script("return Array.from(document.querySelectorAll('img.map.raw'))"
                                     ".map(i => i.complete && i.naturalWidth > 0)"))
    Select(driver.find_element("css selector", "select.word-select")).select_by_value("blue")
    visible = driver.execute_script("return Array.from(document.querySelectorAll('.maprow[data-word]'))"
                                    ".filter(r => r.offsetParent !== null).map(r => r.dataset.word)")
    assert visible == ["blue"]
    driver.switch_to.default_content()

    # input errors are answered in the page
    _fill(driver, "prompt", "a red dragon")
    _fill(driver, "words", "")
    _fill(driver, "pair", "")
    driver.find_element("id", "run").click()
    assert "words outside the vocabulary of shapes: dragon" in _error_text(driver)
    assert not driver.find_element("id", "report").is_displayed()
    _fill(driver, "prompt", "a red circle")
    _fill(driver, "words", "green")
    driver.find_element("id", "run").click()
    assert "'green' is not a word of the prompt" in _error_text(driver)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"this is not an image")
    _fill(driver, "words", "")
    driver.find_element("id", "image").send_keys(str(bad))
    driver.find_element("id", "run").click()
    assert "cannot read the uploaded image" in _error_text(driver)
    assert "Traceback" not in driver.page_source
    # the only console errors are the browser's notes of the API's 400 answers to the bad input
    others = [e for e in _severe(driver) if not (e.get("source") == "network" and "/api/explain" in e["message"]
                                                 and "400" in e["message"])]
    assert not others, others
