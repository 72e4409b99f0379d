"""The report's text sections: the header (model, generation, precision), the words ranked by CMI,
the table of every value, the decomposition table, and key-value tables (parameters, versions).

Every piece of user text goes through ``html.escape``; numbers are ``value ± standard error``.
"""

from __future__ import annotations

import math
from html import escape
from typing import Any


from .format import DASH, format_pm, near_zero
from .identity import identity_of
from .results import precision_dict, same_run


def attr(x: Any) -> str:
    return escape(str(x), quote=True)


def _finite(x: Any) -> float | None:
    if x is None:
        return None
    v = float(x)
    return v if math.isfinite(v) else None


def pm_html(value: Any, stderr: Any) -> str:
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

def precision_text(expl: Any) -> str:
    """Samples used and the relative standard errors reached (plain text)."""
    d = precision_dict(expl)
    first, second = d["samples"]["words"], d["samples"]["decomposition"]
    target = getattr(expl.parameters, "precision", None)
    parts = [f"{first} samples per condition" + (f" (decomposition run: {second})" if second else "")]
    if target is None:
        parts.append("no precision target")
    else:
        cap = getattr(expl.parameters, "max_samples", None)
        parts.append(f"target relative error {target:g}: " + ("met" if d["met"] else
                                                               f"not met within the cap of {cap} samples"))
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
        bar = (f'<div class="bar" title="{attr(format_pm(c.value, c.stderr))} nats"><div class="fill" '
               f'style="width:{fill:.1f}%"></div><div class="err" style="left:{lo:.1f}%;width:{max(hi - lo, 0.3):.1f}%">'
               "</div></div>")
        rows.append(f'<tr class="rank-row" data-word="{attr(w)}"><td>{i}</td><td class="name">{escape(w)}</td>'
                    f"<td>{bar}</td><td>{pm_html(c.value, c.stderr)}</td><td>{pm_html(m.value, m.stderr)}</td></tr>")
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
            f'<tr class="word-row" data-word="{attr(w)}"><td class="name">{escape(w)}</td>'
            + _cell("mi", mi.value, mi.stderr) + _cell("mi_standard", mi.standard_value, mi.standard_stderr)
            + _cell("cmi", cmi.value, cmi.stderr) + _cell("cmi_standard", cmi.standard_value, cmi.standard_stderr)
            + "</tr>"
        )
    rows.append("</tbody></table></div>")
    rows.append('<p class="note">i<sub>o</sub> is the orthogonal estimator (&ge; 0; its pixel maps sum to it), i the '
                "standard estimator (unbiased, can be negative). Both estimate the same information.</p>")
    return "".join(rows)


# ----- decompositions --------------------------------------------------------------------------------------------

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


def kv_table(table_id: str, items: list[tuple[str, Any]]) -> str:
    rows = "".join(f'<tr><th class="name">{escape(str(k))}</th><td class="text">{escape(str(v))}</td></tr>'
                   for k, v in items)
    return f'<div class="scroll"><table id="{table_id}"><tbody>{rows}</tbody></table></div>'

