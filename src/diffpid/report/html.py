"""``report.html``: one self-contained page (images as data URIs, inline CSS and script, no links).

Reading order: the header (prompt, model identity, generation settings, seed, precision), the words
ranked by CMI, one row of maps per word (the image, then each quantity's raw heat map beside an
overlay of the image's outlines on it), the decomposition of the word pair, every value with its
standard estimator, the noise-level curves, parameters and versions.

Stable hooks for tools and browser tests:

- ``<img id="image">`` the analysed image; ``<p id="prompt">`` the prompt; ``<div id="identity">``;
- ``<table id="ranking">`` one ``<tr class="rank-row" data-word>`` per word, highest CMI first;
- ``<div class="maprow" data-word>`` per word, holding ``<figure class="mapfig" data-key data-kind>``;
  inside, ``<img class="map raw" data-kind data-name data-word|data-atom data-key>`` (the raw heat map
  at the model's resolution, a PNG data URI; ``data-src-own`` / ``data-src-shared`` hold both scales)
  and ``<div class="overlay" data-key>`` (the same map under the image's outlines); the figure's
  ``data-own-*`` / ``data-shared-*`` attributes give each scale's limits;
- ``<input name="scale" value="own|shared">``, ``<select class="word-select">``: switches, no recompute;
- ``<table id="values">`` one ``<tr class="word-row" data-word>`` per word, cells
  ``<td class="value" data-quantity="mi|mi_standard|cmi|cmi_standard" data-value data-stderr>``
  (class ``nz`` when within two standard errors of zero);
- ``<table id="pid-values">`` one ``<tr class="pid-row" data-kind="pid|cpid">`` per decomposition,
  cells ``data-quantity="redundancy|unique_1|unique_2|synergy|mi_1|mi_2|mi_12"``;
- ``<script type="application/json" class="dp-data">``: every map's values (quantised to 1/30000 of
  its largest magnitude) for the hover readout ``<div class="readout">``;
- ``<img id="curves">``, ``<table id="parameters">``, ``<table id="versions">``.

Every piece of user text (prompt, words, model name, versions) goes through ``html.escape``.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from html import escape
from typing import Any

import numpy as np

from .assets import MapImage, ReportAssets, build_assets
from .format import format_pm
from .html_style import CSS, SCRIPT
from .html_tables import attr, header, kv_table, pid_table, pm_html, ranked_words, ranking, values_table
from .maps import PERCENTILE, ColorScale
from .overlays import data_uri, display_size

KIND_TITLES = {"mi": "MI", "cmi": "CMI", "attention": "attention"}


# ----- maps ------------------------------------------------------------------------------------------------------

def _gradient(scale: ColorScale) -> str:
    return "linear-gradient(to right," + ",".join(scale.stops()) + ")"


def _scale_text(item: MapImage, scale: ColorScale) -> str:
    m = item.map
    unit = "per map pixel" if m.kind != "attention" else "attention weight"
    which = "shared scale of its group" if scale.shared else "own scale"
    return f"colour: {scale.describe()} {unit} ({which})"


def map_figure(item: MapImage, px: int) -> str:
    """One map: raw heat map beside the overlay, colour bar, limits, caption; both scales in attributes."""
    m = item.map
    role = "atom" if m.kind in ("pid", "cpid") else "word"
    own, shared = item.own, item.shared
    attrs = (f'data-key="{attr(m.key)}" data-kind="{m.kind}" data-name="{attr(m.name)}" data-{role}="{attr(m.name)}"')
    scale_attrs = "".join(
        f' data-{mode}-lo="{attr(format_pm(s.vmin))}" data-{mode}-hi="{attr(format_pm(s.vmax))}"'
        f' data-{mode}-vmin="{s.vmin!r}" data-{mode}-vmax="{s.vmax!r}" data-{mode}-bar="{attr(_gradient(s))}"'
        f' data-{mode}-text="{attr(_scale_text(item, s))}"'
        for mode, s in (("own", own), ("shared", shared)))
    srcs = (f'src="{data_uri(item.raw_own)}" data-src-own="{data_uri(item.raw_own)}" '
            f'data-src-shared="{data_uri(item.raw_shared)}" data-scale="own"')
    h, w = m.values.shape
    ph = max(1, round(px * h / w))
    caption = f"<b>{escape(m.label)}</b>"
    if m.value is not None:
        caption += f" = {pm_html(m.value, m.value_stderr)} nats"
    if not m.sums_to_value and m.value is not None:
        caption += (f'<br><span class="nosum">map sums to {escape(format_pm(m.map_sum))}, not to the value: the '
                    "redundancy map is a per-pixel minimum (a sum of minima is at most the minimum of sums)</span>")
    return (
        f'<figure class="mapfig" {attrs} data-scale="own"{scale_attrs}>'
        f'<div class="pair"><img class="map raw" {attrs} {srcs} width="{px}" height="{ph}" '
        f'alt="{attr(m.label)}: raw heat map, {h}&times;{w} map pixels">'
        f'<div class="overlay" data-key="{attr(m.key)}"><img class="map under" {srcs} alt="{attr(m.label)} with the '
        f'image outlines"><span class="outline"></span></div></div>'
        f'<div class="cbar" style="background:{_gradient(own)}"></div>'
        f'<div class="limits"><span class="lo">{escape(format_pm(own.vmin))}</span>'
        f'<span class="hi">{escape(format_pm(own.vmax))}</span></div>'
        f'<figcaption>{caption}<br><span class="scale-text">{escape(_scale_text(item, own))}</span></figcaption>'
        "</figure>"
    )


def controls(expl: Any, kinds: list[str]) -> str:
    opts = '<option value="*">all words</option>' + "".join(
        f'<option value="{attr(w)}">{escape(w)}</option>' for w in ranked_words(expl))
    toggles = "".join(f'<label><input type="checkbox" class="kind-toggle" value="{k}" checked> {KIND_TITLES[k]}</label>'
                      for k in kinds)
    return ('<div class="controls" id="controls"><span>Colour scale: '
            '<label><input type="radio" name="scale" value="own" checked> each map its own</label> '
            '<label><input type="radio" name="scale" value="shared"> shared per quantity</label></span>'
            f'<label>Show <select class="word-select" aria-label="word">{opts}</select></label>'
            f"<span>{toggles}</span></div>")


def word_rows(expl: Any, assets: ReportAssets, px: int) -> str:
    by_key = {(i.map.kind, i.map.name): i for i in assets.maps}
    kinds = [k for k in ("cmi", "mi", "attention") if any(i.map.kind == k for i in assets.maps)]
    out = [controls(expl, kinds)]
    label = "generated image" if expl.seed is not None else "analysed image"
    for w in ranked_words(expl):
        ih, iw = display_size(expl.image.shape)
        figs = [f'<figure class="thumb"><img class="image-copy" src="{data_uri(assets.image_png)}" width="{px}" '
                f'height="{max(1, round(px * ih / iw))}" alt="{label}"><figcaption>{label}</figcaption></figure>']
        figs += [map_figure(by_key[(k, w)], px) for k in kinds if (k, w) in by_key]
        c, m = expl.cmi[w], expl.mi[w]
        out.append(f'<div class="maprow" data-word="{attr(w)}"><h3>{escape(w)} <small>CMI {pm_html(c.value, c.stderr)} '
                   f'&middot; MI {pm_html(m.value, m.stderr)} nats</small></h3><div class="figs">{"".join(figs)}</div></div>')
    return "".join(out)


def pid_maps(expl: Any, assets: ReportAssets, px: int) -> str:
    out = []
    for kind in ("pid", "cpid"):
        dec = getattr(expl, kind)
        items = [i for i in assets.maps if i.map.kind == kind]
        if dec is None or not items:
            continue
        title = "PID" if dec.context is None else f"CPID given &ldquo;{escape(str(dec.context))}&rdquo;"
        figs = "".join(map_figure(i, px) for i in items)
        out.append(f'<div class="maprow pidrow" data-kind="{kind}"><h3>{title}</h3><div class="figs">{figs}</div></div>')
    return "".join(out)


def map_data(assets: ReportAssets) -> str:
    """Every map's values as JSON for the hover readout: ``q * s`` is the value (``q`` integers)."""
    out = {}
    for item in assets.maps:
        m = item.map
        v = np.nan_to_num(m.values, nan=0.0, posinf=0.0, neginf=0.0)
        top = float(np.abs(v).max())
        s = top / 30000 if top > 0 else 1.0
        unit = "attention weight" if m.kind == "attention" else "nats"
        out[m.key] = {"label": m.label, "unit": unit, "h": int(v.shape[0]), "w": int(v.shape[1]), "s": s,
                      "q": np.round(v / s).astype(int).ravel().tolist()}
    text = json.dumps(out, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")  # inert inside <script>



def report_body(expl: Any, assets: ReportAssets | None = None, curves: bool = True, root_id: str | None = None) -> str:
    """The report's content: a ``<div class="dp">`` with its style and script, for a page or a notebook cell."""
    assets = build_assets(expl, overlays=False) if assets is None else assets  # the page composes its overlays
    root_id = root_id or f"dp-{uuid.uuid4().hex[:10]}"
    h, w = display_size(expl.image.shape)
    px = min(176, max(h, w))
    p = expl.parameters
    image_label = "generated image" if expl.seed is not None else "analysed image"
    css = CSS + (f".dp .outline{{background-image:url({data_uri(assets.outline_png)})}}"
                 f".dp{{--px:{px}px}}@media (max-width:900px){{.dp{{--px:{min(px, 150)}px}}}}")
    body = [
        f'<div class="dp" id="{root_id}"><style>{css}</style>',
        header(expl),
        '<section id="summary"><h2>Words ranked by CMI</h2><div class="figs">',
        f'<figure><img id="image" class="image" width="{w}" height="{h}" alt="{image_label}" '
        f'src="{data_uri(assets.image_png)}" style="max-width:100%;height:auto;image-rendering:pixelated;'
        f'border:1px solid #ccc"><figcaption>{image_label} ({int(expl.image.shape[1])}&times;'
        f"{int(expl.image.shape[0])})</figcaption></figure>",
        f"<div>{ranking(expl)}</div></div></section>",
        '<section id="words"><h2>Maps per word</h2>',
        '<p class="note">Per quantity: the raw heat map at the model\'s resolution (hover for the value of a map '
        "pixel), then the same map upsampled with the image's outlines on top. Sequential colours (inferno) for "
        "non-negative quantities, purple-orange for signed ones (synergy). Each map has its own scale by default; "
        f"its top is the {PERCENTILE:g}th percentile, and the true maximum is printed when hotter pixels exceed it. "
        "MI and CMI maps sum to their value.</p>",
        word_rows(expl, assets, px),
        "</section>",
    ]
    if expl.pid is not None or expl.cpid is not None:
        dec = expl.pid or expl.cpid
        body += [f'<section id="pid"><h2>Decomposition of ({escape(str(dec.source_1))}, {escape(str(dec.source_2))})'
                 "</h2>", pid_table(expl), pid_maps(expl, assets, px), "</section>"]
    else:
        body += ['<section id="pid"><h2>Decomposition</h2>', pid_table(expl), "</section>"]
    body += ['<section id="values-section"><h2>All values (nats)</h2>', values_table(expl), "</section>"]
    if curves and assets.curves_png:
        body += ['<section id="curves-section"><h2>Noise-level curves</h2>',
                 '<p class="note">First panel: the denoising error of every condition per log-SNR. Then one panel per '
                 "word: the integrands of its MI (solid) and CMI (dashed); half the area under a curve over log-SNR "
                 "is the value in nats.</p>",
                 f'<img id="curves" alt="MMSE and information integrands per noise level" '
                 f'src="{data_uri(assets.curves_png)}">', "</section>"]
    body += [
        '<section id="parameters-section"><h2>Parameters</h2>',
        kv_table("parameters", [("prompt", expl.prompt), ("model", expl.model_name),
                                 ("generation seed", "given image" if expl.seed is None else expl.seed),
                                 ("words", ", ".join(expl.words)),
                                 ("pair", "none" if expl.pair is None else ", ".join(expl.pair))]
                  + [(f.name, getattr(p, f.name)) for f in dataclasses.fields(p)]),
        "<h2>Versions</h2>",
        kv_table("versions", sorted(dict(expl.versions).items())),
        "</section>",
        '<footer class="note">Made by diffpid. Maps are at the model\'s data resolution; overlays upsample them '
        "bilinearly to the image.</footer>",
        '<div class="readout" aria-live="polite"></div>',
        f'<script type="application/json" class="dp-data">{map_data(assets)}</script>',
        f"<script>{SCRIPT % {'root': json.dumps(root_id)}}</script>",
        "</div>",
    ]
    return "\n".join(body)


def render_html(expl: Any, assets: ReportAssets | None = None) -> str:
    """The self-contained HTML report of an :class:`~diffpid.explain.Explanation`.

    Args:
        expl: the explanation.
        assets: its rendered images (:func:`~diffpid.report.assets.build_assets`); built here when omitted.

    Returns:
        the HTML text (UTF-8; every image inlined as a base64 PNG data URI; no external resource).
    """
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>diffpid: {escape(expl.prompt)}</title>",
        '<link rel="icon" href="data:,">',
        "<style>html,body{margin:0;background:#fff}</style></head><body>",
        report_body(expl, assets, root_id="report"),
        "</body></html>",
    ]) + "\n"
