"""Vectorized rendering of shapes-world scenes and the samplers built on it.

Shapes are drawn from signed distance functions on the pixel-centre grid with one pixel
of anti-aliasing (coverage = clamp(0.5 - distance, 0, 1)), all objects of a batch at once.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Sequence

import torch

from ..errors import ConditionError, ParameterError
from .captions import plan_from_query, sample_plan
from .world import COLORS, SHAPE_WORDS, SHAPES, SIZE, SIZES, CaptionWord, Plan, Scene, parse_caption

_SHAPE_INDEX = {s: i for i, s in enumerate(SHAPES)}
_BACKGROUND = -1.0


@dataclass(frozen=True)
class SceneBatch:
    """A batch of scenes for training.

    Args:
        images: ``(n, 3, 32, 32)`` in [-1, 1].
        captions: ``n`` captions.
        coverage: ``(n, 2, 32, 32)`` anti-aliased coverage of object 0 and 1 (zeros if absent).
        plans: the plans the scenes were rendered from.
    """

    images: torch.Tensor
    captions: tuple[str, ...]
    coverage: torch.Tensor
    plans: tuple[Plan, ...]


def signed_distance(shape_index: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    """Signed distance in pixels (negative inside) to each shape.

    Args:
        shape_index: ``(...)`` indices into :data:`SHAPES`.
        dx, dy: ``(..., H, W)`` offsets of pixel centres from the object centre.
        radius: ``(...)`` half-extent of the object.

    Returns:
        ``(..., H, W)`` distances. The triangle points up with base and height ``2 * radius``.
    """
    r = radius[..., None, None]
    adx, ady = dx.abs(), dy.abs()
    circle = torch.sqrt(dx * dx + dy * dy) - r
    square = torch.maximum(adx, ady) - r
    triangle = torch.maximum(dy - r, (2 * adx - dy - r) / math.sqrt(5.0))
    diamond = (adx + ady - r) / math.sqrt(2.0)
    stack = torch.stack([circle, square, triangle, diamond], dim=-3)  # (..., 4, H, W)
    idx = shape_index[..., None, None, None].expand(*shape_index.shape, 1, *dx.shape[-2:])
    return stack.gather(-3, idx).squeeze(-3)


def render_plans(plans: Sequence[Plan]) -> tuple[torch.Tensor, torch.Tensor]:
    """Render scenes in one vectorized pass.

    Returns:
        ``(images, coverage)``: ``(n, 3, 32, 32)`` in [-1, 1] and ``(n, 2, 32, 32)`` in [0, 1].
    """
    n = len(plans)
    cx = torch.zeros(n, 2)
    cy = torch.zeros(n, 2)
    rad = torch.ones(n, 2)
    shape = torch.zeros(n, 2, dtype=torch.long)
    rgb = torch.zeros(n, 2, 3)
    present = torch.zeros(n, 2)
    for i, p in enumerate(plans):
        for k, o in enumerate(p.objects):
            cx[i, k], cy[i, k], rad[i, k] = o.cx, o.cy, SIZES[o.size]
            shape[i, k] = _SHAPE_INDEX[o.shape]
            rgb[i, k] = torch.tensor(COLORS[o.color]) * 2 - 1
            present[i, k] = 1.0
    grid = torch.arange(SIZE, dtype=torch.float32) + 0.5
    dx = grid[None, None, None, :] - cx[..., None, None]  # (n, 2, 1, W)
    dy = grid[None, None, :, None] - cy[..., None, None]  # (n, 2, H, 1)
    dx, dy = torch.broadcast_tensors(dx, dy)
    cov = (0.5 - signed_distance(shape, dx, dy, rad)).clamp(0, 1) * present[..., None, None]
    images = _BACKGROUND + (cov[:, :, None] * (rgb[..., None, None] - _BACKGROUND)).sum(1)
    return images.clamp(-1, 1), cov


BATCH_SHARES = ("empty", "bare", "shapeless", "colorless", "complete")
"""The batch shares of :func:`sample_batch`, in the order they follow the world's draws."""


def sample_batch(n: int, generator: torch.Generator, training: bool = True, complete: int = 0,
                 colorless: int = 0, empty: int = 0, shapeless: int = 0, bare: int = 0) -> SceneBatch:
    """Draw and render ``n`` training scenes.

    A batch is the world's own draws, then each share of :data:`BATCH_SHARES` in turn (the
    complete scenes last).

    Args:
        n: batch size.
        generator: the only source of randomness (one seed per scene is drawn from it).
        training: skip held-out complete captions.
        complete: how many of the ``n`` scenes (the last ones) are drawn from the complete
            two-object captions only (``sample_plan(..., complete=True)``).
        colorless: how many of the scenes before those are drawn from the captions that
            leave every colour open (``sample_plan(..., colorless=True)``).
        shapeless: how many of the scenes before those are drawn from the captions that
            leave every shape open (``sample_plan(..., shapeless=True)``).
        empty: how many of the scenes before those have the empty caption
            (``sample_plan(..., empty=True)``).
        bare: how many of the scenes before those are drawn from the one-word captions
            without an article (``sample_plan(..., bare=True)``).
    """
    counts = {"bare": bare, "empty": empty, "shapeless": shapeless, "colorless": colorless, "complete": complete}
    if min(counts.values()) < 0 or sum(counts.values()) > n:
        given = ", ".join(f"{k}={v}" for k, v in counts.items())
        raise ParameterError(f"{given} scenes of a batch of {n}: use numbers from 0 that add up to at most {n}")
    seeds = torch.randint(0, 2**62, (n,), generator=generator).tolist()
    kinds = [None] * (n - sum(counts.values()))
    for kind in BATCH_SHARES:
        kinds += [kind] * counts[kind]
    plans = tuple(sample_plan(random.Random(s), training, **({kind: True} if kind else {}))
                  for kind, s in zip(kinds, seeds))
    images, cov = render_plans(plans)
    return SceneBatch(images, tuple(p.caption for p in plans), cov, plans)


def scene_from_plan(plan: Plan) -> Scene:
    """Render one plan into a :class:`Scene` with per-word masks."""
    images, cov = render_plans([plan])
    obj_masks = cov[0, : len(plan.objects)] > 0.5
    masks = torch.zeros(len(plan.words), SIZE, SIZE, dtype=torch.bool)
    for j, w in enumerate(plan.words):
        if w.role in ("size", "color", "shape"):
            masks[j] = obj_masks[w.obj]
    return Scene(images[0], plan.caption, plan.words, masks, plan.objects, plan.relation, obj_masks)


def sample_scenes(n: int, seed: int = 0, training: bool = False) -> list[Scene]:
    """``n`` scenes from the world's caption process, reproducible from ``seed``."""
    g = torch.Generator().manual_seed(seed)
    return [scene_from_plan(p) for p in sample_batch(n, g, training).plans]


def caption_words(caption: str) -> tuple[CaptionWord, ...]:
    """The words of a caption with roles and object indices (by the grammar's parse)."""
    parsed = parse_caption(caption)
    words = caption.lower().split()
    out = []
    obj = 0
    seen_content = False
    for k, w in enumerate(words):
        if w in ("left", "right", "above", "below") or (w == "of" and seen_content):
            out.append(CaptionWord(w, "relation" if w != "of" else "of", -1))
            obj = 1
            continue
        if w == "a":
            if seen_content and obj == 0:
                obj = 1
            out.append(CaptionWord(w, "article", obj))
            continue
        role = _role(words, k)
        if seen_content and obj == 0 and _starts_new(out, role):
            obj = 1
        out.append(CaptionWord(w, role, obj))
        seen_content = True
    if len({w.obj for w in out if w.obj >= 0}) != len(parsed.objects):
        raise ConditionError(f"cannot assign the words of {caption!r} to objects; write 'a' before the second object")
    return tuple(out)


def _role(words: list[str], k: int) -> str:
    w = words[k]
    if w in SIZES:
        return "size"
    if w == "orange":
        return "color" if k + 1 < len(words) and words[k + 1] in SHAPE_WORDS else "shape"
    return "color" if w in COLORS else "shape"


def _starts_new(previous: list[CaptionWord], role: str) -> bool:
    order = ("size", "color", "shape")
    content = [w for w in previous if w.role in order]
    return bool(content) and order.index(role) <= order.index(content[-1].role)


def scene_for_caption(caption: str, seed: int = 0) -> Scene:
    """A scene the caption describes, with attributes it leaves open from the world's priors.

    Args:
        caption: a caption of the grammar (see :mod:`diffpid.shapes.world`).
        seed: seed of the draw.
    """
    parsed = parse_caption(caption)
    words = caption_words(caption) if parsed.objects else ()
    if not parsed.objects:
        plan = sample_plan(random.Random(seed), training=False)
        return scene_from_plan(Plan(plan.objects, plan.relation, ()))
    return scene_from_plan(plan_from_query(random.Random(seed), parsed, words))
