"""Matplotlib figures of an explanation: map grids, colour bars and noise-level curves.

Figures are built as ``matplotlib.figure.Figure`` objects with the Agg canvas, without
``pyplot``, so they touch no global state and need no display. In a notebook they show
themselves; :func:`figure_png` renders one to PNG bytes.

>>> fig = plot_maps(expl, kind="cmi")      # every CMI map over the image, one shared colour bar
>>> fig = plot_curves(expl)                # MMSE per condition and information integrands per word
"""

from __future__ import annotations

import io
import math
from typing import Any

import numpy as np

from ..errors import ParameterError
from .maps import GROUPS, ColorScale, color_scales, display_image, overlay, report_maps, scale_of


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


def plot_maps(expl: Any, kind: str = "cmi", columns: int = 4):
    """Every map of one kind over the image, on the kind's shared colour scale, with one colour bar.

    Args:
        expl: an :class:`~diffpid.explain.Explanation`.
        kind: ``"mi"``, ``"cmi"``, ``"pid"``, ``"cpid"`` or ``"attention"``.
        columns: panels per row.

    Returns:
        a ``matplotlib.figure.Figure``.
    """
    if kind not in GROUPS:
        raise ParameterError(f"unknown map kind {kind!r}; choose one of {', '.join(GROUPS)}")
    maps = report_maps(expl)
    chosen = [m for m in maps if m.kind == kind]
    if not chosen:
        raise ParameterError(f"this explanation has no {kind} maps (attention=False or no word pair?)")
    scale = scale_of(color_scales(maps), kind)
    cols = min(columns, len(chosen))
    rows = math.ceil(len(chosen) / cols)
    fig = _figure(2.6 * cols + 0.6, 2.8 * rows)
    axes = fig.subplots(rows, cols, squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for ax, m in zip(axes.ravel(), chosen):
        ax.imshow(overlay(expl.image, m.values, scale), interpolation="nearest")
        title = m.label if m.value is None else f"{m.label}\n{m.value:.3g} ± {m.value_stderr:.2g} nats"
        ax.set_title(title, fontsize=9)
    fig.colorbar(_mappable(scale), ax=axes.ravel().tolist(), shrink=0.8, label=scale.unit)
    return fig


def plot_image(expl: Any):
    """The analysed image with the prompt as title."""
    fig = _figure(3.2, 3.4)
    ax = fig.add_subplot()
    ax.imshow(display_image(expl.image), interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(expl.prompt, fontsize=9)
    return fig


def _finite(logsnr: np.ndarray, mean: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    keep = np.isfinite(mean)
    return np.asarray(logsnr)[keep], np.asarray(mean)[keep]


def curve_labels(expl: Any) -> tuple[str, ...]:
    """A legend label per condition curve: the quoted prompt, marked ``(PID run)`` on its repeat."""
    seen: set[str] = set()
    out = []
    for c in expl.curves:
        label = repr(c.prompt) if c.prompt else "'' (unconditional)"
        if c.prompt in seen:
            label += " (PID run)"
        seen.add(c.prompt)
        out.append(label)
    return tuple(out)


def plot_curves(expl: Any):
    """The noise-level curves behind the numbers.

    Left: the MMSE ``E||eps - e(x_a|prompt)||^2`` per log-SNR bin for every condition the
    analysis used. Right: the orthogonal integrands ``E||e(x_a|y) - e(x_a|ref)||^2`` of
    every word's MI (solid) and CMI (dashed); half their integral over log-SNR is the value.
    Bins where no sample fell are left out.

    Returns:
        a ``matplotlib.figure.Figure``.
    """
    fig = _figure(11.0, 4.2)
    left, right = fig.subplots(1, 2)
    for c, label in zip(expl.curves, curve_labels(expl)):
        x, y = _finite(c.curve.logsnr, c.curve.mean)
        left.plot(x, y, marker="o", markersize=3, linewidth=1, label=label)
    left.set_xlabel("log-SNR")
    left.set_ylabel("MMSE  E||eps - e(x_a|prompt)||²")
    left.set_yscale("log")
    left.set_title("MMSE per noise level", fontsize=10)
    left.legend(fontsize=6, loc="best")
    from matplotlib import colormaps

    colours = colormaps["tab10"]
    for i, w in enumerate(expl.words):
        for table, style, name in ((expl.mi, "-", "MI"), (expl.cmi, "--", "CMI")):
            x, y = _finite(table[w].curve.logsnr, table[w].curve.mean)
            positive = y > 0
            right.plot(x[positive], y[positive], style, marker="o", markersize=3, linewidth=1,
                       color=colours(i % 10), label=f"{name}({w})")
    right.set_xlabel("log-SNR")
    right.set_ylabel("E||e(x_a|y) - e(x_a|ref)||²")
    if right.lines:
        right.set_yscale("log")
    right.set_title("information integrands (half the area = nats)", fontsize=10)
    right.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def curves_png(expl: Any) -> bytes:
    """:func:`plot_curves` as PNG bytes."""
    return figure_png(plot_curves(expl))
