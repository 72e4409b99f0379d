"""``diffpid run``: per-word MI and CMI over a file of (image, prompt, words) items.

Item files are JSON Lines (``.jsonl``), one object per line::

    {"id": "coco-139-cat", "image": "images/139.png", "prompt": "a cat on a sofa", "words": ["cat", "sofa"]}

or CSV (``.csv``) with a header and the same columns, words separated by ``|``
(``cat|sofa``). ``prompt`` is required; ``image`` (a path, relative to the item file's
folder) is optional: without it the image is generated from the prompt with the item's
seed; ``words`` defaults to the content words of the prompt; ``id`` is a label shown in
summaries. An item's stable id hashes the image file's bytes, the prompt and the words.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import ConditionError, ParameterError
from ..information import Information
from ..plan import Plan, run_plans
from ..settings import Settings
from .runner import (Item, ItemResult, file_digest, item_functions, item_id, jsonl_objects, model_key, process_state,
                     resolve_items_per_call, run_items)
from .summary import RunSummary

ITEM_VERSION = "word-item/1"


@dataclass(frozen=True)
class WordItem:
    """One row of an item file.

    Args:
        prompt: the prompt.
        words: the words whose MI and CMI are measured, lower-cased.
        image: the image path as written in the file (``None``: generate from the prompt).
        path: that path resolved against the item file's folder.
        line: line number in the item file (1-based; the header is line 1 of a CSV).
    """

    prompt: str
    words: tuple[str, ...]
    image: str | None
    path: str | None
    line: int


@dataclass(frozen=True)
class WordInformation:
    """MI of a word against the empty prompt and its CMI given the rest of the prompt."""

    word: str
    mi: Information
    cmi: Information


def _rows(path: Path) -> list[tuple[int, dict]]:
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ParameterError(f"cannot read the item file {str(path)!r} ({type(err).__name__}); "
                             "pass a UTF-8 .jsonl or .csv") from err
    rows: list[tuple[int, dict]] = []
    if suffix in (".jsonl", ".ndjson"):
        rows.extend(jsonl_objects(path.name, text, '{"prompt": ...}'))
    elif suffix == ".csv":
        reader = csv.DictReader(text.splitlines())
        if "prompt" not in (reader.fieldnames or []):
            raise ParameterError(f"{path.name} has no 'prompt' column; the header must name prompt[,image,words,id]")
        for n, row in enumerate(reader, 2):
            words = (row.get("words") or "").strip()
            rows.append((n, {"prompt": row["prompt"], "image": (row.get("image") or "").strip() or None,
                             "words": [w.strip() for w in words.split("|") if w.strip()] or None,
                             "id": (row.get("id") or "").strip() or None}))
    else:
        raise ParameterError(f"{path.name}: item files are .jsonl or .csv, got {suffix or 'no extension'!r}")
    return rows


def read_items(path: str | os.PathLike) -> tuple[Item, ...]:
    """The items of a JSONL or CSV item file (format in the module docstring), in file order.

    Returns:
        :class:`~diffpid.runs.runner.Item` with :class:`WordItem` data and content ids.

    Raises:
        ParameterError: the file cannot be read, a line is malformed or lacks a prompt.
    """
    from ..explanation import content_words

    path = Path(path)
    digests: dict[str, str] = {}
    items = []
    for n, row in _rows(path):
        prompt = row.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            raise ParameterError(f"{path.name} line {n} has no prompt; every item needs a \"prompt\" string")
        words = row.get("words")
        if words is None:
            words = content_words(prompt)
        elif isinstance(words, str):
            words = [words]
        if not isinstance(words, (list, tuple)) or not all(isinstance(w, str) and w.strip() for w in words):
            raise ParameterError(f"{path.name} line {n}: \"words\" must be a list of non-empty strings")
        words = tuple(w.strip().lower() for w in words)
        image = row.get("image")
        if image is not None and not isinstance(image, str):
            raise ParameterError(f"{path.name} line {n}: \"image\" must be a path string")
        resolved = os.path.abspath(path.parent / image) if image else None
        if resolved is None:
            key = None
        elif resolved in digests:
            key = digests[resolved]
        else:
            try:
                key = digests[resolved] = "sha256:" + file_digest(resolved)
            except OSError:  # recorded as a failed item (ImageError) when it is computed
                key = digests[resolved] = "unreadable:" + os.path.abspath(resolved)
        label = row.get("id")
        name = str(label) if label is not None else f"line {n}"
        data = WordItem(prompt, words, image or None, resolved, n)
        items.append(Item(item_id(ITEM_VERSION, key, prompt, list(words)), data, name))
    return tuple(items)


def word_information(model: Any, x: Any, prompt: str, words: Sequence[str],
                     settings: Settings | None = None, **overrides: Any) -> tuple[WordInformation, ...]:
    """MI and CMI of every word in one engine run (a :class:`~diffpid.plan.Plan` of the words).

    Args:
        model: a :class:`~diffpid.models.base.Model`.
        x: ``(1, *data_shape)`` data of the image (latents or pixels).
        prompt: the prompt; words: words of it.
        settings: the estimator :class:`~diffpid.settings.Settings` (or its fields as keywords).

    Raises:
        ConditionError: a word is not in the prompt.
    """
    result = _word_plan(prompt, words).run(model, _one(x), Settings.of(settings, **overrides))
    return tuple(WordInformation(w, result.mi[w], result.cmi[w]) for w in words)


def word_information_group(model: Any, items: Sequence[tuple[Any, str, Sequence[str], int]],
                           settings: Settings | None = None) -> list[tuple[WordInformation, ...]]:
    """:func:`word_information` of several ``(x, prompt, words, seed)`` items whose images share denoiser
    calls (:func:`diffpid.plan.run_plans`; one after another on a model that cannot take a condition per
    row); each item's numbers are those of its own run with its seed."""
    results = run_plans(model, [(_word_plan(p, ws), _one(x), seed) for x, p, ws, seed in items], settings)
    return [tuple(WordInformation(w, r.mi[w], r.cmi[w]) for w in ws) for r, (_, _, ws, _) in zip(results, items)]


def _word_plan(prompt: str, words: Sequence[str]) -> Plan:
    plan = Plan()
    plan.condition("")
    plan.condition(prompt)
    return plan.words(prompt, words)


def _one(x: Any) -> Any:
    return x[0] if len(x) == 1 else x


def _values(info: Information, prefix: str) -> dict[str, float]:
    return {prefix: float(info.value), f"{prefix}_stderr": float(info.stderr),
            f"{prefix}_standard": float(info.standard_value), f"{prefix}_standard_stderr": float(info.standard_stderr)}


def run_words(items_path: str | os.PathLike, out: str | os.PathLike, *, model: str | None = None,
              steps: int = 50, guidance: float | None = None, maps: bool = False, retry_failed: bool = False,
              items_per_call: int | None = None, settings: Settings | None = None, **overrides: Any) -> RunSummary:
    """Per-word MI and CMI of every item of an item file, resumable and sharded (:func:`diffpid.runs.runner.run_items`).

    Args:
        items_path: the JSONL or CSV item file.
        out: root folder of the runs.
        model: diffusers folder or hub id; ``None`` for the embedded shapes model.
        steps, guidance: sampling steps and guidance scale when an image is generated
            (guidance ``None``: the model's default, 7.5 for Stable Diffusion, 3 for the shapes model).
        maps: also save per-word pixel maps (and the image) as ``maps/<id>.npz``.
        retry_failed: compute items that failed before again.
        items_per_call: most items whose images share denoiser calls (``None``:
            :data:`~diffpid.runs.runner.ITEMS_PER_CALL` on a GPU or other accelerator, 1 on the CPU; 1: one
            item at a time). Items of models that cannot take a condition per row
            (:func:`~diffpid.models.base.batches_rows`) run one by one. It does not change the numbers,
            nor the run folder: a run can be resumed with another value.
        settings: the :class:`~diffpid.settings.Settings` (or its fields as keywords); ``seed`` is the
            run seed (each item's seed derives from it and the item id); ``batch_size`` does not change
            the numbers; ``device="cpu"`` keeps a run on the CPU when a GPU is there.
    """
    from ..explanation import resolve_model

    settings = Settings.of(settings, **overrides)
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ParameterError(f"steps must be a positive integer, got {steps!r}")
    if items_per_call is not None:
        resolve_items_per_call(items_per_call, "cpu")  # a given value is checked now, before the items are read
    if settings.device is not None:
        settings.torch_device()  # a clear error now for a device this machine lacks
    dtype = settings.dtype or "float32"
    items = read_items(items_path)
    if not items:
        raise ParameterError(f"{items_path} holds no items; write one JSON object per line")
    state = process_state(cpu=settings.device == "cpu")
    items_per_call = resolve_items_per_call(items_per_call, settings.device or getattr(state, "device", "cpu"))
    sampler = settings.sampler if isinstance(settings.sampler, str) else type(settings.sampler).__name__
    params = dict(task="word-information", model=model_key(model), samples=settings.samples, sampler=sampler,
                  seed=settings.seed,
                  steps=steps, guidance=None if guidance is None else float(guidance), dtype=dtype, maps=bool(maps))
    loaded: list[Any] = []
    quiet = settings.replace(progress=False)

    def prepare(item: Item, item_seed: int) -> tuple[Any, WordItem, Any, Any, int]:
        """The model, the item, its data, its image (for maps) and its seed."""
        w: WordItem = item.data
        if not w.words:
            raise ConditionError(f"no content words in {w.prompt!r}; list the words of the item in \"words\"")
        from ..prompts import find_word

        for word in w.words:
            find_word(w.prompt, word)
        if not loaded:
            loaded.append(resolve_model(model, device=settings.device or state.device, dtype=settings.torch_dtype()))
        m = loaded[0]
        if w.path is None:
            gen = m.generate(w.prompt, seed=item_seed, steps=steps, guidance_scale=guidance)
            return m, w, gen.x, gen.image, item_seed
        x = m.encode_image(w.path)
        return m, w, x, m.decode(x)[0] if maps else None, item_seed

    def run(ready: Sequence[tuple[Any, WordItem, Any, Any, int]]) -> list[tuple[WordInformation, ...]]:
        """The items' plans in one engine pass (their images share denoiser calls)."""
        return word_information_group(ready[0][0], [(x, w.prompt, w.words, sd) for _, w, x, _, sd in ready], quiet)

    def finish(ready: tuple[Any, WordItem, Any, Any, int], info: Sequence[WordInformation]) -> ItemResult:
        _, w, _, image, _ = ready
        values = {"prompt": w.prompt, "image": w.image, "generated": w.path is None,
                  "words": [{"word": r.word, **_values(r.mi, "mi"), **_values(r.cmi, "cmi")} for r in info]}
        arrays: dict[str, np.ndarray] = {}
        if maps:
            arrays["image"] = np.asarray(image, dtype=np.uint8)
            for r in info:
                for kind, inf in (("mi", r.mi), ("cmi", r.cmi)):
                    arrays[f"{kind}/{r.word}"] = np.asarray(inf.pixel_map, dtype=np.float32)
                    arrays[f"{kind}_stderr/{r.word}"] = np.asarray(inf.pixel_stderr, dtype=np.float32)
        return ItemResult(values, arrays)

    compute, compute_group = item_functions(prepare, run, finish)
    return run_items(items, compute, out=out, parameters=params, seed=settings.seed, name="words", state=state,
                     retry_failed=retry_failed, progress=settings.progress, compute_group=compute_group,
                     items_per_call=items_per_call)
