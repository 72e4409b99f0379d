"""DiffusionPID's case studies (Dewan et al., NeurIPS 2024; SCIENCE.md section 5): bias, synonyms, homonyms.

Every study is a set of :class:`PairCase` (an image, two words, the prompts they come
from, a group and, for bias, a planted strength), one pointwise PID per case
(:func:`pair_pid`, one engine run of four conditions), and a summary:

- **bias** (:func:`bias_summary`): the redundancy of an attribute word and an object word
  (DiffusionPID: gender and occupation), averaged over a pair's images and min-max
  normalised over the set; its Spearman rank correlation with a planted strength when there
  is one. Shapes world: colour and shape words in ``"a COLOUR SHAPE"``, strength
  ``P(colour | shape, colour unnamed)`` (0.9 for red triangles).
- **synonyms** (:func:`group_contrast`): synonyms carry the same information, so their
  redundancy is the whole of what the pair says: the redundant share ``R / m(y1 y2)`` is near
  1, against at most about 1/2 for words that add up (for two words whose informations add,
  ``R / m12 = min / (m1 + m2)``). Shapes world: "square" and "box" on an image of a square,
  against the colour or size word with either shape word.
- **homonyms** (:func:`group_contrast`): the ambiguous word's meaning is fixed only by its
  neighbour, so the pair's synergy is high. Shapes world: "orange" with the shape word after
  it (alone, "orange" is the fruit, a circle of any colour; before a shape word, the colour),
  against other colours with the same shape words.

The atoms are image-level values of the minimum-MI decomposition (:func:`diffpid.pid`) in nats;
the pixel-level redundancy (sum over pixels of the minimum of the two words' maps, which
counts only information the two words place on the same pixels) is reported beside them.

The shapes world's cases of the three studies are made in :mod:`diffpid.bench.pid_cases`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from ..errors import ParameterError
from ..models.base import Model
from ..plan import Plan, PlanResult
from ..settings import Settings
from .correlation import Estimate, bootstrap, minmax, spearman

DEFAULTS = Settings(samples=32)
"""The studies' estimator settings unless told otherwise."""

__all__ = [
    "BIAS_METRICS", "DEFAULTS", "BiasSummary", "GroupContrast", "PairCase", "PairResult", "bias_summary",
    "group_contrast", "pair_data", "pair_pid", "pair_plan", "pair_result",
]

ATOMS = ("redundancy", "unique_1", "unique_2", "synergy")


@dataclass(frozen=True)
class PairCase:
    """One image and the two words whose information about it is decomposed.

    Args:
        image: ``(*data_shape)`` model data, a path / PIL image for ``model.encode_image``, or
            ``None`` to generate the image from ``prompt`` with the item's seed.
        prompt: the prompt the words come from (``None``: the words alone, joint ``"y1 y2"``).
        word_1, word_2: the two sources.
        conditional: CPID given the rest of ``prompt`` (else PID against ``""``).
        group: the case's group in its study (``"synonym"``, ``"unrelated"``, ``"homonym"``...).
        key: cases with the same key are averaged together (e.g. one colour-shape pair).
        strength: a planted strength to correlate with (bias), or ``None``.
        image_prompt: the prompt a missing image is generated from (default ``prompt``).
    """

    image: Any
    prompt: str | None
    word_1: str
    word_2: str
    conditional: bool = False
    group: str = ""
    key: str = ""
    strength: float | None = None
    image_prompt: str | None = None


@dataclass(frozen=True)
class PairResult:
    """Image-level decomposition of one case, in nats.

    Args:
        case: the case (its image left out).
        values, stderrs: ``{"redundancy", "unique_1", "unique_2", "synergy", "mi_1", "mi_2", "mi_12",
            "per_snr_redundancy"}`` (the last: the minimum taken per noise draw and pixel, :func:`diffpid.pid`);
            ``values`` also has ``standard_mi_1/2/12``, ``standard_redundancy`` and ``standard_synergy``:
            the decomposition of the standard estimator ``i = log p(x|y) / p(x)`` from the same
            run (no errors; ``i_o`` is the pointwise MI only on average, see the README).
        pixel_redundancy: sum over pixels of ``min(map_1, map_2)`` of the two words' information maps.
        maps: ``{atom: (h, w)}`` pixel maps of the four atoms.
        conditions: the four prompts compared.
    """

    case: PairCase
    values: dict[str, float]
    stderrs: dict[str, float]
    pixel_redundancy: float
    maps: dict[str, np.ndarray]
    conditions: tuple[str, str, str, str]

    @property
    def redundant_share(self) -> float:
        """``R / m(y1 y2)``: the share of the pair's information both words carry (NaN when ``m12 <= 0``)."""
        m12 = self.values["mi_12"]
        return self.values["redundancy"] / m12 if m12 > 0 else float("nan")


def case_data(model: Model, image: Any, prompt: str | None, seed: int) -> torch.Tensor:
    """``(1, *data_shape)`` data of a case (generated from the prompt when ``image`` is ``None``)."""
    if image is None:
        if prompt is None:
            raise ParameterError("a case without an image needs a prompt to generate it from")
        return model.generate(prompt, seed=seed).x.to(torch.float32)
    if isinstance(image, torch.Tensor):
        return model.check_x(image.to(torch.float32))
    return model.encode_image(image).to(torch.float32)


def pair_data(model: Model, case: PairCase, seed: int) -> torch.Tensor:
    """``(1, *data_shape)`` data of a case: its image, or one generated from its prompt with ``seed``."""
    return case_data(model, case.image, case.image_prompt or case.prompt, seed)


def pair_plan(case: PairCase, redundancy: str = "integrated") -> Plan:
    """The :class:`~diffpid.plan.Plan` of a case: the PID (or CPID) of its two words, named ``"pid"``."""
    full = case.prompt is not None and not case.conditional
    return Plan().pid(case.word_1, case.word_2, prompt=case.prompt, conditional=case.conditional, full_prompt=full,
                      redundancy=redundancy, name="pid")


def pair_pid(model: Model, case: PairCase, *, redundancy: str = "integrated", settings: Settings | None = None,
             **overrides: Any) -> PairResult:
    """The pointwise PID (or CPID) of a case's two words about its image.

    Args:
        model: the denoiser.
        case: image, prompt, words.
        redundancy: as :func:`diffpid.pid`.
        settings: the estimator :class:`~diffpid.settings.Settings` (default :data:`DEFAULTS`: 32
            samples) or its fields as keywords; ``seed`` also seeds a generated image.
    """
    settings = Settings.of(settings or DEFAULTS, **overrides)
    plan = pair_plan(case, redundancy)
    x = pair_data(model, case, settings.seed)
    return pair_result(case, plan.run(model, x[0], settings))


def pair_result(case: PairCase, result: PlanResult) -> PairResult:
    """The :class:`PairResult` of a case from the run of its :func:`pair_plan` (the case's image left out)."""
    from ..decomposition.pid import plan_pid

    r = plan_pid(result, "pid")
    named = dict(zip(ATOMS, r.atoms))
    named.update(mi_1=r.mi_1, mi_2=r.mi_2, mi_12=r.mi_12, per_snr_redundancy=r.per_snr_redundancy)
    values = {k: float(v.value) for k, v in named.items()}
    stderrs = {k: float(v.stderr) for k, v in named.items()}
    # the same decomposition from the standard estimator i = log p(x|y)/p(x) (same engine run)
    s1, s2, s12 = (float(getattr(r, k).standard_value) for k in ("mi_1", "mi_2", "mi_12"))
    values.update(standard_redundancy=min(s1, s2), standard_synergy=s12 - max(s1, s2), standard_mi_1=s1,
                  standard_mi_2=s2, standard_mi_12=s12)
    pixel_r = float(np.minimum(r.mi_1.pixel_map, r.mi_2.pixel_map).sum())
    maps = {k: np.asarray(named[k].pixel_map, dtype=np.float64) for k in ATOMS}
    return PairResult(PairCase(None, case.prompt, case.word_1, case.word_2, case.conditional, case.group, case.key,
                               case.strength, case.image_prompt), values, stderrs, pixel_r, maps, tuple(r.conditions))


def _by_key(results: Sequence[PairResult], metric: str) -> tuple[list[str], np.ndarray, list[PairResult]]:
    keys: list[str] = []
    groups: dict[str, list[float]] = {}
    first: dict[str, PairResult] = {}
    for r in results:
        k = r.case.key or f"{r.case.word_1} {r.case.word_2}"
        if k not in groups:
            keys.append(k)
            groups[k], first[k] = [], r
        groups[k].append(metric_of(r, metric))
    return keys, np.array([np.mean(groups[k]) for k in keys]), [first[k] for k in keys]


def metric_of(r: PairResult, metric: str) -> float:
    """A case's value of ``metric``: a name in ``values``, ``"pixel_redundancy"``, ``"redundant_share"``
    (``R / m12``), ``"redundant_fraction"`` (``R / max(m1, m2)``, which needs no joint condition) or
    ``"standard_redundant_share"`` (the share from the standard estimator)."""
    if metric == "pixel_redundancy":
        return r.pixel_redundancy
    if metric == "redundant_share":
        return r.redundant_share
    if metric == "redundant_fraction":
        top = max(r.values["mi_1"], r.values["mi_2"])
        return r.values["redundancy"] / top if top > 0 else float("nan")
    if metric == "standard_redundant_share":
        m12 = r.values["standard_mi_12"]
        return r.values["standard_redundancy"] / m12 if m12 > 0 else float("nan")
    if metric not in r.values:
        raise ParameterError(f"unknown metric {metric!r}; use an atom, mi_1/mi_2/mi_12, pixel_redundancy or "
                             "redundant_share")
    return r.values[metric]


BIAS_METRICS = ("redundancy", "pixel_redundancy", "per_snr_redundancy", "standard_redundancy")
"""What the bias study ranks: image-level, pixel-level, per-noise-level and standard-estimator redundancy."""


@dataclass(frozen=True)
class BiasSummary:
    """Per-pair redundancy, normalised over the set, and its rank correlation with the planted strength.

    Args:
        keys: the pairs, in first-seen order.
        redundancy: ``(n_pairs,)`` mean image-level redundancy of each pair (nats).
        normalized: ``(n_pairs,)`` min-max normalised redundancy.
        means: per metric of :data:`BIAS_METRICS`, ``(n_pairs,)`` means over each pair's images.
        strength: ``(n_pairs,)`` planted strengths (NaN where none).
        spearman: per metric of :data:`BIAS_METRICS`, Spearman's rho with the strength and its
            bootstrap error over pairs (empty without strengths); the first is the headline.
        top: the pair with the highest redundancy.
    """

    keys: tuple[str, ...]
    redundancy: np.ndarray
    normalized: np.ndarray
    means: dict[str, np.ndarray]
    strength: np.ndarray
    spearman: dict[str, Estimate]
    top: str


def bias_summary(results: Sequence[PairResult], *, resamples: int = 1000, seed: int = 0) -> BiasSummary:
    """Average each pair's redundancies over its images, normalise, and rank-correlate with the strength."""
    if not results:
        raise ParameterError("no bias results to summarise; run at least one pair")
    keys, _, first = _by_key(results, "redundancy")
    means = {m: _by_key(results, m)[1] for m in BIAS_METRICS}
    red = means["redundancy"]
    strength = np.array([np.nan if r.case.strength is None else r.case.strength for r in first])
    rhos: dict[str, Estimate] = {}
    ok = np.isfinite(strength)
    if ok.sum() >= 2:
        s = strength[ok]
        for m in BIAS_METRICS:
            v = means[m][ok]
            rhos[m] = bootstrap(lambda i, v=v: spearman(v[i], s[i]), int(ok.sum()), resamples=resamples, seed=seed)
    return BiasSummary(tuple(keys), red, minmax(red), means, strength, rhos, keys[int(np.argmax(red))])


@dataclass(frozen=True)
class GroupContrast:
    """Mean of a metric in each group and the difference between two groups.

    Args:
        metric: what was compared.
        groups: ``(name, mean, stderr, cases)`` per group (stderr over cases).
        difference: mean of ``first`` minus mean of ``second`` with a bootstrap error (cases
            resampled within each group).
        first, second: the contrasted groups.
    """

    metric: str
    groups: tuple[tuple[str, float, float, int], ...]
    difference: Estimate
    first: str
    second: str


def group_contrast(results: Sequence[PairResult], metric: str, first: str, second: str, *, resamples: int = 1000,
                   seed: int = 0) -> GroupContrast:
    """Compare ``metric`` between two groups of cases (e.g. synonym vs unrelated redundancy).

    Args:
        results: the cases' results.
        metric: an atom (``"redundancy"``, ``"synergy"``...), ``"redundant_share"`` or ``"pixel_redundancy"``.
        first, second: the two groups.
        resamples, seed: bootstrap of the difference.

    Cases whose metric is undefined (NaN, e.g. a share with ``m12 <= 0``) are left out.
    """
    by: dict[str, list[float]] = {}
    for r in results:
        v = metric_of(r, metric)
        by.setdefault(r.case.group, [])
        if np.isfinite(v):  # an undefined share (m12 <= 0) is left out
            by[r.case.group].append(v)
    for g in (first, second):
        if not by.get(g):
            raise ParameterError(f"no results in group {g!r}; the groups are {sorted(by)}")
    rows = []
    for g, v in by.items():
        a = np.asarray(v, dtype=np.float64)
        se = float(a.std(ddof=1) / np.sqrt(a.size)) if a.size > 1 else float("nan")
        rows.append((g, float(a.mean()), se, int(a.size)))
    a, b = np.asarray(by[first]), np.asarray(by[second])
    rng = np.random.default_rng(seed)
    diffs = [a[rng.integers(0, a.size, a.size)].mean() - b[rng.integers(0, b.size, b.size)].mean()
             for _ in range(resamples)]
    se = float(np.std(diffs, ddof=1)) if a.size > 1 and b.size > 1 else float("nan")
    diff = Estimate(float(a.mean() - b.mean()), se, int(a.size + b.size), resamples)
    return GroupContrast(metric, tuple(rows), diff, first, second)
