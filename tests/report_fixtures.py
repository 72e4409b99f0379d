"""Explanations with known arrays for report tests (no model, no estimator).

:func:`synthetic_explanation` builds a :class:`~diffpid.explain.Explanation` whose maps are
simple known patterns at ``(8, 8)``, its image ``(16, 16, 3)``:

- ``mi[w].pixel_map = (i + 1) * RAMP`` for the i-th word, so the MI scale's maximum is
  ``len(words) * RAMP.max()``; ``cmi[w] = (i + 1) * 0.5 * RAMP``;
- PID atoms ``RAMP, 2 RAMP, 0.5 RAMP, -3 RAMP`` (negative synergy: a diverging scale with
  limits ``+-3 RAMP.max()``), CPID atoms ``0.1 *`` those, all positive except synergy;
- attention maps that sum to one.
"""

from __future__ import annotations

import numpy as np

from diffpid.engine.estimate import Curve
from diffpid.explanation import ConditionCurve, Explanation, Parameters
from diffpid.information import Information
from diffpid.decomposition.pid import PID

H = W = 8
RAMP = np.arange(H * W, dtype=np.float64).reshape(H, W) / (H * W)  # (8, 8), values 0 .. 63/64
BINS = np.linspace(-5.0, 5.0, 6)


def curve(scale: float) -> Curve:
    """A curve over six log-SNR bins, the second bin empty (NaN, count 0)."""
    mean = scale * np.exp(-0.3 * BINS)
    mean[1] = np.nan
    count = np.array([3.0, 0.0, 2.0, 5.0, 1.0, 4.0])
    return Curve(BINS.copy(), mean, count)


def information(pixel_map: np.ndarray, standard: float, samples: int = 16) -> Information:
    """An :class:`Information` whose value is the sum of ``pixel_map``."""
    value = float(pixel_map.sum())
    return Information(value, 0.1 * value + 0.01, pixel_map, 0.1 * pixel_map + 1e-3, standard, 0.05 + 0.01 * standard,
                       pixel_map - 0.01, curve(value), samples)


def decomposition(scale: float, y1: str, y2: str, context: str | None, prompt: str) -> PID:
    """A :class:`PID` with atom maps ``scale * (1, 2, 0.5, -3) * RAMP``."""
    factors = (1.0, 2.0, 0.5, -3.0)
    atoms = [Information(float(scale * f * RAMP.sum()), 0.02 * (k + 1), scale * f * RAMP, np.full((H, W), 0.01 * (k + 1)))
             for k, f in enumerate(factors)]
    m1 = information(scale * 3.0 * RAMP, 0.3)
    m2 = information(scale * 1.5 * RAMP, 0.2)
    m12 = information(scale * 0.5 * RAMP, 0.1)
    cov = np.arange(16, dtype=np.float64).reshape(4, 4) / 100
    conds = ("", y1, y2, f"{y1} {y2}") if context is None else (context, prompt.replace(y2, ""), prompt.replace(y1, ""), prompt)
    return PID(*atoms, m1, m2, m12, Information(0.123, 0.045, RAMP, RAMP), y1, y2, context,
               "image" if context is None else f"image given {context!r}", conds, "integrated", cov, 16)


def synthetic_explanation(prompt: str = "a red cat on the table", words=("red", "cat", "table"),
                          pair=("red", "cat"), attention: bool = True, seed: int | None = 7) -> Explanation:
    """An :class:`Explanation` with the known maps described in the module docstring."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    mi = {w: information((i + 1) * RAMP, 0.5 - i) for i, w in enumerate(words)}
    cmi = {w: information((i + 1) * 0.5 * RAMP, -0.25 * i) for i, w in enumerate(words)}
    pid = cpid = None
    if pair is not None:
        pid = decomposition(1.0, pair[0], pair[1], None, prompt)
        cpid = decomposition(0.1, pair[0], pair[1], "a on the table", prompt)
    att = None
    if attention:
        att = {}
        for i, w in enumerate(words):
            a = np.roll(RAMP, i, axis=1) + 0.1
            att[w] = a / a.sum()
    curves = tuple(ConditionCurve(p, curve(100.0 + k), -1000.0 - k, 0.5) for k, p in enumerate(["", prompt, "red", ""]))
    params = Parameters(16, 8, "AdaptiveSampler", "integrated", 3, "cpu", "float32", attention)
    return Explanation(prompt, "tiny-model", seed, image, tuple(words), mi, cmi, pair, pid, cpid, att, curves, params,
                       {"python": "3.11", "diffpid": "0.1.0", "torch": "2.13.0+cpu"})
