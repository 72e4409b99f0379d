"""Which batch row of a denoiser call carries which prompt.

Rows are labelled explicitly (see :mod:`diffpid.attention.capture`): by ``layout``
(equal contiguous blocks), by ``embeddings`` (each row matched to a prompt's text
embedding), or, for a single prompt, by checking that every row carries the same one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ..errors import ConditionError, ShapeError

__all__ = ["Row", "label_rows"]


@dataclass(frozen=True)
class Row:
    """The label of one batch row of a denoiser call: its prompt and, when known, its noise level."""

    prompt: str
    level: float | None = None


def label_rows(
    ehs: torch.Tensor,
    timestep: Any,
    prompts: Sequence[str],
    layout: Sequence[str | None] | None = None,
    embeddings: Sequence[torch.Tensor] | None = None,
) -> list[Row | None]:
    """Label each row of a denoiser batch with its prompt (``None``: not captured).

    Args:
        ehs: ``(b, T, d)`` the batch's text embeddings.
        timestep: the network's timestep argument (scalar or ``(b,)``), kept as each row's level.
        prompts: the captured prompts (a single one when neither layout nor embeddings is given).
        layout: the batch as equal contiguous blocks of prompts (``None`` blocks are skipped).
        embeddings: one ``(T, d)`` embedding per prompt; rows match within 1e-3 relative.
    """
    b = ehs.shape[0]
    t = torch.as_tensor(timestep).detach().float().cpu().reshape(-1)
    levels = [float(t[i if len(t) == b else 0]) for i in range(b)]
    if layout is not None:
        if b % len(layout):
            raise ShapeError(f"the batch of {b} rows does not split into the {len(layout)} blocks of layout")
        per = b // len(layout)
        return [None if layout[i // per] is None else Row(layout[i // per], levels[i]) for i in range(b)]
    if embeddings is not None:
        out: list[Row | None] = []
        for i in range(b):
            e = ehs[i].float()
            best = None
            for p, ref in zip(prompts, embeddings):
                ref = ref.to(e.device, torch.float32)
                if ref.shape == e.shape and (e - ref).abs().max() <= 1e-3 * ref.abs().max() + 1e-5:
                    best = p
                    break
            out.append(None if best is None else Row(best, levels[i]))
        return out
    if b > 1 and not all(torch.equal(ehs[0], ehs[i]) for i in range(1, b)):
        raise ConditionError(
            f"the denoiser batch holds rows of different prompts (classifier-free guidance?); pass "
            f"layout=[negative_prompt, prompt] or embeddings= so that {prompts[0]!r} can be found"
        )
    return [Row(prompts[0], levels[i]) for i in range(b)]
