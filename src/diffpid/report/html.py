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
import math
import uuid
from html import escape
from typing import Any

import numpy as np

from .assets import MapImage, ReportAssets, build_assets
from .format import DASH, format_pm, near_zero
from .identity import identity_of
from .maps import PERCENTILE, ColorScale, data_uri, display_size

KIND_TITLES = {"mi": "MI", "cmi": "CMI", "attention": "attention"}

CSS = """
.dp{font-family:system-ui,-apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:#1d1d1f;background:#fff;
max-width:1560px;margin:0 auto;padding:.8rem 1.2rem;box-sizing:border-box;line-height:1.35}
.dp *{box-sizing:border-box}
.dp h1{font-size:1.45rem;margin:.1rem 0}.dp h2{font-size:1.12rem;margin:1.4rem 0 .4rem;border-bottom:1px solid #ddd}
.dp h3{font-size:1rem;margin:.8rem 0 .3rem}
.dp .prompt{font-size:1.2rem;font-style:italic;margin:.15rem 0 .5rem;overflow-wrap:anywhere}
.dp .ident{font-size:.85rem;color:#333;display:grid;grid-template-columns:max-content 1fr;gap:.1rem .8rem;margin:.3rem 0}
.dp .ident dt{font-weight:600}.dp .ident dd{margin:0;overflow-wrap:anywhere}
.dp .note{color:#555;font-size:.8rem;max-width:62rem;overflow-wrap:anywhere}
.dp .warn{color:#7a4b00;background:#fff6e0;border-left:3px solid #e6a300;padding:.3rem .5rem;font-size:.82rem;
max-width:62rem}
.dp table{border-collapse:collapse;font-size:.84rem;margin:.4rem 0;max-width:100%}
.dp th,.dp td{border:1px solid #ddd;padding:.22rem .45rem;text-align:right;white-space:nowrap}
.dp th{background:#f4f4f6}.dp td.name,.dp th.name{text-align:left}
.dp td.text{text-align:left;white-space:normal;overflow-wrap:anywhere}
.dp .scroll{max-width:100%;overflow-x:auto}
@media (max-width:900px){.dp th,.dp td{white-space:normal;padding:.2rem .3rem}.dp table{font-size:.78rem}}
.dp td.nz,.dp span.nz{color:#888}.dp .zero{font-size:.7rem;color:#888;margin-left:.25rem}
.dp .bar{position:relative;height:.8rem;width:11rem;max-width:25vw;background:#f2f2f2}
.dp .bar .fill{position:absolute;left:0;top:0;bottom:0;background:#b35806}
.dp .bar .err{position:absolute;top:45%;height:10%;background:#222}
.dp .controls{position:sticky;top:0;z-index:2;background:#fffffff0;border-bottom:1px solid #ddd;padding:.35rem 0;
display:flex;flex-wrap:wrap;gap:.4rem 1.2rem;font-size:.85rem;align-items:center}
.dp .controls label{white-space:nowrap}
.dp .maprow{border-bottom:1px solid #eee;padding:.5rem 0}
.dp .maprow h3{margin:.2rem 0 .35rem}
.dp .figs{display:flex;flex-wrap:wrap;gap:.7rem 1.1rem;align-items:flex-start}
.dp figure{margin:0}.dp figcaption{font-size:.76rem;margin-top:.2rem;color:#333;overflow-wrap:anywhere}
.dp .thumb img{display:block;width:var(--px);height:auto;image-rendering:pixelated;border:1px solid #ccc}
.dp .mapfig{width:calc(2 * var(--px) + .35rem);max-width:100%}
.dp .pair{display:flex;gap:.35rem}
.dp img.raw{display:block;width:var(--px);max-width:calc(50% - .2rem);height:auto;
image-rendering:pixelated;border:1px solid #ccc;cursor:crosshair}
.dp .overlay{position:relative;width:var(--px);max-width:calc(50% - .2rem);border:1px solid #ccc;cursor:crosshair}
.dp .overlay img{display:block;width:100%;height:auto;image-rendering:auto}
.dp .overlay .outline{position:absolute;inset:0;background-size:100% 100%;pointer-events:none}
.dp .cbar{height:.55rem;margin-top:.25rem;border:1px solid #ccc}
.dp .limits{display:flex;justify-content:space-between;font-size:.7rem;color:#444}
.dp .hidden{display:none}
.dp .readout{position:fixed;right:.6rem;bottom:.6rem;background:#222;color:#fff;font-size:.8rem;padding:.3rem .55rem;
border-radius:4px;pointer-events:none;opacity:0;transition:opacity .1s;z-index:5;max-width:90vw}
.dp .readout.on{opacity:.92}
.dp #curves{max-width:100%;height:auto}
.dp footer{margin-top:1.5rem}
"""

SCRIPT = r"""
(function(){
var root=document.getElementById(%(root)s);if(!root)return;
var data=JSON.parse(root.querySelector('script.dp-data').textContent);
var readout=root.querySelector('.readout');
function setScale(mode){
  root.querySelectorAll('figure.mapfig').forEach(function(f){
    f.querySelectorAll('img.map').forEach(function(i){i.src=i.getAttribute('data-src-'+mode);
      i.setAttribute('data-scale',mode);});
    f.querySelector('.cbar').style.background=f.getAttribute('data-'+mode+'-bar');
    f.querySelector('.lo').textContent=f.getAttribute('data-'+mode+'-lo');
    f.querySelector('.hi').textContent=f.getAttribute('data-'+mode+'-hi');
    f.querySelector('.scale-text').textContent=f.getAttribute('data-'+mode+'-text');
    f.setAttribute('data-scale',mode);});
}
root.querySelectorAll('input[name=scale]').forEach(function(r){r.addEventListener('change',function(){
  if(r.checked)setScale(r.value);});});
var sel=root.querySelector('select.word-select');
if(sel)sel.addEventListener('change',function(){
  root.querySelectorAll('.maprow[data-word]').forEach(function(row){
    row.classList.toggle('hidden',sel.value!=='*'&&row.getAttribute('data-word')!==sel.value);});});
root.querySelectorAll('input.kind-toggle').forEach(function(c){c.addEventListener('change',function(){
  root.querySelectorAll('figure.mapfig[data-kind='+c.value+']').forEach(function(f){
    f.classList.toggle('hidden',!c.checked);});});});
function fmt(v){if(!isFinite(v))return '\u2014';if(v===0)return '0';var a=Math.abs(v);
  return (a>=1e-3&&a<1e5)?v.toPrecision(3):v.toExponential(2);}
root.addEventListener('mousemove',function(e){
  var el=e.target.closest?e.target.closest('[data-key]'):null;
  if(!el||el.tagName==='FIGURE'){readout.classList.remove('on');return;}
  var d=data[el.getAttribute('data-key')];if(!d){readout.classList.remove('on');return;}
  var r=el.getBoundingClientRect();
  var col=Math.min(d.w-1,Math.max(0,Math.floor((e.clientX-r.left)/r.width*d.w)));
  var row=Math.min(d.h-1,Math.max(0,Math.floor((e.clientY-r.top)/r.height*d.h)));
  var v=d.q[row*d.w+col]*d.s;
  readout.textContent=d.label+' at map pixel ('+row+', '+col+'): '+fmt(v)+' '+d.unit;
  readout.classList.add('on');});
root.addEventListener('mouseleave',function(){readout.classList.remove('on');});
})();
"""


def _attr(x: Any) -> str:
    return escape(str(x), quote=True)


def _finite(x: Any) -> float | None:
    if x is None:
        return None
    v = float(x)
    return v if math.isfinite(v) else None


def _pm(value: Any, stderr: Any) -> str:
    """``value ± stderr`` as HTML, greyed with a mark when compatible with zero."""
    text = escape(format_pm(value, stderr))
    if near_zero(value, stderr):
        return (f'<span class="nz" title="within two standard errors of zero">{text}</span>'
                '<span class="zero">&asymp;0</span>')
    return text


def _cell(quantity: str, value: Any, stderr: Any) -> str:
    v = "" if value is None else repr(float(value))
    s = "" if stderr is None else repr(float(stderr))
    cls = "value nz" if near_zero(value, stderr) else "value"
    return (f'<td class="{cls}" data-quantity="{quantity}" data-value="{v}" data-stderr="{s}">'
            f"{escape(format_pm(value, stderr))}</td>")


# ----- header --------------------------------------------------------------------------------------------------

def _samples(expl: Any) -> tuple[int | None, int | None]:
    words = expl.words
    first = int(expl.mi[words[0]].samples) if words else None
    second = None
    if expl.pid is not None and not same_run(expl):
        second = int(expl.pid.samples)
    return first, second


def precision_text(expl: Any) -> str:
    """Samples used and the relative standard errors reached (plain text)."""
    first, second = _samples(expl)
    target = getattr(expl.parameters, "precision", None)
    parts = [f"{first} samples per condition" + (f" (decomposition run: {second})" if second else "")]
    parts.append("no precision target" if target is None else f"target relative error {target:g}")
    rel = [expl.cmi[w].stderr / expl.cmi[w].value for w in expl.words
           if _finite(expl.cmi[w].stderr) is not None and _finite(expl.cmi[w].value) and expl.cmi[w].value > 0]
    if rel:
        parts.append(f"relative standard error of the CMIs {min(rel):.0%} to {max(rel):.0%}")
    elif first == 1:
        parts.append("one sample: no standard errors")
    return "; ".join(parts)


def generation_text(expl: Any, ident: dict) -> str:
    if expl.seed is None:
        return "none: the image was given"
    gen = ident.get("generation")
    if not gen:
        return f"seed {int(expl.seed)} (the model's generation settings are not recorded)"
    bits = [str(gen.get("scheduler") or gen.get("sampler") or "?"), f"{gen.get('steps')} steps", f"guidance {gen.get('guidance_scale')}"]
    return f"{', '.join(bits)}; seed {int(expl.seed)}"


def model_text(ident: dict) -> str:
    bits = [str(ident.get("name"))]
    if ident.get("revision"):
        bits.append(f"revision {ident['revision']}")
    if ident.get("training_step") is not None:
        bits.append(f"training step {ident['training_step']}")
    if ident.get("weights_sha256"):
        bits.append(f"UNet weights sha256 {ident['weights_sha256']}")
    if ident.get("dtype"):
        bits.append(str(ident["dtype"]) + (f" on {ident['device']}" if ident.get("device") else ""))
    return " · ".join(bits)


def header(expl: Any) -> str:
    ident = identity_of(expl)
    rows = [("model", model_text(ident)), ("generation", generation_text(expl, ident)),
            ("precision", precision_text(expl)), ("units", "nats; every value ± its standard error")]
    items = "".join(f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in rows)
    return (f'<header><h1>diffpid report</h1><p class="prompt" id="prompt">&ldquo;{escape(expl.prompt)}&rdquo;</p>'
            f'<dl class="ident" id="identity">{items}</dl></header>')


# ----- ranking and values ----------------------------------------------------------------------------------------

def ranked_words(expl: Any) -> list[str]:
    """The words by CMI, highest first (undefined values last)."""
    def key(w: str) -> float:
        v = _finite(expl.cmi[w].value)
        return -v if v is not None else math.inf
    return sorted(expl.words, key=key)


def ranking(expl: Any) -> str:
    """The words ranked by CMI, with bars and error whiskers, and their MI."""
    words = ranked_words(expl)
    tops = [(_finite(expl.cmi[w].value) or 0.0) + (_finite(expl.cmi[w].stderr) or 0.0) for w in words]
    top = max([t for t in tops if t > 0], default=1.0)
    rows = ['<div class="scroll"><table id="ranking"><thead><tr><th>#</th><th class="name">word</th>'
            "<th>CMI i<sub>o</sub> &plusmn; 1 s.e.</th><th>CMI</th><th>MI i<sub>o</sub></th></tr></thead><tbody>"]
    for i, w in enumerate(words, 1):
        c, m = expl.cmi[w], expl.mi[w]
        v, s = _finite(c.value) or 0.0, _finite(c.stderr) or 0.0
        fill = max(0.0, min(1.0, v / top)) * 100
        lo, hi = max(0.0, (v - s) / top) * 100, min(1.0, (v + s) / top) * 100
        bar = (f'<div class="bar" title="{_attr(format_pm(c.value, c.stderr))} nats"><div class="fill" '
               f'style="width:{fill:.1f}%"></div><div class="err" style="left:{lo:.1f}%;width:{max(hi - lo, 0.3):.1f}%">'
               "</div></div>")
        rows.append(f'<tr class="rank-row" data-word="{_attr(w)}"><td>{i}</td><td class="name">{escape(w)}</td>'
                    f"<td>{bar}</td><td>{_pm(c.value, c.stderr)}</td><td>{_pm(m.value, m.stderr)}</td></tr>")
    rows.append("</tbody></table></div>")
    rows.append('<p class="note">CMI: what the word adds once the rest of the prompt is known; MI: what the word '
                "alone tells, against the empty prompt. Greyed values marked &asymp;0 are within two standard errors "
                f"of zero; {DASH} marks an undefined number (a standard error needs two samples or more).</p>")
    return "".join(rows)


def values_table(expl: Any) -> str:
    """Every word's MI and CMI: orthogonal ``i_o`` and the standard estimator ``i``, with standard errors."""
    rows = [
        '<div class="scroll"><table id="values"><thead><tr><th class="name">word</th><th>MI i<sub>o</sub></th>'
        "<th>MI i (standard)</th><th>CMI i<sub>o</sub></th><th>CMI i (standard)</th></tr></thead><tbody>"
    ]
    for w in expl.words:
        mi, cmi = expl.mi[w], expl.cmi[w]
        rows.append(
            f'<tr class="word-row" data-word="{_attr(w)}"><td class="name">{escape(w)}</td>'
            + _cell("mi", mi.value, mi.stderr) + _cell("mi_standard", mi.standard_value, mi.standard_stderr)
            + _cell("cmi", cmi.value, cmi.stderr) + _cell("cmi_standard", cmi.standard_value, cmi.standard_stderr)
            + "</tr>"
        )
    rows.append("</tbody></table></div>")
    rows.append('<p class="note">i<sub>o</sub> is the orthogonal estimator (&ge; 0; its pixel maps sum to it), i the '
                "standard estimator (unbiased, can be negative). Both estimate the same information.</p>")
    return "".join(rows)


# ----- decompositions --------------------------------------------------------------------------------------------

def same_run(expl: Any) -> bool:
    """Whether the PID's single-word informations are the MI values of the word table (one engine run).

    ``explain`` decomposes a given ``pair`` in the run of the word table; when it picks the pair itself
    (the two words of highest CMI) it needs a second run, whose fresh estimates differ by sampling noise.
    """
    dec = expl.pid
    if dec is None:
        return True
    pairs = ((dec.source_1, dec.mi_1), (dec.source_2, dec.mi_2))
    for word, info in pairs:
        mine = expl.mi.get(str(word))
        if mine is None or not np.isclose(float(mine.value), float(info.value), rtol=1e-9, atol=1e-12):
            return False
    return True


def consistency_note(expl: Any) -> str:
    dec = expl.pid
    if dec is None:
        return ""
    a, b = str(dec.source_1), str(dec.source_2)
    if same_run(expl):
        text = (f"I({escape(a)}) and I({escape(b)}) of the PID are the MI values of the word table (the same draws "
                "of the same conditions): one number per quantity.")
        return f'<p class="note" id="pid-consistency" data-same-run="true">{text}</p>'
    diffs = []
    for word, info in ((a, dec.mi_1), (b, dec.mi_2)):
        mine = expl.mi.get(word)
        if mine is not None:
            diffs.append(f"MI({escape(word)}) = {escape(format_pm(mine.value, mine.stderr))} in the word table, "
                         f"I({escape(word)}) = {escape(format_pm(info.value, info.stderr))} here")
    text = ("Two runs: explain chose this pair after the word run (the two words of highest CMI) and decomposed it "
            "in a second engine run with its own draws, so the PID's single-word informations are fresh "
            "estimates of the word table's MI and differ by sampling noise (" + "; ".join(diffs) + "). "
            "Pass the pair (--pair / pair=) to compute everything in one run.")
    return f'<p class="warn" id="pid-consistency" data-same-run="false">{text}</p>'


def pid_table(expl: Any) -> str:
    """The decomposition table: R, U1, U2, S and the three informations of PID and CPID, with standard errors."""
    decs = [(k, getattr(expl, k)) for k in ("pid", "cpid") if getattr(expl, k) is not None]
    if not decs:
        return '<p class="note" id="pid-values-missing">No decomposition: the prompt has fewer than two words.</p>'
    a, b = (escape(str(s)) for s in (decs[0][1].source_1, decs[0][1].source_2))
    head = (f'<div class="scroll"><table id="pid-values"><thead><tr><th class="name">decomposition</th>'
            f"<th>R({a}, {b})</th><th>U({a})</th><th>U({b})</th><th>S({a}, {b})</th>"
            f"<th>I({a})</th><th>I({b})</th><th>I({a}, {b})</th></tr></thead><tbody>")
    rows = [head]
    for kind, dec in decs:
        cells = "".join(_cell(q, getattr(dec, q).value, getattr(dec, q).stderr)
                        for q in ("redundancy", "unique_1", "unique_2", "synergy", "mi_1", "mi_2", "mi_12"))
        given = "" if dec.context is None else f"<br><small>given &ldquo;{escape(str(dec.context))}&rdquo;</small>"
        rows.append(f'<tr class="pid-row" data-kind="{kind}"><td class="name">{kind.upper()}{given}</td>{cells}</tr>')
    rows.append("</tbody></table></div>")
    mode = decs[0][1].redundancy_mode
    rows.append(f'<p class="note">R + U({a}) = I({a}), R + U({b}) = I({b}), R + U + U + S = I({a}, {b}); synergy can '
                f"be negative. Redundancy: {escape(mode)} "
                + ("(the minimum of the two integrated informations)." if mode == "integrated"
                   else "(the minimum per noise level and pixel inside the integral).")
                + (" CPID's informations are conditioned on the prompt without both words, so they are not the "
                   "CMI of the word table (which conditions on everything but one word)." if expl.cpid is not None
                   else "") + "</p>")
    rows.append(consistency_note(expl))
    return "".join(rows)


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
    attrs = (f'data-key="{_attr(m.key)}" data-kind="{m.kind}" data-name="{_attr(m.name)}" data-{role}="{_attr(m.name)}"')
    scale_attrs = "".join(
        f' data-{mode}-lo="{_attr(format_pm(s.vmin))}" data-{mode}-hi="{_attr(format_pm(s.vmax))}"'
        f' data-{mode}-vmin="{s.vmin!r}" data-{mode}-vmax="{s.vmax!r}" data-{mode}-bar="{_attr(_gradient(s))}"'
        f' data-{mode}-text="{_attr(_scale_text(item, s))}"'
        for mode, s in (("own", own), ("shared", shared)))
    srcs = (f'src="{data_uri(item.raw_own)}" data-src-own="{data_uri(item.raw_own)}" '
            f'data-src-shared="{data_uri(item.raw_shared)}" data-scale="own"')
    h, w = m.values.shape
    ph = max(1, round(px * h / w))
    caption = f"<b>{escape(m.label)}</b>"
    if m.value is not None:
        caption += f" = {_pm(m.value, m.value_stderr)} nats"
    if not m.sums_to_value and m.value is not None:
        caption += (f'<br><span class="nosum">map sums to {escape(format_pm(m.map_sum))}, not to the value: the '
                    "redundancy map is a per-pixel minimum (a sum of minima is at most the minimum of sums)</span>")
    return (
        f'<figure class="mapfig" {attrs} data-scale="own"{scale_attrs}>'
        f'<div class="pair"><img class="map raw" {attrs} {srcs} width="{px}" height="{ph}" '
        f'alt="{_attr(m.label)}: raw heat map, {h}&times;{w} map pixels">'
        f'<div class="overlay" data-key="{_attr(m.key)}"><img class="map under" {srcs} alt="{_attr(m.label)} with the '
        f'image outlines"><span class="outline"></span></div></div>'
        f'<div class="cbar" style="background:{_gradient(own)}"></div>'
        f'<div class="limits"><span class="lo">{escape(format_pm(own.vmin))}</span>'
        f'<span class="hi">{escape(format_pm(own.vmax))}</span></div>'
        f'<figcaption>{caption}<br><span class="scale-text">{escape(_scale_text(item, own))}</span></figcaption>'
        "</figure>"
    )


def controls(expl: Any, kinds: list[str]) -> str:
    opts = '<option value="*">all words</option>' + "".join(
        f'<option value="{_attr(w)}">{escape(w)}</option>' for w in ranked_words(expl))
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
        out.append(f'<div class="maprow" data-word="{_attr(w)}"><h3>{escape(w)} <small>CMI {_pm(c.value, c.stderr)} '
                   f'&middot; MI {_pm(m.value, m.stderr)} nats</small></h3><div class="figs">{"".join(figs)}</div></div>')
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


def _kv_table(table_id: str, items: list[tuple[str, Any]]) -> str:
    rows = "".join(f'<tr><th class="name">{escape(str(k))}</th><td class="text">{escape(str(v))}</td></tr>'
                   for k, v in items)
    return f'<div class="scroll"><table id="{table_id}"><tbody>{rows}</tbody></table></div>'


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
        _kv_table("parameters", [("prompt", expl.prompt), ("model", expl.model_name),
                                 ("generation seed", "given image" if expl.seed is None else expl.seed),
                                 ("words", ", ".join(expl.words)),
                                 ("pair", "none" if expl.pair is None else ", ".join(expl.pair))]
                  + [(f.name, getattr(p, f.name)) for f in dataclasses.fields(p)]),
        "<h2>Versions</h2>",
        _kv_table("versions", sorted(dict(expl.versions).items())),
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
