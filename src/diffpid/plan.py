"""A plan: named conditions and named measurements over ONE engine run.

Every caller that needs several quantities of one image (explain, ``diffpid run``,
attention with information, the benches) writes a plan instead of building engine terms
by index::

    plan = Plan()
    plan.words("a red circle left of a blue box", ["red", "circle"])   # mi[w] and cmi[w]
    plan.pid("red", "circle", prompt="a red circle left of a blue box", conditional=True)
    result = plan.run(model, x, settings)
    result.cmi["red"].value, result.cpid["red", "circle"].synergy.value

Conditions are deduplicated (each distinct prompt or label assignment is encoded and
evaluated once), so a PID added to a word plan costs only the conditions it does not
share. All terms share the run's ``(a, eps)`` draws (common random numbers). No caller
does index arithmetic: the plan keeps, for each named measurement, which terms are its.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .engine.estimate import Curve, Difference, EngineResult, Job, estimate, estimate_jobs
from .errors import ConditionError, ParameterError
from .settings import Settings


def _key(spec: Any) -> Any:
    """A hashable identity for a condition spec: prompts by text, label assignments by content.

    ``None``, the empty prompt and the empty label assignment are one condition, the
    unconditional (the protocol's :meth:`~diffpid.models.base.Model.unconditional`)."""
    if spec is None or (isinstance(spec, (str, dict)) and not spec):
        return ("unconditional",)
    if isinstance(spec, str):
        return ("prompt", spec)
    if isinstance(spec, dict):
        return ("labels", tuple(sorted((str(k), repr(v)) for k, v in spec.items())))
    return ("object", id(spec))


@dataclass(frozen=True)
class ConditionCurve:
    """The MMSE ``E||eps - e(x_a|C)||^2`` per noise level under one condition, and ``-log p(x|C)``."""

    prompt: Any
    curve: Curve
    nll: float
    nll_stderr: float


@dataclass
class _Block:
    kind: str  # "mi", "cmi", "pid", "cpid"
    name: Any
    start: int
    stop: int
    sources: Any = None
    redundancy: str = "integrated"

    def targets(self) -> range:
        """The terms a precision target applies to: the measurement itself, or a PID's four
        estimates (not the pairwise differences that only give their covariance)."""
        return range(self.start, self.start + (4 if self.kind in ("pid", "cpid") else 1))


class Plan:
    """Named measurements of one image over one engine run (see the module docstring)."""

    def __init__(self) -> None:
        self.conditions: list[Any] = []  # condition specs in engine order
        self._index: dict[Any, int] = {}
        self.terms: list[Any] = []
        self._blocks: dict[tuple[str, Any], _Block] = {}

    # conditions -------------------------------------------------------------------------
    def condition(self, spec: Any) -> int:
        """The engine index of condition ``spec`` (a prompt, a label assignment, ``None`` for
        the unconditional, or a condition the model built), added once."""
        key = _key(spec)
        if key not in self._index:
            self._index[key] = len(self.conditions)
            self.conditions.append(spec)
        return self._index[key]

    def _add(self, kind: str, name: Any, terms: Sequence[Any], **extra: Any) -> None:
        if (kind, name) in self._blocks:
            raise ParameterError(f"the plan already has {kind}[{name!r}]; name each measurement once")
        start = len(self.terms)
        self.terms.extend(terms)
        self._blocks[(kind, name)] = _Block(kind, name, start, len(self.terms), **extra)

    # measurements -----------------------------------------------------------------------
    def mi(self, name: Any, condition: Any, reference: Any = None) -> "Plan":
        """``mi[name]``: ``i_o(x; condition)`` against ``reference`` (default: unconditional)."""
        ref = self.condition(reference)
        self._add("mi", name, [Difference(self.condition(condition), ref)])
        return self

    def cmi(self, name: Any, condition: Any, context: Any) -> "Plan":
        """``cmi[name]``: ``i_o(x; y | c)``, the full ``condition`` (y and c) against ``context`` c."""
        self._add("cmi", name, [Difference(self.condition(condition), self.condition(context))])
        return self

    def words(self, prompt: str, words: Sequence[str], kinds: Sequence[str] = ("mi", "cmi")) -> "Plan":
        """For every word: ``mi[word]`` (the word alone against ``""``) and ``cmi[word]`` (the
        prompt against the prompt without the word). ``kinds`` picks a subset."""
        from .prompts import find_word, remove_words

        for kind in kinds:
            if kind not in ("mi", "cmi"):
                raise ParameterError(f"unknown word measurement {kind!r}; choose mi and/or cmi")
        for w in words:
            find_word(prompt, w)
            if "mi" in kinds:
                self.mi(w, w, "")
            if "cmi" in kinds:
                self.cmi(w, prompt, remove_words(prompt, [w]))
        return self

    def pid(self, y1: Any, y2: Any, context: Any = None, *, prompt: str | None = None, conditional: bool = False,
            full_prompt: bool = False, redundancy: str = "integrated", name: Any = None) -> "Plan":
        """``pid[y1, y2]`` (or ``cpid[y1, y2]`` with ``conditional``): the decomposition of two
        sources, over the four conditions of :func:`diffpid.decomposition.sources.pid_sources`."""
        from .decomposition.pid import check_mode, pid_terms
        from .decomposition.sources import pid_sources

        check_mode(redundancy)
        src = pid_sources(y1, y2, context, prompt=prompt, conditional=conditional, full_prompt=full_prompt)
        idx = [self.condition(c) for c in src.conditions]
        kind = "cpid" if (conditional or src.context is not None) else "pid"
        self._add(kind, _pair_name(y1, y2) if name is None else name, pid_terms(*idx), sources=src,
                  redundancy=redundancy)
        return self

    def has(self, kind: str, name: Any) -> bool:
        return (kind, name) in self._blocks

    # running ----------------------------------------------------------------------------
    def targets(self) -> list[int]:
        """The terms a precision target applies to (the measurements, not their helper terms)."""
        return [i for block in self._blocks.values() for i in block.targets()]

    def run(self, model: Any, x: Any, settings: Settings | None = None, *, on_batch: Any = None,
            conditions: Sequence[Any] | None = None, model_for_engine: Any = None) -> "PlanResult":
        """Encode every condition once and run the engine once over all terms.

        Args:
            model: the :class:`~diffpid.models.base.Model`.
            x: ``(*data_shape)`` or ``(b, *data_shape)`` data.
            settings: the estimator :class:`~diffpid.settings.Settings` (defaults if ``None``).
            on_batch: per-chunk engine callback (attention capture at the same noise levels).
            conditions: the encoded conditions, when the caller built them (same order as
                :attr:`conditions`).
            model_for_engine: a wrapper of ``model`` the engine should call instead (e.g. the
                attention labeller); ``model`` still encodes.
        """
        if not self.terms:
            raise ParameterError("the plan has no measurements; add mi, cmi, words or pid")
        settings = Settings.of(settings)
        from .models.base import is_single

        encoded = list(conditions) if conditions is not None else [encode(model, c) for c in self.conditions]
        engine_model = model if model_for_engine is None else model_for_engine
        run = run_engine(engine_model, x, encoded, self.terms, settings, on_batch=on_batch, targets=self.targets())
        return PlanResult(self, run, is_single(model, x))

    def job(self, model: Any, x: Any, seed: int) -> Job:
        """This plan as one :class:`~diffpid.engine.estimate.Job` of an engine pass shared with other plans
        (its conditions encoded by ``model``); :meth:`result` reads the job's result by name."""
        if not self.terms:
            raise ParameterError("the plan has no measurements; add mi, cmi, words or pid")
        return Job(x, [encode(model, c) for c in self.conditions], self.terms, int(seed), self.targets())

    def result(self, model: Any, x: Any, run: EngineResult) -> "PlanResult":
        """The :class:`PlanResult` of the engine result of :meth:`job` (``model`` and ``x`` as given to it)."""
        from .models.base import is_single

        return PlanResult(self, run, is_single(model, x))


def _pair_name(y1: Any, y2: Any) -> Any:
    if isinstance(y1, str) and isinstance(y2, str):
        return (y1, y2)
    return (_key(y1), _key(y2))


def encode(model: Any, spec: Any) -> Any:
    """A prompt (string) or label mapping is encoded by the model; ``None`` is the unconditional;
    anything else is a condition the model built already."""
    if spec is None:
        return model.unconditional()
    if isinstance(spec, (str, dict)):
        return model.encode_prompt(spec)
    return spec


def run_engine(model: Any, x: Any, conditions: Sequence[Any], terms: Sequence[Any], settings: Settings,
               on_batch: Any = None, targets: Sequence[int] | None = None) -> EngineResult:
    """One engine run with the arguments of :class:`~diffpid.settings.Settings` (:func:`engine_arguments`)."""
    settings.apply_threads()
    return estimate(model, x, conditions, terms, seed=settings.seed, on_batch=on_batch, targets=targets,
                    **engine_arguments(settings))


def engine_arguments(settings: Settings) -> dict[str, Any]:
    """The one place where :class:`~diffpid.settings.Settings` become engine arguments (all but the seed)."""
    return dict(samples=settings.samples, sampler=settings.sampler, batch_size=settings.batch_size,
                progress=settings.progress, precision=settings.precision,
                precision_floor=settings.precision_floor, max_samples=settings.max_samples)


def run_jobs(model: Any, jobs: Sequence[Job], settings: Settings | None = None) -> list[EngineResult]:
    """Several :class:`~diffpid.engine.estimate.Job` (each its own data, conditions, terms and seed) over one
    engine pass whose denoiser calls they share (:func:`~diffpid.engine.estimate.estimate_jobs`).

    A model that cannot take a condition per row (:func:`~diffpid.models.base.batches_rows`: a subclass or
    wrapper that overrides only ``eps``) runs the jobs one after another instead, each in its own calls.
    Either way each result equals the job's solo run up to the float rounding of differently shaped model
    calls; ``settings.seed`` is ignored (each job has its seed).
    """
    from .models.base import batches_rows

    settings = Settings.of(settings)
    settings.apply_threads()
    if len(jobs) > 1 and not batches_rows(model):
        return [estimate_jobs(model, [job], **engine_arguments(settings))[0] for job in jobs]
    return estimate_jobs(model, jobs, **engine_arguments(settings))


def run_plans(model: Any, plans: Sequence[tuple["Plan", Any, int]], settings: Settings | None = None
              ) -> list["PlanResult"]:
    """Several plans, each with its own data and seed, over one engine pass whose denoiser calls they share.

    Args:
        model: the :class:`~diffpid.models.base.Model` (encodes every plan's conditions).
        plans: ``(plan, x, seed)`` triples; ``x`` as for :meth:`Plan.run`.
        settings: the estimator settings; ``settings.seed`` is ignored (each plan has its seed).

    Returns:
        One :class:`PlanResult` per plan, equal to ``plan.run(model, x, settings.replace(seed=seed))``
        up to the float rounding of differently shaped model calls (:func:`run_jobs`; to the bit for
        a lone plan).
    """
    runs = run_jobs(model, [plan.job(model, x, seed) for plan, x, seed in plans], settings)
    return [plan.result(model, x, run) for (plan, x, _), run in zip(plans, runs)]


class _Lookup:
    """``result.mi["red"]``: the measurements of one kind, by name."""

    def __init__(self, result: "PlanResult", kind: str) -> None:
        self._result, self._kind = result, kind

    def names(self) -> list[Any]:
        return [n for (k, n) in self._result.plan._blocks if k == self._kind]

    def __contains__(self, name: Any) -> bool:
        return self._result.plan.has(self._kind, name)

    def __getitem__(self, name: Any) -> Any:
        return self._result.get(self._kind, name)

    def __iter__(self):
        return iter(self.names())

    def __len__(self) -> int:
        return len(self.names())

    def items(self):
        return [(n, self[n]) for n in self.names()]


@dataclass
class PlanResult:
    """The engine run of a :class:`Plan`, looked up by name: ``mi[...]``, ``cmi[...]``,
    ``pid[y1, y2]``, ``cpid[y1, y2]`` (each built once and cached)."""

    plan: Plan
    engine: EngineResult
    single: bool
    _cache: dict = field(default_factory=dict)

    mi = property(lambda self: _Lookup(self, "mi"), doc="``mi[name]``: MI measurements by name")
    cmi = property(lambda self: _Lookup(self, "cmi"), doc="``cmi[name]``: CMI measurements by name")
    pid = property(lambda self: _Lookup(self, "pid"), doc="``pid[y1, y2]``: PID by pair (or name)")
    cpid = property(lambda self: _Lookup(self, "cpid"), doc="``cpid[y1, y2]``: CPID by pair (or name)")

    @property
    def samples(self) -> Any:
        """Draws used: an int for one image (or when every image used as many), else ``(b,)`` per image.

        With a precision target images stop at different counts."""
        n = self.engine.image_samples
        if n is None:
            return self.engine.samples
        n = np.asarray(n)
        return int(n[0]) if self.single or (n == n[0]).all() else n

    @property
    def precision(self) -> float | None:
        """The relative standard error targeted (``None``: a fixed number of draws)."""
        return self.engine.precision

    def get(self, kind: str, name: Any) -> Any:
        if (kind, name) not in self.plan._blocks:
            known = ", ".join(repr(n) for (k, n) in self.plan._blocks if k == kind) or "none"
            raise ConditionError(f"the plan has no {kind}[{name!r}]; it has {known}")
        if (kind, name) not in self._cache:
            self._cache[(kind, name)] = self._build(self.plan._blocks[(kind, name)])
        return self._cache[(kind, name)]

    def _build(self, block: _Block) -> Any:
        from .decomposition.pid import pid_from_run
        from .information import information_from

        terms = self.engine.terms[block.start:block.stop]
        if block.kind in ("mi", "cmi"):
            return information_from(terms[0], self.samples, self.single)
        return pid_from_run(terms, self.samples, block.sources, block.redundancy, self.single)

    def curves(self, image: int = 0) -> tuple[ConditionCurve, ...]:
        """The MMSE curve and ``-log p(x|C)`` of every condition of the run, for image ``image``."""
        r = self.engine
        return tuple(
            ConditionCurve(p, Curve(r.mmse[i].logsnr, r.mmse[i].mean[image], r.mmse[i].count[image]),
                           float(np.asarray(r.nll)[i, image]), float(np.asarray(r.nll_stderr)[i, image]))
            for i, p in enumerate(self.plan.conditions)
        )
