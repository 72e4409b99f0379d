"""COCO-IT (Kong et al., ICLR 2024): (image, category) rows of COCO 2017 val for localization.

Files, laid out as the published code expects (each path can also be given on its own)::

    ROOT/COCO-IT.csv                          the published CSV (6,927 rows)
    ROOT/val2017/000000397133.jpg ...         COCO 2017 val images
    ROOT/annotations/instances_val2017.json   COCO instance annotations

The CSV has a header and five columns, in this order (the names as published)::

    Image ID, Label, correct_obj+context, context, correct_obj
    397133,   person, A person standing by a stove in a kitchen., A  standing by ..., person

``Label`` is the COCO category; ``correct_obj+context`` the caption; ``context`` the
caption with the object word deleted (kept for reference; the benches remove the word
themselves with :func:`diffpid.prompts.remove_words`); ``correct_obj`` the object word as
written in the caption (``toilets`` for the category ``toilet``). The mask of a row is the
union of the instance masks of its category in its image (crowd regions included, as the
published code does), read with ``pycocotools`` (``pip install 'diffpid[coco]'``).
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import DatasetError

CSV_COLUMNS = ("Image ID", "Label", "correct_obj+context", "context", "correct_obj")
"""The published column names, in order."""

__all__ = ["CSV_COLUMNS", "CocoIT", "CocoItRow", "read_coco_it_csv", "require_pycocotools"]


@dataclass(frozen=True)
class CocoItRow:
    """One row of COCO-IT.

    Args:
        image_id: the COCO image id.
        label: the COCO category name (``dining table``).
        caption: the caption (``correct_obj+context``).
        context: the published caption without the object word.
        word: the object word as it appears in the caption (``correct_obj``).
        line: line number in the CSV (the header is line 1).
    """

    image_id: int
    label: str
    caption: str
    context: str
    word: str
    line: int


def read_coco_it_csv(path: str | os.PathLike) -> tuple[CocoItRow, ...]:
    """The rows of a COCO-IT CSV, in file order.

    Columns are read by position, as the published code does; the header must have at
    least the five published columns.

    Raises:
        DatasetError: the file is missing, has too few columns, or a row has a bad image id or an empty caption/word.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"cannot read the COCO-IT CSV {str(path)!r} ({type(err).__name__}); pass the published "
                           "COCO-IT.csv") from err
    reader = csv.reader(text.splitlines())
    header = next(reader, None)
    if header is None or len(header) < 5:
        raise DatasetError(f"{path.name} needs a header with the columns {', '.join(CSV_COLUMNS)}; got {header}")
    rows = []
    for n, r in enumerate(reader, 2):
        if not r or not any(c.strip() for c in r):
            continue
        if len(r) < 5:
            raise DatasetError(f"{path.name} line {n} has {len(r)} columns, expected {len(CSV_COLUMNS)}")
        try:
            image_id = int(float(r[0]))
        except ValueError:
            raise DatasetError(f"{path.name} line {n}: image id {r[0]!r} is not a number") from None
        caption, word = r[2].strip(), r[4].strip()
        if not caption or not word:
            raise DatasetError(f"{path.name} line {n} has an empty caption or object word")
        rows.append(CocoItRow(image_id, r[1].strip(), caption, r[3], word, n))
    return tuple(rows)


def require_pycocotools() -> Any:
    """The ``pycocotools.coco`` module, or a :class:`DatasetError` that says how to install it."""
    try:
        from pycocotools import coco
    except ImportError:
        raise DatasetError("COCO masks need pycocotools; install it with `pip install 'diffpid[coco]'` "
                           "(or `pip install pycocotools`)") from None
    return coco


class CocoIT:
    """COCO-IT rows with their images and masks.

    Args:
        root: folder with ``COCO-IT.csv``, ``val2017/`` and ``annotations/instances_val2017.json``.
        csv_path, images, annotations: override one of those paths.

    Raises:
        DatasetError: a file or folder is missing, or pycocotools is not installed.
    """

    def __init__(self, root: str | os.PathLike | None = None, *, csv_path: str | os.PathLike | None = None,
                 images: str | os.PathLike | None = None, annotations: str | os.PathLike | None = None) -> None:
        base = Path(root) if root is not None else None
        if base is None and None in (csv_path, images, annotations):
            raise DatasetError("give the COCO-IT root folder, or all of the CSV, images folder and annotations file")
        self.csv_path = Path(csv_path) if csv_path is not None else base / "COCO-IT.csv"
        self.images = Path(images) if images is not None else base / "val2017"
        self.annotations = Path(annotations) if annotations is not None else base / "annotations" / "instances_val2017.json"
        for label, p, is_dir in (("CSV", self.csv_path, False), ("images folder", self.images, True),
                                 ("instances annotations", self.annotations, False)):
            if not (p.is_dir() if is_dir else p.is_file()):
                raise DatasetError(f"COCO-IT {label} not found at {p}; put it there or pass its path")
        self.rows = read_coco_it_csv(self.csv_path)
        coco = require_pycocotools()
        import contextlib
        import io

        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            try:
                self.coco = coco.COCO(str(self.annotations))
            except (ValueError, KeyError, TypeError) as err:
                raise DatasetError(f"{self.annotations.name} is not a COCO instances file ({type(err).__name__}: {err})") from None

    def __len__(self) -> int:
        return len(self.rows)

    def image_path(self, row: CocoItRow) -> str:
        """Path of the row's image (from the annotations' ``file_name``)."""
        info = self.coco.imgs.get(row.image_id)
        if info is None:
            raise DatasetError(f"image {row.image_id} (CSV line {row.line}) is not in {self.annotations.name}")
        return str(self.images / info["file_name"])

    def mask(self, row: CocoItRow) -> np.ndarray:
        """``(H, W)`` boolean union of the instance masks of the row's category in its image.

        Raises:
            DatasetError: unknown image or category, or no instance of the category in the image.
        """
        if row.image_id not in self.coco.imgs:
            raise DatasetError(f"image {row.image_id} (CSV line {row.line}) is not in {self.annotations.name}")
        cats = self.coco.getCatIds(catNms=[row.label])
        if not cats:
            raise DatasetError(f"category {row.label!r} (CSV line {row.line}) is not in {self.annotations.name}")
        anns = self.coco.loadAnns(self.coco.getAnnIds(imgIds=[row.image_id], catIds=cats, iscrowd=None))
        if not anns:
            raise DatasetError(f"image {row.image_id} has no {row.label!r} instance (CSV line {row.line})")
        info = self.coco.imgs[row.image_id]
        out = np.zeros((info["height"], info["width"]), dtype=bool)
        for a in anns:
            out |= self.coco.annToMask(a).astype(bool)
        return out
