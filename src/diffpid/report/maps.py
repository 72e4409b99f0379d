"""The maps of an explanation, their shared colour scales, and heat-map overlays on the image.

Maps are compared inside a *group* (all MI maps, all CMI maps, the four PID atoms, the four
CPID atoms, all attention maps), so every group has one :class:`ColorScale`: a sequential
scale ``[0, max]`` when no value of the group is negative, else a diverging scale
``[-m, m]`` with ``m`` the largest absolute value (synergy can be negative). Maps live at
the model's data resolution (e.g. ``(64, 64)`` latents); overlays upsample them bilinearly
to the displayed image.
"""

from __future__ import annotations

import base64
import io
import math
import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

GROUPS = ("mi", "cmi", "pid", "cpid", "attention")
"""Map kinds in report order; every kind is its own colour-scale group."""

ATOMS = ("redundancy", "unique_1", "unique_2", "synergy")

SEQUENTIAL = {"mi": "inferno", "cmi": "inferno", "pid": "inferno", "cpid": "inferno", "attention": "viridis"}
DIVERGING = "RdBu_r"

UNITS = {"mi": "nats per map pixel", "cmi": "nats per map pixel", "pid": "nats per map pixel",
         "cpid": "nats per map pixel", "attention": "attention weight"}

MIN_DISPLAY = 256
"""Images whose longest side is shorter (pixels) are enlarged by an integer factor for display."""
MAX_DISPLAY = 384
"""Images whose longest side is longer (pixels) are reduced to it for display."""


@dataclass(frozen=True)
class ReportMap:
    """One map of the report.

    Args:
        kind: its group, one of :data:`GROUPS`.
        name: the word (MI, CMI, attention) or the atom name (PID, CPID).
        label: a short human-readable title, e.g. ``"CMI(red)"`` or ``"U(red)"``.
        slug: a file-name-safe form of ``name`` (unique within the kind).
        values: ``(h, w)`` float map at the model's data resolution.
        stderr: ``(h, w)`` per-pixel standard error, or ``None`` (attention).
        value, value_stderr: the image-level value and its standard error (``None`` for attention).
    """

    kind: str
    name: str
    label: str
    slug: str
    values: np.ndarray
    stderr: np.ndarray | None
    value: float | None
    value_stderr: float | None

    @property
    def key(self) -> str:
        """The key of this map in ``maps.npz`` and ``results.json``: ``"<kind>/<slug>"``."""
        return f"{self.kind}/{self.slug}"

    @property
    def filename(self) -> str:
        """The overlay PNG's path inside the output folder: ``maps/<kind>_<slug>.png``."""
        return f"maps/{self.kind}_{self.slug}.png"


@dataclass(frozen=True)
class ColorScale:
    """The colour scale shared by every map of one group.

    Args:
        group: the map kind it serves.
        vmin, vmax: the values mapped to the ends of the colour map.
        colormap: a matplotlib colour-map name.
        diverging: ``True`` for a scale symmetric about zero.
        unit: what the values measure.
    """

    group: str
    vmin: float
    vmax: float
    colormap: str
    diverging: bool
    unit: str

    def normalize(self, values: np.ndarray) -> np.ndarray:
        """``values`` mapped to ``[0, 1]`` on this scale (clipped)."""
        return np.clip((np.asarray(values, dtype=np.float64) - self.vmin) / (self.vmax - self.vmin), 0.0, 1.0)

    def strength(self, values: np.ndarray) -> np.ndarray:
        """How far ``values`` are from the neutral colour, in ``[0, 1]``: ``|v| / max`` or ``(v - vmin) / range``."""
        if self.diverging:
            return np.clip(np.abs(np.asarray(values, dtype=np.float64)) / self.vmax, 0.0, 1.0)
        return self.normalize(values)


def slugify(text: str, fallback: str = "word") -> str:
    """A lower-case ASCII file-name form of ``text``: letters and digits, other runs become ``-``."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text).strip("-")
    return slug[:60].strip("-") or fallback


def unique_slugs(names: Sequence[str]) -> dict[str, str]:
    """A distinct :func:`slugify` slug for every name (``-2``, ``-3`` ... appended on collisions)."""
    out: dict[str, str] = {}
    used: set[str] = set()
    for i, name in enumerate(names):
        base = slugify(name, fallback=f"word-{i + 1}")
        slug, k = base, 2
        while slug in used:
            slug, k = f"{base}-{k}", k + 1
        used.add(slug)
        out[name] = slug
    return out


def _plain(x: Any) -> float | None:
    return None if x is None else float(x)


def report_maps(expl: Any) -> tuple[ReportMap, ...]:
    """Every map of an :class:`~diffpid.explain.Explanation`, in report order (MI, CMI, PID, CPID, attention)."""
    slugs = unique_slugs(list(expl.words))
    out: list[ReportMap] = []
    for kind, table in (("mi", expl.mi), ("cmi", expl.cmi)):
        for w in expl.words:
            info = table[w]
            out.append(ReportMap(kind, w, f"{kind.upper()}({w})", slugs[w], np.asarray(info.pixel_map, dtype=np.float64),
                                 np.asarray(info.pixel_stderr, dtype=np.float64), _plain(info.value), _plain(info.stderr)))
    for kind in ("pid", "cpid"):
        dec = getattr(expl, kind)
        if dec is None:
            continue
        labels = atom_labels(dec.source_1, dec.source_2)
        for name, atom, label in zip(ATOMS, dec.atoms, labels):
            if atom.pixel_map is None:
                continue
            err = None if atom.pixel_stderr is None else np.asarray(atom.pixel_stderr, dtype=np.float64)
            out.append(ReportMap(kind, name, label, name, np.asarray(atom.pixel_map, dtype=np.float64), err,
                                 _plain(atom.value), _plain(atom.stderr)))
    if expl.attention is not None:
        for w in expl.words:
            a = expl.attention.get(w)
            if a is not None:
                out.append(ReportMap("attention", w, f"attention({w})", slugs[w],
                                     np.asarray(a, dtype=np.float64), None, None, None))
    return tuple(out)


def atom_labels(source_1: Any, source_2: Any) -> tuple[str, str, str, str]:
    """Titles of the four atoms: ``R(y1, y2)``, ``U(y1)``, ``U(y2)``, ``S(y1, y2)``."""
    a, b = str(source_1), str(source_2)
    return (f"R({a}, {b})", f"U({a})", f"U({b})", f"S({a}, {b})")


def color_scales(maps: Sequence[ReportMap]) -> tuple[ColorScale, ...]:
    """One :class:`ColorScale` per group present in ``maps`` (in :data:`GROUPS` order), shared by its maps.

    Non-finite values are ignored; a group whose maps are all zero gets ``[0, 1]``.
    """
    scales = []
    for group in GROUPS:
        vals = [m.values[np.isfinite(m.values)] for m in maps if m.kind == group]
        if not vals:
            continue
        flat = np.concatenate([v.ravel() for v in vals])
        lo = float(flat.min()) if flat.size else 0.0
        hi = float(flat.max()) if flat.size else 0.0
        if lo < 0:
            m = max(abs(lo), abs(hi))
            scales.append(ColorScale(group, -m, m, DIVERGING, True, UNITS[group]))
        else:
            scales.append(ColorScale(group, 0.0, hi if hi > 0 else 1.0, SEQUENTIAL[group], False, UNITS[group]))
    return tuple(scales)


def scale_of(scales: Sequence[ColorScale], group: str) -> ColorScale:
    """The scale of ``group`` among ``scales``."""
    for s in scales:
        if s.group == group:
            return s
    raise KeyError(group)


def bilinear(values: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a ``(h, w)`` map to ``size = (H, W)`` with half-pixel centres.

    The same sampling as ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)``
    (edges clamped), in float64.
    """
    v = np.asarray(values, dtype=np.float64)
    h, w = v.shape
    H, W = size

    def axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
        src = np.clip(src, 0.0, n_in - 1)
        i0 = np.floor(src).astype(int)
        i1 = np.minimum(i0 + 1, n_in - 1)
        return i0, i1, src - i0

    y0, y1, fy = axis(h, H)
    x0, x1, fx = axis(w, W)
    top = v[y0][:, x0] * (1 - fx) + v[y0][:, x1] * fx
    bottom = v[y1][:, x0] * (1 - fx) + v[y1][:, x1] * fx
    return top * (1 - fy)[:, None] + bottom * fy[:, None]


def display_size(shape: tuple[int, ...]) -> tuple[int, int]:
    """The ``(H', W')`` at which an ``(H, W, ...)`` image is shown.

    Images whose longest side is below :data:`MIN_DISPLAY` are enlarged by an integer factor
    (pixels stay sharp); above :data:`MAX_DISPLAY` they are reduced to that longest side (keeps
    the self-contained report small); others keep their size.
    """
    h, w = int(shape[0]), int(shape[1])
    longest = max(h, w)
    if longest < MIN_DISPLAY:
        k = math.ceil(MIN_DISPLAY / longest)
        return h * k, w * k
    if longest > MAX_DISPLAY:
        f = MAX_DISPLAY / longest
        return max(1, round(h * f)), max(1, round(w * f))
    return h, w


def display_image(image: np.ndarray) -> np.ndarray:
    """The ``(H, W, 3)`` uint8 image at :func:`display_size` (nearest when enlarged, Lanczos when reduced)."""
    from PIL import Image

    img = np.asarray(image, dtype=np.uint8)
    size = display_size(img.shape)
    if size == img.shape[:2]:
        return img
    if size[0] > img.shape[0]:
        k = size[0] // img.shape[0]
        return np.repeat(np.repeat(img, k, axis=0), k, axis=1)
    return np.asarray(Image.fromarray(img).resize((size[1], size[0]), Image.Resampling.LANCZOS))


def colorize(values: np.ndarray, scale: ColorScale) -> np.ndarray:
    """``(h, w)`` values as ``(h, w, 3)`` float RGB in ``[0, 1]`` on ``scale``'s colour map."""
    from matplotlib import colormaps

    rgb = colormaps[scale.colormap](scale.normalize(values))[..., :3]
    return np.where(np.isfinite(values)[..., None], rgb, 0.5)


def overlay(image: np.ndarray, values: np.ndarray, scale: ColorScale, alpha: tuple[float, float] = (0.25, 0.85)) -> np.ndarray:
    """A map drawn over the image.

    The map is upsampled bilinearly to the displayed image (:func:`display_image`) and blended
    with an opacity that grows from ``alpha[0]`` (neutral values) to ``alpha[1]`` (the ends of the scale).

    Args:
        image: ``(H, W, 3)`` uint8 image.
        values: ``(h, w)`` map.
        scale: its group's colour scale.
        alpha: opacity at strength 0 and 1.

    Returns:
        ``(H', W', 3)`` uint8 overlay at :func:`display_size` of the image.
    """
    base = display_image(image).astype(np.float64) / 255.0
    up = bilinear(values, base.shape[:2])
    a = (alpha[0] + (alpha[1] - alpha[0]) * scale.strength(np.nan_to_num(up)))[..., None]
    out = base * (1 - a) + colorize(up, scale) * a
    return np.clip(np.round(out * 255), 0, 255).astype(np.uint8)


def png_bytes(rgb: np.ndarray) -> bytes:
    """A ``(H, W, 3)`` uint8 array as PNG bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(rgb, dtype=np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def data_uri(png: bytes) -> str:
    """PNG bytes as a ``data:image/png;base64,...`` URI."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
