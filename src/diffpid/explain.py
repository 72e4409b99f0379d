"""``diffpid.explain``: everything the papers measure for one prompt and image, in one call.

Generates the image (or encodes a given one), then in one engine run over every needed
condition (common random numbers throughout): MI and CMI of every content word (image
values with standard errors, pixel maps), PID and CPID of a word pair, and attention at
the same noise levels. Without an explicit pair, the two words of highest CMI are
decomposed in a second run that shares its draws across its eight conditions.
"""

from __future__ import annotations

import dataclasses
import platform
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

from .channel import Sampler, make_sampler
from .errors import ConditionError, ParameterError
from .estimate import Curve, Difference, EngineResult, estimate
from .information import Information, information_from
from .models.base import Model
from .pid import PID, check_mode, pid_from_run, pid_terms
from .pid_sources import pid_sources
from .prompts import find_word, prompt_words, remove_words

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
class ConditionCurve:
    """The MMSE ``E||eps - e(x_a|prompt)||^2`` per noise level under one prompt."""

    prompt: str
    curve: Curve
    nll: float
    nll_stderr: float


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


class _Conditions:
    """Deduplicated prompts of one engine run; ``index(prompt)`` adds a prompt once."""

    def __init__(self) -> None:
        self.prompts: list[str] = []

    def index(self, prompt: str) -> int:
        if prompt not in self.prompts:
            self.prompts.append(prompt)
        return self.prompts.index(prompt)


def _remap(term: Any, mapping: Sequence[int]) -> Any:
    """A term over local condition indices, rewritten over the run's condition indices."""
    if isinstance(term, Difference):
        return Difference(mapping[term.condition], mapping[term.reference])
    fields = {f.name: getattr(term, f.name) for f in dataclasses.fields(term)}
    for name, value in fields.items():
        if isinstance(value, tuple) and value and not isinstance(value[0], (int, float)):
            fields[name] = tuple(_remap(v, mapping) for v in value)
        elif dataclasses.is_dataclass(value):
            fields[name] = _remap(value, mapping)
    return type(term)(**fields)


def _pid_block(conds: _Conditions, sources) -> tuple[list[Any], Any]:
    mapping = [conds.index(p) for p in sources.conditions]
    return [_remap(t, mapping) for t in pid_terms()], sources


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


def check_request(prompt: Any, words: Any = None, pair: Any = None, *, samples: Any = 64, batch_size: Any = 64,
                  seed: Any = 0, redundancy: str = "integrated", device: Any = None,
                  dtype: Any = None) -> tuple[tuple[str, ...], tuple[str, str] | None]:
    """Every check of an :func:`explain` request that needs no model, so bad input fails before loading one.

    Returns:
        the words to explain (repeats dropped, prompt order kept) and the pair (or ``None``).

    Raises:
        ParameterError, ConditionError: a message naming the problem.
    """
    from .settings import Settings, check_device_available

    if not isinstance(prompt, str):
        raise ParameterError(f"prompt must be a string, got {type(prompt).__name__}; pass the text to explain")
    if not prompt.strip():
        raise ParameterError("the prompt is empty; pass the text whose words you want explained")
    check_mode(redundancy)
    settings = Settings(samples=samples, batch_size=batch_size, seed=seed, device=device,
                        dtype=None if dtype is None else dtype)
    if settings.device is not None:
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
        from .models.shapes import load_shapes_model

        return load_shapes_model(device=device, torch_dtype=dtype)
    from .models.loading import load_model

    return load_model(str(model), torch_dtype=dtype, device=device)


def explain(
    prompt: str,
    *,
    model: Any = None,
    image: Any = None,
    seed: int = 0,
    words: Sequence[str] | None = None,
    pair: Sequence[str] | None = None,
    samples: int = 64,
    sampler: Sampler | str | None = None,
    batch_size: int = 64,
    redundancy: str = "integrated",
    attention: bool = True,
    device: Any = None,
    dtype: Any = None,
    progress: bool = False,
) -> Explanation:
    """Explain which words of ``prompt`` shaped which pixels of its image.

    Args:
        prompt: the prompt.
        model: a :class:`Model`, a diffusers folder or hub id; ``None`` for the embedded model.
        image: an image to analyse (path, PIL, array); ``None`` generates one from ``prompt``.
        seed: seed of the generation and of the estimator's draws.
        words: the words to explain; by default every content word of the prompt.
        pair: the two words to decompose; by default the two words of highest CMI.
        samples: ``(a, eps)`` draws per condition.
        sampler: log-SNR sampler or its name (``adaptive`` default).
        batch_size: most rows per denoiser call.
        redundancy: PID redundancy mode, ``"integrated"`` or ``"per_snr"``.
        attention: also collect cross-attention maps at the same noise levels.
        device, dtype: where and in what precision the model runs (when it is loaded here).
        progress: show progress bars.
    """
    words, pair = check_request(prompt, words, pair, samples=samples, batch_size=batch_size, seed=seed,
                                redundancy=redundancy, device=device if not isinstance(model, Model) else None,
                                dtype=dtype)
    sampler = make_sampler() if sampler is None else make_sampler(sampler)
    m = resolve_model(model, device=device, dtype=dtype)

    if image is None:
        gen = m.generate(prompt, seed=seed)
        x, img, gen_seed = gen.x, gen.image, seed
    else:
        x = m.encode_image(image)
        img, gen_seed = m.decode(x)[0], None

    conds = _Conditions()
    terms: list[Any] = []
    empty, full = conds.index(""), conds.index(prompt)
    for w in words:
        terms.append(Difference(conds.index(w), empty))
        terms.append(Difference(full, conds.index(remove_words(prompt, [w]))))
    n_word_terms = len(terms)
    blocks = []
    if pair is not None:
        for conditional in (False, True):
            t, src = _pid_block(conds, pid_sources(pair[0], pair[1], prompt=prompt, conditional=conditional))
            blocks.append((len(terms), src))
            terms += t

    attend = prompt if attention and getattr(m, "unet", None) is not None else None
    common = dict(samples=samples, sampler=sampler, batch_size=batch_size, seed=seed, progress=progress)
    run, capture = _run(m, x, conds.prompts, terms, attend, words, **common)
    mi = {w: information_from(_sub(run, 2 * i, 2 * i + 1), 0, True) for i, w in enumerate(words)}
    cmi = {w: information_from(_sub(run, 2 * i + 1, 2 * i + 2), 0, True) for i, w in enumerate(words)}
    runs = [(run, conds)]

    if pair is None and len(words) >= 2:
        ranked = sorted(words, key=lambda w: -cmi[w].value)
        pair = tuple(sorted(ranked[:2], key=lambda w: find_word(prompt, w).start))
        conds2 = _Conditions()
        terms2: list[Any] = []
        blocks = []
        for conditional in (False, True):
            t, src = _pid_block(conds2, pid_sources(pair[0], pair[1], prompt=prompt, conditional=conditional))
            blocks.append((len(terms2), src))
            terms2 += t
        run2, _ = _run(m, x, conds2.prompts, terms2, None, **common)
        runs.append((run2, conds2))
        pid_run = run2
    else:
        pid_run = run
    pids = [pid_from_run(_sub(pid_run, s, s + len(pid_terms())), src, redundancy, True) for s, src in blocks]

    curves = tuple(
        ConditionCurve(p, Curve(r.mmse[i].logsnr, r.mmse[i].mean[0], r.mmse[i].count[0]),
                       float(r.nll[i, 0]), float(r.nll_stderr[i, 0]))
        for r, c in runs for i, p in enumerate(c.prompts)
    )
    att = None
    if capture is not None:
        maps = capture.maps(list(words), prompt, image=0)
        att = {w: np.asarray(maps[w]) for w in words}
    params = Parameters(samples, batch_size, type(sampler).__name__, redundancy, seed, str(m.device),
                        str(getattr(m, "dtype", torch.float32)).replace("torch.", ""), capture is not None)
    return Explanation(prompt, m.name, gen_seed, np.asarray(img), words, mi, cmi, pair,
                       pids[0] if pids else None, pids[1] if pids else None, att, curves, params, versions())


def _sub(run: EngineResult, start: int, stop: int) -> EngineResult:
    return dataclasses.replace(run, terms=run.terms[start:stop])


def _run(model: Model, x: torch.Tensor, prompts: list[str], terms: list[Any], attend: str | None,
         words: Sequence[str] = (), **common: Any) -> tuple[EngineResult, Any]:
    """One engine run over ``prompts``; with ``attend``, attention of that prompt's ``words`` from the same calls."""
    conditions = [model.encode_prompt(p) for p in prompts]
    if attend is None:
        return estimate(model, x, conditions, terms, **common), None
    from .attention import AttentionCapture, LabelledModel

    with AttentionCapture.for_model(model, attend, list(words)) as cap:
        labelled = LabelledModel(model, cap, [(conditions[prompts.index(attend)], attend)])
        run = estimate(labelled, model.check_x(x), conditions, terms, on_batch=cap.engine_callback(1), **common)
    return run, cap
