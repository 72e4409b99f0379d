"""``diffpid bench localization``: items of the shapes world or COCO-IT, a resumable run, the table.

Shapes world: scenes from :func:`diffpid.shapes.render.sample_scenes` with a fixed
seed, one item per distinct size, colour or shape word of a caption; the mask is the
union of the masks of every occurrence of that word; the rendered scene plays the real
image (encoded with ``model.encode_image``). COCO-IT: rows of the published CSV with COCO
2017 val images and instance masks (:mod:`diffpid.datasets.coco_it`). Shapes oracle
(``--model shapes-oracle``): the exact denoiser of single centred objects
(:mod:`diffpid.bench.shapes_oracle`) on its own 56 images, what a perfect model gives.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import ParameterError
from ..plan import run_plans
from ..runs.runner import Item, ItemResult, item_functions, item_id, process_state, resolve_items_per_call, run_items
from ..runs.summary import RunSummary, collect
from ..settings import Settings
from .common import LazyModel, item_settings, load_case, model_facts, model_key, settings_parameters
from .localization import (DEFAULTS, METHODS, LocalizationCase, LocalizationWork, MethodScore, check_methods,
                           information_run, localization_result, localization_work, score_methods)
from .metrics import THRESHOLDS
from .tables import ResultTable

ITEM_VERSION = "localization-item/1"
PUBLISHED = {"whole_image": 14.9, "attention": 34.9, "cmi": 33.2, "attention_info": 42.7}
"""mIoU (%) on COCO-IT with Stable Diffusion 2.1-base, 100 samples (Kong et al., ICLR 2024)."""
LABELS = {"cmi": "CMI", "mi": "MI", "attention": "attention (DAAM, DDIM inversion)",
          "attention_info": "attention at information noise levels", "whole_image": "whole image"}

__all__ = ["LocalizationReport", "coco_it_items", "localization_table", "oracle_items", "run_localization",
           "shapes_items"]


def shapes_items(n: int, seed: int = 0) -> list[Item]:
    """``n`` localization items of the shapes world (deterministic for a seed).

    Scenes are drawn with :func:`~diffpid.shapes.render.sample_scenes` (``seed``);
    every distinct size, colour or shape word of a caption is one item, in caption order.
    """
    from ..models.images import to_uint8
    from ..shapes.render import sample_scenes

    if not isinstance(n, int) or n < 1:
        raise ParameterError(f"items must be a positive integer, got {n!r}")
    out: list[Item] = []
    drawn, m = 0, n
    while True:  # scenes with an empty caption give no item: draw more (sample_scenes is prefix-stable)
        for k, s in enumerate(sample_scenes(m, seed)[drawn:], drawn):
            image = to_uint8(s.image[None])[0]
            seen: list[str] = []
            for w in s.words:
                if w.role not in ("size", "color", "shape") or w.text in seen:
                    continue
                seen.append(w.text)
                mask = np.zeros(s.masks.shape[1:], dtype=bool)
                for j, v in enumerate(s.words):
                    if v.text == w.text:
                        mask |= s.masks[j].numpy().astype(bool)
                case = LocalizationCase(image, s.caption, w.text, mask)
                out.append(Item(item_id(ITEM_VERSION, "shapes", seed, k, w.text), case, f"scene {k}: {w.text}"))
                if len(out) == n:
                    return out
        drawn, m = m, 2 * m


def oracle_items(n: int, seed: int = 0) -> list[Item]:
    """``n`` items of the single-object world of :class:`~diffpid.bench.shapes_oracle.ShapesOracle`.

    The 56 centred objects in a seeded order, each with its complete caption ``"a SIZE COLOUR SHAPE"``
    and one item per word; the image is the oracle's component mean, the mask its object.
    """
    from ..shapes.world import Plan, ShapeObject
    from ..shapes.render import render_plans
    from .shapes_oracle import ShapesOracle

    if not isinstance(n, int) or n < 1:
        raise ParameterError(f"items must be a positive integer, got {n!r}")
    oracle = ShapesOracle()
    order = torch.randperm(len(oracle.components), generator=torch.Generator().manual_seed(seed)).tolist()
    out: list[Item] = []
    for k in order:
        colour, shape, size = oracle.components[k]
        _, cov = render_plans([Plan((ShapeObject(shape, colour, size, 16.0, 16.0),), None, ())])
        mask = (cov[0, 0] > 0.5).numpy()
        caption = f"a {size} {colour} {shape}"
        for w in (size, colour, shape):
            case = LocalizationCase(oracle.means[k].float(), caption, w, mask)
            out.append(Item(item_id(ITEM_VERSION, "shapes-oracle", caption, w), case, f"{caption}: {w}"))
            if len(out) == n:
                return out
    return out


def coco_it_items(dataset: Any, n: int | None = None, start: int = 0) -> list[Item]:
    """Items of a :class:`~diffpid.datasets.coco_it.CocoIT` dataset (rows ``start .. start+n``); loaded lazily.

    A row repeating an earlier one (same image, category, caption and word) is the same item and is kept once.
    """
    rows = dataset.rows[start: None if n is None else start + n]
    out, seen = [], set()
    for r in rows:
        i = item_id(ITEM_VERSION, "coco-it", r.image_id, r.label, r.caption, r.word)
        if i not in seen:
            seen.add(i)
            out.append(Item(i, _CocoCase(dataset, r), f"{r.image_id}: {r.word} (line {r.line})"))
    return out


@dataclass(frozen=True)
class _CocoCase:
    """Loads one COCO-IT row as a :class:`LocalizationCase` when called (MI prompt: the category, as published)."""

    dataset: Any
    row: Any

    def __call__(self) -> LocalizationCase:
        r = self.row
        return LocalizationCase(self.dataset.image_path(r), r.caption, r.word, self.dataset.mask(r), mi_prompt=r.label)


@dataclass(frozen=True)
class LocalizationReport:
    """A finished (or partly finished) localization run.

    Args:
        summary: the run's :class:`~diffpid.runs.summary.RunSummary` (folder, counts, failures).
        scores: per method, mIoU at its best threshold over the done items.
        table: the results table.
    """

    summary: RunSummary
    scores: tuple[MethodScore, ...]
    table: ResultTable


class _Stored:
    """IoUs of one stored record, as ``ious(method)``."""

    def __init__(self, values: dict) -> None:
        self.values = values

    def ious(self, method: str) -> np.ndarray:
        return np.asarray(self.values["ious"][method], dtype=np.float64)


def run_localization(items: Sequence[Item], *, out: str, model: Any = None, dataset: str = "shapes",
                     methods: Sequence[str] = METHODS, steps: int = 20, maps: bool = False, state: Any = None,
                     items_per_call: int | None = None, settings: Settings | None = None,
                     **overrides: Any) -> LocalizationReport:
    """Localize every item not yet stored, then score all done items.

    Args:
        items: :class:`~diffpid.runs.runner.Item` whose data is a :class:`LocalizationCase` or loads one.
        out: root folder; the run lives in ``out/localization-<hash of the parameters>/``.
        model: a :class:`~diffpid.models.base.Model`, a folder or hub id, or ``None`` (embedded shapes model).
        dataset: name of the dataset (enters the parameters and the table).
        methods: methods of :data:`~diffpid.bench.localization.METHODS`.
        steps: DDIM inversion steps of the attention baseline.
        maps: also store each method's map (``maps/<id>.npz``).
        state: an ``accelerate.PartialState`` (default: this process).
        items_per_call: most items whose images share denoiser calls (``None``:
            :data:`~diffpid.runs.runner.ITEMS_PER_CALL` on a GPU, 1 on the CPU); it changes neither the
            numbers (up to float rounding) nor the run folder. With ``attention_info`` among the methods
            items run one by one (its attention is captured per image).
        settings: the :class:`~diffpid.settings.Settings` (default
            :data:`~diffpid.bench.localization.DEFAULTS`) or its fields as keywords; ``seed`` is the
            run seed (each item's seed derives from it and the item id); ``device``/``dtype`` load a
            model given by name; ``progress`` is the bar over items.
    """
    settings = Settings.of(settings or DEFAULTS, **overrides)
    methods = check_methods(methods)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ParameterError(f"steps must be a positive integer, got {steps!r}")
    if not items:
        raise ParameterError("no items to run; ask for at least one item")
    params = dict(task="localization", dataset=dataset, model=model_key(model), methods=list(methods),
                  **settings_parameters(settings), steps=steps, seed=settings.seed, engine="one plan per case",
                  thresholds=[float(THRESHOLDS[0]), float(THRESHOLDS[-1]), len(THRESHOLDS)])
    state = process_state(cpu=settings.device == "cpu") if state is None else state
    lazy = LazyModel(model, settings, state)

    quiet = settings.replace(progress=False)
    attend = "attention_info" in methods

    def prepare(item: Item, item_seed: int) -> tuple[Any, LocalizationCase, LocalizationWork, int]:
        """The model, the case, its work (mask, data, plan) and its seed."""
        current = lazy.get()
        case = load_case(item.data)
        return current, case, localization_work(current, case, methods), item_settings(settings, item_seed).seed

    def run(ready: Sequence[tuple[Any, LocalizationCase, LocalizationWork, int]]) -> list[tuple[Any, Any]]:
        """The items' information plans in one engine pass (their images share denoiser calls); with
        attention_info, each item's plan alone, under its own attention capture."""
        m = ready[0][0]
        if attend:
            return [information_run(m, case, w, quiet.replace(seed=seed)) for _, case, w, seed in ready]
        planned = [(w.plan, w.x[0], seed) for _, _, w, seed in ready if w.plan.terms]
        results = iter(run_plans(m, planned, quiet) if planned else ())
        return [(next(results) if w.plan.terms else None, None) for _, _, w, _ in ready]

    def finish(ready: tuple[Any, LocalizationCase, LocalizationWork, int], run_: tuple[Any, Any]) -> ItemResult:
        current, case, work, _ = ready
        r = localization_result(current, case, work, *run_, steps=steps)
        values = {"caption": case.caption, "word": case.word, "cmi": r.cmi, "cmi_stderr": r.cmi_stderr,
                  "mi": r.mi, "mi_stderr": r.mi_stderr, "mask_fraction": float(r.mask.mean()),
                  "ious": {m.method: [float(v) for v in m.ious] for m in r.maps}}
        arrays: dict[str, np.ndarray] = {}
        if maps:
            arrays = {f"map/{m.method}": m.map for m in r.maps}
            arrays["mask"] = r.mask
        return ItemResult(values, arrays)

    compute, compute_group = item_functions(prepare, run, finish)
    # No groups with attention_info: its maps come from hooks on the model's attention layers that count the
    # caption's rows of ONE item's engine run, input by input (AttentionCapture.engine_callback), through a
    # wrapper that labels rows in eps calls (LabelledModel, which cannot take other items' rows in its
    # calls); other items' rows in shared calls would land in the capture. Those items run one by one.
    summary = run_items(items, compute, out=out, parameters=params, seed=settings.seed, name="localization",
                        state=state, progress=settings.progress, compute_group=None if attend else compute_group,
                        items_per_call=resolve_items_per_call(items_per_call, lazy.runs_on()))
    done = [_Stored(r.values) for r in collect(summary.directory, include_failed=False)]
    scores = score_methods(done, methods) if done else ()
    table = localization_table(scores, dataset=dataset, facts=model_facts(model) | {
        "items": len(done), "failed": len(summary.failed), "samples": settings.samples, "inversion steps": steps,
        "sampler": params["sampler"], "seed": settings.seed})
    return LocalizationReport(summary, scores, table)


def localization_table(scores: Sequence[MethodScore], *, dataset: str, facts: dict) -> ResultTable:
    """The results table: mIoU (%) at each method's best threshold, with the published COCO-IT values."""
    rows = []
    for s in scores:
        w = s.sweep
        rows.append((LABELS[s.method], round(100 * w.miou, 2), round(100 * w.stderr, 2), round(w.threshold, 4),
                     PUBLISHED.get(s.method)))
    notes = ["mIoU (%) at the method's best single threshold of linspace(0.1, 0.5, 50); maps upsampled "
             "bilinearly to the mask and min-max normalised per image; standard errors over items.",
             "published: Stable Diffusion 2.1-base on COCO-IT, 100 samples (Kong et al., ICLR 2024); "
             "comparable only on that model and dataset."]
    return ResultTable(f"Localization on {dataset}", ("method", "mIoU %", "stderr %", "best threshold",
                                                    "published mIoU % (SD 2.1, COCO-IT)"), tuple(rows), tuple(notes),
                       facts)
