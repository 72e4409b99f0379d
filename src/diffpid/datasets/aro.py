"""ARO (Yuksekgonul et al., ICLR 2023): VG-Relation, VG-Attribution, COCO-Order, Flickr30k-Order.

Files as the ARO code (github mertyg/vision-language-models-are-bows) stores them:

- VG-Relation / VG-Attribution: ``ROOT/visual_genome_relation.json`` /
  ``ROOT/visual_genome_attribution.json`` and the images in ``ROOT/images/``. Each file is a
  JSON list of objects with ``image_path`` (relative to ``images/``), ``bbox_x``, ``bbox_y``,
  ``bbox_w``, ``bbox_h`` (the image is cropped to that box), ``true_caption``,
  ``false_caption``, and ``relation_name`` (VG-Relation) or ``attributes`` (a pair,
  VG-Attribution). Candidates are ``[false_caption, true_caption]`` (ARO's order); the
  correct one is index 1.
- COCO-Order / Flickr30k-Order: ARO builds them from the Karpathy test annotations with
  spaCy and NLTK perturbations (nouns and adjectives shuffled, everything else shuffled,
  words shuffled within trigrams, trigrams shuffled); diffpid reads the generated test
  cases: a JSON list of ``{"image": path relative to the image folder, "caption_options":
  [correct, 4 perturbations]}`` (ARO's ``test_cases``; the Info-Decomp code saves them as
  ``coco_order_0.json`` ... ``coco_order_7.json``; give a file or a folder of them). The
  correct caption is index 0.

Macro accuracy as ARO's notebook computes it: VG-Relation over relations, without
:data:`SYMMETRIC_RELATIONS`; VG-Attribution over attribute pairs with at least 25 items.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import DatasetError

__all__ = ["AroCase", "SYMMETRIC_RELATIONS", "VG_ATTRIBUTION_MIN_COUNT", "read_order", "read_vg_attribution",
           "read_vg_relation"]

VG_ATTRIBUTION_MIN_COUNT = 25
SYMMETRIC_RELATIONS = frozenset((
    "adjusting", "attached to", "between", "bigger than", "biting", "boarding", "brushing", "chewing", "cleaning",
    "climbing", "close to", "coming from", "coming out of", "contain", "crossing", "dragging", "draped over",
    "drinking", "drinking from", "driving", "driving down", "driving on", "eating from", "eating in", "enclosing",
    "exiting", "facing", "filled with", "floating in", "floating on", "flying", "flying above", "flying in",
    "flying over", "flying through", "full of", "going down", "going into", "going through", "grazing in",
    "growing in", "growing on", "guiding", "hanging from", "hanging in", "hanging off", "hanging over",
    "higher than", "holding onto", "hugging", "in between", "jumping off", "jumping on", "jumping over", "kept in",
    "larger than", "leading", "leaning over", "leaving", "licking", "longer than", "looking in", "looking into",
    "looking out", "looking over", "looking through", "lying next to", "lying on top of", "making", "mixed with",
    "mounted on", "moving", "on the back of", "on the edge of", "on the front of", "on the other side of",
    "opening", "painted on", "parked at", "parked beside", "parked by", "parked in", "parked in front of",
    "parked near", "parked next to", "perched on", "petting", "piled on", "playing", "playing in", "playing on",
    "playing with", "pouring", "reaching for", "reading", "reflected on", "riding on", "running in", "running on",
    "running through", "seen through", "sitting behind", "sitting beside", "sitting by", "sitting in front of",
    "sitting near", "sitting next to", "sitting under", "skiing down", "skiing on", "sleeping in", "sleeping on",
    "smiling at", "sniffing", "splashing", "sprinkled on", "stacked on", "standing against", "standing around",
    "standing behind", "standing beside", "standing in front of", "standing near", "standing next to",
    "staring at", "stuck in", "surrounding", "swimming in", "swinging", "talking to", "topped with", "touching",
    "traveling down", "traveling on", "tying", "typing on", "underneath", "wading in", "waiting for",
    "walking across", "walking by", "walking down", "walking next to", "walking through", "working in",
    "working on", "worn on", "wrapped around", "wrapped in", "by", "of", "near", "next to", "with", "beside",
    "on the side of", "around",
))
"""Relations ARO leaves out of VG-Relation's macro accuracy (its notebook's list)."""


@dataclass(frozen=True)
class AroCase:
    """One ARO test case: an image and candidate captions, one of them correct.

    Args:
        image_path: the image file.
        bbox: ``(x, y, w, h)`` crop in pixels, or ``None`` for the whole image.
        captions: the candidate captions.
        correct: index of the correct caption.
        group: the macro-accuracy group (relation, ``attr1_attr2``, or ``"all"``).
        index: position in the dataset file(s).
    """

    image_path: str
    bbox: tuple[float, float, float, float] | None
    captions: tuple[str, ...]
    correct: int
    group: str
    index: int

    def load_image(self) -> Any:
        """The RGB ``PIL.Image``, cropped to :attr:`bbox` as ARO does.

        Raises:
            ImageError: the file cannot be read.
        """
        from ..models.images import to_rgb

        im = to_rgb(self.image_path)
        if self.bbox is not None:
            x, y, w, h = self.bbox
            im = im.crop((x, y, x + w, y + h))
        return im


def _load_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DatasetError(f"{path} not found; put the ARO file there or pass its folder") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DatasetError(f"cannot read {path} as JSON ({type(err).__name__}); pass the file as published") from None


def _images_folder(root: Path, images: str | os.PathLike | None) -> Path:
    folder = Path(images) if images is not None else root / "images"
    if not folder.is_dir():
        raise DatasetError(f"ARO images folder not found at {folder}; unzip the images there or pass its path")
    return folder


def _visual_genome(root: str | os.PathLike, name: str, images: str | os.PathLike | None, relation: bool,
                   ) -> tuple[AroCase, ...]:
    root = Path(root)
    data = _load_json(root / name)
    folder = _images_folder(root, images)
    if not isinstance(data, list):
        raise DatasetError(f"{name} must hold a JSON list of test cases")
    out = []
    for i, d in enumerate(data):
        try:
            bbox = tuple(float(d[k]) for k in ("bbox_x", "bbox_y", "bbox_w", "bbox_h"))
            captions = (str(d["false_caption"]), str(d["true_caption"]))
            if relation:
                group = str(d["relation_name"])
            else:
                a = d["attributes"]
                group = f"{a[0]}_{a[1]}"
            path = str(folder / d["image_path"])
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise DatasetError(f"{name} item {i} lacks a field of the ARO format ({type(err).__name__}: {err})") from None
        out.append(AroCase(path, bbox, captions, 1, group, i))
    return tuple(out)


def read_vg_relation(root: str | os.PathLike, images: str | os.PathLike | None = None) -> tuple[AroCase, ...]:
    """VG-Relation test cases from ``ROOT/visual_genome_relation.json`` (images in ``ROOT/images`` or ``images``)."""
    return _visual_genome(root, "visual_genome_relation.json", images, True)


def read_vg_attribution(root: str | os.PathLike, images: str | os.PathLike | None = None) -> tuple[AroCase, ...]:
    """VG-Attribution test cases from ``ROOT/visual_genome_attribution.json`` (images in ``ROOT/images`` or ``images``)."""
    return _visual_genome(root, "visual_genome_attribution.json", images, False)


def _order_files(path: Path, prefix: str) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DatasetError(f"{path} not found; pass the order test-case JSON file or the folder that holds it")
    files = sorted(path.glob(f"{prefix}*.json"), key=lambda p: [int(t) if t.isdigit() else t
                                                              for t in re.split(r"(\d+)", p.name)])
    if not files:
        raise DatasetError(f"{path} holds no {prefix}*.json test-case files; pass the file itself")
    return files


def read_order(path: str | os.PathLike, images: str | os.PathLike, prefix: str = "coco_order") -> tuple[AroCase, ...]:
    """COCO-Order / Flickr30k-Order test cases: ``[{"image": ..., "caption_options": [correct, ...]}, ...]``.

    Args:
        path: a JSON file, or a folder with ``PREFIX*.json`` files (read in numeric order).
        images: the folder image paths are relative to (COCO 2014 root, Flickr30k root).
        prefix: file-name prefix in a folder (``coco_order``, ``flickr30k_order``).

    Raises:
        DatasetError: missing files, or the file is in another format (e.g. raw Karpathy annotations).
    """
    folder = Path(images)
    if not folder.is_dir():
        raise DatasetError(f"image folder {folder} not found; pass the folder the test cases' image paths start from")
    out: list[AroCase] = []
    for f in _order_files(Path(path), prefix):
        data = _load_json(f)
        if not isinstance(data, list):
            raise DatasetError(f"{f.name} must hold a JSON list of test cases")
        for d in data:
            if isinstance(d, dict) and "caption" in d and "caption_options" not in d:
                raise DatasetError(f"{f.name} looks like Karpathy annotations (\"caption\"), not ARO order test cases; "
                                   "generate the perturbed captions with ARO's COCO_Order / Flickr30k_Order first")
            try:
                caps = tuple(str(c) for c in d["caption_options"])
                image = str(folder / d["image"])
            except (KeyError, TypeError) as err:
                raise DatasetError(f"{f.name} item {len(out)} lacks image/caption_options ({type(err).__name__})") from None
            if len(caps) < 2:
                raise DatasetError(f"{f.name} item {len(out)} has fewer than two caption options")
            out.append(AroCase(image, None, caps, 0, "all", len(out)))
    return tuple(out)
