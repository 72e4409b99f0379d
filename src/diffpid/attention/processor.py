"""A diffusers attention processor that records cross-attention probabilities.

:class:`RecordingProcessor` wraps the processor a cross-attention layer already has. The
output of the layer is the original processor's output, untouched (SDPA, xFormers,
LoRA layers and any processor keyword arguments keep working, and outputs are bitwise
identical); the probabilities are computed on the side with the layer's own
``to_q`` / ``to_k`` projections and :meth:`~diffusers.models.attention_processor.Attention.get_attention_scores`.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

import torch

__all__ = ["RecordingProcessor", "attention_probabilities", "recording_processor"]


@torch.no_grad()
def attention_probabilities(
    attn: Any,
    hidden_states: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    attention_mask: torch.Tensor | None = None,
    temb: torch.Tensor | None = None,
) -> torch.Tensor:
    """Softmax attention of every query over the text tokens, as the layer computes it.

    Follows the steps of diffusers' ``AttnProcessor`` up to the softmax (spatial and group
    norms, ``norm_cross``, per-head ``norm_q`` / ``norm_k``, the mask, ``upcast_attention``).

    Args:
        attn: a diffusers ``Attention`` module used as cross-attention.
        hidden_states: ``(b, n, c)`` or ``(b, c, h, w)`` queries' input.
        encoder_hidden_states: ``(b, T, d)`` text embeddings.
        attention_mask: optional mask as the layer receives it.
        temb: time embedding, for layers with a spatial norm.

    Returns:
        ``(b, heads, n, T)`` probabilities; they sum to 1 over the last dimension.
    """
    hs = hidden_states
    if getattr(attn, "spatial_norm", None) is not None:
        hs = attn.spatial_norm(hs, temb)
    if hs.ndim == 4:
        b, c, h, w = hs.shape
        hs = hs.view(b, c, h * w).transpose(1, 2)
    b, n, _ = hs.shape
    if getattr(attn, "group_norm", None) is not None:
        hs = attn.group_norm(hs.transpose(1, 2)).transpose(1, 2)
    ehs = encoder_hidden_states
    if getattr(attn, "norm_cross", None):
        ehs = attn.norm_encoder_hidden_states(ehs)
    q = attn.to_q(hs)
    k = attn.to_k(ehs)
    heads = attn.heads
    d = k.shape[-1] // heads
    q = q.view(b, -1, heads, d).transpose(1, 2)
    k = k.view(b, -1, heads, d).transpose(1, 2)
    if getattr(attn, "norm_q", None) is not None:
        q = attn.norm_q(q)
    if getattr(attn, "norm_k", None) is not None:
        k = attn.norm_k(k)
    t = k.shape[2]
    mask = None
    if attention_mask is not None:
        mask = attn.prepare_attention_mask(attention_mask, t, b)
    probs = attn.get_attention_scores(q.reshape(b * heads, n, d), k.reshape(b * heads, t, d), mask)
    return probs.view(b, heads, n, t)


class RecordingProcessor(torch.nn.Module):
    """Calls the original processor for the output and hands the probabilities to ``record``.

    An ``nn.Module`` so that an original processor with weights (IP-Adapter, custom
    diffusion) stays registered under the layer while it is wrapped.

    Args:
        original: the layer's processor before wrapping.
        record: ``record(layer_index, attn, hidden_states, encoder_hidden_states, attention_mask, temb)``;
            it decides which batch rows to compute probabilities for.
        index: this layer's position among the recorded layers.
    """

    def __init__(self, original: Any, record: Callable[..., None], index: int) -> None:
        super().__init__()
        self.original = original
        self.record = record
        self.index = index

    def forward(self, attn: Any, hidden_states: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        out = self.original(attn, hidden_states, *args, **kwargs)
        ehs = kwargs.get("encoder_hidden_states", args[0] if args else None)
        if isinstance(ehs, tuple):  # IP-Adapter passes (text, image) embeddings
            ehs = ehs[0]
        if ehs is not None:
            mask = kwargs.get("attention_mask", args[1] if len(args) > 1 else None)
            self.record(self.index, attn, hidden_states, ehs, mask, kwargs.get("temb"))
        return out


def recording_processor(original: Any, record: Callable[..., None], index: int) -> RecordingProcessor:
    """A :class:`RecordingProcessor` whose call signature is the original processor's.

    diffusers' ``Attention.forward`` keeps only the ``cross_attention_kwargs`` that the
    processor's signature names; giving the wrapper the original's signature passes the
    same keyword arguments through as without the wrapper.
    """
    sig = inspect.signature(original.__call__ if not isinstance(original, torch.nn.Module) else original.forward)
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY), *sig.parameters.values()]

    def __call__(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return torch.nn.Module.__call__(self, *args, **kwargs)

    __call__.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    cls = type(f"Recording{type(original).__name__}", (RecordingProcessor,), {"__call__": __call__})
    return cls(original, record, index)
