"""Public entry points for mutual information and conditional mutual information.

Both are a one-measurement :class:`~diffpid.plan.Plan`: one engine run over two
conditions. They share the argument order ``(model, x, condition..., settings)`` with
:func:`diffpid.pid` and :func:`diffpid.attention_maps`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .engine.estimate import Curve
from .errors import ParameterError
from .models.base import Model
from .plan import Plan
from .settings import Settings


@dataclass(frozen=True)
class Information:
    """A value in nats with its standard error, pixel map and map standard error: the one
    result type of diffpid (MI, CMI, every PID atom).

    For a single input the fields are scalars and ``(*map_shape)`` maps; for a batch
    they carry a leading batch dimension.

    Args:
        value, stderr: the estimate (for MI/CMI the orthogonal ``i_o`` >= 0) and its standard error.
        pixel_map, pixel_stderr: per-pixel values (summed over channels; for MI/CMI they sum to
            ``value``; for the integrated PID redundancy they are per-pixel minima, which do not).
        standard_value, standard_stderr, standard_map: the standard estimator ``i`` (can be
            negative; MI and CMI only, ``None`` for PID atoms).
        curve: ``E||e(x_a|y) - e(x_a|ref)||^2`` per log-SNR bin (MI and CMI only).
        samples: ``(a, eps)`` draws used.
    """

    value: Any
    stderr: Any
    pixel_map: Any = None
    pixel_stderr: Any = None
    standard_value: Any = None
    standard_stderr: Any = None
    standard_map: Any = None
    curve: Curve | None = None
    samples: int | None = None

    def _repr_html_(self) -> str:
        from .report.notebook import information_html

        return information_html(self)


def pick_image(single: bool):
    """Unbatch per-image arrays for a single input: ``(1,)`` to a float, ``(1, ...)`` to ``(...)``."""
    if not single:
        return lambda v: v
    return lambda v: v[0].item() if v.ndim == 1 else v[0]


def information_from(term: Any, samples: int, single: bool) -> Information:
    """Package one engine term estimate as :class:`Information`."""
    pick = pick_image(single)
    c = term.curve
    curve = Curve(c.logsnr, c.mean[0] if single else c.mean, c.count[0] if single else c.count)
    return Information(
        pick(term.value), pick(term.stderr), pick(term.pixel_map), pick(term.pixel_stderr),
        pick(term.standard_value), pick(term.standard_stderr), pick(term.standard_map), curve, samples,
    )


def mutual_information(model: Model, x: torch.Tensor, condition: Any, reference: Any = None,
                       settings: Settings | None = None, **overrides: Any) -> Information:
    """Pointwise MI ``i(x; condition)`` against ``reference`` (default: unconditional).

    Args:
        model: the denoiser.
        x: ``(*data_shape)`` or ``(b, *data_shape)`` data (latents or pixels).
        condition: a prompt (string), label mapping, or a condition built by the model.
        reference: the condition to compare with; the empty prompt when omitted.
        settings: a :class:`~diffpid.settings.Settings`; its fields can also be given as
            keywords (``samples=128, seed=1``).
    """
    settings = Settings.of(settings, **overrides)
    return Plan().mi("mi", condition, reference).run(model, x, settings).mi["mi"]


def conditional_mutual_information(model: Model, x: torch.Tensor, condition: Any, context: Any = None, *,
                                   word: str | None = None, settings: Settings | None = None,
                                   **overrides: Any) -> Information:
    """Pointwise CMI ``i(x; y | c)``: the full ``condition`` (y and c) against ``context`` c.

    For text models pass the prompt and ``word``: the context is the prompt with that
    word removed (:func:`diffpid.prompts.remove_words`).

    Args:
        condition: the full prompt or condition ``(y, c)``.
        context: the context ``c`` alone; derived from ``word`` when omitted.
        word: for text prompts, the word ``y`` whose information is measured.
        settings, keywords: as :func:`mutual_information`.
    """
    settings = Settings.of(settings, **overrides)
    if context is None:
        if word is None or not isinstance(condition, str):
            raise ParameterError("give the context, or a text prompt and the word to remove from it")
        from .prompts import find_word, remove_words

        find_word(condition, word)
        context = remove_words(condition, [word])
    return Plan().cmi("cmi", condition, context).run(model, x, settings).cmi["cmi"]
