"""The state of a run folder read back: its records, summary, merged results and exit status."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ParameterError
from .store import CorruptRecord, ItemRecord, RunStore, write_atomic

@dataclass(frozen=True)
class RunSummary:
    """The state of a run folder.

    Args:
        directory: the run folder.
        parameters: the parameters of the run (``run.json``).
        total: items of the latest invocation.
        done: items computed successfully.
        failed: records of the items that failed, with their reasons.
        remaining: ids of the items without a valid record.
        corrupt: ids whose stored record is damaged (they count as remaining).
        extra: records of items that are not in the latest item list.
    """

    directory: Path
    parameters: dict
    total: int
    done: int
    failed: tuple[ItemRecord, ...]
    remaining: tuple[str, ...]
    corrupt: tuple[str, ...]
    extra: int

def collect(directory: str | os.PathLike, include_failed: bool = True) -> tuple[ItemRecord, ...]:
    """The stored records of a run in item order (items without a valid record are left out).

    Args:
        directory: the run folder.
        include_failed: keep the records of failed items.
    """
    store = RunStore(directory)
    out = []
    for i, _ in store.read_items():
        try:
            rec = store.read(i)
        except CorruptRecord:
            continue
        if rec is not None and (include_failed or rec.status == "done"):
            out.append(rec)
    return tuple(out)

def merge(directory: str | os.PathLike) -> Path:
    """Write ``results.jsonl`` (every valid record, in item order) atomically; returns its path."""
    import json
    from dataclasses import asdict

    lines = [json.dumps(asdict(r), ensure_ascii=False, sort_keys=True) for r in collect(directory)]
    return write_atomic(Path(directory) / "results.jsonl", ("\n".join(lines) + "\n" if lines else "").encode())

def summarize(directory: str | os.PathLike) -> RunSummary:
    """The :class:`RunSummary` of a run folder."""
    store = RunStore(directory)
    params = store.read_parameters()
    listed = store.read_items()
    done, failed, remaining, corrupt = 0, [], [], []
    for i, rec, damaged in store.scan(i for i, _ in listed):
        if damaged:
            corrupt.append(i)
        if rec is None:
            remaining.append(i)
        elif rec.status == "done":
            done += 1
        else:
            failed.append(rec)
    extra = len(store.stored_ids() - {i for i, _ in listed})
    return RunSummary(Path(directory), params, len(listed), done, tuple(failed), tuple(remaining), tuple(corrupt),
                      extra)

def find_runs(path: str | os.PathLike) -> list[Path]:
    """Run folders at ``path``: the folder itself when it holds ``run.json``, else its run subfolders."""
    path = Path(path)
    if (path / "run.json").exists():
        return [path]
    if not path.is_dir():
        raise ParameterError(f"{path} does not exist; pass a run folder or the --out folder of `diffpid run`")
    runs = sorted(p for p in path.iterdir() if (p / "run.json").exists())
    if not runs:
        raise ParameterError(f"{path} holds no diffpid runs (no */run.json); pass the --out folder of `diffpid run`")
    return runs

def format_summary(s: RunSummary, details: bool = True, max_failed: int = 20) -> str:
    """A few lines that describe a run: counts, parameters, failures with their reasons."""
    lines = [f"{s.directory}: {s.done} done, {len(s.failed)} failed, {len(s.remaining)} remaining "
             f"of {s.total} items" + (f" ({len(s.corrupt)} damaged records to redo)" if s.corrupt else "")
             + (f"; {s.extra} stored results of items not in the latest item list" if s.extra else "")]
    if details:
        lines.append("  parameters: " + ", ".join(f"{k}={v}" for k, v in sorted(s.parameters.items())))
        for r in s.failed[:max_failed]:
            lines.append(f"  failed {r.name or r.id}: {r.error_type}: {r.error}")
        if len(s.failed) > max_failed:
            lines.append(f"  ... and {len(s.failed) - max_failed} more failed items")
    return "\n".join(lines)

def _main_process() -> bool:
    try:
        from accelerate import PartialState

        return PartialState().is_main_process
    except Exception:  # noqa: BLE001 - no accelerate state: a single process
        return True

def failed_items_exit(failed: int, total: int, where: Any) -> int:
    """``EXIT_FAILED_ITEMS`` (3) after one line on stderr that says how many items failed and where the reasons are.

    Returns 0 when nothing failed. Only the main process prints (under ``accelerate launch``).
    """
    import sys

    from ..errors import EXIT_FAILED_ITEMS

    if not failed:
        return 0
    if _main_process():
        merged = Path(where) / "results.jsonl"
        print(f"diffpid: {failed} of {total} items failed; their reasons: `diffpid runs show {where}`"
              + (f" (also in {merged})" if (Path(where) / "run.json").exists() else ""), file=sys.stderr, flush=True)
    return EXIT_FAILED_ITEMS

def exit_status(summary: RunSummary) -> int:
    """The exit status of a command that ran ``summary``: 0 all done, 3 items failed, 1 items left uncomputed."""
    import sys

    if summary.failed:
        return failed_items_exit(len(summary.failed), summary.total, summary.directory)
    if summary.remaining:
        if _main_process():
            print(f"diffpid: {len(summary.remaining)} of {summary.total} items were not computed; run the same "
                  "command again to compute them", file=sys.stderr, flush=True)
        return 1
    return 0
