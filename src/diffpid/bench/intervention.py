"""Prompt intervention (Kong et al., ICLR 2024, section 5; SCIENCE.md section 5).

For an image ``x`` with its caption and a word of it:

1. invert ``x`` under the caption with deterministic DDIM (eta 0, :func:`diffpid.sampling.ddim_invert`)
   down to the bottom of the model's log-SNR range clipped to -12 (Stable Diffusion: its
   own top noise level, -5.36), or to a chosen ``lowest`` level;
2. regenerate from the inverted noise under the unchanged caption (the *reconstruction*,
   whose error against ``x`` says how faithful the inversion is) and under the caption with
   the word omitted (or swapped for another word, :func:`diffpid.prompts.replace_word`);
3. the *change* per pixel is the squared difference of the edited and the reconstructed
   data (latents or pixels) summed over channels, ``(h, w)``; comparing with the
   reconstruction rather than ``x`` cancels the inversion's own error;
4. the word's information: the pixel map and total of ``i_o(x; caption | edited caption)``,
   which for an omitted word is its CMI given the rest of the caption; its attention: DAAM
   along the DDIM inversion of ``x`` under the caption (:func:`diffpid.attention_maps`).

Across items: Pearson's r of the total change with the image-level information and with
the attention total (image level), and per image across pixels, averaged (pixel level), with
bootstrap standard errors over items (:mod:`diffpid.bench.correlation`). Published on COCO
with SD 2.1-base: CMI 0.34 / 0.27 (image / pixel), attention 0.24 / 0.21.

Published detail not copied: the official code inverts with a second-order (Heun) solver on
a Karras schedule; here DDIM, first order, on a grid uniform in log-SNR, as the issue asks;
both use the conditional prediction only (no guidance) by default. The depth of the
inversion is a trade-off that the reconstruction error and the edits' size show. Measured on
the shapes model (checkpoint at step 200, three scenes; relative errors ``||.||^2 / ||x||^2``):
to -6 with 25 steps the reconstruction error is 0.005 but omitting a word changes the image by
only 0.0002 (layout and colours are fixed by then); to -9 with 50 steps, 0.01 and 0.001-0.008;
to -12 with 50 steps, 0.3 (too few steps); to -12 with 100 steps, 0.03-0.04 and 0.02-0.2, so
the bench defaults to 100 steps over the full range.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import ConditionError, ParameterError
from ..models.base import Model
from ..settings import Settings
from .correlation import Estimate, image_level_correlation, pixel_level_correlation

DEFAULTS = Settings(samples=32)
"""The bench's estimator settings unless told otherwise."""

__all__ = ["DEFAULTS", "Intervention", "InterventionCase", "InterventionSummary", "InterventionWork", "intervene",
           "intervention_result", "intervention_work", "summarize_interventions"]


@dataclass(frozen=True)
class InterventionCase:
    """One intervention: a word of a caption omitted (or replaced) in the regeneration of an image.

    Args:
        image: what ``model.encode_image`` reads (path, PIL image, uint8 array), a
            ``(*data_shape)`` tensor of model data used as it is, or ``None`` to generate
            the image from the caption with the item's seed.
        caption: the caption the image is inverted under.
        word: a word (or phrase) of the caption.
        replacement: the word to put in its place (a swap); ``None`` omits the word.
    """

    image: Any
    caption: str
    word: str
    replacement: str | None = None


@dataclass(frozen=True)
class Intervention:
    """What one intervention measured.

    Args:
        caption, word, edited: the caption, the word, and the caption of the regeneration.
        information, information_stderr: ``i_o(x; caption | edited)`` in nats (the word's CMI when omitted).
        change: total squared change of the edited regeneration against the reconstruction.
        reconstruction_mse: mean squared error per coordinate of the reconstruction against ``x``.
        reconstruction_relative: ``||x_rec - x||^2 / ||x||^2``.
        attention: total of the word's attention map (``None`` without attention).
        standard_information: the standard estimate ``i = log p(x|caption) / p(x|edited)`` of the same run.
        change_map, information_map: ``(h, w)`` per-pixel change and information.
        standard_map: ``(h, w)`` per-pixel standard estimate.
        attention_map: ``(h, w)`` attention (``None`` without attention).
        x, reconstruction, edited_x: ``(*data_shape)`` the data, its reconstruction and the edit.
    """

    caption: str
    word: str
    edited: str
    information: float
    information_stderr: float
    change: float
    reconstruction_mse: float
    reconstruction_relative: float
    attention: float | None
    change_map: np.ndarray
    information_map: np.ndarray
    attention_map: np.ndarray | None
    x: np.ndarray
    reconstruction: np.ndarray
    edited_x: np.ndarray
    standard_information: float = float("nan")
    standard_map: np.ndarray | None = None

    def values(self) -> dict[str, Any]:
        """The scalar results as a JSON-ready mapping (what a run stores per item)."""
        return {"caption": self.caption, "word": self.word, "edited": self.edited, "information": self.information,
                "information_stderr": self.information_stderr, "change": self.change,
                "reconstruction_mse": self.reconstruction_mse,
                "reconstruction_relative": self.reconstruction_relative, "attention": self.attention,
                "standard_information": self.standard_information}

    def arrays(self) -> dict[str, np.ndarray]:
        """The maps and data as float32 arrays (what a run stores beside the values)."""
        out = {"change_map": self.change_map, "information_map": self.information_map, "x": self.x,
               "reconstruction": self.reconstruction, "edited_x": self.edited_x}
        if self.attention_map is not None:
            out["attention_map"] = self.attention_map
        if self.standard_map is not None:
            out["standard_map"] = self.standard_map
        return {k: np.asarray(v, dtype=np.float32) for k, v in out.items()}


def edited_caption(case: InterventionCase) -> str:
    """The caption of the regeneration: the word removed, or replaced by ``case.replacement``."""
    from ..prompts import find_word, remove_words, replace_word

    find_word(case.caption, case.word)  # raises ConditionError when the word is missing
    if case.replacement is None:
        edited = remove_words(case.caption, [case.word])
    else:
        if not case.replacement.strip():
            raise ParameterError("the replacement word is empty; give a word, or None to omit the word")
        edited = replace_word(case.caption, case.word, case.replacement)
    if edited.strip().lower() == case.caption.strip().lower():
        raise ConditionError(f"editing {case.word!r} leaves {case.caption!r} unchanged; choose another word")
    return edited


def case_data(model: Model, case: InterventionCase, seed: int) -> torch.Tensor:
    """``(1, *data_shape)`` model data of the case's image (generated from the caption when ``None``)."""
    if case.image is None:
        return model.generate(case.caption, seed=seed).x.to(torch.float32)
    if isinstance(case.image, torch.Tensor):
        return model.check_x(case.image.to(torch.float32))
    return model.encode_image(case.image).to(torch.float32)


def intervene(
    model: Model,
    case: InterventionCase,
    *,
    steps: int = 100,
    guidance: float = 1.0,
    lowest: float | None = None,
    attention: bool = True,
    settings: Settings | None = None,
    **overrides: Any,
) -> Intervention:
    """Invert, reconstruct and edit one image; measure the change, the information and the attention.

    Args:
        model: the denoiser.
        case: image, caption, word and optional replacement.
        steps: DDIM steps of the inversion and of each regeneration (also of the attention's inversion).
        guidance: classifier-free guidance of the inversion and regenerations (1 = none).
        lowest: the log-SNR the inversion stops at (when above the model's range; ``None``: the
            bottom of the range clipped to -12).
        attention: also map the word's attention (models with a diffusers UNet only).
        settings: the estimator :class:`~diffpid.settings.Settings` of the information estimate
            (default :data:`DEFAULTS`: 32 samples) or its fields as keywords; ``seed`` also seeds a
            generated image.
    """
    settings = Settings.of(settings or DEFAULTS, **overrides)
    work = intervention_work(model, case, steps=steps, guidance=guidance, lowest=lowest, seed=settings.seed)
    info = work.plan.run(model, work.x[0], settings).mi["information"]
    return intervention_result(model, case, work, info, steps=steps, attention=attention)


@dataclass(frozen=True)
class InterventionWork:
    """What :func:`intervene` does before the information estimate (:func:`intervention_work`).

    Args:
        edited: the caption of the regeneration.
        x, reconstruction, edited_x: ``(1, *data_shape)`` the data, its reconstruction and the edit.
        mse, relative: the reconstruction's round-trip errors.
        change_map: ``(h, w)`` squared change of the edit against the reconstruction, summed over channels.
        plan: the :class:`~diffpid.plan.Plan` of ``i_o(x; caption | edited)`` (``mi["information"]``).
    """

    edited: str
    x: torch.Tensor
    reconstruction: torch.Tensor
    edited_x: torch.Tensor
    mse: float
    relative: float
    change_map: np.ndarray
    plan: Any


def intervention_work(model: Model, case: InterventionCase, *, steps: int = 100, guidance: float = 1.0,
                      lowest: float | None = None, seed: int = 0) -> InterventionWork:
    """Steps 1-3 of :func:`intervene`: the data (generated with ``seed`` when the case has no image),
    its inversion, reconstruction and edit, the change, and the plan of the word's information."""
    from ..plan import Plan
    from ..sampling import ddim_generate, ddim_invert, round_trip_error

    edited = edited_caption(case)
    x = case_data(model, case, seed)  # (1, *data_shape)
    full, edit = model.encode_prompt(case.caption), model.encode_prompt(edited)
    noise = ddim_invert(model, x, full, steps, guidance=guidance, lowest=lowest)
    rec = ddim_generate(model, noise, full, steps, guidance=guidance, lowest=lowest)
    out = ddim_generate(model, noise, edit, steps, guidance=guidance, lowest=lowest)
    mse, rel = round_trip_error(x, rec)
    change_map = (out - rec).pow(2).sum(1)[0].double().cpu().numpy()  # (h, w)
    # i_o(x; caption | edited) from the conditions encoded above (each evaluated once)
    return InterventionWork(edited, x, rec, out, mse, rel, change_map, Plan().mi("information", full, edit))


def intervention_result(model: Model, case: InterventionCase, work: InterventionWork, info: Any, *,
                        steps: int = 100, attention: bool = True) -> Intervention:
    """Step 4 of :func:`intervene` after the estimate ``info`` of ``work.plan``: the word's attention along
    the DDIM inversion (``steps``; when ``attention`` and the model can), and the :class:`Intervention`."""
    from ..attention import attention_maps

    x, change_map = work.x, work.change_map
    att_map, att = None, None
    if attention and model.has("attention"):
        size = tuple(change_map.shape)
        maps = attention_maps(model, x[0], [case.word], case.caption, method="inversion", steps=steps, size=size)
        att_map = np.asarray(maps[case.word], dtype=np.float64)
        att = float(att_map.sum())
    return Intervention(
        case.caption, case.word, work.edited, float(info.value), float(info.stderr), float(change_map.sum()),
        work.mse, work.relative, att, change_map, np.asarray(info.pixel_map, dtype=np.float64), att_map,
        x[0].cpu().numpy(), work.reconstruction[0].cpu().numpy(), work.edited_x[0].cpu().numpy(),
        float(info.standard_value), np.asarray(info.standard_map, dtype=np.float64),
    )


@dataclass(frozen=True)
class InterventionSummary:
    """Correlations of image change with information and attention over items.

    Args:
        image_information, pixel_information: Pearson's r of the change with ``i_o`` across items
            (totals) and across pixels (per image, averaged), with bootstrap errors.
        image_attention, pixel_attention: the same for attention (``None`` without attention maps).
        image_information_rank: Spearman's rho of the totals (robust to a few huge changes).
        image_standard, pixel_standard: the correlations with the standard estimator ``i`` instead
            of ``i_o`` (``None`` when the results lack it).
        reconstruction_mse, reconstruction_relative: mean round-trip errors over items.
        relative_change: mean ``||x_edit - x_rec||^2 / ||x||^2`` (the edits' scale, to compare
            with the reconstruction error).
        items: number of items.
    """

    image_information: Estimate
    pixel_information: Estimate
    image_attention: Estimate | None
    pixel_attention: Estimate | None
    image_information_rank: Estimate
    reconstruction_mse: float
    reconstruction_relative: float
    relative_change: float
    items: int
    image_standard: Estimate | None = None
    pixel_standard: Estimate | None = None


def summarize_interventions(results: Sequence[Intervention], *, resamples: int = 1000,
                            seed: int = 0) -> InterventionSummary:
    """Image- and pixel-level correlations of a set of interventions (bootstrap over items).

    Args:
        results: per-item :class:`Intervention` results.
        resamples, seed: bootstrap resamples and their seed.
    """
    if not results:
        raise ParameterError("no interventions to summarise; run at least one item")
    change = [r.change for r in results]
    info = [r.information for r in results]
    kw = dict(resamples=resamples, seed=seed)
    with_att = [r for r in results if r.attention_map is not None]
    image_att = pixel_att = None
    if with_att:
        image_att = image_level_correlation([r.change for r in with_att], [r.attention for r in with_att], **kw)
        pixel_att = pixel_level_correlation([r.change_map for r in with_att], [r.attention_map for r in with_att], **kw)
    rel_change = [r.change / max(float(np.square(r.x).sum()), 1e-30) for r in results]
    image_std = pixel_std = None
    if all(r.standard_map is not None for r in results):
        image_std = image_level_correlation(change, [r.standard_information for r in results], **kw)
        pixel_std = pixel_level_correlation([r.change_map for r in results], [r.standard_map for r in results], **kw)
    return InterventionSummary(
        image_level_correlation(change, info, **kw),
        pixel_level_correlation([r.change_map for r in results], [r.information_map for r in results], **kw),
        image_att, pixel_att, image_level_correlation(change, info, rank=True, **kw),
        float(np.mean([r.reconstruction_mse for r in results])),
        float(np.mean([r.reconstruction_relative for r in results])), float(np.mean(rel_change)), len(results),
        image_std, pixel_std,
    )
