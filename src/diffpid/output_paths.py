"""Checks that an output path can be written, made before any model is loaded.

Every command that writes (``explain``'s report folder, the run root of ``diffpid run`` and
the benches, ``train-shapes``' checkpoint and export folders) calls :func:`check_writable`
first, so a path that cannot be written fails in one line and in a second, not with a
traceback after the compute:

- paths on the kernel's virtual file systems (``/proc``, ``/sys``, ``/dev`` but ``/dev/shm``),
- a path under a regular file (``notes.txt/out``), or an existing file where a folder is wanted,
- a folder in which nothing can be created (read-only mount, no permission): tested by
  creating and removing an empty hidden folder (``.diffpid-write-test-*``) in the nearest
  existing folder, which also works for root, for whom permission bits say nothing,
- the current folder or a folder above it, which no command may replace (:func:`refuse_cwd`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from .errors import OutputPathError, ParameterError

VIRTUAL_ROOTS = ("/proc", "/sys", "/dev")
WRITABLE_VIRTUAL = ("/dev/shm",)


def absolute(path: Any, what: str = "the output path") -> Path:
    """``path`` (str or path-like, ``~`` expanded) as an absolute, normalised ``Path`` (symbolic links kept)."""
    if isinstance(path, bytes) or not isinstance(path, (str, os.PathLike)):
        raise ParameterError(f"{what} must be a folder path (str or pathlib.Path), got {type(path).__name__}")
    text = os.fspath(path)
    if not str(text).strip():
        raise ParameterError(f"{what} is empty; pass a folder path")
    return Path(os.path.abspath(os.path.expanduser(text)))


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _virtual(path: Path) -> str | None:
    real = os.path.realpath(path)
    if any(_under(real, w) for w in WRITABLE_VIRTUAL):
        return None
    for root in VIRTUAL_ROOTS:
        if _under(real, root):
            return root
    return None


def nearest_existing(path: Path) -> Path:
    """``path`` itself when it exists, else its closest existing ancestor."""
    p = path
    while not (p.exists() or p.is_symlink()) and p != p.parent:
        p = p.parent
    return p


def refuse_cwd(path: Any, what: str = "the output folder") -> None:
    """Refuse ``path`` when it is the current folder or a folder above it (it would be replaced or deleted)."""
    real = os.path.realpath(absolute(path))
    cwd = os.path.realpath(os.getcwd())
    if _under(cwd, real):
        where = "the current folder" if real == cwd else "a folder above the current folder"
        raise OutputPathError(f"{what} {os.fspath(path)!r} is {where}; diffpid never replaces it, "
                              "pass a new folder such as --out diffpid-out/NAME")


def check_writable(path: Any, *, inside: bool = False, what: str = "--out") -> Path:
    """Check that the folder ``path`` can be created (or, with ``inside``, written into); returns it absolute.

    Args:
        path: the folder that will be written (it may exist).
        inside: files go into ``path`` itself (a run root), so probe it when it exists; otherwise
            (a report folder, written beside itself and renamed into place) probe its parent.
        what: how the path is named in the message (the option it came from).

    Raises:
        OutputPathError: the path is on a virtual file system, under a file, is a file, or
            nothing can be created where it would go.
    """
    p = absolute(path, what)
    root = _virtual(p)
    if root is not None:
        raise OutputPathError(f"{what} {os.fspath(path)!r} is on the system's virtual file system {root}, "
                              "which holds no files; choose a folder on a disk")
    if (p.exists() or p.is_symlink()) and not p.is_dir():
        kind = "a broken symbolic link" if p.is_symlink() and not p.exists() else "a file"
        raise OutputPathError(f"{what} {os.fspath(path)!r} is {kind}, not a folder; choose another path")
    start = p if inside and p.is_dir() else p.parent
    base = nearest_existing(start)
    if not base.is_dir():
        raise OutputPathError(f"{what} {os.fspath(path)!r} cannot be created: {base} is a file, not a folder")
    try:
        probe = tempfile.mkdtemp(prefix=".diffpid-write-test-", dir=base)
    except OSError as err:
        raise OutputPathError(f"{what} {os.fspath(path)!r} cannot be written: nothing can be created in {base} "
                              f"({type(err).__name__}: {err.strerror or err}); choose a writable folder") from None
    os.rmdir(probe)
    return p
