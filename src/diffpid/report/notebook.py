"""Rich display in Jupyter: the results render themselves (``_repr_html_``) with the report's maps and tables.

- an :class:`~diffpid.explain.Explanation` shows the report's content (without the curves figure;
  :func:`~diffpid.report.plot_curves` draws it);
- an :class:`~diffpid.information.Information` shows its value and, for one image, its raw map;
- a :class:`~diffpid.decomposition.pid.PID` shows the atoms and the informations and, for one image, the atom maps.

The same rules as the report: values rounded to their standard error, values within two standard
errors of zero greyed, robust sequential / diverging scales with the true maximum printed.
"""

from __future__ import annotations

import uuid
from html import escape
from typing import Any

import numpy as np

from .format import format_pm, near_zero
from .maps import ATOMS, DIVERGING, SEQUENTIAL, UNITS, ColorScale, robust_top
from .overlays import data_uri, heatmap, png_bytes

STYLE = ("<style>.dpn table{border-collapse:collapse;font-size:.85rem;margin:.3rem 0}"
         ".dpn th,.dpn td{border:1px solid #ddd;padding:.2rem .45rem;text-align:right}.dpn th{background:#f4f4f6}"
         ".dpn .nz{color:#888}.dpn figure{display:inline-block;margin:.2rem .5rem .2rem 0;vertical-align:top}"
         ".dpn img{image-rendering:pixelated;width:160px;height:160px;border:1px solid #ccc}"
         ".dpn figcaption{font-size:.75rem;max-width:160px}</style>")


def explanation_html(expl: Any) -> str:
    """The report's content as a notebook cell (maps, tables, switches; no curves figure)."""
    from .assets import build_assets
    from .html import report_body

    return report_body(expl, build_assets(expl, overlays=False, curves=False), curves=False,
                       root_id=f"dp-{uuid.uuid4().hex[:10]}")


def _value_cell(value: Any, stderr: Any) -> str:
    cls = ' class="nz" title="within two standard errors of zero"' if near_zero(value, stderr) else ""
    return f"<td{cls}>{escape(format_pm(value, stderr))}</td>"


def _map_figure(values: np.ndarray, label: str, signed: bool, kind: str = "mi") -> str:
    v = np.asarray(values, dtype=np.float64)
    signed = signed or bool(np.nanmin(v) < 0)
    top = robust_top(v, signed)
    finite = v[np.isfinite(v)]
    hi = float(finite.max()) if finite.size else 0.0
    lo = float(finite.min()) if finite.size else 0.0
    scale = (ColorScale(kind, -top, top, DIVERGING, True, UNITS[kind], lo, hi, False) if signed
             else ColorScale(kind, 0.0, top, SEQUENTIAL[kind], False, UNITS[kind], lo, hi, False))
    return (f'<figure><img src="{data_uri(png_bytes(heatmap(v, scale)))}" alt="{escape(label, quote=True)}">'
            f"<figcaption><b>{escape(label)}</b><br>colour {escape(scale.describe())} nats per pixel</figcaption>"
            "</figure>")


def _single(x: Any) -> bool:
    return np.ndim(x) == 0


def _count(samples: Any) -> str:
    """Draws used: one number, or the range over images when a precision target stopped them apart."""
    n = np.asarray(samples).ravel()
    return str(int(n[0])) if n.min() == n.max() else f"{int(n.min())}-{int(n.max())}"


def information_html(info: Any, label: str = "i_o") -> str:
    """An :class:`~diffpid.information.Information`: values with errors; the raw map for one image."""
    if _single(info.value):
        rows = (f"<tr><th>orthogonal i<sub>o</sub></th>{_value_cell(info.value, info.stderr)}</tr>"
                f"<tr><th>standard i</th>{_value_cell(info.standard_value, info.standard_stderr)}</tr>")
        table = f"<table><tbody>{rows}<tr><th>samples</th><td>{_count(info.samples)}</td></tr></tbody></table>"
        maps = _map_figure(info.pixel_map, f"{label} map (sums to {format_pm(np.nansum(info.pixel_map))})", False)
        return f'<div class="dpn">{STYLE}<b>Information (nats)</b>{table}{maps}</div>'
    values = np.asarray(info.value).ravel()
    errors = np.asarray(info.stderr).ravel()
    rows = "".join(f"<tr><td>{i}</td>{_value_cell(v, e)}</tr>" for i, (v, e) in enumerate(zip(values, errors)))
    return (f'<div class="dpn">{STYLE}<b>Information (nats), {len(values)} images, {_count(info.samples)} samples '
            f"each</b><table><thead><tr><th>image</th><th>i<sub>o</sub></th></tr></thead><tbody>{rows}</tbody>"
            "</table></div>")


def pid_html(dec: Any) -> str:
    """A :class:`~diffpid.decomposition.pid.PID`: atoms and informations with errors; the atom maps for one image."""
    a, b = str(dec.source_1), str(dec.source_2)
    names = (f"R({a}, {b})", f"U({a})", f"U({b})", f"S({a}, {b})", f"I({a})", f"I({b})", f"I({a}, {b})")
    quantities = (*dec.atoms, dec.mi_1, dec.mi_2, dec.mi_12)
    head = "".join(f"<th>{escape(n)}</th>" for n in names)
    title = "PID" if dec.context is None else f"CPID given &ldquo;{escape(str(dec.context))}&rdquo;"
    if _single(dec.redundancy.value):
        cells = "".join(_value_cell(q.value, q.stderr) for q in quantities)
        table = f"<table><thead><tr>{head}</tr></thead><tbody><tr>{cells}</tr></tbody></table>"
        figs = []
        for name, atom, label in zip(ATOMS, dec.atoms, names):
            if atom.pixel_map is None:
                continue
            text = label
            if dec.redundancy_mode == "integrated":
                text += f" (per-pixel minima: sums to {format_pm(np.nansum(atom.pixel_map))}, not the value)"
            figs.append(_map_figure(atom.pixel_map, text, name == "synergy", "pid"))
        body = table + "".join(figs)
    else:
        n = np.asarray(dec.redundancy.value).size
        rows = "".join("<tr><td>%d</td>%s</tr>" % (i, "".join(
            _value_cell(np.asarray(q.value).ravel()[i], np.asarray(q.stderr).ravel()[i]) for q in quantities))
            for i in range(n))
        body = f"<table><thead><tr><th>image</th>{head}</tr></thead><tbody>{rows}</tbody></table>"
    return (f'<div class="dpn">{STYLE}<b>{title} (nats), redundancy {escape(dec.redundancy_mode)}, '
            f"{_count(dec.samples)} samples</b>{body}</div>")
