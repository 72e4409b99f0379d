"""``diffpid serve``: request checks, the HTTP API, progress, the report and its zip, on the embedded model.

The browser side (typing, running, switching words, errors in the page) is in test_report_browser.py.
"""

from __future__ import annotations

import base64
import io
import json
import threading
import time
import urllib.error
import urllib.request
import zipfile

import numpy as np
import pytest
from PIL import Image

from diffpid.errors import ConditionError, ImageError, ParameterError
from diffpid.report.jobs import Explorer, decode_image
from diffpid.report.serve import start
from diffpid.settings import Settings


@pytest.fixture(scope="module")
def explorer(tmp_path_factory):
    from diffpid.shapes.model import load_shapes_model

    return Explorer(load_shapes_model(device="cpu"), Settings(samples=2, threads=1), tmp_path_factory.mktemp("serve"))


@pytest.fixture(scope="module")
def server(explorer):
    srv = start(explorer, "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
        srv.server_close()


def _png_data_url(rgb: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def post(url: str, body: object) -> tuple[int, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as r:
        return json.loads(r.read())


@pytest.mark.parametrize("request_,error,message", [
    ({"prompt": "  "}, ParameterError, "the prompt is empty"),
    ({"prompt": "a red circle", "words": "blue"}, ConditionError, "'blue' is not a word of the prompt"),
    ({"prompt": "a red circle", "pair": "red"}, ParameterError, "the PID pair is two words"),
    ({"prompt": "a red dragon"}, ConditionError, "words outside the vocabulary of shapes: dragon"),
    ({"prompt": "a red circle", "samples": 0}, ParameterError, "samples must be a positive whole number"),
    ({"prompt": "a red circle", "samples": "many"}, ParameterError, "samples and seed must be whole numbers"),
    ({"prompt": "a red circle", "image": "data:image/png;base64,AAAA"}, ImageError, "cannot read the uploaded image"),
    ({"prompt": "a red circle", "image": "not a data url"}, ImageError, "not readable as an image"),
])
def test_bad_requests_are_refused_before_any_computation(explorer, request_, error, message):
    with pytest.raises(error, match=message):
        explorer.check(request_)
    assert not explorer.jobs


def test_a_request_becomes_explain_arguments(explorer):
    img = np.zeros((20, 30, 3), dtype=np.uint8)
    img[:, :10] = (200, 0, 0)
    kw = explorer.check({"prompt": " a  Red circle above a blue box ", "words": "red, circle", "pair": "red blue",
                         "samples": "3", "seed": 5, "image": _png_data_url(img)})
    assert kw["prompt"] == "a Red circle above a blue box" and kw["words"] == ["red", "circle"]
    assert kw["pair"] == ["red", "blue"] and kw["samples"] == 3 and kw["seed"] == 5
    assert np.array_equal(np.asarray(kw["image"]), img)
    assert decode_image(None) is None and decode_image("") is None


def test_http_api_runs_a_job_and_serves_its_report(server):
    code, answer = post(server + "/api/explain", {"prompt": "a red circle above a blue box", "pair": "red blue",
                                                   "samples": 2})
    assert code == 200, answer
    job = answer["job"]
    stages = set()
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        status = get_json(f"{server}/api/jobs/{job}")
        stages.add(status["stage"])
        if status["state"] in ("done", "error"):
            break
        time.sleep(0.2)
    assert status["state"] == "done", status
    assert status["progress"] == 1.0 and "generating the image" in stages
    with urllib.request.urlopen(server + status["report"], timeout=30) as r:
        html = r.read().decode()
    assert 'class="map raw"' in html and "a red circle above a blue box" in html
    with urllib.request.urlopen(server + status["download"], timeout=30) as r:
        assert r.headers["Content-Type"] == "application/zip"
        names = zipfile.ZipFile(io.BytesIO(r.read())).namelist()
    assert {"report/report.html", "report/results.json", "report/maps.npz"} <= set(names)


def test_http_api_answers_errors_as_json(server):
    code, answer = post(server + "/api/explain", {"prompt": "a red circle", "words": "green"})
    assert code == 400 and answer["error"].startswith("'green' is not a word of the prompt")
    code, answer = post(server + "/api/explain", b"{not json")
    assert code == 400 and answer == {"error": "the request is not a JSON object"}
    code, answer = post(server + "/api/explain", b"[1, 2]")
    assert code == 400
    code, answer = post(server + "/api/nothing", {})
    assert code == 404
    with pytest.raises(urllib.error.HTTPError) as e:
        urllib.request.urlopen(server + "/api/jobs/unknown", timeout=30)
    assert e.value.code == 404


def test_serve_binds_to_localhost_by_default():
    from diffpid.cli import build_parser

    args = build_parser().parse_args(["serve"])
    assert args.host == "127.0.0.1" and args.model is None and args.samples == 16
    args = build_parser().parse_args(["serve", "--samples", "4", "--threads", "1", "--port", "0"])
    assert args.samples == 4 and args.threads == 1 and args.port == 0


def test_a_precision_target_is_checked_and_passed_where_explain_takes_one(explorer):
    base = {"prompt": "a red circle", "samples": 2}
    assert "precision" not in explorer.check(base)
    with pytest.raises(ParameterError, match="relative standard error between 0 and 1"):
        explorer.check({**base, "precision": 2})
    with pytest.raises(ParameterError, match="such as 0.1"):
        explorer.check({**base, "precision": "tight"})
    assert explorer.check({**base, "precision": "0.1"})["precision"] == 0.1
