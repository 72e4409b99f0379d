"""Joint attention (MM-DiT): SD3 / SD3.5, Flux.1 and Flux.2 transformers.

In an MM-DiT block text and image tokens are concatenated and attend jointly; diffusers'
processors (``JointAttnProcessor2_0``, ``FluxAttnProcessor``, ``Flux2AttnProcessor``,
``Flux2ParallelSelfAttnProcessor``) call a fused attention kernel and return no
probabilities. :class:`JointAttentionAdapter` wraps each watched layer's processor: the
output is the original processor's, untouched; on the side, for the captured batch rows
only, it recomputes the queries, keys and values from the layer's own projections, the
per-head RMS norms of q and k (and of the text stream's added q and k) and the rotary
embeddings, exactly as the processor does, in float32.

Layouts (positions in the joint sequence):

- ``SD3Transformer2DModel``, ``JointTransformerBlock``: ``[image, text]``;
- ``FluxTransformer2DModel`` / ``Flux2Transformer2DModel``: dual-stream blocks
  (``transformer_blocks``) ``[text, image]``, single-stream blocks
  (``single_transformer_blocks``) one stream ``[text, image]``.

Normalisation of the text slice (``normalisation``):

- ``"text"`` (default): softmax of an image query's scores over the text keys only, so a
  row sums to one over the text tokens, as UNet cross-attention does and as the word maps
  and their comparison with information maps expect. It is the joint softmax's text
  slice divided by its mass, so it does not depend on how much an image token attends to
  other image tokens (which grows with the resolution).
- ``"joint"``: the text slice of the joint softmax over all keys (text and image); a row
  of the slice sums to the query's text mass (< 1), the rest went to image tokens.

Default layers: every dual-stream (joint) block: all of SD3's ``transformer_blocks``,
Flux's ``transformer_blocks``. There text keys come from the text stream's own projections
(``add_k_proj``), the analogue of cross-attention; in single-stream blocks text and image
share one projection after many layers of mixing. Name ``"single_transformer_blocks"``
(or single layers) in ``layers`` to add them.

Concept attention (ConceptAttention, Helbling et al. 2025): :meth:`LayerCall.outputs`
gives the attention outputs ``softmax(q k^T / sqrt(d)) v`` of image and text tokens
(before the output projection, per head); the capture's ``"concepts"`` method takes the
softmax over the concepts of their dot products.

The image tokens sit on a token grid ``(h, w)`` (row-major): SD3's latent grid divided by
``patch_size``; Flux's packed 2x2 latent patches (``img_ids`` rows ``[., row, col]``).
Give ``grid`` when the backend knows it, or let the adapter read it from each call.
"""

from __future__ import annotations

import inspect
import sys
from typing import Any, Callable, Sequence

import torch

from ..errors import ParameterError, ShapeError
from .adapters import AttentionAdapter, CallInputs, LayerCall

__all__ = ["JointAttentionAdapter", "NORMALISATIONS"]

NORMALISATIONS = ("text", "joint")
FAMILIES = {"SD3Transformer2DModel": "sd3", "FluxTransformer2DModel": "flux", "ChromaTransformer2DModel": "flux",
            "Flux2Transformer2DModel": "flux2"}
_CHUNK = 2**26  # score elements per chunk when recomputing attention


def _watching(original: Any, on_call: Callable[..., None], index: int) -> Any:
    """A processor that returns ``original``'s output and then calls ``on_call(index, attn, args, kwargs)``.

    It carries the original's call signature, so that diffusers' attention modules (which
    keep only the keyword arguments a processor's signature names) pass the same ones.
    """
    fn = original.forward if isinstance(original, torch.nn.Module) else original.__call__
    sig = inspect.signature(fn)
    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_ONLY), *sig.parameters.values()]

    class Watching(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.original = original

        def forward(self, attn: Any, *args: Any, **kwargs: Any) -> Any:
            out = self.original(attn, *args, **kwargs)
            on_call(index, attn, args, kwargs)
            return out

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return torch.nn.Module.__call__(self, *args, **kwargs)

    Watching.__call__.__signature__ = sig.replace(parameters=params)  # type: ignore[attr-defined]
    Watching.__name__ = f"Watching{type(original).__name__}"
    return Watching()


def _get(args: tuple, kwargs: dict, names: Sequence[str], name: str) -> Any:
    """Argument ``name`` of a call whose positional parameters after ``attn`` are ``names``."""
    if name in kwargs:
        return kwargs[name]
    i = list(names).index(name) if name in names else len(args)
    return args[i] if i < len(args) else None


class _JointCall(LayerCall):
    """One call of a joint-attention layer; q, k, v recomputed for the asked rows."""

    def __init__(self, adapter: "JointAttentionAdapter", kind: str, attn: Any, args: tuple, kwargs: dict) -> None:
        self.adapter, self.kind, self.attn = adapter, kind, attn
        names = adapter._params[type(attn.processor.original).__name__ if hasattr(attn.processor, "original")
                                else type(attn.processor).__name__]
        self.hs = _get(args, kwargs, names, "hidden_states")
        self.ehs = _get(args, kwargs, names, "encoder_hidden_states")
        self.mask = _get(args, kwargs, names, "attention_mask")
        self.rope = _get(args, kwargs, names, "image_rotary_emb")
        self.batch = self.hs.shape[0]
        self.device = self.hs.device
        state = adapter._state
        if state is None:
            raise ShapeError("a joint-attention layer ran outside a forward call of the watched transformer")
        self.text_len, self.size = state
        self._qkv: tuple | None = None
        self._rows: Any = "unset"

    def grid(self, size: tuple[int, int]) -> tuple[int, int]:
        return tuple(self.size)

    def _spans(self, total: int) -> tuple[slice, slice]:
        """``(image, text)`` slices of the joint sequence."""
        t = self.text_len
        n = total - t
        if n != self.size[0] * self.size[1]:
            raise ShapeError(f"the layer sees {n} image tokens but the token grid is {tuple(self.size)}; "
                             "pass the grid the transformer's image tokens lie on")
        if self.adapter.family == "sd3":
            return slice(0, n), slice(n, total)
        return slice(t, total), slice(0, t)

    @torch.no_grad()
    def qkv(self, rows: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(r, heads, N, d)`` float32 queries, keys and values of the joint sequence, as the processor builds them."""
        if self._qkv is not None and (self._rows is rows or (rows is not None and self._rows is not None
                                                              and torch.equal(self._rows, rows))):
            return self._qkv
        attn, hs, ehs = self.attn, self.hs, self.ehs
        if rows is not None and len(rows) < self.batch:
            hs = hs.index_select(0, rows)
            ehs = ehs.index_select(0, rows) if ehs is not None else None
        q, k, v = _QKV[self.kind](attn, hs, ehs)  # (r, N, heads, d), layout of the processor
        if self.rope is not None:
            from diffusers.models.embeddings import apply_rotary_emb

            q = apply_rotary_emb(q, self.rope, sequence_dim=1)
            k = apply_rotary_emb(k, self.rope, sequence_dim=1)
        out = tuple(t.float().transpose(1, 2) for t in (q, k, v))
        self._qkv, self._rows = out, rows
        return out

    def _bias(self, rows: torch.Tensor | None, total: int) -> torch.Tensor | None:
        """The attention mask as an additive ``(r, 1 or heads, N or 1, N)`` float bias, or ``None``."""
        m = self.mask
        if m is None:
            return None
        if m.ndim == 2:
            m = m[:, None, None, :]
        if m.shape[0] == self.batch and rows is not None and len(rows) < self.batch:
            m = m.index_select(0, rows)
        if m.dtype == torch.bool:
            return torch.zeros(m.shape, device=m.device).masked_fill(~m, float("-inf"))
        return m.float()

    @torch.no_grad()
    def probabilities(self, rows: torch.Tensor | None) -> torch.Tensor:
        q, k, _ = self.qkv(rows)
        img, txt = self._spans(q.shape[2])
        scale = q.shape[-1] ** -0.5
        bias = self._bias(rows, q.shape[2])
        qi = q[:, :, img]  # (r, heads, n, d)
        logits = qi @ k[:, :, txt].transpose(-1, -2) * scale  # (r, heads, n, T)
        if bias is not None:
            logits = logits + _rows_cols(bias, img, txt)
        if self.adapter.normalisation == "text":
            return logits.softmax(-1)
        lse = torch.empty(logits.shape[:-1], device=q.device)
        step = max(1, _CHUNK // max(1, q.shape[2] * q.shape[0] * q.shape[1]))
        for s in range(0, qi.shape[2], step):
            full = qi[:, :, s:s + step] @ k.transpose(-1, -2) * scale  # (r, heads, c, N)
            if bias is not None:
                full = full + _rows_cols(bias, slice(img.start + s, min(img.start + s + step, img.stop)), slice(None))
            lse[:, :, s:s + step] = full.logsumexp(-1)
        return (logits - lse[..., None]).exp()

    @torch.no_grad()
    def outputs(self, rows: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        q, k, v = self.qkv(rows)
        bias = self._bias(rows, q.shape[2])
        o = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=bias)  # (r, heads, N, d)
        img, txt = self._spans(q.shape[2])
        return o[:, :, img], o[:, :, txt]


def _rows_cols(bias: torch.Tensor, rows: slice, cols: slice) -> torch.Tensor:
    b = bias if bias.shape[-2] == 1 else bias[..., rows, :]
    return b[..., cols]


def _heads(x: torch.Tensor, d: int) -> torch.Tensor:
    return x.unflatten(-1, (-1, d))


def _qkv_sd3(attn: Any, hs: torch.Tensor, ehs: torch.Tensor | None):
    """``JointAttnProcessor2_0``: ``[image, text]``."""
    d = attn.to_k.out_features // attn.heads
    q, k, v = (_heads(f(hs), d) for f in (attn.to_q, attn.to_k, attn.to_v))
    if attn.norm_q is not None:
        q = attn.norm_q(q)
    if attn.norm_k is not None:
        k = attn.norm_k(k)
    if ehs is None:
        return q, k, v
    eq, ek, ev = (_heads(f(ehs), d) for f in (attn.add_q_proj, attn.add_k_proj, attn.add_v_proj))
    if attn.norm_added_q is not None:
        eq = attn.norm_added_q(eq)
    if attn.norm_added_k is not None:
        ek = attn.norm_added_k(ek)
    return torch.cat([q, eq], 1), torch.cat([k, ek], 1), torch.cat([v, ev], 1)


def _qkv_flux(attn: Any, hs: torch.Tensor, ehs: torch.Tensor | None):
    """``FluxAttnProcessor`` / ``Flux2AttnProcessor``: ``[text, image]`` (single-stream: ``hs`` is joint)."""
    module = sys.modules[type(attn).__module__]
    q, k, v, eq, ek, ev = module._get_qkv_projections(attn, hs, ehs)
    d = attn.head_dim
    q, k, v = _heads(q, d), _heads(k, d), _heads(v, d)
    q, k = attn.norm_q(q), attn.norm_k(k)
    if attn.added_kv_proj_dim is not None and ehs is not None:
        eq, ek, ev = _heads(eq, d), _heads(ek, d), _heads(ev, d)
        eq, ek = attn.norm_added_q(eq), attn.norm_added_k(ek)
        q, k, v = torch.cat([eq, q], 1), torch.cat([ek, k], 1), torch.cat([ev, v], 1)
    return q, k, v


def _qkv_flux2_single(attn: Any, hs: torch.Tensor, ehs: torch.Tensor | None):
    """``Flux2ParallelSelfAttnProcessor``: one joint stream ``[text, image]`` through ``to_qkv_mlp_proj``."""
    h = attn.to_qkv_mlp_proj(hs)
    qkv_dim = 3 * attn.inner_dim
    mlp_dim = attn.mlp_hidden_dim * attn.mlp_mult_factor
    local = h.shape[-1] * qkv_dim // (qkv_dim + mlp_dim)
    q, k, v = h[..., :local].chunk(3, dim=-1)
    d = attn.head_dim
    q, k, v = _heads(q, d), _heads(k, d), _heads(v, d)
    return attn.norm_q(q), attn.norm_k(k), v


_QKV = {"sd3": _qkv_sd3, "flux": _qkv_flux, "flux2-single": _qkv_flux2_single}
PROCESSORS = {"JointAttnProcessor2_0": "sd3", "FluxAttnProcessor": "flux", "FluxAttnProcessor2_0": "flux",
              "Flux2AttnProcessor": "flux", "Flux2ParallelSelfAttnProcessor": "flux2-single"}
"""Processor classes whose computation this adapter reproduces, and how."""


class JointAttentionAdapter(AttentionAdapter):
    """Image-to-text attention of an MM-DiT transformer (see the module docstring).

    Args:
        transformer: a diffusers ``SD3Transformer2DModel``, ``FluxTransformer2DModel`` or
            ``Flux2Transformer2DModel``.
        grid: ``(h, w)`` token grid of the image tokens (row-major), or ``None`` to read it
            from each forward call (SD3: latent size / ``patch_size``; Flux: ``img_ids``).
        normalisation: ``"text"`` (softmax over the text tokens, default) or ``"joint"``
            (text slice of the joint softmax).

    Raises:
        ParameterError: an unsupported transformer, processor or normalisation.
    """

    kind = "joint"
    concepts = True

    def __init__(self, transformer: Any, *, grid: tuple[int, int] | None = None,
                 normalisation: str = "text") -> None:
        family = FAMILIES.get(type(transformer).__name__)
        if family is None:
            raise ParameterError(f"joint attention supports {', '.join(FAMILIES)}; got {type(transformer).__name__}")
        if normalisation not in NORMALISATIONS:
            raise ParameterError(f"normalisation must be one of {NORMALISATIONS}, got {normalisation!r}")
        self.module, self.family, self.normalisation = transformer, family, normalisation
        self.fixed_grid = None if grid is None else (int(grid[0]), int(grid[1]))
        self._kinds: dict[str, str] = {}
        self._params: dict[str, list[str]] = {}
        for key, proc in transformer.attn_processors.items():
            name = key[: -len(".processor")]
            mod = transformer.get_submodule(name)
            kind = PROCESSORS.get(type(proc).__name__)
            joint = getattr(mod, "added_kv_proj_dim", None) is not None or getattr(mod, "add_k_proj", None) is not None
            single = name.startswith("single_transformer_blocks.")
            if kind is None or not (joint or single):
                continue  # e.g. SD3.5's image-only attn2, or a processor we cannot reproduce
            self._kinds[name] = kind
            fn = proc.forward if isinstance(proc, torch.nn.Module) else proc.__call__
            self._params[type(proc).__name__] = [p for p in inspect.signature(fn).parameters][1:]
        if not self._kinds:
            raise ParameterError(f"{type(transformer).__name__} has no joint-attention layer with a supported "
                                 f"processor ({', '.join(PROCESSORS)}); reset custom processors first")
        self._saved: dict[str, Any] | None = None
        self._handle: Any = None
        self._state: tuple[int, tuple[int, int]] | None = None
        self._sig = inspect.signature(transformer.forward)

    def layers(self) -> tuple[str, ...]:
        return tuple(self._kinds)

    def default_layers(self) -> tuple[str, ...]:
        return tuple(n for n in self._kinds if n.startswith("transformer_blocks."))

    def call_inputs(self, args: tuple, kwargs: dict) -> CallInputs:
        bound = self._sig.bind_partial(*args, **kwargs).arguments
        hs, ehs = bound["hidden_states"], bound.get("encoder_hidden_states")
        if ehs is None:
            raise ShapeError(f"{type(self.module).__name__} was called without encoder_hidden_states")
        return CallInputs(ehs, bound.get("timestep"), self._grid(hs, bound))

    def _grid(self, hs: torch.Tensor, bound: dict) -> tuple[int, int]:
        if self.fixed_grid is not None:
            return self.fixed_grid
        if self.family == "sd3":
            p = int(self.module.config.patch_size)
            return hs.shape[-2] // p, hs.shape[-1] // p
        ids = bound.get("img_ids")
        if ids is None:
            raise ShapeError("cannot place the image tokens: the call has no img_ids; pass grid= to the adapter")
        ids = ids[0] if ids.ndim == 3 else ids
        h, w = int(ids[:, 1].max()) + 1, int(ids[:, 2].max()) + 1
        if h * w != hs.shape[1]:
            raise ShapeError(f"img_ids span a {h}x{w} grid but there are {hs.shape[1]} image tokens; pass grid=")
        return h, w

    def install(self, layers: Sequence[str], record: Callable[[int, LayerCall], None]) -> None:
        if self._saved is not None:
            raise ParameterError("this transformer's attention is already being captured; use one capture at a time")
        unknown = [n for n in layers if n not in self._kinds]
        if unknown:
            raise ParameterError(f"not joint-attention layers: {unknown[:3]}")
        saved = dict(self.module.attn_processors)
        procs = dict(saved)

        def on_call(index: int, attn: Any, args: tuple, kwargs: dict) -> None:
            record(index, _JointCall(self, self._kinds[layers[index]], attn, args, kwargs))

        for i, name in enumerate(layers):
            procs[name + ".processor"] = _watching(saved[name + ".processor"], on_call, i)
        self._saved = saved
        try:
            self.module.set_attn_processor(procs)
            self._handle = [self.module.register_forward_pre_hook(self._on_call, with_kwargs=True),
                            self.module.register_forward_hook(self._on_return)]
        except BaseException:
            self.restore()
            raise

    def _on_call(self, module: Any, args: tuple, kwargs: dict) -> None:
        inputs = self.call_inputs(args, kwargs)
        self._state = (int(inputs.text.shape[1]), inputs.size)

    def _on_return(self, module: Any, args: tuple, output: Any) -> None:
        self._state = None

    def restore(self) -> None:
        for h in self._handle or []:
            h.remove()
        self._handle, self._state = None, None
        if self._saved is not None:
            saved, self._saved = self._saved, None
            self.module.set_attn_processor(dict(saved))
