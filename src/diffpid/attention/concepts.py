"""Concept attention (ConceptAttention, Helbling et al. 2025) of one joint-attention layer.

A concept is a token span of the prompt; its attention output is the mean of its tokens'
outputs. An image token's concept map is the softmax over the concepts of the dot products
of its attention output with the concepts' outputs, ``softmax_c <o_image, o_c>``; the outputs
are ``softmax(q k^T / sqrt(d)) v`` before the output projection, the same space for image
and text tokens (see :meth:`diffpid.attention.adapters.LayerCall.outputs`).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ..errors import ConditionError, ShapeError
from .maps import word_tokens

__all__ = ["concept_positions", "concept_scores"]


def concept_scores(image: torch.Tensor, text: torch.Tensor, concepts: Sequence[Sequence[int]],
                   per_head: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Concept maps of one layer from its attention outputs.

    Args:
        image: ``(r, heads, n, d)`` image tokens' attention outputs.
        text: ``(r, heads, T, d)`` text tokens' attention outputs.
        concepts: ``C`` token spans.
        per_head: also give each head's maps (from that head's outputs alone).

    Returns:
        ``(r, 1, n, C)`` from all heads' outputs together, and ``(r, heads, n, C)`` or ``None``;
        both sum to one over the concepts.
    """
    if max(max(c) for c in concepts) >= text.shape[2]:
        raise ShapeError(f"a concept token is beyond the {text.shape[2]} text tokens the layer attends to")
    con = torch.stack([text[:, :, list(c)].float().mean(2) for c in concepts], 2)  # (r, heads, C, d)
    image = image.float()
    full = torch.einsum("rhnd,rhcd->rnc", image, con).softmax(-1)[:, None]  # (r, 1, n, C)
    heads = torch.einsum("rhnd,rhcd->rhnc", image, con).softmax(-1) if per_head else None
    return full, heads


def concept_positions(prompt: str, words: Any, concepts: Sequence[tuple[int, ...]], labels: Sequence[str],
                      tokenizer: Any) -> tuple[list[tuple[int]], list[str]]:
    """Positions ``[(k,), ...]`` among ``concepts`` and labels of ``words`` (concept labels, words or token spans).

    Raises:
        ConditionError: a word that is not one of the captured concepts.
    """
    if isinstance(words, str) or (isinstance(words, tuple) and words and isinstance(words[0], int)):
        words = [words]
    pos, out = [], []
    for w in words:
        if isinstance(w, str) and w in labels:
            k = list(labels).index(w)
        else:
            span = None if isinstance(w, str) and tokenizer is None else word_tokens(prompt, w, tokenizer)
            if span not in concepts:
                raise ConditionError(f"{w!r} is not one of the captured concepts {list(labels)}; "
                                     "pass it as a concept when capturing")
            k = list(concepts).index(span)
        pos.append((k,))
        out.append(labels[k])
    return pos, out
