"""Uniqueness maps (DiffusionPID): where each of two words carries information the other does not.

For a two-object caption such as ``"a big red circle left of a small blue square"`` and the
two objects' shape words, the CPID given the rest of the caption splits each word's
information into redundancy and its unique part; the unique map ``U1`` should lie on the
first word's object and ``U2`` on the second's. :func:`mask_mass` measures it: the share
of a map's mass inside each object's mask, against the share of the image the mask covers
(what a map spread evenly would give). :func:`uniqueness_figure` draws image, ``U1``, ``U2``
and redundancy maps side by side for the report.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..errors import ParameterError, ShapeError
from .pid_studies import PairCase

__all__ = ["MaskMass", "UniquenessCase", "UniquenessSummary", "dilate", "mask_mass", "summarize_uniqueness", "uniqueness_cases",
           "uniqueness_figure"]


@dataclass(frozen=True)
class UniquenessCase:
    """A pair case whose two words belong to two objects with known masks.

    Args:
        pair: the case (CPID of the two words given the rest of the caption).
        mask_1, mask_2: ``(h, w)`` bool pixels of the first and the second word's object.
    """

    pair: PairCase
    mask_1: np.ndarray
    mask_2: np.ndarray


def uniqueness_cases(n: int = 16, seed: int = 0, role: str = "shape") -> list[UniquenessCase]:
    """``n`` two-object scenes of held-out-free complete captions, words of the given role on each object.

    Args:
        n: number of scenes.
        seed: seed of the scenes.
        role: ``"shape"`` or ``"color"``: which word of each object is a source. Scenes whose two
            words are the same (two circles) are skipped.
    """
    from ..shapes.render import sample_scenes

    if role not in ("shape", "color", "size"):
        raise ParameterError(f"role must be 'shape', 'color' or 'size', got {role!r}")
    out: list[UniquenessCase] = []
    batch = 0
    while len(out) < n:
        if batch > 50:
            raise ParameterError(f"found only {len(out)} scenes with two different {role} words; ask for fewer")
        for scene in sample_scenes(8 * n, seed=seed * 1000 + batch):
            if len(scene.objects) != 2:
                continue
            words = [w for w in scene.words if w.role == role]
            texts = [w.text for w in scene.words]
            if len(words) != 2 or words[0].text == words[1].text or any(texts.count(w.text) > 1 for w in words):
                continue
            a, b = words
            masks = scene.object_masks.numpy()
            pair = PairCase(scene.image, scene.caption, a.text, b.text, conditional=True, group="uniqueness",
                            key=scene.caption)
            out.append(UniquenessCase(pair, masks[a.obj], masks[b.obj]))
            if len(out) == n:
                break
        batch += 1
    return out


@dataclass(frozen=True)
class MaskMass:
    """Shares of a non-negative map's mass inside two masks.

    Args:
        own, other: mass inside the word's own object's mask and inside the other object's mask,
            as fractions of the map's total (NaN for an all-zero map).
        own_area, other_area: the masks' areas as fractions of the image (the shares of a flat map).
    """

    own: float
    other: float
    own_area: float
    other_area: float


def dilate(mask: np.ndarray, pixels: int = 1) -> np.ndarray:
    """A boolean ``(h, w)`` mask grown by ``pixels`` in every direction (3x3 square steps)."""
    out = np.asarray(mask, dtype=bool).copy()
    for _ in range(pixels):
        p = np.pad(out, 1)
        out = np.zeros_like(out)
        for dy in (0, 1, 2):
            for dx in (0, 1, 2):
                out |= p[dy:dy + out.shape[0], dx:dx + out.shape[1]]
    return out


def mask_mass(m: np.ndarray, own: np.ndarray, other: np.ndarray, grow: int = 0) -> MaskMass:
    """Mass shares of map ``m`` ``(h, w)`` inside the masks ``own`` and ``other`` ``(h, w)`` (negatives clipped).

    Args:
        m: the map.
        own, other: the two objects' masks.
        grow: grow both masks by this many pixels first (shape information lies on the edges,
            half of it outside a mask drawn at coverage 1/2); pixels both grown masks claim count
            for neither.
    """
    m = np.clip(np.asarray(m, dtype=np.float64), 0, None)
    own, other = np.asarray(own, dtype=bool), np.asarray(other, dtype=bool)
    if grow:
        own, other = dilate(own, grow), dilate(other, grow)
        both = own & other
        own, other = own & ~both, other & ~both
    if m.shape != own.shape or m.shape != other.shape:
        raise ShapeError(f"map {m.shape} and masks {own.shape}, {other.shape} differ in shape")
    total = m.sum()
    share = (lambda k: float(m[k].sum() / total)) if total > 0 else (lambda k: float("nan"))
    return MaskMass(share(own), share(other), float(own.mean()), float(other.mean()))


@dataclass(frozen=True)
class UniquenessSummary:
    """Where unique information lies, over cases and both words.

    Args:
        own, other: mean share of a unique map's mass in its own / the other object's mask.
        own_stderr, other_stderr: their standard errors over (case, word) maps.
        own_area, other_area: mean mask areas (shares of a flat map).
        hit_rate: fraction of maps with more mass on the own object than on the other.
        maps: number of unique maps counted (maps with zero mass are left out).
    """

    own: float
    other: float
    own_stderr: float
    other_stderr: float
    own_area: float
    other_area: float
    hit_rate: float
    maps: int


def summarize_uniqueness(masses: Sequence[MaskMass]) -> UniquenessSummary:
    """Average the mass shares of unique maps (one :class:`MaskMass` per case and word)."""
    ok = [m for m in masses if np.isfinite(m.own)]
    if not ok:
        raise ParameterError("no unique map has any mass; run more cases or more samples")
    own = np.array([m.own for m in ok])
    other = np.array([m.other for m in ok])
    se = (lambda a: float(a.std(ddof=1) / np.sqrt(a.size))) if len(ok) > 1 else (lambda a: float("nan"))
    return UniquenessSummary(float(own.mean()), float(other.mean()), se(own), se(other),
                             float(np.mean([m.own_area for m in ok])), float(np.mean([m.other_area for m in ok])),
                             float(np.mean(own > other)), len(ok))


def uniqueness_figure(images: Sequence[np.ndarray], maps: Sequence[dict[str, np.ndarray]], titles: Sequence[str],
                      words: Sequence[tuple[str, str]]) -> bytes:
    """A PNG: one row per case with the image and the ``U1``, ``U2`` and redundancy maps.

    Args:
        images: per case an ``(H, W, 3)`` uint8 image.
        maps: per case ``{"unique_1", "unique_2", "redundancy": (h, w)}``.
        titles: per case a caption.
        words: per case the two words.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..report.figures import figure_png

    n = len(images)
    if n == 0:
        raise ParameterError("no cases to draw")
    fig = Figure(figsize=(8, 2.1 * n), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(n, 4, squeeze=False)
    for i in range(n):
        w1, w2 = words[i]
        panels = [(images[i], titles[i]), (maps[i]["unique_1"], f"U({w1})"), (maps[i]["unique_2"], f"U({w2})"),
                  (maps[i]["redundancy"], f"R({w1}, {w2})")]
        top = max(float(np.max(maps[i][k])) for k in ("unique_1", "unique_2", "redundancy")) or 1.0
        for j, (v, t) in enumerate(panels):
            ax = axes[i, j]
            if j == 0:
                ax.imshow(v)
            else:
                ax.imshow(np.clip(v, 0, None), cmap="inferno", vmin=0, vmax=top)
            ax.set_title(t, fontsize=7)
            ax.axis("off")
    fig.tight_layout()
    return figure_png(fig)
