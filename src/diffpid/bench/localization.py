"""Unsupervised localization (Kong et al., ICLR 2024, section 5; SCIENCE.md section 5).

For each (image, caption, word, mask), every method gives a map of where the word is:

- ``cmi``: the pixel map of ``i_o(x; word | caption without the word)``;
- ``mi``: the pixel map of ``i_o(x; word)`` against the empty prompt (the published MI
  variant conditions on the object alone: COCO-IT's category name);
- ``attention``: DAAM cross-attention of the word along a deterministic DDIM inversion of
  the image under the caption (a trajectory);
- ``attention_info``: DAAM attention collected at the noise levels the information
  estimator draws, on the caption's rows of the same engine run as ``cmi`` and ``mi``
  (one :class:`~diffpid.plan.Plan` per case);
- ``whole_image``: a constant map (the whole image predicted).

Each map is upsampled bilinearly to the mask, min-max normalised, binarised over
``linspace(0.1, 0.5, 50)`` and scored by IoU (:mod:`diffpid.bench.metrics`); the bench
reports mIoU at each method's best single threshold. The context of the CMI is always
:func:`diffpid.prompts.remove_words` of the caption (whole words, tidy punctuation), not a
raw substring deletion.

Benches are a list of :class:`~diffpid.runs.runner.Item` (whose ``data`` loads a
:class:`LocalizationCase`) and a per-item function, run through :func:`diffpid.runs.runner.run_items`
so that ``diffpid bench localization`` resumes where it stopped.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..errors import ParameterError, ShapeError
from ..models.base import Model
from ..settings import Settings
from .metrics import THRESHOLDS, ThresholdSweep, best_threshold, iou_sweep

METHODS = ("cmi", "mi", "attention", "attention_info", "whole_image")
"""Every localization method, in table order."""
ATTENTION_METHODS = ("attention", "attention_info")
DEFAULTS = Settings(samples=32)
"""The bench's estimator settings unless told otherwise (papers: 100 samples)."""

__all__ = ["ATTENTION_METHODS", "DEFAULTS", "LocalizationCase", "LocalizationResult", "LocalizationWork", "METHODS",
           "MethodMap", "MethodScore", "check_methods", "information_run", "localization_result", "localization_work",
           "localize", "resize_mask", "score_methods"]


@dataclass(frozen=True)
class LocalizationCase:
    """One word to localize in one image.

    Args:
        image: what ``model.encode_image`` reads (path, PIL image, ``(H, W, 3)`` uint8 array), or a
            ``(*data_shape)`` tensor of model data (latent or pixels) used as it is.
        caption: the caption; the word must occur in it as a whole word.
        word: the word (or phrase) whose location is sought.
        mask: ``(H, W)`` boolean ground truth of where the word's object is.
        mi_prompt: the prompt of the MI map (against ``""``); default the word itself.
    """

    image: Any
    caption: str
    word: str
    mask: np.ndarray
    mi_prompt: str | None = None


@dataclass(frozen=True)
class MethodMap:
    """One method's map for one case.

    Args:
        method: a name of :data:`METHODS`.
        map: ``(h, w)`` float32 map at the method's own resolution (latent for information maps).
        ious: ``(n_thr,)`` IoU against the mask at every threshold of the sweep.
    """

    method: str
    map: np.ndarray
    ious: np.ndarray


@dataclass(frozen=True)
class LocalizationResult:
    """Maps and IoUs of every method for one case, and the information values (nats).

    Args:
        maps: one :class:`MethodMap` per requested method, in :data:`METHODS` order.
        cmi, cmi_stderr: image-level ``i_o(x; word | context)`` (NaN when not computed).
        mi, mi_stderr: image-level ``i_o(x; mi_prompt)`` against ``""`` (NaN when not computed).
        mask: ``(H, W)`` the mask the maps were scored against (resized to the model's image size).
    """

    maps: tuple[MethodMap, ...]
    cmi: float
    cmi_stderr: float
    mi: float
    mi_stderr: float
    mask: np.ndarray

    def ious(self, method: str) -> np.ndarray:
        """``(n_thr,)`` IoUs of ``method``."""
        for m in self.maps:
            if m.method == method:
                return m.ious
        raise ParameterError(f"{method!r} was not computed; methods: {[m.method for m in self.maps]}")


def check_methods(methods: Sequence[str]) -> tuple[str, ...]:
    """The requested methods in table order; unknown names raise :class:`ParameterError`."""
    methods = [methods] if isinstance(methods, str) else list(methods)
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise ParameterError(f"unknown localization methods {bad}; choose from {', '.join(METHODS)}")
    return tuple(m for m in METHODS if m in methods)


def resize_mask(mask: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """A boolean ``(H, W)`` mask resized to ``size = (h, w)`` with nearest-neighbour sampling (as the image is)."""
    from PIL import Image

    m = np.asarray(mask)
    if m.ndim != 2:
        raise ShapeError(f"a mask must be (H, W), got shape {m.shape}")
    m = m.astype(bool)
    if size is None or tuple(size) == m.shape:
        return m
    im = Image.fromarray(m.astype(np.uint8) * 255).resize((int(size[1]), int(size[0])), Image.NEAREST)
    return np.asarray(im) > 127


def model_data(model: Model, image: Any) -> torch.Tensor:
    """``(1, *data_shape)`` model data of an image (encoded) or of a data tensor (checked)."""
    if isinstance(image, torch.Tensor) and tuple(image.shape[-len(model.data_shape):]) == tuple(model.data_shape):
        return model.check_x(image.reshape(-1, *model.data_shape)[:1].float())
    return model.encode_image(image)


def localize(
    model: Model,
    case: LocalizationCase,
    *,
    methods: Sequence[str] = METHODS,
    steps: int = 20,
    thresholds: Sequence[float] = THRESHOLDS,
    settings: Settings | None = None,
    **overrides: Any,
) -> LocalizationResult:
    """Maps of every method for one case and their IoU sweeps.

    The information methods are ONE :class:`~diffpid.plan.Plan` (the word's CMI given the
    caption without it, its MI against ``""``), and ``attention_info`` is collected on the
    caption's rows of the same denoiser calls, so all three share the ``(a, eps)`` draws.

    Args:
        model: the denoiser; the attention methods need the ``"attention"`` capability.
        case: the image, caption, word and mask.
        methods: which of :data:`METHODS` to compute.
        steps: DDIM inversion steps of ``attention``.
        thresholds: ``(n_thr,)`` the sweep.
        settings: the estimator :class:`~diffpid.settings.Settings` (default :data:`DEFAULTS`: 32
            samples) or its fields as keywords; ``seed`` seeds the information estimates (the
            inversion is deterministic).

    Raises:
        ConditionError: the word is not in the caption (or the caption cannot be encoded).
    """
    settings = Settings.of(settings or DEFAULTS, **overrides)
    work = localization_work(model, case, methods)
    result, capture = information_run(model, case, work, settings)
    return localization_result(model, case, work, result, capture, steps=steps, thresholds=thresholds)


@dataclass(frozen=True)
class LocalizationWork:
    """A case ready for its engine run (:func:`localization_work`).

    Args:
        methods: the methods asked for, in table order.
        mask: ``(H, W)`` the mask resized to the model's image size.
        x: ``(1, *data_shape)`` the model data of the image.
        plan: the information methods' :class:`~diffpid.plan.Plan` (no terms when none is asked for).
    """

    methods: tuple[str, ...]
    mask: np.ndarray
    x: torch.Tensor
    plan: Any


def localization_work(model: Model, case: LocalizationCase, methods: Sequence[str] = METHODS) -> LocalizationWork:
    """What :func:`localize` prepares before the engine run: the checked word, the mask, the data and the plan
    (the word's CMI given the caption without it, for ``cmi`` and ``attention_info``; its MI against ``""``)."""
    from ..plan import Plan
    from ..prompts import find_word, remove_words

    methods = check_methods(methods)
    find_word(case.caption, case.word)
    size = model.resolution
    mask = resize_mask(case.mask, tuple(size) if size is not None else None)
    x = model_data(model, case.image)
    plan = Plan()
    if "cmi" in methods or "attention_info" in methods:
        plan.cmi(case.word, case.caption, remove_words(case.caption, [case.word]))
    if "mi" in methods:
        plan.mi(case.word, case.mi_prompt or case.word, "")
    return LocalizationWork(methods, mask, x, plan)


def information_run(model: Model, case: LocalizationCase, work: LocalizationWork, settings: Settings
                    ) -> tuple[Any, Any]:
    """The engine run of ``work.plan`` and, with ``attention_info``, the attention capture of the caption's
    rows of the same denoiser calls (``(None, None)`` when no information method is asked for)."""
    from ..explanation import _run as run_plan

    if not work.plan.terms:
        return None, None
    attend = case.caption if "attention_info" in work.methods else None
    return run_plan(model, work.x[0], work.plan, attend, [case.word], settings)


def localization_result(model: Model, case: LocalizationCase, work: LocalizationWork, result: Any, capture: Any,
                        *, steps: int = 20, thresholds: Sequence[float] = THRESHOLDS) -> LocalizationResult:
    """What :func:`localize` does after the engine run: the information maps from ``result`` (the run of
    ``work.plan``, ``None`` without one), attention at its noise levels from ``capture``, the inversion's
    attention (``steps`` DDIM steps), the whole-image map, and every map's IoU sweep."""
    from ..attention import attention_maps

    mask, maps = work.mask, {}
    cmi = cmi_se = mi = mi_se = float("nan")
    if result is not None:
        if case.word in result.cmi:
            info = result.cmi[case.word]
            cmi, cmi_se = float(info.value), float(info.stderr)
            maps["cmi"] = np.asarray(info.pixel_map, dtype=np.float32)
        if case.word in result.mi:
            r_mi = result.mi[case.word]
            mi, mi_se = float(r_mi.value), float(r_mi.stderr)
            maps["mi"] = np.asarray(r_mi.pixel_map, dtype=np.float32)
    if capture is not None:
        a = capture.maps([case.word], case.caption, image=0, size=mask.shape)
        maps["attention_info"] = np.asarray(a[case.word], dtype=np.float32)
    if "attention" in work.methods:
        a = attention_maps(model, work.x[0], [case.word], case.caption, method="inversion", steps=steps,
                           size=mask.shape)
        maps["attention"] = np.asarray(a.maps[0], dtype=np.float32)
    if "whole_image" in work.methods:
        maps["whole_image"] = np.zeros(mask.shape, dtype=np.float32)
    out = tuple(MethodMap(m, maps[m], iou_sweep(maps[m], mask, thresholds)) for m in work.methods)
    return LocalizationResult(out, cmi, cmi_se, mi, mi_se, mask)


@dataclass(frozen=True)
class MethodScore:
    """A method's mIoU over a dataset at its best threshold (:class:`~diffpid.bench.metrics.ThresholdSweep`)."""

    method: str
    sweep: ThresholdSweep


def score_methods(ious: Sequence[Callable[[str], np.ndarray]] | Sequence[LocalizationResult],
                  methods: Sequence[str], thresholds: Sequence[float] = THRESHOLDS) -> tuple[MethodScore, ...]:
    """mIoU at the best single threshold of each method over results (or objects with ``ious(method)``)."""
    out = []
    for m in check_methods(methods):
        rows = np.stack([r.ious(m) if hasattr(r, "ious") else r(m) for r in ious])
        out.append(MethodScore(m, best_threshold(rows, thresholds)))
    return tuple(out)
