"""The exact denoiser of the shapes world's single-object scenes: a perfect model to check the studies.

The world is restricted to one object at the centre, so that its images form a finite
set: every (colour, shape, size) rendered by :func:`diffpid.shapes.render.render_plans`
(56 images), each a tight Gaussian (variance ``1e-3``). A caption is read as the world reads it
(:func:`diffpid.shapes.world.parse_caption`, with "box" a square and a lone "orange" the fruit,
a circle) and becomes a weight vector over the 56 images: named attributes fixed, unnamed ones
from the world's priors (size and shape uniform, colour ``P(colour | shape)`` with the planted
triangle bias). Two shape words of one object ("square box") name the shape twice and must
agree. The empty caption is the world's marginal over single-object captions (the keep
probabilities of :func:`diffpid.shapes.captions.sample_plan`, computed exactly).

The denoiser is the MMSE one of that mixture under each caption's weights, so every study
run on it shows what a perfectly trained model would give, with the same estimators.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, Sequence

import torch

from ..errors import ConditionError
from ..models.base import Generated, Model

__all__ = ["ShapesOracle"]

VARIANCE = 1e-3


def _caption_attributes(caption: str) -> dict[str, str]:
    """Size, colour and shape a single-object caption names (synonyms merged, the fruit a circle)."""
    from ..shapes.world import COLORS, SHAPE_WORDS, SIZES, check_caption

    words = [w for w in check_caption(caption) if w != "a"]
    named: dict[str, str] = {}

    def put(field: str, value: str) -> None:
        if named.get(field, value) != value:
            raise ConditionError(f"{caption!r} names two different {field}s of one object; the oracle has one object")
        named[field] = value

    for k, w in enumerate(words):
        if w in SIZES:
            put("size", w)
        elif w == "orange" and k + 1 < len(words) and words[k + 1] in SHAPE_WORDS:
            put("color", w)
        elif w in SHAPE_WORDS:
            put("shape", SHAPE_WORDS[w])
        elif w in COLORS:
            put("color", w)
        else:
            raise ConditionError(f"the single-object oracle cannot read {w!r} in {caption!r}; use size, colour and "
                                 "shape words")
    return named


class ShapesOracle(Model):
    """Exact denoiser of single centred objects of the shapes world (see the module docstring).

    Attributes:
        components: ``(colour, shape, size)`` of each of the 56 images, in order.
        means: ``(56, 3, 32, 32)`` the rendered images.
    """

    name = "shapes-oracle"

    def __init__(self) -> None:
        from ..shapes.world import COLORS, SHAPES, SIZES, Plan, ShapeObject
        from ..shapes.render import render_plans

        self.components = list(itertools.product(COLORS, SHAPES, SIZES))
        plans = [Plan((ShapeObject(s, c, z, 16.0, 16.0),), None, ()) for c, s, z in self.components]
        self.means = render_plans(plans)[0].double()  # (K, 3, 32, 32)
        self.data_shape = (3, 32, 32)
        self.logsnr_range = (-12.0, 12.0)
        self.device = torch.device("cpu")
        self.resolution = (32, 32)
        self._cache: dict[str, torch.Tensor] = {}

    def weights(self, caption: str) -> torch.Tensor:
        """``(56,)`` probabilities of the images under ``caption`` (``""``: the world's marginal)."""
        if caption.strip() == "":
            return self._marginal()
        named = _caption_attributes(caption)
        return self._weights(named, colour_named_without_shape=("color" in named and "shape" not in named))

    def _weights(self, named: dict[str, str], colour_named_without_shape: bool = False) -> torch.Tensor:
        from ..shapes.world import COLORS, SHAPES, SIZES, TRIANGLE_RED_PROB

        w = torch.zeros(len(self.components), dtype=torch.float64)
        for k, (c, s, z) in enumerate(self.components):
            if named.get("size", z) != z or named.get("shape", s) != s:
                continue
            p = (1.0 if "size" in named else 1.0 / len(SIZES)) * (1.0 if "shape" in named else 1.0 / len(SHAPES))
            if "color" in named:
                p *= 1.0 if named["color"] == c else 0.0
            elif s == "triangle":
                p *= TRIANGLE_RED_PROB if c == "red" else (1 - TRIANGLE_RED_PROB) / (len(COLORS) - 1)
            else:
                p *= 1.0 / len(COLORS)
            w[k] = p
        return w / w.sum()

    def _marginal(self) -> torch.Tensor:
        """Single-object marginal: mixture over the caption process's keep patterns (exact)."""
        from ..shapes.world import COLORS, FULL_PROB, KEEP_PROB

        total = torch.zeros(len(self.components), dtype=torch.float64)
        partial = {pat: KEEP_PROB ** sum(pat) * (1 - KEEP_PROB) ** (3 - sum(pat))
                   for pat in itertools.product((0, 1), repeat=3) if any(pat)}
        norm = sum(partial.values())
        for (ks, kc, kh), p in partial.items():
            prob = (1 - FULL_PROB) * p / norm + (FULL_PROB if (ks, kc, kh) == (1, 1, 1) else 0.0)
            # named size and shape are uniform, as unnamed ones; a named colour is uniform over the
            # seven colours with a shape word, over the six others without one
            if not kc:
                total += prob * self._weights({})
                continue
            colours = [c for c in COLORS if kh or c != "orange"]
            for c in colours:
                total += prob / len(colours) * self._weights({"color": c})
        return total / total.sum()

    def encode_prompt(self, prompt: Any) -> torch.Tensor:
        if not isinstance(prompt, str):
            raise ConditionError(f"the shapes oracle reads captions (strings), got {type(prompt).__name__}")
        key = " ".join(prompt.lower().split())
        if key not in self._cache:
            self._cache[key] = self.weights(key)
        return self._cache[key]

    def eps(self, x_a: torch.Tensor, logsnr: torch.Tensor, conditions: Sequence[Any]) -> torch.Tensor:
        logw = torch.stack([c.log() for c in conditions])[None]  # (1, k, K)
        return self._eps(x_a, logsnr, logw).reshape(len(x_a), len(conditions), *self.data_shape)

    def eps_rows(self, x_a: torch.Tensor, logsnr: torch.Tensor, conditions: Sequence[Any]) -> torch.Tensor:
        logw = torch.stack([c.log() for c in conditions])[:, None]  # (n, 1, K): row i under its own caption
        return self._eps(x_a, logsnr, logw).reshape(len(x_a), *self.data_shape)

    def _eps(self, x_a: torch.Tensor, logsnr: torch.Tensor, logw: torch.Tensor) -> torch.Tensor:
        """Exact epsilon ``(n, k, d)`` float32 under caption log-weights ``(1 or n, k, K)``."""
        x = x_a.double().reshape(len(x_a), -1)  # (n, d)
        s = torch.sigmoid(logsnr.double()).reshape(-1, 1)  # (n, 1)
        mu = self.means.reshape(len(self.means), -1)  # (K, d)
        v = s * VARIANCE + (1 - s)  # (n, 1)
        # squared distance of each input to each scaled mean: (n, K)
        d2 = (x * x).sum(-1, keepdim=True) - 2 * s.sqrt() * (x @ mu.T) + s * (mu * mu).sum(-1)[None]
        logits = logw - (d2 / (2 * v))[:, None, :]  # (n, k, K)
        r = torch.softmax(logits, -1)
        mean = torch.einsum("nkK,Kd->nkd", r, mu)  # (n, k, d)
        e = (1 - s).sqrt()[:, :, None] * (x[:, None, :] - s.sqrt()[:, :, None] * mean) / v[:, :, None]
        return e.float()

    def generate(self, prompt: Any, seed: int = 0, **kwargs: Any) -> Generated:
        """An image of the caption: a component drawn by the caption's weights, plus its small noise."""
        g = torch.Generator().manual_seed(int(seed) % (2**63))
        w = self.encode_prompt(prompt)
        k = int(torch.multinomial(w.float(), 1, generator=g))
        x = self.means[k] + math.sqrt(VARIANCE) * torch.randn(self.data_shape, generator=g, dtype=torch.float64)
        img = ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(1, 2, 0).numpy()
        return Generated(img, x[None].float(), prompt, int(seed))

    def decode(self, x: torch.Tensor) -> Any:
        return ((x.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
