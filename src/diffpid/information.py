"""Public entry points for mutual information and conditional mutual information.

Both are one engine run (:func:`diffpid.estimate.estimate`) with two conditions and
one :class:`~diffpid.estimate.Difference`; they share argument names with
:func:`diffpid.pid` and :func:`diffpid.attention_maps`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .channel import Sampler
from .errors import ParameterError
from .estimate import Curve, Difference, EngineResult, estimate
from .models.base import Model, is_single


@dataclass(frozen=True)
class Information:
    """Pointwise information of an image about a condition, in nats.

    For a single input the fields are scalars and ``(*map_shape)`` maps; for a batch
    they carry a leading batch dimension.

    Args:
        value, stderr: orthogonal estimate ``i_o`` (>= 0) and its standard error.
        pixel_map, pixel_stderr: per-pixel ``i_o`` (summed over channels; sums to ``value``).
        standard_value, standard_stderr: the standard estimator ``i`` (can be negative).
        standard_map: per-pixel standard estimator.
        curve: ``E||e(x_a|y) - e(x_a|ref)||^2`` per log-SNR bin.
        samples: ``(a, eps)`` draws used.
    """

    value: Any
    stderr: Any
    pixel_map: np.ndarray
    pixel_stderr: np.ndarray
    standard_value: Any
    standard_stderr: Any
    standard_map: np.ndarray
    curve: Curve
    samples: int

    def _repr_html_(self) -> str:
        from .report.notebook import information_html

        return information_html(self)


def as_condition(model: Model, spec: Any) -> Any:
    """A prompt (string or label mapping) is encoded by the model; anything else passes as built."""
    if spec is None:
        return model.unconditional()
    if isinstance(spec, (str, dict)):
        return model.encode_prompt(spec)
    return spec


def information_from(run: EngineResult, index: int, single: bool) -> Information:
    """Package term ``index`` of an engine run as :class:`Information`."""
    t = run.terms[index]
    pick = (lambda v: v[0].item() if v.ndim == 1 else v[0]) if single else (lambda v: v)
    curve = Curve(t.curve.logsnr, t.curve.mean[0] if single else t.curve.mean, t.curve.count[0] if single else t.curve.count)
    return Information(
        pick(t.value), pick(t.stderr), pick(t.pixel_map), pick(t.pixel_stderr),
        pick(t.standard_value), pick(t.standard_stderr), pick(t.standard_map), curve, run.samples,
    )


def mutual_information(
    model: Model,
    x: torch.Tensor,
    condition: Any,
    reference: Any = None,
    *,
    samples: int = 128,
    sampler: Sampler | str | None = None,
    batch_size: int = 64,
    seed: int = 0,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> Information:
    """Pointwise MI ``i(x; condition)`` against ``reference`` (default: unconditional).

    Args:
        model: the denoiser.
        x: ``(*data_shape)`` or ``(b, *data_shape)`` data (latents or pixels).
        condition: a prompt (string), label mapping, or a condition built by the model.
        reference: the condition to compare with; the empty prompt when omitted.
        samples: ``(a, eps)`` draws per image.
        sampler: log-SNR sampler or its name (``adaptive`` default, ``sobol``, ``published``, ``uniform``).
        batch_size: most rows per denoiser call.
        seed, generator: randomness; the same seed gives the same numbers.
        progress: show a progress bar.
    """
    conds = [as_condition(model, condition), as_condition(model, reference)]
    run = estimate(model, x, conds, [Difference(0, 1)], samples=samples, sampler=sampler,
                   batch_size=batch_size, seed=seed, generator=generator, progress=progress)
    return information_from(run, 0, is_single(model, x))


def conditional_mutual_information(
    model: Model,
    x: torch.Tensor,
    condition: Any,
    context: Any = None,
    *,
    word: str | None = None,
    samples: int = 128,
    sampler: Sampler | str | None = None,
    batch_size: int = 64,
    seed: int = 0,
    generator: torch.Generator | None = None,
    progress: bool = False,
) -> Information:
    """Pointwise CMI ``i(x; y | c)``: the full ``condition`` (y and c) against ``context`` c.

    For text models pass the prompt and ``word``: the context is the prompt with that
    word removed (:func:`diffpid.prompts.remove_words`).

    Args:
        condition: the full prompt or condition ``(y, c)``.
        context: the context ``c`` alone; derived from ``word`` when omitted.
        word: for text prompts, the word ``y`` whose information is measured.
        Other arguments as :func:`mutual_information`.
    """
    if context is None:
        if word is None or not isinstance(condition, str):
            raise ParameterError("give the context, or a text prompt and the word to remove from it")
        from .prompts import remove_words

        context = remove_words(condition, [word])
    return mutual_information(model, x, condition, context, samples=samples, sampler=sampler,
                              batch_size=batch_size, seed=seed, generator=generator, progress=progress)
