"""``diffpid bench compositional``: ARO or shapes-world items, a resumable run, accuracy tables.

Datasets: ``shapes-attribute`` and ``shapes-relation`` (the shapes world's swap sets),
``vg-relation``, ``vg-attribution``, ``coco-order``, ``flickr-order`` (ARO files on disk,
:mod:`diffpid.datasets.aro`). Macro accuracy follows ARO: VG-Relation without the symmetric
relations, VG-Attribution over attribute pairs with at least 25 items; the shapes sets
average over swapped attributes / relation words.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np

from ..errors import ParameterError
from ..plan import run_jobs
from ..runs.runner import Item, ItemResult, item_functions, item_id, process_state, resolve_items_per_call, run_items
from ..runs.summary import RunSummary, collect
from ..settings import Settings
from .common import LazyModel, item_settings, load_case, model_facts, model_key, settings_parameters
from .compositional import (DEFAULTS, ITEM_VERSION, CompositionalCase, caption_job, caption_scores,
                            shapes_attribute_items, shapes_relation_items, shapes_single_items)
from .localization import model_data
from .metrics import Accuracy, MacroAccuracy, accuracy, macro_accuracy
from .tables import ResultTable

DATASETS = ("shapes-attribute", "shapes-relation", "shapes-single", "vg-relation", "vg-attribution", "coco-order",
            "flickr-order")
PUBLISHED = {"vg-relation": (72.0, 64.6), "vg-attribution": (69.1, 51.4), "coco-order": (40.1, 32.8),
             "flickr-order": (49.3, 40.5)}
"""Macro accuracy (%) of Stable Diffusion 2.1-base (Kong et al., ICLR 2024) and CLIP (ARO)."""

__all__ = ["CompositionalReport", "DATASETS", "MarginSummary", "aro_items", "compositional_items",
           "compositional_table", "macro_filters", "margin_summary", "run_compositional"]


@dataclass(frozen=True)
class _AroLoader:
    """Loads one ARO case as a :class:`CompositionalCase` when called (the image cropped to its box)."""

    case: Any

    def __call__(self) -> CompositionalCase:
        c = self.case
        return CompositionalCase(c.load_image(), c.captions, c.correct, c.group)


def aro_items(cases: Sequence[Any], dataset: str) -> list[Item]:
    """Items of ARO cases (:class:`~diffpid.datasets.aro.AroCase`), images read lazily."""
    return [Item(item_id(ITEM_VERSION, dataset, c.index, c.image_path, list(c.captions)), _AroLoader(c),
                 f"{dataset} {c.index}") for c in cases]


def compositional_items(dataset: str, *, n: int | None = None, seed: int = 0, root: str | None = None,
                        images: str | None = None, start: int = 0) -> list[Item]:
    """The items of a dataset of :data:`DATASETS`.

    Args:
        dataset: its name.
        n: how many (default: 32 for the shapes sets, all for ARO).
        seed: the shapes world's seed.
        root: ARO folder (VG: ``visual_genome_*.json`` and ``images/``; order sets: the test-case
            JSON file or its folder).
        images: image folder (order sets: the COCO 2014 / Flickr30k root; VG: overrides ``ROOT/images``).
        start: first ARO item.
    """
    from ..datasets import aro

    if dataset not in DATASETS:
        raise ParameterError(f"unknown dataset {dataset!r}; choose from {', '.join(DATASETS)}")
    if dataset.startswith("shapes-"):
        make = {"shapes-attribute": shapes_attribute_items, "shapes-relation": shapes_relation_items,
                "shapes-single": shapes_single_items}[dataset]
        return make(32 if n is None else n, seed)
    if root is None:
        raise ParameterError(f"{dataset} reads ARO files from disk: pass --root (and --images for the order sets)")
    if dataset == "vg-relation":
        cases = aro.read_vg_relation(root, images)
    elif dataset == "vg-attribution":
        cases = aro.read_vg_attribution(root, images)
    else:
        if images is None:
            raise ParameterError(f"{dataset} needs --images: the folder the test cases' image paths start from")
        cases = aro.read_order(root, images, prefix="coco_order" if dataset == "coco-order" else "flickr30k_order")
    cases = cases[start: None if n is None else start + n]
    return aro_items(cases, dataset)


def macro_filters(dataset: str) -> tuple[int, frozenset]:
    """ARO's macro filters of a dataset: ``(min_count, excluded groups)``."""
    from ..datasets.aro import SYMMETRIC_RELATIONS, VG_ATTRIBUTION_MIN_COUNT

    if dataset == "vg-relation":
        return 1, SYMMETRIC_RELATIONS
    if dataset == "vg-attribution":
        return VG_ATTRIBUTION_MIN_COUNT, frozenset()
    return 1, frozenset()


@dataclass(frozen=True)
class MarginSummary:
    """How far the correct caption's score lies above the wrong ones, over items (nats).

    Args:
        mean, stderr: mean over items of the average margin ``score[correct] - score[j]`` over the wrong
            candidates ``j`` (0 in expectation for a model that cannot tell them apart), and its
            standard error over items.
        sure_right: fraction of items whose margin over every wrong candidate exceeds 2 of its paired
            Monte Carlo standard errors.
        sure_wrong: fraction of items where some wrong candidate beats the correct one by more than 2
            paired standard errors (the rest are undecided at this number of samples).
    """

    mean: float
    stderr: float
    sure_right: float
    sure_wrong: float


def margin_summary(margins: Sequence[Sequence[float]], stderr: Sequence[Sequence[float]],
                   correct: Sequence[int]) -> MarginSummary:
    """:class:`MarginSummary` of per-item margins ``(k,)`` (0 at the correct index) and their paired errors."""
    if not margins:
        return MarginSummary(float("nan"), float("nan"), float("nan"), float("nan"))
    avg, right, wrong = [], [], []
    for m, se, c in zip(margins, stderr, correct):
        js = [j for j in range(len(m)) if j != c]
        avg.append(float(np.mean([m[j] for j in js])))
        right.append(all(m[j] > 2 * se[j] for j in js))
        wrong.append(any(m[j] < -2 * se[j] for j in js))
    a = np.asarray(avg, dtype=np.float64)
    n = len(a)
    return MarginSummary(float(a.mean()), float(a.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan"),
                         float(np.mean(right)), float(np.mean(wrong)))


@dataclass(frozen=True)
class CompositionalReport:
    """A compositional run: micro and macro accuracy of both estimators, and the table.

    Args:
        summary: the run's :class:`~diffpid.runs.summary.RunSummary`.
        micro, macro: accuracy of the orthogonal scores ``i_o``.
        standard_micro, standard_macro: accuracy of the standard scores ``i``.
        margin, standard_margin: margins of the correct caption over the best wrong one.
        chance: expected accuracy of a random pick (mean of ``1/k``).
        table: the results table.
    """

    summary: RunSummary
    micro: Accuracy
    macro: MacroAccuracy
    standard_micro: Accuracy
    standard_macro: MacroAccuracy
    margin: MarginSummary
    standard_margin: MarginSummary
    chance: float
    table: ResultTable


def run_compositional(items: Sequence[Item], *, out: str, dataset: str, model: Any = None,
                      min_count: int | None = None, exclude: Iterable[str] | None = None, state: Any = None,
                      items_per_call: int | None = None, settings: Settings | None = None,
                      **overrides: Any) -> CompositionalReport:
    """Score every item not yet stored, then the accuracies over all done items.

    Args:
        items: :class:`~diffpid.runs.runner.Item` whose data is a :class:`CompositionalCase` or loads one.
        out: root folder; the run lives in ``out/compositional-<hash of the parameters>/``.
        dataset: the dataset's name (parameters, table, default macro filters).
        model: a :class:`~diffpid.models.base.Model`, a folder or hub id, or ``None`` (embedded shapes model).
        min_count, exclude: macro filters (default :func:`macro_filters` of the dataset).
        state: an ``accelerate.PartialState`` (default: this process).
        items_per_call: most items whose images share denoiser calls (``None``:
            :data:`~diffpid.runs.runner.ITEMS_PER_CALL` on a GPU, 1 on the CPU); it changes neither the
            numbers (up to float rounding) nor the run folder.
        settings: the :class:`~diffpid.settings.Settings` (default
            :data:`~diffpid.bench.compositional.DEFAULTS`: 100 samples per image, shared by every
            candidate and ``""``) or its fields as keywords; ``seed`` is the run seed (each item's
            seed derives from it and the item id); ``device``/``dtype`` load a model given by name.
    """
    settings = Settings.of(settings or DEFAULTS, **overrides)
    if not items:
        raise ParameterError("no items to run; ask for at least one item")
    d_min, d_excl = macro_filters(dataset)
    min_count = d_min if min_count is None else int(min_count)
    exclude = d_excl if exclude is None else frozenset(exclude)
    params = dict(task="compositional", dataset=dataset, model=model_key(model), **settings_parameters(settings),
                  seed=settings.seed)
    state = process_state(cpu=settings.device == "cpu") if state is None else state
    lazy = LazyModel(model, settings, state)

    quiet = settings.replace(progress=False)

    def prepare(item: Item, item_seed: int) -> tuple[Any, CompositionalCase, Any]:
        """The model, the case, and its job: the image read, the candidates and ``""`` encoded."""
        current = lazy.get()
        case = load_case(item.data)
        x, seed = model_data(current, case.image), item_settings(settings, item_seed).seed
        return current, case, caption_job(current, x, case.captions, case.correct, seed)

    def run(ready: Sequence[tuple[Any, CompositionalCase, Any]]) -> list[Any]:
        """The items' jobs in one engine pass: their images share denoiser calls."""
        return run_jobs(ready[0][0], [job for _, _, job in ready], quiet)

    def finish(ready: tuple[Any, CompositionalCase, Any], result: Any) -> ItemResult:
        case = ready[1]
        r = caption_scores(result, len(case.captions), case.correct)
        return ItemResult({"captions": list(case.captions), "correct": case.correct, "group": case.group,
                           "scores": r.scores.tolist(), "stderr": r.stderr.tolist(), "standard": r.standard.tolist(),
                           "standard_stderr": r.standard_stderr.tolist(), "predicted": r.predicted,
                           "standard_predicted": r.standard_predicted, "margins": r.margins.tolist(),
                           "margin_stderr": r.margin_stderr.tolist(), "standard_margins": r.standard_margins.tolist(),
                           "standard_margin_stderr": r.standard_margin_stderr.tolist()})

    compute, compute_group = item_functions(prepare, run, finish)
    summary = run_items(items, compute, out=out, parameters=params, seed=settings.seed, name="compositional",
                        state=state, progress=settings.progress, compute_group=compute_group,
                        items_per_call=resolve_items_per_call(items_per_call, lazy.runs_on()))
    done = [r.values for r in collect(summary.directory, include_failed=False)]
    ok = [v["predicted"] == v["correct"] for v in done]
    ok_s = [v["standard_predicted"] == v["correct"] for v in done]
    groups = [v["group"] for v in done]
    chance = float(np.mean([1 / len(v["captions"]) for v in done])) if done else float("nan")
    rep = dict(micro=accuracy(ok), macro=macro_accuracy(ok, groups, min_count=min_count, exclude=exclude),
               standard_micro=accuracy(ok_s),
               standard_macro=macro_accuracy(ok_s, groups, min_count=min_count, exclude=exclude),
               margin=margin_summary([v["margins"] for v in done], [v["margin_stderr"] for v in done],
                                     [v["correct"] for v in done]),
               standard_margin=margin_summary([v["standard_margins"] for v in done],
                                              [v["standard_margin_stderr"] for v in done], [v["correct"] for v in done]))
    facts = model_facts(model) | {"items": len(done), "failed": len(summary.failed), "samples": settings.samples,
                                  "sampler": params["sampler"], "seed": settings.seed}
    table = compositional_table(dataset, chance=chance, facts=facts, **rep)
    return CompositionalReport(summary, chance=chance, table=table, **rep)


def compositional_table(dataset: str, *, micro: Accuracy, macro: MacroAccuracy, standard_micro: Accuracy,
                        standard_macro: MacroAccuracy, margin: MarginSummary, standard_margin: MarginSummary,
                        chance: float, facts: dict) -> ResultTable:
    """Accuracy (%) of both estimators, margins, chance level, and the published numbers for ARO sets."""
    pub = PUBLISHED.get(dataset, (None, None))

    def pct(v: float) -> float:
        return round(100 * v, 2)

    def nats(v: float) -> float:
        return round(v, 4)

    rows = (("i_o(x; caption) (orthogonal)", pct(macro.value), pct(macro.stderr), pct(micro.value),
             pct(micro.stderr), macro.included, pct(chance), nats(margin.mean), nats(margin.stderr),
             pct(margin.sure_right), pct(margin.sure_wrong), pub[0], pub[1]),
            ("i(x; caption) (standard)", pct(standard_macro.value), pct(standard_macro.stderr),
             pct(standard_micro.value), pct(standard_micro.stderr), standard_macro.included, pct(chance),
             nats(standard_margin.mean), nats(standard_margin.stderr), pct(standard_margin.sure_right),
             pct(standard_margin.sure_wrong), None, None))
    notes = ["argmax over candidates of the caption's information against \"\"; every candidate and \"\" share one "
             "engine run per image (common random numbers); ties go to the first candidate.",
             "macro: mean of per-group accuracies (" + ("relations without ARO's symmetric ones" if dataset ==
             "vg-relation" else "attribute pairs with >= 25 items" if dataset == "vg-attribution" else
             "swapped attribute" if dataset == "shapes-attribute" else "relation word" if dataset ==
             "shapes-relation" else "object shape" if dataset.startswith("shapes-single") else "one group: all items")
             + "); standard errors binomial.",
             "margin: score of the correct caption minus a wrong one (nats), averaged over the wrong candidates and "
             "the items (0 expected without discrimination); sure right: items where the correct caption beats every "
             "wrong one by > 2 paired Monte Carlo standard errors; sure wrong: items where a wrong one beats it so.",
             "published: Stable Diffusion 2.1-base with 100 samples (Kong et al., ICLR 2024) and CLIP ViT-B/32 (ARO)."]
    per_group = "; ".join(f"{g.group} {pct(g.accuracy.value)}% of {g.accuracy.items}" + ("" if g.included else " (left out)")
                          for g in macro.groups)
    if per_group:
        notes.append("per group (i_o): " + per_group)
    return ResultTable(f"Compositional understanding on {dataset}",
                       ("score", "macro acc %", "macro stderr %", "micro acc %", "micro stderr %", "groups",
                        "chance %", "mean margin", "margin stderr", "sure right %", "sure wrong %",
                        "published SD 2.1 %", "published CLIP %"), rows, tuple(notes), facts)
