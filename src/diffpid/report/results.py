"""``results.json``: every number of an explanation as JSON-ready data.

The JSON Schema is ``results_schema.json`` beside this module (:func:`results_schema`).
All information values are in nats; every value has its standard error beside it;
non-finite numbers (e.g. empty curve bins) are ``null``. Top level::

    schema          "diffpid.results/2"
    prompt, model   the prompt and the model id or folder
    model_identity  name, class, source, revision, training_step, weights_sha256, dtype, device,
                    generation defaults (:func:`diffpid.report.identity.model_identity`)
    generation      {scheduler, steps, guidance_scale} that made the image; null when the image was given
    seed            generation seed, null when the image was given
    precision       target (relative standard error or null), samples {words, decomposition}
                    (draws per condition of each engine run; decomposition null when it shared the
                    word run), max_relative_stderr (largest stderr / value of a positive CMI, or null),
                    met (every word's MI and CMI within the target or its floor; null without a target)
    decomposition_run  "same" (PID informations are the word table's MI) or "separate"
                    (explain chose the pair and ran it again), null without a pair
    units           "nats"
    image_shape     [H, W, 3] of the analysed image; map_shape [h, w] of the maps
    words           the words explained, in prompt order
    slugs           word -> file-name-safe name used in maps/ and maps.npz
    mi, cmi         word -> Information:
                      value, stderr                    orthogonal estimate i_o and its standard error
                      standard_value, standard_stderr  the standard estimator i
                      map_sum                          sum of the pixel map (equals value)
                      samples                          (a, eps) draws
                      curve                            the integrand per log-SNR bin: logsnr, mean
                                                       (null: no sample), count; half its integral is value
    pair            [w1, w2] decomposed, or null
    pid, cpid       Decomposition or null:
                      source_1, source_2, context (null for PID), target, conditions [4 prompts],
                      redundancy_mode, samples,
                      redundancy, unique_1, unique_2, synergy, per_snr_redundancy: {value, stderr}
                      mi_1, mi_2, mi_12: Information;  covariance: 4x4 of (mi_1, mi_2, mi_12, per-SNR min)
    attention       words with an attention map, or null when attention was not collected
    maps            one entry per map: key ("cmi/red": the maps.npz key), kind, name, label,
                    png (path of its overlay), scale (its colour-scale group), min, max, sum,
                    sums_to_value (false for per-pixel minima), signed, own_scale and
                    shared_scale ({vmin, vmax, colormap, diverging}: the report's two views)
    color_scales    group -> {vmin, vmax, colormap, diverging, unit, true_min, true_max, percentile}:
                    the shared scale of the group (mi, cmi, pid, cpid, attention); its top is the
                    largest 99th percentile of the group's maps, true_max their real maximum
    curves          per condition: prompt, logsnr [bins], mmse [bins] (null: no sample),
                    count [bins], nll and nll_stderr (-log p(x | prompt), nats)
    parameters      samples, batch_size, sampler, redundancy, seed, device, dtype, attention,
                    precision, precision_floor, max_samples (null without a precision target)
    versions        package -> version
    files           names of report.html, results.json, maps.npz, image.png and curves.png
"""

from __future__ import annotations

import dataclasses
import json
import math
from importlib import resources
from typing import Any

import numpy as np

from .identity import identity_of
from .maps import PERCENTILE, ColorScale, ReportMap, color_scales, own_scale, report_maps, shared_scale, unique_slugs

SCHEMA_ID = "diffpid.results/2"

FILES = {"report": "report.html", "results": "results.json", "maps_npz": "maps.npz",
         "image": "image.png", "curves": "curves.png"}
"""Names of the files :func:`diffpid.report.save.save_explanation` writes (besides ``maps/``)."""


def _num(x: Any) -> float | None:
    """A JSON number: Python float, or ``None`` for NaN / infinity."""
    if x is None:
        return None
    v = float(np.asarray(x))
    return v if math.isfinite(v) else None


def _text(x: Any) -> str | None:
    return None if x is None else str(x)


def information_dict(info: Any) -> dict:
    """An :class:`~diffpid.information.Information` of one image as a JSON object."""
    return {
        "value": _num(info.value), "stderr": _num(info.stderr),
        "standard_value": _num(info.standard_value), "standard_stderr": _num(info.standard_stderr),
        "map_sum": _num(np.sum(info.pixel_map)), "samples": int(info.samples),
        "curve": _bins(info.curve),
    }


def _value(atom: Any) -> dict:
    return {"value": _num(atom.value), "stderr": _num(atom.stderr)}


def decomposition_dict(dec: Any) -> dict:
    """A :class:`~diffpid.decomposition.pid.PID` of one image as a JSON object."""
    out = {
        "source_1": _text(dec.source_1), "source_2": _text(dec.source_2), "context": _text(dec.context),
        "target": _text(dec.target), "conditions": [_text(c) for c in dec.conditions],
        "redundancy_mode": dec.redundancy_mode, "samples": int(dec.samples),
    }
    for name in ("redundancy", "unique_1", "unique_2", "synergy", "per_snr_redundancy"):
        out[name] = _value(getattr(dec, name))
    for name in ("mi_1", "mi_2", "mi_12"):
        out[name] = information_dict(getattr(dec, name))
    out["covariance"] = [[_num(v) for v in row] for row in np.asarray(dec.covariance)]
    return out


def _view(s: ColorScale) -> dict:
    return {"vmin": s.vmin, "vmax": s.vmax, "colormap": s.colormap, "diverging": s.diverging}


def map_dict(m: ReportMap, maps: tuple[ReportMap, ...] = ()) -> dict:
    """The index entry of one map (``maps``: all maps of the report, for the shared scale)."""
    finite = m.values[np.isfinite(m.values)]
    return {"key": m.key, "kind": m.kind, "name": m.name, "label": m.label, "png": m.filename, "scale": m.kind,
            "min": _num(finite.min()) if finite.size else None, "max": _num(finite.max()) if finite.size else None,
            "sum": _num(finite.sum()), "sums_to_value": bool(m.sums_to_value), "signed": bool(m.signed),
            "own_scale": _view(own_scale(m)), "shared_scale": _view(shared_scale(m, maps or (m,)))}


def scale_dict(s: ColorScale) -> dict:
    return {"vmin": s.vmin, "vmax": s.vmax, "colormap": s.colormap, "diverging": s.diverging, "unit": s.unit,
            "true_min": _num(s.true_min), "true_max": _num(s.true_max), "percentile": PERCENTILE}


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


def precision_dict(expl: Any) -> dict:
    """Samples used per engine run and the largest relative standard error of a positive CMI."""
    words = list(expl.words)
    rel = [float(expl.cmi[w].stderr) / float(expl.cmi[w].value) for w in words
           if _num(expl.cmi[w].stderr) is not None and (_num(expl.cmi[w].value) or 0) > 0]
    second = None
    if expl.pid is not None and not same_run(expl):
        second = int(expl.pid.samples)
    return {"target": _num(getattr(expl.parameters, "precision", None)),
            "samples": {"words": int(expl.mi[words[0]].samples) if words else None, "decomposition": second},
            "max_relative_stderr": max(rel) if rel else None, "met": precision_met(expl)}


def precision_met(expl: Any) -> bool | None:
    """Whether every word's MI and CMI reached the precision target (``stderr <= max(target |value|,
    floor)``); ``None`` without a target."""
    p = expl.parameters
    target = getattr(p, "precision", None)
    if target is None:
        return None
    floor = getattr(p, "precision_floor", None) or 0.0
    infos = [getattr(expl, kind)[w] for kind in ("mi", "cmi") for w in expl.words]
    return all(_num(i.stderr) is not None and float(i.stderr) <= max(target * abs(float(i.value)), floor)
               for i in infos)


def _bins(curve: Any) -> dict:
    """A :class:`~diffpid.engine.estimate.Curve` of one image: bin centres, means (null where empty), counts."""
    return {"logsnr": [_num(v) for v in np.asarray(curve.logsnr)], "mean": [_num(v) for v in np.asarray(curve.mean)],
            "count": [int(v) for v in np.asarray(curve.count)]}


def _curve(c: Any) -> dict:
    bins = _bins(c.curve)
    return {"prompt": c.prompt, "logsnr": bins["logsnr"], "mmse": bins["mean"], "count": bins["count"],
            "nll": _num(c.nll), "nll_stderr": _num(c.nll_stderr)}


def explanation_to_dict(expl: Any) -> dict:
    """Every value of an :class:`~diffpid.explain.Explanation` with its standard error, as JSON-ready data.

    Args:
        expl: the explanation.

    Returns:
        a dict following ``results_schema.json`` (see the module docstring); ``json.dumps``
        serialises it without ``allow_nan``.
    """
    maps = report_maps(expl)
    map_shape = next((list(m.values.shape) for m in maps), None)
    ident = identity_of(expl)
    return {
        "schema": SCHEMA_ID,
        "prompt": expl.prompt,
        "model": str(expl.model_name),
        "model_identity": ident,
        "generation": None if expl.seed is None else ident.get("generation"),
        "seed": None if expl.seed is None else int(expl.seed),
        "precision": precision_dict(expl),
        "decomposition_run": None if expl.pid is None else ("same" if same_run(expl) else "separate"),
        "units": "nats",
        "image_shape": [int(n) for n in np.asarray(expl.image).shape],
        "map_shape": map_shape,
        "words": list(expl.words),
        "slugs": unique_slugs(list(expl.words)),
        "mi": {w: information_dict(expl.mi[w]) for w in expl.words},
        "cmi": {w: information_dict(expl.cmi[w]) for w in expl.words},
        "pair": None if expl.pair is None else [str(w) for w in expl.pair],
        "pid": None if expl.pid is None else decomposition_dict(expl.pid),
        "cpid": None if expl.cpid is None else decomposition_dict(expl.cpid),
        "attention": None if expl.attention is None else [w for w in expl.words if expl.attention.get(w) is not None],
        "maps": [map_dict(m, maps) for m in maps],
        "color_scales": {s.group: scale_dict(s) for s in color_scales(maps)},
        "curves": [_curve(c) for c in expl.curves],
        "parameters": dataclasses.asdict(expl.parameters),
        "versions": {str(k): str(v) for k, v in dict(expl.versions).items()},
        "files": dict(FILES),
    }


def results_json(expl: Any) -> str:
    """:func:`explanation_to_dict` as indented, strictly valid JSON text."""
    return json.dumps(explanation_to_dict(expl), indent=2, allow_nan=False, ensure_ascii=False)


def results_schema() -> dict:
    """The JSON Schema of ``results.json`` (``results_schema.json``, shipped with the package)."""
    return json.loads(resources.files("diffpid.report").joinpath("results_schema.json").read_text("utf-8"))
