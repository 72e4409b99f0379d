"""``diffpid explain --model <tiny Flux folder>`` end to end in a subprocess (most of its time is imports)."""

import json
import os
import subprocess
import sys

from tiny_flow import flow_folder


def test_cli_explain_on_a_flux_folder(tmp_path):
    out = tmp_path / "out"
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    r = subprocess.run([sys.executable, "-m", "diffpid", "explain", "a red cat", "--model", flow_folder("flux-schnell"),
                        "--samples", "4", "--precision", "off", "--out", str(out), "--quiet"], capture_output=True, text=True, env=env,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    assert (out / "report.html").is_file()
    data = json.loads((out / "results.json").read_text())
    assert data["words"] == ["red", "cat"] and data["map_shape"] == [16, 16]
