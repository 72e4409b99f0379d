"""A checker that reads a shapes-world image back into objects and tests a caption on it.

Segmentation follows the renderer's image model: a pixel is ``background + c * (colour -
background)`` with coverage ``c``, so each pixel gets the palette colour whose ray through
the black background fits it best, and counts as foreground when its coverage is at least
one half. Connected same-colour regions (4-neighbourhood) of at least ``min_area`` pixels
are the objects; each is classified by its bounding box and fill:

- size: ``big`` when the longer bounding-box side exceeds 10.5 pixels (small objects span
  about 8, big ones about 14);
- shape: fill ratio above 0.64 is a square when at least three corners of the bounding box
  are filled, else a circle; below 0.64 a triangle when its lower third is much wider than
  its upper third (spread above 0.3), else a diamond.

A caption holds when the image has exactly as many objects as the caption names, the
objects can be matched to them with every named size, colour and shape right, and the
relation holds between the matched centres (the offset along the relation's axis has the
right sign and is larger than the offset across it).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from .world import COLORS, ObjectQuery, parse_caption

_PALETTE = torch.tensor(list(COLORS.values()))  # (7, 3) in [0, 1]
_NAMES = tuple(COLORS)


@dataclass(frozen=True)
class Blob:
    """An object read from an image.

    Args:
        color, shape, size: its classified attributes.
        area: pixels.
        cx, cy: centre of its bounding box (pixels, y down).
        fill: area over bounding-box area.
        spread: (width of the lower third - width of the upper third) / width.
    """

    color: str
    shape: str
    size: str
    area: int
    cx: float
    cy: float
    fill: float
    spread: float


@dataclass(frozen=True)
class CheckResult:
    """Whether a caption holds for an image, with the objects found and a reason if not."""

    ok: bool
    blobs: tuple[Blob, ...]
    reason: str


def segment(image: torch.Tensor) -> torch.Tensor:
    """Palette index per pixel, ``-1`` for background.

    Args:
        image: ``(3, H, W)`` in [-1, 1] on a black background.

    Returns:
        ``(H, W)`` long.
    """
    v = ((image.float() + 1) / 2).clamp(0, 1).permute(1, 2, 0)  # (H, W, 3)
    q = _PALETTE  # (k, 3)
    c = (v @ q.T) / (q * q).sum(1)  # (H, W, k) best coverage along each colour's ray
    c = c.clamp(0, 1)
    resid = ((v[..., None, :] - c[..., None] * q) ** 2).sum(-1)  # (H, W, k)
    best = resid.argmin(-1)
    cov = c.gather(-1, best[..., None])[..., 0]
    return torch.where(cov >= 0.5, best, torch.full_like(best, -1))


def components(labels: torch.Tensor) -> torch.Tensor:
    """Connected components (4-neighbourhood) of equal non-negative labels.

    Args:
        labels: ``(H, W)`` long, ``-1`` for background.

    Returns:
        ``(H, W)`` long component ids (``-1`` background); ids are not consecutive.
    """
    h, w = labels.shape
    fg = labels >= 0
    comp = torch.where(fg, torch.arange(h * w).view(h, w), torch.full_like(labels, -1))
    pad = -2
    while True:
        lab = torch.nn.functional.pad(labels, (1, 1, 1, 1), value=pad)
        cp = torch.nn.functional.pad(comp, (1, 1, 1, 1), value=-1)
        best = comp.clone()
        for dy, dx in ((0, 1), (2, 1), (1, 0), (1, 2)):
            same = lab[dy : dy + h, dx : dx + w] == labels
            best = torch.where(same & fg, torch.maximum(best, cp[dy : dy + h, dx : dx + w]), best)
        if torch.equal(best, comp):
            return comp
        comp = best


def _classify(mask: torch.Tensor) -> tuple[str, str, float, float, float, float]:
    ys, xs = torch.nonzero(mask, as_tuple=True)
    y0, y1, x0, x1 = int(ys.min()), int(ys.max()), int(xs.min()), int(xs.max())
    hgt, wid = y1 - y0 + 1, x1 - x0 + 1
    fill = float(mask.sum()) / (hgt * wid)
    rows = mask[y0 : y1 + 1].sum(1).float()
    third = max(1, hgt // 3)
    spread = float(rows[-third:].mean() - rows[:third].mean()) / wid
    size = "big" if max(hgt, wid) > 10.5 else "small"
    corners = int(mask[y0, x0]) + int(mask[y0, x1]) + int(mask[y1, x0]) + int(mask[y1, x1])
    if fill > 0.64:
        shape = "square" if corners >= 3 else "circle"
    elif spread > 0.3:
        shape = "triangle"
    else:
        shape = "diamond"
    return shape, size, fill, spread, (x0 + x1 + 1) / 2, (y0 + y1 + 1) / 2


def find_blobs(image: torch.Tensor, min_area: int = 8) -> tuple[Blob, ...]:
    """Objects in an image, largest first.

    Args:
        image: ``(3, 32, 32)`` in [-1, 1].
        min_area: smaller regions are ignored as specks.
    """
    labels = segment(image)
    comp = components(labels)
    out = []
    for cid in torch.unique(comp):
        if cid < 0:
            continue
        mask = comp == cid
        area = int(mask.sum())
        if area < min_area:
            continue
        color = _NAMES[int(labels[mask][0])]
        shape, size, fill, spread, cx, cy = _classify(mask)
        out.append(Blob(color, shape, size, area, cx, cy, fill, spread))
    return tuple(sorted(out, key=lambda b: -b.area))


def matches(q: ObjectQuery, b: Blob) -> bool:
    """Whether blob ``b`` has every attribute that ``q`` names."""
    return all(getattr(q, f) is None or getattr(q, f) == getattr(b, f) for f in ("size", "color", "shape"))


def bindings(objects: tuple[ObjectQuery, ...], blobs: tuple[Blob, ...]) -> list[tuple[Blob, ...]]:
    """The orderings of ``blobs`` that give every object its named attributes (relation
    ignored); empty when the counts differ."""
    if len(blobs) != len(objects):
        return []
    return [perm for perm in itertools.permutations(blobs) if all(matches(q, b) for q, b in zip(objects, perm))]


def relation_holds(relation: str, a: Blob, b: Blob) -> bool:
    """Whether ``a`` stands in ``relation`` (left, right, above, below) to ``b``."""
    dx, dy = b.cx - a.cx, b.cy - a.cy
    if relation in ("left", "right"):
        return abs(dx) > abs(dy) and (dx > 0) == (relation == "left")
    return abs(dy) > abs(dx) and (dy > 0) == (relation == "above")


def check_caption_image(image: torch.Tensor, caption: str, min_area: int = 8) -> CheckResult:
    """Test whether ``caption`` holds for ``image`` (see the module docstring).

    Args:
        image: ``(3, 32, 32)`` in [-1, 1].
        caption: a caption of the shapes grammar (the empty caption holds for 1 or 2 objects).

    Raises:
        ConditionError: the caption is not in the grammar.
    """
    parsed = parse_caption(caption)
    blobs = find_blobs(image, min_area)
    if not parsed.objects:
        ok = len(blobs) in (1, 2)
        return CheckResult(ok, blobs, "" if ok else f"{len(blobs)} objects")
    if len(blobs) != len(parsed.objects):
        return CheckResult(False, blobs, f"found {len(blobs)} objects, caption names {len(parsed.objects)}")
    for perm in bindings(parsed.objects, blobs):
        if parsed.relation is None or relation_holds(parsed.relation, perm[0], perm[1]):
            return CheckResult(True, blobs, "")
    found = "; ".join(f"{b.size} {b.color} {b.shape} at ({b.cx:.0f},{b.cy:.0f})" for b in blobs)
    return CheckResult(False, blobs, f"no match for the caption among: {found}")
