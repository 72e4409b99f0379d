"""``report.html``: one self-contained page (images as data URIs, inline CSS, no scripts, no links).

Stable hooks for tools and browser tests:

- ``<img id="image">`` the analysed image; ``<p id="prompt">`` the prompt;
- ``<table id="values">`` one ``<tr class="word-row" data-word="...">`` per word, cells
  ``<td class="value" data-quantity="mi|mi_standard|cmi|cmi_standard" data-value data-stderr>``;
- ``<table id="pid-values">`` one ``<tr class="pid-row" data-kind="pid|cpid">`` per decomposition,
  cells ``data-quantity="redundancy|unique_1|unique_2|synergy|mi_1|mi_2|mi_12"``;
- ``<section class="maps" data-kind="...">`` per group with ``<img class="colorbar" data-scale
  data-vmin data-vmax>`` and ``<img class="map" data-kind data-name data-word|data-atom data-scale
  data-vmin data-vmax>`` per map (the shared scale of the group);
- ``<img id="curves">``, ``<table id="parameters">``, ``<table id="versions">``.

Every piece of user text (prompt, words, model name, versions) goes through ``html.escape``.
"""

from __future__ import annotations

import dataclasses
from html import escape
from typing import Any

from .assets import ReportAssets, build_assets
from .maps import data_uri, display_size

TITLES = {
    "mi": ("Mutual information per word",
           "MI(w) = i<sub>o</sub>(x; w): what the word alone, against the empty prompt, tells about each pixel."),
    "cmi": ("Conditional mutual information per word",
            "CMI(w) = i<sub>o</sub>(x; w | rest of the prompt): what the word adds once the other words are known."),
    "pid": ("Partial information decomposition",
            "The information of two words about the image split into redundancy R, unique U and synergy S."),
    "cpid": ("Conditional partial information decomposition",
             "The same decomposition given the rest of the prompt."),
    "attention": ("Cross-attention per word",
                  "Cross-attention (DAAM) averaged over layers, heads and noise levels: a baseline, not information."),
}

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;margin:0 auto;max-width:1200px;
padding:1rem 1.5rem;color:#1d1d1f;background:#fff}
h1{font-size:1.5rem;margin:.2rem 0}h2{font-size:1.15rem;margin:1.6rem 0 .3rem;border-bottom:1px solid #ddd}
.prompt{font-size:1.2rem;font-style:italic;margin:.2rem 0 .6rem}.meta{color:#555;font-size:.85rem}
.summary{display:flex;flex-wrap:wrap;gap:1.5rem;align-items:flex-start}
#image{border:1px solid #ccc;image-rendering:pixelated}
table{border-collapse:collapse;font-size:.85rem;margin:.4rem 0}
th,td{border:1px solid #ddd;padding:.25rem .5rem;text-align:right}th{background:#f4f4f6}
td.name,th.name{text-align:left}.note{color:#555;font-size:.8rem;max-width:60rem}
.grid{display:flex;flex-wrap:wrap;gap:.8rem}
figure{margin:0;text-align:center}figcaption{font-size:.8rem;margin-top:.2rem}
img.map{border:1px solid #ccc;image-rendering:auto}
img.colorbar{display:block;margin:.3rem 0 .6rem}
#curves{max-width:100%}
"""


def _fmt(value: Any, stderr: Any = None) -> str:
    if value is None:
        return "&ndash;"
    text = f"{float(value) + 0.0:.4g}"  # + 0.0 prints -0.0 as 0
    if stderr is not None:
        text += f" &plusmn; {float(stderr):.2g}"
    return text


def _attr(x: Any) -> str:
    return escape(str(x), quote=True)


def _cell(quantity: str, value: Any, stderr: Any) -> str:
    v = "" if value is None else repr(float(value))
    s = "" if stderr is None else repr(float(stderr))
    return (f'<td class="value" data-quantity="{quantity}" data-value="{v}" data-stderr="{s}">'
            f"{_fmt(value, stderr)}</td>")


def values_table(expl: Any) -> str:
    """The per-word table: MI and CMI (orthogonal ``i_o`` and standard ``i``), each with its standard error."""
    rows = [
        '<table id="values"><thead><tr><th class="name">word</th><th>MI i<sub>o</sub></th><th>MI i (standard)</th>'
        "<th>CMI i<sub>o</sub></th><th>CMI i (standard)</th></tr></thead><tbody>"
    ]
    for w in expl.words:
        mi, cmi = expl.mi[w], expl.cmi[w]
        rows.append(
            f'<tr class="word-row" data-word="{_attr(w)}"><td class="name">{escape(w)}</td>'
            + _cell("mi", mi.value, mi.stderr) + _cell("mi_standard", mi.standard_value, mi.standard_stderr)
            + _cell("cmi", cmi.value, cmi.stderr) + _cell("cmi_standard", cmi.standard_value, cmi.standard_stderr)
            + "</tr>"
        )
    rows.append("</tbody></table>")
    return "".join(rows)


def pid_table(expl: Any) -> str:
    """The decomposition table: R, U1, U2, S and the three informations of PID and CPID, with standard errors."""
    decs = [(k, getattr(expl, k)) for k in ("pid", "cpid") if getattr(expl, k) is not None]
    if not decs:
        return '<p class="note" id="pid-values-missing">No decomposition: the prompt has fewer than two words.</p>'
    a, b = (escape(str(s)) for s in (decs[0][1].source_1, decs[0][1].source_2))
    head = (f'<table id="pid-values"><thead><tr><th class="name">decomposition</th><th class="name">target</th>'
            f"<th>R({a}, {b})</th><th>U({a})</th><th>U({b})</th><th>S({a}, {b})</th>"
            f"<th>I({a})</th><th>I({b})</th><th>I({a}, {b})</th></tr></thead><tbody>")
    rows = [head]
    for kind, dec in decs:
        cells = "".join(_cell(q, getattr(dec, q).value, getattr(dec, q).stderr)
                        for q in ("redundancy", "unique_1", "unique_2", "synergy", "mi_1", "mi_2", "mi_12"))
        rows.append(f'<tr class="pid-row" data-kind="{kind}"><td class="name">{kind.upper()}</td>'
                    f'<td class="name">{escape(str(dec.target))}</td>{cells}</tr>')
    rows.append("</tbody></table>")
    mode = escape(decs[0][1].redundancy_mode)
    rows.append(f'<p class="note">Redundancy mode: {mode}. R + U1 = I(y1), R + U2 = I(y2), '
                "R + U1 + U2 + S = I(y1, y2); synergy can be negative.</p>")
    return "".join(rows)


def maps_sections(expl: Any, assets: ReportAssets) -> str:
    """One section per map group: its colour bar (the group's one scale) and every overlay."""
    out = []
    h, w = display_size(expl.image.shape)
    for scale in assets.scales:
        g = scale.group
        title, note = TITLES[g]
        dec = getattr(expl, g, None) if g in ("pid", "cpid") else None
        if dec is not None:
            pair = f"{escape(str(dec.source_1))}, {escape(str(dec.source_2))}"
            title += f" of ({pair})"
            if dec.context is not None:
                note += f" Context: &ldquo;{escape(str(dec.context))}&rdquo;."
        figs = []
        for item in assets.maps:
            m = item.map
            if m.kind != g:
                continue
            role = "atom" if g in ("pid", "cpid") else "word"
            caption = escape(m.label) + ("" if m.value is None else f"<br>{_fmt(m.value, m.value_stderr)} nats")
            figs.append(
                f'<figure class="map-figure"><img class="map" data-kind="{g}" data-name="{_attr(m.name)}" '
                f'data-{role}="{_attr(m.name)}" data-scale="{g}" data-vmin="{scale.vmin!r}" data-vmax="{scale.vmax!r}" '
                f'width="{w}" height="{h}" alt="{_attr(m.label)} over the image" src="{data_uri(item.png)}">'
                f"<figcaption>{caption}</figcaption></figure>"
            )
        bar = (f'<img class="colorbar" data-scale="{g}" data-vmin="{scale.vmin!r}" data-vmax="{scale.vmax!r}" '
               f'alt="colour scale of the {g} maps: {scale.vmin:.3g} to {scale.vmax:.3g} {escape(scale.unit)}" '
               f'src="{data_uri(assets.colorbar(g))}">')
        shared = ("One colour scale is shared by every map of this section." if len(figs) > 1 else "")
        out.append(f'<section class="maps" id="maps-{g}" data-kind="{g}"><h2>{title}</h2>'
                   f'<p class="note">{note} {shared}</p>{bar}<div class="grid">{"".join(figs)}</div></section>')
    return "".join(out)


def _kv_table(table_id: str, items: list[tuple[str, Any]]) -> str:
    rows = "".join(f'<tr><th class="name">{escape(str(k))}</th><td class="name">{escape(str(v))}</td></tr>'
                   for k, v in items)
    return f'<table id="{table_id}"><tbody>{rows}</tbody></table>'


def render_html(expl: Any, assets: ReportAssets | None = None) -> str:
    """The self-contained HTML report of an :class:`~diffpid.explain.Explanation`.

    Args:
        expl: the explanation.
        assets: its rendered images (:func:`~diffpid.report.assets.build_assets`); built here when omitted.

    Returns:
        the HTML text (UTF-8; every image inlined as a base64 PNG data URI).
    """
    assets = build_assets(expl) if assets is None else assets
    h, w = display_size(expl.image.shape)
    seed = "given image" if expl.seed is None else f"seed {int(expl.seed)}"
    p = expl.parameters
    meta = (f"model <code>{escape(str(expl.model_name))}</code> &middot; {escape(seed)} &middot; "
            f"{int(p.samples)} samples per condition &middot; values in nats with standard errors")
    image_label = "generated image" if expl.seed is not None else "analysed image"
    pair_note = ""
    if expl.pair is not None:
        pair_note = (f'<p class="note">Decomposed pair: {escape(expl.pair[0])}, {escape(expl.pair[1])}. '
                     "i<sub>o</sub> is the orthogonal estimator (&ge; 0, pixel maps sum to it); i is the "
                     "standard estimator (can be negative).</p>")
    body = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>diffpid: {escape(expl.prompt)}</title>",
        '<link rel="icon" href="data:,">',
        f"<style>{CSS}</style></head><body>",
        "<header><h1>diffpid report</h1>",
        f'<p class="prompt" id="prompt">&ldquo;{escape(expl.prompt)}&rdquo;</p>',
        f'<p class="meta">{meta}</p></header>',
        '<section class="summary" id="summary">',
        f'<figure><img id="image" class="image" width="{w}" height="{h}" alt="{image_label}" '
        f'src="{data_uri(assets.image_png)}"><figcaption>{image_label} '
        f"({int(expl.image.shape[1])}&times;{int(expl.image.shape[0])})</figcaption></figure>",
        f'<div><h2 id="values-title">Values (nats)</h2>{values_table(expl)}{pid_table(expl)}{pair_note}</div>',
        "</section>",
        maps_sections(expl, assets),
        '<section id="curves-section"><h2>Noise-level curves</h2>',
        '<p class="note">Left: the denoising error of every condition per log-SNR. Right: the integrand of every '
        "word's MI and CMI; half its area over log-SNR is the value in nats.</p>",
        f'<img id="curves" alt="MMSE and information integrands per noise level" src="{data_uri(assets.curves_png)}">',
        "</section>",
        '<section id="parameters-section"><h2>Parameters</h2>',
        _kv_table("parameters", [("prompt", expl.prompt), ("model", expl.model_name),
                                 ("generation seed", "given image" if expl.seed is None else expl.seed),
                                 ("words", ", ".join(expl.words)),
                                 ("pair", "none" if expl.pair is None else ", ".join(expl.pair))]
                  + [(f.name, getattr(p, f.name)) for f in dataclasses.fields(p)]),
        "<h2>Versions</h2>",
        _kv_table("versions", sorted(dict(expl.versions).items())),
        "</section>",
        '<footer class="note">Made by diffpid. Maps are at the model\'s data resolution, upsampled bilinearly '
        "to the image.</footer>",
        "</body></html>",
    ]
    return "\n".join(body) + "\n"

