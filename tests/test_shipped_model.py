"""The shipped shapes weights against the world's planted truth (slow: run with ``-m slow``).

These guard the package data, not the code paths (the fast tests cover those on tiny
random models): a broken export, a wrong folder layout or weights that no longer read the
caption would fail here while every fast test passes.
"""

from __future__ import annotations

import random

import pytest
import torch

from diffpid.bench.localization_run import run_localization, shapes_items
from diffpid.shapes.model import default_model_path, generate_images, load_components
from diffpid.shapes.world import COLORS, SHAPES, SIZES
from diffpid.shapes.check import check_caption_image

pytestmark = pytest.mark.slow


def test_cmi_maps_find_the_named_objects(tmp_path):
    """CMI maps of shape and colour words overlap their objects far better than the whole image."""
    rep = run_localization(shapes_items(12, seed=3), out=str(tmp_path), methods=("cmi", "whole_image"),
                           samples=32, progress=False)
    by = {s.method: s.sweep.miou for s in rep.scores}
    assert rep.summary.done == 12
    assert by["whole_image"] < 0.2 and by["cmi"] > 2 * by["whole_image"], by


def test_one_object_captions_are_drawn():
    """Generated images of one-object captions pass the geometry checker well above chance.

    A model that ignores the caption passes about 1 in 56 (7 colours x 4 shapes x 2 sizes,
    before counting); the shipped weights pass 96% of 100 (benchmarks/results/shapes_quality.md).
    """
    rng = random.Random(11)
    captions = [f"a {rng.choice(tuple(SIZES))} {rng.choice(tuple(COLORS))} {rng.choice(SHAPES)}" for _ in range(32)]
    images = generate_images(load_components(default_model_path()), captions, seed=0)
    passed = sum(check_caption_image(i, c).ok for i, c in zip(images, captions))
    assert passed >= 8, f"{passed} of 32 one-object captions drawn"
    assert torch.isfinite(images).all()
