"""Per-word attention maps: the result type and how token maps become word maps.

A word's map is the mean of its tokens' maps (DAAM), resized to the output size with
bicubic interpolation and clamped at 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import ConditionError, ParameterError

__all__ = ["AttentionMaps", "build_maps", "word_tokens"]


@dataclass(frozen=True)
class AttentionMaps:
    """Cross-attention maps of words of one prompt (DAAM), averaged over layers, heads and steps.

    Args:
        prompt: the prompt the maps belong to.
        words: the words (or token-span labels) in the order of ``maps``.
        tokens: each word's token indices (BOS included in the numbering).
        maps: ``(n_words, h, w)`` float32 maps, >= 0.
        steps: number of steps (UNet calls, or engine draws) averaged.
        levels: ``(steps,)`` each step's noise level: the UNet timestep along a trajectory,
            the log-SNR at the engine's noise levels (NaN where unknown).
        step_maps: ``(steps, n_words, h, w)`` each step's map (``per_step`` captures only).
        layers: names of the cross-attention layers used.
        layer_maps: ``(n_layers, n_words, h, w)`` per layer, mean over heads and steps (``per_layer``).
        head_maps: per layer a ``(heads, n_words, h, w)`` array, mean over steps (``per_head``).
        generated: the :class:`~diffpid.models.base.Generated` sample, for maps collected
            while generating.
    """

    prompt: str
    words: tuple[str, ...]
    tokens: tuple[tuple[int, ...], ...]
    maps: np.ndarray
    steps: int
    levels: np.ndarray
    step_maps: np.ndarray | None = None
    layers: tuple[str, ...] = ()
    layer_maps: np.ndarray | None = None
    head_maps: tuple[np.ndarray, ...] | None = None
    generated: Any = None

    def __getitem__(self, word: str) -> np.ndarray:
        """The ``(h, w)`` map of ``word``."""
        if word not in self.words:
            raise ParameterError(f"{word!r} has no map; words: {list(self.words)}")
        return self.maps[self.words.index(word)]


def _is_hf_tokenizer(tokenizer: Any) -> bool:
    try:
        from transformers import PreTrainedTokenizerBase
    except ImportError:  # pragma: no cover - transformers is a dependency
        return False
    return isinstance(tokenizer, PreTrainedTokenizerBase)


def _hf_span(tokenizer: Any, prompt: str, word: Any) -> tuple[int, ...]:
    """Token indices of ``word`` with a Hugging Face tokenizer, from token counts of prompt prefixes."""
    from ..prompts import find_word

    span = find_word(prompt, word)
    ids = tokenizer(prompt, truncation=False).input_ids
    bos = 1 if tokenizer.bos_token_id is not None and ids and ids[0] == tokenizer.bos_token_id else 0
    n0 = len(tokenizer.tokenize(prompt[: span.start]))
    n1 = len(tokenizer.tokenize(prompt[: span.end]))
    limit = int(getattr(tokenizer, "model_max_length", 10**9)) - 1  # the last slot holds EOS
    idx = tuple(i for i in range(bos + n0, bos + n1) if i < limit)
    if not idx:
        raise ConditionError(f"{span.text!r} has no tokens in the encoded prompt (cut off at the length limit?)")
    return idx


def word_tokens(prompt: str, word: Any, tokenizer: Any) -> tuple[int, ...]:
    """Token indices of ``word`` in ``prompt``.

    Args:
        prompt: the prompt.
        word: a word or phrase (string or :class:`~diffpid.prompts.WordSpan`), or a sequence
            of token indices, returned as given.
        tokenizer: a model with ``tokenize(prompt)`` returning :class:`~diffpid.prompts.Token`
            rows, or a Hugging Face tokenizer.
    """
    if isinstance(word, (tuple, list, range)) and all(isinstance(i, int) for i in word):
        if not word:
            raise ParameterError("an empty token span was given; pass at least one token index")
        return tuple(int(i) for i in word)
    if tokenizer is None:
        raise ParameterError("locating words needs a tokenizer; pass tokenizer= (or token indices instead of words)")
    if _is_hf_tokenizer(tokenizer):
        return _hf_span(tokenizer, prompt, word)
    from ..prompts import token_span

    return token_span(prompt, word, tokenizer)


def _label(word: Any) -> str:
    if isinstance(word, str):
        return word
    if hasattr(word, "text"):
        return word.text
    return "tokens " + ",".join(str(i) for i in word)


def _resize(m: torch.Tensor, size: tuple[int, int] | None) -> np.ndarray:
    """``(..., H, W)`` maps to ``(..., h, w)`` float32 numpy (bicubic, clamped at 0)."""
    if size is not None and tuple(size) != tuple(m.shape[-2:]):
        lead = m.shape[:-2]
        m = F.interpolate(m.reshape(-1, 1, *m.shape[-2:]).float(), size=tuple(size), mode="bicubic",
                          align_corners=False).clamp_min_(0)
        m = m.reshape(*lead, *size)
    return m.float().cpu().numpy()


def build_maps(
    prompt: str,
    words: Sequence[Any],
    tokenizer: Any,
    token_maps: torch.Tensor,
    steps: int,
    levels: Sequence[float],
    *,
    step_maps: Sequence[torch.Tensor] | None = None,
    token_ids: Sequence[int] | None = None,
    layers: Sequence[str] = (),
    layer_maps: Sequence[torch.Tensor] | None = None,
    head_maps: Sequence[torch.Tensor] | None = None,
    size: tuple[int, int] | None = None,
) -> AttentionMaps:
    """Assemble :class:`AttentionMaps` from token maps.

    Args:
        prompt, words, tokenizer: as :func:`word_tokens`; ``words`` may also be one string.
        token_maps: ``(T, H, W)`` mean map per token.
        steps, levels: steps averaged and their noise levels.
        step_maps: optional per-step ``(T, H, W)`` maps.
        token_ids: the token index of each of the ``T`` maps; default ``0 .. T-1``.
        layers, layer_maps: layer names and optional per-layer ``(T, H, W)`` maps.
        head_maps: optional per-layer ``(heads, T, H, W)`` maps.
        size: output ``(h, w)``; default ``(H, W)``.
    """
    if isinstance(words, str) or (isinstance(words, tuple) and words and isinstance(words[0], int)):
        words = [words]
    if not words:
        raise ParameterError("no words given; pass at least one word of the prompt")
    spans = [word_tokens(prompt, w, tokenizer) for w in words]
    ids = list(range(token_maps.shape[-3])) if token_ids is None else list(token_ids)
    for w, s in zip(words, spans):
        if not set(s) <= set(ids):
            raise ConditionError(f"{_label(w)!r} maps to tokens {s}, but only tokens {ids[0]}..{ids[-1]} "
                                 "were captured" if token_ids is None else
                                 f"{_label(w)!r} maps to tokens {s}, not all among the captured tokens {ids}")
    pos = [[ids.index(i) for i in s] for s in spans]

    def pick(m: torch.Tensor) -> torch.Tensor:  # (..., T, H, W) -> (..., n_words, H, W)
        return torch.stack([m[..., q, :, :].mean(-3) for q in pos], -3)

    return AttentionMaps(
        prompt=prompt,
        words=tuple(_label(w) for w in words),
        tokens=tuple(spans),
        maps=_resize(pick(token_maps), size),
        steps=int(steps),
        levels=np.asarray(list(levels), dtype=np.float64),
        step_maps=None if step_maps is None else _resize(pick(torch.stack(list(step_maps))), size),
        layers=tuple(layers),
        layer_maps=None if layer_maps is None else _resize(pick(torch.stack(list(layer_maps))), size),
        head_maps=None if head_maps is None else tuple(_resize(pick(h), size) for h in head_maps),
    )
