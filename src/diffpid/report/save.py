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
only after the new one is complete, and only when it holds a previous diffpid report and
nothing else (:func:`report_problem`): ``overwrite`` never deletes other files, the current
folder or a folder above it. The hidden folders a killed save leaves behind are removed by
the next save of the same folder (:func:`stale_partials`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DiffpidError, OutputExistsError, OutputPathError
from ..output_paths import absolute, check_writable, refuse_cwd
from .assets import build_assets
from .html import render_html
from .maps import unique_slugs
from .results import FILES, SCHEMA_ID, results_json

#: a hidden ``.NAME.partial-*`` / ``.NAME.old-*`` folder whose process is gone, or older than this, is removed
STALE_AFTER_SECONDS = 3600.0


def report_problem(folder: Path) -> str | None:
    """Why ``folder`` is not a folder of a previous diffpid report (``None`` when it is one).

    A report folder holds a ``results.json`` with diffpid's schema id, and nothing but the
    files that report lists (``results.json`` "files"), the known report files and
    ``maps/`` with PNG maps: a folder with anything else is never replaced. An empty
    folder counts as replaceable.
    """
    results = folder / FILES["results"]
    try:
        if not any(folder.iterdir()):
            return None  # an empty folder loses nothing
    except OSError as err:
        return f"its files cannot be listed ({type(err).__name__})"
    try:
        body = json.loads(results.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "it holds no results.json of a diffpid report"
    except (OSError, UnicodeDecodeError, ValueError):
        return "its results.json is not a diffpid report's (unreadable JSON)"
    schema = body.get("schema") if isinstance(body, dict) else None
    if not isinstance(schema, str) or not schema.startswith(SCHEMA_ID.rsplit("/", 1)[0] + "/"):
        return "its results.json is not a diffpid report's (no diffpid schema id)"
    listed = body.get("files") if isinstance(body.get("files"), dict) else {}
    allowed = {str(v) for v in listed.values()} | set(FILES.values()) | {"maps"}
    try:
        foreign = _foreign(folder, allowed)
    except OSError as err:
        return f"its files cannot be listed ({type(err).__name__})"
    if foreign:
        return f"it also holds {foreign}, which is not part of a diffpid report"
    return None


def _foreign(folder: Path, allowed: set[str]) -> str | None:
    """The first entry of ``folder`` that a report does not write (``maps/`` may hold PNGs only)."""
    for entry in sorted(folder.iterdir()):
        if entry.name not in allowed:
            return entry.name
        if entry.name == "maps":
            if entry.is_symlink() or not entry.is_dir():
                return "maps (not a folder)"
            for m in sorted(entry.iterdir()):
                if m.is_symlink() or not m.is_file() or m.suffix.lower() != ".png":
                    return f"maps/{m.name}"
        elif entry.is_symlink() or not entry.is_file():
            return f"{entry.name} (not a plain file)"
    return None


def check_output(directory: Any, overwrite: bool = False) -> Path:
    """Check, before anything is computed, that a report can be written to ``directory``; returns it as a ``Path``.

    An existing ``directory`` is replaced only with ``overwrite`` and only when it holds a
    previous diffpid report (:func:`report_problem`); never the current folder or one above it.
    The path must be writable (:func:`diffpid.output_paths.check_writable`).

    Raises:
        OutputExistsError: the folder exists and ``overwrite`` is false.
        OutputPathError: it cannot be written, or it exists and is not a diffpid report folder.
    """
    target = absolute(directory, "the output folder")
    shown = os.fspath(directory)
    if target.exists() or target.is_symlink():
        if target.is_symlink():
            problem = "it is a symbolic link"
        elif not target.is_dir():
            problem = "it is a file, not a folder"
        else:
            problem = report_problem(target)
        if not overwrite:
            if problem is None:
                raise OutputExistsError(f"{shown} exists; pass --overwrite (overwrite=True) to replace it")
            raise OutputExistsError(f"{shown} exists and is not a diffpid report folder ({problem}); "
                                    "choose another --out")
        refuse_cwd(target)
        if problem is not None:
            raise OutputPathError(f"--overwrite replaces only a previous diffpid report, and {shown} is not one "
                                  f"({problem}); choose another --out")
    check_writable(target, what="the output folder")
    return Path(directory)


def _host() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _aside_name(name: str, kind: str) -> str:
    """``.NAME.partial-<host>-<pid>-<random>``: the owner is in the name, to tell stale folders from live ones."""
    return f".{name}.{kind}-{_host()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # PermissionError: it exists, owned by someone else
        return True
    return True


def stale_partials(directory: Any, now: float | None = None) -> list[Path]:
    """Hidden folders that a killed save of ``directory`` left beside it (``.NAME.partial-*``, ``.NAME.old-*``).

    A folder counts as stale when its name is one diffpid makes, it holds only report files,
    and either the process named in it (same host) is no longer running or it was last
    changed more than :data:`STALE_AFTER_SECONDS` ago (saving takes seconds, so a folder that
    old is no concurrent run's). Folders of older versions, without an owner in the name, go by age.
    """
    target = absolute(directory, "the output folder")
    parent, name = target.parent, target.name
    if not name or not parent.is_dir():
        return []
    pattern = re.compile(r"\." + re.escape(name) + r"\.(?:partial|old)-(?:([0-9a-f]{8})-(\d+)-)?[0-9a-f]{12}")
    now = time.time() if now is None else now
    allowed = set(FILES.values()) | {"maps"}
    out = []
    try:
        entries = list(parent.iterdir())
    except OSError:
        return []
    for p in entries:
        m = pattern.fullmatch(p.name)
        if m is None or p.is_symlink() or not p.is_dir():
            continue
        try:
            st = p.stat()
            if _foreign(p, allowed) is not None:
                continue
        except OSError:
            continue
        dead = m.group(1) == _host() and not _alive(int(m.group(2)))
        if dead or now - max(st.st_mtime, st.st_ctime) > STALE_AFTER_SECONDS:
            out.append(p)
    return out


def remove_stale_partials(directory: Any) -> list[Path]:
    """Delete :func:`stale_partials` of ``directory``; returns what was removed."""
    removed = []
    for p in stale_partials(directory):
        shutil.rmtree(p, ignore_errors=True)
        if not p.exists():
            removed.append(p)
    return removed


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
    ``directory`` once complete. With ``overwrite``, an existing report folder is moved aside
    only then, and deleted after the rename; if anything fails, the partial folder is removed
    and the old one is left as it was. Stale partial folders of earlier, killed saves of the
    same ``directory`` are removed first (:func:`stale_partials`).

    Args:
        expl: an :class:`~diffpid.explain.Explanation`.
        directory: the output folder (its parents are created).
        overwrite: replace an existing folder that holds a previous diffpid report.

    Returns:
        the output folder.

    Raises:
        OutputExistsError: ``directory`` exists and ``overwrite`` is false.
        OutputPathError: ``directory`` cannot be written, or exists and is not a diffpid report folder.
    """
    shown = check_output(directory, overwrite)
    target = absolute(directory)
    parent = target.parent
    remove_stale_partials(target)
    try:
        parent.mkdir(parents=True, exist_ok=True)
        partial = parent / _aside_name(target.name, "partial")
        partial.mkdir()
    except OSError as err:
        raise OutputPathError(f"cannot create the output folder {os.fspath(shown)!r} "
                              f"({type(err).__name__}: {err.strerror or err})") from None
    old = None
    try:
        write_report(expl, partial)
        if not (target.exists() or target.is_symlink()):
            os.rename(partial, target)
            return shown
        check_output(target, overwrite)
        old = parent / _aside_name(target.name, "old")
        os.rename(target, old)
        try:
            os.rename(partial, target)
        except BaseException:
            os.rename(old, target)
            raise
    except OSError as err:
        shutil.rmtree(partial, ignore_errors=True)
        if isinstance(err, DiffpidError):
            raise
        raise OutputPathError(f"cannot write the report to {os.fspath(shown)!r} "
                              f"({type(err).__name__}: {err.strerror or err}); nothing was changed there") from None
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    _remove(old)
    return shown
