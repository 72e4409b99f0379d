"""``diffpid.explain``: everything the papers measure for one prompt and image, in one call.

Generates the image (or encodes a given one), then in one engine run (one
:class:`~diffpid.plan.Plan`) over every needed condition (common random numbers throughout): MI and CMI of every content word (image
values with standard errors, pixel maps), PID and CPID of a word pair, and attention at
the same noise levels. Without an explicit pair, the two words of highest CMI are
decomposed in a second run that shares its draws across its eight conditions.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from .decomposition.pid import PID, check_mode
from .engine.channel import Sampler, make_sampler
from .errors import ConditionError, ParameterError
from .information import Information
from .models.base import Model
from .plan import ConditionCurve, Plan, PlanResult, encode
from .prompts import find_word, prompt_words
from .report.identity import model_identity
from .settings import Settings

STOPWORDS = frozenset(
    "a an the of and or with in on at to is are be by for from as its it this that these those into onto".split()
)


@dataclass(frozen=True)
class Parameters:
    """How an explanation was computed (enough to reproduce it)."""

    samples: int
    batch_size: int
    sampler: str
    redundancy: str
    seed: int
    device: str
    dtype: str
    attention: bool


@dataclass(frozen=True)
class Explanation:
    """The result of :func:`explain`. Maps are ``(h, w)`` numpy arrays at the model's data resolution.

    Args:
        prompt: the prompt explained.
        model_name: the model's id or folder.
        seed: the generation seed (``None`` for a given image).
        image: ``(H, W, 3)`` uint8 RGB image that was analysed.
        words: the words explained, in prompt order.
        mi: word -> ``i_o(x; word)`` against the empty prompt.
        cmi: word -> ``i_o(x; word | rest of the prompt)``.
        pair: the two words decomposed (``None`` when the prompt has fewer than two words).
        pid, cpid: their PID and CPID.
        attention: word -> cross-attention map (``None`` when not collected).
        curves: the MMSE curve of every condition the analysis used.
        parameters: how it was computed; versions: package versions.
        model_identity: name, revision or training step, dtype and generation defaults of the model
            (:func:`diffpid.report.identity.model_identity`).
    """

    prompt: str
    model_name: str
    seed: int | None
    image: np.ndarray
    words: tuple[str, ...]
    mi: dict[str, Information]
    cmi: dict[str, Information]
    pair: tuple[str, str] | None
    pid: PID | None
    cpid: PID | None
    attention: dict[str, np.ndarray] | None
    curves: tuple[ConditionCurve, ...]
    parameters: Parameters
    versions: dict[str, str] = field(default_factory=dict)
    model_identity: dict = field(default_factory=dict)

    def _repr_html_(self) -> str:
        from .report.notebook import explanation_html

        return explanation_html(self)

    def to_html(self) -> str:
        """The self-contained HTML report."""
        from .report.html import render_html

        return render_html(self)

    def save(self, directory: Any, overwrite: bool = False) -> Any:
        """Write ``report.html``, PNGs, ``results.json`` and ``maps.npz`` atomically into ``directory``."""
        from .report.save import save_explanation

        return save_explanation(self, directory, overwrite=overwrite)

    def to_dict(self) -> dict:
        """All values, parameters and versions as JSON-ready data (the ``results.json`` schema)."""
        from .report.results import explanation_to_dict

        return explanation_to_dict(self)


def content_words(prompt: str) -> tuple[str, ...]:
    """The words of ``prompt`` worth explaining: every distinct word but articles and particles."""
    out: list[str] = []
    for w in prompt_words(prompt):
        lw = w.lower()
        if lw not in STOPWORDS and lw not in out and any(ch.isalnum() for ch in lw):
            out.append(lw)
    return tuple(out)


def versions() -> dict[str, str]:
    """Versions of the packages that shape the numbers."""
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("diffpid", "torch", "diffusers", "transformers", "numpy"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def _word_list(value: Any, name: str) -> tuple[str, ...]:
    """``words`` / ``pair`` as a tuple of lower-cased words; a bare string is one word."""
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, (list, tuple)):
        raise ParameterError(f"{name} must be a list of words such as ['red', 'circle'], got {type(value).__name__}")
    bad = [w for w in value if not isinstance(w, str)]
    if bad:
        raise ParameterError(f"{name} must hold words (strings), got {type(bad[0]).__name__} {bad[0]!r}")
    out = tuple(w.strip().lower() for w in value)
    if any(not w for w in out):
        raise ParameterError(f"{name} holds an empty word; pass words of the prompt")
    return out


def check_request(prompt: Any, words: Any = None, pair: Any = None, *, redundancy: str = "integrated",
                  settings: Settings | None = None,
                  check_device: bool = True) -> tuple[tuple[str, ...], tuple[str, str] | None]:
    """Every check of an :func:`explain` request that needs no model, so bad input fails before loading one.

    Args:
        check_device: also check that ``settings.device`` exists on this machine (a model passed
            in keeps its own device, so explain skips this for it).

    Returns:
        the words to explain (repeats dropped, prompt order kept) and the pair (or ``None``).

    Raises:
        ParameterError, ConditionError: a message naming the problem.
    """
    from .settings import check_device_available

    if not isinstance(prompt, str):
        raise ParameterError(f"prompt must be a string, got {type(prompt).__name__}; pass the text to explain")
    if not prompt.strip():
        raise ParameterError("the prompt is empty; pass the text whose words you want explained")
    check_mode(redundancy)
    settings = Settings.of(settings)  # validated: samples, batch size, seed, device spelling, dtype
    if check_device and settings.device is not None:
        check_device_available(settings.device)
    if words is None:
        words = content_words(prompt)
        if not words:
            raise ConditionError(f"no content words in {prompt!r}; name the words to explain with words=[...]")
    else:
        words = tuple(dict.fromkeys(_word_list(words, "words")))
        if not words:
            raise ParameterError("words is empty; name at least one word of the prompt")
    for w in words:
        find_word(prompt, w)
    if pair is not None:
        if isinstance(pair, str):
            raise ParameterError(f"pair must be two words such as ('red', 'circle'), got the string {pair!r}")
        pair = _word_list(pair, "pair")
        if len(pair) != 2:
            raise ParameterError(f"a pair is two words, got {len(pair)}: {list(pair)}")
        if pair[0] == pair[1]:
            raise ConditionError(f"the pair names {pair[0]!r} twice; pass two different words of the prompt")
        s1, s2 = find_word(prompt, pair[0]), find_word(prompt, pair[1])
        if s1.start < s2.end and s2.start < s1.end:
            raise ConditionError(f"the pair's words {s1.text!r} and {s2.text!r} overlap in the prompt; "
                                 "choose two separate words")
    return words, pair


def resolve_model(model: Any = None, device: Any = None, dtype: Any = None) -> Model:
    """A :class:`Model` from ``None`` (the embedded shapes model), a folder, a hub id or a model."""
    if isinstance(model, Model):
        return model
    if model is None:
        from .shapes.model import load_shapes_model

        return load_shapes_model(device=device, torch_dtype=dtype)
    from .models.loading import load_model

    return load_model(str(model), torch_dtype=dtype, device=device)


def explain(
    prompt: str,
    *,
    model: Any = None,
    image: Any = None,
    words: Sequence[str] | None = None,
    pair: Sequence[str] | None = None,
    redundancy: str = "integrated",
    attention: bool = True,
    settings: Settings | None = None,
    **overrides: Any,
) -> Explanation:
    """Explain which words of ``prompt`` shaped which pixels of its image.

    Args:
        prompt: the prompt.
        model: a :class:`Model`, a diffusers folder or hub id; ``None`` for the embedded model.
        image: an image to analyse (path, PIL, array); ``None`` generates one from ``prompt``
            with ``settings.seed``.
        words: the words to explain; by default every content word of the prompt.
        pair: the two words to decompose; by default the two words of highest CMI.
        redundancy: PID redundancy mode, ``"integrated"`` or ``"per_snr"``.
        attention: also collect attention maps at the same noise levels (models that can).
        settings: the :class:`~diffpid.settings.Settings` (samples, sampler, batch size, seed,
            device, dtype, threads, progress); its fields can also be given as keywords:
            ``explain("a red circle", samples=8)``. ``device``/``dtype`` apply to a model loaded here.

    Returns:
        An :class:`Explanation`; ``.save(folder)`` writes the report.
    """
    settings = Settings.of(settings, **overrides)
    words, pair = check_request(prompt, words, pair, redundancy=redundancy, settings=settings,
                                check_device=not isinstance(model, Model))
    settings.apply_threads()
    m = resolve_model(model, device=settings.device, dtype=settings.torch_dtype())

    if image is None:
        gen = m.generate(prompt, seed=settings.seed, progress=settings.progress)
        x, img, gen_seed = gen.x, gen.image, settings.seed
    else:
        x = m.encode_image(image)
        img, gen_seed = m.decode(x)[0], None

    x = m.check_x(x)[0]  # one image: results are unbatched
    plan = Plan()
    plan.condition("")
    plan.condition(prompt)
    plan.words(prompt, words)
    if pair is not None:
        _add_pids(plan, pair, prompt, redundancy)
    attend = prompt if attention and m.has("attention") else None
    result, capture = _run(m, x, plan, attend, words, settings)
    mi = {w: result.mi[w] for w in words}
    cmi = {w: result.cmi[w] for w in words}
    results = [result]

    if pair is None and len(words) >= 2:
        ranked = sorted(words, key=lambda w: -cmi[w].value)
        pair = tuple(sorted(ranked[:2], key=lambda w: find_word(prompt, w).start))
        pid_plan = _add_pids(Plan(), pair, prompt, redundancy)
        pid_result, _ = _run(m, x, pid_plan, None, (), settings)
        results.append(pid_result)
    pids = (results[-1].pid[pair], results[-1].cpid[pair]) if pair is not None else (None, None)

    curves = tuple(c for r in results for c in r.curves())
    att = None
    if capture is not None:
        maps = capture.maps(list(words), prompt, image=0)
        att = {w: np.asarray(maps[w]) for w in words}
    sampler = settings.sampler if isinstance(settings.sampler, Sampler) else make_sampler(settings.sampler)
    params = Parameters(settings.samples, settings.batch_size, type(sampler).__name__, redundancy, settings.seed,
                        str(m.device), str(m.dtype).replace("torch.", ""),
                        capture is not None)
    return Explanation(prompt, m.name, gen_seed, np.asarray(img), words, mi, cmi, pair, pids[0], pids[1], att,
                       curves, params, versions(), model_identity(m))


def _add_pids(plan: Plan, pair: Sequence[str], prompt: str, redundancy: str) -> Plan:
    """The PID and the CPID of ``pair`` given the rest of ``prompt``, added to ``plan``."""
    for conditional in (False, True):
        plan.pid(pair[0], pair[1], prompt=prompt, conditional=conditional, redundancy=redundancy)
    return plan


def _run(model: Model, x: torch.Tensor, plan: Plan, attend: str | None, words: Sequence[str],
         settings: Settings) -> tuple[PlanResult, Any]:
    """One engine run of ``plan``; with ``attend``, attention of that prompt's ``words`` from the same calls."""
    if attend is None:
        return plan.run(model, x, settings), None
    from .attention import AttentionCapture, LabelledModel

    conditions = [encode(model, c) for c in plan.conditions]
    with AttentionCapture.for_model(model, attend, list(words)) as cap:
        labelled = LabelledModel(model, cap, [(conditions[plan.condition(attend)], attend)])
        result = plan.run(model, x, settings, conditions=conditions, model_for_engine=labelled,
                          on_batch=cap.engine_callback(1))
    return result, cap
