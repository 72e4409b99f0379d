"""The sources, context and four conditions of a (conditional) PID, with input checks.

Sources are words of a prompt for text models and label assignments (mappings) for the
Gaussian-mixture oracle. The four conditions, in engine order, are the context alone, the
context with ``y1``, with ``y2``, and with both (SCIENCE.md section 4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ..errors import ConditionError, ParameterError


@dataclass(frozen=True)
class PIDSources:
    """What a decomposition compares.

    Args:
        source_1, source_2: the sources as given (words as written in the prompt).
        context: the context (``None`` for plain PID).
        target: a description of the target, e.g. ``"image"`` or ``"image given 'a photo'"``.
        conditions: ``(c, c+y1, c+y2, c+y1+y2)`` as prompts or label assignments.
    """

    source_1: Any
    source_2: Any
    context: Any
    target: str
    conditions: tuple[Any, Any, Any, Any]


def _target(context: Any) -> str:
    return "image" if context is None else f"image given {context!r}"


def _label_sources(y1: Mapping, y2: Mapping, context: Any) -> PIDSources:
    for name, y in (("y1", y1), ("y2", y2)):
        if not y:
            raise ParameterError(f"source {name} is empty; pass a label assignment such as {{'shape': 1}}")
    if context is not None and not isinstance(context, Mapping):
        raise ParameterError("with label sources the context must be a label assignment (a dict) or None")
    y1, y2, c = dict(y1), dict(y2), dict(context or {})
    if y1 == y2:
        raise ConditionError(f"the two sources are the same ({y1}); choose two different sources")
    shared = sorted(set(y1) & set(y2))
    if shared:
        raise ConditionError(f"both sources assign label {shared[0]!r}; give each source its own labels")
    inside = sorted((set(y1) | set(y2)) & set(c))
    if inside:
        raise ConditionError(f"the context already contains source label {inside[0]!r}; remove it from the context")
    conds = (dict(c), {**c, **y1}, {**c, **y2}, {**c, **y1, **y2})
    ctx = c or None
    return PIDSources(y1, y2, ctx, _target(ctx), conds)


def _norm(word: str) -> str:
    return " ".join(word.lower().split())


def _word_sources(y1: str, y2: str, context: Any, prompt: str | None, conditional: bool, full_prompt: bool) -> PIDSources:
    for name, y in (("y1", y1), ("y2", y2)):
        if not y.strip():
            raise ParameterError(f"source {name} is empty; pass a word of the prompt")
    if _norm(y1) == _norm(y2):
        raise ConditionError(f"the two sources are the same word {y1!r}; choose two different words")
    if context is not None:
        raise ParameterError(
            "for words the context is the rest of the prompt: pass prompt='...' and conditional=True instead of context"
        )
    if prompt is None:
        if conditional or full_prompt:
            raise ParameterError("conditional PID and full_prompt need the prompt: pass prompt='...'")
        return PIDSources(y1, y2, None, "image", ("", y1, y2, f"{y1} {y2}"))
    if not isinstance(prompt, str):
        raise ParameterError(f"prompt must be a string, got {type(prompt).__name__}")
    from ..prompts import cpid_prompts, pid_prompts

    if conditional:
        if full_prompt:
            raise ParameterError("full_prompt applies to plain PID; CPID always uses the full prompt")
        p = cpid_prompts(prompt, y1, y2)
        return PIDSources(p.source_1, p.source_2, p.neither, _target(p.neither), p.prompts)
    p = pid_prompts(prompt, y1, y2, full_prompt=full_prompt)
    return PIDSources(p.source_1, p.source_2, None, "image", p.prompts)


def pid_sources(
    y1: Any, y2: Any, context: Any = None, *, prompt: str | None = None, conditional: bool = False,
    full_prompt: bool = False,
) -> PIDSources:
    """Check the sources and build the four conditions of a PID or CPID.

    Args:
        y1, y2: two words (str) or two label assignments (mappings).
        context: for label sources, the context assignment (CPID); must not name a source label.
        prompt: for words, the prompt they come from.
        conditional: for words, CPID given the rest of ``prompt``.
        full_prompt: for words with a prompt, PID whose joint condition is the full prompt.
    """
    if y1 is None or y2 is None:
        raise ParameterError("both sources are needed; pass y1 and y2 (words or label assignments)")
    if isinstance(y1, Mapping) and isinstance(y2, Mapping):
        if prompt is not None or conditional or full_prompt:
            raise ParameterError("prompt, conditional and full_prompt apply to words; for labels pass the context dict")
        return _label_sources(y1, y2, context)
    if isinstance(y1, str) and isinstance(y2, str):
        return _word_sources(y1, y2, context, prompt, conditional, full_prompt)
    raise ParameterError(
        f"sources must both be words (str) or both label assignments (dict), got {type(y1).__name__} "
        f"and {type(y2).__name__}"
    )
