"""Dataset-scale runs: resumable, crash-safe, sharded over processes and GPUs with accelerate.

A benchmark hands :func:`run_items` a list of :class:`Item` (stable content ids) and a
per-item function ``compute(item, seed) -> ItemResult``. The runner

- puts the run in ``ROOT/<name>-<hash of the parameters>/`` (a changed parameter set is a
  new run, never mixed with the old one; the parameters are written in ``run.json``),
- skips items already stored and computes the rest, writing every result atomically as
  soon as it is done (:mod:`diffpid.runs.store`), so a run killed at any point (even with
  ``kill -9``) continues where it stopped when the same command is run again,
- derives each item's seed from the run seed and the item id, so numbers do not depend
  on order, resumption or sharding,
- with a group function and ``items_per_call`` above one, computes the pending items in groups
  that share denoiser calls (:func:`shard_groups`: fixed blocks of the sorted ids, so an item
  always has the same companions and resumed or sharded runs store the same records to the
  bit); each item keeps its seed, and its record is written as soon as its group is done; a
  group killed mid-way leaves its items unstored and is computed again on resumption (a group
  killed between its writes is computed whole, and only its missing records are written),
  (:func:`item_functions` makes ``compute`` and the group function from one item's prepare, shared
  run and finish steps, so that an item computed alone and in a group go through the same code),
- records an item whose computation raises a :class:`~diffpid.errors.DiffpidError`
  (unreadable image, word not in the prompt...) as failed with its reason and goes on;
  any other exception (a bug) stops the run,
- under ``accelerate launch`` splits the remaining items over the processes
  (``PartialState``: round-robin over the sorted ids), each process writing its own
  items' files, and merges everything into ``results.jsonl`` on the main process after
  ``wait_for_everyone``.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ..errors import DiffpidError, ParameterError
from .store import ItemRecord, RunStore, canonical, digest
from .summary import RunSummary, format_summary, merge, summarize


@dataclass(frozen=True)
class Item:
    """One unit of work of a run.

    Args:
        id: stable id from the item's content (see :func:`item_id`).
        data: whatever the per-item function needs (the runner does not look at it).
        name: the user's label, shown in summaries.
    """

    id: str
    data: Any = None
    name: str | None = None


@dataclass(frozen=True)
class ItemResult:
    """What a per-item function returns.

    Args:
        values: JSON-ready result (numbers, strings, lists, string-keyed mappings).
        arrays: named numpy arrays saved beside it (``maps/<id>.npz``), e.g. ``(h, w)`` pixel maps.
    """

    values: Any
    arrays: Mapping[str, np.ndarray] = field(default_factory=dict)


def item_id(*content: Any) -> str:
    """A stable 20-hex-digit id from JSON-ready ``content`` (e.g. image hash, prompt, words)."""
    return digest(canonical(list(content)), 20)


def file_digest(path: str | os.PathLike) -> str:
    """SHA-256 of a file's bytes (hex), read in 1 MiB blocks."""
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def item_seed(seed: int, identifier: str) -> int:
    """The seed of one item: a 63-bit hash of the run seed and the item id."""
    return int(digest(canonical([int(seed), identifier]), 16), 16) & (2**63 - 1)


def parameters_key(parameters: Mapping[str, Any]) -> str:
    """The 12-hex-digit hash of a parameter set that names its run folder."""
    return digest(canonical(dict(parameters)), 12)


def run_directory(root: str | os.PathLike, parameters: Mapping[str, Any], name: str = "run") -> Path:
    """``root/<name>-<parameters_key>``: the folder of the run with these parameters."""
    return Path(root) / f"{name}-{parameters_key(parameters)}"


def shard(ids: Sequence[str], rank: int, world: int) -> list[str]:
    """The ids process ``rank`` of ``world`` computes: round-robin over the sorted ids."""
    if not 0 <= rank < world:
        raise ParameterError(f"rank {rank} is not in 0..{world - 1}")
    return sorted(ids)[rank::world]


def shard_groups(ids: Sequence[str], todo: Sequence[str], size: int, rank: int, world: int) -> list[list[str]]:
    """The groups of items process ``rank`` of ``world`` computes together: blocks of ``size`` of all the
    sorted ids (not only those to compute), those with an item to compute, round-robin over processes.

    A group's members do not depend on what was stored before or on the number of processes, so an
    item is always computed with the same companions and its numbers are the same to the bit (the
    rows of a shared denoiser call, and the chunks its sums are added in, are the same)."""
    if not 0 <= rank < world:
        raise ParameterError(f"rank {rank} is not in 0..{world - 1}")
    every, wanted = sorted(ids), set(todo)
    blocks = [every[lo:lo + size] for lo in range(0, len(every), size)]
    return [b for b in blocks if wanted.intersection(b)][rank::world]


#: items per shared denoiser call on an accelerator when none is asked for (``items_per_call=None``):
#: enough that the partly filled last call of every round is shared by several items. On the CPU a
#: call's cost grows with its rows, so sharing saves nothing there and the default is 1
#: (``benchmarks/results/items_per_call.md``).
ITEMS_PER_CALL = 8


def resolve_items_per_call(items_per_call: int | None, device: Any) -> int:
    """The items per call of a run: ``items_per_call`` (checked), or when ``None`` :data:`ITEMS_PER_CALL`
    if ``device`` (where the model computes) is a GPU or other accelerator and 1 if it is the CPU.

    Raises:
        ParameterError: ``items_per_call`` is not a positive integer.
    """
    if items_per_call is None:
        return 1 if str(device).startswith("cpu") else ITEMS_PER_CALL
    if isinstance(items_per_call, bool) or not isinstance(items_per_call, int) or items_per_call < 1:
        raise ParameterError(f"items per call must be a positive integer, got {items_per_call!r}")
    return items_per_call


def item_functions(prepare: Callable[[Item, int], Any], run: Callable[[Sequence[Any]], Sequence[Any]],
                   finish: Callable[[Any, Any], ItemResult]) -> tuple[Callable[[Item, int], ItemResult],
                                                                    Callable[[Sequence[Item], Sequence[int]], list]]:
    """The ``compute`` and ``compute_group`` of :func:`run_items` from one item's three steps, so that an
    item computed alone and one computed in a group go through the same code.

    Args:
        prepare: ``prepare(item, seed) -> prepared``: the per-item work before the shared computation
            (load or generate the image, build the item's plan); a ``DiffpidError`` fails that item alone.
        run: ``run([prepared, ...]) -> [result, ...]``: the computation the items share (one engine pass,
            whose denoiser calls they share); when it raises a ``DiffpidError`` the group's prepared items
            are run one by one (not prepared again), each failing or not on its own.
        finish: ``finish(prepared, result) -> ItemResult``: the per-item work after it; a
            ``DiffpidError`` fails that item alone.

    Returns:
        ``compute(item, seed)`` (``run`` of the lone item) and ``compute_group(items, seeds)``.
    """

    def compute(item: Item, seed: int) -> ItemResult:
        prepared = prepare(item, seed)
        return finish(prepared, run([prepared])[0])

    def compute_group(items: Sequence[Item], seeds: Sequence[int]) -> list[Any]:
        outcomes = [_outcome(lambda: prepare(it, s)) for it, s in zip(items, seeds)]
        ready = [i for i, o in enumerate(outcomes) if not isinstance(o, DiffpidError)]
        if not ready:
            return outcomes
        try:
            results = list(run([outcomes[i] for i in ready]))
        except DiffpidError:  # one item spoils the shared call: each runs alone, as compute() would run it
            for i in ready:
                outcomes[i] = _outcome(lambda p=outcomes[i]: finish(p, run([p])[0]))
            return outcomes
        if len(results) != len(ready):
            raise TypeError(f"the shared computation returned {len(results)} results for {len(ready)} items")
        for i, r in zip(ready, results):
            outcomes[i] = _outcome(lambda p=outcomes[i], r=r: finish(p, r))
        return outcomes

    return compute, compute_group


def process_state(cpu: bool = False, timeout_hours: float = 48.0) -> Any:
    """The ``accelerate.PartialState`` of this process (one process when not launched).

    Without any GPU the processes of ``accelerate launch`` / ``torchrun`` join with gloo
    on the CPU. The long ``timeout`` lets early ranks wait at the final barrier.
    """
    import torch
    from accelerate import PartialState

    cpu = cpu or not torch.cuda.is_available()
    return PartialState(cpu=cpu, timeout=timedelta(hours=timeout_hours))


def _check_ids(items: Sequence[Item]) -> None:
    seen: dict[str, Item] = {}
    for it in items:
        if not isinstance(it, Item):
            raise ParameterError(f"run items must be diffpid.runs.runner.Item, got {type(it).__name__}")
        if it.id in seen:
            a, b = seen[it.id].name or it.id, it.name or it.id
            raise ParameterError(f"items {a!r} and {b!r} are the same item (same content); remove one of them")
        seen[it.id] = it


def jsonl_objects(name: str, text: str, example: str = "") -> list[tuple[int, dict]]:
    """``(line number, object)`` of each non-blank line of a JSONL item file ``name``.

    Raises:
        ParameterError: a line that is not JSON, or not a JSON object (``example`` shows one).
    """
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            raise ParameterError(f"{name} line {n} is not JSON ({err.msg}); write one object per line") from err
        if not isinstance(row, dict):
            raise ParameterError(f"{name} line {n} is not a JSON object" + (f"; write {example}" if example else ""))
        rows.append((n, row))
    return rows


def _plan(store: RunStore, ids: list[str], retry_failed: bool) -> tuple[list[str], list[str]]:
    """Ids to compute (no record, damaged record, or failed when retrying) and the damaged ones."""
    todo, corrupt = [], []
    for i, rec, damaged in store.scan(ids):
        if damaged:
            corrupt.append(i)
        if rec is None or (retry_failed and rec.status == "failed"):
            todo.append(i)
    return todo, corrupt


def run_items(
    items: Sequence[Item],
    compute: Callable[[Item, int], ItemResult],
    *,
    out: str | os.PathLike,
    parameters: Mapping[str, Any],
    seed: int,
    name: str = "run",
    state: Any = None,
    retry_failed: bool = False,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
    compute_group: Callable[[Sequence[Item], Sequence[int]], Sequence[Any]] | None = None,
    items_per_call: int = 1,
) -> RunSummary:
    """Compute every item not yet stored in the run of ``parameters`` and merge the results.

    Args:
        items: the items, in the order results are merged.
        compute: ``compute(item, seed) -> ItemResult``; raise a ``DiffpidError`` for a bad item.
        out: root folder; the run lives in ``out/<name>-<hash of parameters>/``.
        parameters: JSON-ready values that determine the numbers (model, samples, seed...).
        seed: the run seed; item seeds are :func:`item_seed` of it and the item id.
        name: prefix of the run folder.
        state: an ``accelerate.PartialState``; default :func:`process_state`.
        retry_failed: compute failed items again.
        progress: show a progress bar over this process's items.
        log: where messages go (default: print on the main process).
        compute_group: ``compute_group(items, seeds) -> outcomes``: several items at once (sharing
            denoiser calls), one outcome per item, an :class:`ItemResult` or the ``DiffpidError``
            that item failed with. Each item's outcome must be what ``compute`` gives it. When it
            raises a ``DiffpidError`` itself, the group's items are computed one by one.
        items_per_call: most items per ``compute_group`` call (1: one by one with ``compute``). It
            does not change the numbers, so it is not a run parameter.

    Returns:
        The :class:`RunSummary` after the merge (every process returns it).
    """
    from ..output_paths import check_writable

    _check_ids(items)
    check_writable(out, inside=True, what="the run folder")
    params = dict(parameters)
    params.setdefault("seed", seed)
    if params["seed"] != seed:
        raise ParameterError(f"parameters say seed={params['seed']!r} but the run seed is {seed!r}; pass one seed")
    try:
        canonical(params)
    except (TypeError, ValueError) as err:
        raise ParameterError(f"run parameters must be JSON-ready (numbers, strings, lists): {err}") from err
    state = process_state() if state is None else state
    main = state.is_main_process
    say = log or (lambda msg: print(msg, flush=True) if main else None)
    directory = run_directory(out, params, name)
    store = RunStore(directory)
    ids = [it.id for it in items]
    lock = None
    try:
        if main:
            directory.mkdir(parents=True, exist_ok=True)
            store.create()
            lock = store.lock()
        if isinstance(items_per_call, bool) or not isinstance(items_per_call, int) or items_per_call < 1:
            raise ParameterError(f"items per call must be a positive integer, got {items_per_call!r}")
        group = (compute_group, items_per_call) if compute_group is not None and items_per_call > 1 else None
        return _run(items, compute, store, state, ids, params, seed, retry_failed, progress, say, group)
    finally:
        if lock is not None:
            lock.close()


def _run(items, compute, store, state, ids, params, seed, retry_failed, progress, say, group=None) -> RunSummary:
    """The body of :func:`run_items` once the main process holds the run folder's lock."""
    from accelerate.utils import broadcast_object_list
    from tqdm.auto import tqdm

    rank, world, main = state.process_index, state.num_processes, state.is_main_process
    directory = store.directory
    plan: list[Any] = [None]
    if main:
        store.write_parameters(params, directory.name.rsplit("-", 1)[-1])
        store.write_items(ids, [it.name for it in items])
        store.remove_temporaries()
        todo, corrupt = _plan(store, ids, retry_failed)
        plan = [(todo, corrupt, digest(canonical(ids)))]
    state.wait_for_everyone()
    todo, corrupt, main_ids = broadcast_object_list(plan, from_process=0)[0]
    if main_ids != digest(canonical(ids)):
        raise ParameterError(f"process {rank} reads other items than the main process; give every process "
                             "the same item file and images")
    say(f"run {directory}: {len(items)} items, {len(items) - len(todo)} stored, {len(todo)} to compute"
        + (f" ({len(corrupt)} damaged records redone)" if corrupt else "")
        + (f" on {world} processes" if world > 1 else ""))

    by_id = {it.id: it for it in items}
    device = str(getattr(state, "device", "cpu"))
    pending = set(todo)
    groups = shard_groups(ids, todo, group[1], rank, world) if group is not None else []
    mine = shard(todo, rank, world) if group is None else [i for g in groups for i in g if i in pending]
    bar = tqdm(total=len(mine), desc=f"items (rank {rank})" if world > 1 else "items", disable=not progress,
               position=rank, leave=True, dynamic_ncols=True)
    if group is None:
        for i in mine:
            it, s, t0 = by_id[i], item_seed(seed, i), time.perf_counter()
            outcome = _outcome(lambda: compute(it, s))
            store.write(*_record(it, s, outcome, time.perf_counter() - t0, rank, world, device))
            bar.update(1)
    else:
        for ids_ in groups:
            batch = [by_id[i] for i in ids_]
            seeds = [item_seed(seed, i) for i in ids_]
            t0 = time.perf_counter()
            outcomes = _group_outcomes(group[0], batch, seeds) if len(batch) > 1 else None
            if outcomes is None:  # one by one; members stored before need no computing alone
                outcomes = [_outcome(lambda: compute(it, s)) if it.id in pending else None
                            for it, s in zip(batch, seeds)]
            share = (time.perf_counter() - t0) / len(batch)
            for it, s, outcome in zip(batch, seeds, outcomes):
                if it.id in pending:  # a group partly stored before is computed whole, its stored items kept
                    store.write(*_record(it, s, outcome, share, rank, world, device))
                    bar.update(1)
    bar.close()
    state.wait_for_everyone()
    if main:
        merge(directory)
    summary = broadcast_object_list([summarize(directory) if main else None], from_process=0)[0]
    say(format_summary(summary, details=False))
    return summary


def _outcome(fn: Callable[[], Any]) -> Any:
    """``fn()``, or the :class:`~diffpid.errors.DiffpidError` it raised (a bad item, not a bug)."""
    try:
        return fn()
    except DiffpidError as err:
        return err


def _group_outcomes(compute_group: Callable, batch: Sequence[Item], seeds: Sequence[int]) -> list[Any] | None:
    """One outcome per item of a group, or ``None`` when the group as a whole failed with a
    ``DiffpidError`` (its items are then computed one by one, so each failure names its item)."""
    outcomes = _outcome(lambda: list(compute_group(batch, seeds)))
    if isinstance(outcomes, DiffpidError):
        return None
    if len(outcomes) != len(batch):
        raise TypeError(f"the group function returned {len(outcomes)} outcomes for {len(batch)} items")
    return outcomes


def _record(it: Item, s: int, outcome: Any, seconds: float, rank: int, world: int, device: str
            ) -> tuple[ItemRecord, Mapping[str, np.ndarray]]:
    """The store record (and arrays) of an item's outcome: an :class:`ItemResult` or a ``DiffpidError``."""
    if isinstance(outcome, DiffpidError):
        rec = ItemRecord(it.id, it.name, "failed", None, type(outcome).__name__, str(outcome), s, 0.0, rank, world,
                         device, {})
        arrays: Mapping[str, np.ndarray] = {}
    elif isinstance(outcome, ItemResult):
        rec = ItemRecord(it.id, it.name, "done", outcome.values, None, None, s, 0.0, rank, world, device, {})
        arrays = outcome.arrays
    else:
        raise TypeError(f"the per-item function returned {type(outcome).__name__}, not ItemResult")
    return replace(rec, seconds=round(seconds, 4)), arrays


def model_key(model: Any) -> str:
    """How the model enters run parameters: ``embedded:shapes``, an absolute folder, a hub id, or a model's name.

    A folder with a ``training.json`` (a shapes checkpoint) adds its training step (``embedded:shapes@step3000``),
    so that a retrained checkpoint starts a new run instead of reusing the old one's results.
    """
    from ..models.base import Model

    if isinstance(model, Model):
        return f"object:{model.name}"
    key = "embedded:shapes" if model is None else os.path.abspath(model) if os.path.isdir(str(model)) else str(model)
    step = training_step(model_folder(model))
    return key if step is None else f"{key}@step{step}"


def training_step(folder: Path | None) -> Any:
    """The ``steps`` recorded in a model folder's ``training.json`` (shapes checkpoints), else ``None``."""
    if folder is None or not (folder / "training.json").exists():
        return None
    try:
        rec = json.loads((folder / "training.json").read_text())
    except (OSError, ValueError):
        return None
    return rec.get("steps") if isinstance(rec, dict) else None


def model_folder(model: Any) -> Path | None:
    """The folder of the model when it is the embedded one or a local folder."""
    if model is None:
        from ..shapes.model import default_model_path

        return default_model_path()
    if isinstance(model, (str, os.PathLike)) and os.path.isdir(model):
        return Path(model)
    return None
