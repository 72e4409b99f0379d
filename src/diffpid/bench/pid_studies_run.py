"""``diffpid bench bias|synonyms|homonyms|uniqueness``: resumable runs and results tables.

Cases come from the shapes world (:mod:`diffpid.bench.pid_studies`, :mod:`diffpid.bench.uniqueness`)
or from a user's CSV / JSON-lines file (:func:`read_pair_cases`: ``prompt``, ``word_1``, ``word_2``
and optional ``image``, ``group``, ``strength``, ``conditional``, ``key``). For the
DiffusionPID gender study, :func:`occupation_cases` builds ``"a photo of a GENDER OCCUPATION"``
cases from a plain list of occupations (one per line).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import ItemsFailedError, ParameterError
from ..plan import run_plans
from ..runs.runner import Item, ItemResult, file_digest, item_functions, item_id, resolve_items_per_call
from .correlation import spearman
from ..settings import Settings
from .pid_studies import (ATOMS, BIAS_METRICS, DEFAULTS, BiasSummary, GroupContrast, PairCase, PairResult, bias_summary,
                          group_contrast, metric_of, pair_data, pair_plan, pair_result)
from .common import LazyModel, item_settings, model_facts, settings_parameters
from ..runs.study import StoredItem, read_rows, run_study
from .tables import ResultTable, write_table
from .uniqueness import UniquenessCase, UniquenessSummary, mask_mass, summarize_uniqueness, uniqueness_figure

__all__ = ["bias_table", "contrast_table", "occupation_cases", "read_pair_cases", "run_bias", "run_contrast",
           "run_pairs", "run_uniqueness"]

_INFO = ATOMS + ("mi_1", "mi_2", "mi_12")


def read_pair_cases(path: str | os.PathLike, group: str = "") -> list[PairCase]:
    """Cases of a CSV / JSON-lines file (columns in the module docstring); image paths relative to it."""
    folder = Path(path).parent
    out = []
    for label, row in read_rows(path, ("prompt", "word_1", "word_2")):
        image = str(folder / row["image"]) if row.get("image") else None
        s = row.get("strength")
        try:
            strength = float(s) if s else None
        except ValueError as err:
            raise ParameterError(f"{Path(path).name} {label}: strength {s!r} is not a number") from err
        cond = (row.get("conditional") or "").lower() in ("1", "true", "yes")
        out.append(PairCase(image, row["prompt"], row["word_1"], row["word_2"], cond, row.get("group") or group,
                            row.get("key") or f"{row['word_1']} {row['word_2']}", strength))
    return out


def occupation_cases(path: str | os.PathLike, genders: Sequence[str] = ("male", "female"),
                     template: str = "a photo of a {gender} {occupation}", images: int = 1) -> list[PairCase]:
    """DiffusionPID's gender-bias cases from a list of occupations (one per line; ``#`` comments).

    Every (gender, occupation) pair gets ``images`` generated images (the image is ``None``:
    generated from the prompt with the item's seed); the sources are the gender word and the
    occupation.
    """
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise ParameterError(f"cannot read the occupation list {str(path)!r}; one occupation per line") from err
    jobs = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if not jobs:
        raise ParameterError(f"{path} lists no occupations; write one per line")
    if "{gender}" not in template or "{occupation}" not in template:
        raise ParameterError("the template needs {gender} and {occupation}, e.g. 'a photo of a {gender} {occupation}'")
    out = []
    for job in jobs:
        for g in genders:
            for k in range(images):
                out.append(PairCase(None, template.format(gender=g, occupation=job), g, job, group=g,
                                    key=f"{g} {job}"))
    return out


def _image_key(image: Any) -> Any:
    if image is None:
        return None
    if isinstance(image, (str, os.PathLike)):
        try:
            return "sha256:" + file_digest(image)
        except OSError:
            return "unreadable:" + os.path.abspath(image)
    arr = np.ascontiguousarray(np.asarray(image, dtype=np.float32))
    return "array:" + hashlib.sha256(arr.tobytes()).hexdigest()


def _from_store(s: StoredItem) -> PairResult:
    v = s.values
    case = PairCase(None, v["prompt"], v["word_1"], v["word_2"], v["conditional"], v["group"], v["key"], v["strength"],
                    v.get("image_prompt"))
    maps = {k: np.asarray(s.arrays[k], dtype=np.float64) for k in ATOMS if k in s.arrays}
    return PairResult(case, v["values"], v["stderrs"], v["pixel_redundancy"], maps, tuple(v["conditions"]))


def run_pairs(name: str, cases: Sequence[PairCase], out: str | os.PathLike, *, model: Any = None,
              masks: Sequence[tuple[np.ndarray, np.ndarray]] | None = None, items_per_call: int | None = None,
              settings: Settings | None = None, **overrides: Any) -> tuple[list[PairResult], list[StoredItem], Any]:
    """One pointwise PID per case through the resumable store.

    Args:
        name: the study (run folder ``out/NAME-<hash>``).
        cases: the cases, in table order.
        out: output folder.
        model: ``None`` (the shapes model), a folder or hub id, or a loaded model.
        masks: per case two ``(h, w)`` masks stored beside the maps (uniqueness).
        items_per_call: most cases whose images share denoiser calls (``None``:
            :data:`~diffpid.runs.runner.ITEMS_PER_CALL` on a GPU, 1 on the CPU); it changes neither the
            numbers (up to float rounding) nor the run folder.
        settings: the :class:`~diffpid.settings.Settings` (default
            :data:`~diffpid.bench.pid_studies.DEFAULTS`) or its fields as keywords: every case's PID
            runs with them and its own seed (derived from ``seed``, the run seed, and the case);
            ``device``/``dtype`` load a model given by name; ``progress`` is the bar over cases.

    Returns:
        The done cases' results, their stored items (arrays: atom maps, the image, masks), and
        the run summary.
    """
    settings = Settings.of(settings or DEFAULTS, **overrides)
    if not cases:
        raise ParameterError(f"no {name} cases; give at least one")
    info = model_facts(model)
    items = []
    seen: dict[str, int] = {}
    for i, c in enumerate(cases):
        content = ("pair/1", _image_key(c.image), c.prompt, c.word_1, c.word_2, c.conditional, c.group, c.key,
                   c.strength, c.image_prompt)
        base = item_id(*content)
        n = seen[base] = seen.get(base, -1) + 1  # cases that repeat (generated images) are replicates
        items.append(Item(base if n == 0 else item_id(*content, n), (c, None if masks is None else masks[i]),
                          c.key or f"{c.word_1} {c.word_2}"))
    lazy = LazyModel(model, settings)
    quiet = settings.replace(progress=False)

    def prepare(item: Item, item_seed: int) -> tuple[Any, Any, Any, Any, int]:
        """The case's plan and data: its image (generated with the item's seed when it has none)."""
        case, _ = item.data
        m, seed = lazy.get(), item_settings(settings, item_seed, 2**31).seed
        plan = pair_plan(case)
        return item, m, plan, pair_data(m, case, seed)[0], seed

    def run(ready: Sequence[tuple[Any, Any, Any, Any, int]]) -> list[Any]:
        """The cases' PIDs in one engine pass: their images share denoiser calls."""
        return run_plans(ready[0][1], [(plan, x, seed) for _, _, plan, x, seed in ready], quiet)

    def finish(ready: tuple[Any, Any, Any, Any, int], result: Any) -> ItemResult:
        item, m, _, _, _ = ready
        case, mask = item.data
        r = pair_result(case, result)
        values = {"prompt": case.prompt, "image_prompt": case.image_prompt, "word_1": case.word_1, "word_2": case.word_2,
                  "conditional": case.conditional,
                  "group": case.group, "key": case.key, "strength": case.strength, "values": r.values,
                  "stderrs": r.stderrs, "pixel_redundancy": r.pixel_redundancy, "conditions": list(r.conditions)}
        arrays = {k: np.asarray(v, dtype=np.float32) for k, v in r.maps.items()}
        if mask is not None:
            arrays["mask_1"], arrays["mask_2"] = np.asarray(mask[0], bool), np.asarray(mask[1], bool)
            if isinstance(case.image, np.ndarray) or hasattr(case.image, "shape"):
                arrays["image"] = np.asarray(m.decode(m.check_x(case.image))[0], dtype=np.uint8)
        return ItemResult(values, arrays)

    compute, compute_group = item_functions(prepare, run, finish)
    params = dict(model=info["model"], training_steps=info.get("training_steps"), **settings_parameters(settings))
    run_ = run_study(name, items, compute, out=out, parameters=params, seed=settings.seed, progress=settings.progress,
                     compute_group=compute_group, items_per_call=resolve_items_per_call(items_per_call, lazy.runs_on()))
    return [_from_store(s) for s in run_.items], list(run_.items), run_.summary


def _meta(model: Any, results: Sequence[PairResult], summary: Any, settings: Settings, extra: dict | None) -> dict:
    """Table facts; the model's are those the run was keyed by (read when it started)."""
    params = summary.parameters
    facts = {"model": params.get("model")}
    if params.get("training_steps") is not None:
        facts["training_steps"] = params["training_steps"]
    if model_facts(model).get("training_steps") != params.get("training_steps"):
        facts["warning"] = "the checkpoint changed during the run; run the command again to measure the new one"
    return {**facts, "cases": len(results), "failed": len(summary.failed), "samples": settings.samples,
            "seed": settings.seed, **(extra or {})}


def _per_case(results: Sequence[PairResult]) -> list[dict]:
    return [{"prompt": r.case.prompt, "word_1": r.case.word_1, "word_2": r.case.word_2, "group": r.case.group,
             "key": r.case.key, "strength": r.case.strength, "conditions": list(r.conditions), **r.values,
             **{f"{k}_stderr": v for k, v in r.stderrs.items()}, "pixel_redundancy": r.pixel_redundancy,
             "redundant_share": r.redundant_share} for r in results]


def bias_table(s: BiasSummary, meta: dict, reference: dict[str, float] | None = None) -> ResultTable:
    """Per pair: planted strength, mean redundancy, normalised redundancy, the other redundancies
    and, when given, a perfect model's standard redundancy (:func:`~diffpid.bench.pid_cases.bias_reference`)."""
    order = np.argsort(-s.normalized, kind="stable")
    ref = [reference.get(k) for k in s.keys] if reference else None
    rows = tuple((s.keys[i], None if not np.isfinite(s.strength[i]) else float(s.strength[i]), float(s.redundancy[i]),
                  float(s.normalized[i]), *(float(s.means[m][i]) for m in BIAS_METRICS[1:]),
                  *((ref[i],) if ref else ())) for i in order)
    notes = [f"Highest redundancy: {s.top}."]
    if ref and s.spearman and all(v is not None for v in ref):
        ok = np.isfinite(s.strength)
        rho = spearman(np.asarray(ref, dtype=float)[ok], s.strength[ok])
        notes.append(f"A perfect model's standard redundancy (closed form over the world's classes, marginal from "
                     f"drawn scenes) has Spearman {rho:.3f} with the strength; its highest pair is "
                     f"{s.keys[int(np.nanargmax(np.asarray(ref, dtype=float)))]}.")
    if s.spearman:
        rho = s.spearman["redundancy"]
        others = "; ".join(f"{m}: {e.value:.3f} +- {e.stderr:.3f}" for m, e in s.spearman.items() if m != "redundancy")
        notes.append(f"Spearman rank correlation of the normalised redundancy with the planted strength: "
                     f"{rho.value:.3f} +- {rho.stderr:.3f} (bootstrap over {rho.items} pairs). Other redundancies: "
                     f"{others}.")
    notes.append("Redundancy: image-level minimum-MI redundancy of the two words (PID against the empty prompt, "
                 "joint = the full prompt), averaged over each pair's images, min-max normalised over the pairs; "
                 "pixel: sum over pixels of the minimum of the two words' information maps; per noise level: the "
                 "minimum per (a, eps) draw and pixel inside the integral; standard: min of the standard estimates "
                 "log p(x|y)/p(x) from the same run.")
    cols = ("pair", "planted strength", "redundancy (nats)", "normalised", "pixel redundancy",
            "per-noise-level redundancy", "standard-estimator redundancy") + (("perfect model, standard",) if ref else ())
    return ResultTable("Bias: redundancy of attribute and object words", cols, rows, tuple(notes), meta)


def run_bias(cases: Sequence[PairCase], out: str | os.PathLike, *, model: Any = None, resamples: int = 1000,
             meta: dict | None = None, table_name: str = "bias", reference: dict[str, float] | None = None,
             items_per_call: int | None = None, settings: Settings | None = None,
             **overrides: Any) -> tuple[BiasSummary, ResultTable]:
    """The bias study: ``OUT/TABLE_NAME.md`` and ``.json`` (arguments as :func:`run_pairs`; ``reference``:
    a perfect model's redundancy per pair key, shown beside the measured one; the bootstrap is seeded
    with ``settings.seed``)."""
    settings = Settings.of(settings or DEFAULTS, **overrides)
    results, _, summary = run_pairs("bias", cases, out, model=model, items_per_call=items_per_call, settings=settings)
    if not results:
        raise ItemsFailedError(f"every bias case failed; see why with `diffpid runs show {summary.directory}`")
    s = bias_summary(results, resamples=resamples, seed=settings.seed)
    table = bias_table(s, _meta(model, results, summary, settings, meta), reference)
    write_table(out, table_name, table, extra={"cases": _per_case(results)})
    return s, table


def contrast_table(title: str, contrasts: Sequence[GroupContrast], meta: dict, notes: Sequence[str]) -> ResultTable:
    """One row per (metric, group) and one per metric for the difference of the contrasted groups."""
    rows = []
    for c in contrasts:
        for g, mean, se, n in c.groups:
            rows.append((c.metric, g, mean, se, n))
        rows.append((c.metric, f"{c.first} - {c.second}", c.difference.value, c.difference.stderr, c.difference.items))
    return ResultTable(title, ("metric", "group", "mean", "stderr", "cases"), tuple(rows), tuple(notes), meta)


def run_contrast(name: str, cases: Sequence[PairCase], out: str | os.PathLike, *, first: str, second: str,
                 metrics: Sequence[str], title: str, notes: Sequence[str] = (), model: Any = None,
                 resamples: int = 1000, meta: dict | None = None, table_name: str | None = None,
                 items_per_call: int | None = None, settings: Settings | None = None,
                 **overrides: Any) -> tuple[list[GroupContrast], ResultTable]:
    """A two-group study (synonyms, homonyms): ``OUT/TABLE_NAME.md`` and ``.json`` (default name: ``NAME``).

    Args:
        name: the study's name (``synonyms``, ``homonyms``).
        cases: cases of (at least) the groups ``first`` and ``second``.
        first, second: the groups compared.
        metrics: the metrics compared (first is the study's headline).
        title, notes: the table's title and notes.
        Other arguments as :func:`run_pairs`; the bootstrap is seeded with ``settings.seed``.
    """
    settings = Settings.of(settings or DEFAULTS, **overrides)
    results, _, summary = run_pairs(name, cases, out, model=model, items_per_call=items_per_call, settings=settings)
    if not results:
        raise ItemsFailedError(f"every {name} case failed; see why with `diffpid runs show {summary.directory}`")
    contrasts = [group_contrast(results, m, first, second, resamples=resamples, seed=settings.seed) for m in metrics]
    per_key: dict[str, list[float]] = {}
    for r in results:
        per_key.setdefault(r.case.key or f"{r.case.word_1} {r.case.word_2}", []).append(metric_of(r, metrics[0]))
    breakdown = ", ".join(f"{k}: {np.mean(v):.3f}" for k, v in per_key.items())
    notes = (*notes, f"Mean {metrics[0]} per pair: {breakdown}.")
    table = contrast_table(title, contrasts, _meta(model, results, summary, settings, meta), notes)
    write_table(out, table_name or name, table, extra={"cases": _per_case(results)})
    return contrasts, table


def run_uniqueness(cases: Sequence[UniquenessCase], out: str | os.PathLike, *, model: Any = None,
                   figure_cases: int = 6, meta: dict | None = None, table_name: str = "uniqueness", grow: int = 1,
                   items_per_call: int | None = None, settings: Settings | None = None,
                   **overrides: Any) -> tuple[UniquenessSummary, ResultTable]:
    """Unique-information maps of two objects' words: ``OUT/TABLE_NAME.md``, ``.json`` and ``.png``
    (``grow``: object masks grown by this many pixels, see :func:`~diffpid.bench.uniqueness.mask_mass`;
    other arguments as :func:`run_pairs`)."""
    from ..runs.store import write_atomic

    settings = Settings.of(settings or DEFAULTS, **overrides)
    pairs = [c.pair for c in cases]
    results, stored, summary = run_pairs("uniqueness", pairs, out, model=model, items_per_call=items_per_call,
                                         settings=settings, masks=[(c.mask_1, c.mask_2) for c in cases])
    if not results:
        raise ItemsFailedError(f"every uniqueness case failed; see why with `diffpid runs show {summary.directory}`")
    masses = []
    for r, s in zip(results, stored):
        m1, m2 = s.arrays["mask_1"], s.arrays["mask_2"]
        masses += [mask_mass(r.maps["unique_1"], m1, m2, grow), mask_mass(r.maps["unique_2"], m2, m1, grow)]
    u = summarize_uniqueness(masses)
    rows = (("own object", u.own, u.own_stderr, u.own_area), ("other object", u.other, u.other_stderr, u.other_area))
    notes = (f"{u.maps} unique maps (two per case: U1 of the first word, U2 of the second); a map has more mass on "
             f"its own object than on the other in {100 * u.hit_rate:.1f}% of them.",
             f"Share: a unique map's mass inside the object's mask (grown by {grow} pixel(s): shape information "
             "lies on the edges) over its total mass; flat-map share: the mask's area (what a map spread evenly "
             "would give). CPID of the two words given the rest of the caption.")
    table = ResultTable("Uniqueness maps: where each word's unique information lies",
                        ("mask", "share of the unique map", "stderr", "flat-map share"), rows, notes,
                        _meta(model, results, summary, settings, {"mask_grow": grow, **(meta or {})}))
    write_table(out, table_name, table, extra={"cases": _per_case(results),
                                                 "mass": [m.__dict__ for m in masses]})
    shown = [(r, s) for r, s in zip(results, stored) if "image" in s.arrays][:figure_cases]
    if shown:
        png = uniqueness_figure([s.arrays["image"] for _, s in shown], [r.maps for r, _ in shown],
                                [r.case.prompt or "" for r, _ in shown], [(r.case.word_1, r.case.word_2) for r, _ in shown])
        write_atomic(Path(out) / f"{table_name}.png", png)
    return u, table
