"""Matplotlib figures of an explanation: map grids, colour bars and noise-level curves.

Figures are built as ``matplotlib.figure.Figure`` objects with the Agg canvas, without
``pyplot``, so they touch no global state and need no display. In a notebook they show
themselves; :func:`figure_png` renders one to PNG bytes.

>>> fig = plot_maps(expl, kind="cmi")               # every CMI map, its own scale, the image's outlines on top
>>> fig = plot_maps(expl, kind="pid", shared=True)  # the four atoms on one scale
>>> fig = plot_curves(expl)                         # MMSE and one small panel of integrands per word
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np

from ..errors import ParameterError
from .maps import GROUPS, PERCENTILE, ColorScale, own_scale, report_maps, shared_scale
from .overlays import heatmap, overlay


def _figure(width: float, height: float, dpi: int = 100):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig: Any, dpi: int | None = None) -> bytes:
    """A matplotlib figure rendered to PNG bytes (Agg)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi or fig.dpi, bbox_inches="tight")
    return buf.getvalue()


def _mappable(scale: ColorScale):
    from matplotlib import colormaps
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    return ScalarMappable(norm=Normalize(scale.vmin, scale.vmax), cmap=colormaps[scale.colormap])


def colorbar_figure(scale: ColorScale):
    """A horizontal colour bar of ``scale`` with ticks and its unit as label."""
    fig = _figure(4.0, 0.85)
    ax = fig.add_axes((0.05, 0.55, 0.9, 0.3))
    cb = fig.colorbar(_mappable(scale), cax=ax, orientation="horizontal")
    label = "cross-attention weight" if scale.group == "attention" else f"{scale.group.upper()} ({scale.unit})"
    cb.set_label(label, fontsize=8)
    cb.ax.tick_params(labelsize=7)
    return fig


def colorbar_png(scale: ColorScale) -> bytes:
    """:func:`colorbar_figure` as PNG bytes."""
    return figure_png(colorbar_figure(scale))


def _title(m: Any) -> str:
    from .format import format_pm

    if m.value is None:
        return m.label
    return f"{m.label} = {format_pm(m.value, m.value_stderr)} nats"


def plot_maps(expl: Any, kind: str = "cmi", columns: int = 4, shared: bool = False, raw: bool = False):
    """Every map of one kind, drawn so the map dominates: the image's outlines over the heat map.

    Each panel has its own robust colour scale (the 99th percentile; the true maximum is in the colour
    bar's label) unless ``shared``, where the kind's maps share one scale and one colour bar. Signed
    maps (synergy) use the diverging purple-orange scale.

    Args:
        expl: an :class:`~diffpid.explain.Explanation`.
        kind: ``"mi"``, ``"cmi"``, ``"pid"``, ``"cpid"`` or ``"attention"``.
        columns: panels per row.
        shared: one colour scale for every map of the kind.
        raw: draw the raw heat maps at the model's resolution, without outlines.

    Returns:
        a ``matplotlib.figure.Figure``.
    """
    if kind not in GROUPS:
        raise ParameterError(f"unknown map kind {kind!r}; choose one of {', '.join(GROUPS)}")
    maps = report_maps(expl)
    chosen = [m for m in maps if m.kind == kind]
    if not chosen:
        raise ParameterError(f"this explanation has no {kind} maps (attention=False or no word pair?)")
    cols = min(columns, len(chosen))
    rows = math.ceil(len(chosen) / cols)
    from matplotlib.ticker import MaxNLocator

    fig = _figure(3.1 * cols + (1.2 if shared else 0.0), 3.4 * rows)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    used: dict[tuple, tuple[ColorScale, list]] = {}
    for ax, m in zip(axes.ravel(), chosen):
        scale = shared_scale(m, maps) if shared else own_scale(m)
        picture = heatmap(m.values, scale) if raw else overlay(expl.image, m.values, scale)
        ax.imshow(picture, interpolation="nearest")
        title = _title(m)
        if not m.sums_to_value and m.value is not None:
            title += f"\nmap sum {m.map_sum:.3g} (per-pixel minima)"
        ax.set_title(title, fontsize=7.5)
        if not shared:
            cb = fig.colorbar(_mappable(scale), ax=ax, orientation="horizontal", fraction=0.05, pad=0.04)
            cb.ax.tick_params(labelsize=6)
            cb.locator = MaxNLocator(4)
            cb.update_ticks()
            if scale.clipped:
                cb.set_label(f"{PERCENTILE:g}th pct; max {scale.true_max:.3g}", fontsize=6)
        used.setdefault((scale.colormap, scale.vmin, scale.vmax), (scale, []))[1].append(ax)
    if shared:  # one colour bar per scale in use: the sequential atoms' and, beside it, synergy's diverging one
        for scale, owners in used.values():
            fig.colorbar(_mappable(scale), ax=owners, shrink=0.8, label=scale.unit)
    return fig


def _finite(logsnr: np.ndarray, mean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = np.isfinite(mean)
    return np.asarray(logsnr)[keep], np.asarray(mean)[keep]


def plot_curves(expl: Any, columns: int = 4):
    """The noise-level curves behind the numbers, as small multiples.

    The first panel is the MMSE ``E||eps - e(x_a|prompt)||^2`` per log-SNR bin: the unconditional
    and full-prompt conditions in colour, every other condition the analysis used in grey. Then one
    panel per word with the orthogonal integrands ``E||e(x_a|y) - e(x_a|ref)||^2`` of its MI (solid)
    and CMI (dashed); half their integral over log-SNR is the value. All word panels share their
    axes; the legend sits below the panels. Bins where no sample fell are left out.

    Returns:
        a ``matplotlib.figure.Figure``.
    """
    from matplotlib.lines import Line2D

    n = 1 + len(expl.words)
    cols = min(columns, n)
    rows = math.ceil(n / cols)
    fig = _figure(3.0 * cols, 2.5 * rows + 0.6)
    axes = fig.subplots(rows, cols, squeeze=False)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.set_axis_off()
    left = flat[0]
    for c in expl.curves:
        x, y = _finite(c.curve.logsnr, c.curve.mean)
        if c.prompt == "":
            left.plot(x, y, color="#1b7837", linewidth=1.4, zorder=3)
        elif c.prompt == expl.prompt:
            left.plot(x, y, color="#762a83", linewidth=1.4, zorder=3)
        else:
            left.plot(x, y, color="#b0b0b0", linewidth=0.7, zorder=1)
    left.set_yscale("log")
    from matplotlib.ticker import NullFormatter

    left.yaxis.set_minor_formatter(NullFormatter())
    left.set_title("MMSE per noise level", fontsize=9)
    left.set_xlabel("log-SNR", fontsize=8)
    left.tick_params(labelsize=7)
    shared_ax = None
    for ax, w in zip(flat[1:n], expl.words):
        if shared_ax is None:
            shared_ax = ax
        else:
            ax.sharex(shared_ax)
            ax.sharey(shared_ax)
        drawn = False
        for table, style, colour in ((expl.mi, "-", "#e66101"), (expl.cmi, "--", "#5e3c99")):
            x, y = _finite(table[w].curve.logsnr, table[w].curve.mean)
            positive = y > 0
            if positive.any():
                ax.plot(x[positive], y[positive], style, color=colour, linewidth=1.2, marker="o", markersize=2)
                drawn = True
        if drawn:
            ax.set_yscale("log")
        ax.set_title(w, fontsize=9)
        ax.set_xlabel("log-SNR", fontsize=8)
        ax.tick_params(labelsize=7)
    handles = [Line2D([], [], color="#1b7837", lw=1.4), Line2D([], [], color="#762a83", lw=1.4),
               Line2D([], [], color="#b0b0b0", lw=0.7), Line2D([], [], color="#e66101", lw=1.2),
               Line2D([], [], color="#5e3c99", lw=1.2, ls="--")]
    labels = ["MMSE, empty prompt", "MMSE, full prompt", "MMSE, other conditions",
              "MI integrand of the word", "CMI integrand of the word"]
    fig.legend(handles, labels, loc="lower center", ncol=5, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.6 / (2.5 * rows + 0.6), 1, 1))
    return fig


def curves_png(expl: Any) -> bytes:
    """:func:`plot_curves` as PNG bytes."""
    return figure_png(plot_curves(expl))
