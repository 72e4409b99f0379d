"""``diffpid bench intervention``: items, the resumable run, and the results table.

Items come from the shapes world (:func:`shapes_cases`: scenes of the world's caption
process, one content word each, whose pixels the world knows) or from a user's file
(:func:`read_cases`: CSV or JSON lines with ``caption``, ``word`` and optional ``image``
(a path; generated from the caption when empty) and ``replacement``).
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import ItemsFailedError, ParameterError
from ..plan import run_plans
from ..runs.runner import Item, ItemResult, file_digest, item_functions, item_id, resolve_items_per_call
from .correlation import Estimate
from ..settings import Settings
from .intervention import (DEFAULTS, Intervention, InterventionCase, InterventionSummary, InterventionWork,
                           intervention_result, intervention_work, summarize_interventions)
from .common import LazyModel, item_settings, model_facts, settings_parameters
from ..runs.study import StoredItem, read_rows, run_study
from .tables import ResultTable, write_table

__all__ = ["intervention_table", "read_cases", "run_intervention", "shapes_cases",
           "single_object_cases"]

MODES = ("omit", "swap")


def _swap_for(word: str, role: str, rng: random.Random) -> str:
    from ..shapes.world import COLORS, SIZES

    if role == "size":
        pool = [s for s in SIZES if s != word]
    elif role == "color":
        pool = [c for c in COLORS if c != word]
    else:  # other shapes; not the synonym, not "orange" (whose reading depends on its neighbour)
        same = {"square", "box"} if word in ("square", "box") else {word}
        pool = [s for s in ("circle", "square", "triangle", "diamond") if s not in same]
    return rng.choice(pool)


def shapes_cases(n: int = 24, seed: int = 0, mode: str = "omit") -> list[tuple[str, InterventionCase]]:
    """``n`` intervention cases on shapes-world scenes (deterministic for a seed).

    Each scene has a non-empty caption; its word is a size, colour or shape word that
    occurs once in the caption, drawn uniformly; for ``mode="swap"`` the replacement is
    another word of the same role (another colour, size or shape).

    Returns:
        ``(label, case)`` pairs; the case's image is the scene's ``(3, 32, 32)`` tensor.
    """
    from ..shapes.render import sample_scenes

    if mode not in MODES:
        raise ParameterError(f"mode must be 'omit' or 'swap', got {mode!r}")
    if n < 1:
        raise ParameterError(f"n must be a positive number of items, got {n}")
    rng = random.Random(seed)
    out: list[tuple[str, InterventionCase]] = []
    batch = 0
    while len(out) < n:
        for k, scene in enumerate(sample_scenes(4 * n, seed=seed * 1000 + batch)):
            words = [w.text for w in scene.words]
            content = [w for w in scene.words if w.role in ("size", "color", "shape") and words.count(w.text) == 1]
            if not content:
                continue
            w = rng.choice(content)
            repl = _swap_for(w.text, w.role, rng) if mode == "swap" else None
            out.append((f"scene {batch}.{k}", InterventionCase(scene.image, scene.caption, w.text, repl)))
            if len(out) == n:
                break
        batch += 1
    return out


def single_object_cases(n: int = 24, seed: int = 0, mode: str = "omit") -> list[tuple[str, InterventionCase]]:
    """``n`` complete single-object captions ``"a SIZE COLOUR SHAPE"`` with a word each; images generated.

    For models whose images are generated from the caption (the shapes oracle): the case's image
    is ``None``. Colours leave out orange (whose reading depends on its neighbour).
    """
    from ..shapes.world import COLORS, SHAPES, SIZES

    if mode not in MODES:
        raise ParameterError(f"mode must be 'omit' or 'swap', got {mode!r}")
    rng = random.Random(seed)
    out = []
    for k in range(n):
        z, c, s = rng.choice(tuple(SIZES)), rng.choice([c for c in COLORS if c != "orange"]), rng.choice(SHAPES)
        role, word = rng.choice((("size", z), ("color", c), ("shape", s)))
        repl = _swap_for(word, role, rng) if mode == "swap" else None
        if repl == "orange":
            repl = "red" if word != "red" else "blue"
        out.append((f"caption {k}", InterventionCase(None, f"a {z} {c} {s}", word, repl)))
    return out


def read_cases(path: str | os.PathLike) -> list[tuple[str, InterventionCase]]:
    """Cases of a CSV / JSON-lines file with ``caption``, ``word`` and optional ``image``, ``replacement``, ``id``.

    Image paths are relative to the file; an empty image is generated from the caption.
    """
    folder = Path(path).parent
    out = []
    for label, row in read_rows(path, ("caption", "word")):
        image = row.get("image") or None
        resolved = str(folder / image) if image else None
        out.append((row.get("id") or label, InterventionCase(resolved, row["caption"], row["word"],
                                                             row.get("replacement") or None)))
    return out


def _case_key(case: InterventionCase) -> Any:
    if case.image is None:
        return None
    if isinstance(case.image, (str, os.PathLike)):
        try:
            return "sha256:" + file_digest(case.image)
        except OSError:
            return "unreadable:" + os.path.abspath(case.image)
    arr = np.ascontiguousarray(np.asarray(case.image, dtype=np.float32))
    import hashlib

    return "array:" + hashlib.sha256(arr.tobytes()).hexdigest()


def _from_store(s: StoredItem) -> Intervention:
    v, a = s.values, s.arrays
    att = a.get("attention_map")
    return Intervention(v["caption"], v["word"], v["edited"], v["information"], v["information_stderr"], v["change"],
                        v["reconstruction_mse"], v["reconstruction_relative"], v["attention"], a["change_map"],
                        a["information_map"], att, a["x"], a["reconstruction"], a["edited_x"],
                        v.get("standard_information", float("nan")), a.get("standard_map"))


def _cell(e: Estimate | None) -> tuple[Any, Any]:
    return (None, None) if e is None else (e.value, e.stderr)


def intervention_table(summary: InterventionSummary, meta: dict[str, Any]) -> ResultTable:
    """The results table: correlations (value, bootstrap error) and the inversion's reconstruction error."""
    rows = (
        ("CMI (i_o of the caption vs the edited caption)", *_cell(summary.image_information),
         *_cell(summary.pixel_information), "0.34", "0.27"),
        ("attention (DAAM along the inversion)", *_cell(summary.image_attention), *_cell(summary.pixel_attention),
         "0.24", "0.21"),
        ("CMI, Spearman of the totals", *_cell(summary.image_information_rank), None, None, "-", "-"),
        ("CMI, standard estimator i (same run)", *_cell(summary.image_standard), *_cell(summary.pixel_standard),
         "-", "-"),
    )
    notes = (
        f"{summary.items} items; reconstruction (inversion then regeneration under the unchanged caption): "
        f"mean squared error {summary.reconstruction_mse:.4g} per coordinate, relative error "
        f"||x_rec - x||^2 / ||x||^2 = {summary.reconstruction_relative:.4g}; the edits change "
        f"||x_edit - x_rec||^2 / ||x||^2 = {summary.relative_change:.4g} on average.",
        "Change per pixel: squared difference of the edited and the reconstructed data summed over channels. "
        "Image level: Pearson r across items of the totals; pixel level: r across pixels per image, averaged. "
        "Errors: bootstrap over items.",
        "Published: COCO, Stable Diffusion 2.1-base (Kong et al., ICLR 2024).",
    )
    cols = ("score", "image r", "image r stderr", "pixel r", "pixel r stderr", "published image r",
            "published pixel r")
    return ResultTable("Prompt intervention: image change vs information and attention", cols, rows, notes, meta)


def run_intervention(
    cases: Sequence[tuple[str, InterventionCase]],
    out: str | os.PathLike,
    *,
    model: Any = None,
    steps: int = 100,
    guidance: float = 1.0,
    lowest: float | None = None,
    attention: bool = True,
    resamples: int = 1000,
    table_name: str = "intervention",
    meta: dict[str, Any] | None = None,
    items_per_call: int | None = None,
    settings: Settings | None = None,
    **overrides: Any,
) -> tuple[InterventionSummary, ResultTable]:
    """Run the cases through the resumable store and write ``OUT/TABLE_NAME.md`` and ``.json``.

    Args:
        cases: ``(label, case)`` pairs (:func:`shapes_cases`, :func:`read_cases`).
        out: output folder (the run's item store lives in ``out/intervention-<hash>/``).
        model: ``None`` (the shapes model), a diffusers folder or hub id, or a loaded model.
        steps, guidance, lowest, attention: as :func:`~diffpid.bench.intervention.intervene`.
        resamples: bootstrap resamples.
        table_name: stem of the table files.
        meta: extra facts for the table (e.g. the shapes-world seed).
        items_per_call: most items whose information estimates share denoiser calls (``None``:
            :data:`~diffpid.runs.runner.ITEMS_PER_CALL` on a GPU, 1 on the CPU; the inversions,
            regenerations and attention maps run item by item); it changes neither the numbers (up to
            float rounding) nor the run folder.
        settings: the :class:`~diffpid.settings.Settings` (default
            :data:`~diffpid.bench.intervention.DEFAULTS`) or its fields as keywords; ``seed`` is the
            run seed (item seeds derive from it; it also seeds the bootstrap); ``device``/``dtype``
            load a model given by name; ``progress`` is the bar over items.
    """
    settings = Settings.of(settings or DEFAULTS, **overrides)
    for label, v in (("steps", steps), ("resamples", resamples)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ParameterError(f"{label} must be a positive integer, got {v!r}")
    if not cases:
        raise ParameterError("no intervention items; give at least one")
    info = model_facts(model)
    items, seen = [], {}
    for label, c in cases:
        base = item_id("intervention/2", _case_key(c), c.caption, c.word, c.replacement)
        n = seen[base] = seen.get(base, -1) + 1  # repeated cases (generated images) are replicates
        items.append(Item(base if n == 0 else item_id(base, n), c, label))
    lazy = LazyModel(model, settings)
    quiet = settings.replace(progress=False)

    def prepare(item: Item, item_seed: int) -> tuple[Any, InterventionCase, InterventionWork, int]:
        """The model, the case, its inversion, reconstruction and edit (per item: they are not the estimate)
        and its seed."""
        m, seed = lazy.get(), item_settings(settings, item_seed, 2**31).seed
        return m, item.data, intervention_work(m, item.data, steps=steps, guidance=guidance, lowest=lowest,
                                               seed=seed), seed

    def run(ready: Sequence[tuple[Any, InterventionCase, InterventionWork, int]]) -> list[Any]:
        """The items' information estimates in one engine pass: their images share denoiser calls."""
        return run_plans(ready[0][0], [(w.plan, w.x[0], seed) for _, _, w, seed in ready], quiet)

    def finish(ready: tuple[Any, InterventionCase, InterventionWork, int], result: Any) -> ItemResult:
        m, case, work, _ = ready
        r = intervention_result(m, case, work, result.mi["information"], steps=steps, attention=attention)
        return ItemResult(r.values(), r.arrays())

    compute, compute_group = item_functions(prepare, run, finish)

    params = dict(model=info["model"], training_steps=info.get("training_steps"), steps=steps,
                  **settings_parameters(settings), guidance=float(guidance),
                  lowest=None if lowest is None else float(lowest), attention=bool(attention))
    run = run_study("intervention", items, compute, out=out, parameters=params, seed=settings.seed,
                    progress=settings.progress, compute_group=compute_group,
                    items_per_call=resolve_items_per_call(items_per_call, lazy.runs_on()))
    results = [_from_store(s) for s in run.items]
    if not results:
        raise ItemsFailedError(f"every item failed; see why with `diffpid runs show {run.summary.directory}`; check the captions and words")
    summary = summarize_interventions(results, resamples=resamples, seed=settings.seed)
    table_meta = {**info, "items": len(results), "failed": len(run.summary.failed), "steps": steps,
                  "samples": settings.samples, "guidance": float(guidance), "lowest_logsnr": lowest,
                  "seed": settings.seed, **(meta or {})}
    table = intervention_table(summary, table_meta)
    per_item = [{"name": s.name, **r.values()} for s, r in zip(run.items, results)]
    write_table(out, table_name, table, extra={"items": per_item})
    return summary, table
