"""Running a study's items through the resumable store (:mod:`diffpid.runs`) and reading them back.

A study is a list of :class:`~diffpid.runs.runner.Item` and a per-item function; :func:`run_study`
runs the items not yet stored (each result written atomically, so a killed run resumes),
then returns every done item's values and arrays in item order; :func:`read_rows` reads a
user's CSV or JSON-lines item file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .runner import Item, ItemResult, jsonl_objects, run_items
from .store import RunStore
from .summary import RunSummary, collect

__all__ = ["StoredItem", "StudyRun", "read_rows", "run_study"]


@dataclass(frozen=True)
class StoredItem:
    """A done item read back from the store.

    Args:
        id, name: the item's id and label.
        values: its JSON values.
        arrays: its arrays (empty when it saved none).
    """

    id: str
    name: str | None
    values: Any
    arrays: Mapping[str, np.ndarray]


@dataclass(frozen=True)
class StudyRun:
    """A finished (or partly failed) study run.

    Args:
        summary: the store's :class:`~diffpid.runs.summary.RunSummary` (folder, counts, failures).
        items: the done items in item order.
    """

    summary: RunSummary
    items: tuple[StoredItem, ...]


def run_study(
    name: str,
    items: Sequence[Item],
    compute: Callable[[Item, int], ItemResult],
    *,
    out: str | os.PathLike,
    parameters: Mapping[str, Any],
    seed: int,
    progress: bool = False,
    retry_failed: bool = False,
    compute_group: Callable[[Sequence[Item], Sequence[int]], Sequence[Any]] | None = None,
    items_per_call: int = 1,
) -> StudyRun:
    """Run a study's items (resuming a stopped run) and read the done items back.

    Args:
        name: the study's name (prefix of the run folder ``out/NAME-<hash>``).
        items: the items, in table order.
        compute: ``compute(item, seed) -> ItemResult``.
        out: the study's output folder.
        parameters: JSON-ready values that determine the numbers.
        seed: run seed (item seeds derive from it and the item ids).
        progress: progress bar.
        retry_failed: compute failed items again.
        compute_group, items_per_call: several items at once, sharing denoiser calls
            (:func:`~diffpid.runs.runner.run_items`).
    """
    summary = run_items(items, compute, out=out, parameters=dict(parameters, study=name), seed=seed, name=name,
                        progress=progress, retry_failed=retry_failed, compute_group=compute_group,
                        items_per_call=items_per_call)
    store = RunStore(summary.directory)
    done = []
    for rec in collect(summary.directory, include_failed=False):
        arrays = store.load_arrays(rec.id) if rec.arrays else {}
        done.append(StoredItem(rec.id, rec.name, rec.values, arrays))
    return StudyRun(summary, tuple(done))


def read_rows(path: str | os.PathLike, required: Sequence[str]) -> list[tuple[str, dict[str, str]]]:
    """Rows of a CSV (header line) or JSON-lines file as ``(label, {column: text})``.

    Args:
        path: a ``.csv`` or ``.jsonl`` file.
        required: columns every row must have (non-empty).

    Raises:
        ParameterError: unreadable file, unknown extension, or a row without a required column.
    """
    import csv

    from ..errors import ParameterError

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ParameterError(f"cannot read {str(path)!r} ({type(err).__name__}); pass a UTF-8 .csv or .jsonl file") from err
    rows: list[tuple[str, dict[str, str]]] = []
    suffix = path.suffix.lower()
    if suffix == ".csv":
        for n, row in enumerate(csv.DictReader(text.splitlines()), 2):
            rows.append((f"line {n}", {str(k).strip(): (v or "").strip() for k, v in row.items() if k is not None}))
    elif suffix in (".jsonl", ".ndjson"):
        for n, row in jsonl_objects(path.name, text):
            rows.append((f"line {n}", {str(k): "" if v is None else str(v).strip() for k, v in row.items()}))
    else:
        raise ParameterError(f"{path.name}: item files are .csv or .jsonl, got {suffix or 'no extension'!r}")
    for label, row in rows:
        missing = [c for c in required if not row.get(c)]
        if missing:
            raise ParameterError(f"{path.name} {label} lacks {', '.join(missing)}; every row needs {', '.join(required)}")
    if not rows:
        raise ParameterError(f"{path.name} holds no rows; write a header and one row per item")
    return rows
