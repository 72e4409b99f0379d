"""Writing an explanation to a folder, atomically.

The folder holds::

    report.html          the self-contained report (open it in any browser)
    results.json         every value with its standard error (schema: results_schema.json)
    maps.npz             raw float maps at the model's resolution: image, mi/<slug>, mi_stderr/<slug>,
                         mi_standard/<slug>, cmi/..., pid/<atom>, pid_stderr/<atom>, cpid/...,
                         attention/<slug>   (slugs: results.json "slugs"; atoms: redundancy,
                         unique_1, unique_2, synergy)
    image.png            the analysed image
    curves.png           the noise-level curves
    maps/<kind>_<slug>.png     every map over the image (kind: mi, cmi, pid, cpid, attention)
    maps/colorbar_<kind>.png   the colour scale shared by the maps of a kind

Everything is written into a hidden sibling folder that is renamed into place at the end, so
an interruption never leaves a half-written output folder; an existing folder is replaced
only after the new one is complete.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import OutputExistsError
from .assets import build_assets
from .html import render_html
from .maps import unique_slugs
from .results import FILES, results_json


def check_output(directory: Any, overwrite: bool = False) -> Path:
    """Refuse an existing output ``directory`` unless ``overwrite``; returns it as a ``Path``.

    Raises:
        OutputExistsError: the folder (or a file of that name) exists and ``overwrite`` is false.
    """
    target = Path(directory)
    if (target.exists() or target.is_symlink()) and not overwrite:
        raise OutputExistsError(f"{target} exists; pass --overwrite (overwrite=True) to replace it")
    return target


def map_arrays(expl: Any) -> dict[str, np.ndarray]:
    """The arrays of ``maps.npz``: ``image`` and every map and standard-error map, keyed ``<kind>/<slug>``."""
    slugs = unique_slugs(list(expl.words))
    out: dict[str, np.ndarray] = {"image": np.asarray(expl.image, dtype=np.uint8)}
    for kind, table in (("mi", expl.mi), ("cmi", expl.cmi)):
        for w in expl.words:
            s = slugs[w]
            out[f"{kind}/{s}"] = np.asarray(table[w].pixel_map, dtype=np.float64)
            out[f"{kind}_stderr/{s}"] = np.asarray(table[w].pixel_stderr, dtype=np.float64)
            out[f"{kind}_standard/{s}"] = np.asarray(table[w].standard_map, dtype=np.float64)
    for kind in ("pid", "cpid"):
        dec = getattr(expl, kind)
        if dec is None:
            continue
        for name in ("redundancy", "unique_1", "unique_2", "synergy"):
            atom = getattr(dec, name)
            if atom.pixel_map is not None:
                out[f"{kind}/{name}"] = np.asarray(atom.pixel_map, dtype=np.float64)
            if atom.pixel_stderr is not None:
                out[f"{kind}_stderr/{name}"] = np.asarray(atom.pixel_stderr, dtype=np.float64)
    if expl.attention is not None:
        for w in expl.words:
            if expl.attention.get(w) is not None:
                out[f"attention/{slugs[w]}"] = np.asarray(expl.attention[w], dtype=np.float64)
    return out


def write_report(expl: Any, folder: Path) -> None:
    """Write every file of the report into the existing, empty ``folder`` (not atomic; see :func:`save_explanation`)."""
    (folder / FILES["results"]).write_text(results_json(expl) + "\n", encoding="utf-8")
    np.savez_compressed(folder / FILES["maps_npz"], **map_arrays(expl))
    assets = build_assets(expl)
    (folder / FILES["image"]).write_bytes(assets.image_png)
    (folder / "maps").mkdir()
    for item in assets.maps:
        (folder / item.map.filename).write_bytes(item.png)
    for group, png in assets.colorbars:
        (folder / "maps" / f"colorbar_{group}.png").write_bytes(png)
    (folder / FILES["curves"]).write_bytes(assets.curves_png)
    (folder / FILES["report"]).write_text(render_html(expl, assets), encoding="utf-8")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def save_explanation(expl: Any, directory: Any, overwrite: bool = False) -> Path:
    """Write the report of an explanation into ``directory``, atomically.

    Files are written into a hidden sibling folder (``.NAME.partial-*``), which is renamed to
    ``directory`` once complete. With ``overwrite``, an existing ``directory`` is moved aside
    only then, and deleted after the rename; if anything fails, the partial folder is removed
    and the old one is left as it was.

    Args:
        expl: an :class:`~diffpid.explain.Explanation`.
        directory: the output folder (its parents are created).
        overwrite: replace an existing folder.

    Returns:
        the output folder.

    Raises:
        OutputExistsError: ``directory`` exists and ``overwrite`` is false.
    """
    target = check_output(directory, overwrite)
    parent = target.absolute().parent
    parent.mkdir(parents=True, exist_ok=True)
    partial = parent / f".{target.name}.partial-{uuid.uuid4().hex[:12]}"
    partial.mkdir()
    try:
        write_report(expl, partial)
        if not (target.exists() or target.is_symlink()):
            os.rename(partial, target)
            return target
        check_output(target, overwrite)
        old = parent / f".{target.name}.old-{uuid.uuid4().hex[:12]}"
        os.rename(target, old)
        try:
            os.rename(partial, target)
        except BaseException:
            os.rename(old, target)
            raise
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    _remove(old)
    return target
