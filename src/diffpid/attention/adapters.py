"""Attention adapters: where a denoiser's text attention lives, per architecture.

The attention package owns the method (labelling batch rows, aggregation over layers,
heads and steps, word maps); an adapter owns the wiring of one architecture. A model
backend returns its adapter from :meth:`~diffpid.models.base.Model.attention_adapter`.

An :class:`AttentionAdapter` says

- which network's forward call is one denoiser step (:attr:`AttentionAdapter.module`) and
  what that call carries (:meth:`AttentionAdapter.call_inputs`: the text embeddings that
  label its rows, the timestep, the grid the maps are accumulated on);
- which attention layers there are and which are used by default
  (:meth:`AttentionAdapter.layers`, :meth:`AttentionAdapter.default_layers`);
- how to watch a layer without changing its output (:meth:`AttentionAdapter.install` /
  :meth:`AttentionAdapter.restore`): at each call of a watched layer it hands the capture a
  :class:`LayerCall` that computes, for the rows the capture asks for, the image queries'
  probabilities over the text keys on a known query grid, and (where the architecture
  has them) the attention outputs of image and text tokens for concept attention.

Adapters here:

- :class:`UNetCrossAttentionAdapter` (``UNet2DConditionModel``: SD 1.x/2.x, SDXL, the
  embedded model): cross-attention layers, stride-2 query grids, softmax over the text
  tokens as the layer computes it.
- :class:`~diffpid.attention.joint.JointAttentionAdapter` (MM-DiT joint attention:
  ``SD3Transformer2DModel``, ``FluxTransformer2DModel``, ``Flux2Transformer2DModel``),
  constructed as ``JointAttentionAdapter(transformer, *, grid=None)`` with ``grid`` the
  ``(h, w)`` image-token grid (``None``: read from each call: SD3 from the latent size and
  ``patch_size``, Flux from ``img_ids``).

How to add an architecture: see ``docs/attention.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch

from ..errors import ParameterError, ShapeError
from ..models.base import CapabilityError
from .processor import attention_probabilities, recording_processor

__all__ = ["AttentionAdapter", "CallInputs", "LayerCall", "UNetCrossAttentionAdapter", "cross_attention_layers",
           "query_grid"]


@dataclass(frozen=True)
class CallInputs:
    """What one denoiser forward call carries, as the capture needs it.

    Args:
        text: ``(b, T, d)`` the text embeddings of the batch rows (rows are labelled by them).
        timestep: the call's timestep argument (scalar or ``(b,)``).
        size: ``(h, w)`` the grid maps of this call are accumulated on by default
            (the UNet's input size; the image-token grid of a transformer).
    """

    text: torch.Tensor
    timestep: Any
    size: tuple[int, int]


class LayerCall:
    """One call of a watched attention layer, as handed to the capture's recorder.

    Subclasses compute, for the batch rows ``rows`` (a ``(r,)`` long tensor on the
    layer's device, or ``None`` for every row):

    - :meth:`probabilities`: ``(r, heads, n, T)`` attention of the ``n`` image queries
      over the ``T`` text keys;
    - :meth:`grid`: the ``(h, w)`` grid of those ``n`` queries (``h * w == n``);
    - :meth:`outputs`: ``(image (r, n, c), text (r, T, c))`` the layer's attention
      outputs of image and text tokens (concept attention), where the architecture has them.
    """

    batch: int = 0
    device: torch.device = torch.device("cpu")

    def probabilities(self, rows: torch.Tensor | None) -> torch.Tensor:
        raise NotImplementedError  # abstract

    def grid(self, size: tuple[int, int]) -> tuple[int, int]:
        raise NotImplementedError  # abstract

    def outputs(self, rows: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        raise CapabilityError(f"{type(self).__name__}: this architecture's attention has no text-token outputs; "
                              "use method='scores' (concept attention needs joint attention)")


class AttentionAdapter:
    """Base of the adapters (see the module docstring).

    Attributes:
        module: the network whose forward call is one denoiser step.
        kind: a short name of the architecture (``"unet-cross"``, ``"joint"``).
        concepts: whether :meth:`LayerCall.outputs` is available (concept attention).
    """

    module: Any
    kind: str = "adapter"
    concepts: bool = False

    def layers(self) -> tuple[str, ...]:
        """Names of every capturable attention layer, in call order."""
        raise NotImplementedError  # abstract

    def default_layers(self) -> tuple[str, ...]:
        """The layers used when the caller names none."""
        return self.layers()

    def select(self, layers: Sequence[str] | None) -> tuple[str, ...]:
        """The layers named by ``layers`` (names or name prefixes); default :meth:`default_layers`.

        Raises:
            ParameterError: no layer matches.
        """
        if layers is None:
            names = list(self.default_layers())
        else:
            if isinstance(layers, str):
                layers = [layers]
            names = [n for n in self.layers() if any(n == p or n.startswith(p + ".") for p in layers)]
        if not names:
            raise ParameterError(f"no attention layers to capture for {list(layers or [])}; layers of this "
                                 f"{self.kind} model: {', '.join(self.layers()[:6])}{' ...' if len(self.layers()) > 6 else ''}")
        return tuple(names)

    def call_inputs(self, args: tuple, kwargs: dict) -> CallInputs:
        """The :class:`CallInputs` of one forward call of :attr:`module`."""
        raise NotImplementedError  # abstract

    def text_embeddings(self, condition: Any) -> torch.Tensor | None:
        """The ``(T, d)`` text embeddings a condition puts into :attr:`module` (to match rows), or ``None``."""
        return getattr(condition, "embeddings", None)

    def install(self, layers: Sequence[str], record: Callable[[int, LayerCall], None]) -> None:
        """Watch ``layers``: each call of layer ``layers[i]`` calls ``record(i, layer_call)``.

        The layers' outputs must stay bitwise identical. :meth:`restore` undoes it, also
        after an error inside ``install``.
        """
        raise NotImplementedError  # abstract

    def restore(self) -> None:
        """Undo :meth:`install` (put every original processor back)."""
        raise NotImplementedError  # abstract


def _arg(args: tuple, kwargs: dict, pos: int, name: str) -> Any:
    return kwargs[name] if name in kwargs else (args[pos] if len(args) > pos else None)


def query_grid(n: int, size: tuple[int, int]) -> tuple[int, int]:
    """The ``(h, w)`` of a layer with ``n`` queries in a UNet whose input is ``size`` (stride-2 levels)."""
    h, w = size
    for _ in range(12):
        if h * w == n:
            return h, w
        h, w = -(-h // 2), -(-w // 2)
    raise ShapeError(f"cannot place {n} attention queries on a grid derived from the input size {size}")


def cross_attention_layers(unet: Any) -> list[str]:
    """Names of the UNet's cross-attention ``Attention`` modules, in ``attn_processors`` order."""
    return list(UNetCrossAttentionAdapter(unet).layers())


class _CrossCall(LayerCall):
    """One UNet cross-attention layer call: probabilities recomputed with its ``to_q`` / ``to_k``."""

    def __init__(self, attn: Any, hs: torch.Tensor, ehs: torch.Tensor, mask: Any, temb: Any) -> None:
        self.attn, self.hs, self.ehs, self.mask, self.temb = attn, hs, ehs, mask, temb
        self.batch = hs.shape[0]
        self.device = hs.device
        self._n: int | None = None

    def probabilities(self, rows: torch.Tensor | None) -> torch.Tensor:
        hs, ehs, mask, temb, b = self.hs, self.ehs, self.mask, self.temb, self.batch
        if rows is not None and len(rows) < b:  # compute only the captured rows
            mask = mask.index_select(0, rows) if mask is not None and mask.shape[0] == b else mask
            temb = temb.index_select(0, rows) if temb is not None and temb.shape[0] == b else temb
            hs, ehs = hs.index_select(0, rows), ehs.index_select(0, rows)
        probs = attention_probabilities(self.attn, hs, ehs, mask, temb)
        self._n = probs.shape[2]
        return probs

    def grid(self, size: tuple[int, int]) -> tuple[int, int]:
        n = self._n if self._n is not None else (self.hs.shape[-2] * self.hs.shape[-1] if self.hs.ndim == 4
                                                 else self.hs.shape[1])
        return query_grid(n, size)


class UNetCrossAttentionAdapter(AttentionAdapter):
    """Cross-attention of a diffusers ``UNet2DConditionModel`` (SD 1.x/2.x, SDXL, the embedded model).

    Every cross-attention ``Attention`` module (``attn2`` of the transformer blocks;
    IP-Adapter style added-KV layers excluded) is capturable and used by default. Queries
    sit on the stride-2 grid of their UNet level; the probabilities are the layer's own
    softmax over the text tokens (they sum to one over them).

    Args:
        unet: the UNet.
    """

    kind = "unet-cross"

    def __init__(self, unet: Any) -> None:
        if not hasattr(unet, "attn_processors") or not hasattr(unet, "set_attn_processor"):
            raise ParameterError("unet must be a diffusers UNet2DConditionModel (it has no attention processors)")
        self.module = unet
        self._saved: dict[str, Any] | None = None

    def layers(self) -> tuple[str, ...]:
        """Names of the UNet's cross-attention ``Attention`` modules, in ``attn_processors`` order."""
        names = []
        for key in self.module.attn_processors:
            name = key[: -len(".processor")]
            mod = self.module.get_submodule(name)
            if getattr(mod, "is_cross_attention", False) and getattr(mod, "added_kv_proj_dim", None) is None:
                names.append(name)
        return tuple(names)

    def call_inputs(self, args: tuple, kwargs: dict) -> CallInputs:
        sample = _arg(args, kwargs, 0, "sample")
        return CallInputs(_arg(args, kwargs, 2, "encoder_hidden_states"), _arg(args, kwargs, 1, "timestep"),
                          tuple(sample.shape[-2:]))

    def install(self, layers: Sequence[str], record: Callable[[int, LayerCall], None]) -> None:
        if self._saved is not None:
            raise ParameterError("this UNet's attention is already being captured; use one capture at a time")
        saved = dict(self.module.attn_processors)
        procs = dict(saved)

        def on_layer(index: int, attn: Any, hs: torch.Tensor, ehs: torch.Tensor, mask: Any, temb: Any) -> None:
            record(index, _CrossCall(attn, hs, ehs, mask, temb))

        for i, name in enumerate(layers):
            procs[name + ".processor"] = recording_processor(saved[name + ".processor"], on_layer, i)
        self._saved = saved
        try:
            self.module.set_attn_processor(procs)
        except BaseException:
            self.restore()
            raise

    def restore(self) -> None:
        if self._saved is not None:
            saved, self._saved = self._saved, None
            self.module.set_attn_processor(dict(saved))
