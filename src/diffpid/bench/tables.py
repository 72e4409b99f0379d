"""Results tables of the benchmarks: one markdown file and one JSON file per bench.

A :class:`ResultTable` is a title, column names, rows of plain values, notes (what was
measured, what a reader must know) and metadata (model, samples, seed, checkpoint step).
:func:`write_table` writes ``NAME.md`` and ``NAME.json`` atomically into a folder.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..errors import ParameterError

__all__ = ["ResultTable", "format_value", "to_markdown", "write_table"]


@dataclass(frozen=True)
class ResultTable:
    """A benchmark's results.

    Args:
        title: one line naming the bench and dataset.
        columns: column names.
        rows: one tuple of plain values (str, int, float, None) per row, in column order.
        notes: sentences printed under the table.
        meta: JSON-ready facts about the run (model, samples, seed, items, ...).
    """

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]
    notes: tuple[str, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for r in self.rows:
            if len(r) != len(self.columns):
                raise ParameterError(f"a row has {len(r)} values for {len(self.columns)} columns: {r}")


def format_value(v: Any) -> str:
    """A cell as text: floats with 2 decimals (4 below 1 unless 2 suffice), NaN and None as a dash."""
    if v is None:
        return "-"
    if isinstance(v, float):
        if math.isnan(v):
            return "-"
        if abs(v) >= 1e5 or (v != 0 and abs(v) < 1e-3):
            return f"{v:.4g}"
        return f"{v:.2f}" if v == round(v, 2) or abs(v) >= 1 else f"{v:.4f}"
    return str(v).replace("|", "\\|")


def to_markdown(t: ResultTable) -> str:
    """The table as GitHub markdown (title, meta line, table, notes)."""
    lines = [f"### {t.title}", ""]
    if t.meta:
        lines += ["; ".join(f"{k}: {format_value(v)}" for k, v in t.meta.items()), ""]
    lines.append("| " + " | ".join(t.columns) + " |")
    lines.append("|" + "|".join("---" for _ in t.columns) + "|")
    for r in t.rows:
        lines.append("| " + " | ".join(format_value(v) for v in r) + " |")
    if t.notes:
        lines.append("")
        lines += [f"- {n}" for n in t.notes]
    return "\n".join(lines) + "\n"


def _json_ready(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if hasattr(v, "tolist") and not isinstance(v, (str, bytes)):  # numpy arrays and scalars
        return _json_ready(v.tolist())
    if isinstance(v, Mapping):
        return {str(k): _json_ready(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_ready(x) for x in v]
    return v


def write_table(folder: str | os.PathLike, name: str, table: ResultTable, extra: Mapping[str, Any] | None = None,
                ) -> tuple[Path, Path]:
    """Write ``folder/NAME.md`` and ``folder/NAME.json`` atomically.

    Args:
        folder: output folder (created).
        name: file stem, e.g. ``localization-shapes``.
        table: the results.
        extra: further JSON-ready detail stored only in the JSON (per-threshold curves, per-group counts).

    Returns:
        The paths of the markdown and JSON files.
    """
    from ..runs.store import write_atomic

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"title": table.title, "columns": list(table.columns),
           "rows": [dict(zip(table.columns, r)) for r in table.rows], "notes": list(table.notes),
           "meta": dict(table.meta), **({"detail": dict(extra)} if extra else {})}
    md = write_atomic(folder / f"{name}.md", to_markdown(table).encode())
    js = write_atomic(folder / f"{name}.json", (json.dumps(_json_ready(doc), indent=2) + "\n").encode())
    return md, js

