"""Small models with planted answers for the benchmark tests.

- :class:`RegionModel`: every word of a prompt adds 1 to the noise prediction inside its
  own pixel region, so the CMI (and MI) map of a word is exactly its region.
- :class:`TextMixture`: captions name label assignments of the exact Gaussian-mixture
  oracle, so the caption that describes an image's component carries the most information.
"""

from __future__ import annotations

import numpy as np
import torch

from diffpid.models.base import Model
from diffpid.models.mixture import GaussianMixture

SIZE = 8


class RegionModel(Model):
    """Text model on ``(1, 8, 8)`` data: word ``w`` adds 1 inside ``regions[w]`` (a boolean ``(8, 8)`` mask)."""

    data_shape = (1, SIZE, SIZE)
    logsnr_range = (-10.0, 10.0)
    name = "region-model"

    def __init__(self, regions: dict[str, np.ndarray]) -> None:
        self.regions = {w: torch.as_tensor(np.asarray(m, dtype=np.float32)) for w, m in regions.items()}

    def encode_prompt(self, prompt: str) -> str:
        return prompt

    def eps(self, x_a, logsnr, conditions):
        out = torch.zeros(len(x_a), len(conditions), *self.data_shape)
        for j, c in enumerate(conditions):
            for w in c.lower().split():
                if w in self.regions:
                    out[:, j, 0] += self.regions[w]
        return out


def box(r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
    m = np.zeros((SIZE, SIZE), dtype=bool)
    m[r0:r1, c0:c1] = True
    return m


class TextMixture(Model):
    """The Gaussian-mixture oracle behind captions: ``captions[text]`` is a label assignment."""

    def __init__(self, mixture: GaussianMixture, captions: dict[str, dict]) -> None:
        self.mixture, self.captions = mixture, captions
        self.data_shape = mixture.data_shape
        self.logsnr_range = mixture.logsnr_range
        self.name = "text-mixture"

    def encode_prompt(self, prompt: str):
        from diffpid.errors import ConditionError

        if prompt and prompt not in self.captions:
            raise ConditionError(f"unknown caption {prompt!r}")
        return self.mixture.encode_prompt(self.captions[prompt] if prompt else None)

    def eps(self, x_a, logsnr, conditions):
        return self.mixture.eps(x_a, logsnr, conditions)


def colour_shape_mixture(seed: int = 0) -> tuple[TextMixture, torch.Tensor]:
    """Four well-separated components labelled (colour, shape) and captions for each label set."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(4, 2, 4, 4, generator=g) * 1.5
    labels = {"colour": [0, 0, 1, 1], "shape": [0, 1, 0, 1]}
    mix = GaussianMixture(means, 0.05, labels=labels)
    names = {0: "red", 1: "blue"}, {0: "circle", 1: "square"}
    caps = {}
    for c in (0, 1):
        for s in (0, 1):
            caps[f"a {names[0][c]} {names[1][s]}"] = {"colour": c, "shape": s}
        caps[f"a {names[0][c]} thing"] = {"colour": c}
    return TextMixture(mix, caps), means
