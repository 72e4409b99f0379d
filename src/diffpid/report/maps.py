"""The maps of an explanation and their colour scales (the pixels they become: :mod:`.overlays`).

Colour rules (the same in ``report.html``, the PNG files, notebooks and :func:`~diffpid.report.plot_maps`):

- a non-negative quantity (MI, CMI, redundancy, unique information, attention) gets a
  *sequential* scale ``[0, top]`` (``inferno``; ``viridis`` for attention, which is not information);
- a signed quantity (synergy, or any map with negative values) gets a *diverging* scale
  ``[-top, top]`` in purple-orange (``PuOr_r``), colours that do not collide with the red,
  blue and green of typical images;
- ``top`` is the 99th percentile of the map's (absolute) values, so a few hot pixels do not
  flatten the rest; the true extremes are kept beside it (:class:`ColorScale` ``true_min`` /
  ``true_max``) and printed;
- every map has its *own* scale (:func:`own_scale`) and a *shared* scale (:func:`shared_scale`),
  whose top is the largest ``top`` of its group (all MI maps, all CMI maps, the four PID atoms ...),
  for comparing maps of one group.

Maps live at the model's data resolution (e.g. ``(32, 32)`` or ``(64, 64)`` latents). The raw heat
map is drawn at that resolution (:func:`~diffpid.report.overlays.heatmap`); the overlay upsamples it
bilinearly to the displayed image and draws the image's outlines over it
(:func:`~diffpid.report.overlays.overlay`), so the map stays dominant and the objects can still be located.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

GROUPS = ("mi", "cmi", "pid", "cpid", "attention")
"""Map kinds in report order; every kind is its own colour-scale group."""

ATOMS = ("redundancy", "unique_1", "unique_2", "synergy")

SEQUENTIAL = {"mi": "inferno", "cmi": "inferno", "pid": "inferno", "cpid": "inferno", "attention": "viridis"}
DIVERGING = "PuOr_r"

PERCENTILE = 99.0
"""Colour scales end at this percentile of a map's (absolute) values, not at its hottest pixel."""

UNITS = {"mi": "nats per map pixel", "cmi": "nats per map pixel", "pid": "nats per map pixel",
         "cpid": "nats per map pixel", "attention": "attention weight"}


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
        sums_to_value: ``False`` when the map does not sum to ``value`` by construction (the PID
            atoms of the integrated redundancy: per-pixel minima, whose sum is at most the minimum
            of the sums); ``True`` for MI and CMI (the orthogonal pixel maps sum to the value).
        signed: the quantity can be negative (synergy), or the map has negative values.
    """

    kind: str
    name: str
    label: str
    slug: str
    values: np.ndarray
    stderr: np.ndarray | None
    value: float | None
    value_stderr: float | None
    sums_to_value: bool = True
    signed: bool = False

    @property
    def key(self) -> str:
        """The key of this map in ``maps.npz`` and ``results.json``: ``"<kind>/<slug>"``."""
        return f"{self.kind}/{self.slug}"

    @property
    def filename(self) -> str:
        """The overlay PNG's path inside the output folder: ``maps/<kind>_<slug>.png``."""
        return f"maps/{self.kind}_{self.slug}.png"

    @property
    def map_sum(self) -> float:
        """The sum of the finite map values."""
        return float(np.sum(self.values[np.isfinite(self.values)]))


@dataclass(frozen=True)
class ColorScale:
    """A colour scale.

    Args:
        group: the map kind it serves.
        vmin, vmax: the values mapped to the ends of the colour map (``vmin = -vmax`` when diverging).
        colormap: a matplotlib colour-map name.
        diverging: ``True`` for a scale symmetric about zero.
        unit: what the values measure.
        true_min, true_max: the extremes of the values it was made for (beyond ``vmin``/``vmax``
            when a few pixels are hotter than the :data:`PERCENTILE`).
        shared: ``True`` for a group's shared scale, ``False`` for one map's own.
    """

    group: str
    vmin: float
    vmax: float
    colormap: str
    diverging: bool
    unit: str
    true_min: float = float("nan")
    true_max: float = float("nan")
    shared: bool = True

    def normalize(self, values: np.ndarray) -> np.ndarray:
        """``values`` mapped to ``[0, 1]`` on this scale (clipped)."""
        return np.clip((np.asarray(values, dtype=np.float64) - self.vmin) / (self.vmax - self.vmin), 0.0, 1.0)

    @property
    def clipped(self) -> bool:
        """Some values lie beyond the ends of the scale (shown in the end colours)."""
        return bool(self.true_max > self.vmax * (1 + 1e-9) or self.true_min < self.vmin * (1 + 1e-9) - 1e-300)

    def describe(self) -> str:
        """``"0 to 0.012 (99th percentile; max 0.19)"``: the limits and the true extremes."""
        from .format import format_limit

        text = f"{format_limit(self.vmin)} to {format_limit(self.vmax)}"
        if self.clipped:
            extremes = (f"min {format_limit(self.true_min)}, max {format_limit(self.true_max)}" if self.diverging
                        else f"max {format_limit(self.true_max)}")
            text += f" ({PERCENTILE:g}th percentile; {extremes})"
        return text

    def stops(self, n: int = 9) -> list[str]:
        """``n`` CSS colours along the colour map, for a gradient colour bar."""
        from matplotlib import colormaps

        cmap = colormaps[self.colormap]
        return ["#%02x%02x%02x" % tuple(int(round(255 * c)) for c in cmap(t)[:3]) for t in np.linspace(0, 1, n)]


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
            v = np.asarray(info.pixel_map, dtype=np.float64)
            out.append(ReportMap(kind, w, f"{kind.upper()}({w})", slugs[w], v,
                                 np.asarray(info.pixel_stderr, dtype=np.float64), _plain(info.value),
                                 _plain(info.stderr), True, _has_negative(v)))
    for kind in ("pid", "cpid"):
        dec = getattr(expl, kind)
        if dec is None:
            continue
        labels = atom_labels(dec.source_1, dec.source_2)
        sums = dec.redundancy_mode != "integrated"  # integrated: per-pixel minima, not the atoms' values
        for name, atom, label in zip(ATOMS, dec.atoms, labels):
            if atom.pixel_map is None:
                continue
            v = np.asarray(atom.pixel_map, dtype=np.float64)
            err = None if atom.pixel_stderr is None else np.asarray(atom.pixel_stderr, dtype=np.float64)
            out.append(ReportMap(kind, name, label, name, v, err, _plain(atom.value), _plain(atom.stderr), sums,
                                 name == "synergy" or _has_negative(v)))
    if expl.attention is not None:
        for w in expl.words:
            a = expl.attention.get(w)
            if a is not None:
                v = np.asarray(a, dtype=np.float64)
                out.append(ReportMap("attention", w, f"attention({w})", slugs[w], v, None, None, None, True,
                                     _has_negative(v)))
    return tuple(out)


def _has_negative(values: np.ndarray) -> bool:
    finite = values[np.isfinite(values)]
    return bool(finite.size and finite.min() < 0)


def atom_labels(source_1: Any, source_2: Any) -> tuple[str, str, str, str]:
    """Titles of the four atoms: ``R(y1, y2)``, ``U(y1)``, ``U(y2)``, ``S(y1, y2)``."""
    a, b = str(source_1), str(source_2)
    return (f"R({a}, {b})", f"U({a})", f"U({b})", f"S({a}, {b})")


def robust_top(values: np.ndarray, signed: bool) -> float:
    """The end of a colour scale for ``values``: the :data:`PERCENTILE` of ``|v|`` (signed) or of ``v``.

    Falls back to the largest magnitude when the percentile is zero (a sparse map), and to 1 for an
    all-zero map, so the scale never collapses.
    """
    finite = np.asarray(values, dtype=np.float64)
    finite = finite[np.isfinite(finite)]
    if not finite.size:
        return 1.0
    mag = np.abs(finite) if signed else np.clip(finite, 0, None)
    top = float(np.percentile(mag, PERCENTILE))
    if top <= 0:
        top = float(mag.max())
    return top if top > 0 else 1.0


def _extremes(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    return (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)


def _scale(m: ReportMap, top: float, shared: bool) -> ColorScale:
    lo, hi = _extremes(m.values)
    if m.signed:
        return ColorScale(m.kind, -top, top, DIVERGING, True, UNITS[m.kind], lo, hi, shared)
    return ColorScale(m.kind, 0.0, top, SEQUENTIAL[m.kind], False, UNITS[m.kind], lo, hi, shared)


def own_scale(m: ReportMap) -> ColorScale:
    """The map's own colour scale: sequential ``[0, p99]`` or diverging ``[-p99(|v|), p99(|v|)]``."""
    return _scale(m, robust_top(m.values, m.signed), shared=False)


def group_tops(maps: Sequence[ReportMap]) -> dict[str, float]:
    """The shared top of every group present: the largest robust top of its maps."""
    tops: dict[str, float] = {}
    for m in maps:
        tops[m.kind] = max(tops.get(m.kind, 0.0), robust_top(m.values, m.signed))
    return tops


def shared_scale(m: ReportMap, maps: Sequence[ReportMap]) -> ColorScale:
    """The map's scale when its group shares one top (sequential or diverging as for :func:`own_scale`)."""
    return _scale(m, group_tops(maps)[m.kind], shared=True)


def color_scales(maps: Sequence[ReportMap]) -> tuple[ColorScale, ...]:
    """The shared :class:`ColorScale` of every group present in ``maps`` (in :data:`GROUPS` order).

    Its top is the largest robust top (:func:`robust_top`) of the group's maps; it is diverging
    when a map of the group is signed (its sequential maps then use ``[0, top]`` of it).
    """
    tops = group_tops(maps)
    out = []
    for group in GROUPS:
        members = [m for m in maps if m.kind == group]
        if not members:
            continue
        top = tops[group]
        lo = min(_extremes(m.values)[0] for m in members)
        hi = max(_extremes(m.values)[1] for m in members)
        if any(m.signed for m in members):
            out.append(ColorScale(group, -top, top, DIVERGING, True, UNITS[group], lo, hi, True))
        else:
            out.append(ColorScale(group, 0.0, top, SEQUENTIAL[group], False, UNITS[group], lo, hi, True))
    return tuple(out)
