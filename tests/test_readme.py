"""Every Python code block of the README runs as written, offline (blocks marked
``<!-- not run: ... -->`` need the network or a GPU and are skipped, with the reason)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCK = re.compile(r"(<!--\s*not run:[^>]*-->\s*\n)?```python\n(.*?)```", re.S)


def _blocks() -> list[tuple[str, str | None]]:
    return [(m.group(2), m.group(1)) for m in BLOCK.finditer(README.read_text(encoding="utf-8"))]


def test_readme_has_runnable_python_blocks():
    blocks = _blocks()
    assert sum(1 for _, skip in blocks if not skip) >= 2
    for code, skip in blocks:
        if skip:
            assert "needs" in skip, "a skipped README block must say what it needs"


@pytest.mark.parametrize("index", range(len(_blocks())))
def test_readme_block_runs(index, tmp_path):
    code, skip = _blocks()[index]
    if skip:
        pytest.skip(skip.strip())
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": os.environ.get("DIFFPID_TEST_THREADS", "2")}
    prelude = f"import torch; torch.set_num_threads({int(env['OMP_NUM_THREADS'])})\n"
    proc = subprocess.run([sys.executable, "-c", prelude + code], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
